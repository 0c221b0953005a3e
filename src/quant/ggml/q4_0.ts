import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut } from "../../formats/half.js";
import { LEGACY, legacyQuantizer, quantizeLegacyScalar } from "./legacy.js";

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

/** Scalar JS path (legacy.ts's quantizeLegacyScalar; the fallback without WebAssembly SIMD, exported for the tests). */
export function quantizeQ4_0Scalar(src: Float32Array, dst: Uint8Array): void {
  quantizeLegacyScalar(LEGACY.q4_0, src, dst);
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q4_0", LEGACY.q4_0, quantizeQ4_0Scalar);
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
