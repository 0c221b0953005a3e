import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q5_1: BlockCodec = {
  type: GGMLType.Q5_1,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q5_1 quantize not implemented yet"); },
  dequantize() { throw new Error("Q5_1 dequantize not implemented yet"); },
};
