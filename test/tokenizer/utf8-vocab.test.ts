/**
 * The byte form of a BPE vocabulary (vocab.json + merges.txt kept as UTF-8 ranges of the files,
 * formats/gguf/utf8-strings.ts, written into the header from them) against:
 * - the string form of the same vocabulary (the strings read, so that the byte form is dropped): the
 *   same header bytes on the real 151k Qwen2 vocabulary of MiniCPM-V 2.6;
 * - @huggingface/gguf reading that header back: every base token at its JSON.parse id, every merge the
 *   merges.txt line (an independent reader and JSON.parse as the references);
 * - hand-computed merges for a merges.txt with Python's non-ASCII whitespace, near-misses that are not
 *   whitespace (U+200B, U+00A1, U+2030), a `#version` header and both line endings.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, readMergesTxt } from "../../src/tokenizer/index.js";
import { readMergesUtf8 } from "../../src/tokenizer/special.js";
import { encodeGgufHeader } from "../../src/formats/gguf/writer.js";
import { kv } from "../../src/formats/gguf/types.js";
import { copyInto, tempDir } from "./support.js";

const MINICPM = testData("minicpm-v-2_6");
const opts = { arch: "qwen2", vocabSize: 151_666 };

test("byte-held vocabulary: the same header bytes as the strings, on the real Qwen2 vocab.json + merges.txt", async () => {
  const bytes = await loadVocab(MINICPM, opts);
  assert.ok(bytes.tokenBytes && bytes.mergeBytes, "vocab.json + merges.txt load as bytes");
  assert.equal(bytes.tokenBytes.length, 151_666);
  const fromBytes = encodeGgufHeader([kv.str("general.architecture", "qwen2"), ...vocabToKvs(bytes)], []).bytes;
  assert.ok(bytes.tokenBytes, "writing did not decode the tokens");

  const strings = await loadVocab(MINICPM, opts);
  assert.equal(strings.tokens.length, 151_666);
  assert.ok((strings.merges?.length ?? 0) > 150_000);
  assert.equal(strings.tokenBytes, undefined, "reading the tokens drops their byte form");
  assert.equal(strings.mergeBytes, undefined, "reading the merges drops their byte form");
  const fromStrings = encodeGgufHeader([kv.str("general.architecture", "qwen2"), ...vocabToKvs(strings)], []).bytes;
  assert.equal(fromBytes.length, fromStrings.length);
  assert.ok(Buffer.from(fromBytes).equals(Buffer.from(fromStrings)), "header bytes");

  // what is written is what the property shows: a changed token after reading is written as changed
  strings.tokens[5] = "changed";
  const changed = vocabToKvs(strings).find((k) => k.key === "tokenizer.ggml.tokens")!;
  assert.equal((changed.value.value as string[])[5], "changed");
});

test("byte-held vocabulary read back by @huggingface/gguf: tokens at their JSON.parse ids, merges as merges.txt's lines", async () => {
  const v = await loadVocab(MINICPM, opts);
  const { dir, cleanup } = tempDir("ggufy-utf8-vocab-");
  try {
    const file = path.join(dir, "v.gguf");
    fs.writeFileSync(file, encodeGgufHeader([kv.str("general.architecture", "qwen2"), ...vocabToKvs(v)], []).bytes);
    const md = (await gguf(file, { allowLocalFile: true })).metadata as unknown as Record<string, unknown>;
    const tokens = md["tokenizer.ggml.tokens"] as string[];
    const vocab = JSON.parse(fs.readFileSync(path.join(MINICPM, "vocab.json"), "utf8")) as Record<string, number>;
    const wrong = Object.entries(vocab).filter(([t, id]) => tokens[id] !== t);
    assert.deepEqual(wrong.slice(0, 5), [], "every base token at its id");
    assert.equal(Object.keys(vocab).length, 151_643);
    const lines = fs.readFileSync(path.join(MINICPM, "merges.txt"), "utf8").split("\n").filter((l, i) => l !== "" && !(i === 0 && l.startsWith("#")));
    assert.deepEqual(md["tokenizer.ggml.merges"], lines);
  } finally {
    cleanup();
  }
});

test("merges.txt on the bytes: Python's whitespace (U+3000, U+00A0, U+0085, U+2009, U+202F, U+1680, tabs) taken as the converter does, near-misses kept", () => {
  const { dir, cleanup } = tempDir("ggufy-merges-");
  try {
    const lines = [
      "#version: 0.2",
      "Ġ t", // 2: plain
      "a\u3000b", // 3: ideographic space → "a b"
      "  x   y  ", // 4: → "x y"
      "c\u00a0d e", // 5: three parts → malformed
      "\u0085p q", // 6: U+0085 stripped → "p q"
      "solo", // 7: one part → malformed
      "", // 8: blank, skipped
      "m\u2009n", // 9: thin space → "m n"
      "k\u202fl", // 10: → "k l"
      "g\u1680h", // 11: ogham space → "g h"
      "t\tu", // 12: tab → "t u"
      "u\u200bv w", // 13: U+200B is not whitespace: plain
      "¡x ‰y", // 14: U+00A1 (C2 A1) and U+2030 (E2 80 B0) are not whitespace: plain
      "Ä ł", // 15
    ];
    const expected = ["Ġ t", "a b", "x y", "p q", "m n", "k l", "g h", "t u", "u\u200bv w", "¡x ‰y", "Ä ł"];
    for (const eol of ["\n", "\r\n"]) {
      const file = path.join(dir, `merges${eol.length}.txt`);
      fs.writeFileSync(file, lines.join(eol) + eol);
      const warnings: string[] = [];
      const m = readMergesUtf8(file, (w) => warnings.push(w));
      assert.deepEqual(m.toArray(), expected, JSON.stringify(eol));
      assert.deepEqual(warnings, [`${path.basename(file)}: line 5: entry malformed, ignoring`, `${path.basename(file)}: line 7: entry malformed, ignoring`]);
      assert.deepEqual(readMergesTxt(file), expected);
    }
  } finally {
    cleanup();
  }
});

test("a vocabulary directory with the real files copied: byte form and @huggingface/gguf agree after an added-token replacement", async () => {
  // added_tokens.json placing a new text at a base id: the replaced id is written from the added text
  const { dir, cleanup } = tempDir("ggufy-utf8-added-");
  try {
    copyInto(MINICPM, dir, ["vocab.json", "merges.txt", "special_tokens_map.json", "generation_config.json"]);
    fs.writeFileSync(path.join(dir, "added_tokens.json"), JSON.stringify({ "<|new|>": 7, "<|pad|>": 151_643 }));
    const warnings: string[] = [];
    const v = await loadVocab(dir, { arch: "qwen2", vocabSize: 151_645, warn: (w) => warnings.push(w) });
    assert.ok(v.tokenBytes);
    assert.ok(warnings.some((w) => w.includes("token id 7: added token '<|new|>'")), warnings.join("\n"));
    const file = path.join(dir, "v.gguf");
    fs.writeFileSync(file, encodeGgufHeader(vocabToKvs(v), []).bytes);
    const md = (await gguf(file, { allowLocalFile: true })).metadata as unknown as Record<string, unknown>;
    const tokens = md["tokenizer.ggml.tokens"] as string[];
    assert.equal(tokens.length, 151_645);
    assert.equal(tokens[7], "<|new|>");
    assert.equal(tokens[151_643], "<|pad|>");
    assert.equal(tokens[151_644], "[PAD151644]");
    assert.equal(tokens[8], v.tokens[8]);
  } finally {
    cleanup();
  }
});
