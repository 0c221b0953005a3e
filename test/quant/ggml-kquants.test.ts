/**
 * K-quants (Q2_K…Q6_K) and ternary types (TQ1_0, TQ2_0): bytes and dequantized floats compared
 * with ggml itself (ggml_quantize_chunk with imatrix = NULL, and type_traits.to_float) on many
 * data distributions, plus hand-written golden facts (docs/bit-exact.md).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codecFor, GGMLType, typeName } from "../../src/quant/ggml/index.js";
import type { BlockCodec } from "../../src/quant/ggml/codec.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { quantizeQ4KScalar } from "../../src/quant/ggml/q4_k.js";
import { quantizeQ5KScalar } from "../../src/quant/ggml/q5_k.js";
import { quantizeQ6KScalar } from "../../src/quant/ggml/q6_k.js";

/** The TypeScript search paths, checked on their own even where the codec uses a WebAssembly kernel. */
const SCALAR: Partial<Record<GGMLType, (src: Float32Array, dst: Uint8Array) => void>> = {
  [GGMLType.Q4_K]: quantizeQ4KScalar,
  [GGMLType.Q5_K]: quantizeQ5KScalar,
  [GGMLType.Q6_K]: quantizeQ6KScalar,
};

const TYPES = [GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.TQ1_0, GGMLType.TQ2_0];
const ROWS = 4;
const NE0 = 4096;
const N = ROWS * NE0;

// ---- seeded data -------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(rng: () => number): () => number {
  return () => {
    const u = 1 - rng();
    const v = rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

function fill(n: number, seed: number, f: (i: number, rnd: () => number, nrm: () => number) => number): Float32Array {
  const rng = mulberry32(seed);
  const nrm = normals(rng);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f(i, rng, nrm);
  return out;
}

const DATASETS: Array<[string, () => Float32Array]> = [
  ["normal σ=0.02", () => fill(N, 1, (_i, _r, g) => 0.02 * g())],
  ["normal σ=1", () => fill(N, 2, (_i, _r, g) => g())],
  ["uniform [-1,1)", () => fill(N, 3, (_i, r) => 2 * r() - 1)],
  ["heavy tails + outliers", () => fill(N, 4, (_i, r, g) => (r() < 0.01 ? 50 * g() : g() / Math.max(0.05, Math.abs(g()))) * 0.01)],
  ["all zeros", () => new Float32Array(N)],
  ["single non-zero per row", () => {
    const x = new Float32Array(N);
    for (let r = 0; r < ROWS; r++) x[r * NE0 + 37 + 700 * r] = r % 2 ? -0.73 : 1.5;
    return x;
  }],
  ["single non-zero per block", () => fill(N, 5, (i, r) => (i % 256 === (i >> 8) % 256 ? (r() - 0.5) * 4 : 0))],
  ["tiny 1e-30", () => fill(N, 6, (_i, _r, g) => 1e-30 * g())],
  ["small 1e-6", () => fill(N, 7, (_i, _r, g) => 1e-6 * g())],
  ["small 1e-6 positive", () => fill(N, 8, (_i, r) => 1e-6 * (0.5 + r()))],
  ["identical values per row", () => fill(N, 9, (i) => [0.375, -1.25, 3e-3, 7][i >> 12]!)],
  ["half-steps (ties)", () => fill(N, 10, (_i, r) => (Math.floor(r() * 33) - 16) * 0.5)],
  ["quarter-steps", () => fill(N, 11, (_i, r) => (Math.floor(r() * 17) - 8) * 0.25)],
  ["all positive", () => fill(N, 12, (_i, _r, g) => Math.abs(0.05 * g()) + 1e-3)],
  ["all negative", () => fill(N, 13, (_i, r) => -0.1 - r())],
  ["ternary", () => fill(N, 14, (_i, r) => 0.8 * (Math.floor(r() * 3) - 1))],
  ["sparse with zero blocks", () => fill(N, 15, (i, _r, g) => ((i >> 8) % 3 === 0 ? 0 : (i & 7) === 0 ? g() : 0))],
  ["just below powers of two", () => fill(N, 16, (_i, r) => (r() < 0.5 ? -1 : 1) * Math.fround(2 ** (Math.floor(r() * 8) - 4) * (1 - 2 ** -24)))],
  ["subnormal 1e-40", () => fill(N, 17, (_i, _r, g) => 1e-40 * g())],
  ["wide range", () => fill(N, 18, (_i, r, g) => g() * 10 ** (r() * 8 - 4))],
];

// ---- comparison helpers ------------------------------------------------------------------------

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function firstBlockMismatch(codec: BlockCodec, ours: Uint8Array, ref: Uint8Array): number {
  for (let i = 0; i < ref.length; i++) if (ours[i] !== ref[i]) return Math.floor(i / codec.typeSize);
  return -1;
}

function assertBytes(label: string, codec: BlockCodec, src: Float32Array, ours: Uint8Array, ref: Uint8Array): void {
  assert.equal(ours.length, ref.length, `${label}: length`);
  const b = firstBlockMismatch(codec, ours, ref);
  if (b < 0) return;
  const s = b * codec.typeSize;
  const e = s + codec.typeSize;
  let diffAt = s;
  while (ours[diffAt] === ref[diffAt]) diffAt++;
  const xs = Array.from(src.subarray(b * codec.blockSize, b * codec.blockSize + 16), (v) => v.toPrecision(6)).join(", ");
  assert.fail(
    `${label}: first mismatching block #${b} (row ${Math.floor((b * codec.blockSize) / NE0)}), byte +${diffAt - s}\n` +
      `  ours: ${hex(ours.subarray(s, e))}\n  ggml: ${hex(ref.subarray(s, e))}\n  input[0..16): ${xs} …`,
  );
}

function assertFloatBits(label: string, blockSize: number, ours: Float32Array, ref: Float32Array): void {
  const a = new Uint32Array(ours.buffer, ours.byteOffset, ours.length);
  const r = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
  for (let i = 0; i < r.length; i++) {
    if (a[i] !== r[i]) {
      assert.fail(`${label}: first mismatching value at ${i} (block #${Math.floor(i / blockSize)}): ours ${ours[i]} (0x${a[i]!.toString(16)}) ggml ${ref[i]} (0x${r[i]!.toString(16)})`);
    }
  }
}

// ---- tests -------------------------------------------------------------------------------------

for (const type of TYPES) {
  const name = typeName(type);
  test(`${name}: quantize and dequantize are bit-exact with ggml on ${DATASETS.length} distributions`, () => {
    const o = ggmlOracle();
    const codec = codecFor(type);
    assert.equal(codec.type, type);
    assert.equal(codec.typeSize * (N / codec.blockSize), o.rowSize(type, NE0) * ROWS);
    for (const [dsName, make] of DATASETS) {
      const x = make();
      const label = `${name} / ${dsName}`;
      const ref = o.quantizeChunk(type, x, NE0);
      const ours = new Uint8Array(ref.length);
      codec.quantize(x, ours);
      assertBytes(label, codec, x, ours, ref);
      const scalar = SCALAR[type];
      if (scalar) {
        const s = new Uint8Array(ref.length);
        scalar(x, s);
        assertBytes(`${label} (TypeScript path)`, codec, x, s, ref);
      }
      const y = new Float32Array(N);
      codec.dequantize(ours, y);
      assertFloatBits(`${label} (dequantize)`, codec.blockSize, y, o.dequantize(type, ref, N));
    }
  });

  test(`${name}: dequantize is bit-exact with ggml on random block bytes (finite fp16 scales)`, () => {
    const o = ggmlOracle();
    const codec = codecFor(type);
    const nb = 512;
    const rng = mulberry32(1000 + type);
    const bytes = new Uint8Array(nb * codec.typeSize);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng() * 256);
    // fp16 fields: keep them finite (NaN payload propagation is not part of the contract)
    const halfOffsets: Record<number, number[]> = {
      [GGMLType.Q2_K]: [80, 82],
      [GGMLType.Q3_K]: [108],
      [GGMLType.Q4_K]: [0, 2],
      [GGMLType.Q5_K]: [0, 2],
      [GGMLType.Q6_K]: [208],
      [GGMLType.TQ1_0]: [52],
      [GGMLType.TQ2_0]: [64],
    };
    for (let b = 0; b < nb; b++) {
      for (const off of halfOffsets[type]!) {
        const hi = b * codec.typeSize + off + 1;
        if ((bytes[hi]! & 0x7c) === 0x7c) bytes[hi] = bytes[hi]! & ~0x40;
      }
    }
    const y = new Float32Array(nb * codec.blockSize);
    codec.dequantize(bytes, y);
    assertFloatBits(`${name} random bytes`, codec.blockSize, y, o.dequantize(type, bytes, y.length));
  });
}

