import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f32RowToBf16, f16RowToF32, bf16RowToF32 } from "../../formats/half.js";
import { f32ToF16Bytes } from "./float-wasm.js";

/** F32 / F16 / BF16 as "block codecs" of block size 1, so the pipeline treats every type alike. */

function u16View(b: Uint8Array, n: number): Uint16Array {
  // byteOffset may be odd inside a larger buffer; copy only in that rare case
  if (b.byteOffset % 2 === 0) return new Uint16Array(b.buffer, b.byteOffset, n);
  return new Uint16Array(b.slice(0, n * 2).buffer);
}

export const f32: BlockCodec = {
  type: GGMLType.F32,
  blockSize: 1,
  typeSize: 4,
  quantize(src, dst) {
    dst.set(new Uint8Array(src.buffer, src.byteOffset, src.length * 4));
  },
  dequantize(src, dst) {
    new Uint8Array(dst.buffer, dst.byteOffset, dst.length * 4).set(src.subarray(0, dst.length * 4));
  },
};

export const f16: BlockCodec = {
  type: GGMLType.F16,
  blockSize: 1,
  typeSize: 2,
  quantize(src, dst) {
    // WebAssembly SIMD (float-wasm.ts; f32RowToF16 is its reference and fallback)
    f32ToF16Bytes(src, dst.subarray(0, src.length * 2));
  },
  dequantize(src, dst) {
    f16RowToF32(u16View(src, dst.length), dst);
  },
};

export const bf16: BlockCodec = {
  type: GGMLType.BF16,
  blockSize: 1,
  typeSize: 2,
  quantize(src, dst) {
    if (dst.byteOffset % 2 === 0) f32RowToBf16(src, new Uint16Array(dst.buffer, dst.byteOffset, src.length));
    else {
      const tmp = new Uint16Array(src.length);
      f32RowToBf16(src, tmp);
      dst.set(new Uint8Array(tmp.buffer));
    }
  },
  dequantize(src, dst) {
    bf16RowToF32(u16View(src, dst.length), dst);
  },
};
