/**
 * SpecialVocab discovery (gguf-py/gguf/vocab.py) on small hand-made folders; each expectation is
 * traced by hand through the Python source of the bundled llama.cpp.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { loadSpecialVocab } from "../../src/tokenizer/special.js";
import { loadVocab, vocabToKvs } from "../../src/tokenizer/index.js";
import { tempDir } from "./support.js";

type Added = { id: number; content: string; special?: boolean };

function folder(dir: string, files: { tokenizer?: Record<string, unknown>; added?: Added[]; config?: Record<string, unknown>; tokenizerConfig?: Record<string, unknown> }): void {
  if (files.tokenizer || files.added) {
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify({ ...(files.tokenizer ?? {}), added_tokens: (files.added ?? []).map((a) => ({ special: true, ...a })) }));
  }
  if (files.tokenizerConfig) fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig));
  if (files.config) fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(files.config));
}

const st = (id: string) => ({ SpecialToken: { id, type_id: 0 } });
const seq = (id: "A" | "B") => ({ Sequence: { id, type_id: 0 } });

test("TemplateProcessing <bos> A / <bos> A <bos> B (Llama 3 style): add_bos true, add_sep false", (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, {
    added: [{ id: 10, content: "<|begin_of_text|>" }, { id: 11, content: "<|end_of_text|>" }, { id: 12, content: "<|eot_id|>" }],
    tokenizer: { post_processor: { type: "Sequence", processors: [{ type: "ByteLevel" }, { type: "TemplateProcessing", single: [st("<|begin_of_text|>"), seq("A")], pair: [st("<|begin_of_text|>"), seq("A"), st("<|begin_of_text|>"), seq("B")] }] } },
    tokenizerConfig: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
    config: { bos_token_id: 10, eos_token_id: [11, 12] },
  });
  const sv = loadSpecialVocab(dir);
  assert.deepEqual(sv.ids, [["bos", 10], ["eos", 12]]);
  assert.deepEqual(sv.add, [["bos", true], ["sep", false]]);
});

test("TemplateProcessing with a trailing special token other than eos: eos moves to it, the old eos becomes eot", (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, {
    added: [{ id: 1, content: "<s>" }, { id: 2, content: "</s>" }, { id: 7, content: "<|im_end|>" }],
    tokenizer: { post_processor: { type: "TemplateProcessing", single: [st("<s>"), seq("A"), st("</s>")], pair: [st("<s>"), seq("A"), st("</s>"), seq("B"), st("</s>")] } },
    tokenizerConfig: { bos_token: "<s>", eos_token: "<|im_end|>", add_eos_token: false },
  });
  const sv = loadSpecialVocab(dir);
  // eos "<|im_end|>" ≠ trailing "</s>": eot_token := "<|im_end|>", eos_token := "</s>", add_eos true,
  // then tokenizer_config's add_eos_token false overrides the value (keeping its place)
  assert.deepEqual(sv.ids, [["bos", 1], ["eos", 2], ["eot", 7]]);
  // pair: A </s> B → middle ["</s>"], which is eos, but special_last is set → add_sep stays false
  assert.deepEqual(sv.add, [["bos", true], ["eos", false], ["sep", false]]);
});

test("RobertaProcessing: add bos/eos/sep true; cls and sep taken from the processor", (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, {
    added: [{ id: 0, content: "<s>" }, { id: 2, content: "</s>" }, { id: 1, content: "<pad>" }],
    tokenizer: { post_processor: { type: "RobertaProcessing", sep: ["</s>", 2], cls: ["<s>", 0] } },
    tokenizerConfig: { bos_token: "<s>", eos_token: "</s>", pad_token: "<pad>" },
  });
  const warnings: string[] = [];
  const sv = loadSpecialVocab(dir, { warn: (m) => warnings.push(m) });
  // cls has no GGUF key: found but dropped with a warning, like the converter
  assert.deepEqual(sv.ids, [["bos", 0], ["eos", 2], ["sep", 2], ["pad", 1]]);
  assert.deepEqual(sv.add, [["bos", true], ["eos", true], ["sep", true]]);
  assert.ok(warnings.some((w) => /special token type cls/.test(w)));
});

test("bos/eos strings resolve only against added tokens, first match wins; config.json fills the rest; text_config too", (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, {
    added: [{ id: 5, content: "<x>" }, { id: 6, content: "<x>" }],
    tokenizerConfig: { bos_token: { content: "<x>", lstrip: false }, eos_token: "not-an-added-token", unk_token: null },
    config: { eos_token_id: 3, text_config: { pad_token_id: 4 }, unk_token_id: -0 },
  });
  const sv = loadSpecialVocab(dir);
  assert.deepEqual(sv.ids, [["bos", 5], ["eos", 3], ["unk", 0], ["pad", 4]]);
  // negative ids are an error; ids at or above n_vocab are skipped
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ eos_token_id: -1 }));
  assert.throws(() => loadSpecialVocab(dir), /invalid value for special token type eos: -1/);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ eos_token_id: 99 }));
  const warnings: string[] = [];
  assert.deepEqual(loadSpecialVocab(dir, { nVocab: 50, warn: (m) => warnings.push(m) }).ids, [["bos", 5]]);
  assert.match(warnings.join("\n"), /id 99 out of range/);
});

test("an empty tokenizer_config.json is ignored (no chat template, no add flags), as Python's truthiness makes it", (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, { added: [{ id: 0, content: "<s>" }], tokenizerConfig: {}, config: { bos_token_id: 0 } });
  fs.writeFileSync(path.join(dir, "chat_template.jinja"), "ignored");
  const sv = loadSpecialVocab(dir);
  assert.equal(sv.chatTemplate, undefined);
  assert.deepEqual(sv.ids, [["bos", 0]]);
});

test("normalizer flags from tokenizer.json (BertNormalizer, Sequence with Lowercase)", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  folder(dir, { tokenizer: { normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Lowercase" }] } } });
  assert.deepEqual([loadSpecialVocab(dir).normalizerLowercase, loadSpecialVocab(dir).normalizerStripAccents], [true, undefined]);
  folder(dir, { tokenizer: { normalizer: { type: "BertNormalizer", lowercase: false, strip_accents: null } } });
  assert.deepEqual([loadSpecialVocab(dir).normalizerLowercase, loadSpecialVocab(dir).normalizerStripAccents], [false, undefined]);
  // and they are written last, as BOOL
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify({ a: 0, b: 1, ab: 2 }));
  fs.writeFileSync(path.join(dir, "merges.txt"), "a b\n");
  fs.rmSync(path.join(dir, "tokenizer.json"));
  const v = await loadVocab(dir, { arch: "qwen2" });
  v.normalizerLowercase = true;
  assert.equal(vocabToKvs(v).at(-1)!.key, "tokenizer.ggml.normalizer.lowercase");
});
