import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q6_k: BlockCodec = {
  type: GGMLType.Q6_K,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q6_K quantize not implemented yet"); },
  dequantize() { throw new Error("Q6_K dequantize not implemented yet"); },
};
