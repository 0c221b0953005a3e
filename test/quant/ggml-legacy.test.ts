/**
 * Legacy 32-block quantizers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and IQ4_NL / IQ4_XS against ggml itself:
 * bytes of ggml_quantize_chunk (no imatrix) and float bit patterns of ggml's to_float, on several
 * data distributions, 4 rows × 4096 each; plus golden facts checked by hand (docs/bit-exact.md).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codecFor, GGMLType, typeName } from "../../src/quant/ggml/index.js";
import type { BlockCodec } from "../../src/quant/ggml/index.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { quantizeQ4_0Scalar, Q4_0_WASM } from "../../src/quant/ggml/q4_0.js";
import { quantizeQ4_1Scalar, Q4_1_WASM } from "../../src/quant/ggml/q4_1.js";
import { quantizeQ5_0Scalar, Q5_0_WASM } from "../../src/quant/ggml/q5_0.js";
import { quantizeQ5_1Scalar, Q5_1_WASM } from "../../src/quant/ggml/q5_1.js";
import { quantizeQ8_0Scalar, Q8_0_WASM } from "../../src/quant/ggml/q8_0.js";
import { quantizeIQ4_NLScalar, quantizeIQ4_XSScalar, IQ4_WASM } from "../../src/quant/ggml/iq4.js";

const TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0, GGMLType.IQ4_NL, GGMLType.IQ4_XS];
const ROW = 4096;

/** WebAssembly flags and the scalar JS fallbacks (the codecs use the kernels; for IQ4 the search). */
const SCALAR: ReadonlyArray<readonly [GGMLType, () => boolean, (src: Float32Array, dst: Uint8Array) => void]> = [
  [GGMLType.Q4_0, Q4_0_WASM, quantizeQ4_0Scalar],
  [GGMLType.Q4_1, Q4_1_WASM, quantizeQ4_1Scalar],
  [GGMLType.Q5_0, Q5_0_WASM, quantizeQ5_0Scalar],
  [GGMLType.Q5_1, Q5_1_WASM, quantizeQ5_1Scalar],
  [GGMLType.Q8_0, Q8_0_WASM, quantizeQ8_0Scalar],
  [GGMLType.IQ4_NL, IQ4_WASM, quantizeIQ4_NLScalar],
  [GGMLType.IQ4_XS, IQ4_WASM, quantizeIQ4_XSScalar],
];
const ROWS = 4;
const N = ROW * ROWS;

// ---- seeded data -------------------------------------------------------------------------------

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296; // (0, 1)
  };
}

function normal(n: number, seed: number, sigma = 0.02): Float32Array {
  const u = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    out[i] = sigma * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = sigma * r * Math.sin(t);
  }
  return out;
}

/** Student-t-like tails (normal / sqrt(uniform)) plus rare ×100 outliers. */
function heavyTailed(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = normal(n, seed + 1);
  for (let i = 0; i < n; i++) {
    x[i] = x[i]! / Math.sqrt(u());
    if (u() < 0.004) x[i] = x[i]! * 100;
  }
  return x;
}

/** Row 0: a single non-zero value; other rows: one non-zero per 32-block at a random place. */
function sparse(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(n);
  x[1234] = 0.7;
  for (let b = ROW; b < n; b += 32) x[b + Math.floor(u() * 32)] = (u() - 0.5) * 4;
  return x;
}

/** Constant rows (every block of a row is the same value). */
function constantRows(n: number): Float32Array {
  const vals = [0.375, -1.5, 1e-3, 7];
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = vals[Math.floor(i / ROW) % vals.length]!;
  return x;
}

/**
 * Exact half-steps and ties: values whose scaled versions land exactly on .5 (Q8_0 roundf, Q4/Q5 +8.5 /
 * +16.5 / +0.5 truncations) and on the IQ4 midpoints (T[j-1]+T[j])/2 with a block max of ±127.
 */
