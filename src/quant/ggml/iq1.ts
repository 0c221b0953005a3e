import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16 } from "../../formats/half.js";
import { H2F } from "./kquant-common.js";
import { F, IQ1S_GRID, nearestInt, clampI, checkDeqArgs, quantizeIqRows, latticeIq1s, type Lattice } from "./iq-common.js";
import { iq1Kernel, IQ1_BLOCKS, type Iq1Kernel } from "./iq1-wasm.js";

/**
 * IQ1_S (1.5625 bpw) and IQ1_M (1.75 bpw): ternary 8-vectors from the 2048-point grid plus a ±1/8
 * shift. Ports of ggml-quants.c quantize_row_iq1_s_impl / quantize_row_iq1_m_impl (the exhaustive
 * split search over the sorted block, iq1_find_best_neighbour2 for off-grid points) and
 * dequantize_row_iq1_s / _m. ggml sorts the block with qsort (iq1_sort_helper compares the values
 * only); glibc's qsort is a stable merge sort for such small arrays, so ties keep index order here.
 * IQ1_S needs an importance vector (ggml asserts it); IQ1_M without one uses weight = x² as ggml does
 * (llama-quantize still refuses IQ1_M without an imatrix; the codec is marked requiresImatrix).
 *
 * The quantizers run as a WebAssembly kernel when available (iq1-wasm.ts: the same operations in the
 * same order, with the sort, the split scans and the neighbour search vectorised); this file is the
 * readable reference and the fallback (GGUFY_NO_WASM, no WebAssembly, and any block the kernel
 * flags: non-finite input or scales, or no neighbour found).
 */

const DELTA = 0.125; // IQ1S_DELTA = IQ1M_DELTA
const XP = [-1 + DELTA, DELTA, 1 + DELTA] as const;
const XM = [-1 - DELTA, -DELTA, 1 - DELTA] as const;
const EPS_S = F(1e-12); // GROUP_MAX_EPS_IQ1_S
const EPS_M = F(1e-7); // GROUP_MAX_EPS_IQ1_M
const FLT_MAX = 3.4028234663852886e38;
const QK = 256;


/** The per-call working set of the IQ1 searches (one per quantize call: no state shared between calls). */
class Iq1Scratch {
  readonly weight = new Float64Array(32);
  readonly L = new Int8Array(32);
  readonly idx = new Int32Array(32);
  readonly sumx = new Float64Array(33);
  readonly sumw = new Float64Array(33);
  readonly scales = new Float64Array(16);
  readonly shifts = new Int8Array(16);
  readonly index = new Uint16Array(4);
  readonly SC = new Uint16Array(4);
  readonly SQ1 = new Float64Array(8);
  // per sorted position: w·xp[l]·x, w·xp[l]·xp[l], w·xm[l]·x, w·xm[l]·xm[l] for l = 0..2 (IQ1_M)
  readonly TPX = new Float64Array(16 * 3);
  readonly TPQ = new Float64Array(16 * 3);
  readonly TMX = new Float64Array(16 * 3);
  readonly TMQ = new Float64Array(16 * 3);
}

/** qsort(pairs, n, …, iq1_sort_helper) as glibc runs it (stable): idx[j] = position of the j-th smallest */
function sortBlock(s: Iq1Scratch, x: Float32Array, xo: number, n: number): void {
  const { idx } = s;
  // stable insertion sort (an element moves left only past strictly greater values)
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    let k = j;
    while (k > 0 && x[xo + idx[k - 1]!]! > v) {
      idx[k] = idx[k - 1]!;
      k--;
    }
    idx[k] = j;
  }
}

