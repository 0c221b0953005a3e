/**
 * The vocab.json scanner (src/tokenizer/json-vocab.ts) against JSON.parse: on the real 151k Qwen2 vocab.json
 * and on hand-made files it gives exactly JSON.parse's keys and ids in order — or declines (undefined), and
 * then loadVocab's JSON.parse path gives the vocabulary; each declined form must give the same tokens as the
 * plain file it stands for.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { testData } from "../../fixtures/paths.js";
import { scanVocabJson } from "../../src/tokenizer/json-vocab.js";
import { loadVocab, vocabToKvs } from "../../src/tokenizer/index.js";
import { copyInto, tempDir } from "./support.js";

const MINICPM = testData("minicpm-v-2_6");

function sameAsJsonParse(text: string, what: string): void {
  const s = scanVocabJson(text);
  assert.ok(s, `${what}: scanned`);
  const o = JSON.parse(text) as Record<string, number>;
  const keys = Object.keys(o);
  // (Object.keys lists integer-like keys first, so the pairs are compared by id, not in file order)
  const byId = (pairs: [string, number][]): [string, number][] => pairs.sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1));
  assert.equal(s.tokens.length, keys.length, `${what}: entries`);
  assert.deepEqual(byId(s.tokens.map((t, k) => [t, s.ids[k]!])), byId(keys.map((k) => [k, o[k]!])), `${what}: text → id`);
  const wrong = keys.filter((k) => s.idOf(k) !== o[k]);
  assert.deepEqual(wrong, [], `${what}: idOf of every text`);
  for (const absent of ["", "\u0000", "not-a-token-at-all-xyz", "ĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠ"]) {
    if (!Object.hasOwn(o, absent)) assert.equal(s.idOf(absent), undefined, `${what}: ${JSON.stringify(absent)} is no key`);
  }
}

test("vocab.json scanner = JSON.parse on the real Qwen2 vocab.json (151,643 texts, 2,452 backslash escapes), compact and pretty-printed", () => {
  const text = fs.readFileSync(path.join(MINICPM, "vocab.json"), "utf8");
  assert.ok(text.includes("\\u"), "the real file has \\u escapes");
  sameAsJsonParse(text, "vocab.json");
  assert.equal(scanVocabJson(text)!.tokens.length, 151_643);
  sameAsJsonParse(JSON.stringify(JSON.parse(text), null, 2) + "\n", "pretty-printed");
});

test("vocab.json scanner: escapes, whitespace, empty object — the same as JSON.parse", () => {
  const cases = [
    "{}",
    " \n{ }\r\n",
    '{"a":0}',
    '{"\\"":1,"\\\\":2,"\\/":3,"\\u00e9":4,"\\ud83d\\ude00":5,"\\n\\t\\b\\f\\r":6,"\\ud800":7,"x\\"y":8}',
    '{ "a" : 0 ,\t"b":\n10 , "é😀" : 123456789012345 }',
    '{"__proto__":0,"constructor":1,"toString":2}',
  ];
  for (const c of cases) sameAsJsonParse(c, JSON.stringify(c));
});

test("vocab.json scanner declines what is not the plain form (JSON.parse decides instead)", () => {
  const declined = [
    '{"a":0,"a":1}', // a repeated text: JSON.parse keeps the last id
    '{"a":1.0}',
    '{"a":-1}',
    '{"a":01}',
    '{"a":1e3}',
    '{"a":"1"}',
    '{"a":null}',
    '{"a":[1]}',
    '{"a":{"b":1}}',
    '{"a":1234567890123456}',
    '{"a":0,}',
    '{"a":0',
    '{"a" 0}',
    '\ufeff{"a":0}',
    '{"a\u0001":0}',
    '{"\\x":0}',
    '{"a":0} x',
    '[]',
    '',
  ];
  for (const d of declined) assert.equal(scanVocabJson(d), undefined, JSON.stringify(d));
});

test("loadVocab: a vocab.json the scanner declines (ids written 12.0, 1.2e1) gives the same GGUF vocabulary as the plain file", async () => {
  const { dir, cleanup } = tempDir("ggufy-json-vocab-");
  try {
    copyInto(MINICPM, dir, ["vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json", "generation_config.json"]);
    const plain = await loadVocab(dir, { arch: "qwen2" });
    const vocabFile = path.join(dir, "vocab.json");
    const o = JSON.parse(fs.readFileSync(vocabFile, "utf8")) as Record<string, number>;
    // the same object, every id as a float literal: not the scanner's form, the same JSON value
    fs.writeFileSync(vocabFile, "{" + Object.entries(o).map(([k, v], i) => `${JSON.stringify(k)}:${i % 2 ? `${v}.0` : `${v / 10}e1`}`).join(",") + "}");
    assert.equal(scanVocabJson(fs.readFileSync(vocabFile, "utf8")), undefined);
    const parsed = await loadVocab(dir, { arch: "qwen2" });
    assert.deepEqual(vocabToKvs(parsed), vocabToKvs(plain));
    // a repeated text: JSON.parse's last id wins, so the first id becomes a gap the vocabulary pads
    // (id 151666: past the 23 added tokens at 151643…151665)
    const five = Object.keys(o).find((k) => o[k] === 5)!;
    fs.writeFileSync(vocabFile, JSON.stringify(o).replace(/}$/, `,${JSON.stringify(five)}:151666}`));
    const dup = await loadVocab(dir, { arch: "qwen2", vocabSize: 151_667 });
    assert.equal(dup.tokens[5], "[PAD5]");
    assert.equal(dup.tokens[151_666], five);
  } finally {
    cleanup();
  }
});
