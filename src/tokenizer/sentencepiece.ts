/**
 * SentencePiece `tokenizer.model` → GGUF "llama" vocabulary, the way llama.cpp's converter builds it
 * (`TextModel._create_vocab_sentencepiece` + `_set_vocab_sentencepiece` in conversion/base.py of the
 * llama.cpp bundled with node-llama-cpp 3.21.1), without Python or the sentencepiece library.
 *
 * ModelProto (sentencepiece_model.proto), the fields read here:
 *   1 pieces (repeated SentencePiece { 1 piece: string, 2 score: float, 3 type: enum = NORMAL })
 *   2 trainer_spec { 3 model_type, 4 vocab_size, 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id }
 *   3 normalizer_spec { 1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces }
 */
import { GgufyError } from "../errors.js";
import { TokenType, type GGUFVocab } from "./types.js";
import { fieldBool, fieldFloat, fieldInt32, fieldString, ProtobufError, ProtoReader, subReader } from "./protobuf.js";
import { fileIn, isInt, isObject, maybeJsonObject, readBytes, readJson, type JsonObject } from "./files.js";
import { loadSpecialVocab, type AddedTokenRef } from "./special.js";
import { applySpecialVocab, looksSpecial, textHparams, truthy } from "./common.js";

/** sentencepiece's ModelProto.SentencePiece.Type (same numbers as llama.cpp's token types) */
export enum SpmPieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SpmPiece {
  piece: string;
  score: number;
  type: SpmPieceType;
}

export interface SpmTrainerSpec {
  /** 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR */
  modelType?: number;
  vocabSize?: number;
  byteFallback?: boolean;
  unkId?: number;
  bosId?: number;
  eosId?: number;
  padId?: number;
}

export interface SpmNormalizerSpec {
  name?: string;
  addDummyPrefix?: boolean;
  removeExtraWhitespaces?: boolean;
  escapeWhitespaces?: boolean;
}

export interface SpmModel {
  pieces: SpmPiece[];
  trainerSpec: SpmTrainerSpec;
  normalizerSpec: SpmNormalizerSpec;
}

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

/**
 * Parse a serialized ModelProto and check what SentencePieceProcessor checks when it loads one:
 * non-empty, unique pieces, exactly one UNKNOWN piece, byte pieces spelled `<0xXX>`.
 */
