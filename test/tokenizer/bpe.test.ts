import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, TokenType, QWEN2_PRE_REGEX, LLAMA3_PRE_REGEX, readMergesTxt, type GGUFVocab } from "../../src/tokenizer/index.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { isGgufyError } from "../../src/errors.js";
import { copyInto, goJsonIntsSha256, goJsonStringsSha256, llamaBundleFile, tempDir } from "./support.js";

const MINICPM = testData("minicpm-v-2_6");
const QWEN25 = testData("hf-configs-resaved", "Qwen2.5-0.5B-Instruct");
const OLLAMA = testData("ollama-convert-reference");

const readJsonFile = (f: string) => JSON.parse(fs.readFileSync(f, "utf8")) as Record<string, unknown>;
const minicpmConfig = () => readJsonFile(path.join(MINICPM, "rkllm-llm-extract", "config.json"));

let minicpmCache: { v: GGUFVocab; warnings: string[] } | undefined;
async function minicpm(): Promise<{ v: GGUFVocab; warnings: string[] }> {
  if (!minicpmCache) {
    const warnings: string[] = [];
    const v = await loadVocab(MINICPM, { arch: "qwen2", config: minicpmConfig(), warn: (m) => warnings.push(m) });
    minicpmCache = { v, warnings };
  }
  return minicpmCache;
}

test("MiniCPM-V 2.6 (vocab.json + merges.txt + tokenizer_config, no tokenizer.json): 151666 tokens, 151387 merges, special ids", async () => {
  const { v, warnings } = await minicpm();
  assert.equal(v.model, "gpt2");
  assert.equal(v.pre, "qwen2");
  assert.equal(v.tokens.length, 151666);
  assert.equal(v.merges!.length, 151387);
  assert.equal(v.scores, undefined);
  // the 23 added tokens at 151643…151665, all special → CONTROL; nothing to pad at vocab_size 151666
  const added = readJsonFile(path.join(MINICPM, "added_tokens.json")) as Record<string, number>;
  assert.equal(Object.keys(added).length, 23);
  for (const [text, id] of Object.entries(added)) {
    assert.equal(v.tokens[id], text);
    assert.equal(v.tokenTypes[id], TokenType.CONTROL);
  }
  assert.ok(!v.tokens.some((t) => t.startsWith("[PAD")));
  // <unk> sits at 128244 in added_tokens_decoder: Qwen2's vocab.json already has a plain "<unk>"
  // token there, so nothing is replaced — the BPE token just becomes a special (CONTROL) one
  const bpe = readJsonFile(path.join(MINICPM, "vocab.json")) as Record<string, number>;
  assert.equal(bpe["<unk>"], 128244);
  assert.equal(v.tokens[128244], "<unk>");
  assert.equal(v.tokenTypes[128244], TokenType.CONTROL);
  assert.ok(!warnings.some((w) => w.includes("replaces")), warnings.join("\n"));
  // everything else is the byte-level vocab, NORMAL (id 0 "!" included: see the report)
  let nonNormal = 0;
  for (let i = 0; i < v.tokens.length; i++) if (v.tokenTypes[i] !== TokenType.NORMAL) nonNormal++;
  assert.equal(nonNormal, 24);
  assert.deepEqual([v.tokens[0], v.tokenTypes[0]], ["!", TokenType.NORMAL]);
  // bos/eos/unk/pad from tokenizer_config.json, in SpecialVocab's order — as published MiniCPM-V 2.6 GGUFs show
  assert.deepEqual(v.special, { bos: 151644, eos: 151645, unknown: 128244, padding: 151643 });
  assert.deepEqual(v.specialOrder, ["bos", "eos", "unknown", "padding"]);
  assert.equal(v.addBos, undefined);
  assert.equal(v.chatTemplate, readJsonFile(path.join(MINICPM, "tokenizer_config.json"))["chat_template"]);
  // mtmd looks these up by text
  for (const t of ["<image>", "</image>", "<slice>", "</slice>", "\u010a"]) assert.ok(v.tokens.includes(t), t);
});

