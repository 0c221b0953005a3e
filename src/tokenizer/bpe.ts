/**
 * Byte-level BPE (GPT-2 style) vocabularies → GGUF "gpt2" vocabulary, the way llama.cpp's converter
 * builds them (`TextModel.get_vocab_base` + `_set_vocab_gpt2` in conversion/base.py and
 * `gguf-py/gguf/vocab.py` `SpecialVocab` of the llama.cpp bundled with node-llama-cpp 3.21.1),
 * reading the files directly instead of running transformers.
 *
 * Sources, in order:
 *  - tokenizer.json: `model.vocab`, `model.merges`, `added_tokens` (id, content, special), `pre_tokenizer`;
 *  - otherwise the "slow" files: vocab.json + merges.txt, with the added tokens from
 *    tokenizer_config.json `added_tokens_decoder` (ids as written, like transformers' slow
 *    tokenizers honour them) or, when the config has none, added_tokens.json (special = listed among
 *    the config's special tokens).
 *
 * Token table (`get_vocab_base`), for every id below `vocab_size` (config.json, else the vocab length):
 *  - no token → `[PAD{id}]`, UNUSED;
 *  - an added token → CONTROL if `special` or it looks special, else USER_DEFINED with U+2581 → space;
 *  - otherwise the byte-level string, NORMAL.
 * An added token whose text is already a base token keeps that id (it must be the same id) and is
 * typed as an added token — MiniCPM-V 2.6's `<unk>` at 128244 is exactly this: Qwen2's vocab.json
 * has a plain "<unk>" token at 128244. An added token whose id holds a different base token
 * replaces it (ids as written, like slow tokenizers; the base text is dropped with a warning).
 */
import { GgufyError } from "../errors.js";
import { TokenType, type GGUFVocab } from "./types.js";
import { fileIn, isInt, isObject, maybeJsonObject, parseJsonText, readJson, readUtf8Bytes, utf8Text, type Json, type JsonObject } from "./files.js";
import { scanVocabJsonBytes, type ScannedVocab } from "./json-vocab.js";
import { defineLazyStrings, Utf8StringsBuilder, type Utf8Strings } from "../formats/gguf/utf8-strings.js";
import { loadSpecialVocab, type AddedTokenRef } from "./special.js";
import { applySpecialVocab, looksSpecial, textHparams, truthy } from "./common.js";

/** Split regex of the Qwen2 / Qwen2.5 tokenizer.json (llama.cpp keeps it, as a comment, for LLAMA_VOCAB_PRE_TYPE_QWEN2). */
export const QWEN2_PRE_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Split regex of the Llama 3 tokenizer.json (digits in groups of up to three). */
export const LLAMA3_PRE_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Split regex of Mistral-Nemo's "tekken" tokenizer.json (llama.cpp keeps it, as a comment, for LLAMA_VOCAB_PRE_TYPE_TEKKEN). */
export const TEKKEN_PRE_REGEX = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * tokenizer.json Split regex + `model.ignore_merges` → llama.cpp pre-tokenizer name. Each regex is the
 * "original regex from tokenizer.json" llama.cpp's src/llama-vocab.cpp (llm_tokenizer_bpe) notes for
 * that pre type; the name also fixes llama.cpp's ignore_merges (llama_vocab::impl::load: true for
 * llama-bpe and tekken, false for dbrx — the same regex as llama-bpe — and qwen2), so both must agree
 * with the file.
 */
const PRE_BY_REGEX = new Map<string, { ignoreMerges: string; plain: string | undefined; label: string }>([
  [QWEN2_PRE_REGEX, { ignoreMerges: "", plain: "qwen2", label: "Qwen2's" }],
  [LLAMA3_PRE_REGEX, { ignoreMerges: "llama-bpe", plain: "dbrx", label: "Llama 3's" }],
  [TEKKEN_PRE_REGEX, { ignoreMerges: "tekken", plain: undefined, label: "Mistral-Nemo's (tekken)" }],
]);

/** Slow tokenizer classes (tokenizer_config.json `tokenizer_class`) whose pre-tokenizer is fixed. */
const PRE_BY_CLASS: Record<string, string> = {
  Qwen2Tokenizer: "qwen2",
  Qwen2TokenizerFast: "qwen2",
  GPT2Tokenizer: "gpt-2",
  GPT2TokenizerFast: "gpt-2",
};

