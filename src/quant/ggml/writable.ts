/**
 * The GGML types ggufy can write, as a static list: the plan checks a requested type against it
 * without loading the codecs (index.ts builds every codec module, and with them their tables, on
 * import — a dry run needs none of that). test/quant/writable.test.ts keeps it equal to index.ts
 * `supportedTypes()`, the codec registry itself, in the same order.
 */
import { GGMLType as G } from "./types.js";

export const WRITABLE_TYPES: readonly G[] = [
  G.F32, G.F16, G.BF16, G.Q4_0, G.Q4_1, G.Q5_0, G.Q5_1, G.Q8_0, G.Q2_K, G.Q3_K, G.Q4_K, G.Q5_K, G.Q6_K,
  G.IQ4_NL, G.IQ4_XS, G.TQ1_0, G.TQ2_0, G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ3_XXS, G.IQ3_S, G.IQ1_S, G.IQ1_M,
];

/** A type ggufy has a codec for. */
export function isWritable(t: G): boolean {
  return WRITABLE_TYPES.includes(t);
}
