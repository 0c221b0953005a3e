import type { GGMLType } from "./types.js";

/**
 * One block family's quantizer and dequantizer, as pure functions over whole rows.
 * `quantize` reads `src.length` floats (a multiple of blockSize; may span several rows, the
 * no-imatrix reference paths are block-local) and writes `src.length / blockSize * typeSize`
 * bytes into `dst` starting at dst[0]. `dequantize` is the inverse shape-wise.
 * Implementations must be bit-exact with ggml's ggml_quantize_chunk (imatrix = NULL) and to_float.
 */
export interface BlockCodec {
  readonly type: GGMLType;
  readonly blockSize: number;
  readonly typeSize: number;
  quantize(src: Float32Array, dst: Uint8Array): void;
  dequantize(src: Uint8Array, dst: Float32Array): void;
}