/** GGUF architecture → the pre-tokenizer its reference tokenizer uses. */
const PRE_BY_ARCH: Record<string, string> = {
  qwen2: "qwen2",
  qwen3: "qwen2",
  qwen3moe: "qwen2",
  qwen2vl: "qwen2",
  gpt2: "gpt-2",
};

/** HF `architectures[0]` → GGUF architecture, for the ones whose tokenizer ggufy can place. */
const ARCH_ALIASES: Record<string, string> = {
  Qwen2ForCausalLM: "qwen2",
  Qwen2Model: "qwen2",
  MiniCPMV: "qwen2", // MiniCPM-V 2.6: the LLM is a Qwen2ForCausalLM
  GPT2LMHeadModel: "gpt2",
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "llama",
  MixtralForCausalLM: "llama",
  Qwen3ForCausalLM: "qwen3",
  Qwen3MoeForCausalLM: "qwen3moe",
  Qwen2VLForConditionalGeneration: "qwen2vl",
  Qwen2_5_VLForConditionalGeneration: "qwen2vl",
  Gemma2ForCausalLM: "gemma2",
  Gemma3ForCausalLM: "gemma3",
  Gemma3ForConditionalGeneration: "gemma3",
  Phi3ForCausalLM: "phi3",
};

/** `tokenizer.ggml.pre` names the bundled llama.cpp (node-llama-cpp 3.21.1) accepts (src/llama-vocab.cpp). */
export const LLAMA_CPP_PRE_NAMES: ReadonlySet<string> = new Set([
  "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
  "jina-v5-nano", "deepseek-llm", "deepseek-coder", "deepseek-v3", "youtu", "falcon", "mpt", "starcoder",
  "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
  "modern-bert", "jais-2", "gemma4", "granite-embed-multi-311m", "sarvam-moe", "jina-v1-en", "jina-v2-code",
  "roberta-bpe", "whitespace", "refact", "command-r", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2",
  "qwen35", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "glm4", "chatglm-bpe", "viking", "jais",
  "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "exaone4", "exaone-moe", "chameleon",
  "minerva-7b", "megrez", "gpt-4o", "llama4", "kanana2", "talkie", "granite-embed-multi-97m", "tiny_aya",
  "cohere2moe", "superbpe", "trillion", "granite-docling", "bailingmoe", "bailingmoe2", "llada-moe",
  "seed-coder", "hunyuan", "hunyuan-dense", "joyai-llm", "kimi-k2", "grok-2", "afmoe", "laguna",
  "minimax-m2", "solar-open", "mellum2", "minicpm5",
]);

export function normalizeArch(arch: string | undefined): string | undefined {
  if (arch === undefined) return undefined;
  return ARCH_ALIASES[arch] ?? arch;
}

interface PreTokenizerShape {
  splits: string[];
  byteLevel: boolean;
  byteLevelUsesRegex: boolean;
  describe: string;
}

function preTokenizerShape(pt: Json | undefined): PreTokenizerShape {
  const shape: PreTokenizerShape = { splits: [], byteLevel: false, byteLevelUsesRegex: false, describe: "" };
  const parts: string[] = [];
  const visit = (p: Json | undefined): void => {
    if (!isObject(p)) return;
    const type = p["type"];
    if (type === "Sequence") {
      const list = p["pretokenizers"];
      if (Array.isArray(list)) for (const x of list) visit(x);
      return;
    }
    if (type === "Split") {
      const pattern = p["pattern"];
      const re = isObject(pattern) ? pattern["Regex"] : undefined;
      const str = isObject(pattern) ? pattern["String"] : undefined;
      if (typeof re === "string") shape.splits.push(re);
      parts.push(typeof re === "string" ? `Split(regex ${JSON.stringify(re)})` : `Split(string ${JSON.stringify(str)})`);
      if (typeof re !== "string") shape.splits.push(`\0string:${String(str)}`);
      return;
    }
    if (type === "ByteLevel") {
      shape.byteLevel = true;
      // tokenizers' ByteLevel defaults use_regex to true
      if (p["use_regex"] !== false) shape.byteLevelUsesRegex = true;
      parts.push(`ByteLevel(use_regex=${p["use_regex"] !== false})`);
      return;
    }
    parts.push(String(type));
  };
  visit(pt);
  shape.describe = parts.length ? parts.join(" + ") : "none";
  return shape;
}

