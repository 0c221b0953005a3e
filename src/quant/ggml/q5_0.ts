import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q5_0: BlockCodec = {
  type: GGMLType.Q5_0,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q5_0 quantize not implemented yet"); },
  dequantize() { throw new Error("Q5_0 dequantize not implemented yet"); },
};
