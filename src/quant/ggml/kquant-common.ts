/**
 * Shared helpers of the K-quant and ternary codecs, emulating ggml-quants.c's float32 code exactly
 * (ggml/src/ggml-quants.c; the rules are in docs/bit-exact.md). Every float operation is one IEEE binary32 operation: the
 * double result of a single + − × ÷ sqrt is rounded with Math.fround right away, in the reference
 * order, never reassociated and never fused.
 *
 * Performance rules used throughout (the searches below dominate quantization time):
 * - no allocation per block; what a super-block carries from one step to the next (levels, scales,
 *   mins, divisors) lives in a KQuantScratch, one per call of a codec (or one per caller that passes
 *   it in); only the leaf searches' working arrays are module-level (they hold nothing between calls);
 * - per-group invariants hoisted (x², w·x, x − min);
 * - data-independent constants precomputed (the trial numerators of the scale searches);
 * - work whose outcome is provably known is skipped (documented with its proof at each place);
 *   every float32 value that reaches the output is computed exactly as the reference computes it.
 *
 * Note on nearest_int: the arithmetic form f(v + 12582912) − 12582912 equals ggml's bit formula
 * only for |v| < 4194303.5 (at 4194303.5 and 4194303.75 the sum rounds to 2^24, whose mantissa
 * bits give −4194304); the fast paths here use |v| < 4194303 and fall back to nearestSlow (the bit formula
 * through a per-call Float32Array).
 */
import { f16Lut, toF16 } from "../../formats/half.js";

export const F = Math.fround;

/** GROUP_MAX_EPS = 1e-15f */
export const EPS = F(1e-15);

/** fp16 bits → float32 value (exact). */
export const H2F: Float32Array = f16Lut();

export { toF16 };

/**
 * nearest_int for any input (ggml-quants.c nearest_int: `float val = fval + 12582912.f; int i;
 * memcpy(&i, &val, 4); return (i & 0x007fffff) - 0x00400000;`): the float32 sum is stored into a
 * Float32Array made for this call (the store is the float32 rounding) and its bits read back. Only the
 * rare inputs outside nearestInt's fast path come here, so the two small arrays cost nothing that
 * matters, and nothing module-level is shared between calls.
 */
export function nearestSlow(v: number): number {
  const val = new Float32Array(1);
  val[0] = v + 12582912;
  return (new Int32Array(val.buffer)[0]! & 0x7fffff) - 0x400000;
}

/**
 * ggml's nearest_int(fval): float32 add of 12582912 (1.5·2^23), mantissa bits − 0x400000.
 * `v` must already be a float32 value. In (−4194303, 4194303) this is round-half-to-even and the
 * arithmetic form is exact; outside (and for NaN/inf) the bit formula reproduces the wrap.
 */
export function nearestInt(v: number): number {
  return v > -4194303 && v < 4194303 ? F(v + 12582912) - 12582912 : nearestSlow(v);
}

/**
 * MAX(0, MIN(hi, nearest_int(v))) for a float32 `v`, as a double. nearest_int is monotone where it
 * is plain rounding, so in that range clamping first is the same; outside it (|v| ≥ 4194303, NaN,
 * inf) the bit formula's wrap is reproduced.
 */
export function nearestClamped(v: number, hi: number): number {
  if (v >= 0) {
    if (v <= hi) return F(v + 12582912) - 12582912;
    if (v < 4194303) return hi;
  } else if (v > -4194303) return 0;
  const l = nearestSlow(v);
  return l < 0 ? 0 : l > hi ? hi : l;
}

/**
 * Level-keeping window. For |q| < 64 (q exact in double), |f(q) − q| ≤ 2^-18; if q lies strictly
 * inside (l − 0.5 + 2^-16, l + 0.5 − 2^-16) then f(q) lies strictly inside (l − 0.5, l + 0.5) and
 * nearest_int(f(q)) = l. At the clamped ends the window extends to where nearest_int still clamps
 * to the same value (it wraps beyond ±4194303).
 */
const WIN = 0.5 - 2 ** -16;
const WRAP = 4194000;

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
// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL)   (ggml-quants.c) — used by Q6_K

