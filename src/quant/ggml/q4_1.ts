import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { legacyQuantizer } from "./legacy.js";

/**
 * Q4_1: 32 values per block, fp16 scale d + fp16 minimum m + 16 bytes of 4-bit levels (20 bytes).
 * Bit-exact port of ggml's quantize_row_q4_1_ref / dequantize_row_q4_1 (ggml/src/ggml-quants.c):
 *   min/max by strict comparisons from ±FLT_MAX; d = (max - min)/15; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)((x - min)*id + 0.5f)); dequant y = q*d + m (two roundings, no FMA).
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const QK = 32;
const BYTES = 20;
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
export function quantizeQ4_1Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    minMax(src, x0);
    const min = bMin;
    const d = fr(fr(bMax - min) / 15);
    const id = d !== 0 ? fr(1 / d) : 0;
    const hd = f16(d);
    const hm = f16(min);
    dst[o] = hd;
    dst[o + 1] = hd >>> 8;
    dst[o + 2] = hm;
    dst[o + 3] = hm >>> 8;
    // t = (x-min)*id + 0.5f is in [0, 17) up to rounding, ±inf or NaN, so `t | 0` is C's (int8_t) cast
    // (gcc: cvttss2si, INT_MIN → low byte 0 for non-finite values, as |0 gives 0).
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, fr(fr(fr(src[x0 + j]! - min) * id) + 0.5) | 0);
      const b = Math.min(15, fr(fr(fr(src[x0 + j + 16]! - min) * id) + 0.5) | 0);
      dst[o + 4 + j] = a | (b << 4);
    }
  }
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q4_1", { asym: true, div: 15, bias: 0.5, clamp: 15, bits5: false, bytes: BYTES }, quantizeQ4_1Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_1_WASM = fast.usesWasm;
const quantize = fast.quantize;

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const m = lut[src[o + 2]! | (src[o + 3]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const b = src[o + 4 + j]!;
      dst[y + j] = fr((b & 15) * d) + m;
      dst[y + j + 16] = fr((b >>> 4) * d) + m;
    }
  }
}

export const q4_1: BlockCodec = {
  type: GGMLType.Q4_1,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
