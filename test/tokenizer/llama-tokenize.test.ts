/**
 * The vocabularies ggufy builds, written as vocab-only GGUFs and loaded by llama.cpp itself
 * (node-llama-cpp 3.21.1): llama.cpp must accept them and tokenize its own test strings
 * (models/ggml-vocab-*.gguf.inp) into exactly the ids its test expects (.out).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { testData } from "../../fixtures/paths.js";
import { loadVocab } from "../../src/tokenizer/index.js";
import { readVocabTests } from "./support.js";
import { withVocabModel } from "./llama-vocab.js";

const VOCAB_TESTS = testData("llama.cpp-vocab");

function compare(name: string, tests: { text: string; ids: number[] }[], got: number[][]): void {
  const bad = tests.flatMap((t, i) => (JSON.stringify(got[i]) === JSON.stringify(t.ids) ? [] : [`${JSON.stringify(t.text)}: llama.cpp ${JSON.stringify(got[i])}, expected ${JSON.stringify(t.ids)}`]));
  assert.deepEqual(bad, [], `${name}: ${bad.length} of ${tests.length} differ`);
}

test("Qwen2 vocab from MiniCPM-V 2.6's files: llama.cpp loads it, tokenizes its qwen2 test set as expected and parses the special tokens", async () => {
  const cfg = JSON.parse(fs.readFileSync(testData("minicpm-v-2_6", "rkllm-llm-extract", "config.json"), "utf8")) as Record<string, unknown>;
  const v = await loadVocab(testData("minicpm-v-2_6"), { arch: "qwen2", config: cfg });
  const tests = readVocabTests(path.join(VOCAB_TESTS, "ggml-vocab-qwen2.gguf.inp"), path.join(VOCAB_TESTS, "ggml-vocab-qwen2.gguf.out"));
  assert.equal(tests.length, 46);
  await withVocabModel(v, "qwen2", (model) => {
    compare("qwen2", tests, tests.map((t) => model.tokenize(t.text, false).map(Number)));
    assert.deepEqual(model.tokenize("<|im_start|>user\n<image></image><unk><|im_end|>", true).map(Number), [151644, 872, 198, 151646, 151647, 128244, 151645]);
    assert.equal(Number(model.tokens.bos), 151644);
    assert.equal(Number(model.tokens.eos), 151645);
  });
});

test("Llama 2 SentencePiece vocab: llama.cpp loads it and tokenizes its llama-spm test set as expected", async () => {
  const v = await loadVocab(testData("llama2-tokenizer-llama2c"), { config: { vocab_size: 32000, bos_token_id: 1, eos_token_id: 2 } });
  const tests = readVocabTests(path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.inp"), path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.out"));
  await withVocabModel(v, "llama", (model) => compare("llama-spm", tests, tests.map((t) => model.tokenize(t.text, false).map(Number))));
});