/** iq1_find_best_neighbour2: min Σ w·(scale·xg[l] − x)² over u's neighbours; writes L, returns the index */
function bestNeighbour2(s: Iq1Scratch, lat: Lattice, u: number, x: Float32Array, xo: number, wo: number, scale: number, xg: readonly number[], lo: number): number {
  const { weight, L, SQ1 } = s;
  const nb = lat.neighbours(u);
  const q = lat.q;
  let best = FLT_MAX;
  let gi = -1;
  // scale·xg[l] for the grid coordinates 2l + 1 = 1, 3, 5 (the float32 product the C loop forms each time)
  SQ1[1] = F(scale * xg[0]!);
  SQ1[3] = F(scale * xg[1]!);
  SQ1[5] = F(scale * xg[2]!);
  for (let j = 0; j < nb.length; j++) {
    const g = nb[j]! * 8;
    let d2 = 0;
    for (let i = 0; i < 8; i++) {
      const diff = F(SQ1[q[g + i]!]! - x[xo + i]!);
      d2 = F(d2 + F(F(weight[wo + i]! * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      gi = nb[j]!;
    }
  }
  // ggml falls back to a scan of the whole grid here (reading out of bounds); only non-finite input gets there
  if (gi < 0) throw new Error("IQ1 quantizer: no grid point found (non-finite input?)");
  for (let i = 0; i < 8; i++) L[lo + i] = (q[gi * 8 + i]! - 1) >> 1;
  return gi;
}

/**
 * The tail of quantize_row_iq1_s_impl / _iq1_m_impl's sub-block: the grid index of each 8-group of s.L
 * into s.index, off-grid groups moved to their best neighbour (iq1_find_best_neighbour2) at `scale`;
 * when any was off the grid, the scale refitted to the chosen points (Σ w·q·x / Σ w·q²). Group 0 uses
 * the level values xx0, the others xx1 (IQ1_M shifts its two halves separately).
 */
function placeOnGrid(s: Iq1Scratch, lat: Lattice, x: Float32Array, xb: number, groups: number, scale: number, xx0: readonly number[], xx1: readonly number[]): number {
  const { weight, L, index } = s;
  let allOnGrid = true;
  for (let k = 0; k < groups; k++) {
    let u = 0;
    for (let j = 0; j < 8; j++) u |= L[8 * k + j]! << (2 * j);
    let gi = lat.map[u]!;
    if (gi < 0) {
      allOnGrid = false;
      gi = bestNeighbour2(s, lat, u, x, xb + 8 * k, 8 * k, scale, k === 0 ? xx0 : xx1, 8 * k);
    }
    index[k] = gi;
  }
  if (allOnGrid) return scale;
  let sqx = 0, sq2 = 0;
  for (let k = 0; k < groups; k++) {
    const xx = k === 0 ? xx0 : xx1;
    const g = index[k]! * 8;
    for (let j = 0; j < 8; j++) {
      const w = weight[8 * k + j]!;
      const q = xx[(lat.q[g + j]! - 1) >> 1]!;
      sqx = F(sqx + F(F(w * q) * x[xb + 8 * k + j]!));
      sq2 = F(sq2 + F(F(w * q) * q));
    }
  }
  return sqx > 0 && sq2 > 0 ? F(sqx / sq2) : scale;
}

function sigma2Of(x: Float32Array, xo: number): number {
  let sumx2 = 0;
  for (let i = 0; i < QK; i++) sumx2 = F(sumx2 + F(x[xo + i]! * x[xo + i]!));
  return F(F(2 * sumx2) / QK);
}

function setWeights(s: Iq1Scratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, n: number, sigma2: number): void {
  const { weight } = s;
  if (qw) for (let i = 0; i < n; i++) weight[i] = F(qw[qo + i]! * F(Math.sqrt(F(sigma2 + F(x[xo + i]! * x[xo + i]!)))));
  else for (let i = 0; i < n; i++) weight[i] = F(x[xo + i]! * x[xo + i]!);
}

function absMax(x: Float32Array, xo: number, n: number): number {
  let max = Math.abs(x[xo]!);
  for (let i = 1; i < n; i++) {
    const a = Math.abs(x[xo + i]!);
    max = max > a ? max : a;
  }
  return max;
}

/** quantize_row_iq1_s_impl for one 256-block: 50 bytes at dst[o] */
function quantizeIq1sBlock(s: Iq1Scratch, x: Float32Array, xo: number, qw: Float32Array, qo: number, dst: Uint8Array, o: number): void {
  const { weight, L, idx, sumx, sumw, scales, shifts, index } = s;
  const lat = latticeIq1s();
  const bs = 32;
  dst.fill(0, o, o + 50);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + bs * ib;
    setWeights(s, x, xb, qw, qo + bs * ib, bs, sigma2);
    const max = absMax(x, xb, bs);
    if (max < EPS_S) {
      scales[ib] = 0;
      shifts[ib] = 1;
      continue;
    }
    sortBlock(s, x, xb, bs);
    sumx[0] = sumw[0] = 0;
    for (let j = 0; j < bs; j++) {
      const i = idx[j]!;
      sumx[j + 1] = F(sumx[j]! + F(weight[i]! * x[xb + i]!));
      sumw[j + 1] = F(sumw[j]! + weight[i]!);
    }
    let bestScore = -FLT_MAX;
    let scale = max;
    let besti1 = -1;
    let besti2 = -1;
    let bestShift = 0;
    const sx0 = sumx[0]!, sxN = sumx[bs]!, sw0 = sumw[0]!, swN = sumw[bs]!;
    for (let i1 = 0; i1 <= bs; i1++) {
      const sx1 = sumx[i1]!, sw1 = sumw[i1]!;
      const ax = F(sx1 - sx0), aw = F(sw1 - sw0);
      for (let i2 = i1; i2 <= bs; i2++) {
        const sx2 = sumx[i2]!, sw2 = sumw[i2]!;
        const bx = F(sx2 - sx1), cx = F(sxN - sx2), bw = F(sw2 - sw1), cw = F(swN - sw2);
        let sqx = F(F(F(ax * XP[0]) + F(bx * XP[1])) + F(cx * XP[2]));
        let sq2 = F(F(F(F(aw * XP[0]) * XP[0]) + F(F(bw * XP[1]) * XP[1])) + F(F(cw * XP[2]) * XP[2]));
        if (sq2 > 0 && F(sqx * sqx) > F(bestScore * sq2)) {
          scale = F(sqx / sq2);
          bestScore = F(scale * sqx);
          besti1 = i1;
          besti2 = i2;
          bestShift = 1;
        }
        sqx = F(F(F(ax * XM[0]) + F(bx * XM[1])) + F(cx * XM[2]));
        sq2 = F(F(F(F(aw * XM[0]) * XM[0]) + F(F(bw * XM[1]) * XM[1])) + F(F(cw * XM[2]) * XM[2]));
        if (sq2 > 0 && F(sqx * sqx) > F(bestScore * sq2)) {
          scale = F(sqx / sq2);
          bestScore = F(scale * sqx);
          besti1 = i1;
          besti2 = i2;
          bestShift = -1;
        }
      }
    }
    if (besti1 < 0 || besti2 < 0 || bestShift === 0) {
      scales[ib] = 0;
      shifts[ib] = 1;
      continue;
    }
    for (let j = 0; j < besti1; j++) L[idx[j]!] = 0;
    for (let j = besti1; j < besti2; j++) L[idx[j]!] = 1;
    for (let j = besti2; j < bs; j++) L[idx[j]!] = 2;
    if (scale < 0) {
      for (let j = 0; j < bs; j++) L[j] = 2 - L[j]!;
      scale = -scale;
      bestShift = -bestShift;
    }
    const xx = bestShift === 1 ? XP : XM;
    scale = placeOnGrid(s, lat, x, xb, bs / 8, scale, xx, xx);
    let h = 0;
    for (let k = 0; k < bs / 8; k++) {
      dst[o + 2 + (bs / 8) * ib + k] = index[k]! & 255;
      h |= (index[k]! >> 8) << (3 * k);
    }
    dst[o + 34 + 2 * ib] = h & 255;
    dst[o + 35 + 2 * ib] = h >> 8;
    scales[ib] = scale;
    shifts[ib] = bestShift;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) return;
  const d = F(maxScale / 15);
  const hd = toF16(F(d * F(1.125)));
  dst[o] = hd & 255;
  dst[o + 1] = hd >> 8;
  const id = F(1 / d);
  for (let ib = 0; ib < 8; ib++) {
    let l = clampI(nearestInt(F(0.5 * F(F(id * scales[ib]!) - 1))), 0, 7);
    if (shifts[ib] === -1) l |= 8;
    dst[o + 35 + 2 * ib]! |= l << 4;
  }
}

const MASKS = [0x00, 0x80, 0x08, 0x88] as const;

/** quantize_row_iq1_m_impl for one 256-block: 56 bytes at dst[o] */
function quantizeIq1mBlock(s: Iq1Scratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, dst: Uint8Array, o: number): void {
  const { weight, L, idx, scales, shifts, index, SC, TPX, TPQ, TMX, TMQ } = s;
  const lat = latticeIq1s();
  const bs = 16;
  dst.fill(0, o, o + 56);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo);
  const sqx = [0, 0, 0, 0];
  const sq2 = [0, 0, 0, 0];
  for (let ib = 0; ib < 16; ib++) {
    const xb = xo + bs * ib;
    setWeights(s, x, xb, qw, qo + bs * ib, bs, sigma2);
    const max = absMax(x, xb, bs);
    if (max < EPS_M) {
      scales[ib] = 0;
      shifts[ib] = 0;
      continue;
    }
    sortBlock(s, x, xb, bs);
    for (let j = 0; j < bs; j++) {
      const i = idx[j]!;
      const w = weight[i]!;
      const v = x[xb + i]!;
      for (let l = 0; l < 3; l++) {
        TPX[3 * j + l] = F(F(w * XP[l]!) * v);
        TPQ[3 * j + l] = F(F(w * XP[l]!) * XP[l]!);
        TMX[3 * j + l] = F(F(w * XM[l]!) * v);
        TMQ[3 * j + l] = F(F(w * XM[l]!) * XM[l]!);
      }
    }
    let bestScore = -FLT_MAX;
    let scale = max;
    let besti1 = -1;
    let besti2 = -1;
    let bestK = -1;
    for (let i1 = 0; i1 <= bs; i1++) {
      for (let i2 = i1; i2 <= bs; i2++) {
        let x0 = 0, x1 = 0, x2 = 0, x3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
        for (let j = 0; j < bs; j++) {
          const l = j < i1 ? 0 : j < i2 ? 1 : 2;
          const t = 3 * j + l;
          const px = TPX[t]!, pq = TPQ[t]!, mx = TMX[t]!, mq = TMQ[t]!;
          x0 = F(x0 + px);
          q0 = F(q0 + pq);
          x3 = F(x3 + mx);
          q3 = F(q3 + mq);
          if (idx[j]! < bs / 2) {
            x1 = F(x1 + px);
            q1 = F(q1 + pq);
            x2 = F(x2 + mx);
            q2 = F(q2 + mq);
          } else {
            x2 = F(x2 + px);
            q2 = F(q2 + pq);
            x1 = F(x1 + mx);
            q1 = F(q1 + mq);
          }
        }
        sqx[0] = x0; sqx[1] = x1; sqx[2] = x2; sqx[3] = x3;
        sq2[0] = q0; sq2[1] = q1; sq2[2] = q2; sq2[3] = q3;
        for (let k = 0; k < 4; k++) {
          if (sq2[k]! > 0 && F(sqx[k]! * sqx[k]!) > F(bestScore * sq2[k]!)) {
            scale = F(sqx[k]! / sq2[k]!);
            bestScore = F(scale * sqx[k]!);
            besti1 = i1;
            besti2 = i2;
            bestK = k;
          }
        }
      }
    }
    if (besti1 < 0 || besti2 < 0 || bestK < 0) {
      scales[ib] = 0;
      shifts[ib] = 0;
      continue;
    }
    for (let j = 0; j < besti1; j++) L[idx[j]!] = 0;
    for (let j = besti1; j < besti2; j++) L[idx[j]!] = 1;
    for (let j = besti2; j < bs; j++) L[idx[j]!] = 2;
    if (scale < 0) {
      for (let j = 0; j < bs; j++) L[j] = 2 - L[j]!;
      scale = -scale;
      bestK = 3 - bestK;
    }
    scale = placeOnGrid(s, lat, x, xb, 2, scale, bestK < 2 ? XP : XM, bestK % 2 === 0 ? XP : XM);
    dst[o + 2 * ib] = index[0]! & 255;
    dst[o + 2 * ib + 1] = index[1]! & 255;
    dst[o + 32 + ib] = (index[0]! >> 8) | ((index[1]! >> 8) << 4);
    scales[ib] = scale;
    shifts[ib] = bestK;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) return;
  const sc = SC.fill(0);
  let d = F(maxScale / 15);
  const id = F(1 / d);
  let fx = 0, f2 = 0;
  for (let ib = 0; ib < 16; ib++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * scales[ib]!) - 1))), 0, 7);
    sc[ib >> 2]! |= l << (3 * (ib % 4));
    dst[o + 32 + ib]! |= MASKS[shifts[ib]!]!;
    const xb = xo + bs * ib;
    setWeights(s, x, xb, qw, qo + bs * ib, bs, sigma2);
    const qh = dst[o + 32 + ib]!;
    for (let k = 0; k < 2; k++) {
      const xx = k === 0 ? (shifts[ib]! < 2 ? XP : XM) : shifts[ib]! % 2 === 0 ? XP : XM;
      const g = (dst[o + 2 * ib + k]! + ((qh << (8 - 4 * k)) & 0x700)) * 8;
      for (let j = 0; j < 8; j++) {
        const w = weight[8 * k + j]!;
        const q = F(xx[(lat.q[g + j]! - 1) >> 1]! * (2 * l + 1));
        fx = F(fx + F(F(w * q) * x[xb + 8 * k + j]!));
        f2 = F(f2 + F(F(w * q) * q));
      }
    }
  }
  if (f2 > 0) d = F(fx / f2);
  const u16 = toF16(F(d * F(1.1125)));
  sc[0]! |= (u16 & 0x000f) << 12;
  sc[1]! |= (u16 & 0x00f0) << 8;
  sc[2]! |= (u16 & 0x0f00) << 4;
  sc[3]! |= u16 & 0xf000;
  for (let i = 0; i < 4; i++) {
    dst[o + 48 + 2 * i] = sc[i]! & 255;
    dst[o + 49 + 2 * i] = sc[i]! >> 8;
  }
}

