import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const iq4_nl: BlockCodec = {
  type: GGMLType.IQ4_NL, blockSize: 0, typeSize: 0,
  quantize() { throw new Error("IQ4_NL not implemented yet"); },
  dequantize() { throw new Error("IQ4_NL not implemented yet"); },
};
export const iq4_xs: BlockCodec = {
  type: GGMLType.IQ4_XS, blockSize: 0, typeSize: 0,
  quantize() { throw new Error("IQ4_XS not implemented yet"); },
  dequantize() { throw new Error("IQ4_XS not implemented yet"); },
};
