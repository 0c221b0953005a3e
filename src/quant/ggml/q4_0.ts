import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { legacyCodec } from "./legacy.js";

/**
 * Q4_0: 32 values per block, fp16 scale + 16 bytes of 4-bit levels (18 bytes).
 * Bit-exact port of ggml's quantize_row_q4_0_ref (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -8; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)(x*id + 8.5f)); byte j = q[j] | q[j+16] << 4.
 *
 * The quantizer runs as the legacy WebAssembly SIMD kernel of legacy.ts (one kernel parameterised by
 * block family, built with src/quant/wasm/). The scalar port shared by the four legacy types
 * (legacy.ts quantizeLegacyScalar, every float32 operation one Math.fround of the double result) is
 * the fallback when WebAssembly SIMD is missing or off, and is tested on its own.
 */

const codec = legacyCodec("q4_0", GGMLType.Q4_0);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ4_0Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_0_WASM = codec.usesWasm;
export const q4_0: BlockCodec = codec.codec;
