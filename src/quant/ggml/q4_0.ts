import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { legacyQuantizer } from "./legacy.js";

/**
 * Q4_0: 32 values per block, fp16 scale + 16 bytes of 4-bit levels (18 bytes).
 * Bit-exact port of ggml's quantize_row_q4_0_ref / dequantize_row_q4_0 (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -8; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)(x*id + 8.5f)); byte j = q[j] | q[j+16] << 4.
 *
 * The quantizer runs as the legacy WebAssembly SIMD kernel of legacy.ts (one kernel parameterised by
 * block family, built with src/quant/wasm/). The scalar JS port below (every float32 operation one
 * Math.fround of the double result) is the fallback when WebAssembly SIMD is missing or off, and is
 * tested on its own.
 *
 * Scalar speed notes: the largest |x| is found on the float bit patterns (non-negative floats order
 * like their bits), then the first element with that |x| gives the signed max; NaN blocks take the C loop.
 */

const QK = 32;
const BYTES = 18;
const fr = Math.fround;

const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/**
 * Signed value of the first element with the strictly largest |x| (C: if (amax < fabsf(v)) {…}),
 * 0 when every |x| is 0. The maximum of |x| is taken on the bit patterns with a branch-free integer
 * max (two independent chains); a NaN (bits > 0x7f800000, never wins in C) sends the block to the C loop.
 */
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
export function quantizeQ4_0Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    const max = signedAbsMax(src, si, x0);
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    // C: MIN(15, (int8_t)(x*id + 8.5f)). For finite x, |x*id| <= 8 up to rounding (even when d is
    // subnormal, id = 1/d is either accurate or ±inf), so t is in (0, 17), ±inf or NaN; `t | 0` then
    // equals gcc's cvttss2si-then-low-byte (±inf and NaN → 0 both ways) and no int8 wrap can happen.
    for (let j = 0, q = o + 2; j < 16; j += 2, q += 2) {
      const a0 = fr(fr(src[x0 + j]! * id) + 8.5) | 0;
      const b0 = fr(fr(src[x0 + j + 16]! * id) + 8.5) | 0;
      const a1 = fr(fr(src[x0 + j + 1]! * id) + 8.5) | 0;
      const b1 = fr(fr(src[x0 + j + 17]! * id) + 8.5) | 0;
      dst[q] = Math.min(15, a0) | (Math.min(15, b0) << 4);
      dst[q + 1] = Math.min(15, a1) | (Math.min(15, b1) << 4);
    }
  }
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q4_0", { asym: false, div: -8, bias: 8.5, clamp: 15, bits5: false, bytes: BYTES }, quantizeQ4_0Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_0_WASM = fast.usesWasm;
const quantize = fast.quantize;

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      dst[y + j] = ((b & 15) - 8) * d;
      dst[y + j + 16] = ((b >>> 4) - 8) * d;
    }
  }
}

export const q4_0: BlockCodec = {
  type: GGMLType.Q4_0,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
