import type { BlockCodec } from "./codec.js";
import { GGMLType, typeName } from "./types.js";
import { f32, f16, bf16 } from "./float.js";
import { q4_0 } from "./q4_0.js";
import { q4_1 } from "./q4_1.js";
import { q5_0 } from "./q5_0.js";
import { q5_1 } from "./q5_1.js";
import { q8_0 } from "./q8_0.js";
import { q2_k } from "./q2_k.js";
import { q3_k } from "./q3_k.js";
import { q4_k } from "./q4_k.js";
import { q5_k } from "./q5_k.js";
import { q6_k } from "./q6_k.js";
import { iq4_nl, iq4_xs } from "./iq4.js";
import { tq1_0, tq2_0 } from "./tq.js";
import { withImportance } from "./weighted.js";
import { iq2_xxs, iq2_xs, iq2_s } from "./iq2.js";
import { iq3_xxs, iq3_s } from "./iq3.js";
import { iq1_s, iq1_m } from "./iq1.js";

export type { BlockCodec } from "./codec.js";
export * from "./types.js";

const CODECS: ReadonlyMap<GGMLType, BlockCodec> = new Map(
  [f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, tq1_0, tq2_0, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m].map((c) => [c.type, c] as const),
);

/** Types ggufy can write. */
export function supportedTypes(): GGMLType[] {
  return [...CODECS.keys()];
}

const WITH_IMPORTANCE = new Map<GGMLType, BlockCodec>();

/**
 * The codec of a type. Its `quantize(src, dst, qw)` takes the importance vector (llama-quantize
 * --imatrix): types whose weighted path lives in weighted.ts are wrapped once here; codecs that
 * implement `qw` themselves, or ignore it as ggml does, are returned as they are.
 */
export function codecFor(t: GGMLType): BlockCodec {
  const c = CODECS.get(t);
  if (!c) throw new Error(`ggml type ${typeName(t)} is not supported for writing`);
  let w = WITH_IMPORTANCE.get(t);
  if (!w) WITH_IMPORTANCE.set(t, (w = withImportance(c)));
  return w;
}
