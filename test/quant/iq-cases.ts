/**
 * The IQ quantisation cases shared by iq.test.ts (IQ3_*), iq2.test.ts and iq1.test.ts: rows of several
 * distributions quantized with a random importance vector (with and without zero entries) and, for
 * the types ggml quantizes without one, with imatrix = NULL, compared byte for byte with
 * ggml_quantize_chunk through koffi. The files are split because ggml's own first quantisation of a
 * type builds all its neighbour lists (iq2xs_init_impl: ~5 s for IQ2_XXS up to ~30-50 s for IQ1_S on
 * this shared machine), which dominates the runtime.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codecFor, GGMLType, typeName } from "../../src/quant/ggml/index.js";
import { ggmlOracle } from "../support/ggml-oracle.js";

/** types ggml quantizes with imatrix = NULL */
export const NO_IMATRIX = [GGMLType.IQ2_S, GGMLType.IQ3_XXS, GGMLType.IQ3_S, GGMLType.IQ1_M];

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function fill(n: number, seed: number, f: (i: number, r: () => number, g: () => number) => number): Float32Array {
  const r = mulberry32(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f(i, r, g);
  return out;
}

export const NPR = 512; // two 256-blocks per row
export const ROWS = 2;
export const N = NPR * ROWS;

export const DATASETS: Array<[string, () => Float32Array]> = [
  ["gaussian σ=1", () => fill(N, 11, (_i, _r, g) => g())],
  ["gaussian σ=0.02", () => fill(N, 12, (_i, _r, g) => 0.02 * g())],
  ["uniform [-1,1)", () => fill(N, 13, (_i, r) => 2 * r() - 1)],
  ["heavy tails", () => fill(N, 14, (_i, r, g) => (r() < 0.02 ? 40 * g() : g() / Math.max(0.05, Math.abs(g()))) * 0.01)],
  ["zeros mixed in", () => fill(N, 15, (i, r, g) => (r() < 0.4 || (i >> 5) % 5 === 2 ? 0 : g()))],
  ["constant rows", () => fill(N, 16, (i) => ((i / NPR) | 0) % 2 ? -0.75 : 0.5)],
  ["tiny 1e-6", () => fill(N, 17, (_i, _r, g) => 1e-6 * g())],
  ["tiny 1e-30", () => fill(N, 19, (_i, _r, g) => 1e-30 * g())],
  // ggml aborts (GGML_ASSERT in the neighbour search) once w·x² overflows float32, so "huge" stays below that
  ["huge 1e8", () => fill(N, 18, (_i, _r, g) => 1e8 * g())],
  ["all zero", () => new Float32Array(N)],
];

/** zeros: 0 = none, 1 = a quarter of the entries, 2 = whole sub-blocks (columns 32–63 and 296–311) zero */
export const imatrix = (seed: number, zeros: 0 | 1 | 2 = 0): Float32Array =>
  fill(NPR, seed, (i, r, g) =>
    (zeros === 1 && r() < 0.25) || (zeros === 2 && ((i >= 32 && i < 64) || (i >= 296 && i < 312))) ? 0 : Math.abs(g()) * 10 ** (3 * r() - 1));
const ZEROS = ["", " (imatrix with zeros)", " (imatrix with zero sub-blocks)"];

export function firstDiff(a: Uint8Array, b: Uint8Array): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `byte ${i}: ${a[i]} vs ggml ${b[i]}`;
  return a.length === b.length ? "" : `length ${a.length} vs ${b.length}`;
}

export function quantizeCases(types: GGMLType[]): void {
for (const t of types) {
  test(`${typeName(t)} quantize with an importance vector equals ggml_quantize_chunk(…, imatrix)`, () => {
    const g = ggmlOracle();
    const c = codecFor(t);
    let seed = 1000 * t;
    for (const [name, make] of DATASETS) {
      const src = make();
      for (const zeros of [0, 1, 2] as const) {
        const qw = imatrix(++seed, zeros);
        const want = g.quantizeChunk(t, src, NPR, qw);
        const got = new Uint8Array(want.length);
        c.quantize(src, got, qw);
        assert.equal(firstDiff(got, want), "", `${typeName(t)} ${name}${ZEROS[zeros]}`);
      }
    }
  });
}

for (const t of NO_IMATRIX.filter((x) => types.includes(x))) {
  test(`${typeName(t)} quantize without an importance vector equals ggml_quantize_chunk(…, NULL)`, () => {
    const g = ggmlOracle();
    const c = codecFor(t);
    for (const [name, make] of DATASETS) {
      const src = make();
      const want = g.quantizeChunk(t, src, NPR);
      const got = new Uint8Array(want.length);
      c.quantize(src, got);
      assert.equal(firstDiff(got, want), "", `${typeName(t)} ${name}`);
    }
  });
}
}