function halfSteps(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(n);
  const mids = [-115.5, -93.5, -74, -57, -42, -28.5, -16, -4.5, 7, 19, 31.5, 45.5, 61, 79, 101];
  for (let b = 0; b < n; b += 32) {
    const kind = (b / 32) % 6;
    for (let j = 0; j < 32; j++) {
      let v: number;
      switch (kind) {
        case 0: v = j === 0 ? -8 : (Math.floor(u() * 33) - 16) / 2; break; // Q4_0: d = 1
        case 1: v = j === 0 ? 127 : Math.floor(u() * 254) - 127 + 0.5; break; // Q8_0: d = 1, .5 ties
        case 2: v = j === 0 ? 0 : j === 1 ? 15 : Math.floor(u() * 30) / 2; break; // Q4_1: min 0, d = 1
        case 3: v = j === 0 ? -16 : (Math.floor(u() * 65) - 32) / 2; break; // Q5_0: d = 1
        case 4: v = j === 0 ? 127 : mids[Math.floor(u() * mids.length)]!; break; // IQ4 midpoints
        default: v = (Math.floor(u() * 64) - 32) / 16; break; // quarter/sixteenth steps
      }
      x[b + j] = v;
    }
  }
  return x;
}

function scaled(x: Float32Array, s: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * s;
  return out;
}

function uniformPositive(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = u() * 0.1;
  return x;
}

/** Blocks of -0 and +0 in different orders, alone and as the minimum/maximum of other values. */
function signedZeros(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(n);
  for (let b = 0; b < n; b += 32) {
    const kind = (b / 32) % 5;
    for (let j = 0; j < 32; j++) {
      let v: number;
      switch (kind) {
        case 0: v = -0; break;
        case 1: v = j % 2 === 0 ? -0 : 0; break;
        case 2: v = j === 0 ? 0 : j === 1 ? -0 : u() * 0.1; break; // min is ±0
        case 3: v = j === 0 ? -0 : j === 5 ? 0 : -u() * 0.1; break; // max is ±0
        default: v = j < 16 ? -0 : (u() - 0.5) * 0.1; break;
      }
      x[b + j] = v;
    }
  }
  return x;
}

const DATASETS: ReadonlyArray<readonly [string, () => Float32Array]> = [
  ["normal σ=0.02", () => normal(N, 1)],
  ["normal σ=1", () => normal(N, 2, 1)],
  ["heavy-tailed + outliers", () => heavyTailed(N, 3)],
  ["all zeros", () => new Float32Array(N)],
  ["single / sparse non-zeros", () => sparse(N, 4)],
  ["tiny ~1e-30", () => scaled(normal(N, 5, 1), 1e-30)],
  ["~1e-6", () => scaled(normal(N, 6, 1), 1e-6)],
  ["constant rows", () => constantRows(N)],
  ["exact half-steps / ties", () => halfSteps(N, 7)],
  ["uniform positive", () => uniformPositive(N, 8)],
  ["signed zeros", () => signedZeros(N, 9)],
];

// ---- comparison helpers ------------------------------------------------------------------------

function hex(b: Uint8Array): string {
  return Array.from(b, (v) => v.toString(16).padStart(2, "0")).join(" ");
}

function assertSameBytes(codec: BlockCodec, ours: Uint8Array, ref: Uint8Array, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: length`);
  for (let i = 0; i < ref.length; i++) {
    if (ours[i] !== ref[i]) {
      const blk = Math.floor(i / codec.typeSize);
      const s = blk * codec.typeSize;
      assert.fail(
        `${what}: first byte mismatch at ${i} (block ${blk}, byte ${i - s} of the block, element ${blk * codec.blockSize}..)\n` +
          `  ours: ${hex(ours.subarray(s, s + codec.typeSize))}\n  ggml: ${hex(ref.subarray(s, s + codec.typeSize))}`,
      );
    }
  }
}

function assertSameFloatBits(ours: Float32Array, ref: Float32Array, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: length`);
  const a = new Uint32Array(ours.buffer, ours.byteOffset, ours.length);
  const b = new Uint32Array(ref.buffer, ref.byteOffset, ref.length);
  for (let i = 0; i < b.length; i++) {
    if (a[i] !== b[i]) {
      assert.fail(`${what}: first float mismatch at element ${i}: ours ${ours[i]} (0x${a[i]!.toString(16)}) ggml ${ref[i]} (0x${b[i]!.toString(16)})`);
    }
  }
}

