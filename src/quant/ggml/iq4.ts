import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16, f16Lut } from "../../formats/half.js";

/**
 * IQ4_NL (32-blocks) and IQ4_XS (256-blocks of eight 32-sub-blocks): 4-bit indices into the
 * non-linear table kvalues_iq4nl. Bit-exact port of what ggml_quantize_chunk runs without an imatrix:
 * quantize_iq4_nl / quantize_iq4_xs → the shared search quantize_row_iq4_nl_impl with ntry = 7 and
 * weights x² (spec §7.1–7.3) — NOT quantize_row_iq4_nl_ref (ntry = -1), which gives other bytes.
 * Dequantizers follow dequantize_row_iq4_nl / _xs. Every float32 operation is one Math.fround.
 *
 * Speed: best_index_int8 (a bisection in C) is a table lookup here. For a non-NaN v it equals the
 * number of midpoints M_j = T[j-1] + T[j] (integers) with 2v ≥ M_j (spec §4.1), and because the M_j
 * are integers that only depends on floor(2v); 2v + 512 is exact in double wherever floor(2v) sits
 * next to a midpoint, so `(v + v + 512) | 0` indexes a 1024-entry table. Anything outside the table
 * (and NaN) goes through a literal port of the C bisection. Scratch arrays are module-level.
 */

const T = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113] as const;
const fr = Math.fround;
const EPS = Math.fround(1e-15); // GROUP_MAX_EPS
const NTRY = 7;

// bestIndex lookup: index k = floor(2v) + 512 for k in [0, 1024)
const LUT_OFF = 512;
const LUT_N = 1024;
const LUT_I = new Uint8Array(LUT_N);
const LUT_Q = new Float64Array(LUT_N);
for (let k = 0; k < LUT_N; k++) {
  const f2v = k - LUT_OFF; // floor(2v)
  let idx = 0;
  for (let j = 1; j < 16; j++) if (f2v >= T[j - 1]! + T[j]!) idx = j;
  LUT_I[k] = idx;
  LUT_Q[k] = T[idx]!;
}

/** best_index_int8(16, kvalues_iq4nl, v), literally (float32 differences, ties go up; NaN → 15). */
function bestIndexSlow(v: number): number {
  if (v <= T[0]) return 0;
  if (v >= T[15]) return 15;
  let ml = 0;
  let mu = 15;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (v < T[mav]!) mu = mav;
    else ml = mav;
  }
  return fr(v - T[mu - 1]!) < fr(T[mu]! - v) ? mu - 1 : mu;
}

/** best_index_int8 for a float32 value v. */
function bestIndex(v: number): number {
  const t = v + v + LUT_OFF;
  return t >= 0 && t < LUT_N ? LUT_I[t | 0]! : bestIndexSlow(v);
}

/** kvalues_iq4nl[best_index_int8(v)] */
function bestValue(v: number): number {
  const t = v + v + LUT_OFF;
  return t >= 0 && t < LUT_N ? LUT_Q[t | 0]! : T[bestIndexSlow(v)]!;
}

// nearest_int(): float32 add of 1.5·2^23, then the low mantissa bits
const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);
function nearestInt(v: number): number {
  sF[0] = v + 12582912; // the Float32Array store is the float32 rounding of the sum
  return (sI[0]! & 0x007fffff) - 0x00400000;
}

/** fp16 bits of a float32 value: inline fast path for normal results, half.ts's toF16 otherwise. */
function f16(d: number): number {
  sF[0] = d;
  const u = sI[0]!;
  const a = u & 0x7fffffff;
  if (a >= 0x38800000 && a < 0x477ff000) {
    const r = a - 0x38000000;
    return ((u >>> 16) & 0x8000) | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  return toF16(d);
}

const W = new Float64Array(32); // weights of the current sub-block (x², float32-rounded)
const X = new Float64Array(32); // the current sub-block's values
const IDS = new Float64Array(16); // inverse scales of the 16 passes: the initial one, then itry = -7..7
const SQX = new Float64Array(16); // per pass: Σ w·q·x
const SQ2 = new Float64Array(16); // per pass: Σ w·q·q

/**
 * Σ w·q·x and Σ w·q·q (float32, index order) for passes p..p+3. The four passes are independent, so
 * they run interleaved: each sum is a serial chain of float32-rounded adds (a latency of several
 * cycles per element in JS), and four side by side keep the core busy. The sums themselves are
 * exactly the C ones — only unrelated work is interleaved.
 */
function passSums4(p: number): void {
  const i0 = IDS[p]!;
  const i1 = IDS[p + 1]!;
  const i2 = IDS[p + 2]!;
  const i3 = IDS[p + 3]!;
  let x0 = 0, x1 = 0, x2 = 0, x3 = 0;
  let y0 = 0, y1 = 0, y2 = 0, y3 = 0;
  for (let j = 0; j < 32; j++) {
    const x = X[j]!;
    const w = W[j]!;
    const q0 = bestValue(fr(i0 * x));
    const q1 = bestValue(fr(i1 * x));
    const q2 = bestValue(fr(i2 * x));
    const q3 = bestValue(fr(i3 * x));
    const w0 = fr(w * q0);
    const w1 = fr(w * q1);
    const w2 = fr(w * q2);
    const w3 = fr(w * q3);
    x0 = fr(x0 + fr(w0 * x));
    x1 = fr(x1 + fr(w1 * x));
    x2 = fr(x2 + fr(w2 * x));
    x3 = fr(x3 + fr(w3 * x));
    y0 = fr(y0 + fr(w0 * q0));
    y1 = fr(y1 + fr(w1 * q1));
    y2 = fr(y2 + fr(w2 * q2));
    y3 = fr(y3 + fr(w3 * q3));
  }
  SQX[p] = x0;
  SQX[p + 1] = x1;
  SQX[p + 2] = x2;
  SQX[p + 3] = x3;
  SQ2[p] = y0;
  SQ2[p + 1] = y1;
  SQ2[p + 2] = y2;
  SQ2[p + 3] = y3;
}

/**
 * The per-sub-block scale search of quantize_row_iq4_nl_impl without an imatrix (weights x²,
 * ntry = 7): the levels of the first pass are not kept by either caller, so only the scale is returned.
 */
function searchScale(src: Float32Array, x0: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = src[x0 + j]!;
    X[j] = v;
    W[j] = fr(v * v);
    const a = Math.abs(v);
    if (a > amax) {
      amax = a;
      max = v;
    }
  }
  if (amax < EPS) return 0;
  // first pass: d = -max / values[0] (ntry > 0), id = 1/d; then the 2·ntry + 1 trials id = (itry + values[0]) / max
  IDS[0] = fr(1 / fr(-max / -127));
  for (let itry = -NTRY; itry <= NTRY; itry++) IDS[itry + NTRY + 1] = fr((itry - 127) / max);
  passSums4(0);
  passSums4(4);
  passSums4(8);
  passSums4(12);
  // the C order of decisions
  let sumqx = SQX[0]!;
  let sumq2 = SQ2[0]!;
  let d = sumq2 > 0 ? fr(sumqx / sumq2) : 0;
  let best = fr(d * sumqx);
  for (let p = 1; p < 16; p++) {
    sumqx = SQX[p]!;
    sumq2 = SQ2[p]!;
    if (sumq2 > 0 && fr(sumqx * sumqx) > fr(best * sumq2)) {
      d = fr(sumqx / sumq2);
      best = fr(d * sumqx);
    }
  }
  return d;
}

