import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const q8_0: BlockCodec = {
  type: GGMLType.Q8_0,
  blockSize: 0,
  typeSize: 0,
  quantize() { throw new Error("Q8_0 quantize not implemented yet"); },
  dequantize() { throw new Error("Q8_0 dequantize not implemented yet"); },
};
