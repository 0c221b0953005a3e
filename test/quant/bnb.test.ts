/**
 * bitsandbytes decoder: hand-computed vectors. Expectations are computed here from bitsandbytes' tables (float32
 * bit patterns typed again in this file) with Math.fround and a local RNE — never by calling the decoder.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { detectBnb, decodeBnbRows, describeBnb, type BnbModule } from "../../src/quant/bnb/index.js";
import { memoryCheckpoint, pyJsonDumps, quantize4bit } from "../../fixtures/bnb.js";
import type { StTensor } from "../../src/formats/safetensors/index.js";

const fr = Math.fround;
const bitsToF32 = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0]!;
const f32Bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;

// spec 2.6, typed again from the hex columns
const NF4 = [0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000].map(bitsToF32);
const FP4 = [0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000, 0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000].map(bitsToF32);
const INT8_C = bitsToF32(0x3c010204);

/** bf16 RNE of a float32 value (local, bit-level). */
function bf16(x: number): number {
  const u = f32Bits(x);
  const r = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  return bitsToF32((r >>> 16) << 16);
}
/** f16 RNE of a float32 value (local: scale to an integer grid; exact in double). */
function f16(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const e = Math.max(-14, Math.floor(Math.log2(a)) - (2 ** Math.floor(Math.log2(a)) > a ? 1 : 0));
  const q = 2 ** (e - 10);
  const t = a / q;
  let r = Math.floor(t);
  if (t - r > 0.5 || (t - r === 0.5 && r % 2 === 1)) r++;
  const v = r * q >= 65520 ? Infinity : r * q;
  return x < 0 ? -v : v;
}

function f32Data(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}
function json(obj: Record<string, unknown>): Uint8Array {
  return new Uint8Array(Buffer.from(pyJsonDumps(obj as never), "utf8"));
}
function qsTensor(w: string, kind: string, obj: Record<string, unknown>): StTensor {
  const data = json(obj);
  return { name: `${w}.quant_state.bitsandbytes__${kind}`, dtype: "U8", shape: [data.length], data };
}
/** bit-exact comparison that distinguishes -0 from +0 */
function assertBits(got: Float32Array, want: number[], what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (f32Bits(got[i]!) !== f32Bits(want[i]!)) assert.fail(`${what}[${i}]: got ${got[i]} (0x${f32Bits(got[i]!).toString(16)}), want ${want[i]} (0x${f32Bits(want[i]!).toString(16)})`);
  }
}

async function decodeAll(tensors: StTensor[], config?: unknown): Promise<{ m: BnbModule; out: Float32Array }> {
  const mc = memoryCheckpoint(tensors);
  const mods = await detectBnb(mc.infos, mc.readSmall, config);
  assert.equal(mods.size, 1);
  const m = [...mods.values()][0]!;
  return { m, out: await decodeBnbRows(m, mc.read, 0, m.rows) };
}

const W = "model.layers.0.mlp.up_proj.weight";

test("NF4, blocksize 4, partial last block, f32 and bf16 output", async () => {
  // shape [2, 3]: 6 elements, blocks [0..3] and [4..5]; nibbles 0 F 7 A 3 1
  const nibbles = [0x0, 0xf, 0x7, 0xa, 0x3, 0x1];
  const packed = new Uint8Array([0x0f, 0x7a, 0x31]);
  const absmax = [fr(2.5), fr(0.3)];
  for (const dtype of ["float32", "bfloat16"] as const) {
    const tensors: StTensor[] = [
      { name: W, dtype: "U8", shape: [3, 1], data: packed },
      { name: `${W}.absmax`, dtype: "F32", shape: [2], data: f32Data(absmax) },
      { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
      qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 4, dtype, shape: [2, 3] }),
    ];
    const { m, out } = await decodeAll(tensors);
    const want = nibbles.map((nib, i) => {
      const v = fr(NF4[nib]! * absmax[Math.floor(i / 4)]!);
      return dtype === "bfloat16" ? bf16(v) : v;
    });
    assertBits(out, want, `nf4 ${dtype}`);
    assert.deepEqual(m.shape, [2, 3]);
    assert.equal(m.kind, "nf4");
    assert.equal(describeBnb(m), `nf4 bs4 ${dtype === "float32" ? "f32" : "bf16"} (u8 storage)`);
    assert.deepEqual([...m.auxKeys].sort(), [`${W}.absmax`, `${W}.quant_map`, `${W}.quant_state.bitsandbytes__nf4`].sort());
  }
  // a worked example (docs/bitsandbytes.md): [1.0, -1.0, 0.0, 1.0] -> F0 7F
  const q = quantize4bit(new Float32Array([1, -1, 0, 1]), 64, "nf4");
  assert.deepEqual([...q.packed], [0xf0, 0x7f]);
});

