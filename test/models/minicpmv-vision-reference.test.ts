/**
 * The MiniCPM-V vision reference's position helpers (test/support/reference-minicpmv-vision.ts) against the
 * formulas llama.cpp uses for the same quantities, written independently:
 * - the SigLIP position ids (HF: bucketize of float32 fractional coordinates) against clip.cpp's
 *   `floor(70·i / n_patches)` buckets (tools/mtmd/clip.cpp, PROJECTOR_TYPE_MINICPMV inputs): equal on every grid
 *   up to 70 patches except 25, 49, 50 and 55 patches per side, where HF's float32 rounding puts a few rows or
 *   columns one bucket lower (a divergence of llama.cpp from the HF model, not of ggufy; the e2e test uses
 *   32 patches, where they agree);
 * - the resampler's 2-D sin/cos table equals the converter's legacy `resampler.pos_embed_k` rows
 *   (src/models/minicpmv.ts sincosRows, the image-encoder script's get_2d_sincos_pos_embed) bit for bit;
 * - the building blocks on hand-computed values.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { sincosRows } from "../../src/models/minicpmv.js";
import { attention, layerNorm, linear, navitPositionIds, resamplerPosEmbed } from "../support/reference-minicpmv-vision.js";

test("navit position ids vs clip.cpp's floor(70·i/n) buckets: equal on every grid up to 70 but four sizes (25, 49, 50, 55)", () => {
  // HF bucketizes float32 fractional coordinates i·f32(1/n) (torch.arange: double product, then float32) against
  // float32 boundaries k/70 (right=True). Where 70·i/n is an integer the two meet exactly — unless the float32
  // coordinate rounds below the boundary: n = 25, i = 5: f32(1/25) = 10737418·2⁻²⁸, ×5 = 13421772.5·2⁻²⁶, a tie
  // rounded to even = 0.199999988 < f32(14/70) = 0.200000003, so HF's bucket is 13 where clip.cpp computes 14.
  const differ: string[] = [];
  for (let nh = 1; nh <= 70; nh++) {
    for (const nw of [nh, 1, 7, 23, 32, 64, 70]) {
      const ids = navitPositionIds(nh, nw, 70);
      for (let i = 0; i < nh; i++) {
        for (let j = 0; j < nw; j++) {
          const bh = Math.floor((70 * i) / nh);
          const bw = Math.floor((70 * j) / nw);
          const id = ids[i * nw + j]!;
          if (id !== bh * 70 + bw) {
            // only ever one bucket lower, on an axis whose 70·i/n is an integer
            const [hh, ww] = [Math.floor(id / 70), id % 70];
            const lower = (got: number, b: number, k: number, n: number): boolean => got === b || (got === b - 1 && (70 * k) % n === 0);
            assert.ok(lower(hh, bh, i, nh) && lower(ww, bw, j, nw), `${nh}x${nw} (${i}, ${j}): ${id}`);
            if (nw === nh && i === 0) differ.push(`${nw}:${j}`);
          }
        }
      }
    }
  }
  assert.deepEqual(differ, [
    "25:5", "25:10", "25:15", "25:20", "49:7", "49:14", "49:28", "49:35",
    "50:5", "50:10", "50:15", "50:20", "50:30", "50:40", "55:11", "55:22", "55:33", "55:44",
  ]);
  // the 448 px slice (32 patches) and every power of two agree
  for (const n of [1, 2, 4, 8, 16, 32, 64]) {
    const ids = navitPositionIds(n, n, 70);
    for (let i = 0; i < n * n; i++) assert.equal(ids[i], Math.floor((70 * Math.floor(i / n)) / n) * 70 + Math.floor((70 * (i % n)) / n));
  }
});

test("resampler 2-D sin/cos (70×70 grid) = the converter's pos_embed_k rows, bit for bit", () => {
  for (const D of [256, 3584]) {
    const ref = resamplerPosEmbed(D, 70, 70);
    const conv = sincosRows(D, 70, 0, 70 * 70);
    assert.equal(ref.length, conv.length);
    for (let i = 0; i < ref.length; i++) if (Math.fround(ref[i]!) !== conv[i]) assert.fail(`D=${D} element ${i}: ${ref[i]} ≠ ${conv[i]}`);
  }
  // a sub-grid is the top-left corner, h-major: row (h, w) of a 3×5 grid is row h·70 + w of the full table
  const sub = resamplerPosEmbed(8, 3, 5);
  const full = resamplerPosEmbed(8, 70, 70);
  for (let h = 0; h < 3; h++) for (let w = 0; w < 5; w++) assert.deepEqual([...sub.subarray((h * 5 + w) * 8, (h * 5 + w + 1) * 8)], [...full.subarray((h * 70 + w) * 8, (h * 70 + w + 1) * 8)]);
});

test("linear, layerNorm, attention on hand-computed values", () => {
  // y = x Wᵀ + b, W [2, 3]
  assert.deepEqual([...linear(Float64Array.from([1, 2, 3]), 1, 3, [1, 0, -1, 2, 1, 0], 2, [0.5, -1])], [1 - 3 + 0.5, 2 + 2 - 1]);
  // LayerNorm of [1, 2, 3]: mean 2, biased var 2/3
  const ln = layerNorm(Float64Array.from([1, 2, 3]), 1, 3, [1, 1, 2], [0, 1, 0], 0);
  const s = Math.sqrt(3 / 2);
  assert.deepEqual([...ln].map((v) => +v.toFixed(12)), [-s, 1, 2 * s].map((v) => +v.toFixed(12)));
  // one head, d = 2: q·k = [0, 2]/√2 → softmax weights (1, e^√2)/(1 + e^√2)
  const a = attention(Float64Array.from([1, 1]), 1, Float64Array.from([1, -1, 1, 1]), Float64Array.from([10, 0, 0, 10]), 2, 1, 2);
  const p1 = Math.exp(Math.SQRT2) / (1 + Math.exp(Math.SQRT2));
  assert.ok(Math.abs(a[0]! - 10 * (1 - p1)) < 1e-12 && Math.abs(a[1]! - 10 * p1) < 1e-12, `${a}`);
});
