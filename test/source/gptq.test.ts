/**
 * GPTQ: hand-packed words decode to the formula's values (3-bit values straddling 32-bit words,
 * act-order g_idx, checkpoint_format gptq vs gptq_v2 zeros), the independent fixture encoder
 * (AutoGPTQ's pack loops) round-trips through the decoder bit for bit for every bits × group size ×
 * act-order × sym × format, and every refusal names the module.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { gptqEncode, gptqModuleTensors, gptqQuantizationConfig, packAutoGptq } from "../../fixtures/gptq.js";
import { writeCheckpoint, withSource, i32, f16, refusal, convertRefuses } from "./helpers.js";
import { openSource } from "../../src/source/registry.js";
import type { StTensor } from "../../src/formats/safetensors/index.js";

const tmp = await scratchDir("ggufy-gptq-");
after(() => rm(tmp, { recursive: true, force: true }));
const M = "model.layers.0.mlp.up_proj";
let n = 0;
const dirFor = (): string => path.join(tmp, `c${n++}`);

test("3-bit: 32 values in 3 words, values 10 and 21 straddling word boundaries", async () => {
  // q_k = (5k + 3) mod 8, packed by hand as the bit stream 3k..3k+2 (value 10: bits 30,31 of word 0 and
  // bit 0 of word 1; value 21: bit 31 of word 1 and bits 0,1 of word 2)
  const q = Array.from({ length: 32 }, (_, k) => (5 * k + 3) % 8);
  const words = [0x43c67543, 0x7543c675, 0xc67543c6 | 0];
  // the fixture's AutoGPTQ loop packs the same words (two independent packings agree)
  assert.deepEqual([...packAutoGptq(new Int32Array(q), 32, 1, 3)], words.map((w) => w | 0));
  // one output row, in = 32, group_size -1, scale 1 (f16 0x3c00), gptq_v2 zero 0 → w = q
  // out must be a multiple of 32 for 3-bit qzeros: 32 output rows, row o's qweight column = the words rotated by o
  const out = 32;
  const qw: number[] = [];
  for (let w = 0; w < 3; w++) for (let o = 0; o < out; o++) qw.push(words[w]!);
  const d = await writeCheckpoint(dirFor(), [
    { name: `${M}.qweight`, dtype: "I32", shape: [3, out], data: i32(qw) },
    { name: `${M}.qzeros`, dtype: "I32", shape: [1, 3], data: i32([0, 0, 0]) },
    { name: `${M}.scales`, dtype: "F16", shape: [1, out], data: f16(new Array(out).fill(0x3c00)) },
  ], { quant_method: "gptq", bits: 3, group_size: -1, desc_act: false, sym: true, checkpoint_format: "gptq_v2" });
  await withSource(d, async (s) => {
    const t = s.get(`${M}.weight`)!;
    assert.deepEqual(t.shape, [32, 32]);
    const rows = await s.readRows(`${M}.weight`, 5, 2);
    assert.deepEqual([...rows.subarray(0, 32)], q);
    assert.deepEqual([...rows.subarray(32)], q);
  });
  // zeros straddle too: qzeros words = the same stream → zero of output o = q_o; w[o][k] = q_k − q_o
  const d2 = await writeCheckpoint(dirFor(), [
    { name: `${M}.qweight`, dtype: "I32", shape: [3, out], data: i32(qw) },
    { name: `${M}.qzeros`, dtype: "I32", shape: [1, 3], data: i32(words) },
    { name: `${M}.scales`, dtype: "F16", shape: [1, out], data: f16(new Array(out).fill(0x4000)) }, // 2.0
  ], { quant_method: "gptq", bits: 3, group_size: -1, checkpoint_format: "gptq_v2" });
  await withSource(d2, async (s) => {
    for (const o of [9, 10, 11, 20, 21, 22]) {
      const r = await s.readRows(`${M}.weight`, o, 1);
      assert.deepEqual([...r], q.map((v) => 2 * (v - q[o]!)), `row ${o}`);
    }
  });
});

/** 4-bit, in 8, out 8, group_size 4, act-order g_idx; scales 0.5 (group 0) and 2 (group 1); stored zeros 7 and 3. */
async function actOrder(format: "gptq" | "gptq_v2"): Promise<Float32Array> {
  const gIdx = [1, 0, 1, 0, 0, 1, 1, 0];
  const out = 8;
  const K = 8;
  // q[k][o] = (k + o) mod 16, one word per column: nibble k = q[k][o]
  const qw: number[] = [];
  for (let o = 0; o < out; o++) {
    let w = 0;
    for (let k = 0; k < K; k++) w |= ((k + o) % 16) << (4 * k);
    qw.push(w | 0);
  }
  const zrow = (z: number): number => { let w = 0; for (let o = 0; o < out; o++) w |= z << (4 * o); return w | 0; };
  const d = await writeCheckpoint(dirFor(), [
    { name: `${M}.qweight`, dtype: "I32", shape: [1, out], data: i32(qw) },
    { name: `${M}.qzeros`, dtype: "I32", shape: [2, 1], data: i32([zrow(7), zrow(3)]) },
    { name: `${M}.scales`, dtype: "F16", shape: [2, out], data: f16([...new Array(out).fill(0x3800), ...new Array(out).fill(0x4000)]) },
    { name: `${M}.g_idx`, dtype: "I32", shape: [K], data: i32(gIdx) },
  ], { quant_method: "gptq", bits: 4, group_size: 4, desc_act: true, sym: false, checkpoint_format: format });
  return withSource(d, async (s) => {
    assert.match(s.get(`${M}.weight`)!.encoding, /act-order/);
    return s.readAll(`${M}.weight`);
  });
}

