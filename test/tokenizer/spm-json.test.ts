/**
 * SentencePiece-style tokenizer.json (BPE with byte_fallback: Llama 2 fine-tunes, Mistral v0.x) →
 * the same `llama` vocabulary tokenizer.model gives.
 * Truths: ollama's converter expectation for Mistral-7B-Instruct-v0.2 (sha256 of the tokens, scores
 * and token types it read from Mistral's tokenizer.model); Llama 2's tokenizer.model and llama.cpp's
 * own ggml-vocab-llama-spm.gguf; llama.cpp tokenizing; transformers.js (@lenml/tokenizers) tokenizing
 * the same tokenizer.json.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { TokenizerLoader } from "@lenml/tokenizers";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, parseSentencePieceModel, spmModelFromTokenizerJson, spmJsonAddsSpacePrefix, isSentencePieceTokenizerJson, TokenType, type GGUFVocab } from "../../src/tokenizer/index.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { isGgufyError } from "../../src/errors.js";
import { copyInto, goJsonIntsSha256, goJsonStringsSha256, readVocabTests, tempDir } from "./support.js";
import { differences, tokenizeAll, withVocabModel } from "./llama-vocab.js";

const MISTRAL = testData("hf-configs-resaved", "Mistral-7B-Instruct-v0.2");
const LLAMA2 = testData("llama2-tokenizer-llama2c");
const SPM_REF = testData("llama.cpp-vocab", "ggml-vocab-llama-spm.gguf");
const VOCAB_TESTS = testData("llama.cpp-vocab");

const readJson = (f: string) => JSON.parse(fs.readFileSync(f, "utf8")) as Record<string, unknown>;

/** sha256 of Go's json.Marshal of a []float32 whose values are all integers (as these scores are). */
function goJsonIntegralFloatsSha256(list: ArrayLike<number>): string {
  const parts: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const x = Math.fround(list[i]!);
    assert.ok(Number.isInteger(x), `score ${i} = ${x} is not integral`);
    parts.push(String(x));
  }
  return crypto.createHash("sha256").update(`[${parts.join(",")}]`).digest("hex");
}

/** Test strings: llama.cpp's tokenizer test set plus whitespace runs (where the low-scored ▁ pieces decide). */
function corpus(): string[] {
  const texts = readVocabTests(path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.inp"), path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.out")).map((t) => t.text);
  texts.push("The quick brown fox jumps over the lazy dog.", "def f(x):\n    return x  +  1\n\n\n", "a" + " ".repeat(7) + "b" + " ".repeat(20) + "c", "Numbers 1234567 and émigrés naïve café — “quotes”");
  return texts.filter((t) => t.length > 0 && !/^\s|\s$/.test(t)); // leading/trailing-space handling differs by design (legacy Llama)
}

test("Mistral v0.2 tokenizer.json alone: the piece table is its tokenizer.model's (ollama's sha256 of tokens, scores and types)", () => {
  const file = path.join(MISTRAL, "tokenizer.json");
  const m = spmModelFromTokenizerJson(readJson(file) as never, file);
  const expect = readJson(testData("ollama-convert-reference", "Mistral-7B-Instruct-v0.2.json")) as Record<string, string>;
  assert.equal(m.pieces.length, 32000);
  assert.equal(goJsonStringsSha256(m.pieces.map((p) => p.piece)), expect["tokenizer.ggml.tokens"]);
  assert.equal(goJsonIntsSha256(m.pieces.map((p) => p.type)), expect["tokenizer.ggml.token_type"]);
  assert.equal(goJsonIntegralFloatsSha256(m.pieces.map((p) => p.score)), expect["tokenizer.ggml.scores"]);
  // what makes the scores: rank among trained pieces, and -1e9 for the ▁ runs the merges rank last
  assert.deepEqual(m.pieces.slice(259, 262).map((p) => [p.piece, p.score]), [["\u2581\u2581", -1e9], ["\u2581\u2581\u2581\u2581", -1e9], ["\u2581t", -2]]);
  const low = m.pieces.filter((p) => p.score === -1e9).map((p) => p.piece);
  assert.ok(low.every((p) => /^\u2581+$/.test(p)) && low.includes("\u2581"), low.join(" "));
  assert.equal(low.length, 15);
  // llama.cpp's own converter (LlamaHfVocab) writes -1000 for every score: that is not Mistral's vocabulary
  assert.notEqual(goJsonIntegralFloatsSha256(new Array<number>(32000).fill(-1000)), expect["tokenizer.ggml.scores"]);
});