export function parseSentencePieceModel(bytes: Uint8Array, file = "tokenizer.model"): SpmModel {
  const pieces: SpmPiece[] = [];
  const trainerSpec: SpmTrainerSpec = {};
  const normalizerSpec: SpmNormalizerSpec = {};
  try {
    for (const f of new ProtoReader(bytes).fields()) {
      if (f.no === 1) {
        let piece: string | undefined;
        let score = 0;
        let type = SpmPieceType.NORMAL;
        for (const g of subReader(f).fields()) {
          if (g.no === 1) piece = fieldString(g);
          else if (g.no === 2) score = fieldFloat(g);
          else if (g.no === 3) type = fieldInt32(g);
        }
        const id = pieces.length;
        if (piece === undefined || piece === "") throw new GgufyError("E_TOKENIZER", `piece ${id} is empty`, { file });
        if (!(type >= SpmPieceType.NORMAL && type <= SpmPieceType.BYTE)) throw new GgufyError("E_TOKENIZER", `piece ${id} '${piece}' has unknown type ${type}`, { file });
        pieces.push({ piece, score, type });
      } else if (f.no === 2) {
        for (const g of subReader(f).fields()) {
          if (g.no === 3) trainerSpec.modelType = fieldInt32(g);
          else if (g.no === 4) trainerSpec.vocabSize = fieldInt32(g);
          else if (g.no === 35) trainerSpec.byteFallback = fieldBool(g);
          else if (g.no === 40) trainerSpec.unkId = fieldInt32(g);
          else if (g.no === 41) trainerSpec.bosId = fieldInt32(g);
          else if (g.no === 42) trainerSpec.eosId = fieldInt32(g);
          else if (g.no === 43) trainerSpec.padId = fieldInt32(g);
        }
      } else if (f.no === 3) {
        for (const g of subReader(f).fields()) {
          if (g.no === 1) normalizerSpec.name = fieldString(g);
          else if (g.no === 3) normalizerSpec.addDummyPrefix = fieldBool(g);
          else if (g.no === 4) normalizerSpec.removeExtraWhitespaces = fieldBool(g);
          else if (g.no === 5) normalizerSpec.escapeWhitespaces = fieldBool(g);
        }
      }
    }
  } catch (e) {
    if (e instanceof ProtobufError) throw new GgufyError("E_TOKENIZER", `not a SentencePiece model: ${e.message}`, { file, cause: e });
    throw e;
  }
  if (pieces.length === 0) throw new GgufyError("E_TOKENIZER", "SentencePiece model has no pieces", { file });
  const seen = new Map<string, number>();
  let unk = -1;
  pieces.forEach((p, id) => {
    const prev = seen.get(p.piece);
    if (prev !== undefined) throw new GgufyError("E_TOKENIZER", `token id ${id}: piece '${p.piece}' is already defined as id ${prev}`, { file });
    seen.set(p.piece, id);
    if (p.type === SpmPieceType.UNKNOWN) {
      if (unk >= 0) throw new GgufyError("E_TOKENIZER", `token id ${id}: a second UNKNOWN piece (first is id ${unk})`, { file });
      unk = id;
    }
    if (p.type === SpmPieceType.BYTE && !BYTE_PIECE.test(p.piece)) throw new GgufyError("E_TOKENIZER", `token id ${id}: byte piece '${p.piece}' is not of the form <0xXX>`, { file });
  });
  if (unk < 0) throw new GgufyError("E_TOKENIZER", "SentencePiece model has no UNKNOWN piece", { file });
  return { pieces, trainerSpec, normalizerSpec };
}

export interface SpmVocabOptions {
  /** number of rows of the embedding (config.json vocab_size); defaults to the hparams, then to the model's piece count */
  vocabSize?: number;
  /** config.json (hparams) */
  config?: JsonObject;
  /** resolve tokenizer_config `{t}_token` strings only against tokenizer.json (the converter's exact behaviour) */
  strictSpecialVocab?: boolean;
  /**
   * The piece table to use instead of `<dir>/tokenizer.model` (a SentencePiece-style tokenizer.json
   * read by spm-json.ts), with the file it came from.
   */
  model?: { model: SpmModel; file: string };
  /**
   * Added tokens outside the piece table (tokenizer.json `added_tokens` with ids past model.vocab,
   * when the piece table came from tokenizer.json): placed like added_tokens_decoder entries unless
   * tokenizer_config.json's added_tokens_decoder already lists the id. tokenizer.model has no such
   * tokens; transformers gives them their ids.
   */
  extraAdded?: { id: number; content: string; special: boolean }[];
  /**
   * "phi3": `Phi3MiniModel.set_vocab` (conversion/phi.py) instead of `_create_vocab_sentencepiece`:
   * added_tokens_decoder entries are CONTROL only when flagged special (no looks-special rule, no
   * U+2581 replacement), tokenizer.json `added_tokens` are applied the same way after them, and the
   * row count is config vocab_size.
   */
  flavor?: "default" | "phi3";
  warn?: (msg: string) => void;
}

/**
 * `<dir>/tokenizer.model` (+ added_tokens.json, tokenizer_config.json, tokenizer.json, config.json) →
 * tokens / scores / token types / special ids, as `_set_vocab_sentencepiece` writes them:
 *  - ids 0…vocab_size-1; every id starts as `[PAD{id}]`, score -10000, UNUSED;
 *  - a piece's type: UNKNOWN, CONTROL, UNUSED, BYTE from the model; everything else — including
 *    USER_DEFINED pieces — becomes NORMAL (the converter never asks IsUserDefined);
 *  - pieces at ids ≥ vocab_size are dropped (warning);
 *  - added_tokens.json entries: text replaced, score -1000, USER_DEFINED;
 *  - tokenizer_config.json `added_tokens_decoder` entries: score -1000, CONTROL when `special` or the
 *    text looks special, else USER_DEFINED with U+2581 replaced by a space.
 */
