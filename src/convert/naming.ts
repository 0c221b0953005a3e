/**
 * The GGUF naming convention and its pieces, as gguf-py computes them (`utility.py`
 * model_weight_count_rounded_notation / size_label / naming_convention / fill_templated_filename and
 * `metadata.py` id_to_title / get_model_id_components), written for ggufy from llama.cpp v0.4.0's behaviour.
 *
 *   <BaseName>-<SizeLabel>-<FineTune>-<Version>-<Encoding>[-vocab|-LoRA].gguf
 */
import { statSync } from "node:fs";
import path from "node:path";
import { GgufyError } from "../errors.js";

/**
 * Python's `f"{x:.{digits}f}"`: the exact binary value rounded half to even. JavaScript's toFixed rounds
 * exact ties up instead, so ties are detected on the exact decimal expansion and settled like Python.
 */
export function pyFixed(x: number, digits: number): string {
  const s = x.toFixed(digits);
  if (!Number.isFinite(x)) return s;
  const exact = Math.abs(x).toFixed(100); // every double's expansion ends well within 100 digits at these magnitudes
  const dot = exact.indexOf(".");
  const rest = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(rest)) return s;
  // a tie: round the truncated value to even
  const kept = exact.slice(0, dot + 1 + digits).replace(/\.$/, "");
  const lastDigit = Number(kept.replace(".", "").slice(-1));
  if (lastDigit % 2 === 0) return (x < 0 ? "-" : "") + kept;
  return s;
}

/** Python's round() (half to even) for the magnitudes used here. */
function pyRound(x: number): number {
  return Number(pyFixed(x, 0));
}

/** gguf-py model_weight_count_rounded_notation: 7_615_616_512 → "7.6B", 494_032_768 → "494M", 260_000 → "260K". */
export function weightCountNotation(params: number, minDigits = 2): string {
  let scaled: number;
  let suffix: string;
  if (params >= 1e12) [scaled, suffix] = [params * 1e-12, "T"];
  else if (params >= 1e9) [scaled, suffix] = [params * 1e-9, "B"];
  else if (params >= 1e6) [scaled, suffix] = [params * 1e-6, "M"];
  else [scaled, suffix] = [params * 1e-3, "K"];
  const intDigits = String(pyRound(scaled)).replace(/^0+/, "").length;
  const fix = Math.max(minDigits - intDigits, 0);
  return `${pyFixed(scaled, fix)}${suffix}`;
}

/**
 * gguf-py size_label: the rounded parameter count, or `<experts>x<per-expert size>` for mixtures of
 * experts (shared + one expert's parameters).
 */
export function sizeLabel(totalParams: number, shared = totalParams, expertParams = 0, expertCount = 0): string {
  if (expertCount > 0) return `${expertCount}x${weightCountNotation(Math.abs(shared) + Math.abs(expertParams))}`;
  return weightCountNotation(Math.abs(totalParams));
}

/** Python str.title(): a cased letter is upper after a non-letter, lower after a letter. */
function pyTitle(w: string): string {
  let out = "";
  let prevCased = false;
  for (const ch of w) {
    const cased = ch.toLowerCase() !== ch.toUpperCase();
    out += cased ? (prevCased ? ch.toLowerCase() : ch.toUpperCase()) : ch;
    prevCased = cased;
  }
  return out;
}

/** Python str.islower(): at least one cased character and none upper case. */
function pyIsLower(w: string): boolean {
  let cased = false;
  for (const ch of w) {
    if (ch.toLowerCase() === ch.toUpperCase()) continue;
    cased = true;
    if (ch !== ch.toLowerCase()) return false;
  }
  return cased;
}

/** gguf-py Metadata.id_to_title: "qwen2.5-coder-7b" → "Qwen2.5 Coder 7b"; acronyms, versions and numbers kept. */
export function idToTitle(s: string): string {
  return s
    .trim()
    .replace(/-/g, " ")
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => (pyIsLower(w) && !/^(v\d+(?:\.\d+)*|\d.*)$/s.test(w) ? pyTitle(w) : w))
    .join(" ");
}

export interface ModelIdComponents {
  /** the model part of "org/model" (or the whole id) */
  fullName?: string;
  organization?: string;
  basename?: string;
  finetune?: string;
  version?: string;
  sizeLabel?: string;
}

const isAlpha = (c: string | undefined): boolean => c !== undefined && /^\p{L}$/u.test(c);
const isDecimal = (c: string | undefined): boolean => c !== undefined && /^\p{Nd}$/u.test(c);

/**
 * gguf-py Metadata.get_model_id_components: split a Hugging Face id ("Qwen/Qwen2.5-7B-Instruct") or a
 * folder name into base name, size label, fine-tune and version. `totalParams` (> 0) rejects size-like
 * parts far from the real size (e.g. "32k" context lengths, which become fine-tune parts, lower-cased).
 */
