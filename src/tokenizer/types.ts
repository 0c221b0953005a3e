/** A tokenizer as llama.cpp's GGUF stores it, independent of where it came from. */
import type { Utf8Strings } from "../formats/gguf/utf8-strings.js";

export enum TokenType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SpecialTokens {
  bos?: number;
  eos?: number;
  unknown?: number;
  seperator?: number; // sic: llama.cpp's key spelling
  padding?: number;
  mask?: number;
  eot?: number;
  /** end-of-message, set by llama.cpp's SpecialVocab only from a TemplateProcessing post-processor */
  eom?: number;
}

export interface GGUFVocab {
  /** tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE) */
  model: "llama" | "gpt2";
  /** tokenizer.ggml.pre, for BPE vocabularies ("qwen2" …) */
  pre?: string;
  /** (a BPE vocabulary from vocab.json: decoded when first read, until then `tokenBytes` holds them) */
  tokens: string[];
  /**
   * the tokens as UTF-8 ranges of vocab.json, while `tokens` has not been read (not enumerable; see
   * formats/gguf/utf8-strings.ts defineLazyStrings): vocabToKvs writes these bytes. Count tokens by
   * `tokenBytes?.length ?? tokens.length`, which does not decode them.
   */
  readonly tokenBytes?: Utf8Strings;
  /** SentencePiece scores (absent for BPE) */
  scores?: Float32Array;
  tokenTypes: Int32Array;
  merges?: string[];
  /** merges.txt's merges as UTF-8 ranges of the file, while `merges` has not been read (as tokenBytes) */
  readonly mergeBytes?: Utf8Strings;
  special: SpecialTokens;
  /** order in which special ids were discovered (llama.cpp's converter writes them in that order) */
  specialOrder?: (keyof SpecialTokens)[];
  addBos?: boolean;
  addEos?: boolean;
  addSep?: boolean;
  /** order in which add_{bos,eos,sep}_token flags were discovered (default: bos, eos, sep) */
  addOrder?: ("bos" | "eos" | "sep")[];
  chatTemplate?: string;
  /** named chat templates other than "default" (tokenizer.chat_template.<name> + tokenizer.chat_templates) */
  chatTemplates?: { name: string; template: string }[];
  /**
   * tokenizer.ggml.add_space_prefix (SentencePiece vocabularies; llama.cpp's default is true).
   * "first": written before tokenizer.ggml.model, where `LlamaModel.set_vocab` writes the
   * tokenizer_config.json `add_prefix_space`; "last" (default): after everything, as Gemma's set_vocab.
   */
  addSpacePrefix?: boolean;
  addSpacePrefixPosition?: "first" | "last";
  /** tokenizer.ggml.normalizer.lowercase / strip_accents, from a tokenizer.json normalizer */
  normalizerLowercase?: boolean;
  normalizerStripAccents?: boolean;
}
