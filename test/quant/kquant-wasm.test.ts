/**
 * The WebAssembly SIMD K-quant searches (src/quant/ggml/kquant-wasm.ts) against the TypeScript
 * reference paths and ggml itself: same bytes on many distributions, including the edge cases of the
 * searches (empty ranges, all-zero groups, ties, subnormals, huge values) and odd chunk lengths.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGMLType, codecFor, typeName } from "../../src/quant/ggml/index.js";
import { quantizeQ4KScalar, Q4_K_WASM } from "../../src/quant/ggml/q4_k.js";
import { quantizeQ5KScalar, Q5_K_WASM } from "../../src/quant/ggml/q5_k.js";
import { quantizeQ6KScalar, Q6_K_WASM } from "../../src/quant/ggml/q6_k.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { Rng } from "../../fixtures/rng.js";

const NE0 = 4096;

function datasets(): [string, Float32Array][] {
  const r = new Rng(77);
  const n = 8 * NE0;
  const gen = (f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
  return [
    ["normal σ=0.02", r.normals(n, 0, 0.02)],
    ["normal σ=1", r.normals(n, 0, 1)],
    ["uniform", gen(() => 2 * r.uniform() - 1)],
    ["outliers", gen(() => (r.uniform() < 0.01 ? 40 : 1) * r.normal() * 0.01)],
    ["zeros", new Float32Array(n)],
    ["zero groups", gen((i) => ((i >> 4) % 3 === 0 ? 0 : r.normal()))],
    ["constant per group", gen((i) => [0.5, -0.25, 0, 3][(i >> 5) & 3]!)],
    ["constant negative", gen(() => -0.75)],
    ["positive", gen(() => Math.abs(r.normal()) + 0.01)],
    ["negative", gen(() => -Math.abs(r.normal()) - 0.01)],
    ["half steps", gen(() => (Math.floor(r.uniform() * 33) - 16) * 0.5)],
    ["ternary", gen(() => Math.floor(r.uniform() * 3) - 1)],
    ["subnormal", gen(() => 1e-40 * r.normal())],
    ["tiny", gen(() => 1e-30 * r.normal())],
    ["huge", gen(() => 1e30 * r.normal())],
    ["wide range", gen(() => r.normal() * 10 ** (r.uniform() * 8 - 4))],
    ["single non-zero per block", gen((i) => (i % 256 === (i >> 8) % 256 ? r.normal() : 0))],
    ["signed zeros", gen((i) => (i % 7 === 0 ? -0 : i % 5 === 0 ? 0 : r.normal() * 1e-3))],
  ];
}

const CASES = [
  { type: GGMLType.Q4_K, scalar: quantizeQ4KScalar, wasm: Q4_K_WASM },
  { type: GGMLType.Q5_K, scalar: quantizeQ5KScalar, wasm: Q5_K_WASM },
  { type: GGMLType.Q6_K, scalar: quantizeQ6KScalar, wasm: Q6_K_WASM },
];

for (const c of CASES) {
  const codec = codecFor(c.type);
  test(`${typeName(c.type)}: the wasm search gives ggml's bytes and the TypeScript path's`, () => {
    assert.equal(c.wasm(), true, "WebAssembly SIMD kernel in use on Node ≥ 20");
    const o = ggmlOracle();
    for (const [name, x] of datasets()) {
      const ref = o.quantizeChunk(c.type, x, NE0);
      const fast = new Uint8Array(ref.length);
      codec.quantize(x, fast);
      const slow = new Uint8Array(ref.length);
      c.scalar(x, slow);
      assert.ok(Buffer.from(fast).equals(Buffer.from(ref)), `${name}: wasm path differs from ggml`);
      assert.ok(Buffer.from(slow).equals(Buffer.from(ref)), `${name}: TypeScript path differs from ggml`);
    }
  });
  test(`${typeName(c.type)}: chunk lengths that are not a multiple of the kernel batch, and a NaN falls back`, () => {
    const o = ggmlOracle();
    const r = new Rng(5);
    const x = r.normals(256 * 67, 0, 0.05); // 67 super-blocks: one batch of 64 and a rest of 3
    const ref = o.quantizeChunk(c.type, x, 256);
    const out = new Uint8Array(ref.length);
    codec.quantize(x, out);
    assert.ok(Buffer.from(out).equals(Buffer.from(ref)));
    const y = x.slice();
    y[300] = NaN;
    const a = new Uint8Array(ref.length);
    const b = new Uint8Array(ref.length);
    codec.quantize(y, a);
    c.scalar(y, b);
    assert.ok(Buffer.from(a).equals(Buffer.from(b)), "non-finite input takes the TypeScript path");
  });
}
