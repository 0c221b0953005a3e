/**
 * A SentencePiece BPE model as Hugging Face's fast tokenizer stores it (tokenizer.json: `model.type`
 * "BPE" with `byte_fallback`, `▁` for spaces — Llama 2 and its fine-tunes, Mistral v0.1–v0.3,
 * Gemma) → the piece table `tokenizer.model` holds (piece, score, type), so that ggufy writes the
 * same `llama` vocabulary from either file.
 *
 * llama.cpp's converter does not do this: without tokenizer.model, `LlamaModel.set_vocab` falls back
 * to `_set_vocab_llama_hf` (gguf-py/gguf/vocab.py `LlamaHfVocab`), which writes the placeholder score
 * -1000 for every token and types `<unk>` CONTROL; with equal scores llama.cpp's SentencePiece
 * tokenizer (src/llama-vocab.cpp `llm_tokenizer_spm`) merges left to right instead of by rank.
 *
 * What tokenizer.json keeps and how the scores come back:
 *  - ids and piece texts: `model.vocab` (same ids as tokenizer.model);
 *  - types: `model.unk_token` → UNKNOWN; `<0xXX>` pieces → BYTE; `added_tokens` flagged special →
 *    CONTROL, other added tokens → USER_DEFINED (transformers' converters add SentencePiece's
 *    control / user-defined pieces as added tokens); everything else NORMAL;
 *  - scores: sentencepiece's BPE trainer (bpe_model_trainer.cc) gives the k-th trained piece score
 *    -k, meta pieces (unknown, control, user-defined, byte) 0. transformers' converter
 *    (convert_slow_tokenizer.py `SentencePieceExtractor.extract`) writes the merges sorted by the
 *    score of the merged piece, highest first (stable in id order). So merges whose merged piece ids
 *    rise are in rank order; where that order first breaks, the pieces from there on scored below
 *    every ranked piece. Llama 2 and Mistral give exactly those pieces — the runs of `▁`, and `▁`
 *    itself, the run of length one — the score -1e9 in their tokenizer.model; ggufy writes the same.
 *    Checked against Llama 2's tokenizer.model (test/tokenizer/spm-json.test.ts) and Mistral v0.2's
 *    (ollama's converter expectation).
 */
import { GgufyError } from "../errors.js";
import { isInt, isObject, type Json, type JsonObject } from "./files.js";
import { truthy } from "./common.js";
import { SpmPieceType, type SpmModel, type SpmPiece } from "./sentencepiece.js";

/** Score Llama 2's and Mistral's tokenizer.model give the pieces ranked below all trained ones. */
export const SPM_LOW_SCORE = -1e9;

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

function hasType(node: Json | undefined, key: string, type: string): boolean {
  if (!isObject(node)) return false;
  if (node["type"] === type) return true;
  const list = node[key];
  return Array.isArray(list) && list.some((x) => hasType(x, key, type));
}

/**
 * True for a tokenizer.json that is a SentencePiece BPE model (the shape `LlamaHfVocab` accepts: BPE
 * with byte_fallback and a `Sequence` decoder — Gemma's too — or a Metaspace decoder), false for
 * byte-level BPE.
 */
export function isSentencePieceTokenizerJson(tj: JsonObject): boolean {
  const model = tj["model"];
  if (!isObject(model) || model["type"] !== "BPE" || model["byte_fallback"] !== true) return false;
  const dec = tj["decoder"];
  if (hasType(tj["pre_tokenizer"], "pretokenizers", "ByteLevel") || hasType(dec, "decoders", "ByteLevel")) return false;
  // transformers' Llama/Gemma converters write a Sequence (Replace ▁, ByteFallback, Fuse[, Strip]);
  // some files have a bare Metaspace decoder
  return isObject(dec) && (dec["type"] === "Sequence" || dec["type"] === "Metaspace");
}

/**
 * Whether the tokenizer puts `▁` before the text (SentencePiece's add_dummy_prefix): a `Prepend("▁")`
 * normalizer (transformers' legacy Llama/Mistral files) or a `Metaspace` pre-tokenizer whose
 * prepend_scheme is not "never" (newer files). Gemma's has neither.
 */
export function spmJsonAddsSpacePrefix(tj: JsonObject): boolean {
  const prepends = (n: Json | undefined): boolean => {
    if (!isObject(n)) return false;
    if (n["type"] === "Prepend") return n["prepend"] === "\u2581";
    const list = n["normalizers"];
    return Array.isArray(list) && list.some(prepends);
  };
  const metaspace = (p: Json | undefined): boolean => {
    if (!isObject(p)) return false;
    if (p["type"] === "Metaspace") {
      const scheme = p["prepend_scheme"];
      if (scheme === undefined) return p["add_prefix_space"] !== false;
      return scheme !== "never";
    }
    const list = p["pretokenizers"];
    return Array.isArray(list) && list.some(metaspace);
  };
  return prepends(tj["normalizer"]) || metaspace(tj["pre_tokenizer"]);
}

function mergedPiece(m: Json, i: number, file: string): string {
  if (typeof m === "string") {
    const sp = m.indexOf(" ", 1);
    if (sp < 0) throw new GgufyError("E_TOKENIZER", `model.merges[${i}] '${m}' has no separating space`, { file });
    return m.slice(0, sp) + m.slice(sp + 1);
  }
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return m[0] + m[1];
  throw new GgufyError("E_TOKENIZER", `model.merges[${i}] is neither "a b" nor a pair of strings`, { file });
}