/** −(nmax + 0.1f·is) for is = −9..9, is ≠ 0, in trial order; the iscale of a trial is f(num / max). */
export function qxTrialNumerators(nmax: number): Float64Array {
  const out: number[] = [];
  for (let is = -9; is <= 9; ++is) {
    if (is === 0) continue;
    out.push(-F(nmax + F(F(0.1) * is)));
  }
  return Float64Array.from(out);
}

// Working arrays of the three searches below. Each search is a leaf: it fills them, reads them and
// returns, never yielding or calling out, so they hold nothing from one call to the next and every call
// (of any quantization in progress) may use them. Module-level on purpose: V8 folds a module constant
// typed array into the code, and these loops ran 1.5-2x slower with the arrays held in a scratch object.
const qxA = new Float64Array(16); // levels of the current pass (signed)
const qxB = new Float64Array(16); // levels of the last summed pass
const qxS1 = new Float64Array(17); // prefix sums of that pass: Σ w·x·l and Σ w·l·l over elements < i
const qxS2 = new Float64Array(17);
const qxWX = new Float64Array(16);
const qxX = new Float64Array(16);
const qxLo = new Float64Array(16); // level-keeping windows, see WIN
const qxHi = new Float64Array(16);

/** The signed value of the first element with the strictly largest |x| (C: if (ax > amax) {…}), 0 if none. */
export function firstLargestAbs(x: Float32Array, xo: number, n: number): number {
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
  return max;
}

/**
 * make_qx_quants(n ≤ 16, nmax ≤ 32, x, L, rmse_type = 1, qw = NULL): symmetric search with
 * weights x². Writes L[lo..lo+n) in 0..2·nmax−1 (raw 0 for a group with max |x| < EPS) and
 * returns the scale. `trials` = qxTrialNumerators(nmax).
 *
 * Same float32 operations and order as the reference, minus provably redundant ones: a level
 * whose q = iscale·x stays inside its window (see WIN) is known without rounding; a pass whose
 * levels agree with the last summed pass on a prefix restarts its (sequential) sums after that
 * prefix; a pass whose levels all agree is skipped — rejected then ⇒ `best` unchanged since ⇒
 * rejected now; accepted then ⇒ accepting again rewrites the same L, scale and best.
 */
export function makeQxQuants(x: Float32Array, xo: number, n: number, nmax: number, L: Uint8Array | Int8Array, lo: number, trials: Float64Array): number {
  const F = Math.fround;
  const max = firstLargestAbs(x, xo, n);
  if (Math.abs(max) < EPS) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    return 0;
  }
  const X = qxX;
  const WX = qxWX;
  const A = qxA;
  const B = qxB;
  const S1 = qxS1;
  const S2 = qxS2;
  const Lo = qxLo;
  const Hi = qxHi;
  const nmin = -nmax;
  const ntop = nmax - 1;
  // initial pass: iscale = −nmax/max, always taken
  let iscale = F(nmin / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const v = x[xo + i]!;
    X[i] = v;
    const w = F(v * v);
    const wx = F(w * v);
    WX[i] = wx;
    const q = F(iscale * v);
    let l = q > -4194303 && q < 4194303 ? F(q + 12582912) - 12582912 : nearestSlow(q);
    if (l < nmin) l = nmin;
    else if (l > ntop) l = ntop;
    A[i] = l;
    B[i] = l;
    Lo[i] = l === nmin ? -WRAP : l - WIN;
    Hi[i] = l === ntop ? WRAP : l + WIN;
    L[lo + i] = l + nmax;
    sumlx = F(sumlx + F(wx * l));
    suml2 = F(suml2 + F(F(w * l) * l));
    S1[i + 1] = sumlx;
    S2[i + 1] = suml2;
  }
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let t = 0; t < trials.length; ++t) {
    iscale = F(trials[t]! / max);
    let p = n; // first element whose level differs from the last summed pass
    for (let i = 0; i < n; ++i) {
      const qd = iscale * X[i]!;
      let l = A[i]!;
      if (!(qd > Lo[i]! && qd < Hi[i]!)) {
        const q = F(qd);
        l = q > -4194303 && q < 4194303 ? F(q + 12582912) - 12582912 : nearestSlow(q);
        if (l < nmin) l = nmin;
        else if (l > ntop) l = ntop;
        A[i] = l;
        Lo[i] = l === nmin ? -WRAP : l - WIN;
        Hi[i] = l === ntop ? WRAP : l + WIN;
      }
      if (p === n && l !== B[i]) p = i;
    }
    if (p === n) continue;
    sumlx = S1[p]!;
    suml2 = S2[p]!;
    for (let i = p; i < n; ++i) {
      const l = A[i]!;
      B[i] = l;
      const v = X[i]!;
      sumlx = F(sumlx + F(WX[i]! * l));
      suml2 = F(suml2 + F(F(F(v * v) * l) * l));
      S1[i + 1] = sumlx;
      S2[i + 1] = suml2;
    }
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      for (let i = 0; i < n; ++i) L[lo + i] = A[i]! + nmax;
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}