function quantizeOurs(codec: BlockCodec, x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / codec.blockSize) * codec.typeSize);
  codec.quantize(x, out);
  return out;
}

// ---- oracle comparisons ------------------------------------------------------------------------

for (const t of TYPES) {
  test(`${typeName(t)}: quantize bytes and dequantized floats equal ggml on ${DATASETS.length} distributions (${ROWS}×${ROW})`, () => {
    const o = ggmlOracle();
    const codec = codecFor(t);
    assert.equal(codec.blockSize, t === GGMLType.IQ4_XS ? 256 : 32);
    assert.equal(o.rowSize(t, ROW), (ROW / codec.blockSize) * codec.typeSize, "row size vs ggml_row_size");
    for (const [name, make] of DATASETS) {
      const x = make();
      const ref = o.quantizeChunk(t, x, ROW);
      const ours = quantizeOurs(codec, x);
      assertSameBytes(codec, ours, ref, `${typeName(t)} quantize, ${name}`);
      const yRef = o.dequantize(t, ref, N);
      const y = new Float32Array(N);
      codec.dequantize(ref, y);
      assertSameFloatBits(y, yRef, `${typeName(t)} dequantize, ${name}`);
    }
  });
}

test("the WebAssembly kernels are active and the scalar JS fallbacks are bit-exact too", () => {
  const o = ggmlOracle();
  for (const [t, wasm, scalar] of SCALAR) {
    assert.equal(wasm(), true, `${typeName(t)} WebAssembly kernel failed to load`);
    const codec = codecFor(t);
    for (const [name, make] of DATASETS) {
      const x = make();
      const ours = new Uint8Array((x.length / codec.blockSize) * codec.typeSize);
      scalar(x, ours);
      assertSameBytes(codec, ours, o.quantizeChunk(t, x, ROW), `${typeName(t)} scalar path, ${name}`);
    }
  }
});

/** Non-finite and extreme inputs: NaN / ±inf sprinkled in, NaN after large values, subnormals, ±3e38. */
function nonFinite(n: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const blk = i >> 5;
    const r = u();
    switch (blk % 5) {
      case 0: x[i] = r < 0.03 ? NaN : r < 0.05 ? Infinity : r < 0.07 ? -Infinity : (u() - 0.5) * 0.1; break;
      case 1: x[i] = (i & 31) === 0 ? 1000 : (i & 31) === 1 ? -1000 : (i & 31) === 2 ? NaN : (u() - 0.5) * 0.01; break;
      case 2: x[i] = (u() - 0.5) * 1e-42; break;
      case 3: x[i] = (u() - 0.5) * 6e38; break;
      default: x[i] = (u() - 0.5) * 3e-38; break;
    }
  }
  return x;
}

test("non-finite and extreme inputs (NaN, ±inf, subnormals, ±3e38) give ggml's bytes, kernels and scalar paths", () => {
  const o = ggmlOracle();
  const x = nonFinite(N, 21);
  for (const t of TYPES) {
    const codec = codecFor(t);
    assertSameBytes(codec, quantizeOurs(codec, x), o.quantizeChunk(t, x, ROW), `${typeName(t)} non-finite`);
  }
  for (const [t, , scalar] of SCALAR) {
    const codec = codecFor(t);
    const ours = new Uint8Array((x.length / codec.blockSize) * codec.typeSize);
    scalar(x, ours);
    assertSameBytes(codec, ours, o.quantizeChunk(t, x, ROW), `${typeName(t)} scalar path, non-finite`);
  }
});

