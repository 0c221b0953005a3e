import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { legacyCodec } from "./legacy.js";

/**
 * Q4_1: 32 values per block, fp16 scale d + fp16 minimum m + 16 bytes of 4-bit levels (20 bytes).
 * Bit-exact port of ggml's quantize_row_q4_1_ref (ggml/src/ggml-quants.c):
 *   min/max by strict comparisons from ±FLT_MAX; d = (max - min)/15; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)((x - min)*id + 0.5f)); dequant y = q*d + m (two roundings, no FMA).
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const codec = legacyCodec("q4_1", GGMLType.Q4_1);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ4_1Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_1_WASM = codec.usesWasm;
export const q4_1: BlockCodec = codec.codec;
