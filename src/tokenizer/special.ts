/**
 * Port of the discovery logic of llama.cpp's `gguf-py/gguf/vocab.py` `SpecialVocab` (the bundled
 * llama.cpp of node-llama-cpp 3.21.1): merges, special token ids, add_*_token flags, chat template
 * and normalizer flags, each in the order the converter finds (and therefore writes) them.
 *
 * Order of sources (`SpecialVocab._load`):
 *  1. tokenizer.json — merges, normalizer, `added_tokens`, and a RobertaProcessing/TemplateProcessing
 *     post-processor (add_bos/add_eos/add_sep, possibly eot/eom);
 *     tokenizer_config.json — chat template (else chat_template.jinja, else chat_template.json),
 *     `add_{t}_token` booleans and `{t}_token` strings, each resolved to the id of the first
 *     tokenizer.json `added_tokens` entry with that content;
 *  2. config.json — `{t}_token_id` (or `text_config.{t}_token_id`) for the types still unset;
 *  3. merges.txt when merges are wanted and tokenizer.json gave none.
 */
import fs from "node:fs";
import path from "node:path";
import { GgufyError } from "../errors.js";
import { truthy } from "./common.js";
import { fileIn, isInt, isPlainPair, isObject, maybeJsonObject, pyLines, pySplit, pyStrip, readJson, readText, readUtf8Bytes, utf8Text, type Json, type JsonObject } from "./files.js";
import { defineLazyStrings, Utf8Strings, Utf8StringsBuilder } from "../formats/gguf/utf8-strings.js";

export type SpecialType = "bos" | "eos" | "unk" | "sep" | "pad" | "cls" | "mask" | "eot" | "eom";

export interface AddedTokenRef {
  id: number;
  content: string;
}

export type ChatTemplateValue = string | { name?: Json; template?: Json }[];

export interface SpecialVocabResult {
  /** (from merges.txt: decoded when read; until then `mergeBytes` holds them) */
  merges: string[];
  /** merges.txt's merges as UTF-8 ranges of the file, while `merges` has not been read (utf8-strings.ts defineLazyStrings) */
  readonly mergeBytes?: Utf8Strings;
  /** file the merges came from */
  mergesSource?: string;
  /** special ids in discovery order (only types that have a GGUF key: cls is dropped like the converter does) */
  ids: [SpecialType, number][];
  /** add_{bos,eos,sep}_token flags in discovery order */
  add: ["bos" | "eos" | "sep", boolean][];
  chatTemplate?: ChatTemplateValue;
  normalizerLowercase?: boolean;
  normalizerStripAccents?: boolean;
  /** where `{t}_token` strings were resolved: tokenizer.json added_tokens, the stand-in list, or nowhere */
  addedTokensSource: "tokenizer.json" | "stand-in" | "none";
}

export interface SpecialVocabOptions {
  loadMerges?: boolean;
  /** ids at or above this are skipped with a warning (the converter passes len(tokens) for SentencePiece) */
  nVocab?: number;
  /**
   * Added tokens to resolve `{t}_token` strings against when tokenizer.json is absent. The converter
   * itself would search an empty list (so only config.json ids would be found); ggufy passes the list
   * read from tokenizer_config.json `added_tokens_decoder` / added_tokens.json, which is what
   * transformers writes into tokenizer.json's `added_tokens` for the same tokenizer. Leave undefined
   * for the converter's strict behaviour.
   */
  addedTokensStandIn?: AddedTokenRef[];
  /** hparams to read `{t}_token_id` from instead of `<dir>/config.json` */
  config?: JsonObject;
  warn?: (msg: string) => void;
}

const DEFAULT_TYPES: SpecialType[] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
/** GGUFWriter has `add_{t}_token_id` for these (no `add_cls_token_id`). */
const ID_HANDLERS = new Set<SpecialType>(["bos", "eos", "unk", "sep", "pad", "mask", "eot", "eom"]);
const ADD_HANDLERS = new Set(["bos", "eos", "sep"]);

