/**
 * The WebAssembly search of IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (src/quant/ggml/iq-wasm.ts) gives
 * the same bytes as the TypeScript search (iq2.ts / iq3.ts with the kernel off) — the TypeScript path
 * itself is checked against ggml_quantize_chunk in iq.test.ts / iq2.test.ts, which also run with the
 * kernel active. Cases: iq-cases.ts's distributions with and without importance vectors (some with
 * zero entries or zero sub-blocks), rows spanning several kernel calls, an importance row shorter than
 * a call, and blocks holding NaN / ±Inf (the kernel leaves those to the TypeScript path; both then give
 * the same bytes or the same error).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { iq2_s, iq2_xs, iq2_xxs, iq2Kernels, iq2Reference } from "../../src/quant/ggml/iq2.js";
import { iq3_s, iq3_xxs, iq3Kernels, iq3Reference } from "../../src/quant/ggml/iq3.js";
import type { BlockCodec } from "../../src/quant/ggml/codec.js";
import { DATASETS, fill, firstDiff, imatrix } from "./iq-cases.js";

type Q = (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null) => void;
const CASES: Array<[string, BlockCodec, Q, { available(): boolean; reason: string | undefined }]> = [
  ["IQ2_XXS", iq2_xxs, iq2Reference.iq2_xxs, iq2Kernels.iq2_xxs],
  ["IQ2_XS", iq2_xs, iq2Reference.iq2_xs, iq2Kernels.iq2_xs],
  ["IQ2_S", iq2_s, iq2Reference.iq2_s, iq2Kernels.iq2_s],
  ["IQ3_XXS", iq3_xxs, iq3Reference.iq3_xxs, iq3Kernels.iq3_xxs],
  ["IQ3_S", iq3_s, iq3Reference.iq3_s, iq3Kernels.iq3_s],
];

const off = Boolean(process.env["GGUFY_NO_WASM"]);

/** both quantizers on the same input: the same bytes, or the same error */
function same(name: string, c: BlockCodec, ref: Q, src: Float32Array, qw: Float32Array | null, what: string): void {
  const n = (src.length / 256) * c.typeSize;
  const a = new Uint8Array(n).fill(0xa5);
  const b = new Uint8Array(n).fill(0x5a);
  let ea: unknown, eb: unknown;
  try {
    c.quantize(src, a, qw);
  } catch (e) {
    ea = e;
  }
  try {
    ref(src, b, qw);
  } catch (e) {
    eb = e;
  }
  if (ea || eb) {
    assert.equal(String(ea), String(eb), `${name} ${what}: errors`);
    return;
  }
  assert.equal(firstDiff(a, b), "", `${name} ${what}`);
}

// 40 blocks (three kernel calls), Gaussian with a few larger values, whole rows of 512
const LONG = fill(40 * 256, 31, (i, r, g) => (r() < 0.01 ? 8 * g() : g()) * (1 + (i >> 9)) * 0.01);
// 192 blocks of a few shapes (most sub-blocks' near-ties between neighbours decided by the last bits)
const MANY = fill(192 * 256, 32, (i, r, g) => {
  const k = (i >> 12) % 4;
  return k === 0 ? g() : k === 1 ? 2 * r() - 1 : k === 2 ? g() * Math.abs(g()) : (r() < 0.1 ? 5 : 1) * g() * 1e-3;
});

for (const [name, c, ref, kernel] of CASES) {
  test(`${name}: wasm search bytes equal the TypeScript search`, { skip: off && "GGUFY_NO_WASM is set" }, () => {
    assert.ok(kernel.available(), `${name} kernel not in use: ${kernel.reason}`);
    let seed = 500;
    for (const [dist, make] of DATASETS) {
      const src = make();
      for (const zeros of [0, 1, 2] as const) same(name, c, ref, src, imatrix(++seed, zeros), `${dist} imatrix ${zeros}`);
      if (!c.requiresImatrix) same(name, c, ref, src, null, `${dist} no imatrix`);
    }
    same(name, c, ref, LONG, imatrix(77, 1), "40 blocks, imatrix of 512");
    same(name, c, ref, LONG, fill(40 * 256, 78, (_i, r) => r()), "40 blocks, one imatrix row");
    if (!c.requiresImatrix) same(name, c, ref, LONG, null, "40 blocks, no imatrix");
    same(name, c, ref, MANY, fill(4096, 81, (_i, r, g) => (r() < 0.1 ? 0 : Math.abs(g()))), "192 blocks, imatrix of 4096 with zeros");
    if (!c.requiresImatrix) same(name, c, ref, MANY, null, "192 blocks, no imatrix");
    for (const bad of [NaN, Infinity, -Infinity]) {
      const src = LONG.slice();
      src[17 * 256 + 5] = bad;
      same(name, c, ref, src, imatrix(79), `a ${bad} in block 17`);
      const qw = imatrix(80);
      qw[300] = bad;
      same(name, c, ref, LONG, qw, `a ${bad} importance`);
    }
  });
}