test("NF4 odd element count: the last byte's low nibble is padding", async () => {
  const packed = new Uint8Array([0xe1, 0x9c, 0x5f]); // elements: E 1 9 C 5 | pad F
  const absmax = [fr(1.75)];
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [3, 1], data: packed },
    { name: `${W}.absmax`, dtype: "F32", shape: [1], data: f32Data(absmax) },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
    qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 64, dtype: "float16", shape: [1, 5] }),
  ];
  const { out } = await decodeAll(tensors);
  assertBits(out, [0xe, 0x1, 0x9, 0xc, 0x5].map((n) => f16(fr(NF4[n]! * 1.75))), "nf4 odd f16");
});

test("FP4: every nibble, nibble 8 is -0.0 (and +0.0 under a negative scale), f16 output", async () => {
  const packed = new Uint8Array([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x08, 0x80]);
  // blocks of 8: block0 = nibbles 0..7, block1 = 8..F, block2 = 0 8 8 0 (scale 0), and 2 more elems in block 2
  const absmax = [fr(3.3), fr(1e-3), fr(0)];
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [10, 1], data: packed },
    { name: `${W}.absmax`, dtype: "F32", shape: [3], data: f32Data(absmax) },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(FP4.map((v, i) => (i === 8 ? 0 : v))) },
    qsTensor(W, "fp4", { quant_type: "fp4", blocksize: 8, dtype: "float32", shape: [4, 5] }),
  ];
  const nibs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 8, 8, 0];
  const { m, out } = await decodeAll(tensors);
  assert.deepEqual(m.warnings, [], "a stored quant_map with +0.0 at 8 is bitsandbytes' own");
  const want = nibs.map((n, i) => fr(FP4[n]! * absmax[Math.floor(i / 8)]!));
  assertBits(out, want, "fp4");
  assert.ok(Object.is(out[8], -0), "nibble 8 × positive absmax = -0.0");
  assert.ok(Object.is(out[17], -0), "nibble 8 × 0 = -0.0");
  assert.ok(Object.is(out[16], 0), "nibble 0 × 0 = +0.0");

  // negative absmax can come out of double quantization: nibble 8 then gives +0.0, nibble 0 gives -0.0
  const code = new Float32Array(256).map((_, i) => (i - 128) / 128);
  const tensors2: StTensor[] = [
    { name: W, dtype: "U8", shape: [1, 1], data: new Uint8Array([0x80]) },
    { name: `${W}.absmax`, dtype: "U8", shape: [1], data: new Uint8Array([0]) }, // code[0] = -1
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(FP4) },
    { name: `${W}.nested_absmax`, dtype: "F32", shape: [1], data: f32Data([2]) },
    { name: `${W}.nested_quant_map`, dtype: "F32", shape: [256], data: new Uint8Array(code.buffer) },
    qsTensor(W, "fp4", { quant_type: "fp4", blocksize: 64, dtype: "float32", shape: [1, 2], nested_blocksize: 256, nested_dtype: "float32", nested_offset: 0.5 }),
  ];
  const r2 = await decodeAll(tensors2);
  // absmax = f32(-1 * 2) + 0.5 = -1.5
  assertBits(r2.out, [fr(FP4[8]! * -1.5), fr(FP4[0]! * -1.5)], "fp4 negative scale");
  assert.ok(Object.is(r2.out[0], 0) && Object.is(r2.out[1], -0));
});

