/**
 * FP8: all 256 codes of both formats (E5M2 against IEEE float16's upper byte, E4M3 against hand values and
 * the fixture's independent enumeration), subnormals, partial edge blocks by hand, per-channel / per-tensor
 * scales, the fixture encoder (block scales from the real block maxima) round trip, NaN/Inf codes refused by
 * name — also from a worker thread, with the code kept — and the other refusals.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { fp8EncodeWeight, fp8ModuleTensors, fp8Value } from "../../fixtures/fp8.js";
import { fp8Table } from "../../src/source/schemes/fp8.js";
import { f16Lut } from "../../src/formats/half.js";
import { writeCheckpoint, withSource, f32, refusal, convertRefuses } from "./helpers.js";
import { openSource } from "../../src/source/registry.js";
import type { StTensor } from "../../src/formats/safetensors/index.js";

const tmp = await scratchDir("ggufy-fp8-");
after(() => rm(tmp, { recursive: true, force: true }));
const M = "model.layers.0.self_attn.o_proj";
let n = 0;
const dirFor = (): string => path.join(tmp, `c${n++}`);
const FP8 = { quant_method: "fp8", fmt: "e4m3", activation_scheme: "dynamic" };

test("all 256 codes: E5M2 = upper byte of a float16, E4M3 by hand and by the fixture's enumeration", () => {
  const e5 = fp8Table("e5m2");
  const h = f16Lut();
  let nan5 = 0;
  for (let c = 0; c < 256; c++) {
    const want = h[c << 8]!;
    if (Number.isNaN(want)) { nan5++; assert.ok(Number.isNaN(e5[c]!), `e5m2 ${c}`); }
    else assert.ok(Object.is(e5[c], want), `e5m2 0x${c.toString(16)}: ${e5[c]} vs ${want}`);
  }
  assert.equal(nan5, 6);
  assert.equal(e5[0x7c], Infinity);
  assert.equal(e5[0xfc], -Infinity);
  const e4 = fp8Table("e4m3");
  const hand: [number, number][] = [
    [0x00, 0], [0x01, 2 ** -9], [0x02, 2 ** -8], [0x07, 7 * 2 ** -9], // subnormals m/8 · 2^-6
    [0x08, 2 ** -6], [0x30, 0.5], [0x38, 1], [0x39, 1.125], [0x3f, 1.875], [0x40, 2],
    [0x77, 240], [0x78, 256], [0x7e, 448], [0x81, -(2 ** -9)], [0xb8, -1], [0xfe, -448],
  ];
  for (const [c, v] of hand) assert.ok(Object.is(e4[c], v), `e4m3 0x${c.toString(16)}: ${e4[c]} vs ${v}`);
  assert.ok(Object.is(e4[0x80], -0));
  assert.ok(Number.isNaN(e4[0x7f]!) && Number.isNaN(e4[0xff]!));
  for (let c = 0; c < 256; c++) {
    if ((c & 0x7f) === 0x7f) continue;
    assert.ok(Object.is(e4[c], fp8Value(c, "e4m3")), `e4m3 0x${c.toString(16)} vs enumeration`);
    if (((c >> 2) & 31) !== 31) assert.ok(Object.is(e5[c], fp8Value(c, "e5m2")), `e5m2 0x${c.toString(16)} vs enumeration`);
  }
});

test("partial edge blocks, subnormals, per-channel and per-tensor scales, by hand", async () => {
  // weight [3, 5], block [2, 2] → scales [2, 3]: block (i, j) covers rows 2i.., cols 2j.. (the last ones partial)
  const codes = new Uint8Array(15).fill(0x38); // 1.0
  codes[4] = 0x01; // 2^-9 (subnormal) in block (0, 2)
  codes[14] = 0xb9; // -1.125 in block (1, 2)
  const scales = [1, 2, 3, 4, 5, 6.5];
  const d = await writeCheckpoint(dirFor(), [
    { name: `${M}.weight`, dtype: "F8_E4M3", shape: [3, 5], data: codes },
    { name: `${M}.weight_scale_inv`, dtype: "F32", shape: [2, 3], data: f32(scales) },
  ], { ...FP8, weight_block_size: [2, 2] });
  await withSource(d, async (s) => {
    assert.match(s.get(`${M}.weight`)!.encoding, /block 2x2/);
    assert.deepEqual([...(await s.readAll(`${M}.weight`))], [1, 1, 2, 2, 3 * 2 ** -9, 1, 1, 2, 2, 3, 4, 4, 5, 5, -1.125 * 6.5]);
    assert.deepEqual([...(await s.readRows(`${M}.weight`, 2, 1))], [4, 4, 5, 5, -7.3125]);
  });
  // the float32 product rounds once: 1.125 · f32(0.1) (not exact in double → f32 rounding)
  const c2 = new Uint8Array([0x39, 0x38, 0x39, 0x38]);
  const d2 = await writeCheckpoint(dirFor(), [
    { name: `${M}.weight`, dtype: "F8_E4M3", shape: [2, 2], data: c2 },
    { name: `${M}.weight_scale`, dtype: "F32", shape: [2, 1], data: f32([0.1, 3]) },
  ], FP8);
  await withSource(d2, async (s) => assert.deepEqual([...(await s.readAll(`${M}.weight`))], [Math.fround(1.125 * Math.fround(0.1)), Math.fround(0.1), 3.375, 3]));
  const d3 = await writeCheckpoint(dirFor(), [
    { name: `${M}.weight`, dtype: "F8_E5M2", shape: [2, 2], data: new Uint8Array([0x01, 0x3c, 0xbc, 0x7b]) },
    { name: `${M}.weight_scale_inv`, dtype: "F32", shape: [], data: f32([0.5]) },
    { name: `${M}.input_scale`, dtype: "F32", shape: [], data: f32([0.25]) },
  ], FP8);
  await withSource(d3, async (s) => {
    assert.deepEqual([...(await s.readAll(`${M}.weight`))], [2 ** -17, 0.5, -0.5, 28672]);
    assert.equal(s.get(`${M}.input_scale`), undefined, "activation scale dropped");
  });
});

test("the fixture encoder (block scales from block maxima) round-trips: E4M3/E5M2 × block / channel / tensor", async () => {
  const rng = new Rng(4);
  for (const fmt of ["e4m3", "e5m2"] as const) {
    for (const layout of [{ block: [128, 128] as [number, number] }, { block: [32, 48] as [number, number] }, "channel" as const, "tensor" as const]) {
      const rows = 200;
      const cols = 150;
      const w = rng.normals(rows * cols, 0, 0.05);
      const e = fp8EncodeWeight(w, rows, cols, fmt, layout);
      const d = await writeCheckpoint(dirFor(), fp8ModuleTensors(M, e, rows, cols, fmt), { ...FP8, fmt, ...(typeof layout === "object" ? { weight_block_size: layout.block } : {}) });
      await withSource(d, async (s) => {
        assert.deepEqual(await s.readAll(`${M}.weight`), e.expected, `${fmt} ${JSON.stringify(layout)}`);
        assert.deepEqual(await s.readRows(`${M}.weight`, 33, 101), e.expected.subarray(33 * cols, 134 * cols));
      });
    }
  }
});

test("NaN / Inf codes and every other refusal name the module; convert (2 workers) keeps the code and leaves nothing", async () => {
  const rng = new Rng(5);
  // a convertible Llama: only the FP8 refusal path matters, so build the smallest model the converter accepts
  const { writeQuantizedStories } = await import("../../fixtures/quantized-stories.js");
  for (const [fmt, code, what] of [["e4m3", 0x7f, "NaN"], ["e4m3", 0xff, "NaN"], ["e5m2", 0x7e, "NaN"], ["e5m2", 0xfc, "-Inf"]] as const) {
    const d = dirFor();
    await writeQuantizedStories(d, {
      torchDtype: "BF16",
      quantizationConfig: { ...FP8, fmt, weight_block_size: [32, 32] },
      quantize: (m, w, r, c) => {
        const e = fp8EncodeWeight(w, r, c, fmt, { block: [32, 32] });
        if (m === "model.layers.3.mlp.down_proj") e.codes[64 * 160 - 7] = code;
        return fp8ModuleTensors(m, e, r, c, fmt);
      },
    });
    await convertRefuses(d, dirFor(), "E_QUANT", ["'model.layers.3.mlp.down_proj'", `0x${code.toString(16)}`, what, `F8_${fmt.toUpperCase()}`, `flat index ${64 * 160 - 7}`]);
  }
  const e = fp8EncodeWeight(rng.normals(64 * 96, 0, 0.1), 64, 96, "e4m3", { block: [32, 32] });
  const good = fp8ModuleTensors(M, e, 64, 96, "e4m3");
  const opens = async (ts: StTensor[], c: Record<string, unknown>, errCode: string, parts: string[]): Promise<void> => {
    const d = await writeCheckpoint(dirFor(), ts, c);
    await refusal(openSource(d), errCode, parts);
    await convertRefuses(d, dirFor(), errCode, parts);
  };
  const cfg = { ...FP8, weight_block_size: [32, 32] };
  await opens(good.filter((t) => !t.name.endsWith("scale_inv")), cfg, "E_QUANT", [`'${M}'`, "the scale is missing", "weight_scale_inv"]);
  await opens(good.map((t) => (t.name.endsWith("scale_inv") ? { ...t, shape: [2, 2], data: t.data.subarray(0, 16) } : t)), cfg, "E_QUANT", [`'${M}'`, "[2,2]", "per block [32,32]", "[2, 3]"]);
  await opens(good, { ...FP8, weight_block_size: [32] }, "E_CONFIG", ["weight_block_size"]);
  await opens(good, { ...FP8, fmt: "e3m4" }, "E_UNSUPPORTED_QUANT", ["fmt", "e3m4"]);
  await opens(good, { ...cfg, modules_to_not_convert: ["o_proj"] }, "E_QUANT", [`'${M}'`, "modules_to_not_convert"]);
});
