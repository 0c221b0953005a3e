/**
 * Tokenizer export: a checkpoint folder's tokenizer files → GGUFVocab → `tokenizer.*` KVs, matching
 * what llama.cpp's convert_hf_to_gguf writes (node-llama-cpp 3.21.1's bundled llama.cpp).
 */
import { GgufyError } from "../errors.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import type { GGUFVocab, SpecialTokens } from "./types.js";
import { fileIn, maybeJsonObject, readJsonObject, withJsonCache, type JsonObject } from "./files.js";
import { loadSentencePieceVocab } from "./sentencepiece.js";
import { loadBpeVocab, normalizeArch } from "./bpe.js";
import { addedTokensPastVocab, isSentencePieceTokenizerJson, spmModelFromTokenizerJson } from "./spm-json.js";

export { TokenType } from "./types.js";
export type { GGUFVocab, SpecialTokens } from "./types.js";
export { parseSentencePieceModel, loadSentencePieceVocab, SpmPieceType } from "./sentencepiece.js";
export type { SpmModel, SpmPiece } from "./sentencepiece.js";
export { loadBpeVocab, decidePreTokenizer, LLAMA_CPP_PRE_NAMES, QWEN2_PRE_REGEX, LLAMA3_PRE_REGEX, TEKKEN_PRE_REGEX } from "./bpe.js";
export { loadSpecialVocab, readMergesTxt } from "./special.js";
export { spmModelFromTokenizerJson, isSentencePieceTokenizerJson, spmJsonAddsSpacePrefix, SPM_LOW_SCORE } from "./spm-json.js";

export interface LoadVocabOptions {
  /** GGUF architecture ("qwen2", "llama") or HF architectures[0] ("Qwen2ForCausalLM", "MiniCPMV") */
  arch?: string;
  /** rows of the token embedding; default: config vocab_size (text_config merged over the root) */
  vocabSize?: number;
  /** parsed config.json (vocab_size, special ids); default: <dir>/config.json when present */
  config?: Record<string, unknown>;
  /** tokenizer.ggml.pre override for BPE vocabularies */
  pre?: string;
  /**
   * true: resolve tokenizer_config.json `bos_token`… only against tokenizer.json `added_tokens`, as the
   * converter does (without tokenizer.json only config.json ids are then found). Default false:
   * without tokenizer.json, use tokenizer_config.json `added_tokens_decoder` / added_tokens.json as
   * the list transformers would have written into tokenizer.json.
   */
  strictSpecialVocab?: boolean;
  /** receives the converter's warnings (replaced tokens, skipped ids …) */
  warn?: (msg: string) => void;
}

/**
 * Build the vocabulary from the files in `dir`, choosing the path the converter's model class takes
 * (conversion/llama.py `LlamaModel.set_vocab`, qwen.py `Qwen2Model.set_vocab`, gemma.py
 * `Gemma2Model/Gemma3Model.set_vocab`, phi.py `Phi3MiniModel.set_vocab`):
 *  - Phi-3 with tokenizer_config.json `tokenizer_class` GPT2Tokenizer (Phi-4): byte-level BPE;
 *  - a `tokenizer.model`: SentencePiece ("llama"; Phi-3's own added-token rules for phi3);
 *  - a SentencePiece-style tokenizer.json (BPE with byte_fallback): the same "llama" vocabulary the
 *    tokenizer.model would give (spm-json.ts). llama.cpp's converter differs here on purpose: for
 *    llama it writes placeholder scores (LlamaHfVocab), for Gemma 3 it tries byte-level BPE
 *    (`_set_vocab_gpt2`, whose pre-tokenizer hash table has no Gemma entry), Gemma 2 and Phi-3
 *    require tokenizer.model;
 *  - otherwise tokenizer.json or vocab.json: byte-level BPE ("gpt2").
 * `tokenizer.ggml.add_space_prefix`: false for Gemma 2/3 (their set_vocab); for llama the
 * tokenizer_config.json `add_prefix_space` when set; false for a SentencePiece tokenizer.json that
 * does not prepend `▁` (llama.cpp would otherwise default to true).
 */
export async function loadVocab(dir: string, opts: LoadVocabOptions = {}): Promise<GGUFVocab> {
  return loadVocabSync(dir, opts);
}