/** Python `==` on JSON values (dict equality ignoring key order). */
function pyEq(a: unknown, b: unknown): boolean {
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => k in b && pyEq(a[k], b[k]));
  }
  return false;
}

function inPair(x: unknown, a: unknown, b: unknown): boolean {
  return pyEq(x, a) || pyEq(x, b);
}

function get(o: unknown, key: string): Json | undefined {
  return isObject(o) ? o[key] : undefined;
}

/** `entry.get('SpecialToken', {}).get('id')` */
function specialTokenId(entry: unknown): Json | undefined {
  return get(get(entry, "SpecialToken") ?? {}, "id");
}

/** Python's `chr(ord(' ') + 256)`: the byte-level stand-in for a space. */
const BYTE_SPACE = "\u0120";

export function mergesFromTokenizerJson(merges: Json | undefined, file: string): string[] | undefined {
  if (!Array.isArray(merges) || merges.length === 0) return undefined;
  const first = merges[0];
  if (typeof first === "string") {
    return merges.map((m, i) => {
      if (typeof m !== "string") throw new GgufyError("E_TOKENIZER", `model.merges[${i}] is not a string like the first entry`, { file });
      return m;
    });
  }
  if (Array.isArray(first) && first.length === 2 && typeof first[0] === "string") {
    // transformers >= 4.45 writes pairs so that merge parts may contain spaces; the converter
    // re-encodes each space as U+0120 and joins the pair with one space.
    return merges.map((m, i) => {
      if (!Array.isArray(m) || m.length !== 2 || typeof m[0] !== "string" || typeof m[1] !== "string") {
        throw new GgufyError("E_TOKENIZER", `model.merges[${i}] is not a pair of strings`, { file });
      }
      return `${m[0].replaceAll(" ", BYTE_SPACE)} ${m[1].replaceAll(" ", BYTE_SPACE)}`;
    });
  }
  throw new GgufyError("E_TOKENIZER", "unknown tokenizer merges format (neither strings nor pairs of strings)", { file });
}

/** merges.txt the way `SpecialVocab._try_load_merges_txt` reads it (readMergesUtf8, decoded). */
export function readMergesTxt(file: string, warn?: (m: string) => void): string[] {
  return readMergesUtf8(file, warn).toArray();
}

/**
 * The length of the Python whitespace character (files.ts PY_WS) beginning at b[i] when it is one of
 * the non-ASCII ones — U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 —
 * else 0.
 */
function wideWsAt(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c === 0xc2) return b[i + 1] === 0x85 || b[i + 1] === 0xa0 ? 2 : 0;
  if (c === 0xe1) return b[i + 1] === 0x9a && b[i + 2] === 0x80 ? 3 : 0;
  if (c === 0xe2) {
    const d = b[i + 1];
    const e = b[i + 2]!;
    if (d === 0x80) return e <= 0x8a || e === 0xa8 || e === 0xa9 || e === 0xaf ? 3 : 0;
    return d === 0x81 && e === 0x9f ? 3 : 0;
  }
  if (c === 0xe3) return b[i + 1] === 0x80 && b[i + 2] === 0x80 ? 3 : 0;
  return 0;
}

/**
 * The end of the line starting at b[a] (the next \n, or the end), negated (-end - 1) unless the line is
 * two non-empty runs of non-whitespace (Python's) joined by one ASCII space — files.ts isPlainPair on
 * the bytes: then the line is the merge as it stands.
 */
function plainPairLine(b: Uint8Array, a: number): number {
  const n = b.length;
  let spaces = 0;
  let plain = true;
  let i = a;
  for (; i < n; i++) {
    const c = b[i]!;
    if (c === 0x0a) break;
    if (c < 0x80) {
      if (c === 0x20) {
        if (++spaces > 1 || i === a) plain = false;
      } else if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) plain = false;
    } else if (c >= 0xc2 && c <= 0xe3 && wideWsAt(b, i) > 0) plain = false;
  }
  return plain && spaces === 1 && b[i - 1] !== 0x20 ? i : -i - 1;
}

/**
 * Lines handled per call of plainPairRun. (Startup: a small function called in chunks is compiled while
 * its first chunks run, where the 151k-line loop of readMergesUtf8, run once, went mostly unoptimised.)
 */
