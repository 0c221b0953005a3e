/**
 * The WebAssembly SIMD kernels of Q2_K, Q3_K, TQ1_0 and TQ2_0 (src/quant/ggml/q2_k-wasm.ts,
 * q3_k-wasm.ts, tq-wasm.ts) against ggml itself (ggml_quantize_chunk through koffi, no imatrix) and
 * against the TypeScript reference paths: the same bytes on many distributions, including the edge
 * cases of the searches (empty ranges, all-zero groups, ties, subnormals, tiny and huge magnitudes,
 * values near the overflow threshold), chunk lengths that are not a multiple of the kernel batch, and
 * non-finite values (which take the TypeScript path).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGMLType, codecFor, typeName } from "../../src/quant/ggml/index.js";
import { quantizeQ2KScalar, Q2_K_WASM } from "../../src/quant/ggml/q2_k.js";
import { quantizeQ3KScalar, Q3_K_WASM } from "../../src/quant/ggml/q3_k.js";
import { quantizeTQ1Scalar, quantizeTQ2Scalar, TQ1_0_WASM, TQ2_0_WASM, tqKernelsForTest } from "../../src/quant/ggml/tq.js";
import { q2Kernel } from "../../src/quant/ggml/q2_k-wasm.js";
import { q3Kernel } from "../../src/quant/ggml/q3_k-wasm.js";
import { qkx2StepNumerators } from "../../src/quant/ggml/kquant-common.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { Rng } from "../../fixtures/rng.js";

const NE0 = 4096;

function datasets(): [string, Float32Array][] {
  const r = new Rng(91);
  const n = 8 * NE0;
  const gen = (f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
  return [
    ["normal σ=0.02", r.normals(n, 0, 0.02)],
    ["normal σ=1", r.normals(n, 0, 1)],
    ["uniform", gen(() => 2 * r.uniform() - 1)],
    ["outliers", gen(() => (r.uniform() < 0.01 ? 40 : 1) * r.normal() * 0.01)],
    ["zeros", new Float32Array(n)],
    ["zero groups", gen((i) => ((i >> 4) % 3 === 0 ? 0 : r.normal()))],
    ["constant per group", gen((i) => [0.5, -0.25, 0, 3][(i >> 4) & 3]!)],
    ["constant negative", gen(() => -0.75)],
    ["positive", gen(() => Math.abs(r.normal()) + 0.01)],
    ["negative", gen(() => -Math.abs(r.normal()) - 0.01)],
    ["half steps", gen(() => (Math.floor(r.uniform() * 33) - 16) * 0.5)],
    ["quarter steps", gen(() => (Math.floor(r.uniform() * 17) - 8) * 0.25)],
    ["ternary", gen(() => Math.floor(r.uniform() * 3) - 1)],
    ["subnormal", gen(() => 1e-40 * r.normal())],
    ["subnormal and normal", gen((i) => (i % 3 === 0 ? 1e-41 : 1e-3) * r.normal())],
    ["tiny", gen(() => 1e-30 * r.normal())],
    ["around 2^-126", gen(() => 1.2e-38 * r.normal())],
    ["huge", gen(() => 1e30 * r.normal())],
    ["near float max", gen(() => 3e38 * (2 * r.uniform() - 1))],
    ["wide range", gen(() => r.normal() * 10 ** (r.uniform() * 8 - 4))],
    ["single non-zero per block", gen((i) => (i % 256 === (i >> 8) % 256 ? r.normal() : 0))],
    ["single non-zero per group", gen((i) => (i % 16 === (i >> 4) % 16 ? r.normal() : 0))],
    ["signed zeros", gen((i) => (i % 7 === 0 ? -0 : i % 5 === 0 ? 0 : r.normal() * 1e-3))],
    // ternary rounding edges: x·id at and around ±0.5, amax of both signs, amax < 2^-128 (1/d overflows)
    ["halves of the block max", gen((i) => (i % 256 === 7 ? -2 : [1, -1, 0.5, -0.5, 0.25, 0][i % 6]!))],
    ["around half of the block max", gen((i) => (i % 256 === 0 ? 1 : (i & 1 ? 1 : -1) * Math.fround(0.5 + (((i >> 1) % 5) - 2) * 2 ** -25)))],
    ["block max below 2^-128", gen((i) => ((i >> 8) % 2 === 0 ? 1e-39 : 2e-38) * r.normal())],
    ["just below powers of two", gen(() => (r.uniform() < 0.5 ? -1 : 1) * Math.fround(2 ** (Math.floor(r.uniform() * 8) - 4) * (1 - 2 ** -24)))],
  ];
}

interface Case {
  type: GGMLType;
  scalar: (src: Float32Array, dst: Uint8Array) => void;
  wasm: () => boolean;
  /** the kernel itself: run(src, b0, nb) → how many super-blocks hold a NaN/inf, flagged in bad[] */
  kernel?: () => { run(src: Float32Array, b0: number, nb: number): number; bad: Uint8Array } | undefined;
}

