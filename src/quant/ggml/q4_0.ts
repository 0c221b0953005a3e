import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut } from "../../formats/half.js";
import { legacyCodec } from "./legacy.js";

/**
 * Q4_0: 32 values per block, fp16 scale + 16 bytes of 4-bit levels (18 bytes).
 * Bit-exact port of ggml's quantize_row_q4_0_ref / dequantize_row_q4_0 (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -8; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)(x*id + 8.5f)); byte j = q[j] | q[j+16] << 4.
 *
 * The quantizer runs as the legacy WebAssembly SIMD kernel of legacy.ts (one kernel parameterised by
 * block family, built with src/quant/wasm/). The scalar port shared by the four legacy types
 * (legacy.ts quantizeLegacyScalar, every float32 operation one Math.fround of the double result) is
 * the fallback when WebAssembly SIMD is missing or off, and is tested on its own.
 */

const QK = 32;
const BYTES = 18;

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

const codec = legacyCodec("q4_0", GGMLType.Q4_0, dequantize);
/** Scalar JS path (legacy.ts quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export const quantizeQ4_0Scalar = codec.scalar;
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_0_WASM = codec.usesWasm;
export const q4_0: BlockCodec = codec.codec;