test("MiniCPM-V 2.6: KVs in the converter's write order with llama.cpp's types", async () => {
  const kvs = vocabToKvs((await minicpm()).v);
  const shape = kvs.map((k) => [k.key, k.value.type === GGUFValueType.ARRAY ? `${k.value.itemType}[${k.value.value.length}]` : `${k.value.type}=${String(k.value.value).slice(0, 20)}`]);
  assert.deepEqual(shape, [
    ["tokenizer.ggml.model", `${GGUFValueType.STRING}=gpt2`],
    ["tokenizer.ggml.pre", `${GGUFValueType.STRING}=qwen2`],
    ["tokenizer.ggml.tokens", `${GGUFValueType.STRING}[151666]`],
    ["tokenizer.ggml.token_type", `${GGUFValueType.INT32}[151666]`],
    ["tokenizer.ggml.merges", `${GGUFValueType.STRING}[151387]`],
    ["tokenizer.ggml.bos_token_id", `${GGUFValueType.UINT32}=151644`],
    ["tokenizer.ggml.eos_token_id", `${GGUFValueType.UINT32}=151645`],
    ["tokenizer.ggml.unknown_token_id", `${GGUFValueType.UINT32}=128244`],
    ["tokenizer.ggml.padding_token_id", `${GGUFValueType.UINT32}=151643`],
    ["tokenizer.chat_template", `${GGUFValueType.STRING}={% for message in me`],
  ]);
});

test("strict SpecialVocab (the converter on these exact files): without tokenizer.json only config.json ids are found", async () => {
  const v = await loadVocab(MINICPM, { arch: "qwen2", config: minicpmConfig(), strictSpecialVocab: true });
  assert.deepEqual(v.special, { bos: 151643, eos: 151645 });
  assert.deepEqual(v.specialOrder, ["bos", "eos"]);
});

test("Qwen2 tokens and merges equal llama.cpp's ggml-vocab-qwen2.gguf (bundled with node-llama-cpp)", async (t) => {
  const ref = llamaBundleFile("models/ggml-vocab-qwen2.gguf");
  if (!ref) return t.skip("git or node-llama-cpp's llama.cpp bundle unavailable");
  const { metadata } = await gguf(ref, { allowLocalFile: true });
  const m = metadata as unknown as Record<string, unknown>;
  const tokens = m["tokenizer.ggml.tokens"] as string[];
  const types = m["tokenizer.ggml.token_type"] as number[];
  const merges = m["tokenizer.ggml.merges"] as string[];
  const { v } = await minicpm();
  assert.equal(m["tokenizer.ggml.pre"], v.pre);
  assert.equal(m["tokenizer.ggml.model"], v.model);
  // the reference is Qwen1.5's tokenizer: the same 151643 BPE tokens + <|endoftext|> <|im_start|> <|im_end|>
  for (let i = 0; i < 151646; i++) {
    if (i === 128244) continue; // MiniCPM-V's <unk> replaced this one
    if (v.tokens[i] !== tokens[i] || v.tokenTypes[i] !== types[i]) assert.fail(`id ${i}: ours ${JSON.stringify(v.tokens[i])}/${v.tokenTypes[i]} llama.cpp ${JSON.stringify(tokens[i])}/${types[i]}`);
  }
  assert.deepEqual(v.merges, merges);
  // its padding ([PAD151646]…) was typed USER_DEFINED by the older converter that made it; today's writes UNUSED
  assert.equal(tokens[151646], "[PAD151646]");
  assert.equal(types[151646], TokenType.USER_DEFINED);
});

/** A Qwen2.5-0.5B-Instruct folder: its real config/tokenizer_config/added_tokens + the identical vocab.json/merges.txt. */
function qwen25Dir(dir: string): void {
  copyInto(QWEN25, dir, ["added_tokens.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json"]);
  copyInto(MINICPM, dir, ["vocab.json"]);
  // Qwen2.5's merges.txt is MiniCPM-V's with a "#version: 0.2" first line (PROVENANCE.md)
  fs.writeFileSync(path.join(dir, "merges.txt"), "#version: 0.2\n" + fs.readFileSync(path.join(MINICPM, "merges.txt"), "utf8"));
}

