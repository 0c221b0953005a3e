import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q5_k: BlockCodec = {
  type: GGMLType.Q5_K,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q5_K quantize not implemented yet"); },
  dequantize() { throw new Error("Q5_K dequantize not implemented yet"); },
};