/** (Gemma 1's GemmaModel.set_vocab also writes CodeGemma's FIM ids; ggufy does not convert "gemma") */
const GEMMA_ARCHS = new Set(["gemma2", "gemma3"]);

export function loadVocabSync(dir: string, opts: LoadVocabOptions = {}): GGUFVocab {
  return withJsonCache(() => loadVocabUncached(dir, opts));
}

function loadVocabUncached(dir: string, opts: LoadVocabOptions): GGUFVocab {
  // the converter's hparams are config.json; read it when the caller did not pass it
  const config = (opts.config as JsonObject | undefined) ?? maybeJsonObject(dir, "config.json")?.json;
  const arch = normalizeArch(opts.arch);
  const common = {
    ...(opts.vocabSize !== undefined ? { vocabSize: opts.vocabSize } : {}),
    ...(config ? { config } : {}),
    ...(opts.strictSpecialVocab ? { strictSpecialVocab: true } : {}),
    ...(opts.warn ? { warn: opts.warn } : {}),
  };
  const tc = maybeJsonObject(dir, "tokenizer_config.json");
  const bpe = (): GGUFVocab =>
    loadBpeVocab(dir, {
      ...common,
      ...(opts.arch !== undefined ? { arch: opts.arch } : {}),
      ...(opts.pre !== undefined ? { pre: opts.pre } : {}),
    });
  const noPre = (what: string): void => {
    if (opts.pre !== undefined && opts.pre !== "default") {
      throw new GgufyError("E_USAGE", `tokenizer pre-type '${opts.pre}' given, but ${dir} has a SentencePiece ${what} (always "default")`);
    }
  };

  let v: GGUFVocab;
  let jsonPrefix: boolean | undefined;
  const tjFile = fileIn(dir, "tokenizer.json");
  const tj = tjFile && !fileIn(dir, "tokenizer.model") ? readJsonObject(tjFile) : undefined;
  if (arch === "phi3" && tc?.json["tokenizer_class"] === "GPT2Tokenizer") {
    v = bpe();
  } else if (fileIn(dir, "tokenizer.model")) {
    noPre("tokenizer.model");
    v = loadSentencePieceVocab(dir, { ...common, ...(arch === "phi3" ? { flavor: "phi3" as const } : {}) });
  } else if (tjFile && tj && isSentencePieceTokenizerJson(tj)) {
    noPre("tokenizer.json (BPE with byte_fallback)");
    const model = spmModelFromTokenizerJson(tj, tjFile);
    jsonPrefix = model.normalizerSpec.addDummyPrefix;
    v = loadSentencePieceVocab(dir, { ...common, model: { model, file: tjFile }, extraAdded: addedTokensPastVocab(tj), ...(arch === "phi3" ? { flavor: "phi3" as const } : {}) });
  } else if (tjFile || fileIn(dir, "vocab.json")) {
    v = bpe();
  } else {
    throw new GgufyError("E_TOKENIZER", "no tokenizer.model, tokenizer.json or vocab.json", { file: dir });
  }

  if (arch === "llama") {
    // LlamaModel.set_vocab, before any vocabulary KV
    const aps = tc?.json["add_prefix_space"];
    if (typeof aps === "boolean") {
      v.addSpacePrefix = aps;
      v.addSpacePrefixPosition = "first";
    }
  }
  if (v.model === "llama" && arch !== undefined && GEMMA_ARCHS.has(arch)) {
    v.addSpacePrefix = false;
    v.addSpacePrefixPosition = "last";
  } else if (jsonPrefix === false && v.addSpacePrefix === undefined) {
    v.addSpacePrefix = false;
    v.addSpacePrefixPosition = "last";
  }
  return v;
}

const ID_KEY: Record<keyof SpecialTokens, string> = {
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unknown: "tokenizer.ggml.unknown_token_id",
  seperator: "tokenizer.ggml.seperator_token_id",
  padding: "tokenizer.ggml.padding_token_id",
  mask: "tokenizer.ggml.mask_token_id",
  eot: "tokenizer.ggml.eot_token_id",
  eom: "tokenizer.ggml.eom_token_id",
};
const DEFAULT_ID_ORDER: (keyof SpecialTokens)[] = ["bos", "eos", "unknown", "seperator", "padding", "mask", "eot", "eom"];