export interface PreTokenizerDecision {
  pre: string;
  /** how it was decided */
  reason: string;
}

/**
 * `tokenizer.ggml.pre`. The converter hashes the tokenization of a probe text (needs transformers);
 * ggufy decides from what the files say instead, never from a hash table alone:
 *  1. an explicit `override` (checked against the names llama.cpp knows);
 *  2. tokenizer.json's pre_tokenizer: a single Split regex identical to Qwen2's → "qwen2", to
 *     Llama 3's → "llama-bpe" (ignore_merges) or "dbrx" (not), to Mistral-Nemo's → "tekken"; a bare
 *     regex ByteLevel → "gpt-2" for the gpt2 architecture;
 *  3. without tokenizer.json: tokenizer_config.json `tokenizer_class` (Qwen2Tokenizer → "qwen2",
 *     GPT2Tokenizer → "gpt-2"), else the architecture's reference tokenizer (qwen2 → "qwen2").
 * Anything else is an error asking for the override, rather than a silent guess.
 */
export function decidePreTokenizer(args: {
  tokenizerJson?: JsonObject;
  tokenizerJsonFile?: string;
  tokenizerConfig?: JsonObject;
  arch?: string;
  override?: string;
}): PreTokenizerDecision {
  const arch = normalizeArch(args.arch);
  if (args.override !== undefined) {
    if (!LLAMA_CPP_PRE_NAMES.has(args.override)) {
      throw new GgufyError("E_USAGE", `unknown tokenizer pre-type '${args.override}'; llama.cpp would refuse to load it (known: ${[...LLAMA_CPP_PRE_NAMES].sort().join(", ")})`);
    }
    return { pre: args.override, reason: "explicit override" };
  }
  if (args.tokenizerJson) {
    const shape = preTokenizerShape(args.tokenizerJson["pre_tokenizer"]);
    if (shape.splits.length === 1) {
      const known = PRE_BY_REGEX.get(shape.splits[0]!);
      if (known) {
        const model = args.tokenizerJson["model"];
        const ignoreMerges = isObject(model) && model["ignore_merges"] === true;
        const pre = ignoreMerges ? known.ignoreMerges : known.plain;
        if (pre) return { pre, reason: `tokenizer.json pre_tokenizer regex is ${known.label}, ignore_merges ${ignoreMerges}` };
        throw new GgufyError(
          "E_TOKENIZER",
          `the pre_tokenizer regex is ${known.label} but model.ignore_merges is ${ignoreMerges}; no llama.cpp pre-tokenizer has that combination (pass --pre NAME to choose one)`,
          args.tokenizerJsonFile ? { file: args.tokenizerJsonFile } : {},
        );
      }
    }
    if (shape.splits.length === 0 && shape.byteLevel && shape.byteLevelUsesRegex && arch === "gpt2") {
      return { pre: "gpt-2", reason: "tokenizer.json pre_tokenizer is ByteLevel with the GPT-2 regex" };
    }
    throw new GgufyError(
      "E_TOKENIZER",
      `unrecognized BPE pre-tokenizer (${shape.describe}) for architecture ${arch ?? "?"}; pass the llama.cpp pre-tokenizer name explicitly (--pre NAME, written as tokenizer.ggml.pre)`,
      args.tokenizerJsonFile ? { file: args.tokenizerJsonFile } : {},
    );
  }
  const cls = args.tokenizerConfig?.["tokenizer_class"];
  if (typeof cls === "string" && PRE_BY_CLASS[cls]) return { pre: PRE_BY_CLASS[cls]!, reason: `tokenizer_class ${cls}` };
  if (arch && PRE_BY_ARCH[arch]) {
    return { pre: PRE_BY_ARCH[arch]!, reason: `no tokenizer.json; architecture ${arch}${typeof cls === "string" ? ` (tokenizer_class ${cls} is not a known one)` : ""}` };
  }
  throw new GgufyError(
    "E_TOKENIZER",
    `cannot tell the BPE pre-tokenizer without tokenizer.json (tokenizer_class ${JSON.stringify(cls ?? null)}, architecture ${arch ?? "?"}); pass it explicitly`,
  );
}