test("Mistral v0.2 folder without tokenizer.model: llama vocab, special ids and flags as ollama's expectation; KVs in the converter's order", async () => {
  const v = await loadVocab(MISTRAL, { arch: "MistralForCausalLM" });
  const expect = readJson(testData("ollama-convert-reference", "Mistral-7B-Instruct-v0.2.json")) as Record<string, string>;
  assert.equal(v.model, expect["tokenizer.ggml.model"]);
  assert.equal(v.pre, "default");
  assert.deepEqual(
    [v.special.bos, v.special.eos, v.special.unknown, v.addBos, v.addEos].map(String),
    ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"].map((k) => expect[k]),
  );
  // tokenizer_config.json added_tokens_decoder lists <unk> <s> </s>: as _create_vocab_sentencepiece does
  // with a tokenizer.model and this tokenizer_config, they become CONTROL with score -1000
  assert.deepEqual(Array.from(v.tokenTypes.slice(0, 4)), [TokenType.CONTROL, TokenType.CONTROL, TokenType.CONTROL, TokenType.BYTE]);
  assert.deepEqual(Array.from(v.scores!.slice(0, 4)), [-1000, -1000, -1000, 0]);
  assert.equal(v.addSpacePrefix, undefined); // Prepend("▁"): llama.cpp's default (true) is right
  assert.equal(v.chatTemplate, (readJson(path.join(MISTRAL, "tokenizer_config.json")) as { chat_template: string }).chat_template);
  assert.deepEqual(
    vocabToKvs(v).map((k) => k.key),
    ["model", "pre", "tokens", "scores", "token_type", "bos_token_id", "eos_token_id", "unknown_token_id", "add_bos_token", "add_sep_token", "add_eos_token"].map((k) => `tokenizer.ggml.${k}`).concat(["tokenizer.chat_template"]),
  );
});

test("Mistral v0.2 tokenizer.json vocab in llama.cpp tokenizes like transformers.js does with the same tokenizer.json; llama.cpp's placeholder scores do not", async () => {
  const hf = TokenizerLoader.fromPreTrained({ tokenizerJSON: readJson(path.join(MISTRAL, "tokenizer.json")), tokenizerConfig: readJson(path.join(MISTRAL, "tokenizer_config.json")) });
  const texts = corpus();
  const want = texts.map((t) => Array.from(hf.encode(t, { add_special_tokens: false }) as number[]));
  const v = await loadVocab(MISTRAL, { arch: "llama" });
  const got = await withVocabModel(v, "llama", (model) => tokenizeAll(model, texts));
  assert.deepEqual(differences(texts, got, want, ["llama.cpp", "transformers.js"]), []);
  // the vocabulary llama.cpp's converter writes from this folder (LlamaHfVocab: every score -1000,
  // <unk> <s> </s> CONTROL, <0xXX> BYTE) tokenizes differently
  const placeholder: GGUFVocab = { ...v, scores: new Float32Array(v.tokens.length).fill(-1000) };
  const got2 = await withVocabModel(placeholder, "llama", (model) => tokenizeAll(model, texts));
  const broken = differences(texts, got2, want);
  assert.ok(broken.length > 0, "placeholder scores should change some tokenizations");
});

/**
 * A tokenizer.json the way transformers' LlamaConverter writes one from a tokenizer.model
 * (convert_slow_tokenizer.py: `SentencePieceExtractor.extract` / `generate_merges` — every split of
 * every piece into two vocabulary pieces, sorted by the merged piece's score, highest first, ties in
 * vocabulary order — and `<unk>` `<s>` `</s>` as special added tokens). The non-model parts are
 * Mistral's file, which transformers wrote with the same converter.
 */
function llama2TokenizerJson(): Record<string, unknown> {
  const model = parseSentencePieceModel(fs.readFileSync(path.join(LLAMA2, "tokenizer.model")));
  const vocab: Record<string, number> = {};
  model.pieces.forEach((p, id) => (vocab[p.piece] = id));
  const merges: { l: string; r: string; score: number; order: number }[] = [];
  for (const p of model.pieces) {
    const chars = Array.from(p.piece);
    const local: { l: string; r: string }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join("");
      const r = chars.slice(i).join("");
      if (l in vocab && r in vocab) local.push({ l, r });
    }
    local.sort((a, b) => vocab[a.l]! - vocab[b.l]! || vocab[a.r]! - vocab[b.r]!);
    for (const x of local) merges.push({ ...x, score: p.score, order: merges.length });
  }
  merges.sort((a, b) => b.score - a.score || a.order - b.order);
  const base = readJson(path.join(MISTRAL, "tokenizer.json"));
  const baseModel = base["model"] as Record<string, unknown>;
  return { ...base, model: { ...baseModel, vocab, merges: merges.map((m) => `${m.l} ${m.r}`) } };
}