const PAIR_CHUNK = 1024;

/**
 * Up to `limit` lines from b[a] (a line start) that are plain pairs (plainPairLine), each as a range
 * into `out`: the start of the first line that is not one, or of the line after the last taken (≥
 * b.length at the end).
 */
function plainPairRun(b: Uint8Array, a: number, out: Utf8StringsBuilder, limit: number): number {
  const n = b.length;
  for (let m = 0; m < limit && a < n; m++) {
    const e = plainPairLine(b, a);
    if (e < 0) return a;
    out.range(a, e);
    a = e + 1;
  }
  return a;
}

/**
 * merges.txt as `SpecialVocab._try_load_merges_txt` reads it, each merge a range of the file's bytes:
 * Python's universal-newline lines; a first line starting with `#` (after strip) skipped; each line
 * `" ".join(line.strip().split())` when it splits into two parts, blank lines skipped, others warned
 * about and ignored. A plain `a b` line (the usual case) is checked on the bytes and kept as they are;
 * any other line, and a file with a `\r`, goes through the string functions (files.ts pyLines, pyStrip,
 * pySplit).
 */
export function readMergesUtf8(file: string, warn?: (m: string) => void): Utf8Strings {
  const bytes = readUtf8Bytes(file);
  const out = new Utf8StringsBuilder(bytes, Math.max(16, bytes.length >> 3));
  const malformed = (lineNum: number): void => warn?.(`${path.basename(file)}: line ${lineNum}: entry malformed, ignoring`);
  /** a line that is not a plain pair, as the converter takes it */
  const general = (line: string, lineNum: number): void => {
    const t = pyStrip(line);
    if (!t) return;
    const parts = pySplit(t);
    if (parts.length !== 2) return malformed(lineNum);
    out.string(`${parts[0]} ${parts[1]}`);
  };
  if (bytes.includes(0x0d)) {
    const lines = pyLines(utf8Text(bytes));
    let start = 0;
    let lineNum = 0;
    if (lines.length > 0 && pyStrip(lines[0]!).startsWith("#")) {
      start = 1;
      lineNum = 1;
    }
    for (let i = start; i < lines.length; i++) {
      lineNum++;
      if (isPlainPair(lines[i]!)) out.string(lines[i]!);
      else general(lines[i]!, lineNum);
    }
    return out.finish();
  }
  // lines split on \n; a last empty line (the file ends with \n) is not a line (pyLines)
  const n = bytes.length;
  let a = 0;
  let lineNum = 0;
  let first = true;
  while (a < n) {
    if (!first) {
      // (runs of plain lines in chunks, see plainPairRun)
      const before = out.length;
      a = plainPairRun(bytes, a, out, PAIR_CHUNK);
      lineNum += out.length - before;
      if (a >= n) break;
    }
    const r = plainPairLine(bytes, a);
    const e = r >= 0 ? r : -r - 1;
    if (first) {
      first = false;
      const line = utf8Text(bytes.subarray(a, e));
      if (pyStrip(line).startsWith("#")) {
        lineNum = 1;
        a = e + 1;
        continue;
      }
    }
    lineNum++;
    if (r >= 0) out.range(a, e);
    else general(utf8Text(bytes.subarray(a, e)), lineNum);
    a = e + 1;
  }
  return out.finish();
}

