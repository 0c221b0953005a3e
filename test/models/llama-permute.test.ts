import { test } from "node:test";
import assert from "node:assert/strict";
import { permutedSourceRow } from "../../src/models/tensors.js";

/**
 * llama.cpp's converter: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols).
 * Computed here independently as an index table over a numpy-style nested array.
 */
function numpyPermute(rows: number, nHead: number): number[] {
  const d = rows / nHead;
  const half = d / 2;
  // source layout [h][j][i] (j in 0..1, i in 0..half) → output layout [h][i][j]
  const out: number[] = [];
  for (let h = 0; h < nHead; h++) for (let i = 0; i < half; i++) for (let j = 0; j < 2; j++) out.push(h * d + j * half + i);
  return out;
}

test("Q/K row permutation equals llama.cpp's reshape/swapaxes", () => {
  for (const [rows, heads] of [[64, 8], [32, 4], [4096, 32], [12, 3]] as const) {
    const want = numpyPermute(rows, heads);
    for (let r = 0; r < rows; r++) assert.equal(permutedSourceRow(r, rows / heads), want[r], `rows ${rows}, heads ${heads}, row ${r}`);
  }
});