/**
 * iq1s_grid values plus the shift, by grid index g and sign: entry 16g + j is grid[j] + delta, 16g + 8 + j
 * grid[j] − delta (float32-exact). dl·that in double is exact, so its float32 store is C's float
 * product dl*(grid[j] + delta).
 */
let gridDelta: Float64Array | undefined;
function gridDeltaTable(): Float64Array {
  if (gridDelta) return gridDelta;
  const t = new Float64Array(2048 * 16);
  for (let g = 0; g < 2048; g++) {
    for (let j = 0; j < 8; j++) {
      t[16 * g + j] = IQ1S_GRID[8 * g + j]! + DELTA;
      t[16 * g + 8 + j] = IQ1S_GRID[8 * g + j]! - DELTA;
    }
  }
  return (gridDelta = t);
}

/** y[0..8) = dl·(grid point g + (neg ? −delta : delta)) */
function put8(dst: Float32Array, y: number, dl: number, T: Float64Array, g: number, neg: number): void {
  const b = 16 * g + (neg ? 8 : 0);
  dst[y] = dl * T[b]!;
  dst[y + 1] = dl * T[b + 1]!;
  dst[y + 2] = dl * T[b + 2]!;
  dst[y + 3] = dl * T[b + 3]!;
  dst[y + 4] = dl * T[b + 4]!;
  dst[y + 5] = dl * T[b + 5]!;
  dst[y + 6] = dl * T[b + 6]!;
  dst[y + 7] = dl * T[b + 7]!;
}