/** tokenizer.json `added_tokens` whose ids lie past `model.vocab` (not SentencePiece pieces). */
export function addedTokensPastVocab(tj: JsonObject): { id: number; content: string; special: boolean }[] {
  const model = tj["model"];
  const n = isObject(model) && isObject(model["vocab"]) ? Object.keys(model["vocab"]).length : 0;
  const at = tj["added_tokens"];
  if (!Array.isArray(at)) return [];
  return at.flatMap((a) => (isObject(a) && isInt(a["id"]) && a["id"] >= n && typeof a["content"] === "string" ? [{ id: a["id"], content: a["content"], special: truthy(a["special"]) }] : []));
}

/** The tokenizer.model piece table a SentencePiece-style tokenizer.json stands for. */
export function spmModelFromTokenizerJson(tj: JsonObject, file: string): SpmModel {
  const model = tj["model"];
  if (!isObject(model) || !isObject(model["vocab"])) throw new GgufyError("E_TOKENIZER", "tokenizer.json has no model.vocab", { file });
  const vocab = model["vocab"];
  const n = Object.keys(vocab).length;
  const texts: (string | undefined)[] = new Array<string | undefined>(n);
  for (const [piece, id] of Object.entries(vocab)) {
    if (!isInt(id) || id < 0 || id >= n) {
      throw new GgufyError("E_TOKENIZER", `model.vocab: '${piece}' has id ${JSON.stringify(id)}; a SentencePiece vocabulary has ids 0…${n - 1}`, { file });
    }
    if (texts[id] !== undefined) throw new GgufyError("E_TOKENIZER", `model.vocab: id ${id} is both '${texts[id]}' and '${piece}'`, { file });
    if (piece === "") throw new GgufyError("E_TOKENIZER", `model.vocab: id ${id} is an empty piece`, { file });
    texts[id] = piece;
  }
  const types = new Array<SpmPieceType>(n).fill(SpmPieceType.NORMAL);
  const at = tj["added_tokens"];
  if (at !== undefined && !Array.isArray(at)) throw new GgufyError("E_TOKENIZER", "added_tokens is not a list", { file });
  for (const [i, a] of (at ?? []).entries()) {
    if (!isObject(a) || !isInt(a["id"]) || typeof a["content"] !== "string") {
      throw new GgufyError("E_TOKENIZER", `added_tokens[${i}] needs an integer id and a string content`, { file });
    }
    const id = a["id"];
    // an added token outside model.vocab is not a SentencePiece piece; the added-token overlay
    // (tokenizer_config.json added_tokens_decoder) places it
    if (id < 0 || id >= n) continue;
    if (texts[id] !== a["content"]) {
      throw new GgufyError("E_TOKENIZER", `added_tokens[${i}]: id ${id} is '${a["content"]}' but model.vocab has '${texts[id]}' there`, { file });
    }
    types[id] = truthy(a["special"]) ? SpmPieceType.CONTROL : SpmPieceType.USER_DEFINED;
  }
  const unk = model["unk_token"];
  if (typeof unk === "string") {
    const id = vocab[unk];
    if (!isInt(id)) throw new GgufyError("E_TOKENIZER", `model.unk_token '${unk}' is not in model.vocab`, { file });
    types[id] = SpmPieceType.UNKNOWN;
  }
  for (let id = 0; id < n; id++) if (types[id] === SpmPieceType.NORMAL && BYTE_PIECE.test(texts[id]!)) types[id] = SpmPieceType.BYTE;
  if (!types.includes(SpmPieceType.UNKNOWN)) throw new GgufyError("E_TOKENIZER", "model.unk_token is missing: a SentencePiece model has an unknown piece", { file });

  // scores: rank among trained (NORMAL) pieces, then the low block read off the merge order
  const scores = new Float64Array(n);
  let rank = 0;
  for (let id = 0; id < n; id++) if (types[id] === SpmPieceType.NORMAL) scores[id] = -rank++;
  const merges = model["merges"];
  if (merges !== undefined && !Array.isArray(merges)) throw new GgufyError("E_TOKENIZER", "model.merges is not a list", { file });
  const low: number[] = [];
  let prev = -1;
  let broken = false;
  const seen = new Set<number>();
  for (const [i, m] of (merges ?? []).entries()) {
    const piece = mergedPiece(m, i, file);
    const id = vocab[piece];
    if (!isInt(id)) throw new GgufyError("E_TOKENIZER", `model.merges[${i}] makes '${piece}', which is not in model.vocab`, { file });
    // only trained pieces are ranked (an added/control piece the converter also listed scores 0)
    if (seen.has(id) || types[id] !== SpmPieceType.NORMAL) continue;
    seen.add(id);
    if (!broken && id < prev) broken = true;
    if (broken) low.push(id);
    prev = id;
  }
  if (low.length > 0) {
    for (const id of low) scores[id] = SPM_LOW_SCORE;
    // the block's runs of one character: that character alone belongs with them
    const chars = new Set(low.map((id) => [...new Set(texts[id]!)].join("")));
    if (chars.size === 1) {
      const c = [...chars][0]!;
      const id = vocab[c];
      if ([...c].length === 1 && isInt(id) && types[id] === SpmPieceType.NORMAL) scores[id] = SPM_LOW_SCORE;
    }
  }

  const pieces: SpmPiece[] = texts.map((piece, id) => ({ piece: piece!, score: scores[id]!, type: types[id]! }));
  return { pieces, trainerSpec: { modelType: 2, vocabSize: n, byteFallback: true }, normalizerSpec: { addDummyPrefix: spmJsonAddsSpacePrefix(tj) } };
}
