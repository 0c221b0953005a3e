import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q4_0: BlockCodec = {
  type: GGMLType.Q4_0,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q4_0 quantize not implemented yet"); },
  dequantize() { throw new Error("Q4_0 dequantize not implemented yet"); },
};