test("double quantization: stored nested map, offset, a partial nested block, bf16 output", async () => {
  // 6 blocks of 4 elements (shape [3, 8]); nested blocks of 4 → nested block 1 holds only blocks 4 and 5
  const nmap = new Float32Array(256);
  for (let i = 0; i < 256; i++) nmap[i] = fr((i - 127) / 131); // deliberately NOT the dynamic map
  const q = [0, 255, 127, 200, 13, 90];
  const nabs = [fr(0.8), fr(0.0625)];
  const offset = fr(0.05190277099609375);
  const absmaxRec = q.map((c, b) => fr(fr(nmap[c]! * nabs[Math.floor(b / 4)]!) + offset));
  const nibbles: number[] = [];
  for (let i = 0; i < 24; i++) nibbles.push((i * 7 + 3) % 16);
  const packed = new Uint8Array(12).map((_, k) => (nibbles[2 * k]! << 4) | nibbles[2 * k + 1]!);
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [12, 1], data: packed },
    { name: `${W}.absmax`, dtype: "U8", shape: [6], data: new Uint8Array(q) },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
    { name: `${W}.nested_absmax`, dtype: "F32", shape: [2], data: f32Data(nabs) },
    { name: `${W}.nested_quant_map`, dtype: "F32", shape: [256], data: new Uint8Array(nmap.buffer) },
    qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 4, dtype: "bfloat16", shape: [3, 8], nested_blocksize: 4, nested_dtype: "float32", nested_offset: 0.05190277099609375 }),
  ];
  const { m, out } = await decodeAll(tensors);
  assert.equal(m.doubleQuant, true);
  assert.equal(describeBnb(m), "nf4-dq bs4 bf16 (u8 storage)");
  assert.ok(absmaxRec[0]! < 0, "block 0's reconstructed absmax is negative: no abs, no clamp");
  assertBits(out, nibbles.map((n, i) => bf16(fr(NF4[n]! * absmaxRec[Math.floor(i / 4)]!))), "nf4-dq");
});

test("double quantization with the real 256 nested blocksize and a partial last nested block", async () => {
  // 300 blocks of 32 → nested blocks [0, 256) and [256, 300)
  const nb = 300;
  const nmap = new Float32Array(256).map((_, i) => fr(Math.sin(i) * 0.9));
  const q = new Uint8Array(nb).map((_, b) => (b * 37 + 11) & 0xff);
  const nabs = [fr(0.0123), fr(0.5)];
  const offset = fr(0.0173);
  const n = nb * 32;
  const nibbles = new Uint8Array(n).map((_, i) => (i * 5 + (i >> 3)) & 15);
  const packed = new Uint8Array(n / 2).map((_, k) => (nibbles[2 * k]! << 4) | nibbles[2 * k + 1]!);
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [n / 2, 1], data: packed },
    { name: `${W}.absmax`, dtype: "U8", shape: [nb], data: q },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
    { name: `${W}.nested_absmax`, dtype: "F32", shape: [2], data: f32Data(nabs) },
    { name: `${W}.nested_quant_map`, dtype: "F32", shape: [256], data: new Uint8Array(nmap.buffer) },
    qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 32, dtype: "float32", shape: [60, 160], nested_blocksize: 256, nested_dtype: "float32", nested_offset: offset }),
  ];
  const { out } = await decodeAll(tensors);
  const want: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / 32);
    const a = fr(fr(nmap[q[b]!]! * nabs[b >> 8]!) + offset);
    want.push(fr(NF4[nibbles[i]!]! * a));
  }
  assertBits(out, want, "nf4-dq 256");
});