export function loadSentencePieceVocab(dir: string, opts: SpmVocabOptions = {}): GGUFVocab {
  const warn = opts.warn ?? (() => {});
  let file: string;
  let model: SpmModel;
  if (opts.model) {
    ({ model, file } = opts.model);
  } else {
    const f = fileIn(dir, "tokenizer.model");
    if (!f) throw new GgufyError("E_TOKENIZER", "tokenizer.model not found", { file: `${dir}/tokenizer.model` });
    file = f;
    model = parseSentencePieceModel(readBytes(file), file);
  }
  const phi3 = opts.flavor === "phi3";
  const hp = textHparams(opts.config);

  let vocabSize = opts.vocabSize;
  if (vocabSize === undefined) {
    // Phi3MiniModel: hparams vocab_size; TextModel: find_hparam(["vocab_size_per_layer_input", "vocab_size"])
    const v = phi3 ? hp["vocab_size"] : (hp["vocab_size_per_layer_input"] ?? hp["vocab_size"]);
    vocabSize = isInt(v) && v > 0 ? v : model.pieces.length;
  }
  if (!(Number.isInteger(vocabSize) && vocabSize > 0)) throw new GgufyError("E_CONFIG", `vocab_size ${vocabSize} is not a positive integer`);

  const tokens: string[] = new Array<string>(vocabSize);
  const scores = new Float32Array(vocabSize).fill(-10000.0);
  const types = new Int32Array(vocabSize).fill(TokenType.UNUSED);
  for (let i = 0; i < vocabSize; i++) tokens[i] = `[PAD${i}]`;

  for (let id = 0; id < model.pieces.length; id++) {
    if (id >= vocabSize) {
      if (phi3) throw new GgufyError("E_TOKENIZER", `piece ${id} is outside vocab_size ${vocabSize} of the config`, { file });
      warn(`${file}: ignoring pieces from id ${id}: out of range, max=${vocabSize - 1}`);
      break;
    }
    const p = model.pieces[id]!;
    let t = TokenType.NORMAL;
    if (p.type === SpmPieceType.UNKNOWN) t = TokenType.UNKNOWN;
    else if (p.type === SpmPieceType.CONTROL) t = TokenType.CONTROL;
    else if (p.type === SpmPieceType.UNUSED) t = TokenType.UNUSED;
    else if (p.type === SpmPieceType.BYTE) t = TokenType.BYTE;
    tokens[id] = p.piece;
    scores[id] = p.score;
    types[id] = t;
  }

  const standIn = new Map<number, string>();
  const at = maybeJsonObject(dir, "added_tokens.json");
  if (at) {
    for (const [text, id] of Object.entries(at.json)) {
      if (!isInt(id) || id < 0) throw new GgufyError("E_TOKENIZER", `added token '${text}' has id ${JSON.stringify(id)}, not a non-negative integer`, { file: at.file });
      if (id >= vocabSize) {
        warn(`${at.file}: ignoring token ${id}: id is out of range, max=${vocabSize - 1}`);
        continue;
      }
      tokens[id] = text;
      scores[id] = -1000.0;
      types[id] = TokenType.USER_DEFINED;
      standIn.set(id, text);
    }
  }

  const tc = maybeJsonObject(dir, "tokenizer_config.json");
  const decoder = tc?.json["added_tokens_decoder"];
  for (const a of opts.extraAdded ?? []) {
    if (isObject(decoder) && String(a.id) in decoder) continue;
    const src = opts.model?.file ?? dir;
    if (a.id >= vocabSize) throw new GgufyError("E_TOKENIZER", `added token ${a.id} '${a.content}' is outside vocab_size ${vocabSize}`, { file: src });
    if (types[a.id] !== TokenType.UNUSED) throw new GgufyError("E_TOKENIZER", `added token ${a.id} '${a.content}' collides with '${tokens[a.id]}'`, { file: src });
    let text = a.content;
    if (phi3) types[a.id] = a.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    else if (a.special || looksSpecial(text)) types[a.id] = TokenType.CONTROL;
    else {
      text = text.replaceAll("\u2581", " ");
      types[a.id] = TokenType.USER_DEFINED;
    }
    tokens[a.id] = text;
    scores[a.id] = -1000.0;
    standIn.set(a.id, a.content);
  }
  if (tc && isObject(decoder)) {
    for (const [key, data] of Object.entries(decoder)) {
      const id = Number(key);
      const content = isObject(data) ? data["content"] : undefined;
      if (!Number.isInteger(id) || id < 0 || typeof content !== "string") {
        throw new GgufyError("E_TOKENIZER", `added_tokens_decoder entry '${key}' needs an integer id and a string content`, { file: tc.file });
      }
      if (id >= vocabSize) {
        // (Phi3MiniModel does not check: Python fails with an IndexError)
        if (phi3) throw new GgufyError("E_TOKENIZER", `added token ${id} '${content}' is outside vocab_size ${vocabSize}`, { file: tc.file });
        warn(`${tc.file}: ignoring token ${id}: id is out of range, max=${vocabSize - 1}`);
        continue;
      }
      let text = content;
      if (types[id] !== TokenType.UNUSED && tokens[id] !== text) warn(`${tc.file}: replacing token ${id}: '${tokens[id]}' -> '${text}'`);
      const special = truthy(isObject(data) ? data["special"] : undefined);
      if (phi3) types[id] = special ? TokenType.CONTROL : TokenType.USER_DEFINED;
      else if (special || looksSpecial(text)) types[id] = TokenType.CONTROL;
      else {
        text = text.replaceAll("\u2581", " ");
        types[id] = TokenType.USER_DEFINED;
      }
      scores[id] = -1000.0;
      tokens[id] = text;
      standIn.set(id, content);
    }
  }

  if (phi3) {
    // Phi3MiniModel.set_vocab: tokenizer.json added_tokens, after added_tokens_decoder, same rule
    const tjFile = fileIn(dir, "tokenizer.json");
    if (tjFile) {
      const tj = readJson(tjFile);
      const at = isObject(tj) ? tj["added_tokens"] : undefined;
      for (const [i, a] of (Array.isArray(at) ? at : []).entries()) {
        if (!isObject(a) || !isInt(a["id"]) || a["id"] < 0 || typeof a["content"] !== "string") {
          throw new GgufyError("E_TOKENIZER", `added_tokens[${i}] needs a non-negative integer id and a string content`, { file: tjFile });
        }
        const id = a["id"];
        const text = a["content"];
        if (id >= vocabSize) throw new GgufyError("E_TOKENIZER", `added token ${id} '${text}' is outside vocab_size ${vocabSize}`, { file: tjFile });
        if (types[id] !== TokenType.UNUSED && tokens[id] !== text) warn(`${tjFile}: replacing token ${id}: '${tokens[id]}' -> '${text}'`);
        tokens[id] = text;
        scores[id] = -1000.0;
        types[id] = truthy(a["special"]) ? TokenType.CONTROL : TokenType.USER_DEFINED;
        standIn.set(id, text);
      }
    }
  }

  const addedTokensStandIn: AddedTokenRef[] = [...standIn].sort((a, b) => a[0] - b[0]).map(([id, content]) => ({ id, content }));
  const sv = loadSpecialVocab(dir, {
    nVocab: vocabSize,
    ...(opts.strictSpecialVocab ? {} : { addedTokensStandIn }),
    ...(opts.config ? { config: opts.config } : {}),
    warn,
  });
  if (sv.addedTokensSource === "stand-in" && addedTokensStandIn.length > 0) {
    warn(`${dir}: no tokenizer.json; resolving tokenizer_config special tokens against added_tokens_decoder/added_tokens.json`);
  }

  const vocab: GGUFVocab = { model: "llama", pre: "default", tokens, scores, tokenTypes: types, special: {} };
  applySpecialVocab(vocab, sv);
  return vocab;
}