/**
 * The `tokenizer.*` KVs in the converter's write order and with llama.cpp's exact types:
 * model, pre (STRING); tokens (ARRAY STRING); scores (ARRAY FLOAT32, SentencePiece only);
 * token_type (ARRAY INT32); merges (ARRAY STRING); special ids (UINT32, discovery order);
 * add_{bos,eos,sep}_token (BOOL); chat_template.<name> / chat_templates / chat_template;
 * normalizer.lowercase / strip_accents (BOOL).
 */
export function vocabToKvs(v: GGUFVocab): GGUFKV[] {
  // (a vocabulary still held as bytes — bpe.ts from vocab.json / merges.txt — is written from them)
  const tokenBytes = v.tokenBytes;
  const mergeBytes = v.mergeBytes;
  const n = tokenBytes ? tokenBytes.length : v.tokens.length;
  if (n === 0) throw new GgufyError("E_TOKENIZER", "empty vocabulary");
  if (v.tokenTypes.length !== n) throw new GgufyError("E_TOKENIZER", `${v.tokenTypes.length} token types for ${n} tokens`);
  if (v.scores && v.scores.length !== n) throw new GgufyError("E_TOKENIZER", `${v.scores.length} scores for ${n} tokens`);
  const nMerges = mergeBytes ? mergeBytes.length : (v.merges?.length ?? 0);
  if (v.model === "gpt2" && nMerges === 0) throw new GgufyError("E_TOKENIZER", "a gpt2 vocabulary needs merges");

  const out: GGUFKV[] = [];
  const spacePrefix = v.addSpacePrefix !== undefined ? kv.bool("tokenizer.ggml.add_space_prefix", v.addSpacePrefix) : undefined;
  if (spacePrefix && v.addSpacePrefixPosition === "first") out.push(spacePrefix);
  out.push(kv.str("tokenizer.ggml.model", v.model));
  out.push(kv.str("tokenizer.ggml.pre", v.pre ?? "default"));
  out.push(tokenBytes ? kv.utf8s("tokenizer.ggml.tokens", tokenBytes) : kv.strs("tokenizer.ggml.tokens", v.tokens));
  if (v.scores) out.push(kv.f32s("tokenizer.ggml.scores", v.scores));
  out.push(kv.i32s("tokenizer.ggml.token_type", v.tokenTypes));
  if (nMerges > 0) out.push(mergeBytes ? kv.utf8s("tokenizer.ggml.merges", mergeBytes) : kv.strs("tokenizer.ggml.merges", v.merges!));

  const order = [...(v.specialOrder ?? []), ...DEFAULT_ID_ORDER];
  const done = new Set<keyof SpecialTokens>();
  for (const key of order) {
    if (done.has(key)) continue;
    done.add(key);
    const id = v.special[key];
    if (id === undefined) continue;
    if (!Number.isInteger(id) || id < 0 || id >= n) throw new GgufyError("E_TOKENIZER", `special token ${key} id ${id} is outside the ${n}-token vocabulary`);
    out.push(kv.u32(ID_KEY[key], id));
  }

  const addVal = { bos: v.addBos, eos: v.addEos, sep: v.addSep };
  const addDone = new Set<string>();
  for (const key of [...(v.addOrder ?? []), "bos", "eos", "sep"] as ("bos" | "eos" | "sep")[]) {
    if (addDone.has(key)) continue;
    addDone.add(key);
    const val = addVal[key];
    if (val !== undefined) out.push(kv.bool(`tokenizer.ggml.add_${key}_token`, val));
  }

  if (v.chatTemplates && v.chatTemplates.length > 0) {
    for (const t of v.chatTemplates) out.push(kv.str(`tokenizer.chat_template.${t.name}`, t.template));
    out.push(kv.strs("tokenizer.chat_templates", v.chatTemplates.map((t) => t.name)));
  }
  if (v.chatTemplate !== undefined) out.push(kv.str("tokenizer.chat_template", v.chatTemplate));
  if (v.normalizerLowercase !== undefined) out.push(kv.bool("tokenizer.ggml.normalizer.lowercase", v.normalizerLowercase));
  if (v.normalizerStripAccents !== undefined) out.push(kv.bool("tokenizer.ggml.normalizer.strip_accents", v.normalizerStripAccents));
  if (spacePrefix && v.addSpacePrefixPosition !== "first") out.push(spacePrefix);
  return out;
}
