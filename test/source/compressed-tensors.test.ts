/**
 * compressed-tensors: a hand-packed pack-quantized word and zero point, the fixture encoders round trip
 * (pack-quantized int4/int8 group ± zero points, channel; int-quantized int8; float-quantized FP8 block),
 * several non-overlapping config_groups in one checkpoint with `ignore`, and the refusals (overlapping
 * targets, an uncovered module, a missing scale, unsupported args) naming the module.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { ctPackEncode, ctInt8Encode, ctConfig } from "../../fixtures/compressed-tensors.js";
import { fp8EncodeWeight, fp8ModuleTensors } from "../../fixtures/fp8.js";
import { plainTensor } from "../../fixtures/quantized-stories.js";
import { writeCheckpoint, withSource, i32, f32, refusal, convertRefuses } from "./helpers.js";
import { openSource } from "../../src/source/registry.js";

const tmp = await scratchDir("ggufy-ct-");
after(() => rm(tmp, { recursive: true, force: true }));
let n = 0;
const dirFor = (): string => path.join(tmp, `c${n++}`);
const M = "model.layers.0.mlp.gate_proj";
const int4g = (gs: number, symmetric = true) => ({ num_bits: 4, type: "int", strategy: "group", group_size: gs, symmetric, dynamic: false });

test("pack-quantized by hand: 8 nibbles per word low bits first, zero points packed along the output dim", async () => {
  // weight [2, 8]: row 0 word 0x76543210 (q_k = k), row 1 word 0xfedcba98 (q_k = 8 + k); group 8; scales 0.5 / 2
  // symmetric: zero 8 → row 0: 0.5·(k − 8), row 1: 2·k
  const ts = [
    { name: `${M}.weight_packed`, dtype: "I32" as const, shape: [2, 1], data: i32([0x76543210, 0xfedcba98 | 0]) },
    { name: `${M}.weight_scale`, dtype: "F32" as const, shape: [2, 1], data: f32([0.5, 2]) },
    { name: `${M}.weight_shape`, dtype: "I64" as const, shape: [2], data: new Uint8Array(new BigInt64Array([2n, 8n]).buffer) },
  ];
  const cfg = ctConfig({ group_0: { targets: ["Linear"], weights: int4g(8) } }, "pack-quantized");
  const k = [0, 1, 2, 3, 4, 5, 6, 7];
  await withSource(await writeCheckpoint(dirFor(), ts, cfg), async (s) => assert.deepEqual([...(await s.readAll(`${M}.weight`))], [...k.map((x) => 0.5 * (x - 8)), ...k.map((x) => 2 * x)]));
  // asymmetric: zero point word 0x00000053: row 0 zero 3, row 1 zero 5
  const zp = { name: `${M}.weight_zero_point`, dtype: "I32" as const, shape: [1, 1], data: i32([0x53]) };
  const cfg2 = ctConfig({ group_0: { targets: ["Linear"], weights: int4g(8, false) } }, "pack-quantized");
  await withSource(await writeCheckpoint(dirFor(), [...ts, zp], cfg2), async (s) => assert.deepEqual([...(await s.readAll(`${M}.weight`))], [...k.map((x) => 0.5 * (x - 3)), ...k.map((x) => 2 * (8 + x - 5))]));
});

test("fixture encoders round trip: int4 group ± zero point, int8 pack channel, int-quantized int8, float-quantized FP8 block", async () => {
  const rng = new Rng(8);
  const rows = 48;
  const cols = 192;
  const cases = [
    { id: "int4 g32 sym", e: ctPackEncode(M, rng.normals(rows * cols, 0, 0.03), rows, cols, 4, 32, true), cfg: ctConfig({ g: { targets: ["Linear"], weights: int4g(32) } }, "pack-quantized") },
    { id: "int4 g64 asym", e: ctPackEncode(M, rng.normals(rows * cols, 0, 0.03), rows, cols, 4, 64, false), cfg: ctConfig({ g: { targets: ["Linear"], weights: int4g(64, false) } }, "pack-quantized") },
    { id: "int8 pack channel", e: ctPackEncode(M, rng.normals(rows * cols, 0, 0.03), rows, cols, 8, cols, true), cfg: ctConfig({ g: { targets: ["Linear"], weights: { num_bits: 8, type: "int", strategy: "channel", symmetric: true } } }, "pack-quantized") },
    { id: "int-quantized int8", e: ctInt8Encode(M, rng.normals(rows * cols, 0, 0.03), rows, cols), cfg: ctConfig({ g: { targets: ["Linear"], weights: { num_bits: 8, type: "int", strategy: "channel", symmetric: true } } }, "int-quantized") },
  ];
  const fe = fp8EncodeWeight(rng.normals(rows * cols, 0, 0.03), rows, cols, "e4m3", { block: [32, 128] });
  cases.push({ id: "float-quantized block", e: { tensors: fp8ModuleTensors(M, fe, rows, cols, "e4m3", "weight_scale"), expected: fe.expected }, cfg: ctConfig({ g: { targets: ["Linear"], weights: { num_bits: 8, type: "float", strategy: "block", block_structure: [32, 128], symmetric: true } } }, "float-quantized") });
  for (const c of cases) {
    await withSource(await writeCheckpoint(dirFor(), c.e.tensors, c.cfg), async (s) => {
      assert.deepEqual(await s.readAll(`${M}.weight`), c.e.expected, c.id);
      assert.deepEqual(await s.readRows(`${M}.weight`, 7, 30), c.e.expected.subarray(7 * cols, 37 * cols), `${c.id} rows 7..36`);
      assert.match(s.get(`${M}.weight`)!.encoding, /^compressed-tensors /);
    });
  }
});

test("several non-overlapping config_groups, ignore, and the refusals", async () => {
  const rng = new Rng(9);
  const A = "model.layers.0.self_attn.q_proj";
  const B = "model.layers.0.mlp.down_proj";
  const a = ctPackEncode(A, rng.normals(64 * 64, 0, 0.03), 64, 64, 4, 32, false);
  const b = ctInt8Encode(B, rng.normals(64 * 96, 0, 0.03), 64, 96);
  const lm = plainTensor("lm_head.weight", rng.normals(32 * 64, 0, 0.03), [32, 64], "BF16");
  const groups = {
    attn: { targets: ["re:.*self_attn\\..*"], weights: int4g(32, false), format: "pack-quantized" },
    mlp: { targets: ["re:.*mlp\\..*"], weights: { num_bits: 8, type: "int", strategy: "channel", symmetric: true }, format: "int-quantized" },
  };
  const ts = [...a.tensors, ...b.tensors, lm];
  const d = await writeCheckpoint(dirFor(), ts, ctConfig(groups, "mixed-precision"));
  await withSource(d, async (s) => {
    assert.deepEqual(await s.readAll(`${A}.weight`), a.expected);
    assert.deepEqual(await s.readAll(`${B}.weight`), b.expected);
    assert.equal(s.isDecoded("lm_head.weight"), false, "ignored: plain");
    assert.equal(s.modules().length, 2);
  });
  const opens = async (tensors: typeof ts, cfg: Record<string, unknown>, code: string, parts: string[]): Promise<void> => {
    const dd = await writeCheckpoint(dirFor(), tensors, cfg);
    await refusal(openSource(dd), code, parts);
    await convertRefuses(dd, dirFor(), code, parts);
  };
  await opens(ts, ctConfig({ ...groups, all: { targets: ["Linear"], weights: int4g(32), format: "pack-quantized" } }, "mixed-precision"), "E_QUANT", [`'${B}'`, "'mlp' and 'all'", "overlap"]);
  await opens(ts, ctConfig({ attn: groups.attn }, "mixed-precision"), "E_QUANT", [`'${B}'`, "no config_groups target covers it"]);
  await opens(ts.filter((t) => t.name !== `${A}.weight_scale`), ctConfig(groups, "mixed-precision"), "E_QUANT", [`'${A}'`, "the scale", "missing"]);
  await opens(ts.filter((t) => t.name !== `${A}.weight_zero_point`), ctConfig(groups, "mixed-precision"), "E_QUANT", [`'${A}'`, "asymmetric", "weight_zero_point' is missing"]);
  await opens(ts, ctConfig({ ...groups, attn: { ...groups.attn, weights: { ...int4g(32, false), num_bits: 2 } } }, "mixed-precision"), "E_UNSUPPORTED_QUANT", ["config_groups.attn", "2-bit"]);
  await opens(ts, ctConfig(groups, "mixed-precision", ["lm_head", A]), "E_QUANT", [`'${A}'`, "listed in ignore"]);
  await opens(ts, ctConfig({ g: { targets: ["Linear"], weights: int4g(32) } }, "nvfp4-pack-quantized"), "E_UNSUPPORTED_QUANT", ["nvfp4-pack-quantized"]);
});
