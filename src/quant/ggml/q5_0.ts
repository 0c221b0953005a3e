import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { legacyQuantizer } from "./legacy.js";

/**
 * Q5_0: 32 values per block, fp16 scale + 32 high bits (u32 LE) + 16 bytes of low nibbles (22 bytes).
 * Bit-exact port of ggml's quantize_row_q5_0_ref / dequantize_row_q5_0 (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -16; id = d ? 1/d : 0;
 *   q = MIN(31, (int8)(x*id + 16.5f)); qs[j] = q[j]&15 | (q[j+16]&15) << 4; qh bit j = q[j] >> 4.
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const QK = 32;
const BYTES = 22;
const fr = Math.fround;

const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/** Signed value of the first element with the strictly largest |x|, 0 if none (see q4_0.ts). */
function signedAbsMax(src: Float32Array, si: Int32Array, x0: number): number {
  let m0 = 0;
  let m1 = 0;
  for (let j = x0; j < x0 + QK; j += 2) {
    const a = si[j]! & 0x7fffffff;
    const da = a - m0;
    m0 = a - (da & (da >> 31));
    const b = si[j + 1]! & 0x7fffffff;
    const db = b - m1;
    m1 = b - (db & (db >> 31));
  }
  const dm = m0 - m1;
  const m = m0 - (dm & (dm >> 31));
  if (m === 0) return 0;
  if (m <= 0x7f800000) {
    for (let j = x0; ; j++) if ((si[j]! & 0x7fffffff) === m) return src[j]!;
  }
  let amax = 0;
  let max = 0;
  for (let j = x0; j < x0 + QK; j++) {
    const v = src[j]!;
    const a = Math.abs(v);
    if (amax < a) {
      amax = a;
      max = v;
    }
  }
  return max;
}

/** Scalar JS path (used when WebAssembly SIMD is unavailable; exported for the tests). */
export function quantizeQ5_0Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    const max = signedAbsMax(src, si, x0);
    const d = fr(max / -16);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    // t = x*id + 16.5f is in (0, 33), ±inf or NaN (same argument as Q4_0), so `t | 0` is C's truncation.
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = Math.min(31, fr(fr(src[x0 + j]! * id) + 16.5) | 0);
      const b = Math.min(31, fr(fr(src[x0 + j + 16]! * id) + 16.5) | 0);
      dst[o + 6 + j] = (a & 15) | ((b & 15) << 4);
      qh |= ((a >>> 4) << j) | ((b >>> 4) << (j + 16));
    }
    dst[o + 2] = qh;
    dst[o + 3] = qh >>> 8;
    dst[o + 4] = qh >>> 16;
    dst[o + 5] = qh >>> 24;
  }
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q5_0", { asym: false, div: -16, bias: 16.5, clamp: 31, bits5: true, bytes: BYTES }, quantizeQ5_0Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q5_0_WASM = fast.usesWasm;
const quantize = fast.quantize;

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const qh = src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 6 + j]!;
      dst[y + j] = (((b & 15) | (((qh >>> j) & 1) << 4)) - 16) * d;
      dst[y + j + 16] = (((b >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
    }
  }
}

export const q5_0: BlockCodec = {
  type: GGMLType.Q5_0,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