/** Levels of 32 values at src[x0..] for inverse scale id, packed as byte j = L[j] | L[j+16] << 4. */
function packLevels(src: Float32Array, x0: number, id: number, dst: Uint8Array, o: number): void {
  for (let j = 0; j < 16; j++) {
    dst[o + j] = bestIndex(fr(id * src[x0 + j]!)) | (bestIndex(fr(id * src[x0 + j + 16]!)) << 4);
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL: 32 values, d f16 + qs[16] (18 bytes)

function quantizeNL(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / 32) | 0;
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += 32, o += 18) {
    const scale = searchScale(src, x0);
    const h = f16(scale);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    const id = scale !== 0 ? fr(1 / scale) : 0; // C: scales[0] ? 1/scales[0] : 0
    packLevels(src, x0, id, dst, o + 2);
  }
}

function dequantizeNL(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / 32) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += 18, y += 32) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      dst[y + j] = d * T[b & 15]!;
      dst[y + j + 16] = d * T[b >>> 4]!;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_XS: 256 values, d f16 · scales_h u16 · scales_l[4] · qs[128] (136 bytes)

const SCALES = new Float64Array(8);

function quantizeXS(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / 256) | 0;
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += 256, o += 136) {
    let amaxS = 0;
    let maxS = 0;
    for (let ib = 0; ib < 8; ib++) {
      const s = searchScale(src, x0 + 32 * ib);
      SCALES[ib] = s;
      const a = Math.abs(s);
      if (a > amaxS) {
        amaxS = a;
        maxS = s;
      }
    }
    const d = fr(-maxS / 32);
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    const id = d !== 0 ? fr(1 / d) : 0;
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      let l = nearestInt(fr(id * SCALES[ib]!));
      l = Math.max(-32, Math.min(31, l));
      const dl = fr(d * l);
      const idl = dl !== 0 ? fr(1 / dl) : 0;
      packLevels(src, x0 + 32 * ib, idl, dst, o + 8 + 16 * ib);
      l += 32;
      const sl = o + 4 + (ib >> 1);
      if ((ib & 1) === 0) dst[sl] = l & 15;
      else dst[sl] = dst[sl]! | ((l & 15) << 4);
      scalesH |= (l >> 4) << (2 * ib);
    }
    dst[o + 2] = scalesH;
    dst[o + 3] = scalesH >>> 8;
  }
}

function dequantizeXS(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / 256) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += 136) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const scalesH = src[o + 2]! | (src[o + 3]! << 8);
    for (let ib = 0; ib < 8; ib++, y += 32) {
      const ls = ((src[o + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = fr(d * (ls - 32));
      const q = o + 8 + 16 * ib;
      for (let j = 0; j < 16; j++) {
        const b = src[q + j]!;
        dst[y + j] = dl * T[b & 15]!;
        dst[y + j + 16] = dl * T[b >>> 4]!;
      }
    }
  }
}

export const iq4_nl: BlockCodec = {
  type: GGMLType.IQ4_NL,
  blockSize: 32,
  typeSize: 18,
  quantize: quantizeNL,
  dequantize: dequantizeNL,
};

export const iq4_xs: BlockCodec = {
  type: GGMLType.IQ4_XS,
  blockSize: 256,
  typeSize: 136,
  quantize: quantizeXS,
  dequantize: dequantizeXS,
};
