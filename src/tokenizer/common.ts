/** Pieces shared by the SentencePiece and BPE paths. */
import type { GGUFVocab, SpecialTokens } from "./types.js";
import { isObject, type JsonObject } from "./files.js";
import type { SpecialType, SpecialVocabResult } from "./special.js";
import { defineLazyStrings } from "../formats/gguf/utf8-strings.js";

/** Python truthiness of a JSON value. */
export function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

/**
 * `TextModel.does_token_look_special`: added tokens that some models forget to flag as special.
 * `<pad>`, `<mask>`, `<2mass>`, `[@BOS@]`, `<|…|>`, `<｜…｜>` (full-width bars) and `<unused…>`.
 */
export function looksSpecial(text: string): boolean {
  if (text === "<pad>" || text === "<mask>" || text === "<2mass>" || text === "[@BOS@]") return true;
  if (text.startsWith("<|") && text.endsWith("|>")) return true;
  if (text.startsWith("<\uff5c") && text.endsWith("\uff5c>")) return true;
  if (text.startsWith("<unused") && text.endsWith(">")) return true;
  return false;
}

/** The converter's TextModel hparams: config.json with `text_config` merged over the root. */
export function textHparams(config: JsonObject | undefined): JsonObject {
  if (!config) return {};
  const tc = config["text_config"];
  return isObject(tc) ? { ...config, ...tc } : config;
}

/** SpecialVocab type → GGUFVocab.special key (= the tokenizer.ggml.<key>_token_id spelling). */
export const SPECIAL_KEY: Partial<Record<SpecialType, keyof SpecialTokens>> = {
  bos: "bos",
  eos: "eos",
  unk: "unknown",
  sep: "seperator",
  pad: "padding",
  mask: "mask",
  eot: "eot",
  eom: "eom",
};

/** Copy what SpecialVocab found onto a vocab, keeping the discovery order. */
export function applySpecialVocab(v: GGUFVocab, sv: SpecialVocabResult): void {
  // (merges.txt's merges stay bytes until read: utf8-strings.ts defineLazyStrings)
  const mb = sv.mergeBytes;
  if (mb) {
    if (mb.length > 0) defineLazyStrings(v, "merges", "mergeBytes", mb);
  } else if (sv.merges.length > 0) v.merges = sv.merges;
  const order: (keyof SpecialTokens)[] = [];
  for (const [typ, id] of sv.ids) {
    const key = SPECIAL_KEY[typ];
    if (!key) continue;
    v.special[key] = id;
    order.push(key);
  }
  v.specialOrder = order;
  const addOrder: ("bos" | "eos" | "sep")[] = [];
  for (const [typ, val] of sv.add) {
    if (typ === "bos") v.addBos = val;
    else if (typ === "eos") v.addEos = val;
    else v.addSep = val;
    addOrder.push(typ);
  }
  v.addOrder = addOrder;
  const ct = sv.chatTemplate;
  if (typeof ct === "string") v.chatTemplate = ct;
  else if (Array.isArray(ct)) {
    // GGUFWriter.add_chat_template: names sanitized to [A-Za-z0-9_]; "default" → tokenizer.chat_template
    const named: { name: string; template: string }[] = [];
    for (const choice of ct) {
      const rawName = isObject(choice) && typeof choice.name === "string" ? choice.name : "";
      const template = isObject(choice) ? choice.template : undefined;
      const name = rawName.replace(/[^A-Za-z0-9]/g, "_");
      if (!name || template === undefined || template === null) continue;
      if (typeof template !== "string") continue;
      if (name === "default") v.chatTemplate = template;
      else named.push({ name, template });
    }
    if (named.length > 0) v.chatTemplates = named;
  }
  if (sv.normalizerLowercase !== undefined) v.normalizerLowercase = sv.normalizerLowercase;
  if (sv.normalizerStripAccents !== undefined) v.normalizerStripAccents = sv.normalizerStripAccents;
}