test("Llama 2: a tokenizer.json made from tokenizer.model gives back tokenizer.model's vocabulary (= llama.cpp's ggml-vocab-llama-spm.gguf), and llama.cpp tokenizes its llama-spm set with it", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(llama2TokenizerJson()));
  // the tokenizer_config fields of meta-llama/Llama-2-7b-hf that SpecialVocab reads
  const tok = (content: string) => ({ __type: "AddedToken", content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: tok("<s>"), eos_token: tok("</s>"), pad_token: null, unk_token: tok("<unk>"), tokenizer_class: "LlamaTokenizer" }));
  const fromJson = await loadVocab(dir, { arch: "llama" });
  const fromModel = await loadVocab(LLAMA2, { config: { vocab_size: 32000 } });
  let diffs = 0;
  for (let i = 0; i < 32000; i++) {
    if (fromJson.tokens[i] !== fromModel.tokens[i] || fromJson.scores![i] !== fromModel.scores![i] || fromJson.tokenTypes[i] !== fromModel.tokenTypes[i]) {
      if (diffs++ < 5) assert.fail(`id ${i}: from tokenizer.json ${JSON.stringify(fromJson.tokens[i])} ${fromJson.scores![i]} ${fromJson.tokenTypes[i]}, tokenizer.model ${JSON.stringify(fromModel.tokens[i])} ${fromModel.scores![i]} ${fromModel.tokenTypes[i]}`);
    }
  }
  // every tokenizer.* KV equals llama.cpp's reference file (arrays included) — except add_sep_token
  // false, which today's SpecialVocab derives from the TemplateProcessing pair template and the older
  // converter that wrote the reference did not
  const { metadata } = await gguf(SPM_REF, { allowLocalFile: true });
  const ref = metadata as unknown as Record<string, unknown>;
  const all = vocabToKvs(fromJson);
  assert.equal(all.find((k) => k.key === "tokenizer.ggml.add_sep_token")?.value.value, false);
  const ours = all.filter((k) => k.key !== "tokenizer.ggml.add_sep_token");
  assert.deepEqual(ours.map((k) => k.key), Object.keys(ref).filter((k) => k.startsWith("tokenizer.")));
  for (const k of ours) {
    const r = ref[k.key];
    if (k.value.type !== GGUFValueType.ARRAY) assert.equal(typeof r === "bigint" ? Number(r) : r, k.value.value, k.key);
    else if (k.key === "tokenizer.ggml.scores") assert.deepEqual(Array.from(k.value.value as Float32Array), (r as number[]).map(Math.fround), k.key);
    else if (k.key === "tokenizer.ggml.token_type") assert.deepEqual(Array.from(k.value.value as Int32Array), r, k.key);
  }
  const tests = readVocabTests(path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.inp"), path.join(VOCAB_TESTS, "ggml-vocab-llama-spm.gguf.out"));
  const texts = tests.map((x) => x.text);
  const got = await withVocabModel(fromJson, "llama", (model) => tokenizeAll(model, texts));
  assert.deepEqual(differences(texts, got, tests.map((x) => x.ids)), []);
});

test("a SentencePiece tokenizer.json that contradicts itself is E_TOKENIZER naming the file", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  copyInto(MISTRAL, dir, ["tokenizer_config.json"]);
  const base = readJson(path.join(MISTRAL, "tokenizer.json"));
  const model = base["model"] as Record<string, unknown>;
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...base, model: { ...model, unk_token: "<nope>" } }, /unk_token '<nope>' is not in model.vocab/],
    [{ ...base, model: { ...model, merges: ["\u2581 t", "x y z"] } }, /makes 'xy z'|not in model.vocab/],
    [{ ...base, added_tokens: [{ id: 1, content: "<bos>", special: true }] }, /id 1 is '<bos>' but model.vocab has '<s>'/],
    [{ ...base, model: { ...model, vocab: { ...(model["vocab"] as object), extra: 40000 } } }, /'extra' has id 40000/],
  ];
  for (const [tj, re] of cases) {
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tj));
    await assert.rejects(loadVocab(dir, { arch: "llama" }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && e.file === path.join(dir, "tokenizer.json") && re.test(e.detail), String(re));
  }
  // a SentencePiece vocabulary has no BPE pre-tokenizer to override
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(base));
  await assert.rejects(loadVocab(dir, { arch: "llama", pre: "llama-bpe" }), (e: unknown) => isGgufyError(e) && e.code === "E_USAGE");
});