test("act-order g_idx and v1 (stored zero + 1) vs v2 zeros", async () => {
  const v1 = await actOrder("gptq");
  const v2 = await actOrder("gptq_v2");
  // w[o][k] = scale[g] · (q − zero[g]), g = g_idx[k]; v1 zeros 8 / 4, v2 zeros 7 / 3
  const gIdx = [1, 0, 1, 0, 0, 1, 1, 0];
  const scale = [0.5, 2];
  for (let o = 0; o < 8; o++) {
    for (let k = 0; k < 8; k++) {
      const g = gIdx[k]!;
      const q = (k + o) % 16;
      assert.equal(v1[o * 8 + k], scale[g]! * (q - [8, 4][g]!), `v1 [${o}][${k}]`);
      assert.equal(v2[o * 8 + k], scale[g]! * (q - [7, 3][g]!), `v2 [${o}][${k}]`);
    }
  }
  // a few by hand: [0][0]: g 1, q 0 → 2·(0 − 4) = −8 (v1), −6 (v2); [3][1]: g 0, q 4 → 0.5·(4 − 8) = −2 (v1), −1.5 (v2)
  assert.equal(v1[0], -8);
  assert.equal(v2[0], -6);
  assert.equal(v1[3 * 8 + 1], -2);
  assert.equal(v2[3 * 8 + 1], -1.5);
});

test("the fixture encoder round-trips bit for bit: bits × group size × act-order × sym × format (row ranges too)", async () => {
  const rng = new Rng(7);
  const outF = 96;
  const inF = 256;
  let cases = 0;
  for (const bits of [2, 3, 4, 8] as const) {
    for (const groupSize of [-1, 32, 64, 128]) {
      for (const descAct of [false, true]) {
        for (const sym of [false, true]) {
          const format = (cases % 2 ? "gptq" : "gptq_v2") as "gptq" | "gptq_v2";
          const o = { bits, groupSize, descAct, sym, format, rng };
          const w = rng.normals(outF * inF, 0, 0.02);
          const e = gptqEncode(w, outF, inF, o);
          const d = await writeCheckpoint(dirFor(), gptqModuleTensors(M, e, outF, inF, bits), gptqQuantizationConfig(o));
          await withSource(d, async (s) => {
            const all = await s.readAll(`${M}.weight`);
            assert.deepEqual(new Uint32Array(all.buffer), new Uint32Array(e.expected.buffer), JSON.stringify({ bits, groupSize, descAct, sym, format }));
            // a row range not aligned to anything (3-bit zero words straddle it)
            const part = await s.readRows(`${M}.weight`, 13, 37);
            assert.deepEqual(part, e.expected.subarray(13 * inF, 50 * inF));
          });
          cases++;
        }
      }
    }
  }
  assert.equal(cases, 64);
});

