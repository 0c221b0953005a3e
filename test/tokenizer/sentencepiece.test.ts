import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { testData } from "../../fixtures/paths.js";
import { loadVocab, vocabToKvs, parseSentencePieceModel, TokenType } from "../../src/tokenizer/index.js";
import { ProtoReader, fieldInt32 } from "../../src/tokenizer/protobuf.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { isGgufyError } from "../../src/errors.js";
import { copyInto, tempDir } from "./support.js";

const LLAMA2 = testData("llama2-tokenizer-llama2c");
const STORIES = testData("tinyllamas-stories260K");
const STORIES_HF = testData("tinyllamas-stories260K", "derived-hf-llama");
const SPM_REF = testData("llama.cpp-vocab", "ggml-vocab-llama-spm.gguf");

/** llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, bytes. */
function readLlama2cTokenizer(file: string, n: number): { pieces: Buffer[]; scores: Float32Array } {
  const b = fs.readFileSync(file);
  let off = 4;
  const pieces: Buffer[] = [];
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    scores[i] = b.readFloatLE(off);
    const len = b.readInt32LE(off + 4);
    pieces.push(b.subarray(off + 8, off + 8 + len));
    off += 8 + len;
  }
  assert.equal(off, b.length, `${file}: ${n} tokens do not fill the file`);
  return { pieces, scores };
}

/** What llama2.c's tokenizer.py writes for a piece: ▁ → space, BOS/EOS wrapped in newlines. */
function llama2cText(piece: string, id: number): Buffer {
  let t = piece;
  if (id === 1) t = "\n<s>\n";
  else if (id === 2) t = "\n</s>\n";
  return Buffer.from(t.replaceAll("\u2581", " "), "utf8");
}

async function refMetadata(file: string): Promise<Record<string, unknown>> {
  const { metadata } = await gguf(file, { allowLocalFile: true });
  return metadata as unknown as Record<string, unknown>;
}

test("Llama 2 tokenizer.model gives llama.cpp's own converted vocab (ggml-vocab-llama-spm.gguf): tokens, scores, types", async () => {
  const v = await loadVocab(LLAMA2);
  const ref = await refMetadata(SPM_REF);
  const tokens = ref["tokenizer.ggml.tokens"] as string[];
  const scores = ref["tokenizer.ggml.scores"] as number[];
  const types = ref["tokenizer.ggml.token_type"] as number[];
  assert.equal(v.model, ref["tokenizer.ggml.model"]);
  assert.equal(v.pre, ref["tokenizer.ggml.pre"]);
  assert.equal(v.tokens.length, 32000);
  assert.equal(tokens.length, 32000);
  // @huggingface/gguf decodes strings with a BOM-stripping TextDecoder, so the piece that is exactly
  // U+FEFF (id 30143) reads back as "": check that one against the file's bytes instead
  const raw = fs.readFileSync(SPM_REF);
  const bomPiece = Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 0xef, 0xbb, 0xbf]);
  let diffs = 0;
  for (let i = 0; i < 32000; i++) {
    const refTok = tokens[i] === "" && v.tokens[i] === "\ufeff" && raw.includes(bomPiece) ? "\ufeff" : tokens[i];
    if (v.tokens[i] !== refTok || v.scores![i] !== Math.fround(scores[i]!) || v.tokenTypes[i] !== types[i]) {
      if (++diffs < 5) assert.fail(`id ${i}: ours ${JSON.stringify(v.tokens[i])} ${v.scores![i]} ${v.tokenTypes[i]}, llama.cpp ${JSON.stringify(tokens[i])} ${scores[i]} ${types[i]}`);
    }
  }
  // sanity on what the reference holds: <unk> UNKNOWN, <s> </s> CONTROL, 256 BYTE pieces, the rest NORMAL
  const count = (t: TokenType) => v.tokenTypes.reduce((n, x) => n + (x === t ? 1 : 0), 0);
  assert.deepEqual([count(TokenType.UNKNOWN), count(TokenType.CONTROL), count(TokenType.BYTE), count(TokenType.NORMAL)], [1, 2, 256, 31741]);
});

test("Llama 2 tokenizer.model agrees with llama2.c's independent export (tokenizer.bin): pieces and scores", () => {
  const model = parseSentencePieceModel(fs.readFileSync(path.join(LLAMA2, "tokenizer.model")));
  const bin = readLlama2cTokenizer(path.join(LLAMA2, "tokenizer.bin"), 32000);
  assert.equal(model.pieces.length, 32000);
  for (let i = 0; i < 32000; i++) {
    assert.equal(Math.fround(model.pieces[i]!.score), bin.scores[i], `score of id ${i}`);
    assert.ok(llama2cText(model.pieces[i]!.piece, i).equals(bin.pieces[i]!), `piece ${i}`);
  }
  assert.equal(model.trainerSpec.modelType, 2); // BPE
  assert.equal(model.trainerSpec.byteFallback, true);
  assert.deepEqual([model.trainerSpec.unkId ?? 0, model.trainerSpec.bosId ?? 1, model.trainerSpec.eosId ?? 2], [0, 1, 2]);
});

