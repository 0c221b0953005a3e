/**
 * Importance-weighted quantization (llama-quantize --imatrix): literal float32 ports of the
 * `quantize_row_<type>_impl(x, y, n_per_row, quant_weights)` paths of ggml/src/ggml-quants.c, which
 * `ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)` runs row by row when an
 * importance vector (one float per column) is given:
 *
 *   Q4_0 / Q5_0   quantize_row_q4_0_impl / _q5_0_impl: make_qx_quants with weights qw·sqrt(σ² + x²), σ² over the row
 *   Q4_1 / Q5_1   quantize_row_q4_1_impl / _q5_1_impl: make_qkx3_quants, same weights
 *   Q2_K          quantize_row_q2_K_impl: make_qkx3_quants per 16, make_qp_quants for the 4-bit scales/mins
 *   Q3_K          quantize_row_q3_K_impl: make_qx_quants per 16 and for the 6-bit scales
 *   Q4_K / Q5_K   quantize_row_q4_K_impl / _q5_K_impl: make_qkx3_quants per 32, make_qp_quants for the 6-bit scales/mins
 *   Q6_K          quantize_row_q6_K_impl: make_qx_quants with the raw importance as weights
 *   IQ4_NL/IQ4_XS quantize_row_iq4_nl_impl (ntry = 7) with weights qw·sqrt(σ² + x²)
 *
 * Q8_0, TQ1_0, TQ2_0 and the float types ignore the imatrix in ggml (quantize_q8_0 / _tq1_0 / _tq2_0:
 * "(void)quant_weights; // not used").
 *
 * Every float operation is one IEEE binary32 operation (Math.fround right after it, in the C order;
 * ggml-base is built for baseline x86-64, no FMA contraction). sqrtf(v) = fround(Math.sqrt(v)) for a
 * float32 v (both correctly rounded). These are reference ports, not tuned: the weighted path runs in
 * TypeScript only (the no-imatrix paths keep their WebAssembly kernels).
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, nearestInt, packScaleMinK4, pack2bit, putF16, q6kTail, toF16 } from "./kquant-common.js";
import type { TheMin } from "./kquant-common.js";
import { packLegacyLevels } from "./legacy.js";
import { KVALUES_IQ4NL, bestIndex } from "./iq4.js";

/** GROUP_MAX_EPS */
const EPS = F(1e-15);

/** nearest_int(fval) for a float32 value (kquant-common.ts: exact arithmetic form, the bit formula outside it). */
const nearest = nearestInt;

/**
 * The working arrays of one weighted quantize call (allocated per call by withImportance, passed to
 * every row function: no module-level mutable state).
 */
class WScratch {
  /** importance weights of the current 16/32-value group */
  readonly wt = new Float64Array(32);
  /** levels of one legacy block (signed storage: make_qx_quants; unsigned: make_qkx3_quants) */
  readonly l32 = new Int8Array(32);
  readonly u32 = new Uint8Array(32);
  /** makeQkx3's second output and its trial levels */
  readonly theMin: TheMin = { theMin: 0 };
  readonly laux = new Uint8Array(32);
  /** K-quant super-block levels, sub-block scales/mins, their weights and 4/6-bit codes */
  readonly lk = new Uint8Array(256);
  readonly lk8 = new Int8Array(256);
  readonly scales = new Float64Array(16);
  readonly dd16 = new Float64Array(16);
  readonly mins = new Float64Array(16);
  readonly sw = new Float64Array(16);
  readonly ls = new Uint8Array(16);
  readonly lm = new Uint8Array(16);
  readonly ls8 = new Int8Array(16);
  /** IQ4 levels and sub-block scales */
  readonly liq = new Uint8Array(256);
  readonly siq = new Float64Array(8);
}

// ---------------------------------------------------------------------------------------------
// the shared searches (ggml-quants.c), with quant_weights always given

/**
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw): x at x[xo..xo+n), weights qw[wo..wo+n), levels
 * written to L[lo..lo+n) as l + nmax; returns the scale.
 */