test("golden facts (docs/bit-exact.md): all-zero blocks, independent of the oracle", () => {
  const zeros = new Float32Array(512);
  const expect: Array<[GGMLType, string]> = [
    [GGMLType.Q2_K, "00".repeat(84)],
    [GGMLType.Q3_K, "00".repeat(110)],
    [GGMLType.Q4_K, "00".repeat(144)],
    [GGMLType.Q5_K, "00".repeat(176)],
    [GGMLType.Q6_K, "00".repeat(210)],
    [GGMLType.TQ1_0, "80".repeat(48) + "7f".repeat(4) + "0000"],
    [GGMLType.TQ2_0, "55".repeat(64) + "0000"],
  ];
  for (const [type, blockHex] of expect) {
    const codec = codecFor(type);
    const out = new Uint8Array(2 * codec.typeSize).fill(0xcd); // stale bytes must be overwritten
    codec.quantize(zeros, out);
    assert.equal(hex(out), blockHex + blockHex, typeName(type));
    const y = new Float32Array(512).fill(1);
    codec.dequantize(out, y);
    assert.ok(y.every((v) => v === 0), `${typeName(type)} zero block dequantizes to zeros`);
  }
});

test("codecs reject partial blocks and short buffers", () => {
  for (const type of TYPES) {
    const codec = codecFor(type);
    assert.throws(() => codec.quantize(new Float32Array(100), new Uint8Array(1000)), /whole number/);
    assert.throws(() => codec.quantize(new Float32Array(256), new Uint8Array(codec.typeSize - 1)), /destination/);
    assert.throws(() => codec.dequantize(new Uint8Array(codec.typeSize - 1), new Float32Array(256)), /source/);
  }
});