export function modelIdComponents(modelId: string | undefined, totalParams = 0): ModelIdComponents {
  if (modelId === undefined) return {};
  if (modelId.includes(" ")) return { fullName: modelId };
  let org: string | undefined;
  let full: string;
  const slash = modelId.indexOf("/");
  if (slash >= 0) {
    org = modelId.slice(0, slash);
    full = modelId.slice(slash + 1);
  } else full = modelId;
  if (org !== undefined && org.startsWith(".")) org = undefined;
  const parts = full.split("-").filter((p) => p.length > 0);
  const types = parts.map(() => new Set<"basename" | "size_label" | "finetune" | "version" | "type">());
  for (let i = 0; i < parts.length; i++) {
    let part = parts[i]!;
    const t = types[i]!;
    if (/^(v|iter)?\d+([.]\d+)*$/i.test(part)) {
      t.add("version");
    } else if (/^(i?q\d(_[\p{L}\p{N}_])*|b?fp?(16|32))$/iu.test(part)) {
      t.add("type");
      parts[i] = part.toUpperCase();
    } else if (i > 0 && /^(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$/i.test(part)) {
      part = part.replace(/_/g, ".");
      if (isDecimal(part.at(-1))) part = part.slice(0, -2) + "." + part.at(-1)! + part.at(-2)!; // bloom-7b1 → 7.1b
      if (part.length > 1 && isDecimal(part.at(-2)) && "kmbt".includes(part.at(-1)!)) part = part.slice(0, -1) + part.at(-1)!.toUpperCase();
      if (totalParams !== 0) {
        const num = part.slice(0, -1);
        // Python float(): a plain decimal number (ValueError otherwise: the label is used as is)
        if (/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(num)) {
          const labelParams = Number(num) * Math.pow(1000, " KMBT".indexOf(part.at(-1)!));
          const abs = Math.abs(totalParams);
          if ((totalParams < 0 && labelParams < Math.floor(abs / 8)) || (totalParams > 0 && Math.abs(labelParams - totalParams) > Math.floor((7 * totalParams) / 8))) {
            t.add("finetune"); // most likely a context length
            part = part.slice(0, -1) + part.at(-1)!.toLowerCase();
          }
        }
      }
      if (t.size === 0) t.add("size_label");
      parts[i] = part;
    } else if (i > 0 && /^(chat|instruct|vision|lora)$/i.test(part)) {
      if (totalParams < 0 && part.toLowerCase() === "lora") t.add("type");
      else t.add("finetune");
    }
  }
  // word-based size labels are dropped when a number-based one is present
  if (parts.some((p, i) => types[i]!.has("size_label") && [...p].some((c) => isDecimal(c)))) {
    parts.forEach((p, i) => {
      if (types[i]!.has("size_label") && [...p].every((c) => isAlpha(c))) types[i]!.delete("size_label");
    });
  }
  let atStart = true;
  parts.forEach((p, i) => {
    const t = types[i]!;
    if (atStart && ((t.size === 0 && isAlpha([...p][0])) || t.has("version"))) t.add("basename");
    else {
      atStart = false;
      if (t.size === 0) t.add("finetune");
    }
  });
  // a trailing version is not part of the base name
  for (let i = parts.length - 1; i >= 0; i--) {
    const t = types[i]!;
    if (t.has("basename") && t.size > 1) t.delete("basename");
    else break;
  }
  const pick = (k: "basename" | "size_label" | "finetune" | "version", exclude?: "basename"): string[] => parts.filter((_, i) => types[i]!.has(k) && !(exclude && types[i]!.has(exclude)));
  let basename: string | undefined = pick("basename").join("-") || undefined;
  const sizeLabel = [...new Set(pick("size_label"))].join("-") || undefined;
  const finetune = pick("finetune").join("-") || undefined;
  const version = pick("version", "basename").join("-") || undefined;
  if (sizeLabel === undefined && finetune === undefined && version === undefined) basename = undefined; // too ambiguous
  return {
    fullName: full,
    ...(org !== undefined ? { organization: org } : {}),
    ...(basename !== undefined ? { basename } : {}),
    ...(finetune !== undefined ? { finetune } : {}),
    ...(version !== undefined ? { version } : {}),
    ...(sizeLabel !== undefined ? { sizeLabel } : {}),
  };
}

export interface NameParts {
  /** general.name (used when there is no base name) */
  name?: string;
  /** general.basename */
  baseName?: string;
  sizeLabel?: string;
  fineTune?: string;
  version?: string;
  /** "Q4_K_M", "F16" … (upper-cased) */
  encoding?: string;
  /** "vocab" for --vocab-only files, "LoRA" for adapters */
  kind?: "vocab" | "LoRA";
}

/**
 * Longest file-name stem ggufy derives from metadata, in UTF-8 bytes. File names are at most 255 bytes
 * (NAME_MAX); the stem also carries a split suffix (`-00001-of-00002`, 15), `.gguf` and, while being
 * written, the temp name's `.` + `.ggufy-tmp-<pid>` (≤ 19).
 */
export const MAX_STEM_BYTES = 200;
/** a size label, fine-tune or version longer than this is cut (the base name gets what is left) */
const MAX_PART_BYTES = 40;

/**
 * Characters never allowed in a name part that came from a checkpoint, a model card, --metadata or
 * --model-name: path separators (both kinds), C0/DEL/C1 controls, line and paragraph separators, bidi
 * overrides and isolates (they make a name display as something else), and the characters Windows
 * refuses in file names.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_IN_NAME = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\ufeff/\\:*?"<>|]/gu;

function utf8Cut(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, "utf8") <= maxBytes) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch, "utf8");
    if (n + b > maxBytes) break;
    out += ch;
    n += b;
  }
  return out;
}

/**
 * One metadata-derived name part as it may appear in a file name: unsafe characters become `-`, lone
 * surrogates (not encodable) become U+FFFD, and the result is cut to `maxBytes` UTF-8 bytes. A part can
 * no longer contain a separator, so `..` inside it is only text ("x-..-..-escaped"), never a folder step.
 */
export function safeNamePart(s: string, maxBytes = MAX_PART_BYTES): string {
  const wellFormed = (s as string & { toWellFormed?: () => string }).toWellFormed?.() ?? s.replace(/[\ud800-\udfff]/g, "\ufffd");
  return utf8Cut(wellFormed.trim().replace(/ /g, "-").replace(UNSAFE_IN_NAME, "-"), maxBytes);
}

/**
 * gguf-py naming_convention: <BaseName>-<SizeLabel>-<FineTune>-<Version>-<Encoding>[-<Kind>] (no extension),
 * every part made safe for one path component (safeNamePart), the whole at most MAX_STEM_BYTES, and no
 * leading dot (which would hide the file). gguf-py replaces only "/" in the base name; the other parts
 * reached the file name raw (issue 15: `finetune: x/../../../escaped/pwned` wrote outside the folder).
 */
export function conventionalName(p: NameParts): string {
  const dash = (s: string | undefined, upper = false): string => (s !== undefined ? `-${safeNamePart(upper ? s.toUpperCase() : s)}` : "");
  const rest = `${p.sizeLabel !== undefined ? dash(p.sizeLabel) : ""}${dash(p.fineTune)}${dash(p.version)}${dash(p.encoding, true)}${dash(p.kind)}`;
  const budget = MAX_STEM_BYTES - Buffer.byteLength(rest, "utf8");
  const raw = p.baseName !== undefined ? p.baseName : p.name !== undefined ? p.name : "ggml-model";
  let name = safeNamePart(raw, budget).replace(/^[.-]+/, ""); // no hidden file, nothing that reads as an option
  if (name === "" || name === "-") name = "ggml-model";
  return `${name}${rest}`;
}

/** A single file-name component: not empty, not `.`/`..`, no separator, no control character. */
export function isSafeComponent(name: string): boolean {
  // eslint-disable-next-line no-control-regex
  return name !== "" && name !== "." && name !== ".." && !/[/\\\u0000-\u001f\u007f-\u009f]/.test(name) && Buffer.byteLength(name, "utf8") <= 255;
}

/**
 * The output path: the default name in the model folder, or what --outfile says. An existing folder (or
 * a path ending in a separator, which must then be an existing folder) gets the default name inside it;
 * otherwise the last component is a file name template ({ftype} …) in its folder. Either way the result is
 * one safe file name directly inside the folder the user chose (or the model folder), checked here.
 */
export function resolveOutputPath(modelDir: string, defaultFile: string, explicit: string | undefined, label: string, flag = "--outfile"): string {
  if (!explicit) return confined(path.resolve(modelDir), defaultFile);
  const isDir = (() => {
    try {
      return statSync(explicit).isDirectory();
    } catch {
      return false;
    }
  })();
  if (isDir) return confined(path.resolve(explicit), defaultFile);
  if (/[/\\]$/.test(explicit) || (path.sep === "/" && explicit.endsWith(path.sep))) {
    throw new GgufyError("E_USAGE", `${flag} ${explicit}: the folder does not exist (create it first, or drop the trailing separator to name a file)`, { file: path.resolve(explicit) });
  }
  const base = fillTemplatedFilename(path.basename(explicit), label);
  if (!isSafeComponent(base)) throw new GgufyError("E_USAGE", `${flag} ${explicit}: not a file name`, { file: path.resolve(explicit) });
  return confined(path.resolve(path.dirname(explicit)), base);
}

/** `dir/name`, after checking that it names a file directly inside `dir`. */
function confined(dir: string, name: string): string {
  const p = path.join(dir, name);
  if (!isSafeComponent(name) || path.dirname(p) !== dir) throw new GgufyError("E_USAGE", `output name '${name}' is not a single file name inside ${dir}`, { file: p });
  return p;
}

/**
 * gguf-py fill_templated_filename: "{ftype}"/"{outtype}" → lower-case type, "{FTYPE}"/"{OUTTYPE}" → upper case,
 * "{}" → lower case. Other braces are left alone (Python would raise).
 */
export function fillTemplatedFilename(name: string, outputType: string): string {
  const lower = outputType.toLowerCase();
  const upper = outputType.toUpperCase();
  return name.replace(/\{(ftype|outtype|FTYPE|OUTTYPE|)\}/g, (_, k: string) => (k === "FTYPE" || k === "OUTTYPE" ? upper : lower));
}