test("Qwen2.5-0.5B-Instruct: tokens, merges and token types hash like ollama's converter expectation (Go json.Marshal + sha256)", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  qwen25Dir(dir);
  const v = await loadVocab(dir, { arch: "Qwen2ForCausalLM" });
  const expect = readJsonFile(path.join(OLLAMA, "Qwen2.5-0.5B-Instruct.json")) as Record<string, string>;
  assert.equal(v.tokens.length, 151936);
  assert.equal(v.pre, expect["tokenizer.ggml.pre"]);
  assert.equal(v.model, expect["tokenizer.ggml.model"]);
  assert.equal(goJsonStringsSha256(v.merges!), expect["tokenizer.ggml.merges"]);
  // ggufy pads like llama.cpp ([PAD{id}], UNUSED); ollama numbers its pads from 0 and types them USER_DEFINED
  const real = 151665;
  assert.equal(v.tokens[real], `[PAD${real}]`);
  assert.equal(v.tokens[151935], "[PAD151935]");
  for (let i = real; i < 151936; i++) assert.equal(v.tokenTypes[i], TokenType.UNUSED);
  const ollamaTokens = [...v.tokens.slice(0, real), ...Array.from({ length: 151936 - real }, (_, i) => `[PAD${i}]`)];
  assert.equal(goJsonStringsSha256(ollamaTokens), expect["tokenizer.ggml.tokens"]);
  // token types: ollama marks added tokens CONTROL only when flagged special (no "looks special"
  // rule), so the non-special <|fim_*|>, <|repo_name|>, <|file_sep|> are USER_DEFINED there and
  // CONTROL here; <tool_call> and </tool_call> are USER_DEFINED in both.
  const cfg = readJsonFile(path.join(QWEN25, "tokenizer_config.json"));
  const decoder = cfg["added_tokens_decoder"] as Record<string, { content: string; special: boolean }>;
  const differ: string[] = [];
  const ollamaTypes = Int32Array.from(v.tokenTypes.subarray(0, real));
  for (const [id, d] of Object.entries(decoder)) {
    const i = Number(id);
    const ollamaType = d.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    if (ollamaType !== v.tokenTypes[i]) differ.push(d.content);
    ollamaTypes[i] = ollamaType;
  }
  assert.deepEqual(differ, ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]);
  assert.equal(goJsonIntsSha256([...ollamaTypes, ...new Array<number>(151936 - real).fill(TokenType.USER_DEFINED)]), expect["tokenizer.ggml.token_type"]);
  // special ids: ollama takes eos/pad from tokenizer_config like SpecialVocab; llama.cpp's converter
  // also reads config.json, which adds bos 151643; add_bos_token false is in tokenizer_config.json
  assert.equal(String(v.special.eos), expect["tokenizer.ggml.eos_token_id"]);
  assert.equal(String(v.special.padding), expect["tokenizer.ggml.padding_token_id"]);
  assert.deepEqual(v.specialOrder, ["eos", "padding", "bos"]);
  assert.equal(v.special.bos, 151643);
  assert.deepEqual([v.addBos, v.addOrder], [false, ["bos"]]);
  assert.equal(v.chatTemplate, fs.readFileSync(testData("chat-templates", "llama.cpp-models-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"), "utf8"));
});

test("Qwen2 pre-tokenizer regexes are the ones ollama identifies by sha256", () => {
  // ollama convert/tokenizer.go: sha256 of the Split regex → pre name
  assert.equal(crypto.createHash("sha256").update(QWEN2_PRE_REGEX).digest("hex"), "1ff7f41064896984db5d1bb6ff64fa4bc29007d08c1b439e505b7392777a319e");
  assert.equal(crypto.createHash("sha256").update(LLAMA3_PRE_REGEX).digest("hex"), "d98f9631be1e9607a9848c26c1f9eac1aa9fc21ac6ba82a2fc0741af9780a48f");
});

/** A tokenizer.json for the Qwen2 files, the way transformers' fast tokenizer saves one. */
function writeTokenizerJson(dir: string, opts: { pairs: boolean; regex?: string; added?: { id: number; content: string; special: boolean }[]; vocab?: Record<string, number>; merges?: string[] }): void {
  const vocab = opts.vocab ?? readJsonFile(path.join(MINICPM, "vocab.json"));
  const merges = opts.merges ?? readMergesTxt(path.join(MINICPM, "merges.txt"));
  const tj = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: (opts.added ?? []).map((a) => ({ ...a, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: opts.regex ?? QWEN2_PRE_REGEX }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: opts.pairs ? merges.map((m) => m.split(" ")) : merges,
    },
  };
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tj));
}

/** A tiny byte-level BPE folder (slow files) for rule tests that do not need the real 151k vocabulary. */
const TINY_VOCAB = { a: 0, b: 1, "\u0120": 2, ab: 3 };
function tinyDir(dir: string, tokenizerConfig: Record<string, unknown> = {}): void {
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(TINY_VOCAB));
  fs.writeFileSync(path.join(dir, "merges.txt"), "#version: 0.2\na b\n");
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", eos_token: "<|e|>", added_tokens_decoder: { "4": { content: "<|e|>", special: true } }, ...tokenizerConfig }));
}