test("SentencePiece tokenizer.json shapes: which are SentencePiece, and whether they prepend ▁ (add_space_prefix)", () => {
  const base = readJson(path.join(MISTRAL, "tokenizer.json")) as Record<string, unknown>;
  const model = base["model"] as Record<string, unknown>;
  assert.equal(isSentencePieceTokenizerJson(base as never), true);
  assert.equal(isSentencePieceTokenizerJson({ ...base, model: { ...model, byte_fallback: false } } as never), false);
  assert.equal(isSentencePieceTokenizerJson({ ...base, decoder: { type: "ByteLevel" } } as never), false);
  assert.equal(isSentencePieceTokenizerJson({ ...base, decoder: { type: "Metaspace", replacement: "\u2581" } } as never), true);
  assert.equal(spmJsonAddsSpacePrefix(base as never), true); // Prepend("▁") normalizer
  const metaspace = (extra: Record<string, unknown>) => ({ ...base, normalizer: null, pre_tokenizer: { type: "Metaspace", replacement: "\u2581", split: false, ...extra } });
  assert.equal(spmJsonAddsSpacePrefix(metaspace({ prepend_scheme: "first" }) as never), true);
  assert.equal(spmJsonAddsSpacePrefix(metaspace({ prepend_scheme: "never" }) as never), false);
  assert.equal(spmJsonAddsSpacePrefix(metaspace({ add_prefix_space: false }) as never), false);
  assert.equal(spmJsonAddsSpacePrefix({ ...base, normalizer: { type: "Replace", pattern: { String: " " }, content: "\u2581" } } as never), false); // Gemma's
});

test("a SentencePiece tokenizer.json without the ▁ prefix writes add_space_prefix false; tokenizer_config add_prefix_space is written first for llama", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const base = readJson(path.join(MISTRAL, "tokenizer.json")) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ ...base, normalizer: { type: "Replace", pattern: { String: " " }, content: "\u2581" } }));
  const v = await loadVocab(dir, { arch: "llama", config: {} });
  assert.deepEqual([v.addSpacePrefix, v.addSpacePrefixPosition], [false, "last"]);
  const kvs = vocabToKvs(v);
  assert.deepEqual([kvs[kvs.length - 1]!.key, kvs[kvs.length - 1]!.value.value], ["tokenizer.ggml.add_space_prefix", false]);
  // LlamaModel.set_vocab writes tokenizer_config.json add_prefix_space before any tokenizer KV
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ add_prefix_space: true }));
  const v2 = await loadVocab(dir, { arch: "llama", config: {} });
  assert.deepEqual([vocabToKvs(v2)[0]!.key, vocabToKvs(v2)[0]!.value.value], ["tokenizer.ggml.add_space_prefix", true]);
});

test("tokenizer.json added tokens past model.vocab get their ids (unless tokenizer_config.json's added_tokens_decoder places them)", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const base = readJson(path.join(MISTRAL, "tokenizer.json")) as Record<string, unknown>;
  const added = [...(base["added_tokens"] as object[]), { id: 32000, content: "<|im_start|>", special: false }, { id: 32001, content: "\u2581hello", special: false }];
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ ...base, added_tokens: added }));
  const v = await loadVocab(dir, { arch: "llama", config: { vocab_size: 32004 } });
  assert.deepEqual([v.tokens[32000], v.tokenTypes[32000], v.scores![32000]], ["<|im_start|>", TokenType.CONTROL, -1000]); // looks special
  assert.deepEqual([v.tokens[32001], v.tokenTypes[32001]], [" hello", TokenType.USER_DEFINED]);
  assert.deepEqual([v.tokens[32002], v.tokenTypes[32002]], ["[PAD32002]", TokenType.UNUSED]);
  // tokenizer_config.json's entry wins
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ added_tokens_decoder: { "32001": { content: "<x>", special: true } } }));
  const v2 = await loadVocab(dir, { arch: "llama", config: { vocab_size: 32004 } });
  assert.deepEqual([v2.tokens[32001], v2.tokenTypes[32001]], ["<x>", TokenType.CONTROL]);
  await assert.rejects(loadVocab(dir, { arch: "llama", config: { vocab_size: 32000 } }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && /added token 32000 '<\|im_start\|>' is outside vocab_size 32000/.test(e.detail));
});