function makeQxQuantsW(n: number, nmax: number, x: ArrayLike<number>, xo: number, L: Int8Array, lo: number, qw: ArrayLike<number>, wo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; ++i) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < EPS) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    return 0;
  }
  let iscale = F(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const xi = x[xo + i]!;
    let l = nearest(F(iscale * xi));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[lo + i] = l + nmax;
    const w = qw[wo + i]!;
    sumlx = F(sumlx + F(F(w * xi) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let is = -9; is <= 9; ++is) {
    if (is === 0) continue;
    iscale = F(-F(nmax + F(F(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; ++i) {
      const xi = x[xo + i]!;
      let l = nearest(F(iscale * xi));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = qw[wo + i]!;
      sumlx = F(sumlx + F(F(w * xi) * l));
      suml2 = F(suml2 + F(F(w * l) * l));
    }
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      for (let i = 0; i < n; ++i) {
        const l = nearest(F(iscale * x[xo + i]!));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}


/**
 * make_qkx3_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad = false), weights
 * given: x at x[xo..), weights w[0..n), levels to L[lo..lo+n); the_min written to out.theMin.
 */
function makeQkx3(n: number, nmax: number, x: ArrayLike<number>, xo: number, w: ArrayLike<number>, L: Uint8Array, lo: number, rmin: number, rdelta: number, nstep: number, out: TheMin, laux: Uint8Array): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = w[0]!;
  let sumX = F(sumW * x[xo]!);
  for (let i = 1; i < n; ++i) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const wi = w[i]!;
    sumW = F(sumW + wi);
    sumX = F(sumX + F(wi * xi));
  }
  if (min > 0) min = 0;
  if (max <= min) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    out.theMin = -min;
    return 0;
  }
  let iscale = F(nmax / F(max - min));
  let scale = F(1 / iscale);
  let bestMad = 0;
  for (let i = 0; i < n; ++i) {
    const xi = x[xo + i]!;
    const l = nearest(F(iscale * F(xi - min)));
    const li = Math.max(0, Math.min(nmax, l));
    L[lo + i] = li;
    let diff = F(F(F(scale * li) + min) - xi);
    diff = F(diff * diff);
    bestMad = F(bestMad + F(w[i]! * diff));
  }
  if (nstep < 1) {
    out.theMin = -min;
    return scale;
  }
  const fr = F(rmin);
  const fd = F(rdelta);
  for (let is = 0; is <= nstep; ++is) {
    iscale = F(F(F(fr + F(fd * is)) + nmax) / F(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; ++i) {
      const xi = x[xo + i]!;
      let l = nearest(F(iscale * F(xi - min)));
      l = Math.max(0, Math.min(nmax, l));
      laux[i] = l;
      const wi = w[i]!;
      sumL = F(sumL + F(wi * l));
      sumL2 = F(sumL2 + F(F(wi * l) * l));
      sumXL = F(sumXL + F(F(wi * l) * xi));
    }
    const D = F(F(sumW * sumL2) - F(sumL * sumL));
    if (D > 0) {
      let thisScale = F(F(F(sumW * sumXL) - F(sumX * sumL)) / D);
      let thisMin = F(F(F(sumL2 * sumX) - F(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = F(sumXL / sumL2);
      }
      let mad = 0;
      for (let i = 0; i < n; ++i) {
        let diff = F(F(F(thisScale * laux[i]!) + thisMin) - x[xo + i]!);
        diff = F(diff * diff);
        mad = F(mad + F(w[i]! * diff));
      }
      if (mad < bestMad) {
        for (let i = 0; i < n; ++i) L[lo + i] = laux[i]!;
        bestMad = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  out.theMin = -min;
  return scale;
}

/** make_qp_quants(n, nmax, x, L, quant_weights): non-negative x, levels 0..nmax (uint8 storage). */
function makeQpQuants(n: number, nmax: number, x: ArrayLike<number>, L: Uint8Array, qw: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < n; ++i) max = max > x[i]! ? max : x[i]!;
  if (max < EPS) {
    for (let i = 0; i < n; ++i) L[i] = 0;
    return 0;
  }
  let iscale = F(nmax / max);
  for (let i = 0; i < n; ++i) L[i] = nearest(F(iscale * x[i]!));
  const scale = F(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; ++i) {
    const diff = F(x[i]! - F(scale * L[i]!));
    bestMse = F(bestMse + F(F(qw[i]! * diff) * diff));
  }
  for (let is = -4; is <= 4; ++is) {
    if (is === 0) continue;
    const iscaleIs = F(F(F(F(0.1) * is) + nmax) / max);
    const scaleIs = F(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; ++i) {
      let l = nearest(F(iscaleIs * x[i]!));
      l = Math.min(nmax, l);
      const diff = F(x[i]! - F(scaleIs * l));
      mse = F(mse + F(F(qw[i]! * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    let l = nearest(F(iscale * x[i]!));
    l = Math.min(nmax, l);
    L[i] = l;
    const w = qw[i]!;
    sumlx = F(sumlx + F(F(w * x[i]!) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  for (let itry = 0; itry < 5; ++itry) {
    let nChanged = 0;
    for (let i = 0; i < n; ++i) {
      const w = qw[i]!;
      const li = L[i]!;
      let slx = F(sumlx - F(F(w * x[i]!) * li));
      let sl2 = F(suml2 - F(F(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        let newL = nearest(F(F(x[i]! * sl2) / slx));
        newL = Math.min(nmax, newL);
        if (newL !== li) {
          slx = F(slx + F(F(w * x[i]!) * newL));
          sl2 = F(sl2 + F(F(w * newL) * newL));
          if (F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
            L[i] = newL;
            sumlx = slx;
            suml2 = sl2;
            ++nChanged;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  return suml2 > 0 ? F(sumlx / suml2) : 0;
}

/** qw[j] · sqrtf(sigma2 + x[j]²) for n values, into out[0..n). */
function importanceWeights(x: Float32Array, xo: number, qw: Float32Array, wo: number, sigma2: number, n: number, out: Float64Array): void {
  for (let j = 0; j < n; ++j) {
    const v = x[xo + j]!;
    out[j] = F(qw[wo + j]! * F(Math.sqrt(F(sigma2 + F(v * v)))));
  }
}

/** Σ x² in float32, index order. */
function sumSquares(x: Float32Array, xo: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; ++j) {
    const v = x[xo + j]!;
    s = F(s + F(v * v));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// legacy 32-blocks

/**
 * quantize_row_q4_0_impl / _q5_0_impl (withMin = false) and quantize_row_q4_1_impl / _q5_1_impl
 * (withMin = true): one row of n floats at x[xo..] → dst[o..], per 32-block the importance weights
 * qw·sqrt(sigma2 + x²), then make_qx_quants (scale only) or make_qkx3_quants (scale and min).
 */
function rowLegacy(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number, five: boolean, withMin: boolean): void {
  const sigma2 = F(sumSquares(x, xo, n) / n);
  const size = (five ? 22 : 18) + (withMin ? 2 : 0);
  for (let ib = 0; ib < n / 32; ++ib) {
    const bo = xo + 32 * ib;
    importanceWeights(x, bo, qw, 32 * ib, sigma2, 32, s.wt);
    const p = o + size * ib;
    if (withMin) {
      const d = makeQkx3(32, five ? 31 : 15, x, bo, s.wt, s.u32, 0, -0.9, 0.05, 36, s.theMin, s.laux);
      putF16(dst, p, toF16(d));
      putF16(dst, p + 2, toF16(F(-s.theMin.theMin)));
      packLegacyLevels(s.u32, dst, p, five ? 8 : 4, 4, five);
    } else {
      const d = makeQxQuantsW(32, five ? 16 : 8, x, bo, s.l32, 0, s.wt, 0);
      putF16(dst, p, toF16(d));
      packLegacyLevels(s.l32, dst, p, five ? 6 : 2, 2, five);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// K-quants

const QK = 256;

/** quantize_row_q2_K_impl (84-byte blocks: scales[16], qs[64], d, dmin). */
function rowQ2K(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number): void {
  for (let i = 0; i < n / QK; ++i) {
    const bx = xo + QK * i;
    const p = o + 84 * i;
    s.sw.fill(0);
    const sigma2 = F(sumSquares(x, bx, QK) / QK);
    for (let j = 0; j < 16; ++j) {
      importanceWeights(x, bx + 16 * j, qw, QK * i + 16 * j, sigma2, 16, s.wt);
      for (let l = 0; l < 16; ++l) s.sw[j] = F(s.sw[j]! + s.wt[l]!);
      s.scales[j] = makeQkx3(16, 3, x, bx + 16 * j, s.wt, s.lk, 16 * j, -0.9, 0.05, 36, s.theMin, s.laux);
      s.mins[j] = s.theMin.theMin;
    }
    let dm = makeQpQuants(16, 15, s.scales, s.ls, s.sw);
    let mm = makeQpQuants(16, 15, s.mins, s.lm, s.sw);
    const dh = toF16(dm);
    const mh = toF16(mm);
    putF16(dst, p + 80, dh);
    putF16(dst, p + 82, mh);
    dm = H2F[dh]!;
    mm = H2F[mh]!;
    for (let j = 0; j < 16; ++j) dst[p + j] = (s.ls[j]! | (s.lm[j]! << 4)) & 0xff;
    for (let j = 0; j < 16; ++j) {
      const sc = dst[p + j]!;
      const d = F(dm * (sc & 15));
      if (!d) continue;
      const m = F(mm * (sc >> 4));
      for (let ii = 0; ii < 16; ++ii) {
        const l = nearest(F(F(x[bx + 16 * j + ii]! + m) / d));
        s.lk[16 * j + ii] = Math.max(0, Math.min(3, l));
      }
    }
    pack2bit(dst, p + 16, s.lk);
  }
}

/** quantize_row_q3_K_impl (110-byte blocks: hmask[32], qs[64], scales[12], d). */
function rowQ3K(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number): void {
  for (let i = 0; i < n / QK; ++i) {
    const bx = xo + QK * i;
    const p = o + 110 * i;
    const sigma2 = F(F(2 * sumSquares(x, bx, QK)) / QK);
    for (let j = 0; j < 16; ++j) {
      importanceWeights(x, bx + 16 * j, qw, QK * i + 16 * j, sigma2, 16, s.wt);
      let sumw = 0;
      for (let l = 0; l < 16; ++l) sumw = F(sumw + s.wt[l]!);
      s.sw[j] = sumw;
      s.scales[j] = makeQxQuantsW(16, 4, x, bx + 16 * j, s.lk8, 16 * j, s.wt, 0);
    }
    const so = p + 96;
    for (let k = 0; k < 12; ++k) dst[so + k] = 0;
    const dBlock = makeQxQuantsW(16, 32, s.scales, 0, s.ls8, 0, s.sw, 0);
    for (let j = 0; j < 16; ++j) {
      let l = s.ls8[j]!;
      if (j < 8) dst[so + j] = l & 15;
      else dst[so + j - 8] |= (l & 15) << 4;
      l >>= 4;
      dst[so + 8 + (j % 4)] |= (l << (2 * (j >> 2))) & 0xff;
    }
    const dh = toF16(dBlock);
    putF16(dst, p + 108, dh);
    const dd = H2F[dh]!;
    for (let j = 0; j < 16; ++j) {
      let sc = j < 8 ? dst[so + j]! & 15 : dst[so + j - 8]! >> 4;
      sc = (((sc | (((dst[so + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32) << 24) >> 24;
      const d = F(dd * sc);
      if (!d) continue;
      for (let ii = 0; ii < 16; ++ii) {
        const l = nearest(F(x[bx + 16 * j + ii]! / d));
        s.lk8[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
      }
    }
    for (let k = 0; k < 32; ++k) dst[p + k] = 0;
    for (let e = 0; e < QK; ++e) {
      if (s.lk8[e]! > 3) {
        dst[p + (e & 31)] |= 1 << (e >> 5);
        s.lk8[e] = s.lk8[e]! - 4;
      }
    }
    pack2bit(dst, p + 32, s.lk8);
  }
}


/** quantize_row_q4_K_impl / quantize_row_q5_K_impl (d, dmin, scales[12], [qh[32]], qs[128]). */
function rowQ45K(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number, five: boolean): void {
  const nmax = five ? 31 : 15;
  const size = five ? 176 : 144;
  for (let i = 0; i < n / QK; ++i) {
    const bx = xo + QK * i;
    const p = o + size * i;
    const sigma2 = F(F(2 * sumSquares(x, bx, QK)) / QK);
    for (let j = 0; j < 8; ++j) {
      importanceWeights(x, bx + 32 * j, qw, QK * i + 32 * j, sigma2, 32, s.wt);
      let sumw = 0;
      for (let l = 0; l < 32; ++l) sumw = F(sumw + s.wt[l]!);
      s.sw[j] = sumw;
      s.scales[j] = makeQkx3(32, nmax, x, bx + 32 * j, s.wt, s.lk, 32 * j, -0.9, 0.05, 36, s.theMin, s.laux);
      s.mins[j] = s.theMin.theMin;
    }
    const dBlock = makeQpQuants(8, 63, s.scales, s.ls, s.sw);
    const mBlock = makeQpQuants(8, 63, s.mins, s.lm, s.sw);
    if (five) {
      for (let j = 0; j < 8; ++j) {
        s.ls[j] = Math.min(63, s.ls[j]!);
        s.lm[j] = Math.min(63, s.lm[j]!);
      }
    }
    for (let k = 0; k < 12; ++k) dst[p + 4 + k] = 0;
    packScaleMinK4(dst, p + 4, s.ls, s.lm);
    const dh = toF16(dBlock);
    const mh = toF16(mBlock);
    putF16(dst, p, dh);
    putF16(dst, p + 2, mh);
    const d0 = H2F[dh]!;
    const m0 = H2F[mh]!;
    for (let j = 0; j < 8; ++j) {
      const sc = j < 4 ? dst[p + 4 + j]! & 63 : (dst[p + 4 + j + 4]! & 15) | ((dst[p + 4 + j - 4]! >> 6) << 4);
      const m = j < 4 ? dst[p + 4 + j + 4]! & 63 : (dst[p + 4 + j + 4]! >> 4) | ((dst[p + 4 + j]! >> 6) << 4);
      const d = F(d0 * sc);
      if (!d) continue;
      const dm = F(m0 * m);
      for (let ii = 0; ii < 32; ++ii) {
        const l = nearest(F(F(x[bx + 32 * j + ii]! + dm) / d));
        s.lk[32 * j + ii] = Math.max(0, Math.min(nmax, l));
      }
    }
    if (!five) {
      const q = p + 16;
      for (let c = 0; c < 4; ++c) for (let l = 0; l < 32; ++l) dst[q + 32 * c + l] = s.lk[64 * c + l]! | (s.lk[64 * c + 32 + l]! << 4);
    } else {
      const qh = p + 16;
      const ql = p + 48;
      for (let l = 0; l < 32; ++l) dst[qh + l] = 0;
      for (let c = 0; c < 4; ++c) {
        const m1 = 1 << (2 * c);
        const m2 = m1 << 1;
        for (let l = 0; l < 32; ++l) {
          let a = s.lk[64 * c + l]!;
          if (a > 15) {
            a -= 16;
            dst[qh + l] |= m1;
          }
          let b = s.lk[64 * c + 32 + l]!;
          if (b > 15) {
            b -= 16;
            dst[qh + l] |= m2;
          }
          dst[ql + 32 * c + l] = a | (b << 4);
        }
      }
    }
  }
}

/** quantize_row_q6_K_impl (ql[128], qh[64], scales[16], d). */
function rowQ6K(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number): void {
  for (let i = 0; i < n / QK; ++i) {
    const bx = xo + QK * i;
    const p = o + 210 * i;
    for (let ib = 0; ib < 16; ++ib) s.scales[ib] = makeQxQuantsW(16, 32, x, bx + 16 * ib, s.lk8, 16 * ib, qw, QK * i + 16 * ib);
    if (!q6kTail(s.scales, 0, dst, p, s.dd16, 0)) continue; // all zero
    for (let j = 0; j < 16; ++j) {
      const d = s.dd16[j]!;
      if (!d) continue;
      for (let ii = 0; ii < 16; ++ii) {
        const l = nearest(F(x[bx + 16 * j + ii]! / d));
        s.lk8[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    for (let h = 0; h < 2; ++h) {
      const bl = 128 * h;
      const ql = p + 64 * h;
      const qh = p + 128 + 32 * h;
      for (let l = 0; l < 32; ++l) {
        const a = s.lk8[bl + l]!;
        const c = s.lk8[bl + 32 + l]!;
        const e = s.lk8[bl + 64 + l]!;
        const g = s.lk8[bl + 96 + l]!;
        dst[ql + l] = (a & 15) | ((e & 15) << 4);
        dst[ql + 32 + l] = (c & 15) | ((g & 15) << 4);
        dst[qh + l] = (a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL / IQ4_XS (quantize_row_iq4_nl_impl with quant_weights, ntry = 7)

const KV = KVALUES_IQ4NL;

/** One IQ4 super-block of `sbs` values (32: IQ4_NL, 256: IQ4_XS) at x[xo..], importance qw[wo..]. */
function iq4Block(s: WScratch, sbs: number, x: Float32Array, xo: number, qw: Float32Array, wo: number, dst: Uint8Array, o: number): void {
  let sigma2 = sumSquares(x, xo, sbs);
  sigma2 = F(sigma2 * F(2 / sbs));
  const nsub = sbs / 32;
  const q4 = nsub > 1 ? o + 8 : o + 2;
  for (let k = 0; k < sbs / 2; ++k) dst[q4 + k] = 0;
  putF16(dst, o, 0);
  let maxScale = 0;
  let amaxScale = 0;
  for (let ib = 0; ib < nsub; ++ib) {
    const xb = xo + 32 * ib;
    importanceWeights(x, xb, qw, wo + 32 * ib, sigma2, 32, s.wt);
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; ++j) {
      const ax = Math.abs(x[xb + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[xb + j]!;
      }
    }
    if (amax < EPS) {
      s.siq[ib] = 0;
      continue;
    }
    let d = F(-max / KV[0]);
    let id = F(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < 32; ++j) {
      const xj = x[xb + j]!;
      const l = bestIndex(F(id * xj));
      s.liq[32 * ib + j] = l;
      const q = KV[l]!;
      const w = s.wt[j]!;
      sumqx = F(sumqx + F(F(w * q) * xj));
      sumq2 = F(sumq2 + F(F(w * q) * q));
    }
    d = sumq2 > 0 ? F(sumqx / sumq2) : 0;
    let best = F(d * sumqx);
    for (let itry = -7; itry <= 7; ++itry) {
      id = F((itry + KV[0]) / max);
      sumqx = 0;
      sumq2 = 0;
      for (let j = 0; j < 32; ++j) {
        const xj = x[xb + j]!;
        const q = KV[bestIndex(F(id * xj))]!;
        const w = s.wt[j]!;
        sumqx = F(sumqx + F(F(w * q) * xj));
        sumq2 = F(sumq2 + F(F(w * q) * q));
      }
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        d = F(sumqx / sumq2);
        best = F(d * sumqx);
      }
    }
    s.siq[ib] = d;
    const ad = Math.abs(d);
    if (ad > amaxScale) {
      amaxScale = ad;
      maxScale = d;
    }
  }
  if (nsub > 1) {
    let scalesH = 0;
    const d = F(-maxScale / 32);
    putF16(dst, o, toF16(d));
    const id = d ? F(1 / d) : 0;
    for (let ib = 0; ib < nsub; ++ib) {
      let l = nearest(F(id * s.siq[ib]!));
      l = Math.max(-32, Math.min(31, l));
      const dl = F(d * l);
      const idl = dl ? F(1 / dl) : 0;
      for (let j = 0; j < 32; ++j) s.liq[32 * ib + j] = bestIndex(F(idl * x[xo + 32 * ib + j]!));
      l += 32;
      const sl = o + 4 + (ib >> 1);
      if ((ib & 1) === 0) dst[sl] = l & 15;
      else dst[sl] = dst[sl]! | ((l & 15) << 4);
      scalesH |= (l >> 4) << (2 * ib);
    }
    dst[o + 2] = scalesH & 0xff;
    dst[o + 3] = (scalesH >>> 8) & 0xff;
  } else {
    putF16(dst, o, toF16(s.siq[0]!));
    const id = s.siq[0] ? F(1 / s.siq[0]) : 0;
    for (let j = 0; j < sbs; ++j) s.liq[j] = bestIndex(F(id * x[xo + j]!));
  }
  for (let i = 0; i < sbs / 32; ++i) for (let j = 0; j < 16; ++j) dst[q4 + 16 * i + j] = s.liq[32 * i + j]! | (s.liq[32 * i + 16 + j]! << 4);
}

function rowIQ4NL(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number): void {
  for (let ib = 0; ib < n / 32; ++ib) iq4Block(s, 32, x, xo + 32 * ib, qw, 32 * ib, dst, o + 18 * ib);
}

function rowIQ4XS(s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number): void {
  for (let ib = 0; ib < n / QK; ++ib) iq4Block(s, QK, x, xo + QK * ib, qw, QK * ib, dst, o + 136 * ib);
}

// ---------------------------------------------------------------------------------------------

/** One row of n_per_row = qw.length floats at x[xo..] → its bytes at dst[o..] (ggml's _impl). */
type WeightedRow = (s: WScratch, x: Float32Array, xo: number, n: number, qw: Float32Array, dst: Uint8Array, o: number) => void;

/** The weighted row quantizer of each type whose ggml quantizer reads quant_weights. */
const WEIGHTED_ROWS: ReadonlyMap<GGMLType, WeightedRow> = new Map<GGMLType, WeightedRow>([
  [GGMLType.Q4_0, (s, x, xo, n, qw, d, o) => rowLegacy(s, x, xo, n, qw, d, o, false, false)],
  [GGMLType.Q5_0, (s, x, xo, n, qw, d, o) => rowLegacy(s, x, xo, n, qw, d, o, true, false)],
  [GGMLType.Q4_1, (s, x, xo, n, qw, d, o) => rowLegacy(s, x, xo, n, qw, d, o, false, true)],
  [GGMLType.Q5_1, (s, x, xo, n, qw, d, o) => rowLegacy(s, x, xo, n, qw, d, o, true, true)],
  [GGMLType.Q2_K, rowQ2K],
  [GGMLType.Q3_K, rowQ3K],
  [GGMLType.Q4_K, (s, x, xo, n, qw, d, o) => rowQ45K(s, x, xo, n, qw, d, o, false)],
  [GGMLType.Q5_K, (s, x, xo, n, qw, d, o) => rowQ45K(s, x, xo, n, qw, d, o, true)],
  [GGMLType.Q6_K, rowQ6K],
  [GGMLType.IQ4_NL, rowIQ4NL],
  [GGMLType.IQ4_XS, rowIQ4XS],
]);

/**
 * A codec that takes the importance vector: with `qw`, `src` holds whole rows of qw.length floats
 * and each row runs ggml's weighted path (ggml_quantize_chunk with an imatrix); without it, the
 * codec's own (no-imatrix) path. A codec that already implements `quantize(src, dst, qw)` itself
 * (the IQ1/IQ2/IQ3 codecs) or whose ggml quantizer ignores the imatrix is returned as it is.
 */
export function withImportance(codec: BlockCodec): BlockCodec {
  const row = WEIGHTED_ROWS.get(codec.type);
  if (!row) return codec;
  const plain = codec.quantize.bind(codec);
  return {
    ...codec,
    quantize(src, dst, qw) {
      if (!qw) {
        plain(src, dst);
        return;
      }
      const n = qw.length;
      if (n === 0 || n % codec.blockSize !== 0) throw new Error(`${codec.type}: importance vector of ${n} values is not a whole number of ${codec.blockSize}-blocks`);
      if (src.length % n !== 0) throw new Error(`importance vector of ${n} values does not divide ${src.length} values into rows`);
      const rowSize = (n / codec.blockSize) * codec.typeSize;
      const rows = src.length / n;
      if (dst.length < rows * rowSize) throw new Error(`destination holds ${dst.length} bytes, need ${rows * rowSize}`);
      const scratch = new WScratch();
      for (let r = 0; r < rows; ++r) row(scratch, src, r * n, n, qw, dst, r * rowSize);
    },
  };
}
