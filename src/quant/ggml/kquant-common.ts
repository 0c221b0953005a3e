/**
 * Shared helpers of the K-quant and ternary codecs, emulating ggml-quants.c's float32 code exactly
 * (spec docs/ggml-quants.md §1 and §4). Every float operation is one IEEE binary32 operation: the
 * double result of a single + − × ÷ sqrt is rounded with Math.fround right away, in the reference
 * order, never reassociated and never fused.
 *
 * Performance rules used throughout (the searches below dominate quantization time):
 * - no allocation per block: module-level scratch typed arrays;
 * - per-group invariants hoisted (x², w·x, x − min);
 * - data-independent constants precomputed (the trial numerators of the scale searches);
 * - work whose result is provably unused is skipped (documented at each place).
 */
import { f16Lut, toF16 } from "../../formats/half.js";

export const F = Math.fround;

/** GROUP_MAX_EPS = 1e-15f */
export const EPS = F(1e-15);

/** fp16 bits → float32 value (exact). */
export const H2F: Float32Array = f16Lut();

export { toF16 };

const nf = new Float32Array(1);
const ni = new Int32Array(nf.buffer);

/** nearest_int for any input: the magic-number add in float32, then the mantissa bits. */
export function nearestSlow(v: number): number {
  nf[0] = v + 12582912;
  return (ni[0]! & 0x7fffff) - 0x400000;
}

/**
 * ggml's nearest_int(fval): float32 add of 12582912 (1.5·2^23), mantissa bits − 0x400000.
 * `v` must already be a float32 value. In (−4194303, 4194303) this is round-half-to-even and the
 * arithmetic form is exact; outside (and for NaN/inf) the bit formula reproduces the wrap.
 */
export function nearestInt(v: number): number {
  return v > -4194303 && v < 4194303 ? F(v + 12582912) - 12582912 : nearestSlow(v);
}

/** C `lroundf(v)` converted to `int` (x86-64 glibc: out-of-range/NaN → LONG_MIN → low 32 bits 0). */
export function lroundInt(v: number): number {
  return (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)) | 0;
}

/** Write fp16 bits little-endian. */
export function putF16(dst: Uint8Array, o: number, h: number): void {
  dst[o] = h & 0xff;
  dst[o + 1] = h >>> 8;
}

export function getF16(src: Uint8Array, o: number): number {
  return H2F[src[o]! | (src[o + 1]! << 8)]!;
}

// ---------------------------------------------------------------------------------------------
// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL)   (spec §4.2) — used by Q6_K

/** −(nmax + 0.1f·is) for is = −9..9, is ≠ 0, in trial order; the iscale of a trial is f(num / max). */
export function qxTrialNumerators(nmax: number): Float64Array {
  const out: number[] = [];
  for (let is = -9; is <= 9; ++is) {
    if (is === 0) continue;
    out.push(-F(nmax + F(F(0.1) * is)));
  }
  return Float64Array.from(out);
}

const qxW = new Float64Array(32); // x²
const qxWX = new Float64Array(32); // f(x²·x)
const qxA = new Int8Array(32); // trial levels (signed)
const qxB = new Int8Array(32); // previous trial levels

/**
 * Symmetric search with weights x² (rmse_type 1, no imatrix). Writes L[lo..lo+n) in 0..2·nmax−1
 * (raw 0 for a group with max |x| < EPS) and returns the scale.
 */