export interface BpeVocabOptions {
  /** GGUF architecture ("qwen2") or HF architecture ("Qwen2ForCausalLM") */
  arch?: string;
  /** rows of the embedding (config.json vocab_size); defaults to the hparams, then to the vocab length */
  vocabSize?: number;
  /** config.json (hparams) */
  config?: JsonObject;
  /** tokenizer.ggml.pre override */
  pre?: string;
  /** resolve tokenizer_config `{t}_token` strings only against tokenizer.json (the converter's exact behaviour) */
  strictSpecialVocab?: boolean;
  warn?: (msg: string) => void;
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  /** file it came from (for messages) */
  file: string;
}

/** Content strings of the special tokens a tokenizer_config / special_tokens_map declares. */
function declaredSpecialTokens(...configs: (JsonObject | undefined)[]): Set<string> {
  const out = new Set<string>();
  const add = (v: Json | undefined): void => {
    if (typeof v === "string") out.add(v);
    else if (isObject(v) && typeof v["content"] === "string") out.add(v["content"]);
  };
  for (const c of configs) {
    if (!c) continue;
    for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) add(c[k]);
    const extra = c["additional_special_tokens"];
    if (Array.isArray(extra)) extra.forEach(add);
  }
  return out;
}

/** A base vocabulary (text → id): its texts in file order, their ids, and a lookup by text. */
interface BaseVocab {
  readonly count: number;
  /** as the file has them (validated by loadBpeVocab) */
  readonly ids: ArrayLike<Json>;
  /** text k */
  text(k: number): string;
  idOf(text: string): number | undefined;
  /** the texts as UTF-8 ranges (a scanned vocab.json): the token table is made of those, not of strings */
  readonly utf8?: { readonly bytes: Uint8Array; readonly extra: Uint8Array; readonly starts: Int32Array; readonly ends: Int32Array };
}

/** A parsed JSON object as a BaseVocab (tokenizer.json model.vocab, or a vocab.json the scanner declined). */
function objectVocab(o: JsonObject): BaseVocab {
  const tokens = Object.keys(o);
  return { count: tokens.length, ids: tokens.map((t) => o[t]!), text: (k) => tokens[k]!, idOf: (t) => (Object.hasOwn(o, t) ? (o[t] as number) : undefined) };
}

/** A scanned vocab.json (json-vocab.ts) as a BaseVocab. */
function scannedVocab(s: ScannedVocab): BaseVocab {
  return { count: s.count, ids: s.ids, text: s.text, idOf: s.idOf, utf8: s };
}

/** baseAt's mark for an added token's id */
const ADDED = -1;

/**
 * Ids (or vocabulary entries) handled per call of placeIds and baseRanges. (Startup: the loops over the
 * 151k entries are small functions called in chunks, not loops of loadBpeVocab: a loop in a large
 * function that runs once is left to on-stack replacement and went mostly unoptimised; a small function
 * is compiled while its first chunks run and the later chunks enter the optimised code.)
 */
const CHUNK = 1024;

/**
 * baseAt[ids[k]] = k for k0 ≤ k < k1, mx[0] the largest id: -1, or the first k whose id is not a
 * non-negative integer or is already placed (the ones before it placed).
 */
function placeIds(ids: ArrayLike<Json>, baseAt: number[], k0: number, k1: number, mx: number[]): number {
  let maxId = mx[0]!;
  for (let k = k0; k < k1; k++) {
    const id = ids[k];
    if (!isInt(id) || id < 0 || baseAt[id] !== undefined) {
      mx[0] = maxId;
      return k;
    }
    baseAt[id] = k;
    if (id > maxId) maxId = id;
  }
  mx[0] = maxId;
  return -1;
}

