import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut } from "../../formats/half.js";
import { legacyCodec } from "./legacy.js";

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

const codec = legacyCodec("q4_1", GGMLType.Q4_1, dequantize);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ4_1Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_1_WASM = codec.usesWasm;
export const q4_1: BlockCodec = codec.codec;
