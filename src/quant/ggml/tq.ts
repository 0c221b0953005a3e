/**
 * Ternary types (BitNet b1.58 / TriLM): TQ1_0 (54 bytes: qs[48] with 5 trits per byte, qh[4] with
 * 4 trits per byte, fp16 d) and TQ2_0 (66 bytes: qs[64] with 4 × 2-bit codes per byte, fp16 d).
 * Bit-exact with ggml's quantize_row_tq1_0_ref / tq2_0_ref and their dequantizers.
 *
 * The quantizers below are the readable reference; the WebAssembly SIMD kernels of tq-wasm.ts give
 * the same bytes and are used when available (super-blocks they flag — a NaN or an infinity, or a
 * scale whose inverse overflows — go through the reference).
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, lroundInt, putF16, toF16 } from "./kquant-common.js";
import { tqQuantizer } from "./tq-wasm.js";

const QK = 256;
const TQ1_SIZE = 54;
const TQ2_SIZE = 66;

/** amax as the MAX(amax, |x|) reduction (a NaN may become amax and is replaced by the next value). */
function blockAmax(x: Float32Array, xo: number): number {
  let amax = 0;
  for (let j = 0; j < QK; ++j) {
    const a = Math.abs(x[xo + j]!);
    amax = amax > a ? amax : a;
  }
  return amax;
}

/**
 * Trits t = lroundf(f(x·id)) + 1 of one block into T[0..256) (the caller's, one per call), converted to int as C does. When
 * |x·id| < 1.4 (always, unless a NaN disturbed the amax reduction), lroundf only compares with ±0.5:
 * f(p) ≥ 0.5 exactly when p ≥ 0.5 − 2^-26 (the midpoint below 0.5 rounds to the even 0.5), and
 * p = x·id is exact in double, so no rounding is needed. Otherwise the general C semantics: lroundf
 * of a large value, then + 1 truncated to int (its low 32 bits); ±inf and NaN (a NaN x, an infinite
 * x with id = 0, or id = inf) give LONG_MIN (x86-64 glibc), and LONG_MIN + 1 as int is 1.
 */
const HALF_BELOW = 0.5 - 2 ** -26;
function trits(T: Int32Array, x: Float32Array, xo: number, id: number): void {
  for (let j = 0; j < QK; ++j) {
    const p = x[xo + j]! * id;
    T[j] = p > -1.4 && p < 1.4 ? (p >= HALF_BELOW ? 2 : p <= -HALF_BELOW ? 0 : 1) : lroundInt(F(p)) + 1;
  }
}

/** ceil(q·256/243) for q = 0..255, as `((uint16_t)q * 256 + 242) / 243` truncated to uint8. */
const CEIL243 = Uint8Array.from({ length: 256 }, (_, q) => ((q * 256 + 242) / 243) | 0);

/** C: `uint8_t q = 0; for n: q *= 3; q += xi;` (uint8 wrap) over T[p + n·stride]. */
function packTrits(T: Int32Array, p: number, stride: number, count: number): number {
  let q = 0;
  for (let n = 0; n < count; ++n) q = (q * 3 + T[p + n * stride]!) & 0xff;
  return q;
}

/** Trit n (0..4) of byte B: ((uint8_t)(B·3^n) · 3) >> 8, tabulated at [n·256 + B]. */
const TRIT_OF = new Uint8Array(5 * 256);
for (let n = 0, p = 1; n < 5; ++n, p *= 3) for (let B = 0; B < 256; ++B) TRIT_OF[(n << 8) | B] = (((B * p) & 0xff) * 3) >> 8;

/** The TypeScript reference path of TQ1_0 (also the fallback without WebAssembly SIMD and for flagged super-blocks). */
export function quantizeTQ1Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = checkQuantizeArgs("TQ1_0", src, dst, QK, TQ1_SIZE);
  const T = new Int32Array(QK); // the current block's trits (per call: no module-level state)
  for (let b = 0; b < nb; ++b) {
    const xo = b * QK;
    const o = b * TQ1_SIZE;
    const d = blockAmax(src, xo);
    const id = d !== 0 ? F(1 / d) : 0;
    putF16(dst, o + 52, toF16(d));
    trits(T, src, xo, id);
    for (let m = 0; m < 32; ++m) dst[o + m] = CEIL243[packTrits(T, m, 32, 5)]!;
    for (let m = 0; m < 16; ++m) dst[o + 32 + m] = CEIL243[packTrits(T, 160 + m, 16, 5)]!;
    for (let j = 0; j < 4; ++j) dst[o + 48 + j] = CEIL243[(packTrits(T, 240 + j, 4, 4) * 3) & 0xff]!;
  }
}

