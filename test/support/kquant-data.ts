/**
 * Test inputs for the K-quant and ternary quantizers (test/quant/kquant-wasm.test.ts,
 * kquant-low.test.ts): seeded distributions that reach the edge cases of ggml's searches — empty
 * ranges, all-zero groups, ties, subnormals, tiny and huge magnitudes, values near the overflow
 * threshold, ±0, and the ternary rounding edges — and the checks both files run on them: the codec
 * (its WebAssembly path) and the TypeScript path against ggml_quantize_chunk (koffi), byte for byte.
 */
import assert from "node:assert/strict";
import { codecFor, type GGMLType } from "../../src/quant/ggml/index.js";
import { Rng } from "../../fixtures/rng.js";
import { ggmlOracle } from "./ggml-oracle.js";

/**
 * Named inputs of `n` floats from the seed; `group` is the sub-block size of the type under test
 * (16 or 32), used by the cases that vary per group.
 */
export function kquantDatasets(seed: number, n: number, group: 16 | 32): [string, Float32Array][] {
  const r = new Rng(seed);
  const sh = group === 16 ? 4 : 5;
  const gen = (f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
  return [
    ["normal σ=0.02", r.normals(n, 0, 0.02)],
    ["normal σ=1", r.normals(n, 0, 1)],
    ["uniform", gen(() => 2 * r.uniform() - 1)],
    ["outliers", gen(() => (r.uniform() < 0.01 ? 40 : 1) * r.normal() * 0.01)],
    ["zeros", new Float32Array(n)],
    ["zero groups", gen((i) => ((i >> 4) % 3 === 0 ? 0 : r.normal()))],
    ["constant per group", gen((i) => [0.5, -0.25, 0, 3][(i >> sh) & 3]!)],
    ["constant negative", gen(() => -0.75)],
    ["positive", gen(() => Math.abs(r.normal()) + 0.01)],
    ["negative", gen(() => -Math.abs(r.normal()) - 0.01)],
    ["half steps", gen(() => (Math.floor(r.uniform() * 33) - 16) * 0.5)],
    ["quarter steps", gen(() => (Math.floor(r.uniform() * 17) - 8) * 0.25)],
    ["ternary", gen(() => Math.floor(r.uniform() * 3) - 1)],
    ["subnormal", gen(() => 1e-40 * r.normal())],
    ["subnormal and normal", gen((i) => (i % 3 === 0 ? 1e-41 : 1e-3) * r.normal())],
    ["smallest subnormals", gen(() => Math.floor(r.uniform() * 3) * 2 ** -149)],
    ["tiny", gen(() => 1e-30 * r.normal())],
    ["around 2^-126", gen(() => 1.2e-38 * r.normal())],
    ["huge", gen(() => 1e30 * r.normal())],
    ["near float max", gen(() => 3e38 * (2 * r.uniform() - 1))],
    ["wide range", gen(() => r.normal() * 10 ** (r.uniform() * 8 - 4))],
    ["single non-zero per block", gen((i) => (i % 256 === (i >> 8) % 256 ? r.normal() : 0))],
    ["single non-zero per group", gen((i) => (i % group === (i >> sh) % group ? r.normal() : 0))],
    ["signed zeros", gen((i) => (i % 7 === 0 ? -0 : i % 5 === 0 ? 0 : r.normal() * 1e-3))],
    // ternary rounding edges: x·id at and around ±0.5, amax of both signs, amax < 2^-128 (1/d overflows)
    ["halves of the block max", gen((i) => (i % 256 === 7 ? -2 : [1, -1, 0.5, -0.5, 0.25, 0][i % 6]!))],
    ["around half of the block max", gen((i) => (i % 256 === 0 ? 1 : (i & 1 ? 1 : -1) * Math.fround(0.5 + (((i >> 1) % 5) - 2) * 2 ** -25)))],
    ["block max below 2^-128", gen((i) => ((i >> 8) % 2 === 0 ? 1e-39 : 2e-38) * r.normal())],
    ["just below powers of two", gen(() => (r.uniform() < 0.5 ? -1 : 1) * Math.fround(2 ** (Math.floor(r.uniform() * 8) - 4) * (1 - 2 ** -24)))],
  ];
}

/** A quantizer under test: the type (its codec's quantize is the WebAssembly path) and the TypeScript path. */
export interface KQuantCase {
  type: GGMLType;
  scalar: (src: Float32Array, dst: Uint8Array) => void;
}

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** "block B byte +O" of the first difference, or "none". */
export function firstDiff(a: Uint8Array, b: Uint8Array, size: number): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `block ${Math.floor(i / size)} byte +${i % size}`;
  return "none";
}