test("tokenizer.json path (both merges formats) gives the same vocabulary as vocab.json + merges.txt", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  qwen25Dir(dir);
  const slow = await loadVocab(dir, { arch: "qwen2" });
  const decoder = readJsonFile(path.join(QWEN25, "tokenizer_config.json"))["added_tokens_decoder"] as Record<string, { content: string; special: boolean }>;
  const added = Object.entries(decoder).map(([id, d]) => ({ id: Number(id), content: d.content, special: d.special }));
  for (const pairs of [false, true]) {
    writeTokenizerJson(dir, { pairs, added });
    const fast = await loadVocab(dir, { arch: "qwen2" });
    assert.deepEqual(fast.tokens, slow.tokens);
    assert.deepEqual(fast.tokenTypes, slow.tokenTypes);
    assert.deepEqual(fast.merges, slow.merges);
    assert.deepEqual([fast.special, fast.specialOrder, fast.pre], [slow.special, slow.specialOrder, slow.pre]);
  }
});

test("tokenizer.json merge pairs whose parts hold a literal space get it re-encoded as U+0120", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  tinyDir(dir);
  writeTokenizerJson(dir, { pairs: true, vocab: TINY_VOCAB, merges: ["a b"], added: [{ id: 4, content: "<|e|>", special: true }] });
  const tj = readJsonFile(path.join(dir, "tokenizer.json")) as { model: { merges: string[][] } };
  tj.model.merges.push(["a b", "c"]);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tj));
  const v = await loadVocab(dir, { arch: "qwen2" });
  assert.deepEqual(v.merges, ["a b", "a\u0120b c"]);
  // the tokenizer.json path resolves tokenizer_config's eos against its added_tokens
  assert.deepEqual(v.special, { eos: 4 });
  assert.equal(v.tokenTypes[4], TokenType.CONTROL);
});

test("pre-tokenizer: regex decides (Llama 3's regex without ignore_merges → dbrx); unknown regex or tokenizer is an error; override is checked", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  tinyDir(dir);
  const tiny = { vocab: TINY_VOCAB, merges: ["a b"], added: [{ id: 4, content: "<|e|>", special: true }] };
  writeTokenizerJson(dir, { pairs: false, regex: QWEN2_PRE_REGEX, ...tiny });
  assert.equal((await loadVocab(dir, { arch: "llama" })).pre, "qwen2");
  writeTokenizerJson(dir, { pairs: false, regex: LLAMA3_PRE_REGEX, ...tiny });
  // Llama 3's regex without model.ignore_merges is llama.cpp's "dbrx" (with it: "llama-bpe", families.test.ts)
  assert.equal((await loadVocab(dir, { arch: "llama" })).pre, "dbrx");
  writeTokenizerJson(dir, { pairs: false, regex: "\\p{N}+|\\s+", ...tiny });
  await assert.rejects(loadVocab(dir, { arch: "qwen2" }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && /unrecognized BPE pre-tokenizer/.test(e.detail));
  assert.equal((await loadVocab(dir, { arch: "qwen2", pre: "deepseek-r1-qwen" })).pre, "deepseek-r1-qwen");
  await assert.rejects(loadVocab(dir, { pre: "qwen-2" }), (e: unknown) => isGgufyError(e) && e.code === "E_USAGE");
  // slow files with a class/architecture ggufy cannot place
  fs.rmSync(path.join(dir, "tokenizer.json"));
  const cfg = readJsonFile(path.join(dir, "tokenizer_config.json"));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, tokenizer_class: "SomeTokenizer" }));
  await assert.rejects(loadVocab(dir, { arch: "llama" }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && /cannot tell the BPE pre-tokenizer/.test(e.detail));
  assert.equal((await loadVocab(dir, { arch: "MiniCPMV" })).pre, "qwen2");
});

test("merges.txt: optional #version line, blank and malformed lines skipped, CRLF", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = path.join(dir, "merges.txt");
  fs.writeFileSync(f, "#version: 0.2\r\nĠ t\r\n\r\na b c\r\n  h e  \r\nsingle\n");
  const warnings: string[] = [];
  assert.deepEqual(readMergesTxt(f, (m) => warnings.push(m)), ["Ġ t", "h e"]);
  assert.equal(warnings.length, 2);
  fs.writeFileSync(f, "i n\nĠ t\n");
  assert.deepEqual(readMergesTxt(f), ["i n", "Ġ t"]);
});

