import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut } from "../../formats/half.js";
import { legacyCodec } from "./legacy.js";

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

const codec = legacyCodec("q5_1", GGMLType.Q5_1, dequantize);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ5_1Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q5_1_WASM = codec.usesWasm;
export const q5_1: BlockCodec = codec.codec;