/** dequantize_row_iq1_s */
function dequantIq1s(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ1_S", src, dst, 50);
  const T = gridDeltaTable();
  for (let i = 0; i < nb; i++) {
    const o = i * 50;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const qh = src[o + 34 + 2 * ib]! | (src[o + 35 + 2 * ib]! << 8);
      const dl = F(d * (2 * ((qh >> 12) & 7) + 1));
      const neg = qh & 0x8000;
      const q = o + 2 + 4 * ib;
      const y = 256 * i + 32 * ib;
      put8(dst, y, dl, T, src[q]! | ((qh << 8) & 0x700), neg);
      put8(dst, y + 8, dl, T, src[q + 1]! | ((qh << 5) & 0x700), neg);
      put8(dst, y + 16, dl, T, src[q + 2]! | ((qh << 2) & 0x700), neg);
      put8(dst, y + 24, dl, T, src[q + 3]! | ((qh >> 1) & 0x700), neg);
    }
  }
}

/** dequantize_row_iq1_m */
function dequantIq1m(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ1_M", src, dst, 56);
  const T = gridDeltaTable();
  for (let i = 0; i < nb; i++) {
    const o = i * 56;
    const sc0 = src[o + 48]! | (src[o + 49]! << 8);
    const sc1 = src[o + 50]! | (src[o + 51]! << 8);
    const sc2 = src[o + 52]! | (src[o + 53]! << 8);
    const sc3 = src[o + 54]! | (src[o + 55]! << 8);
    const d = H2F[(sc0 >> 12) | ((sc1 >> 8) & 0x00f0) | ((sc2 >> 4) & 0x0f00) | (sc3 & 0xf000)]!;
    for (let ib = 0; ib < 8; ib++) {
      const h = ib >> 1;
      const s = h === 0 ? sc0 : h === 1 ? sc1 : h === 2 ? sc2 : sc3;
      const sh = 6 * (ib & 1);
      const dl1 = F(d * (2 * ((s >> sh) & 7) + 1));
      const dl2 = F(d * (2 * ((s >> (sh + 3)) & 7) + 1));
      const qh0 = src[o + 32 + 2 * ib]!;
      const qh1 = src[o + 33 + 2 * ib]!;
      const q = o + 4 * ib;
      const y = 256 * i + 32 * ib;
      put8(dst, y, dl1, T, src[q]! | ((qh0 << 8) & 0x700), qh0 & 0x08);
      put8(dst, y + 8, dl1, T, src[q + 1]! | ((qh0 << 4) & 0x700), qh0 & 0x80);
      put8(dst, y + 16, dl2, T, src[q + 2]! | ((qh1 << 8) & 0x700), qh1 & 0x08);
      put8(dst, y + 24, dl2, T, src[q + 3]! | ((qh1 << 4) & 0x700), qh1 & 0x80);
    }
  }
}

