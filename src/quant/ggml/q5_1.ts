import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { legacyQuantizer } from "./legacy.js";

/**
 * Q5_1: 32 values per block, fp16 scale d + fp16 minimum m + 32 high bits (u32 LE) + 16 bytes of low nibbles (24 bytes).
 * Bit-exact port of ggml's quantize_row_q5_1_ref / dequantize_row_q5_1 (ggml/src/ggml-quants.c):
 *   min/max by strict comparisons from ±FLT_MAX; d = (max - min)/31; id = d ? 1/d : 0;
 *   q = (uint8)((x - min)*id + 0.5f) (no clamp in the source); bits split as Q5_0;
 *   dequant y = q*d + m (two roundings, no FMA).
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const QK = 32;
const BYTES = 24;
const fr = Math.fround;
const FLT_MAX = 3.4028234663852886e38;

const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

// block minimum and maximum, written by minMax()
let bMin = 0;
let bMax = 0;

/**
 * C: min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v. Math.min/max agree
 * except with NaN (C skips it) and with ±0 (C keeps the first of equal values, Math.min prefers -0),
 * so those blocks take the literal loop.
 */
function minMax(src: Float32Array, x0: number): void {
  let lo = src[x0]!;
  let hi = lo;
  for (let j = x0 + 1; j < x0 + QK; j++) {
    const v = src[j]!;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (lo !== 0 && hi !== 0 && lo === lo && hi === hi) {
    bMin = lo;
    bMax = hi;
    return;
  }
  lo = FLT_MAX;
  hi = -FLT_MAX;
  for (let j = x0; j < x0 + QK; j++) {
    const v = src[j]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  bMin = lo;
  bMax = hi;
}

/** Scalar JS path (used when WebAssembly SIMD is unavailable; exported for the tests). */
export function quantizeQ5_1Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    minMax(src, x0);
    const min = bMin;
    const d = fr(fr(bMax - min) / 31);
    const id = d !== 0 ? fr(1 / d) : 0;
    const hd = f16(d);
    const hm = f16(min);
    dst[o] = hd;
    dst[o + 1] = hd >>> 8;
    dst[o + 2] = hm;
    dst[o + 3] = hm >>> 8;
    // C: (uint8_t)((x-min)*id + 0.5f), no clamp. t is in [0, 33) up to rounding, ±inf or NaN, so
    // `t | 0` is the C cast (non-finite → 0); only bits 0..4 are stored, as in C.
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = fr(fr(fr(src[x0 + j]! - min) * id) + 0.5) | 0;
      const b = fr(fr(fr(src[x0 + j + 16]! - min) * id) + 0.5) | 0;
      dst[o + 8 + j] = (a & 15) | ((b & 15) << 4);
      qh |= (((a >>> 4) & 1) << j) | (((b >>> 4) & 1) << (j + 16));
    }
    dst[o + 4] = qh;
    dst[o + 5] = qh >>> 8;
    dst[o + 6] = qh >>> 16;
    dst[o + 7] = qh >>> 24;
  }
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q5_1", { asym: true, div: 31, bias: 0.5, clamp: 0, bits5: true, bytes: BYTES }, quantizeQ5_1Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q5_1_WASM = fast.usesWasm;
const quantize = fast.quantize;

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const m = lut[src[o + 2]! | (src[o + 3]! << 8)]!;
    const qh = src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 8 + j]!;
      dst[y + j] = fr(((b & 15) | (((qh >>> j) & 1) << 4)) * d) + m;
      dst[y + j + 16] = fr(((b >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d) + m;
    }
  }
}

export const q5_1: BlockCodec = {
  type: GGMLType.Q5_1,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