test("dequantizers equal ggml's to_float on random block bytes (finite fp16 scales)", () => {
  const o = ggmlOracle();
  const u = rng(99);
  for (const t of TYPES) {
    const codec = codecFor(t);
    const nBlocks = 512;
    const bytes = new Uint8Array(nBlocks * codec.typeSize);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(u() * 256);
    // keep every fp16 field finite: d at 0 for all these types, m at 2 for Q4_1/Q5_1
    const halfFields = t === GGMLType.Q4_1 || t === GGMLType.Q5_1 ? [0, 2] : [0];
    for (let b = 0; b < nBlocks; b++) {
      for (const f of halfFields) {
        const hi = b * codec.typeSize + f + 1;
        if ((bytes[hi]! & 0x7c) === 0x7c) bytes[hi] = bytes[hi]! & ~0x40;
      }
    }
    const n = nBlocks * codec.blockSize;
    const y = new Float32Array(n);
    codec.dequantize(bytes, y);
    assertSameFloatBits(y, o.dequantize(t, bytes, n), `${typeName(t)} dequantize random bytes`);
  }
});

test("inputs longer than one kernel chunk (10 rows × 4096 = 2.5 chunks of 16384) match ggml", () => {
  const o = ggmlOracle();
  const x = heavyTailed(10 * ROW, 31);
  for (const t of TYPES) {
    const codec = codecFor(t);
    assertSameBytes(codec, quantizeOurs(codec, x), o.quantizeChunk(t, x, ROW), `${typeName(t)} 2.5 chunks`);
  }
});

test("quantize is block-local: one call over many rows equals row-by-row calls into sub-arrays", () => {
  const x = normal(N, 11);
  for (const t of TYPES) {
    const codec = codecFor(t);
    const whole = quantizeOurs(codec, x);
    const rowBytes = (ROW / codec.blockSize) * codec.typeSize;
    const pieces = new Uint8Array(whole.length + 3);
    for (let r = 0; r < ROWS; r++) {
      // src/dst views with non-zero offsets
      codec.quantize(x.subarray(r * ROW, (r + 1) * ROW), pieces.subarray(3 + r * rowBytes, 3 + (r + 1) * rowBytes));
    }
    assertSameBytes(codec, pieces.subarray(3), whole, `${typeName(t)} row-by-row`);
  }
});

// ---- golden facts (docs/bit-exact.md), independent of the oracle -------------------------------------------

function bytesOf(t: GGMLType, x: Float32Array): Uint8Array {
  return quantizeOurs(codecFor(t), x);
}

function rep(byte: number, n: number): number[] {
  return new Array<number>(n).fill(byte);
}

test("golden: all-zero blocks", () => {
  const z32 = new Float32Array(32);
  const z256 = new Float32Array(256);
  assert.deepEqual([...bytesOf(GGMLType.Q4_0, z32)], [0x00, 0x80, ...rep(0x88, 16)]);
  assert.deepEqual([...bytesOf(GGMLType.Q5_0, z32)], [0x00, 0x80, 0xff, 0xff, 0xff, 0xff, ...rep(0x00, 16)]);
  assert.deepEqual([...bytesOf(GGMLType.Q4_1, z32)], rep(0, 20));
  assert.deepEqual([...bytesOf(GGMLType.Q5_1, z32)], rep(0, 24));
  assert.deepEqual([...bytesOf(GGMLType.Q8_0, z32)], rep(0, 34));
  assert.deepEqual([...bytesOf(GGMLType.IQ4_NL, z32)], [0x00, 0x00, ...rep(0x88, 16)]);
  assert.deepEqual([...bytesOf(GGMLType.IQ4_XS, z256)], [0x00, 0x80, 0xaa, 0xaa, 0x00, 0x00, 0x00, 0x00, ...rep(0x88, 128)]);
});

