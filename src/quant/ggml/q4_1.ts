import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q4_1: BlockCodec = {
  type: GGMLType.Q4_1,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q4_1 quantize not implemented yet"); },
  dequantize() { throw new Error("Q4_1 dequantize not implemented yet"); },
};