/** Every dataset (8 rows of 4096): codec bytes = TypeScript bytes = ggml's. */
export function checkDatasets(c: KQuantCase, seed: number, group: 16 | 32): void {
  const NE0 = 4096;
  const codec = codecFor(c.type);
  const o = ggmlOracle();
  for (const [ds, x] of kquantDatasets(seed, 8 * NE0, group)) {
    const ref = o.quantizeChunk(c.type, x, NE0);
    const fast = new Uint8Array(ref.length);
    codec.quantize(x, fast);
    const slow = new Uint8Array(ref.length);
    c.scalar(x, slow);
    assert.ok(sameBytes(fast, ref), `${ds}: wasm path differs from ggml at ${firstDiff(fast, ref, codec.typeSize)}`);
    assert.ok(sameBytes(slow, ref), `${ds}: TypeScript path differs from ggml at ${firstDiff(slow, ref, codec.typeSize)}`);
  }
}

/**
 * Chunks of 1, 3, 63, 64, 65 and 131 super-blocks (around the kernels' batch of 64), then a chunk with
 * NaN / ±inf in three super-blocks (one beside a 3e38): codec = ggml, and = the TypeScript path.
 */
export function checkChunksAndNonFinite(c: KQuantCase): void {
  const codec = codecFor(c.type);
  const o = ggmlOracle();
  const r = new Rng(6);
  for (const nb of [1, 3, 63, 64, 65, 131]) {
    const x = r.normals(256 * nb, 0, 0.05);
    const ref = o.quantizeChunk(c.type, x, 256);
    const out = new Uint8Array(ref.length);
    codec.quantize(x, out);
    assert.ok(sameBytes(out, ref), `${nb} super-blocks at ${firstDiff(out, ref, codec.typeSize)}`);
  }
  const x = r.normals(256 * 67, 0, 0.05);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const y = x.slice();
    y[300] = bad;
    y[256 * 66 + 5] = bad;
    y[256 * 40 + 17] = 3e38;
    y[256 * 40 + 18] = bad;
    const ref = o.quantizeChunk(c.type, y, 256);
    const a = new Uint8Array(ref.length);
    const b = new Uint8Array(a.length);
    codec.quantize(y, a);
    c.scalar(y, b);
    assert.ok(sameBytes(a, b), `${bad}: same bytes as the TypeScript path at ${firstDiff(a, b, codec.typeSize)}`);
    assert.ok(sameBytes(a, ref), `${bad}: same bytes as ggml at ${firstDiff(a, ref, codec.typeSize)}`);
  }
}

/** A kernel's search entry: run(src, b0, nb) → how many super-blocks it flagged in bad[]. */
export interface FlaggingKernel {
  run(src: Float32Array, b0: number, nb: number): number;
  bad: Uint8Array;
}

/**
 * The kernel flags the super-blocks holding a NaN or an infinity (blocks 1, 3, 4 of 6) and no other
 * block of N(0, 0.1²) data; block 5 also holds a finite 3.4e38 — flagged or not as `hugeFlagged`.
 */
export function checkFlags(k: FlaggingKernel | undefined, hugeFlagged: boolean): void {
  assert.ok(k, "kernel instantiated");
  const x = new Rng(8).normals(256 * 6, 0, 0.1);
  assert.equal(k.run(x, 0, 6), 0);
  assert.deepEqual([...k.bad.subarray(0, 6)], [0, 0, 0, 0, 0, 0]);
  x[256 + 3] = NaN;
  x[256 * 3 + 255] = Infinity;
  x[256 * 4] = -Infinity;
  x[256 * 5 + 7] = 3.4e38; // finite
  assert.equal(k.run(x, 0, 6), hugeFlagged ? 4 : 3);
  assert.deepEqual([...k.bad.subarray(0, 6)], [0, 1, 0, 1, 1, hugeFlagged ? 1 : 0]);
  assert.equal(k.run(x, 2, 2), 1, "b0 offsets the input");
  assert.deepEqual([...k.bad.subarray(0, 2)], [0, 1]);
}