export function makeQxQuants(x: Float32Array, xo: number, n: number, nmax: number, L: Uint8Array | Int8Array, lo: number, trials: Float64Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    const ax = Math.abs(v);
    if (ax > amax) {
      amax = ax;
      max = v;
    }
  }
  if (amax < EPS) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    return 0;
  }
  const nmin = -nmax;
  const ntop = nmax - 1;
  let iscale = F(nmin / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    const w = F(v * v);
    const wx = F(w * v);
    qxW[i] = w;
    qxWX[i] = wx;
    let l = nearestInt(F(iscale * v));
    if (l < nmin) l = nmin;
    else if (l > ntop) l = ntop;
    qxB[i] = l;
    L[lo + i] = l + nmax;
    sumlx = F(sumlx + F(wx * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let t = 0; t < trials.length; ++t) {
    iscale = F(trials[t]! / max);
    // Levels first. If they equal the previous pass's levels, the sums are identical: that pass
    // either was rejected with the same `best` (nothing changed since) or was accepted, and
    // accepting again would rewrite the same L, scale and best — so the pass can be skipped.
    let same = true;
    for (let i = 0; i < n; ++i) {
      let l = nearestInt(F(iscale * x[xo + i]!));
      if (l < nmin) l = nmin;
      else if (l > ntop) l = ntop;
      if (l !== qxB[i]) same = false;
      qxA[i] = l;
    }
    if (same) continue;
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; ++i) {
      const l = qxA[i]!;
      qxB[i] = l;
      sumlx = F(sumlx + F(qxWX[i]! * l));
      suml2 = F(suml2 + F(F(qxW[i]! * l) * l));
    }
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      for (let i = 0; i < n; ++i) L[lo + i] = qxA[i]! + nmax;
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}

// ---------------------------------------------------------------------------------------------
// make_q3_quants(n, nmax, x, L, do_rmse = true)   (spec §4.3) — used by Q3_K

const q3W = new Float64Array(16);
const q3WX = new Float64Array(16);

/** Writes signed-then-offset levels L[lo..lo+n) in 0..2·nmax−1 (raw 0 for a tiny group); returns the scale. */
export function makeQ3Quants(x: Float32Array, xo: number, n: number, nmax: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    const ax = Math.abs(v);
    if (ax > amax) {
      amax = ax;
      max = v;
    }
  }
  if (amax < EPS) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    return 0;
  }
  const nmin = -nmax;
  const ntop = nmax - 1;
  const iscale = F(nmin / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    let l = nearestInt(F(iscale * v));
    if (l < nmin) l = nmin;
    else if (l > ntop) l = ntop;
    L[lo + i] = l;
    const w = F(v * v);
    const wx = F(w * v);
    q3W[i] = w;
    q3WX[i] = wx;
    sumlx = F(sumlx + F(wx * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  for (let itry = 0; itry < 5; ++itry) {
    let changed = 0;
    for (let i = 0; i < n; ++i) {
      const w = q3W[i]!;
      const wx = q3WX[i]!;
      const li = L[lo + i]!;
      let slx = F(sumlx - F(wx * li));
      if (slx > 0) {
        let sl2 = F(suml2 - F(F(w * li) * li));
        let nl = nearestInt(F(F(x[xo + i]! * sl2) / slx));
        if (nl < nmin) nl = nmin;
        else if (nl > ntop) nl = ntop;
        if (nl !== li) {
          slx = F(slx + F(wx * nl));
          sl2 = F(sl2 + F(F(w * nl) * nl));
          if (sl2 > 0 && F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
            L[lo + i] = nl;
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed === 0) break;
  }
  for (let i = 0; i < n; ++i) L[lo + i] = L[lo + i]! + nmax;
  return suml2 > 0 ? F(sumlx / suml2) : 0;
}

// ---------------------------------------------------------------------------------------------
// make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad)  (spec §4.4)
// — Q2_K (16, 3, |x|, −0.5, 0.1, 15, mad), Q4_K (32, 15, av+|x|, −1, 0.1, 20), Q5_K (32, 31, −0.5, 0.1, 15)

/** f(f(rmin + f(rdelta·is)) + nmax) for is = 0..nstep; the iscale of step `is` is f(num / f(max − min)). */
export function qkx2StepNumerators(nmax: number, rmin: number, rdelta: number, nstep: number): Float64Array {
  const out = new Float64Array(nstep + 1);
  const r = F(rmin);
  const rd = F(rdelta);
  for (let is = 0; is <= nstep; ++is) out[is] = F(F(r + F(rd * is)) + nmax);
  return out;
}

/** Results of the last makeQkx2Pair call: [scale a, the_min a, scale b, the_min b] (the_min = −min, −0 for min = 0). */
export const qkxOut = new Float64Array(4);

const kxM = new Float64Array(64); // f(x − min) for the current min; group a at 0, b at 32
const kxA = new Uint8Array(64); // Laux of the current step
const kxB = new Uint8Array(64); // levels of the previous evaluated step
const kxT = new Float64Array(64); // f(f(s·l) + m) per level
const kxS = new Float64Array(16); // per-group state after the first pass

/**
 * First pass of make_qkx2_quants for one group: min/max, Σw, Σw·x, the initial levels and their
 * error. State written to kxS[so..]: min, max, sw, sx, best, scale, range, active.
 */
function qkx2Init(x: Float32Array, xo: number, n: number, nmax: number, w: Float64Array, wo: number, L: Uint8Array, lo: number, mo: number, useMad: boolean, so: number): void {
  let min = x[xo]!;
  let max = min;
  let sw = w[wo]!;
  let sx = F(sw * min);
  for (let i = 1; i < n; ++i) {
    const v = x[xo + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    const wi = w[wo + i]!;
    sw = F(sw + wi);
    sx = F(sx + F(wi * v));
  }
  if (min > 0) min = 0;
  const S = kxS;
  S[so] = min;
  if (max === min) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    S[so + 5] = 0;
    S[so + 7] = 0;
    return;
  }
  const range = F(max - min);
  const iscale = F(nmax / range);
  const scale = F(1 / iscale);
  let best = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    const xm = F(v - min);
    kxM[mo + i] = xm;
    let l = nearestInt(F(iscale * xm));
    if (l < 0) l = 0;
    else if (l > nmax) l = nmax;
    L[lo + i] = l;
    let diff = F(F(F(scale * l) + min) - v);
    diff = useMad ? Math.abs(diff) : F(diff * diff);
    best = F(best + F(w[wo + i]! * diff));
  }
  S[so + 1] = max;
  S[so + 2] = sw;
  S[so + 3] = sx;
  S[so + 4] = best;
  S[so + 5] = scale;
  S[so + 6] = range;
  S[so + 7] = 1;
}

/**
 * make_qkx2_quants on two independent groups at once (a: x[xa..xa+n), weights w[0..n), levels
 * L[la..]; b: x[xb..], w[32..32+n), L[lb..]). Each group's arithmetic is exactly the reference
 * sequence; running the two in lockstep only interleaves their dependency chains of rounded
 * additions, which is where the time goes. Results in `qkxOut`.
 *
 * Skips that cannot change the result:
 * - Every quantity of a step (sums, D, fitted scale/min, error) is a function of the step's levels
 *   alone. A step whose levels equal those of the group's previous evaluated step repeats a
 *   comparison that cannot change anything (rejected then ⇒ rejected now, since best only
 *   decreases; accepted then ⇒ error equals best now, and `<` fails): not evaluated.
 * - The error is a sum of non-negative terms (w ≥ 0) and rounded addition of a non-negative term
 *   never decreases a sum: once the partial sum reaches best, the step is rejected.
 * - When nmax + 1 < n, f(f(s·l)+m) is tabulated per level (same values, fewer operations).
 * A group that needs no work in a step still runs through the shared loops; its values are unused.
 */
export function makeQkx2Pair(
  x: Float32Array,
  xa: number,
  xb: number,
  n: number,
  nmax: number,
  w: Float64Array,
  L: Uint8Array,
  la: number,
  lb: number,
  steps: Float64Array,
  useMad: boolean,
): void {
  qkx2Init(x, xa, n, nmax, w, 0, L, la, 0, useMad, 0);
  qkx2Init(x, xb, n, nmax, w, 32, L, lb, 32, useMad, 8);
  const S = kxS;
  const activeA = S[7] !== 0;
  const activeB = S[15] !== 0;
  let minA = S[0]!;
  let maxA = S[1]!;
  let swA = S[2]!;
  let sxA = S[3]!;
  let bestA = S[4]!;
  let scaleA = S[5]!;
  let rangeA = S[6]!;
  let minB = S[8]!;
  let maxB = S[9]!;
  let swB = S[10]!;
  let sxB = S[11]!;
  let bestB = S[12]!;
  let scaleB = S[13]!;
  let rangeB = S[14]!;
  if (activeA || activeB) {
    const useTable = nmax + 1 < n;
    let prevA = false;
    let prevB = false;
    for (let k = 0; k < steps.length; ++k) {
      const num = steps[k]!;
      let needA = false;
      let needB = false;
      if (activeA) {
        const is = F(num / rangeA);
        let same = prevA;
        for (let i = 0; i < n; ++i) {
          let l = nearestInt(F(is * kxM[i]!));
          if (l < 0) l = 0;
          else if (l > nmax) l = nmax;
          if (l !== kxB[i]) same = false;
          kxA[i] = l;
        }
        needA = !same;
      }
      if (activeB) {
        const is = F(num / rangeB);
        let same = prevB;
        for (let i = 32; i < 32 + n; ++i) {
          let l = nearestInt(F(is * kxM[i]!));
          if (l < 0) l = 0;
          else if (l > nmax) l = nmax;
          if (l !== kxB[i]) same = false;
          kxA[i] = l;
        }
        needB = !same;
      }
      if (!needA && !needB) continue;
      let slA = 0;
      let sl2A = 0;
      let sxlA = 0;
      let slB = 0;
      let sl2B = 0;
      let sxlB = 0;
      for (let i = 0; i < n; ++i) {
        const a = kxA[i]!;
        kxB[i] = a;
        const wa = F(w[i]! * a);
        slA = F(slA + wa);
        sl2A = F(sl2A + F(wa * a));
        sxlA = F(sxlA + F(wa * x[xa + i]!));
        const b = kxA[32 + i]!;
        kxB[32 + i] = b;
        const wb = F(w[32 + i]! * b);
        slB = F(slB + wb);
        sl2B = F(sl2B + F(wb * b));
        sxlB = F(sxlB + F(wb * x[xb + i]!));
      }
      if (needA) prevA = true;
      if (needB) prevB = true;
      let evalA = false;
      let sA = 0;
      let mA = 0;
      if (needA) {
        const D = F(F(swA * sl2A) - F(slA * slA));
        if (D > 0) {
          evalA = true;
          sA = F(F(F(swA * sxlA) - F(sxA * slA)) / D);
          mA = F(F(F(sl2A * sxA) - F(slA * sxlA)) / D);
          if (mA > 0) {
            mA = 0;
            sA = F(sxlA / sl2A);
          }
        }
      }
      let evalB = false;
      let sB = 0;
      let mB = 0;
      if (needB) {
        const D = F(F(swB * sl2B) - F(slB * slB));
        if (D > 0) {
          evalB = true;
          sB = F(F(F(swB * sxlB) - F(sxB * slB)) / D);
          mB = F(F(F(sl2B * sxB) - F(slB * sxlB)) / D);
          if (mB > 0) {
            mB = 0;
            sB = F(sxlB / sl2B);
          }
        }
      }
      if (!evalA && !evalB) continue;
      const thrA = evalA ? bestA : -Infinity;
      const thrB = evalB ? bestB : -Infinity;
      let eA = 0;
      let eB = 0;
      let i = 0;
      if (useTable) {
        for (let l = 0; l <= nmax; ++l) {
          kxT[l] = F(F(sA * l) + mA);
          kxT[32 + l] = F(F(sB * l) + mB);
        }
        if (useMad) {
          for (; i < n; ++i) {
            eA = F(eA + F(w[i]! * Math.abs(F(kxT[kxA[i]!]! - x[xa + i]!))));
            eB = F(eB + F(w[32 + i]! * Math.abs(F(kxT[32 + kxA[32 + i]!]! - x[xb + i]!))));
            if (eA >= thrA && eB >= thrB) break;
          }
        } else {
          for (; i < n; ++i) {
            const dA = F(kxT[kxA[i]!]! - x[xa + i]!);
            eA = F(eA + F(w[i]! * F(dA * dA)));
            const dB = F(kxT[32 + kxA[32 + i]!]! - x[xb + i]!);
            eB = F(eB + F(w[32 + i]! * F(dB * dB)));
            if (eA >= thrA && eB >= thrB) break;
          }
        }
      } else if (useMad) {
        for (; i < n; ++i) {
          eA = F(eA + F(w[i]! * Math.abs(F(F(F(sA * kxA[i]!) + mA) - x[xa + i]!))));
          eB = F(eB + F(w[32 + i]! * Math.abs(F(F(F(sB * kxA[32 + i]!) + mB) - x[xb + i]!))));
          if (eA >= thrA && eB >= thrB) break;
        }
      } else {
        for (; i < n; ++i) {
          const dA = F(F(F(sA * kxA[i]!) + mA) - x[xa + i]!);
          eA = F(eA + F(w[i]! * F(dA * dA)));
          const dB = F(F(F(sB * kxA[32 + i]!) + mB) - x[xb + i]!);
          eB = F(eB + F(w[32 + i]! * F(dB * dB)));
          if (eA >= thrA && eB >= thrB) break;
        }
      }
      if (i < n) continue; // both rejected
      if (evalA && eA < bestA) {
        for (let j = 0; j < n; ++j) L[la + j] = kxA[j]!;
        bestA = eA;
        scaleA = sA;
        const moved = mA !== minA;
        minA = mA;
        if (moved) {
          rangeA = F(maxA - minA);
          for (let j = 0; j < n; ++j) kxM[j] = F(x[xa + j]! - minA);
        }
      }
      if (evalB && eB < bestB) {
        for (let j = 0; j < n; ++j) L[lb + j] = kxA[32 + j]!;
        bestB = eB;
        scaleB = sB;
        const moved = mB !== minB;
        minB = mB;
        if (moved) {
          rangeB = F(maxB - minB);
          for (let j = 0; j < n; ++j) kxM[32 + j] = F(x[xb + j]! - minB);
        }
      }
    }
  }
  qkxOut[0] = scaleA;
  qkxOut[1] = -minA;
  qkxOut[2] = scaleB;
  qkxOut[3] = -minB;
}

// ---------------------------------------------------------------------------------------------
// packing

/** get_scale_min_k4: 6-bit scale of sub-block j (0..7) from the 12 scale bytes at q[o..]. */
export function scaleK4(q: Uint8Array, o: number, j: number): number {
  return j < 4 ? q[o + j]! & 63 : (q[o + j + 4]! & 15) | ((q[o + j - 4]! >> 6) << 4);
}

/** get_scale_min_k4: 6-bit min of sub-block j. */
export function minK4(q: Uint8Array, o: number, j: number): number {
  return j < 4 ? q[o + j + 4]! & 63 : (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4);
}

/** Pack 8 six-bit scales and mins (values 0..63) into 12 bytes at dst[o..] (Q4_K/Q5_K layout). */
export function packScaleMinK4(dst: Uint8Array, o: number, ls: Uint8Array, lm: Uint8Array): void {
  for (let j = 0; j < 4; ++j) {
    dst[o + j] = ls[j]!;
    dst[o + j + 4] = lm[j]!;
  }
  for (let j = 4; j < 8; ++j) {
    const s = ls[j]!;
    const m = lm[j]!;
    dst[o + j + 4] = (s & 15) | ((m & 15) << 4);
    dst[o + j - 4] |= (s >> 4) << 6;
    dst[o + j] |= (m >> 4) << 6;
  }
}

/** 2-bit packing of 256 levels (Q2_K, Q3_K): qs[32h + l] = L[128h+l] | L[128h+32+l]<<2 | … */
export function pack2bit(dst: Uint8Array, o: number, L: Uint8Array | Int8Array): void {
  for (let h = 0; h < 2; ++h) {
    const b = 128 * h;
    const d = o + 32 * h;
    for (let l = 0; l < 32; ++l) {
      dst[d + l] = (L[b + l]! | (L[b + l + 32]! << 2) | (L[b + l + 64]! << 4) | (L[b + l + 96]! << 6)) & 0xff;
    }
  }
}

/** Common argument checks of the codecs (whole blocks, enough room). */
export function checkQuantizeArgs(name: string, src: Float32Array, dst: Uint8Array, qk: number, size: number): number {
  if (src.length % qk !== 0) throw new Error(`${name}: ${src.length} values is not a whole number of ${qk}-blocks`);
  const nb = src.length / qk;
  if (dst.length < nb * size) throw new Error(`${name}: destination holds ${dst.length} bytes, need ${nb * size}`);
  return nb;
}

export function checkDequantizeArgs(name: string, src: Uint8Array, dst: Float32Array, qk: number, size: number): number {
  if (dst.length % qk !== 0) throw new Error(`${name}: ${dst.length} values is not a whole number of ${qk}-blocks`);
  const nb = dst.length / qk;
  if (src.length < nb * size) throw new Error(`${name}: source holds ${src.length} bytes, need ${nb * size}`);
  return nb;
}

// ---------------------------------------------------------------------------------------------
// Q4_K / Q5_K common first stage (spec §6.3–6.4): per 32-group weighted search, 6-bit scale/min
// packing, fp16 d/dmin, then the final re-quantization with the fp16-rounded values.

const k45W = new Float64Array(64);
const k45S = new Float64Array(8);
const k45M = new Float64Array(8);
const k45LS = new Uint8Array(8);
const k45LM = new Uint8Array(8);

/**
 * One Q4_K/Q5_K super-block: writes d (o+0), dmin (o+2) and the 12 scale bytes (o+4) into dst and
 * the 256 levels (0..nmax) into L.
 */
export function quantizeK45Block(x: Float32Array, xo: number, nmax: number, steps: Float64Array, L: Uint8Array, dst: Uint8Array, o: number): void {
  let maxScale = 0;
  let maxMin = 0;
  const w = k45W;
  for (let j = 0; j < 8; j += 2) {
    const ga = xo + 32 * j;
    const gb = ga + 32;
    let sa = 0;
    let sb = 0;
    for (let l = 0; l < 32; ++l) {
      const va = x[ga + l]!;
      const vb = x[gb + l]!;
      sa = F(sa + F(va * va));
      sb = F(sb + F(vb * vb));
    }
    const ava = F(Math.sqrt(F(sa / 32)));
    const avb = F(Math.sqrt(F(sb / 32)));
    for (let l = 0; l < 32; ++l) {
      w[l] = F(ava + Math.abs(x[ga + l]!));
      w[32 + l] = F(avb + Math.abs(x[gb + l]!));
    }
    makeQkx2Pair(x, ga, gb, 32, nmax, w, L, 32 * j, 32 * j + 32, steps, false);
    for (let g = 0; g < 2; ++g) {
      const s = qkxOut[2 * g]!;
      const m = qkxOut[2 * g + 1]!;
      k45S[j + g] = s;
      k45M[j + g] = m;
      if (s > maxScale) maxScale = s;
      if (m > maxMin) maxMin = m;
    }
  }
  const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
  for (let j = 0; j < 8; ++j) {
    const ls = nearestInt(F(invScale * k45S[j]!)) & 0xff;
    const lm = nearestInt(F(invMin * k45M[j]!)) & 0xff;
    k45LS[j] = ls < 63 ? ls : 63;
    k45LM[j] = lm < 63 ? lm : 63;
  }
  for (let k = 0; k < 12; ++k) dst[o + 4 + k] = 0;
  packScaleMinK4(dst, o + 4, k45LS, k45LM);
  const dh = toF16(F(maxScale / 63));
  const mh = toF16(F(maxMin / 63));
  putF16(dst, o, dh);
  putF16(dst, o + 2, mh);
  const d = H2F[dh]!;
  const dmin = H2F[mh]!;
  for (let j = 0; j < 8; ++j) {
    const dd = F(d * k45LS[j]!);
    if (dd === 0) continue; // keep the search's levels (spec "keep-L rule")
    const dm = F(dmin * k45LM[j]!);
    const go = xo + 32 * j;
    const lo = 32 * j;
    for (let ii = 0; ii < 32; ++ii) {
      let l = nearestInt(F(F(x[go + ii]! + dm) / dd));
      if (l < 0) l = 0;
      else if (l > nmax) l = nmax;
      L[lo + ii] = l;
    }
  }
}