/**
 * Ids i0 .. i1 that hold a base token at its own id (not an added token's, not misplaced) with a
 * non-empty text: NORMAL, and their ranges into `table`. Returns the first id that is not one (the
 * caller's general path takes it), or i1.
 */
function baseRanges(baseAt: number[], starts: Int32Array, ends: Int32Array, misplaced: Set<number> | undefined, types: Int32Array, table: Utf8StringsBuilder, i0: number, i1: number): number {
  for (let i = i0; i < i1; i++) {
    const k = baseAt[i];
    if (k === undefined || k === ADDED || (misplaced !== undefined && misplaced.has(i))) return i;
    const a = starts[k]!;
    const e = ends[k]!;
    if (a === e) return i;
    types[i] = TokenType.NORMAL;
    table.range(a, e);
  }
  return i1;
}

/** The first string with no space byte after its first byte, or -1. */
function firstWithoutSpace(u: Utf8Strings): number {
  // (in chunks: see CHUNK)
  for (let i = 0; i < u.length; i += CHUNK) {
    const j = firstWithoutSpaceIn(u, i, Math.min(u.length, i + CHUNK));
    if (j >= 0) return j;
  }
  return -1;
}

/** firstWithoutSpace among strings i0 .. i1. */
function firstWithoutSpaceIn(u: Utf8Strings, i0: number, i1: number): number {
  const bl = u.bytes.length;
  for (let i = i0; i < i1; i++) {
    let j = u.starts[i]!;
    let e = u.ends[i]!;
    const b = j < bl ? u.bytes : u.extra;
    if (j >= bl) {
      j -= bl;
      e -= bl;
    }
    j++;
    while (j < e && b[j] !== 0x20) j++;
    if (j >= e) return i;
  }
  return -1;
}

