import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { legacyCodec } from "./legacy.js";

/**
 * Q5_0: 32 values per block, fp16 scale + 32 high bits (u32 LE) + 16 bytes of low nibbles (22 bytes).
 * Bit-exact port of ggml's quantize_row_q5_0_ref (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -16; id = d ? 1/d : 0;
 *   q = MIN(31, (int8)(x*id + 16.5f)); qs[j] = q[j]&15 | (q[j+16]&15) << 4; qh bit j = q[j] >> 4.
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 */

const codec = legacyCodec("q5_0", GGMLType.Q5_0);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ5_0Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q5_0_WASM = codec.usesWasm;
export const q5_0: BlockCodec = codec.codec;