/** run(src, b0, nb) / bad[] over a blockKernel's instance (src/quant/wasm/kernels.ts: in32, run, flags). */
function blockRunner(k: unknown): ReturnType<NonNullable<Case["kernel"]>> {
  if (!k) return undefined;
  const b = k as { in32: Float32Array; run(nb: number): number; flags: Int32Array };
  return {
    run(src, b0, nb) {
      b.in32.set(src.subarray(b0 * 256, (b0 + nb) * 256));
      return b.run(nb);
    },
    get bad() {
      return Uint8Array.from(b.flags);
    },
  };
}

const CASES: Case[] = [
  { type: GGMLType.Q2_K, scalar: quantizeQ2KScalar, wasm: Q2_K_WASM, kernel: () => q2Kernel(qkx2StepNumerators(3, -0.5, 0.1, 15)).get() },
  { type: GGMLType.Q3_K, scalar: quantizeQ3KScalar, wasm: Q3_K_WASM, kernel: () => q3Kernel().get() },
  { type: GGMLType.TQ1_0, scalar: quantizeTQ1Scalar, wasm: TQ1_0_WASM, kernel: () => blockRunner(tqKernelsForTest.tq1.get()) },
  { type: GGMLType.TQ2_0, scalar: quantizeTQ2Scalar, wasm: TQ2_0_WASM, kernel: () => blockRunner(tqKernelsForTest.tq2.get()) },
];

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

function firstDiff(a: Uint8Array, b: Uint8Array, size: number): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `block ${Math.floor(i / size)} byte +${i % size}`;
  return "none";
}

for (const c of CASES) {
  const codec = codecFor(c.type);
  const name = typeName(c.type);
  test(`${name}: the wasm kernel gives ggml's bytes and the TypeScript path's`, () => {
    assert.equal(c.wasm(), true, "WebAssembly SIMD kernel in use on Node ≥ 20");
    const o = ggmlOracle();
    for (const [ds, x] of datasets()) {
      const ref = o.quantizeChunk(c.type, x, NE0);
      const fast = new Uint8Array(ref.length);
      codec.quantize(x, fast);
      const slow = new Uint8Array(ref.length);
      c.scalar(x, slow);
      assert.ok(same(fast, ref), `${ds}: wasm path differs from ggml at ${firstDiff(fast, ref, codec.typeSize)}`);
      assert.ok(same(slow, ref), `${ds}: TypeScript path differs from ggml at ${firstDiff(slow, ref, codec.typeSize)}`);
    }
  });

  test(`${name}: chunk lengths that are not a multiple of the kernel batch; non-finite values take the TypeScript path`, () => {
    const o = ggmlOracle();
    const r = new Rng(6);
    for (const nb of [1, 3, 63, 64, 65, 131]) {
      const x = r.normals(256 * nb, 0, 0.05);
      const ref = o.quantizeChunk(c.type, x, 256);
      const out = new Uint8Array(ref.length);
      codec.quantize(x, out);
      assert.ok(same(out, ref), `${nb} super-blocks at ${firstDiff(out, ref, codec.typeSize)}`);
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
      assert.ok(same(a, b), `${bad}: same bytes as the TypeScript path at ${firstDiff(a, b, codec.typeSize)}`);
      assert.ok(same(a, ref), `${bad}: same bytes as ggml at ${firstDiff(a, ref, codec.typeSize)}`);
    }
  });
}

for (const c of CASES) {
  if (!c.kernel) continue;
  test(`${typeName(c.type)}: the kernel flags exactly the super-blocks holding a NaN or an infinity (they go to the TypeScript path)`, () => {
    const k = c.kernel!();
    assert.ok(k, "kernel instantiated");
    const x = new Rng(8).normals(256 * 6, 0, 0.1);
    assert.equal(k.run(x, 0, 6), 0);
    assert.deepEqual([...k.bad.subarray(0, 6)], [0, 0, 0, 0, 0, 0]);
    x[256 + 3] = NaN;
    x[256 * 3 + 255] = Infinity;
    x[256 * 4] = -Infinity;
    x[256 * 5 + 7] = 3.4e38; // finite
    assert.equal(k.run(x, 0, 6), 3);
    assert.deepEqual([...k.bad.subarray(0, 6)], [0, 1, 0, 1, 1, 0]);
    assert.equal(k.run(x, 2, 2), 1, "b0 offsets the input");
    assert.deepEqual([...k.bad.subarray(0, 2)], [0, 1]);
  });
}
