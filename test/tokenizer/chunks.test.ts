/**
 * The BPE loader's long loops run in chunks of 1024 (json-vocab.ts scanEntries / insertTexts, bpe.ts
 * placeIds / baseRanges / firstWithoutSpaceIn, special.ts plainPairRun; a startup measure): files of a few
 * thousand entries with the unusual cases just before, at and after the chunk boundaries give the same
 * result as the paths that do not chunk (merges.txt with CRLF goes through the string functions; vocab.json
 * expectations are built from JSON.parse of the same text).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { loadVocab, TokenType } from "../../src/tokenizer/index.js";
import { readMergesUtf8 } from "../../src/tokenizer/special.js";
import { isGgufyError } from "../../src/errors.js";
import { tempDir } from "./support.js";

/** line or entry numbers around the chunk boundaries (1024, 2048) and at the ends */
const EDGES = new Set([0, 1, 1022, 1023, 1024, 1025, 2047, 2048, 2049, 2999]);

test("merges.txt across chunk boundaries: the LF (byte) path equals the CRLF (string) path, warnings and line numbers included", () => {
  const { dir, cleanup } = tempDir("ggufy-chunks-");
  try {
    const lines = ["#version: 0.2"];
    for (let i = 1; i < 3000; i++) {
      // the odd lines: a malformed one (3 parts), one to strip and re-join, a blank one
      if (EDGES.has(i)) lines.push(i % 3 === 0 ? `m${i} n${i} o${i}` : i % 3 === 1 ? `  p${i}\tq${i} ` : "");
      else lines.push(`a${i} b${i}`);
    }
    const read = (eol: string): { merges: string[]; warnings: string[] } => {
      const file = path.join(dir, "merges.txt");
      fs.writeFileSync(file, lines.join(eol) + eol);
      const warnings: string[] = [];
      return { merges: readMergesUtf8(file, (w) => warnings.push(w)).toArray(), warnings };
    };
    const lf = read("\n");
    const crlf = read("\r\n");
    // (lines 1024 and 2050 are the 3-part ones: line number = index + 1)
    assert.deepEqual(lf.warnings, ["merges.txt: line 1024: entry malformed, ignoring", "merges.txt: line 2050: entry malformed, ignoring"]);
    assert.equal(lf.merges.length, 2999 - 2 - 4); // 2999 lines after the #version one, less the 2 malformed and 4 blank ones
    assert.deepEqual(lf, crlf);
  } finally {
    cleanup();
  }
});

test("vocab.json across chunk boundaries: tokens, types, padding, empty texts and errors as JSON.parse of the file gives them", async (t) => {
  const { dir, cleanup } = tempDir("ggufy-chunks-");
  t.after(cleanup);
  fs.writeFileSync(path.join(dir, "merges.txt"), "a b\n");
  const N = 3000;
  const write = (entries: [string, number][], added: Record<string, { content: string; special: boolean }> = {}): void => {
    fs.writeFileSync(path.join(dir, "vocab.json"), "{" + entries.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(",\n") + "}");
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", added_tokens_decoder: added }));
  };
  /** what the loader must give: JSON.parse's object (the last of repeated keys), the added tokens at their ids, padding */
  const expected = (added: Record<string, { content: string; special: boolean }>): { tokens: string[]; types: number[] } => {
    const o = JSON.parse(fs.readFileSync(path.join(dir, "vocab.json"), "utf8")) as Record<string, number>;
    const tokens: string[] = [];
    const types: number[] = [];
    for (let i = 0; i < N; i++) {
      tokens.push(`[PAD${i}]`);
      types.push(TokenType.UNUSED);
    }
    for (const [k, id] of Object.entries(o)) {
      tokens[id] = k;
      types[id] = TokenType.NORMAL;
    }
    for (const [id, a] of Object.entries(added)) {
      tokens[Number(id)] = a.content;
      types[Number(id)] = a.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    }
    return { tokens, types };
  };
  const base = (): [string, number][] => Array.from({ length: N }, (_, i) => [`t${i}`, i]);

  // gaps (padding), an empty text, escaped texts and added tokens at the edges
  let entries = base().filter(([, id]) => id !== 1024 && id !== 2049);
  entries[1022]![0] = "";
  entries[1023]![0] = 'q"\\/\u00e9';
  entries[2047]![0] = "c\u0001d"; // a \u escape in the file (JSON.stringify writes control characters so)
  const added = { "1025": { content: "<|a|>", special: true }, "2048": { content: "<b>", special: false }, "2999": { content: "<|z|>", special: true } };
  write(entries, added);
  const warnings: string[] = [];
  const v = await loadVocab(dir, { arch: "qwen2", vocabSize: N, warn: (w) => warnings.push(w) });
  const want = expected(added);
  assert.deepEqual(v.tokens, want.tokens);
  assert.deepEqual(Array.from(v.tokenTypes), want.types);
  assert.ok(warnings.some((w) => w === "token id 1022 is empty; llama.cpp will load it as [EMPTY_1022]"), warnings.join("\n"));

  // a repeated key in a later chunk than its first occurrence: the scanner declines, JSON.parse keeps the last
  entries = base();
  entries[2100] = ["t5", 2100];
  write(entries);
  let r = await loadVocab(dir, { arch: "qwen2", vocabSize: N });
  assert.deepEqual(r.tokens, expected({}).tokens);
  assert.deepEqual([r.tokens[5], r.tokens[2100]], ["[PAD5]", "t5"]);
  // the last text of the first chunk, again at the first of the third
  entries = base();
  entries[2048] = ["t1023", 2048];
  write(entries);
  r = await loadVocab(dir, { arch: "qwen2", vocabSize: N });
  assert.deepEqual(r.tokens, expected({}).tokens);
  assert.deepEqual([r.tokens[1023], r.tokens[2048]], ["[PAD1023]", "t1023"]);

  const rejects = async (re: RegExp): Promise<void> =>
    assert.rejects(loadVocab(dir, { arch: "qwen2", vocabSize: N }), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && e.file === path.join(dir, "vocab.json") && re.test(e.detail));
  // an id given twice, the second time in a later chunk
  entries = base();
  entries[2500] = ["x", 1023];
  write(entries);
  await rejects(/^token id 1023 is given to both 't1023' and 'x'$/);
  // the same at the first entry of a chunk
  entries = base();
  entries[2048] = ["y", 0];
  write(entries);
  await rejects(/^token id 0 is given to both 't0' and 'y'$/);
  // a negative id (the scanner declines it; the JSON.parse path checks it) in a later chunk
  entries = base();
  entries[1024] = ["z", -1];
  write(entries);
  await rejects(/^token 'z' has id -1, not a non-negative integer$/);
});