/** A TQ codec: the argument checks of ggml's row functions, then the quantizer (kernel or TypeScript) or the dequantizer over whole blocks. */
function tqCodec(name: string, type: GGMLType, size: number, q: { quantize: (src: Float32Array, dst: Uint8Array) => void }, deq: (src: Uint8Array, dst: Float32Array, nb: number) => void): BlockCodec {
  return {
    type,
    blockSize: QK,
    typeSize: size,
    quantize(src, dst) {
      const nb = checkQuantizeArgs(name, src, dst, QK, size);
      q.quantize(src.subarray(0, nb * QK), dst);
    },
    dequantize(src, dst) {
      deq(src, dst, checkDequantizeArgs(name, src, dst, QK, size));
    },
  };
}

const TQ1 = tqQuantizer(true, quantizeTQ1Scalar);

/** dequantize_row_tq1_0: `nb` blocks of src into dst */
function dequantizeTQ1(src: Uint8Array, dst: Float32Array, nb: number): void {
  const V = new Float32Array(3); // (trit − 1)·d of the current block (float32, exact: a product with −1, 0 or 1)
  for (let b = 0; b < nb; ++b) {
    const o = b * TQ1_SIZE;
    const d = H2F[src[o + 52]! | (src[o + 53]! << 8)]!;
    V[0] = -1 * d;
    V[1] = 0 * d; // −0 for a negative d, as in C
    V[2] = d;
    let y = b * QK;
    for (let n = 0; n < 5; ++n) {
      const t = n << 8;
      for (let m = 0; m < 32; ++m) dst[y++] = V[TRIT_OF[t | src[o + m]!]!]!;
    }
    for (let n = 0; n < 5; ++n) {
      const t = n << 8;
      for (let m = 0; m < 16; ++m) dst[y++] = V[TRIT_OF[t | src[o + 32 + m]!]!]!;
    }
    for (let n = 0; n < 4; ++n) {
      const t = n << 8;
      for (let j = 0; j < 4; ++j) dst[y++] = V[TRIT_OF[t | src[o + 48 + j]!]!]!;
    }
  }
}

export const tq1_0 = tqCodec("TQ1_0", GGMLType.TQ1_0, TQ1_SIZE, TQ1, dequantizeTQ1);

/** The TypeScript reference path of TQ2_0 (also the fallback without WebAssembly SIMD and for flagged super-blocks). */
export function quantizeTQ2Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = checkQuantizeArgs("TQ2_0", src, dst, QK, TQ2_SIZE);
  const T = new Int32Array(QK); // the current block's trits
  for (let b = 0; b < nb; ++b) {
    const xo = b * QK;
    const o = b * TQ2_SIZE;
    const d = blockAmax(src, xo);
    const id = d !== 0 ? F(1 / d) : 0;
    putF16(dst, o + 64, toF16(d));
    trits(T, src, xo, id);
    for (let c = 0; c < 2; ++c) {
      const t = 128 * c;
      for (let m = 0; m < 32; ++m) {
        const q = (T[t + m]! & 3) + ((T[t + 32 + m]! & 3) << 2) + ((T[t + 64 + m]! & 3) << 4) + ((T[t + 96 + m]! & 3) << 6);
        dst[o + 32 * c + m] = q & 0xff;
      }
    }
  }
}

const TQ2 = tqQuantizer(false, quantizeTQ2Scalar);

/** dequantize_row_tq2_0: `nb` blocks of src into dst */
function dequantizeTQ2(src: Uint8Array, dst: Float32Array, nb: number): void {
  const V = new Float32Array(4); // (code − 1)·d of the current block
  for (let b = 0; b < nb; ++b) {
    const o = b * TQ2_SIZE;
    const d = H2F[src[o + 64]! | (src[o + 65]! << 8)]!;
    V[0] = -1 * d;
    V[1] = 0 * d;
    V[2] = d;
    V[3] = 2 * d; // code 3 is never written by the quantizer, but decodes as (3 − 1)·d
    let y = b * QK;
    for (let c = 0; c < 2; ++c) {
      for (let n = 0; n < 4; ++n) {
        const sh = 2 * n;
        for (let m = 0; m < 32; ++m) dst[y++] = V[(src[o + 32 * c + m]! >> sh) & 3]!;
      }
    }
  }
}

export const tq2_0 = tqCodec("TQ2_0", GGMLType.TQ2_0, TQ2_SIZE, TQ2, dequantizeTQ2);

/** Whether the WebAssembly SIMD kernels (tq-wasm.ts) are in use (instantiates them). */
export const TQ1_0_WASM = (): boolean => TQ1.kernel.available();
export const TQ2_0_WASM = (): boolean => TQ2.kernel.available();
/** The kernels' own runners, for the tests of their flags: run(nb) on memory, flags per super-block. */
export const tqKernelsForTest = { tq1: TQ1.kernel, tq2: TQ2.kernel };