test("golden: constant 0.375 block", () => {
  const c = new Float32Array(32).fill(0.375);
  // Q4_0: max = 0.375, d = -0.375/8 = -0.046875 = fp16 0xAA00; x*id + 8.5 = 0.5 → level 0
  assert.deepEqual([...bytesOf(GGMLType.Q4_0, c)], [0x00, 0xaa, ...rep(0, 16)]);
  // Q4_1: d = 0, m = 0.375 = fp16 0x3600, levels 0
  assert.deepEqual([...bytesOf(GGMLType.Q4_1, c)], [0x00, 0x00, 0x00, 0x36, ...rep(0, 16)]);
  // Q8_0: d = 0.375/127 → fp16 0x1A0C, every level 127
  assert.deepEqual([...bytesOf(GGMLType.Q8_0, c)], [0x0c, 0x1a, ...rep(127, 32)]);
  // IQ4_NL: d = fp16 0x1ACC, every index 15 (value 113)
  assert.deepEqual([...bytesOf(GGMLType.IQ4_NL, c)], [0xcc, 0x1a, ...rep(0xff, 16)]);
  // and they decode back to the expected values
  const y = new Float32Array(32);
  codecFor(GGMLType.Q4_1).dequantize(bytesOf(GGMLType.Q4_1, c), y);
  assert.ok(y.every((v) => v === 0.375));
  codecFor(GGMLType.Q4_0).dequantize(bytesOf(GGMLType.Q4_0, c), y);
  assert.ok(y.every((v) => v === 0.375)); // (0 - 8) * -0.046875
});

/**
 * Whole blocks of one special kind, in counts that are not a multiple of the asymmetric kernel's
 * four-block group: all +inf (C keeps min = FLT_MAX), all -inf (max = -FLT_MAX), all NaN, NaN with
 * ±inf, ±0 as the extreme, ranges so small that d is subnormal and 1/d overflows, and normal blocks
 * between them (so a flagged block's neighbours in its group are checked too).
 */
function specialBlocks(nBlocks: number, seed: number): Float32Array {
  const u = rng(seed);
  const x = new Float32Array(32 * nBlocks);
  for (let b = 0; b < nBlocks; b++) {
    const kind = (b * 7 + seed) % 9;
    for (let j = 0; j < 32; j++) {
      let v: number;
      switch (kind) {
        case 0: v = Infinity; break;
        case 1: v = -Infinity; break;
        case 2: v = NaN; break;
        case 3: v = j % 3 === 0 ? NaN : j % 3 === 1 ? Infinity : -Infinity; break;
        case 4: v = j === 31 ? -0 : u() * 0.1; break; // min is -0, last
        case 5: v = j === 7 ? 0 : -u() * 0.1; break; // max is +0
        case 6: v = (u() - 0.5) * 4e-39; break; // d subnormal, 1/d = +inf
        case 7: v = j === 3 ? Infinity : (u() - 0.5) * 0.1; break;
        default: v = (u() - 0.5) * 0.1; break;
      }
      x[32 * b + j] = v;
    }
  }
  return x;
}

test("special whole blocks (±inf, NaN, ±0 extremes, subnormal d) in 1..9 blocks give ggml's bytes, kernels and scalar paths", () => {
  const o = ggmlOracle();
  for (let nBlocks = 1; nBlocks <= 9; nBlocks++) {
    const x = specialBlocks(nBlocks, nBlocks);
    for (const [t, , scalar] of SCALAR) {
      if (t === GGMLType.IQ4_XS) continue; // 256-blocks
      const codec = codecFor(t);
      const ref = o.quantizeChunk(t, x, x.length);
      assertSameBytes(codec, quantizeOurs(codec, x), ref, `${typeName(t)} ${nBlocks} special blocks`);
      const ours = new Uint8Array(ref.length);
      scalar(x, ours);
      assertSameBytes(codec, ours, ref, `${typeName(t)} scalar path, ${nBlocks} special blocks`);
    }
  }
});