export function loadSpecialVocab(dir: string, opts: SpecialVocabOptions = {}): SpecialVocabResult {
  const warn = opts.warn ?? (() => {});
  let types: SpecialType[] = [...DEFAULT_TYPES];
  const ids = new Map<SpecialType, number>();
  const add = new Map<string, boolean>();
  let merges: string[] = [];
  let mergeBytes: Utf8Strings | undefined;
  let mergesSource: string | undefined;
  let chatTemplate: ChatTemplateValue | undefined;
  let normalizerLowercase: boolean | undefined;
  let normalizerStripAccents: boolean | undefined;

  const setSpecial = (typ: SpecialType, tid: unknown, file: string): void => {
    if (!isInt(tid)) return;
    if (tid < 0) throw new GgufyError("E_TOKENIZER", `invalid value for special token type ${typ}: ${tid}`, { file });
    if (opts.nVocab === undefined || tid < opts.nVocab) {
      if (!ids.has(typ)) ids.set(typ, tid);
      return;
    }
    warn(`special token type ${typ}, id ${tid} out of range, must be under ${opts.nVocab} - skipping`);
  };

  const parseNormalizer = (n: Json): void => {
    const t = get(n, "type");
    if (t === "Lowercase") normalizerLowercase = true;
    else if (t === "StripAccents") normalizerStripAccents = true;
    else if (t === "BertNormalizer") {
      const o = n as JsonObject;
      // the converter copies the raw values; null means "unset" (nothing is written)
      if ("lowercase" in o) normalizerLowercase = o["lowercase"] === null ? undefined : truthy(o["lowercase"]);
      if ("strip_accents" in o) normalizerStripAccents = o["strip_accents"] === null ? undefined : truthy(o["strip_accents"]);
    } else if (t === "Sequence") {
      const list = get(n, "normalizers");
      if (Array.isArray(list)) for (const x of list) parseNormalizer(x);
    }
  };

  // ---- 1. tokenizer.json + tokenizer_config.json -------------------------------------------
  const tjFile = fileIn(dir, "tokenizer.json");
  let tokenizer: JsonObject | undefined;
  let addedTokens: AddedTokenRef[] = [];
  let addedTokensSource: SpecialVocabResult["addedTokensSource"] = "none";
  if (tjFile) {
    const tj = readJson(tjFile);
    if (!isObject(tj)) throw new GgufyError("E_TOKENIZER", "expected a JSON object", { file: tjFile });
    tokenizer = tj;
    if (opts.loadMerges) {
      const m = mergesFromTokenizerJson(get(tj["model"], "merges"), tjFile);
      if (m) {
        merges = m;
        mergesSource = tjFile;
      }
    }
    const normalizer = tj["normalizer"];
    if (truthy(normalizer)) parseNormalizer(normalizer!);
    const at = tj["added_tokens"];
    if (Array.isArray(at)) {
      addedTokens = at.flatMap((a) => (isObject(a) && isInt(a["id"]) && typeof a["content"] === "string" ? [{ id: a["id"], content: a["content"] }] : []));
    }
    addedTokensSource = "tokenizer.json";
  } else if (opts.addedTokensStandIn) {
    addedTokens = opts.addedTokensStandIn;
    addedTokensSource = "stand-in";
  }

  const tc = maybeJsonObject(dir, "tokenizer_config.json");
  const tcFile = tc?.file ?? path.join(dir, "tokenizer_config.json");
  // a mutable copy: the post-processor logic writes derived entries back into it, like the Python
  const tokCfg: JsonObject | undefined = tc ? { ...tc.json } : undefined;
  const haveCfg = truthy(tokCfg);

  if (tokenizer) {
    let specialBos: Json | undefined = tokCfg?.["bos_token"];
    let specialCls: Json | undefined = tokCfg?.["cls_token"];
    let specialEos: Json | undefined = tokCfg?.["eos_token"];
    let specialSep: Json | undefined = tokCfg?.["sep_token"];
    if (!truthy(specialBos) && truthy(specialCls) && haveCfg) tokCfg!["bos_token"] = specialBos = specialCls!;
    if (!truthy(specialEos) && truthy(specialSep) && haveCfg) tokCfg!["eos_token"] = specialEos = specialSep!;
    const post = tokenizer["post_processor"];
    if (truthy(post)) {
      const procs = get(post, "processors");
      const list: Json[] = Array.isArray(procs) ? procs : procs === undefined ? [post!] : [];
      for (const proc of list) {
        const ptype = get(proc, "type");
        if (ptype === "RobertaProcessing") {
          add.set("bos", true);
          add.set("eos", true);
          add.set("sep", true);
          if (!truthy(specialCls) && haveCfg) {
            const cls = get(proc, "cls");
            specialCls = Array.isArray(cls) ? (cls[0] ?? null) : (specialBos ?? null);
            tokCfg!["cls_token"] = specialCls;
          }
          if (!truthy(specialSep) && haveCfg) {
            const sep = get(proc, "sep");
            specialSep = Array.isArray(sep) ? (sep[0] ?? null) : (specialEos ?? null);
            tokCfg!["sep_token"] = specialSep;
          }
          continue;
        }
        if (ptype !== "TemplateProcessing") continue;
        const single = get(proc, "single");
        const tmplSingle: Json[] = Array.isArray(single) ? single : [];
        const pair = get(proc, "pair");
        let tmplPair: Json[] = Array.isArray(pair) ? pair : [];
        let specialFirst: Json | undefined;
        let specialLast: Json | undefined;
        if (tmplSingle.length > 1) {
          specialFirst = specialTokenId(tmplSingle[0]);
          if (truthy(specialFirst)) {
            if (!haveCfg) specialBos = specialFirst;
            else if (!inPair(specialFirst, specialBos, specialCls)) {
              if (!truthy(specialBos)) tokCfg!["bos_token"] = specialBos = specialFirst!;
              if (!truthy(specialCls)) tokCfg!["cls_token"] = specialCls = specialFirst!;
            }
            add.set("bos", inPair(specialFirst, specialBos, specialCls));
            if (!inPair(specialFirst, specialBos, specialCls)) warn(`unknown leading special token ${JSON.stringify(specialFirst)} in TemplateProcessing<single>`);
          }
          specialLast = specialTokenId(tmplSingle[tmplSingle.length - 1]);
          if (truthy(specialLast)) {
            if (!haveCfg) specialEos = specialLast;
            else if (!pyEq(specialLast, specialEos)) {
              if (!types.includes("eot")) {
                types = [...types, "eot"];
                tokCfg!["eot_token"] = specialEos ?? null;
              } else if (!types.includes("eom")) {
                types = [...types, "eom"];
                tokCfg!["eom_token"] = specialEos ?? null;
              } else warn(`overriding EOS token ${JSON.stringify(specialEos)} with ${JSON.stringify(specialLast)} without EOT/EOM fallback`);
              tokCfg!["eos_token"] = specialEos = specialLast!;
            }
            add.set("eos", pyEq(specialLast, specialEos));
          }
        }
        if (tmplPair.length > 0) {
          const seqStart = truthy(specialFirst) && pyEq(specialTokenId(tmplPair[0]), specialFirst) ? 1 : 0;
          const seqStop = truthy(specialLast) && pyEq(specialTokenId(tmplPair[tmplPair.length - 1]), specialLast) ? tmplPair.length - 1 : tmplPair.length;
          if ((truthy(specialFirst) && seqStart === 0) || (truthy(specialLast) && seqStop === tmplPair.length)) {
            warn("TemplateProcessing<single> leading/trailing special tokens do not match TemplateProcessing<pair>");
          }
          tmplPair = tmplPair.slice(seqStart, seqStop);
          if (tmplPair.length > 0) {
            const a = get(get(tmplPair[0], "Sequence") ?? {}, "id");
            const b = get(get(tmplPair[tmplPair.length - 1], "Sequence") ?? {}, "id");
            const middle = tmplPair.slice(1, -1);
            if (a === "A" && b === "B" && middle.length > 0) {
              let addSep = false;
              const e0 = specialTokenId(middle[0]);
              if (truthy(e0) && inPair(e0, specialSep, specialEos) && !truthy(specialLast)) addSep = true;
              if (middle.length === 2) {
                const e1 = specialTokenId(middle[1]);
                if (truthy(e1) && inPair(e1, specialSep, specialEos)) addSep = true;
              }
              add.set("sep", addSep);
              if (addSep && !truthy(specialSep) && haveCfg) tokCfg!["sep_token"] = specialEos ?? null;
            }
          }
        }
      }
    }
  }

  if (haveCfg) {
    // chat template: tokenizer_config.json's key wins (even when null), else chat_template.jinja
    // (+ additional_chat_templates/*.jinja as a named list), else chat_template.json
    let alt: Json | ChatTemplateValue | undefined = null;
    const jinja = fileIn(dir, "chat_template.jinja");
    const ctJson = fileIn(dir, "chat_template.json");
    if (jinja) {
      alt = readText(jinja);
      const extraDir = path.join(dir, "additional_chat_templates");
      let extra: string[] = [];
      try {
        extra = fs.readdirSync(extraDir).filter((f) => f.endsWith(".jinja") && fileIn(extraDir, f)).sort();
      } catch {
        extra = [];
      }
      if (extra.length > 0) {
        const list: { name: string; template: string }[] = [{ name: "default", template: alt }];
        for (const f of extra) list.push({ name: f.slice(0, -".jinja".length), template: readText(path.join(extraDir, f)) });
        alt = list;
      }
    } else if (ctJson) {
      const j = readJson(ctJson);
      alt = get(j, "chat_template") ?? null;
    }
    const ct = tokCfg && "chat_template" in tokCfg ? tokCfg["chat_template"] : alt;
    if (ct === null || ct === undefined) chatTemplate = undefined;
    else if (typeof ct === "string") chatTemplate = ct;
    else if (Array.isArray(ct)) chatTemplate = ct as ChatTemplateValue;
    else warn(`bad type for chat_template field in ${tcFile} - ignoring`);

    for (const typ of types) {
      const addEntry = tokCfg![`add_${typ}_token`];
      if (typeof addEntry === "boolean") add.set(typ, addEntry);
      const entry = tokCfg![`${typ}_token`];
      let content: string;
      if (typeof entry === "string") content = entry;
      else if (isObject(entry)) {
        const c = entry["content"];
        if (typeof c !== "string") continue;
        content = c;
      } else continue;
      const found = addedTokens.find((a) => a.content === content);
      setSpecial(typ, found?.id, tcFile);
    }
  }

  // ---- 2. config.json -------------------------------------------------------------------------
  let config: JsonObject | undefined = opts.config;
  let configFile = "config.json (hparams)";
  if (!config) {
    const c = maybeJsonObject(dir, "config.json");
    config = c?.json;
    if (c) configFile = c.file;
  }
  if (config) {
    for (const typ of types) {
      let tid: Json | undefined = config[`${typ}_token_id`];
      if ((tid === undefined || tid === null) && "text_config" in config) tid = get(config["text_config"], `${typ}_token_id`);
      setSpecial(typ, tid, configFile);
    }
  }

  // ---- 3. merges.txt ------------------------------------------------------------------------
  if (opts.loadMerges && merges.length === 0) {
    const mt = fileIn(dir, "merges.txt");
    if (mt) {
      mergeBytes = readMergesUtf8(mt, warn);
      mergesSource = mt;
    }
  }
  if (opts.loadMerges && merges.length === 0 && !mergeBytes?.length) warn("merges were requested but none were found; the output may be non-functional");

  const outIds: [SpecialType, number][] = [];
  for (const [typ, id] of ids) {
    if (!ID_HANDLERS.has(typ)) {
      warn(`no GGUF key for special token type ${typ} (id ${id}) - skipping, as the converter does`);
      continue;
    }
    outIds.push([typ, id]);
  }
  const outAdd: ["bos" | "eos" | "sep", boolean][] = [];
  for (const [typ, v] of add) {
    if (ADD_HANDLERS.has(typ)) outAdd.push([typ as "bos" | "eos" | "sep", v]);
    else warn(`no GGUF key for add_${typ}_token (${v}) - skipping, as the converter does`);
  }

  const result = { merges, ids: outIds, add: outAdd, addedTokensSource } as SpecialVocabResult;
  if (mergeBytes) defineLazyStrings(result, "merges", "mergeBytes", mergeBytes);
  if (mergesSource !== undefined) result.mergesSource = mergesSource;
  if (chatTemplate !== undefined) result.chatTemplate = chatTemplate;
  if (normalizerLowercase !== undefined) result.normalizerLowercase = normalizerLowercase;
  if (normalizerStripAccents !== undefined) result.normalizerStripAccents = normalizerStripAccents;
  return result;
}