type BlockFn = (s: Iq1Scratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, dst: Uint8Array, o: number) => void;
const blockS: BlockFn = (s, x, xo, w, qo, d, o) => quantizeIq1sBlock(s, x, xo, w!, qo, d, o);

/** IQ1_S in TypeScript only (the fallback; exported for the tests that compare it with the kernel) */
export function quantizeIq1sScalar(src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void {
  quantizeIqRows("IQ1_S", 50, src, dst, qw, true, new Iq1Scratch(), blockS);
}

/** IQ1_M in TypeScript only (see quantizeIq1sScalar) */
export function quantizeIq1mScalar(src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void {
  quantizeIqRows("IQ1_M", 56, src, dst, qw, false, new Iq1Scratch(), quantizeIq1mBlock);
}

const kernel = iq1Kernel(latticeIq1s);
/** Whether the WebAssembly kernel (iq1-wasm.ts) is in use (instantiates it). */
export const IQ1_WASM = (): boolean => kernel.available();

/**
 * The rows through the kernel: quantizeIqRows checks the arguments and hands out the blocks with
 * their importance rows; they are batched IQ1_BLOCKS at a time into the module's memory, and the
 * blocks the kernel flags are redone by the TypeScript block function.
 */
function quantizeWasm(k: Iq1Kernel, m: boolean, src: Float32Array, dst: Uint8Array, qw: Float32Array | null | undefined): void {
  const name = m ? "IQ1_M" : "IQ1_S";
  const size = m ? 56 : 50;
  const block = m ? quantizeIq1mBlock : blockS;
  const s = new Iq1Scratch();
  const pos = new Int32Array(2 * IQ1_BLOCKS);
  let n = 0;
  let o0 = 0;
  const flush = (): void => {
    if (n === 0) return;
    // the blocks are consecutive in src (one copy); their importance rows come in runs that end where a row wraps
    const xo0 = pos[0]!;
    if (pos[2 * (n - 1)] === xo0 + QK * (n - 1)) k.x.set(src.subarray(xo0, xo0 + QK * n));
    else for (let b = 0; b < n; b++) k.x.set(src.subarray(pos[2 * b]!, pos[2 * b]! + QK), QK * b);
    if (qw) {
      for (let b = 0; b < n; ) {
        const qo = pos[2 * b + 1]!;
        let e = b + 1;
        while (e < n && pos[2 * e + 1] === qo + QK * (e - b)) e++;
        k.qw.set(qw.subarray(qo, qo + QK * (e - b)), QK * b);
        b = e;
      }
    }
    const bad = m ? k.m(n, qw ? 1 : 0) : k.s(n);
    dst.set(k.out.subarray(0, n * size), o0);
    if (bad) for (let b = 0; b < n; b++) if (k.flags[b]) block(s, src, pos[2 * b]!, qw, pos[2 * b + 1]!, dst, o0 + b * size);
    n = 0;
  };
  quantizeIqRows(name, size, src, dst, qw, !m, s, (_s, _x, xo, _w, qo, _d, o) => {
    if (n === 0) o0 = o;
    pos[2 * n] = xo;
    pos[2 * n + 1] = qo;
    if (++n === IQ1_BLOCKS) flush();
  });
  flush();
}

/** IQ1_S (m = false) or IQ1_M (m = true): the kernel when available, else the TypeScript path */
function iq1Codec(m: boolean): BlockCodec {
  const scalar = m ? quantizeIq1mScalar : quantizeIq1sScalar;
  return {
    type: m ? GGMLType.IQ1_M : GGMLType.IQ1_S,
    blockSize: 256,
    typeSize: m ? 56 : 50,
    requiresImatrix: true,
    quantize: (src, dst, qw) => {
      const k = kernel.get();
      if (k) quantizeWasm(k, m, src, dst, qw);
      else scalar(src, dst, qw);
    },
    dequantize: m ? dequantIq1m : dequantIq1s,
  };
}

export const iq1_s: BlockCodec = iq1Codec(false);
export const iq1_m: BlockCodec = iq1Codec(true);
