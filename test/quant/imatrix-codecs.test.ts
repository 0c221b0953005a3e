/**
 * Importance-weighted quantization (the imatrix path): for every type ggufy writes, rows of several
 * distributions quantized with several random importance vectors equal ggml's own
 * `ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix)` bytes (node-llama-cpp's
 * libggml-base through koffi), and the weighted bytes differ from the unweighted ones where ggml's do
 * (so the importance vector really reaches the search).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codecFor, GGMLType, typeName, rowBytes } from "../../src/quant/ggml/index.js";
import { ggmlOracle } from "../support/ggml-oracle.js";

const WEIGHTED = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_NL, GGMLType.IQ4_XS];
/** ggml ignores quant_weights for these: the bytes equal the plain path's */
const IGNORING = [GGMLType.Q8_0, GGMLType.TQ1_0, GGMLType.TQ2_0, GGMLType.F16, GGMLType.BF16, GGMLType.F32];

const NE0 = 512;
const ROWS = 3;

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

function fill(n: number, seed: number, f: (i: number, r: () => number, g: () => number) => number): Float32Array {
  const r = mulberry32(seed);
  const g = (): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f(i, r, g);
  return out;
}

const N = NE0 * ROWS;
const DATA: [string, () => Float32Array][] = [
  ["normal σ=0.02", () => fill(N, 1, (_i, _r, g) => 0.02 * g())],
  ["uniform [-1,1)", () => fill(N, 2, (_i, r) => 2 * r() - 1)],
  ["heavy tails + outliers", () => fill(N, 3, (_i, r, g) => (r() < 0.01 ? 30 * g() : g()) * 0.05)],
  ["all positive", () => fill(N, 4, (_i, r) => 0.01 + r())],
  ["all negative", () => fill(N, 5, (_i, r) => -0.1 - r())],
  ["sparse with zero blocks", () => fill(N, 6, (i, _r, g) => ((i >> 5) % 3 === 0 ? 0 : (i & 3) === 0 ? g() : 0))],
  ["half-steps (ties)", () => fill(N, 7, (_i, r) => (Math.floor(r() * 17) - 8) * 0.5)],
  ["all zeros", () => new Float32Array(N)],
  ["wide range", () => fill(N, 8, (_i, r, g) => g() * 10 ** (r() * 6 - 3))],
];

/** importance vectors like llama-imatrix's (mean squared activations: positive, skewed), plus edge cases */
const IMPORTANCE: [string, () => Float32Array][] = [
  ["squared activations", () => fill(NE0, 101, (_i, _r, g) => { const a = g(); return a * a + 1e-4; })],
  ["log-uniform 1e-4..1e2", () => fill(NE0, 102, (_i, r) => 10 ** (r() * 6 - 4))],
  ["a few hot columns", () => fill(NE0, 103, (i, r) => (i % 61 === 0 ? 500 : 0.01 + 0.1 * r()))],
  ["some zeros", () => fill(NE0, 104, (i, r) => (i % 7 === 0 ? 0 : r()))],
  ["all ones", () => new Float32Array(NE0).fill(1)],
];

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

test("weighted quantization equals ggml_quantize_chunk(type, …, imatrix) byte for byte", () => {
  const o = ggmlOracle();
  let cases = 0;
  for (const type of WEIGHTED) {
    const codec = codecFor(type);
    for (const [dn, mk] of DATA) {
      const x = mk();
      for (const [wn, mkw] of IMPORTANCE) {
        const qw = mkw();
        const ref = o.quantizeChunk(type, x, NE0, qw);
        const ours = new Uint8Array(rowBytes(type, NE0) * ROWS);
        codec.quantize(x, ours, qw);
        const d = firstDiff(ours, ref);
        assert.equal(d, -1, `${typeName(type)} ${dn} / ${wn}: first differing byte ${d} (block ${Math.floor(d / codec.typeSize)})`);
        cases++;
      }
    }
  }
  assert.equal(cases, WEIGHTED.length * DATA.length * IMPORTANCE.length);
});

test("the importance vector changes the bytes where ggml's change (it reaches the search)", () => {
  const o = ggmlOracle();
  const x = DATA[0]![1]();
  const qw = IMPORTANCE[2]![1]();
  for (const type of WEIGHTED) {
    const codec = codecFor(type);
    const plain = new Uint8Array(rowBytes(type, NE0) * ROWS);
    codec.quantize(x, plain);
    const weighted = new Uint8Array(plain.length);
    codec.quantize(x, weighted, qw);
    assert.deepEqual(plain, o.quantizeChunk(type, x, NE0), `${typeName(type)} plain`);
    assert.notDeepEqual(weighted, plain, `${typeName(type)}: an importance vector with hot columns must change some block`);
  }
});

test("types whose ggml quantizer ignores quant_weights give the plain bytes with an imatrix", () => {
  const o = ggmlOracle();
  const x = DATA[1]![1]();
  const qw = IMPORTANCE[0]![1]();
  for (const type of IGNORING) {
    const codec = codecFor(type);
    const ours = new Uint8Array(rowBytes(type, NE0) * ROWS);
    codec.quantize(x, ours, qw);
    assert.deepEqual(ours, o.quantizeChunk(type, x, NE0, qw), typeName(type));
  }
});

test("an importance vector that does not fit the rows is refused", () => {
  const c = codecFor(GGMLType.Q4_K);
  assert.throws(() => c.quantize(new Float32Array(512), new Uint8Array(288), new Float32Array(384)), /does not divide|whole number/);
  assert.throws(() => c.quantize(new Float32Array(512), new Uint8Array(288), new Float32Array(100)), /whole number/);
});