export function loadBpeVocab(dir: string, opts: BpeVocabOptions = {}): GGUFVocab {
  const warn = opts.warn ?? (() => {});
  const tjFile = fileIn(dir, "tokenizer.json");
  const tc = maybeJsonObject(dir, "tokenizer_config.json");

  let baseFile: string;
  let baseVocab: BaseVocab;
  let added: AddedToken[] = [];
  let tokenizerJson: JsonObject | undefined;

  if (tjFile) {
    const tj = readJson(tjFile);
    if (!isObject(tj)) throw new GgufyError("E_TOKENIZER", "expected a JSON object", { file: tjFile });
    tokenizerJson = tj;
    const model = tj["model"];
    if (!isObject(model) || !isObject(model["vocab"])) throw new GgufyError("E_TOKENIZER", "tokenizer.json has no model.vocab", { file: tjFile });
    if (model["type"] !== undefined && model["type"] !== "BPE") {
      throw new GgufyError("E_TOKENIZER", `tokenizer.json model type ${JSON.stringify(model["type"])} is not BPE`, { file: tjFile });
    }
    const pre = preTokenizerShape(tj["pre_tokenizer"]);
    const dec = tj["decoder"];
    const byteLevelDecoder = isObject(dec) && (dec["type"] === "ByteLevel" || (Array.isArray(dec["decoders"]) && dec["decoders"].some((d) => isObject(d) && d["type"] === "ByteLevel")));
    if (!pre.byteLevel && !byteLevelDecoder) {
      throw new GgufyError(
        "E_TOKENIZER",
        "tokenizer.json is a BPE tokenizer but neither byte-level nor SentencePiece-style (byte_fallback with a Sequence decoder)",
        { file: tjFile },
      );
    }
    baseFile = tjFile;
    baseVocab = objectVocab(model["vocab"]);
    const at = tj["added_tokens"];
    if (at !== undefined && !Array.isArray(at)) throw new GgufyError("E_TOKENIZER", "added_tokens is not a list", { file: tjFile });
    for (const [i, a] of (at ?? []).entries()) {
      if (!isObject(a) || !isInt(a["id"]) || a["id"] < 0 || typeof a["content"] !== "string") {
        throw new GgufyError("E_TOKENIZER", `added_tokens[${i}] needs a non-negative integer id and a string content`, { file: tjFile });
      }
      added.push({ id: a["id"], content: a["content"], special: truthy(a["special"]), file: tjFile });
    }
  } else {
    const vf = fileIn(dir, "vocab.json");
    if (!vf) throw new GgufyError("E_TOKENIZER", "no tokenizer.json and no vocab.json: cannot build a BPE vocabulary", { file: dir });
    baseFile = vf;
    // (startup: its bytes scanned in one pass when it has the plain form — json-vocab.ts —, else JSON.parse)
    const bytes = readUtf8Bytes(vf);
    const scanned = scanVocabJsonBytes(bytes);
    if (scanned) baseVocab = scannedVocab(scanned);
    else {
      const v = parseJsonText(utf8Text(bytes), vf);
      if (!isObject(v)) throw new GgufyError("E_TOKENIZER", "expected a JSON object of token → id", { file: vf });
      baseVocab = objectVocab(v);
    }
    const decoder = tc?.json["added_tokens_decoder"];
    if (tc && isObject(decoder)) {
      for (const [key, data] of Object.entries(decoder)) {
        const id = Number(key);
        const content = isObject(data) ? data["content"] : undefined;
        if (!/^\d+$/.test(key) || typeof content !== "string") {
          throw new GgufyError("E_TOKENIZER", `added_tokens_decoder entry '${key}' needs an integer id and a string content`, { file: tc.file });
        }
        added.push({ id, content, special: truthy(isObject(data) ? data["special"] : undefined), file: tc.file });
      }
    }
    const atj = maybeJsonObject(dir, "added_tokens.json");
    if (atj) {
      const byContent = new Map(added.map((a) => [a.content, a]));
      const fromDecoder = added.length > 0;
      const specials = declaredSpecialTokens(tc?.json, maybeJsonObject(dir, "special_tokens_map.json")?.json);
      for (const [content, id] of Object.entries(atj.json)) {
        if (!isInt(id) || id < 0) throw new GgufyError("E_TOKENIZER", `added token '${content}' has id ${JSON.stringify(id)}, not a non-negative integer`, { file: atj.file });
        if (fromDecoder) {
          // transformers reads added_tokens.json only when tokenizer_config.json has no
          // added_tokens_decoder; here it is only cross-checked
          const d = byContent.get(content);
          if (!d) warn(`${atj.file}: '${content}' (id ${id}) is not in added_tokens_decoder; ignored like transformers does`);
          else if (d.id !== id) {
            throw new GgufyError("E_TOKENIZER", `token id ${id}: '${content}' has id ${d.id} in added_tokens_decoder of ${tc!.file}`, { file: atj.file });
          }
          continue;
        }
        added.push({ id, content, special: specials.has(content), file: atj.file });
      }
    }
  }
  added = added.sort((a, b) => a.id - b.id);

  // ---- id → token table -----------------------------------------------------------------------
  // (startup: the 151k-entry vocabulary is walked once; an id holds the index of its base text, the
  // base vocabulary answers "is this text a base token"; a scanned vocab.json's texts stay bytes)
  /** id → index of its base text; ADDED for an added token's id (its text in addedById) */
  const baseAt: number[] = [];
  let idCount = 0;
  let maxId = -1;
  const baseIds = baseVocab.ids;
  const mx = [maxId];
  for (let k = 0; k < baseVocab.count; k += CHUNK) {
    const stop = Math.min(baseVocab.count, k + CHUNK);
    const bad = placeIds(baseIds, baseAt, k, stop, mx);
    if (bad >= 0) {
      const id = baseIds[bad];
      if (!isInt(id) || id < 0) throw new GgufyError("E_TOKENIZER", `token '${baseVocab.text(bad)}' has id ${JSON.stringify(id)}, not a non-negative integer`, { file: baseFile });
      throw new GgufyError("E_TOKENIZER", `token id ${id} is given to both '${baseVocab.text(baseAt[id]!)}' and '${baseVocab.text(bad)}'`, { file: baseFile });
    }
    idCount += stop - k;
  }
  maxId = mx[0]!;
  const baseIdOf = (text: string): number | undefined => baseVocab.idOf(text);
  const addedById = new Map<number, AddedToken>();
  const addedContent = new Set<string>();
  /** the text an id holds in the table (before the added tokens' retyping) */
  const textAt = (id: number): string | undefined => {
    const k = baseAt[id];
    return k === undefined ? undefined : k === ADDED ? addedById.get(id)!.content : baseVocab.text(k);
  };
  for (const a of added) {
    const other = addedById.get(a.id);
    if (other && other.content !== a.content) throw new GgufyError("E_TOKENIZER", `token id ${a.id}: added twice, as '${other.content}' and '${a.content}'`, { file: a.file });
    const baseId = baseIdOf(a.content);
    if (baseId !== undefined && baseId !== a.id) {
      // a tokenizer would give the text its vocabulary id, not the one the added-token list claims
      throw new GgufyError("E_TOKENIZER", `token id ${a.id}: added token '${a.content}' is already token ${baseId} of ${baseFile}`, { file: a.file });
    }
    const replaced = textAt(a.id);
    if (replaced !== undefined && replaced !== a.content) {
      warn(`token id ${a.id}: added token '${a.content}' (${a.file}) replaces '${replaced}' of ${baseFile}; that BPE token is no longer reachable`);
    }
    if (replaced === undefined) idCount++;
    baseAt[a.id] = ADDED;
    if (a.id > maxId) maxId = a.id;
    addedById.set(a.id, a);
    addedContent.add(a.content);
  }

  const hp = textHparams(opts.config);
  let vocabSize = opts.vocabSize;
  if (vocabSize === undefined) {
    const v = hp["vocab_size"];
    vocabSize = isInt(v) ? v : idCount;
  }
  if (!(Number.isInteger(vocabSize) && vocabSize > 0)) throw new GgufyError("E_CONFIG", `vocab_size ${vocabSize} is not a positive integer`);
  if (maxId >= vocabSize) {
    throw new GgufyError("E_TOKENIZER", `token id ${maxId} ('${textAt(maxId)}') is not below vocab_size ${vocabSize}`, { file: addedById.get(maxId)?.file ?? baseFile });
  }

  // the ids whose text is an added token's but which are not that token's id (refused below; a text is
  // at its added id, or at its base id — equal to the added id, checked above), found from the added
  // tokens rather than by a set lookup per id
  const misplacedAdded = new Set<number>();
  for (const c of addedContent) {
    const b = baseIdOf(c);
    if (b !== undefined && !addedById.has(b) && textAt(b) === c) misplacedAdded.add(b);
  }
  // the table: strings, or (a scanned vocab.json) ranges of its bytes with the foreign texts encoded beside
  const utf8 = baseVocab.utf8;
  const strings: string[] | undefined = utf8 ? undefined : new Array<string>(vocabSize);
  const table = utf8 ? new Utf8StringsBuilder(utf8.bytes, vocabSize, utf8.extra) : undefined;
  const types = new Int32Array(vocabSize);
  /** ids whose text is not the base vocabulary's own key for that id (added tokens, padding), and their texts */
  const foreign = new Map<number, string>();
  const misplaced = misplacedAdded.size > 0 ? misplacedAdded : undefined;
  for (let i = 0; i < vocabSize; i++) {
    // (runs of base tokens at their own ids, non-empty: in chunks, see baseRanges)
    if (table) while (i < vocabSize) {
      const stop = Math.min(vocabSize, i + CHUNK);
      const j = baseRanges(baseAt, utf8!.starts, utf8!.ends, misplaced, types, table, i, stop);
      if (j < stop) {
        i = j;
        break;
      }
      i = j;
    }
    if (i >= vocabSize) break;
    const k = baseAt[i];
    let tok: string;
    let t: TokenType;
    if (k === undefined) {
      tok = `[PAD${i}]`;
      t = TokenType.UNUSED;
    } else if (k === ADDED || misplacedAdded.has(i)) {
      const a = addedById.get(i);
      if (!a) throw new GgufyError("E_TOKENIZER", `token id ${i}: '${textAt(i)}' is an added token under another id`, { file: baseFile });
      // (the converter first round-trips non-normalized added tokens through encode/decode; for
      // byte-level BPE tokenizers that gives the text back unchanged)
      tok = a.content;
      if (a.special || looksSpecial(tok)) t = TokenType.CONTROL;
      else {
        tok = tok.replaceAll("\u2581", " ");
        t = TokenType.USER_DEFINED;
      }
    } else {
      // a base token at its own id
      types[i] = TokenType.NORMAL;
      if (utf8) {
        const a = utf8.starts[k]!;
        const e = utf8.ends[k]!;
        if (a === e) warn(`token id ${i} is empty; llama.cpp will load it as [EMPTY_${i}]`);
        table!.range(a, e);
      } else {
        const s = baseVocab.text(k);
        if (s === "") warn(`token id ${i} is empty; llama.cpp will load it as [EMPTY_${i}]`);
        strings![i] = s;
      }
      continue;
    }
    if (tok === "") warn(`token id ${i} is empty; llama.cpp will load it as [EMPTY_${i}]`);
    foreign.set(i, tok);
    if (table) table.string(tok);
    else strings![i] = tok;
    types[i] = t;
  }
  /** the text id i has in the table */
  const tokenAt = (i: number): string => foreign.get(i) ?? baseVocab.text(baseAt[i]!);
  // llama.cpp requires unique token texts. The base tokens are distinct keys of one JSON object, so
  // a repeat needs a foreign text: equal to another foreign text, or to a base token still at its id.
  // Only then is the whole table walked again, to name the first repeat exactly as before.
  let repeated = false;
  const foreignText = new Set<string>();
  for (const [i, tok] of foreign) {
    const b = baseIdOf(tok);
    if (foreignText.has(tok) || (b !== undefined && b !== i && b < vocabSize && tokenAt(b) === tok && textAt(b) === tok)) {
      repeated = true;
      break;
    }
    foreignText.add(tok);
  }
  if (repeated) {
    const seen = new Map<string, number>();
    for (let i = 0; i < vocabSize; i++) {
      const tok = tokenAt(i);
      const dup = seen.get(tok);
      if (dup !== undefined) {
        throw new GgufyError("E_TOKENIZER", `token id ${i}: text '${tok}' is also token ${dup}; llama.cpp requires unique token texts`, { file: addedById.get(i)?.file ?? baseFile });
      }
      seen.set(tok, i);
    }
  }

  const decision = decidePreTokenizer({
    ...(tokenizerJson ? { tokenizerJson, tokenizerJsonFile: tjFile! } : {}),
    ...(tc ? { tokenizerConfig: tc.json } : {}),
    ...(opts.arch !== undefined ? { arch: opts.arch } : {}),
    ...(opts.pre !== undefined ? { override: opts.pre } : {}),
  });

  const standIn: AddedTokenRef[] = added.map((a) => ({ id: a.id, content: a.content }));
  const sv = loadSpecialVocab(dir, {
    loadMerges: true,
    ...(opts.strictSpecialVocab || tjFile ? {} : { addedTokensStandIn: standIn }),
    ...(opts.config ? { config: opts.config } : {}),
    warn,
  });
  if (sv.addedTokensSource === "stand-in") warn(`${dir}: no tokenizer.json; resolving tokenizer_config special tokens against added_tokens_decoder/added_tokens.json`);
  const mergeBytes = sv.mergeBytes;
  if ((mergeBytes ? mergeBytes.length : sv.merges.length) === 0) {
    throw new GgufyError("E_TOKENIZER", "no BPE merges (tokenizer.json model.merges or merges.txt); llama.cpp cannot load a gpt2 vocabulary without them", { file: dir });
  }
  // llama.cpp splits each merge at the first space at position >= 1 (on the bytes: a space byte after the first)
  const noSpace = mergeBytes ? firstWithoutSpace(mergeBytes) : sv.merges.findIndex((m) => m.indexOf(" ", 1) < 0);
  if (noSpace >= 0) throw new GgufyError("E_TOKENIZER", `merge ${noSpace} '${mergeBytes ? mergeBytes.get(noSpace) : sv.merges[noSpace]}' has no separating space`, { file: sv.mergesSource ?? dir });

  const vocab = { model: "gpt2", pre: decision.pre, tokenTypes: types, special: {} } as unknown as GGUFVocab;
  if (table) defineLazyStrings(vocab, "tokens", "tokenBytes", table.finish());
  else vocab.tokens = strings!;
  applySpecialVocab(vocab, sv);
  return vocab;
}