test("AutoGPTQ's quantize_config.json (no quantization_config) is read", async () => {
  const rng = new Rng(3);
  const o = { bits: 4 as const, groupSize: 32, descAct: false, sym: true, format: "gptq" as const, rng };
  const w = rng.normals(32 * 64, 0, 0.02);
  const e = gptqEncode(w, 32, 64, o);
  const d = await writeCheckpoint(dirFor(), gptqModuleTensors(M, e, 32, 64, 4), undefined);
  await writeFile(path.join(d, "quantize_config.json"), JSON.stringify({ bits: 4, group_size: 32, desc_act: false, sym: true, damp_percent: 0.01 }));
  await withSource(d, async (s) => assert.deepEqual(await s.readAll(`${M}.weight`), e.expected));
});

test("refusals name the module (and convert leaves nothing behind)", async () => {
  const rng = new Rng(9);
  const o = { bits: 4 as const, groupSize: 32, descAct: true, sym: false, format: "gptq" as const, rng };
  const e = gptqEncode(rng.normals(32 * 64, 0, 0.02), 32, 64, o);
  const good = gptqModuleTensors(M, e, 32, 64, 4);
  const cfg = gptqQuantizationConfig(o);
  const edit = (name: string, t: Partial<StTensor> | undefined): StTensor[] => (t ? good.map((x) => (x.name === `${M}.${name}` ? { ...x, ...t } : x)) : good.filter((x) => x.name !== `${M}.${name}`));
  const opens = async (ts: StTensor[], c: Record<string, unknown>, code: string, parts: (string | RegExp)[]): Promise<void> => {
    const d = await writeCheckpoint(dirFor(), ts, c);
    await refusal(openSource(d), code, parts);
    await convertRefuses(d, dirFor(), code, parts);
  };
  await opens(good, { ...cfg, bits: 5 }, "E_UNSUPPORTED_QUANT", ["bits is 5", "2, 3, 4, 8"]);
  await opens(good, { ...cfg, checkpoint_format: "marlin" }, "E_UNSUPPORTED_QUANT", ["'marlin'", "gptq, gptq_v2"]);
  await opens(edit("scales", { shape: [3, 32], data: new Uint8Array(3 * 32 * 2) }), cfg, "E_QUANT", [`'${M}'`, "scales", "[3,32]", "needs a float [2, 32]"]);
  await opens(good, { ...cfg, group_size: 16 }, "E_QUANT", [`'${M}'`, "group_size 16", "[4, 32]"]);
  await opens(edit("qzeros", { shape: [2, 3], data: new Uint8Array(2 * 3 * 4) }), cfg, "E_QUANT", [`'${M}'`, "qzeros", "[2,3]", "I32 [2, 4]"]);
  await opens(edit("qweight", { dtype: "I16", shape: [16, 32] }), cfg, "E_QUANT", [`'${M}'`, "qweight", "I16"]);
  const gi = new Int32Array(e.gIdx);
  gi[17] = 2;
  await opens(edit("g_idx", { data: new Uint8Array(gi.buffer) }), cfg, "E_QUANT", [`'${M}'`, "g_idx[17] = 2", "outside the 2 groups"]);
  await opens(edit("scales", undefined), cfg, "E_QUANT", [`'${M}'`, "the scale", `'${M}.scales' is missing`]);
  await opens(edit("g_idx", undefined), cfg, "E_QUANT", [`'${M}'`, "desc_act", "g_idx' is missing"]);
  await opens(edit("qweight", undefined), cfg, "E_QUANT", [`'${M}'`, "qweight' is missing"]);
  await opens(good, { ...cfg, modules_to_not_convert: ["up_proj"] }, "E_QUANT", [`'${M}'`, "modules_to_not_convert"]);
  await opens(good, { quant_method: "hqq", nbits: 4 }, "E_UNSUPPORTED_QUANT", ["'hqq'", "bitsandbytes", "gptq", "fp8"]);
  // a scheme's keys but the config names none: the packed tensors are refused as non-float
  await opens(good, undefined as never, "E_UNSUPPORTED_QUANT", [`${M}.`, "I32", "no quantization scheme claims it"]);
});
