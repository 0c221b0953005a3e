import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";

// PLACEHOLDER: replaced by the bit-exact implementation.
export const tq1_0: BlockCodec = {
  type: GGMLType.TQ1_0, blockSize: 0, typeSize: 0,
  quantize() { throw new Error("TQ1_0 not implemented yet"); },
  dequantize() { throw new Error("TQ1_0 not implemented yet"); },
};
export const tq2_0: BlockCodec = {
  type: GGMLType.TQ2_0, blockSize: 0, typeSize: 0,
  quantize() { throw new Error("TQ2_0 not implemented yet"); },
  dequantize() { throw new Error("TQ2_0 not implemented yet"); },
};
