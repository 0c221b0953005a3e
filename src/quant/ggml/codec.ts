import type { GGMLType } from "./types.js";

/**
 * One block family's quantizer and dequantizer, as pure functions over whole rows.
 *
 * `quantize` reads `src.length` floats (a multiple of blockSize) and writes
 * `src.length / blockSize * typeSize` bytes into `dst` starting at dst[0]. `dequantize` is the
 * inverse shape-wise. Bit-exact with ggml's `ggml_quantize_chunk` and `to_float`.
 *
 * `qw` is the importance vector of one row (llama-quantize's imatrix entry for the tensor, one float
 * per column, length n_per_row): when given, `src` holds whole rows of `qw.length` floats and the
 * codec runs ggml's `quantize_row_<type>_impl(x, y, n_per_row, quant_weights)` path row by row, as
 * `ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)` does. Without it (null or
 * undefined) the no-imatrix path, which may span several rows. Codecs whose ggml quantizer ignores
 * the imatrix (F32/F16/BF16, Q8_0) accept and ignore it.
 */
export interface BlockCodec {
  readonly type: GGMLType;
  readonly blockSize: number;
  readonly typeSize: number;
  /** ggml_quantize_requires_imatrix(type): IQ2_XXS, IQ2_XS, IQ1_S (and IQ1_M, IQ2_S by llama-quantize's rules) */
  readonly requiresImatrix?: boolean;
  quantize(src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void;
  dequantize(src: Uint8Array, dst: Float32Array): void;
}