test("chat templates: named list (default + others), chat_template.jinja fallback, tokenizer_config wins", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  tinyDir(dir);
  const cfg = readJsonFile(path.join(dir, "tokenizer_config.json"));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: [{ name: "tool use", template: "T" }, { name: "default", template: "D" }, { name: "rag", template: "R" }] }));
  const v = await loadVocab(dir, { arch: "qwen2" });
  assert.equal(v.chatTemplate, "D");
  assert.deepEqual(v.chatTemplates, [{ name: "tool_use", template: "T" }, { name: "rag", template: "R" }]);
  const keys = vocabToKvs(v).map((k) => k.key).filter((k) => k.startsWith("tokenizer.chat"));
  assert.deepEqual(keys, ["tokenizer.chat_template.tool_use", "tokenizer.chat_template.rag", "tokenizer.chat_templates", "tokenizer.chat_template"]);
  // no chat_template key → chat_template.jinja
  const { chat_template: _drop, ...noTemplate } = cfg;
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(noTemplate));
  fs.writeFileSync(path.join(dir, "chat_template.jinja"), "J");
  assert.equal((await loadVocab(dir, { arch: "qwen2" })).chatTemplate, "J");
  // tokenizer_config.json's chat_template wins over the .jinja file
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: "C" }));
  assert.equal((await loadVocab(dir, { arch: "qwen2" })).chatTemplate, "C");
});

test("inconsistent BPE files are E_TOKENIZER naming the file and token id", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const check = async (re: RegExp, file: string, opts: Parameters<typeof loadVocab>[1] = { arch: "qwen2" }) =>
    assert.rejects(loadVocab(dir, opts), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && e.file === path.join(dir, file) && re.test(e.detail));
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify({ a: 0, b: 1, "Ġ": 2 }));
  fs.writeFileSync(path.join(dir, "merges.txt"), "a b\n");
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "5": { content: "<x>", special: true } } }));
  // an added id at or above vocab_size
  await check(/token id 5 .* not below vocab_size 4/, "tokenizer_config.json", { arch: "qwen2", vocabSize: 4 });
  // fine at vocab_size 6: id 3 and 4 are padding
  const v = await loadVocab(dir, { arch: "qwen2", vocabSize: 6 });
  assert.deepEqual(v.tokens, ["a", "b", "Ġ", "[PAD3]", "[PAD4]", "<x>"]);
  // an added token at an id that holds another BPE token replaces it (ids as written), with a warning
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "1": { content: "<y>", special: false } } }));
  const warnings: string[] = [];
  const r = await loadVocab(dir, { arch: "qwen2", warn: (m) => warnings.push(m) });
  assert.deepEqual([r.tokens, Array.from(r.tokenTypes)], [["a", "<y>", "Ġ"], [TokenType.NORMAL, TokenType.USER_DEFINED, TokenType.NORMAL]]);
  assert.ok(warnings.some((w) => /token id 1: added token '<y>' .* replaces 'b'/.test(w)), warnings.join("\n"));
  // an added token that duplicates a BPE token under another id
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "3": { content: "a", special: true } } }));
  await check(/token id 3: added token 'a' is already token 0/, "tokenizer_config.json");
  // two texts for one id in vocab.json
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify({ a: 0, b: 0 }));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer" }));
  await check(/token id 0 is given to both 'a' and 'b'/, "vocab.json");
  // repeated token texts (llama.cpp needs unique texts): a padding text that is a BPE token, a
  // non-special added token whose ▁ becomes a space like a BPE token's, two added tokens that end up equal
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify({ "[PAD4]": 0, " x": 1, "Ġ": 2 }));
  fs.writeFileSync(path.join(dir, "merges.txt"), "a b\n");
  await check(/token id 4: text '\[PAD4\]' is also token 0; llama\.cpp requires unique token texts/, "vocab.json", { arch: "qwen2", vocabSize: 5 });
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "3": { content: "\u2581x", special: false } } }));
  await check(/token id 3: text ' x' is also token 1;/, "tokenizer_config.json");
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "3": { content: " y", special: false }, "4": { content: "\u2581y", special: false } } }));
  await check(/token id 4: text ' y' is also token 3;/, "tokenizer_config.json");
  // no repeat: a padding text nobody else has, an added token equal to the BPE token at its own id
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: { "1": { content: " x", special: false } } }));
  assert.deepEqual((await loadVocab(dir, { arch: "qwen2", vocabSize: 4 })).tokens, ["[PAD4]", " x", "Ġ", "[PAD3]"]);
  // invalid JSON
  fs.writeFileSync(path.join(dir, "vocab.json"), '{"a": 0,, }');
  await check(/not valid JSON/, "vocab.json");
  // no merges at all
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify({ a: 0 }));
  fs.rmSync(path.join(dir, "merges.txt"));
  await assert.rejects(loadVocab(dir, { arch: "qwen2" }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && /no BPE merges/.test(e.detail));
  // nothing to read
  fs.rmSync(path.join(dir, "vocab.json"));
  await assert.rejects(loadVocab(dir), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER");
});
