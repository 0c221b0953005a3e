// TEMPORARY stub written by the lead so the tree compiles while the tokenizer work is in progress.
// The engineer who owns src/tokenizer replaces this file entirely (same two exports).
import type { GGUFKV } from "../formats/gguf/types.js";
import type { GGUFVocab } from "./types.js";

export async function loadVocab(_dir: string, _opts: { arch: string; vocabSize?: number; config: Record<string, unknown> }): Promise<GGUFVocab> {
  throw new Error("tokenizer export not implemented yet");
}

export function vocabToKvs(_v: GGUFVocab): GGUFKV[] {
  throw new Error("tokenizer export not implemented yet");
}
