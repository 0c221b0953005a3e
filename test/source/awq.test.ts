/**
 * AWQ GEMM: a hand-packed word in AWQ's nibble order decodes to the formula's values, the fixture encoder
 * (AutoAWQ's order_map pack loop) round-trips bit for bit (aligned and unaligned row ranges) to the exact
 * float32 products, refusals name the module.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { awqEncode, awqModuleTensors, awqQuantizationConfig, packAwq } from "../../fixtures/awq.js";
import { writeCheckpoint, withSource, i32, f16, refusal, convertRefuses } from "./helpers.js";
import { openSource } from "../../src/source/registry.js";

const tmp = await scratchDir("ggufy-awq-");
after(() => rm(tmp, { recursive: true, force: true }));
const M = "model.layers.0.self_attn.v_proj";
let n = 0;
const dirFor = (): string => path.join(tmp, `c${n++}`);

test("AWQ nibble order [0, 2, 4, 6, 1, 3, 5, 7] by hand", async () => {
  // one input row (in = 1 … use group_size 1), 8 outputs; word 0x76543210: nibble p = p, which holds
  // output column order_map[p] → q[o] = the p with order_map[p] = o = [0, 4, 1, 5, 2, 6, 3, 7][o]
  const word = 0x76543210;
  assert.deepEqual([...packAwq(new Int32Array([0, 4, 1, 5, 2, 6, 3, 7]), 1, 8)], [word], "the fixture's pack loop agrees");
  const d = await writeCheckpoint(dirFor(), [
    { name: `${M}.qweight`, dtype: "I32", shape: [1, 1], data: i32([word]) },
    { name: `${M}.qzeros`, dtype: "I32", shape: [1, 1], data: i32([0x22222222]) }, // zero 2 everywhere
    { name: `${M}.scales`, dtype: "F16", shape: [1, 8], data: f16([0x3c00, 0x4000, 0x3800, 0x3c00, 0x4200, 0x3c00, 0x3c00, 0xbc00]) }, // 1 2 0.5 1 3 1 1 −1
  ], awqQuantizationConfig(1));
  await withSource(d, async (s) => {
    assert.deepEqual(s.get(`${M}.weight`)!.shape, [8, 1]);
    const q = [0, 4, 1, 5, 2, 6, 3, 7];
    const sc = [1, 2, 0.5, 1, 3, 1, 1, -1];
    assert.deepEqual([...(await s.readAll(`${M}.weight`))], q.map((v, o) => sc[o]! * (v - 2)));
  });
});

test("fixture encoder round trip over group sizes, aligned and unaligned row ranges", async () => {
  const rng = new Rng(2);
  for (const gs of [32, 64, 128]) {
    const outF = 72;
    const inF = 256;
    const e = awqEncode(rng.normals(outF * inF, 0, 0.03), outF, inF, gs);
    const d = await writeCheckpoint(dirFor(), awqModuleTensors(M, e, outF, inF), awqQuantizationConfig(gs));
    await withSource(d, async (s) => {
      assert.deepEqual(await s.readAll(`${M}.weight`), e.expected);
      assert.deepEqual(await s.readRows(`${M}.weight`, 5, 19), e.expected.subarray(5 * inF, 24 * inF), "rows 5..23 (words cut in the middle)");
    });
  }
});

test("refusals name the module", async () => {
  const rng = new Rng(3);
  const e = awqEncode(rng.normals(16 * 64, 0, 0.03), 16, 64, 32);
  const good = awqModuleTensors(M, e, 16, 64);
  const opens = async (ts: typeof good, c: Record<string, unknown>, code: string, parts: string[]): Promise<void> => {
    const d = await writeCheckpoint(dirFor(), ts, c);
    await refusal(openSource(d), code, parts);
    await convertRefuses(d, dirFor(), code, parts);
  };
  await opens(good, awqQuantizationConfig(32, { bits: 3 }), "E_UNSUPPORTED_QUANT", ["bits is 3", "4-bit"]);
  await opens(good, awqQuantizationConfig(32, { version: "gemv" }), "E_UNSUPPORTED_QUANT", ["'gemv'", "GEMM"]);
  await opens(good, awqQuantizationConfig(32, { zero_point: false }), "E_UNSUPPORTED_QUANT", ["zero_point is false"]);
  await opens(good, awqQuantizationConfig(16), "E_QUANT", [`'${M}'`, "scales", "group_size 16", "[4, 16]"]);
  await opens(good.filter((t) => !t.name.endsWith(".scales")), awqQuantizationConfig(32), "E_QUANT", [`'${M}'`, "the scale", "missing"]);
  await opens(good.map((t) => (t.name.endsWith(".qzeros") ? { ...t, shape: [1, 2], data: t.data.subarray(0, 8) } : t)), awqQuantizationConfig(32), "E_QUANT", [`'${M}'`, "qzeros", "I32 [2, 2]"]);
});
