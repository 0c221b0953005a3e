/**
 * The fixed 4-bit code tables bitsandbytes' dequantize kernels use (float32 bit patterns, index = nibble).
 *
 * NF4: `nf4_dequantization_lut` (csrc/kernels.cu), same literals as `get_4bit_type("nf4")`.
 * FP4: `fp4_dequantization_lut[v & 7] * (1 - 2*((v & 8) >> 3))` (csrc/kernels.cu) — nibble 8 is therefore
 *      -0.0 in the CUDA and CPU-scalar kernels, while `get_4bit_type("fp4")` (the stored `quant_map`, the torch
 *      fallback, the AVX-512 and NEON LUTs) has +0.0 there. We decode with -0.0 (what CUDA users run); the two
 *      differ only in the sign of a zero.
 *
 * The decoder never uses the stored `quant_map` (bitsandbytes does not either); it is only compared against
 * these tables to warn about odd checkpoints.
 */

function fromBits(bits: readonly number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer);
}

export const NF4_CODE: Float32Array = fromBits([
  0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
  0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
]);

export const FP4_CODE: Float32Array = fromBits([
  0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
  0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
]);

/** LLM.int8 dequantization constant: float32(7.874015718698502e-3) = 0x3C010204 (≈ 1/127). */
export const INT8_DEQUANT_SCALE = Math.fround(7.874015718698502e-3);

/** `weight_format` codes (bitsandbytes utils.py LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING). */
export const INT8_WEIGHT_FORMATS: readonly string[] = ["row", "col32", "col_turing", "col_ampere"];