// ---------------------------------------------------------------------------------------------
// make_q3_quants(n, nmax, x, L, do_rmse = true)   (ggml-quants.c) — used by Q3_K

const q3W = new Float64Array(16); // x² per element (leaf-local, see above)
const q3WX = new Float64Array(16); // x³

/** Writes signed-then-offset levels L[lo..lo+n) in 0..2·nmax−1 (raw 0 for a tiny group); returns the scale. */
export function makeQ3Quants(x: Float32Array, xo: number, n: number, nmax: number, L: Int8Array, lo: number): number {
  const max = firstLargestAbs(x, xo, n);
  if (Math.abs(max) < EPS) {
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
// make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad)  (ggml-quants.c)
// — Q2_K (16, 3, |x|, −0.5, 0.1, 15, mad), Q4_K (32, 15, av+|x|, −1, 0.1, 20), Q5_K (32, 31, −0.5, 0.1, 15)

/** f(f(rmin + f(rdelta·is)) + nmax) for is = 0..nstep; the iscale of step `is` is f(num / f(max − min)). */
export function qkx2StepNumerators(nmax: number, rmin: number, rdelta: number, nstep: number): Float64Array {
  const out = new Float64Array(nstep + 1);
  const r = F(rmin);
  const rd = F(rdelta);
  for (let is = 0; is <= nstep; ++is) out[is] = F(F(r + F(rd * is)) + nmax);
  return out;
}

/** The second output of the make_qkx*_quants searches: C's the_min (= −min; −0 when min = 0). */
export interface TheMin {
  theMin: number;
}


const kxX = new Float64Array(32); // the group's values
const kxM = new Float64Array(32); // f(x − min) for the current min
const kxA = new Float64Array(32); // Laux of the current step
const kxS1 = new Float64Array(33); // prefix sums of the last float32-summed step: Σ w·l, Σ w·l·l, Σ w·l·x over elements < i
const kxS2 = new Float64Array(33);
const kxS3 = new Float64Array(33);
const kxT = new Float64Array(32); // f(f(s·l) + m) per level
const kxD = new Float64Array(32); // residuals f(f(f(s·l)+m) − x) of the current step
const kxQ1 = new Float64Array(33); // prefix sums of the last double-summed step: Σ w·l, Σ w·l·l, Σ w·l·x
const kxQ2 = new Float64Array(33);
const kxQ3 = new Float64Array(33);
const kxLo = new Float64Array(32); // A[i] is still the level while kxLo[i] < q < kxHi[i] (q = iscale·M[i], exact in double)
const kxHi = new Float64Array(32);

/** 2^-150: bound on the absolute rounding error of one float32 operation in the subnormal range. */
const TINY = 2 ** -150;
/** u' = 1.0001·2^-24 ≥ u(1+u)². */
const U1 = 1.0001 * 2 ** -24;

/**
 * make_qkx2_quants(n ≤ 32, nmax ≤ 31, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad):
 * weights w[0..n), levels written to L[lo..lo+n) in 0..nmax, scale returned, the_min written to
 * `out.theMin` (a scratch object of the caller's). `steps` = qkx2StepNumerators(…).
 *
 * Every float32 operation of the reference whose result can matter is performed exactly, in the
 * reference order. Work is skipped only where its outcome is provably known:
 * (1) A step's sums are sequential over the elements; when its levels agree with those of the last
 *     summed step on a prefix, the partial sums over that prefix are the same numbers, so the
 *     summation restarts at the first differing element.
 * (2) Every quantity of a step (sums, D, fitted scale/min, error) is a function of its levels
 *     alone. A step whose levels equal the last summed step's repeats a comparison that cannot
 *     change anything (rejected then ⇒ rejected now, since best only decreases; accepted then ⇒
 *     its error is best now and `<` fails): skipped.
 * (3) Rejection test. The reference error is E = fl-sum of t_i = fl(w_i·fl(d_i²)) (or fl(w_i·|d_i|)),
 *     all terms ≥ 0 (w ≥ 0). For z ≥ 0 a float32 rounding satisfies fl(z) ≥ z(1−u) − 2^-150
 *     (u = 2^-24; the second term covers the subnormal range; overflow only rounds up), so
 *     E ≥ (1−u)^(n+2)·Σ w_i·d_i² − (2·Σw + 4n)·2^-150. The residuals d_i are computed exactly
 *     (float32), the sum e = Σ w_i·d_i² in double (relative error < (n+3)·2^-53). If
 *     e ≥ (best + slack)·(1 + 40·2^-24) — which implies E ≥ best for n ≤ 32 — the step is rejected
 *     without evaluating E; the partial sums of e are lower bounds too, so the test runs per
 *     element. Otherwise E is evaluated exactly, stopping once its partial sum reaches best
 *     (adding a non-negative term never decreases a rounded sum).
 * (4) When nmax + 1 < n, f(f(s·l)+m) is tabulated per level (same values, fewer operations).
 * (5) Least-squares rejection (use_mad = false only), before any float32 sum of the step: whatever
 *     (s, m) the float32 fit produces, its exact residual r = s·l + m − x has ‖r‖² ≥ E* (weighted
 *     norm), E* the unconstrained weighted least-squares minimum for these levels, computed in
 *     double with a generous error allowance. The float32 residuals d obey
 *     |d_i − r_i| ≤ u'(|s|·l_i + 2|r_i| + |x_i|) + 4·2^-150, and |s| ≤ (‖r‖ + ‖x‖)/‖l⊥‖ (l⊥ = l minus
 *     its weighted mean), so ‖d‖ ≥ ‖r‖(1 − (κ+2)u') − u'(κ+1)‖x‖ − 4·2^-150·√Σw with
 *     κ = ‖l‖/‖l⊥‖; with (3), E ≥ (1 − (n+4)u)·‖d‖² − slack. If that is ≥ best the step is rejected.
 *     (D ≤ 0, a clamped m, and non-finite values all end in rejection in the reference too.)
 * (6) Levels: a level is recomputed only when q = iscale·(x − min) leaves its window (see WIN).
 *     "Changed since the last summed step" is tracked as a lowest dirty index: a safe (never
 *     later) restart point for (1), and an exact test for (2).
 */
export function makeQkx2(
  x: Float32Array,
  xo: number,
  n: number,
  nmax: number,
  w: Float64Array,
  L: Uint8Array,
  lo: number,
  steps: Float64Array,
  useMad: boolean,
  out: TheMin,
): number {
  const F = Math.fround;
  const X = kxX;
  let min = x[xo]!;
  let max = min;
  X[0] = min;
  let sw = w[0]!;
  let sx = F(sw * min);
  let dSw = sw; // double-precision Σw, Σw·x, Σw·x² for (5)
  let dSx = sw * min;
  let dSxx = dSx * min;
  for (let i = 1; i < n; ++i) {
    const v = x[xo + i]!;
    X[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
    const wi = w[i]!;
    sw = F(sw + wi);
    sx = F(sx + F(wi * v));
    dSw += wi;
    dSx += wi * v;
    dSxx += wi * v * v;
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; ++i) L[lo + i] = 0;
    out.theMin = -min;
    return 0;
  }
  const M = kxM;
  const A = kxA;
  const S1 = kxS1;
  const S2 = kxS2;
  const S3 = kxS3;
  const T = kxT;
  const Dv = kxD;
  const Lo = kxLo;
  const Hi = kxHi;
  const Q1 = kxQ1;
  const Q2 = kxQ2;
  const Q3 = kxQ3;
  const slack = (2 * sw + 4 * n) * TINY;
  const useLs = !useMad && dSw > 0 && dSxx < 1e300;
  const normX = Math.sqrt(dSxx) * 1.000001;
  const tinyW = 4 * TINY * Math.sqrt(dSw) * 1.000001;

  let range = F(max - min);
  const iscale = F(nmax / range);
  let scale = F(1 / iscale);
  let best = 0;
  for (let i = 0; i < n; ++i) {
    const v = X[i]!;
    const xm = F(v - min);
    M[i] = xm;
    const q = F(iscale * xm);
    const l = q >= 0 && q <= nmax ? F(q + 12582912) - 12582912 : nearestClamped(q, nmax);
    L[lo + i] = l;
    A[i] = l;
    Lo[i] = l === 0 ? -WRAP : l - WIN;
    Hi[i] = l === nmax ? WRAP : l + WIN;
    let diff = F(F(F(scale * l) + min) - v);
    diff = useMad ? Math.abs(diff) : F(diff * diff);
    best = F(best + F(w[i]! * diff));
  }
  const useTable = nmax + 1 < n;
  let dirty = 0; // no element before `dirty` changed level since the last float32-summed step
  let dirtyD = 0; // … since the last double-summed step
  for (let k = 0; k < steps.length; ++k) {
    // (6) levels: recomputed only when q leaves the element's window
    const isc = F(steps[k]! / range);
    for (let i = 0; i < n; ++i) {
      const qd = isc * M[i]!;
      if (qd > Lo[i]! && qd < Hi[i]!) continue;
      const q = F(qd);
      const l = q >= 0 && q <= nmax ? F(q + 12582912) - 12582912 : nearestClamped(q, nmax);
      if (l !== A[i]) {
        A[i] = l;
        if (i < dirty) dirty = i;
        if (i < dirtyD) dirtyD = i;
      }
      Lo[i] = l === 0 ? -WRAP : l - WIN;
      Hi[i] = l === nmax ? WRAP : l + WIN;
    }
    let p = dirty;
    let pd = dirtyD;
    if (useLs) {
      if (pd === n) continue; // (2): that step was rejected or evaluated
      dirtyD = n;
      let a1 = Q1[pd]!;
      let a2 = Q2[pd]!;
      let a3 = Q3[pd]!;
      for (let i = pd; i < n; ++i) {
        const l = A[i]!;
        const wl = w[i]! * l;
        a1 += wl;
        a2 += wl * l;
        a3 += wl * X[i]!;
        Q1[i + 1] = a1;
        Q2[i + 1] = a2;
        Q3[i + 1] = a3;
      }
      // (5)
      const sllp = a2 - (a1 * a1) / dSw; // ‖l⊥‖²
      if (sllp > 1e-6 * a2) {
        const k2 = a2 / sllp; // κ²
        const kw = dSw / sllp;
        const sxlp = a3 - (a1 * dSx) / dSw;
        const sxxp = dSxx - (dSx * dSx) / dSw;
        const emin = sxxp - (sxlp * sxlp) / sllp - dSxx * (n + 16) * 9.094947017729282e-13 * (1 + k2 + nmax * Math.sqrt(kw)); // 2^-40
        if (emin > 0) {
          const kap = Math.sqrt(k2) * 1.000001;
          const lbd = Math.sqrt(emin) * (1 - (kap + 2) * U1) - U1 * (kap + 1) * normX - tinyW;
          if (lbd > 0 && lbd * lbd * (1 - (n + 4) * 5.960464477539063e-8) - slack >= best * (1 + 9.094947017729282e-13)) continue;
        }
      }
    }
    if (p === n) continue; // (2)
    dirty = n;
    let sl = S1[p]!; // (1)
    let sl2 = S2[p]!;
    let sxl = S3[p]!;
    for (let i = p; i < n; ++i) {
      const l = A[i]!;
      const wl = F(w[i]! * l);
      sl = F(sl + wl);
      sl2 = F(sl2 + F(wl * l));
      sxl = F(sxl + F(wl * X[i]!));
      S1[i + 1] = sl;
      S2[i + 1] = sl2;
      S3[i + 1] = sxl;
    }
    const D = F(F(sw * sl2) - F(sl * sl));
    if (!(D > 0)) continue;
    let s = F(F(F(sw * sxl) - F(sx * sl)) / D);
    let m = F(F(F(sl2 * sx) - F(sl * sxl)) / D);
    if (m > 0) {
      m = 0;
      s = F(sxl / sl2);
    }
    // (3) residuals (exact) and the double-precision lower bound of the error
    const thr = (best + slack) * 1.0000023841857910156; // 1 + 40·2^-24
    let e = 0;
    let i = 0;
    if (useTable) {
      for (let l = 0; l <= nmax; ++l) T[l] = F(F(s * l) + m);
      for (; i < n; ++i) {
        const d = F(T[A[i]!]! - X[i]!);
        Dv[i] = d;
        e += useMad ? w[i]! * Math.abs(d) : w[i]! * d * d;
        if (e >= thr) break;
      }
    } else {
      for (; i < n; ++i) {
        const d = F(F(F(s * A[i]!) + m) - X[i]!);
        Dv[i] = d;
        e += useMad ? w[i]! * Math.abs(d) : w[i]! * d * d;
        if (e >= thr) break;
      }
    }
    if (i < n) continue; // error ≥ best: rejected
    let err = 0;
    for (i = 0; i < n; ++i) {
      const d = Dv[i]!;
      err = F(err + F(w[i]! * (useMad ? Math.abs(d) : F(d * d))));
      if (err >= best) break;
    }
    if (i === n && err < best) {
      for (let j = 0; j < n; ++j) L[lo + j] = A[j]!;
      best = err;
      scale = s;
      const moved = m !== min;
      min = m;
      if (moved) {
        range = F(max - min);
        for (let j = 0; j < n; ++j) M[j] = F(X[j]! - min);
      }
    }
  }
  out.theMin = -min;
  return scale;
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
// scratch of the K-quant codecs

/**
 * The working memory of the K-quant TypeScript paths (q2_k.ts … q6_k.ts): made per quantize call, or
 * passed in by the caller and reused across calls (one per thread of work); never module-level, so
 * two quantizations in progress never share an array. (The leaf searches' own working arrays are above.)
 */
export class KQuantScratch {
  /** the current super-block's levels (Q2_K, Q4_K, Q5_K, Q6_K) */
  readonly L = new Uint8Array(256);
  /** Q3_K's levels (signed during the search) */
  readonly L8 = new Int8Array(256);
  /** weights of the current group */
  readonly w = new Float64Array(32);
  /** the super-block's sub-block scales and mins (search results) */
  readonly sc = new Float64Array(16);
  readonly mn = new Float64Array(16);
  /** the re-quantization divisors and offsets of the sub-blocks (after the fp16 rounding) */
  readonly dd = new Float64Array(16);
  readonly dm = new Float64Array(16);
  /** makeQkx2's second output (C's the_min) */
  readonly min: TheMin = { theMin: 0 };
}

// ---------------------------------------------------------------------------------------------
// Q4_K / Q5_K common first stage (ggml-quants.c quantize_row_q4_K_ref / quantize_row_q5_K_ref): per 32-group weighted search, 6-bit scale/min
// packing, fp16 d/dmin, then the final re-quantization with the fp16-rounded values.

/**
 * The Q4_K / Q5_K super-block tail after the eight searches (quantize_row_q4_K_ref / _q5_K_ref), shared
 * by the TypeScript path and the WebAssembly one (kquant-wasm.ts): from the sub-block scales and mins
 * (at so + j) the 6-bit scales and mins and fp16 d / dmin into dst[o..o+16), and for the final
 * re-quantization, per sub-block j, the divisor dd[at + j] = f(d·ls_j) and offset dm[at + j] = f(dmin·lm_j)
 * (C skips a sub-block with dd = 0 and keeps the search's levels). The 6-bit codes are packed as they
 * are made (packScaleMinK4's layout: byte j < 4 is written before the high bits of j + 4 are ORed in).
 */
export function k45Tail(
  scales: ArrayLike<number>,
  mins: ArrayLike<number>,
  so: number,
  dst: Uint8Array,
  o: number,
  dd: Float32Array | Float64Array,
  dm: Float32Array | Float64Array,
  at: number,
): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; ++j) {
    const s = scales[so + j]!;
    const m = mins[so + j]!;
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
  const dh = toF16(F(maxScale / 63));
  const mh = toF16(F(maxMin / 63));
  putF16(dst, o, dh);
  putF16(dst, o + 2, mh);
  const d = H2F[dh]!;
  const dmin = H2F[mh]!;
  const q = o + 4;
  for (let j = 0; j < 8; ++j) {
    let ls = nearestInt(F(invScale * scales[so + j]!)) & 0xff;
    let lm = nearestInt(F(invMin * mins[so + j]!)) & 0xff;
    if (ls > 63) ls = 63;
    if (lm > 63) lm = 63;
    if (j < 4) {
      dst[q + j] = ls;
      dst[q + j + 4] = lm;
    } else {
      dst[q + j + 4] = (ls & 15) | ((lm & 15) << 4);
      dst[q + j - 4] |= (ls >> 4) << 6;
      dst[q + j] |= (lm >> 4) << 6;
    }
    dd[at + j] = F(d * ls);
    dm[at + j] = F(dmin * lm);
  }
}

/**
 * The Q6_K super-block tail after the sixteen searches (quantize_row_q6_K_ref), shared by q6_k.ts and
 * kquant-wasm.ts: from the sub-block scales (at so + j) the int8 scales (dst[o+192..]) and fp16 d
 * (dst[o+208]), and per sub-block the re-quantization divisor dd[at + j] = f(d·scale_j). Returns false
 * for a super-block whose largest |scale| is below GROUP_MAX_EPS: C writes it as all zeros (done here).
 */
export function q6kTail(scales: ArrayLike<number>, so: number, dst: Uint8Array, o: number, dd: Float32Array | Float64Array, at: number): boolean {
  let maxScale = 0;
  let maxAbs = 0;
  for (let j = 0; j < 16; ++j) {
    const s = scales[so + j]!;
    const as = Math.abs(s);
    if (as > maxAbs) {
      maxAbs = as;
      maxScale = s;
    }
  }
  if (maxAbs < EPS) {
    dst.fill(0, o, o + 210);
    return false;
  }
  const is = F(-128 / maxScale);
  const dh = toF16(F(1 / is));
  putF16(dst, o + 208, dh);
  const d = H2F[dh]!;
  for (let j = 0; j < 16; ++j) {
    const v = nearestInt(F(is * scales[so + j]!));
    dst[o + 192 + j] = (v < 127 ? v : 127) & 0xff;
    dd[at + j] = F(d * ((dst[o + 192 + j]! << 24) >> 24));
  }
  return true;
}

/**
 * The eight searches of a Q4_K/Q5_K super-block (quantize_row_q4_K_ref / _q5_K_ref): weights
 * av + |x|, make_qkx2_quants per 32-group; levels into s.L, scales into s.sc, mins into s.mn.
 */
export function k45Search(s: KQuantScratch, x: Float32Array, xo: number, nmax: number, steps: Float64Array): void {
  const { w, L, sc, mn } = s;
  const kx = s.min;
  for (let j = 0; j < 8; ++j) {
    const go = xo + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; ++l) {
      const v = x[go + l]!;
      sumX2 = F(sumX2 + F(v * v));
    }
    const av = F(Math.sqrt(F(sumX2 / 32)));
    for (let l = 0; l < 32; ++l) w[l] = F(av + Math.abs(x[go + l]!));
    sc[j] = makeQkx2(x, go, 32, nmax, w, L, 32 * j, steps, false, kx);
    mn[j] = kx.theMin;
  }
}

/**
 * After k45Search: d (o+0), dmin (o+2) and the 12 scale bytes (o+4) into dst, and the final
 * re-quantization of the 256 levels (0..nmax) in s.L with the fp16-rounded scales.
 */
export function k45Finish(s: KQuantScratch, x: Float32Array, xo: number, nmax: number, dst: Uint8Array, o: number): void {
  const { L, dd: DD, dm: DM } = s;
  k45Tail(s.sc, s.mn, 0, dst, o, DD, DM, 0);
  for (let j = 0; j < 8; ++j) {
    const dd = DD[j]!;
    if (dd === 0) continue; // keep the search's levels (quantize_row_q4_K_ref: `if (!d) continue;`)
    const dm = DM[j]!;
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