test("Llama-2 HF folder (tokenizer.json added tokens + tokenizer_config): special ids and add flags in the reference's order", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  copyInto(LLAMA2, dir, ["tokenizer.model"]);
  // the fields SpecialVocab reads from meta-llama/Llama-2-7b-hf's tokenizer_config.json / tokenizer.json
  const tok = (content: string) => ({ __type: "AddedToken", content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: tok("<s>"), eos_token: tok("</s>"), pad_token: null, unk_token: tok("<unk>"), tokenizer_class: "LlamaTokenizer" }));
  fs.writeFileSync(
    path.join(dir, "tokenizer.json"),
    JSON.stringify({ added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })) }),
  );
  const v = await loadVocab(dir);
  const ref = await refMetadata(SPM_REF);
  const ours = vocabToKvs(v);
  const refKeys = Object.keys(ref).filter((k) => k.startsWith("tokenizer."));
  assert.deepEqual(ours.map((k) => k.key), refKeys);
  for (const k of ours) {
    if (k.value.type === GGUFValueType.ARRAY) continue;
    const r = ref[k.key];
    assert.equal(typeof r === "bigint" ? Number(r) : r, k.value.value, k.key);
  }
});

test("stories260K tok512: 512 pieces, <0xXX> byte pieces typed BYTE, scores equal llama2.c's tok512.bin", async () => {
  const warnings: string[] = [];
  const v = await loadVocab(STORIES_HF, { warn: (m) => warnings.push(m) });
  assert.equal(v.model, "llama");
  assert.equal(v.tokens.length, 512);
  assert.deepEqual(v.tokens.slice(0, 3), ["<unk>", "<s>", "</s>"]);
  assert.deepEqual(Array.from(v.tokenTypes.slice(0, 3)), [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]);
  for (let b = 0; b < 256; b++) {
    assert.equal(v.tokens[3 + b], `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    assert.equal(v.tokenTypes[3 + b], TokenType.BYTE);
  }
  for (let i = 259; i < 512; i++) assert.equal(v.tokenTypes[i], TokenType.NORMAL, `id ${i}`);
  const bin = readLlama2cTokenizer(path.join(STORIES, "tok512.bin"), 512);
  for (let i = 0; i < 512; i++) {
    assert.equal(v.scores![i], bin.scores[i], `score ${i}`);
    assert.ok(llama2cText(v.tokens[i]!, i).equals(bin.pieces[i]!), `piece ${i}`);
  }
  // derived-hf-llama's tokenizer.model is a byte copy of tok512.model
  assert.deepEqual(fs.readFileSync(path.join(STORIES, "tok512.model")), fs.readFileSync(path.join(STORIES_HF, "tokenizer.model")));
  // no tokenizer.json: tokenizer_config's "<s>" strings resolve nowhere; config.json gives bos 1 / eos 2
  assert.deepEqual(v.special, { bos: 1, eos: 2 });
  assert.deepEqual([v.addBos, v.addEos], [true, false]);
  const kvs = vocabToKvs(v);
  assert.deepEqual(
    kvs.map((k) => [k.key, k.value.type === GGUFValueType.ARRAY ? `${k.value.itemType}[]` : k.value.type]),
    [
      ["tokenizer.ggml.model", GGUFValueType.STRING],
      ["tokenizer.ggml.pre", GGUFValueType.STRING],
      ["tokenizer.ggml.tokens", `${GGUFValueType.STRING}[]`],
      ["tokenizer.ggml.scores", `${GGUFValueType.FLOAT32}[]`],
      ["tokenizer.ggml.token_type", `${GGUFValueType.INT32}[]`],
      ["tokenizer.ggml.bos_token_id", GGUFValueType.UINT32],
      ["tokenizer.ggml.eos_token_id", GGUFValueType.UINT32],
      ["tokenizer.ggml.add_bos_token", GGUFValueType.BOOL],
      ["tokenizer.ggml.add_eos_token", GGUFValueType.BOOL],
    ],
  );
  assert.deepEqual(warnings, []);
});

test("vocab_size above the piece count pads with [PAD{id}] (UNUSED, score -10000); below it drops pieces with a warning", async () => {
  const big = await loadVocab(STORIES_HF, { vocabSize: 520 });
  assert.equal(big.tokens.length, 520);
  for (let i = 512; i < 520; i++) {
    assert.equal(big.tokens[i], `[PAD${i}]`);
    assert.equal(big.tokenTypes[i], TokenType.UNUSED);
    assert.equal(big.scores![i], -10000);
  }
  const warnings: string[] = [];
  const small = await loadVocab(STORIES_HF, { vocabSize: 500, warn: (m) => warnings.push(m) });
  assert.equal(small.tokens.length, 500);
  assert.match(warnings.join("\n"), /ignoring pieces from id 500/);
  // the config's vocab_size is used when no explicit size is given
  const cfg = JSON.parse(fs.readFileSync(path.join(STORIES_HF, "config.json"), "utf8")) as Record<string, unknown>;
  assert.equal((await loadVocab(STORIES_HF, { config: { ...cfg, vocab_size: 516 } })).tokens.length, 516);
  assert.equal((await loadVocab(STORIES_HF, { config: { ...cfg, vocab_size: 400, text_config: { vocab_size: 514 } } })).tokens.length, 514);
});

test("added_tokens.json and added_tokens_decoder follow _create_vocab_sentencepiece", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  copyInto(STORIES_HF, dir, ["tokenizer.model", "config.json"]);
  fs.writeFileSync(path.join(dir, "added_tokens.json"), JSON.stringify({ "<extra>": 512, "<late>": 600 }));
  fs.writeFileSync(
    path.join(dir, "tokenizer_config.json"),
    JSON.stringify({
      bos_token: "<s>",
      eos_token: "</s>",
      added_tokens_decoder: {
        "1": { content: "<s>", special: true },
        "300": { content: "\u2581hello\u2581world", special: false },
        "513": { content: "<|tool|>", special: false },
        "514": { content: "<unused7>", special: false },
        "515": { content: "\u2581plain", special: false },
      },
    }),
  );
  const warnings: string[] = [];
  const v = await loadVocab(dir, { vocabSize: 520, warn: (m) => warnings.push(m) });
  assert.equal(v.tokens[512], "<extra>");
  assert.equal(v.tokenTypes[512], TokenType.USER_DEFINED);
  assert.equal(v.scores![512], -1000);
  // special → CONTROL (and the piece's score is replaced by -1000)
  assert.deepEqual([v.tokens[1], v.tokenTypes[1], v.scores![1]], ["<s>", TokenType.CONTROL, -1000]);
  // not special, not special-looking → USER_DEFINED with ▁ → space, replacing the piece (warned)
  assert.deepEqual([v.tokens[300], v.tokenTypes[300]], [" hello world", TokenType.USER_DEFINED]);
  assert.match(warnings.join("\n"), /replacing token 300/);
  // special-looking texts are CONTROL even when not flagged (<|…|>, <unused…>), and keep ▁
  assert.deepEqual([v.tokenTypes[513], v.tokenTypes[514]], [TokenType.CONTROL, TokenType.CONTROL]);
  assert.deepEqual([v.tokens[515], v.tokenTypes[515]], [" plain", TokenType.USER_DEFINED]);
  // out-of-range ids are skipped with a warning
  assert.match(warnings.join("\n"), /ignoring token 600/);
  assert.equal(v.tokens.length, 520);
  assert.equal(v.tokens[519], "[PAD519]");
  // no tokenizer.json: ggufy resolves "<s>"/"</s>" against the added tokens it read (<s> → 1); config.json gives eos
  assert.deepEqual(v.special, { bos: 1, eos: 2 });
  assert.deepEqual(v.specialOrder, ["bos", "eos"]);
});

test("a malformed or inconsistent tokenizer.model is E_TOKENIZER naming the file", async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const good = fs.readFileSync(path.join(STORIES_HF, "tokenizer.model"));
  const file = path.join(dir, "tokenizer.model");
  const expectErr = async (bytes: Uint8Array, re: RegExp) => {
    fs.writeFileSync(file, bytes);
    await assert.rejects(loadVocab(dir), (e: unknown) => isGgufyError(e) && e.code === "E_TOKENIZER" && e.file === file && re.test(e.detail));
  };
  await expectErr(good.subarray(0, good.length - 3), /not a SentencePiece model/);
  await expectErr(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), /runs past the end/);
  await expectErr(new Uint8Array([]), /no pieces/);
  // two pieces with the same text: "a" twice (piece { 1: "a", 3: NORMAL }), plus an unknown piece
  const piece = (s: string, type: number) => {
    const b = Buffer.from(s, "utf8");
    return [0x0a, 2 + b.length + 2, 0x0a, b.length, ...b, 0x18, type];
  };
  await expectErr(new Uint8Array([...piece("<unk>", 2), ...piece("a", 1), ...piece("a", 1)]), /token id 2: piece 'a' is already defined as id 1/);
  await expectErr(new Uint8Array([...piece("a", 1)]), /no UNKNOWN piece/);
  await expectErr(new Uint8Array([...piece("<unk>", 2), ...piece("<0x1>", 6)]), /byte piece/);
  // a minimal valid model parses
  fs.writeFileSync(file, new Uint8Array([...piece("<unk>", 2), ...piece("\u2581a", 1)]));
  const v = await loadVocab(dir);
  assert.deepEqual(v.tokens, ["<unk>", "\u2581a"]);
});

test("protobuf reader: varints, negative int32, bounds", () => {
  // field 3 varint -1 (10-byte two's complement), field 4 varint 300
  const buf = new Uint8Array([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x20, 0xac, 0x02]);
  const fields = [...new ProtoReader(buf).fields()];
  assert.deepEqual(fields.map((f) => [f.no, fieldInt32(f)]), [[3, -1], [4, 300]]);
  assert.throws(() => [...new ProtoReader(new Uint8Array([0x18, 0x80])).fields()], /truncated varint/);
  assert.throws(() => [...new ProtoReader(new Uint8Array([0x1b])).fields()], /unsupported wire type 3/);
});