test("all-zero blocks: the encoder writes nibble 0; NF4 decodes -0.0, FP4 +0.0; with double quant the offset remains", async () => {
  const zeros = new Float32Array(64);
  for (const kind of ["nf4", "fp4"] as const) {
    const q = quantize4bit(zeros, 64, kind);
    assert.ok(q.packed.every((b) => b === 0), `${kind}: all-zero block encodes as nibble 0 (0 * inf = NaN path)`);
    assert.equal(q.absmax[0], 0);
    const tensors: StTensor[] = [
      { name: W, dtype: "U8", shape: [32, 1], data: q.packed },
      { name: `${W}.absmax`, dtype: "F32", shape: [1], data: f32Data([0]) },
      { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(kind === "nf4" ? NF4 : FP4) },
      qsTensor(W, kind, { quant_type: kind, blocksize: 64, dtype: "float32", shape: [8, 8] }),
    ];
    const { out } = await decodeAll(tensors);
    assertBits(out, new Array(64).fill(kind === "nf4" ? -0 : 0), `${kind} zero block`);
  }
  // double quant: code 127 (0.0 in the dynamic map) * nested absmax + offset = offset, not 0
  const nmap = new Float32Array(256).map((_, i) => (i === 127 ? 0 : (i - 127) / 128));
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [2, 1], data: new Uint8Array([0x00, 0x7f]) },
    { name: `${W}.absmax`, dtype: "U8", shape: [1], data: new Uint8Array([127]) },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
    { name: `${W}.nested_absmax`, dtype: "F32", shape: [1], data: f32Data([0.25]) },
    { name: `${W}.nested_quant_map`, dtype: "F32", shape: [256], data: new Uint8Array(nmap.buffer) },
    qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 64, dtype: "float32", shape: [1, 4], nested_blocksize: 256, nested_dtype: "float32", nested_offset: 0.001 }),
  ];
  const { out } = await decodeAll(tensors);
  const off = fr(0.001);
  assertBits(out, [fr(-off), fr(-off), 0, fr(NF4[15]! * off)], "dq zero block");
});

test("quant_storage: packed bytes stored as BF16 / F32 tensors are read raw", async () => {
  const nibbles = [3, 12, 0, 15, 7, 8, 9, 1];
  const packed = new Uint8Array([0x3c, 0x0f, 0x78, 0x91]);
  const absmax = [fr(0.125), fr(7)];
  for (const [dtype, shape] of [["BF16", [2, 1]], ["F32", [1, 1]], ["F16", [2, 1]]] as const) {
    const tensors: StTensor[] = [
      { name: W, dtype, shape, data: packed },
      { name: `${W}.absmax`, dtype: "F32", shape: [2], data: f32Data(absmax) },
      { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
      qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 4, dtype: "float32", shape: [2, 4] }),
    ];
    const { m, out } = await decodeAll(tensors);
    assert.equal(m.storageDtype, dtype);
    assert.equal(describeBnb(m), `nf4 bs4 f32 (${dtype.toLowerCase()} storage)`);
    assertBits(out, nibbles.map((n, i) => fr(NF4[n]! * absmax[i >> 2]!)), `storage ${dtype}`);
  }
});

