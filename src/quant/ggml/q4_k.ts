import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q4_k: BlockCodec = {
  type: GGMLType.Q4_K,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q4_K quantize not implemented yet"); },
  dequantize() { throw new Error("Q4_K dequantize not implemented yet"); },
};
