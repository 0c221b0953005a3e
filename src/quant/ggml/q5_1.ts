import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { legacyCodec } from "./legacy.js";

/**
 * Q5_1: 32 values per block, fp16 scale d + fp16 minimum m + 32 high bits (u32 LE) + 16 bytes of low nibbles (24 bytes).
 * Bit-exact port of ggml's quantize_row_q5_1_ref (ggml/src/ggml-quants.c):
 *   min/max by strict comparisons from ±FLT_MAX; d = (max - min)/31; id = d ? 1/d : 0;
 *   q = (uint8)((x - min)*id + 0.5f) (no clamp in the source); bits split as Q5_0;
 *   dequant y = q*d + m (two roundings, no FMA).
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const codec = legacyCodec("q5_1", GGMLType.Q5_1);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ5_1Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q5_1_WASM = codec.usesWasm;
export const q5_1: BlockCodec = codec.codec;