test("LLM.int8: f32(f32(CB*SCB) * 0x3C010204), SCB 0 rows, weight_format present or absent, dtype from config", async () => {
  const M = "model.layers.0.mlp.up_proj";
  const cb = new Int8Array([127, -127, 5, -1, 0, 3, -128, -7, 64, 1, -2, 100]);
  const scb = [fr(2.5), 0, fr(0.0039978027)];
  const base: StTensor[] = [
    { name: `${M}.weight`, dtype: "I8", shape: [3, 4], data: new Uint8Array(cb.buffer) },
    { name: `${M}.SCB`, dtype: "F32", shape: [3], data: f32Data(scb) },
  ];
  const raw = [...cb].map((c, i) => fr(fr(c * scb[i >> 2]!) * INT8_C));
  assert.ok(Object.is(raw[7], -0) && Object.is(raw[4], 0), "SCB 0 keeps the sign of CB");
  for (const withFormat of [false, true]) {
    const tensors = withFormat ? [...base, { name: `${M}.weight_format`, dtype: "U8" as const, shape: [], data: new Uint8Array([0]) }] : base;
    for (const [config, dt, round] of [
      [{ torch_dtype: "float16", model_type: "llama" }, "f16", f16],
      [{ torch_dtype: "float32", model_type: "llama" }, "f32", (x: number) => x],
      [{ torch_dtype: "bfloat16", model_type: "llama" }, "bf16", bf16],
    ] as const) {
      const { m, out } = await decodeAll(tensors, config);
      assert.equal(m.kind, "int8");
      assert.equal(m.dtype, dt);
      assert.deepEqual(m.auxKeys, withFormat ? [`${M}.SCB`, `${M}.weight_format`] : [`${M}.SCB`]);
      assertBits(out, raw.map(round), `int8 ${dt} format=${withFormat}`);
    }
  }
  // without a config the dtype comes from the plain tensors (here one F16 norm) — transformers casts to model.dtype
  const mc = memoryCheckpoint([...base, { name: "model.norm.weight", dtype: "BF16", shape: [2], data: new Uint8Array(4) }]);
  const mods = await detectBnb(mc.infos, mc.readSmall);
  assert.equal(mods.get(`${M}.weight`)!.dtype, "bf16");
  assert.equal(describeBnb(mods.get(`${M}.weight`)!), "int8 row bf16 (SCB)");
});

test("row ranges read only what they need and equal the full decode", async () => {
  // NF4 + DQ, shape [9, 44] with blocksize 32: blocks straddle rows, odd element starts
  const nb = Math.ceil((9 * 44) / 32);
  const nmap = new Float32Array(256).map((_, i) => fr((i - 127) / 127));
  const n = 9 * 44;
  const packed = new Uint8Array(n / 2).map((_, k) => (k * 29 + 7) & 0xff);
  const tensors: StTensor[] = [
    { name: W, dtype: "U8", shape: [n / 2, 1], data: packed },
    { name: `${W}.absmax`, dtype: "U8", shape: [nb], data: new Uint8Array(nb).map((_, b) => 130 + b * 9) },
    { name: `${W}.quant_map`, dtype: "F32", shape: [16], data: f32Data(NF4) },
    { name: `${W}.nested_absmax`, dtype: "F32", shape: [1], data: f32Data([1.5]) },
    { name: `${W}.nested_quant_map`, dtype: "F32", shape: [256], data: new Uint8Array(nmap.buffer) },
    qsTensor(W, "nf4", { quant_type: "nf4", blocksize: 32, dtype: "float16", shape: [9, 44], nested_blocksize: 256, nested_dtype: "float32", nested_offset: 0.01 }),
  ];
  const mc = memoryCheckpoint(tensors);
  const m = (await detectBnb(mc.infos, mc.readSmall)).get(W)!;
  const full = await decodeBnbRows(m, mc.read, 0, 9);
  for (let r0 = 0; r0 < 9; r0++) {
    for (let k = 0; r0 + k <= 9; k++) {
      mc.log.length = 0;
      const part = await decodeBnbRows(m, mc.read, r0, k);
      assertBits(part, [...full.subarray(r0 * 44, (r0 + k) * 44)], `rows [${r0}, ${r0 + k})`);
      for (const r of mc.log.filter((l) => l.name === W)) {
        assert.ok(r.off === Math.floor((r0 * 44) / 2) && r.len === Math.ceil(((r0 + k) * 44) / 2) - r.off, `packed read [${r.off}, +${r.len}) for rows [${r0}, ${r0 + k})`);
      }
    }
  }
  await assert.rejects(decodeBnbRows(m, mc.read, 8, 2), RangeError);
});
