import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q2_k: BlockCodec = {
  type: GGMLType.Q2_K,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q2_K quantize not implemented yet"); },
  dequantize() { throw new Error("Q2_K dequantize not implemented yet"); },
};
