/**
 * general.* metadata the way llama.cpp's converter fills it (gguf-py `metadata.py` Metadata.load,
 * apply_metadata_heuristic, set_gguf_meta_model; conversion/base.py prepare_metadata):
 *
 *   model card (README.md YAML front matter) → config.json `_name_or_path` → folder name, each only
 *   filling what is still unknown; sampling defaults from generation_config.json; then the
 *   `--metadata FILE.json` override (llama.cpp key names); then `--model-name`. A size label is computed
 *   from the parameter count when none was found.
 *
 * Also `--override-kv KEY=TYPE:VALUE` (llama.cpp's common/arg syntax: int, float, bool, str).
 * Inputs are untrusted: files are size-capped, the YAML subset parser is depth-capped, and values of an
 * unexpected kind are ignored rather than written.
 */
import { stat } from "node:fs/promises";
import { readSmallFile } from "../formats/files.js";
import { modelFolderName } from "../formats/store.js";
import path from "node:path";
import { GgufyError, jsonErrorDetail } from "../errors.js";
import { GGUFValueType, kv, type GGUFKV, type GGUFScalarType } from "../formats/gguf/types.js";
import { idToTitle, modelIdComponents, sizeLabel } from "./naming.js";

/** Everything general.* that llama.cpp's Metadata class knows. Strings only where the GGUF key is a string. */
export interface ModelMetadata {
  name?: string;
  author?: string;
  version?: string;
  organization?: string;
  finetune?: string;
  basename?: string;
  description?: string;
  quantizedBy?: string;
  sizeLabel?: string;
  license?: string;
  licenseName?: string;
  licenseLink?: string;
  url?: string;
  doi?: string;
  uuid?: string;
  repoUrl?: string;
  sourceUrl?: string;
  sourceDoi?: string;
  sourceUuid?: string;
  sourceRepoUrl?: string;
  baseModels?: LinkedEntry[];
  datasets?: LinkedEntry[];
  tags?: string[];
  languages?: string[];
  sampling?: SamplingMetadata;
}

/** One general.base_model.{i}.* or general.dataset.{i}.* entry. */
export interface LinkedEntry {
  name?: string;
  author?: string;
  version?: string;
  organization?: string;
  description?: string;
  url?: string;
  doi?: string;
  uuid?: string;
  repo_url?: string;
}

export interface SamplingMetadata {
  sequence?: string;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  xtc_probability?: number;
  xtc_threshold?: number;
  temp?: number;
  penalty_last_n?: number;
  penalty_repeat?: number;
  mirostat?: number;
  mirostat_tau?: number;
  mirostat_eta?: number;
}

/** general.sampling.<key>: GGUF type of each (gguf_writer add_sampling_*). */
const SAMPLING_KEYS: readonly [keyof SamplingMetadata, "str" | "i32" | "f32", string][] = [
  ["sequence", "str", "sequence"],
  ["top_k", "i32", "top_k"],
  ["top_p", "f32", "top_p"],
  ["min_p", "f32", "min_p"],
  ["xtc_probability", "f32", "xtc_probability"],
  ["xtc_threshold", "f32", "xtc_threshold"],
  ["temp", "f32", "temperature"],
  ["penalty_last_n", "i32", "penalty_last_n"],
  ["penalty_repeat", "f32", "penalty_repeat"],
  ["mirostat", "i32", "mirostat"],
  ["mirostat_tau", "f32", "mirostat_tau"],
  ["mirostat_eta", "f32", "mirostat_eta"],
];

/** Scalar string fields: metadata field → general.* key (also the --metadata override key). */
const STRING_FIELDS: readonly [keyof ModelMetadata, string][] = [
  ["name", "general.name"],
  ["author", "general.author"],
  ["version", "general.version"],
  ["organization", "general.organization"],
  ["finetune", "general.finetune"],
  ["basename", "general.basename"],
  ["description", "general.description"],
  ["quantizedBy", "general.quantized_by"],
  ["sizeLabel", "general.size_label"],
  ["license", "general.license"],
  ["licenseName", "general.license.name"],
  ["licenseLink", "general.license.link"],
  ["url", "general.url"],
  ["doi", "general.doi"],
  ["uuid", "general.uuid"],
  ["repoUrl", "general.repo_url"],
  ["sourceUrl", "general.source.url"],
  ["sourceDoi", "general.source.doi"],
  ["sourceUuid", "general.source.uuid"],
  ["sourceRepoUrl", "general.source.repo_url"],
];

const LINK_FIELDS: readonly (keyof LinkedEntry)[] = ["name", "author", "version", "organization", "description", "url", "doi", "uuid", "repo_url"];

/** Caps for untrusted inputs. */
const MAX_CARD_BYTES = 4 << 20;
const MAX_JSON_BYTES = 16 << 20;
const MAX_YAML_DEPTH = 64;

// ---- a YAML subset for model-card front matter ------------------------------------------------------

type Yaml = null | boolean | string | Yaml[] | { [k: string]: Yaml };

class YamlError extends Error {}

interface Line {
  indent: number;
  text: string;
  /** index in the raw line list (block scalars read raw lines) */
  raw: number;
}

/** Remove a trailing " # comment" that is outside quotes. */
function stripComment(s: string): string {
  let q: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) {
        if (q === "'" && s[i + 1] === "'") i++;
        else q = undefined;
      } else if (c === "\\" && q === '"') i++;
    } else if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:]/.test(s[i - 1]!))) q = c;
    else if (c === "#" && (i === 0 || /\s/.test(s[i - 1]!))) return s.slice(0, i).trimEnd();
  }
  return s.trimEnd();
}

/** PyYAML's YAML 1.1 resolution of a plain scalar, except that numbers stay text (they end up in strings). */
function plainScalar(s: string): Yaml {
  const t = s.trim();
  if (t === "" || t === "~" || /^(null|Null|NULL)$/.test(t)) return null;
  if (/^(true|True|TRUE|yes|Yes|YES|on|On|ON)$/.test(t)) return true;
  if (/^(false|False|FALSE|no|No|NO|off|Off|OFF)$/.test(t)) return false;
  return t;
}

function quotedScalar(t: string): string {
  if (t.startsWith("'")) {
    if (!t.endsWith("'") || t.length < 2) throw new YamlError("unterminated single-quoted string");
    return t.slice(1, -1).replace(/''/g, "'");
  }
  if (!t.endsWith('"') || t.length < 2) throw new YamlError("unterminated double-quoted string");
  try {
    return JSON.parse(t.replace(/\\x([0-9a-fA-F]{2})/g, "\\u00$1").replace(/\t/g, "\\t")) as string;
  } catch {
    return t.slice(1, -1);
  }
}

/** A flow value: [a, b], {k: v}, a quoted or plain scalar. */
function flowValue(src: string, depth: number): Yaml {
  if (depth > MAX_YAML_DEPTH) throw new YamlError("nesting too deep");
  const t = src.trim();
  if (t.startsWith("[") || t.startsWith("{")) {
    const close = t[0] === "[" ? "]" : "}";
    if (!t.endsWith(close)) throw new YamlError(`unterminated flow collection`);
    const items = splitFlow(t.slice(1, -1));
    if (close === "]") return items.filter((x) => x.trim() !== "").map((x) => flowValue(x, depth + 1));
    const out: { [k: string]: Yaml } = {};
    for (const it of items) {
      if (it.trim() === "") continue;
      const [k, v] = splitKey(it);
      if (k === undefined) throw new YamlError("bad flow mapping entry");
      out[k] = v === "" ? null : flowValue(v, depth + 1);
    }
    return out;
  }
  if (t.startsWith('"') || t.startsWith("'")) return quotedScalar(t);
  return plainScalar(t);
}

/** Split a flow collection's inside at top-level commas. */
function splitFlow(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let q: string | undefined;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) {
        if (q === "'" && s[i + 1] === "'") i++;
        else q = undefined;
      } else if (c === "\\" && q === '"') i++;
      continue;
    }
    if (c === '"' || c === "'") q = c;
    else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** "key: value" → [key, value]; [undefined, …] when the text is not a mapping entry. */
function splitKey(text: string): [string | undefined, string] {
  const t = text.trim();
  if (t.startsWith('"') || t.startsWith("'")) {
    const q = t[0]!;
    let i = 1;
    for (; i < t.length; i++) {
      if (t[i] === "\\" && q === '"') i++;
      else if (t[i] === q) {
        if (q === "'" && t[i + 1] === "'") i++;
        else break;
      }
    }
    const after = t.slice(i + 1);
    const m = /^\s*:(\s|$)/.exec(after);
    if (!m) return [undefined, t];
    return [quotedScalar(t.slice(0, i + 1)), after.slice(m[0].length).trim()];
  }
  if (t.startsWith("[") || t.startsWith("{") || t.startsWith("- ") || t === "-") return [undefined, t];
  const m = /^([^#]*?)\s*:(\s+|$)/.exec(t);
  if (!m || m[1] === "") return [undefined, t];
  return [m[1]!, t.slice(m[0].length).trim()];
}

class YamlBlockParser {
  private readonly lines: Line[] = [];
  private pos = 0;
  constructor(private readonly raw: string[]) {
    raw.forEach((l, i) => {
      const indent = /^ */.exec(l)![0].length;
      const text = l.slice(indent);
      if (text === "" || text.startsWith("#")) return;
      this.lines.push({ indent, text, raw: i });
    });
  }

  parse(): Yaml {
    if (this.lines.length === 0) return null;
    const v = this.node(this.lines[0]!.indent, 0);
    if (this.pos < this.lines.length) throw new YamlError(`unexpected indentation at line ${this.lines[this.pos]!.raw + 1}`);
    return v;
  }

  private node(indent: number, depth: number): Yaml {
    if (depth > MAX_YAML_DEPTH) throw new YamlError("nesting too deep");
    const l = this.lines[this.pos];
    if (!l || l.indent !== indent) return null;
    if (l.text === "-" || l.text.startsWith("- ")) return this.sequence(indent, depth);
    if (splitKey(l.text)[0] !== undefined) return this.mapping(indent, depth);
    // a scalar or flow value, possibly continued on more-indented lines
    this.pos++;
    let text = stripComment(l.text);
    while (this.lines[this.pos] && this.lines[this.pos]!.indent >= indent && !this.startsEntry(this.lines[this.pos]!)) {
      text += " " + stripComment(this.lines[this.pos]!.text);
      this.pos++;
    }
    return flowValue(text, depth);
  }

  private startsEntry(l: Line): boolean {
    return l.text === "-" || l.text.startsWith("- ") || splitKey(l.text)[0] !== undefined;
  }

  private sequence(indent: number, depth: number): Yaml[] {
    const out: Yaml[] = [];
    for (;;) {
      const l = this.lines[this.pos];
      if (!l || l.indent !== indent || !(l.text === "-" || l.text.startsWith("- "))) break;
      const rest = l.text === "-" ? "" : l.text.slice(1);
      const restTrim = rest.trimStart();
      if (restTrim === "" || restTrim.startsWith("#")) {
        this.pos++;
        const next = this.lines[this.pos];
        out.push(next && next.indent > indent ? this.node(next.indent, depth + 1) : null);
        continue;
      }
      // "- key: value" (a mapping item) or "- - x" (a nested sequence): re-read the rest as its own line
      const inner: Line = { indent: indent + 1 + (rest.length - restTrim.length), text: restTrim, raw: l.raw };
      if (this.startsEntry(inner)) {
        this.lines[this.pos] = inner;
        out.push(this.node(inner.indent, depth + 1));
        continue;
      }
      this.pos++;
      out.push(this.inlineValue(restTrim, indent, depth, l.raw));
    }
    return out;
  }

  private mapping(indent: number, depth: number): { [k: string]: Yaml } {
    const out: { [k: string]: Yaml } = {};
    for (;;) {
      const l = this.lines[this.pos];
      if (!l || l.indent !== indent) break;
      const [key, value] = splitKey(l.text);
      if (key === undefined) throw new YamlError(`expected a key at line ${l.raw + 1}`);
      this.pos++;
      const v = stripComment(value);
      if (v === "") {
        const next = this.lines[this.pos];
        if (next && next.indent > indent) out[key] = this.node(next.indent, depth + 1);
        else if (next && next.indent === indent && (next.text === "-" || next.text.startsWith("- "))) out[key] = this.sequence(indent, depth + 1);
        else out[key] = null;
      } else out[key] = this.inlineValue(value, indent, depth, l.raw);
    }
    return out;
  }

  /** The value after "key:" or "- ": block scalar, flow collection (maybe multi-line), or scalar. */
  private inlineValue(value: string, indent: number, depth: number, rawIndex: number): Yaml {
    const v = stripComment(value);
    if (/^[|>][+-]?\d*$/.test(v)) {
      // block scalar: raw lines until one is indented no deeper than the key
      const parts: string[] = [];
      let i = rawIndex + 1;
      let blockIndent: number | undefined;
      for (; i < this.raw.length; i++) {
        const r = this.raw[i]!;
        const ind = /^ */.exec(r)![0].length;
        if (r.trim() === "") {
          parts.push("");
          continue;
        }
        if (ind <= indent) break;
        blockIndent ??= ind;
        parts.push(r.slice(Math.min(ind, blockIndent)));
      }
      while (this.pos < this.lines.length && this.lines[this.pos]!.raw < i) this.pos++;
      while (parts.length && parts[parts.length - 1] === "") parts.pop();
      return v.startsWith("|") ? parts.join("\n") + "\n" : parts.join(" ").replace(/ *\n */g, "\n") + "\n";
    }
    let text = v;
    if ((text.startsWith("[") || text.startsWith("{")) && !balanced(text)) {
      while (this.pos < this.lines.length && !balanced(text)) text += " " + stripComment(this.lines[this.pos++]!.text);
    } else if (!text.startsWith("[") && !text.startsWith("{")) {
      // plain or quoted scalars may continue on deeper lines
      while (this.lines[this.pos] && this.lines[this.pos]!.indent > indent && !this.startsEntry(this.lines[this.pos]!)) text += " " + stripComment(this.lines[this.pos++]!.text);
    }
    return flowValue(text, depth + 1);
  }
}

function balanced(s: string): boolean {
  let d = 0;
  let q: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) q = undefined;
      else if (c === "\\" && q === '"') i++;
    } else if (c === '"' || c === "'") q = c;
    else if (c === "[" || c === "{") d++;
    else if (c === "]" || c === "}") d--;
  }
  return d <= 0;
}

/** Parse YAML front matter text (the subset model cards use). Throws YamlError on what it cannot read. */
export function parseFrontMatterYaml(text: string): Yaml {
  // gguf-py's own fixes: the "Norway problem" for `- no` list items, and tabs used as indentation
  const fixed = text.replace(/- no\n/g, '- "no"\n').replace(/\t/g, "  ");
  return new YamlBlockParser(fixed.split("\n")).parse();
}

/** Python str.splitlines() separators. */
const SPLITLINES = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;

/**
 * The model card's front matter as an object (gguf-py load_model_card): README.md must start with a
 * line "---"; the YAML runs to the next "---" line. Anything else, or YAML that is not a mapping, gives {}.
 */
export async function loadModelCard(dir: string): Promise<Record<string, Yaml>> {
  const file = path.join(dir, "README.md");
  let text: string;
  try {
    // a model card, not a data dump: a FIFO, device or oversized README is ignored, never read
    text = (await readSmallFile(file, { cap: MAX_CARD_BYTES, what: "README.md", confine: true })).toString("utf8");
  } catch {
    return {};
  }
  return modelCardFrontMatter(text);
}

export function modelCardFrontMatter(text: string): Record<string, Yaml> {
  const lines = text.split(SPLITLINES);
  if (lines.length === 0 || lines[0] !== "---") return {};
  const yaml: string[] = [];
  for (const l of lines.slice(1)) {
    if (l === "---") break;
    yaml.push(l);
  }
  try {
    const data = parseFrontMatterYaml(yaml.join("\n") + "\n");
    return data !== null && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch (e) {
    if (e instanceof YamlError || e instanceof RangeError) return {}; // unreadable front matter: no card metadata
    throw e;
  }
}

async function readJsonObject(file: string, what: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    const st = await stat(file);
    if (st.size > MAX_JSON_BYTES) throw new GgufyError(required ? "E_USAGE" : "E_CONFIG", `${what} is ${st.size} bytes (cap ${MAX_JSON_BYTES})`, { file });
    // checked again on the descriptor: a FIFO or device never blocks the read
    // a model-folder file (not --metadata, which the user names) must not link outside the folder
    text = (await readSmallFile(file, { code: required ? "E_USAGE" : "E_CONFIG", cap: MAX_JSON_BYTES, what, confine: !required })).toString("utf8");
  } catch (e) {
    if (e instanceof GgufyError && (required || !/not a regular file|links outside/.test(e.detail))) throw e;
    if (!required) return undefined;
    throw new GgufyError("E_USAGE", `cannot read ${what}: ${(e as Error).message}`, { file });
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    if (!required) return undefined; // gguf-py ignores an invalid generation_config.json
    throw new GgufyError("E_USAGE", `${what} is not valid JSON: ${jsonErrorDetail(text, e)}`, { file });
  }
  if (j === null || typeof j !== "object" || Array.isArray(j)) {
    if (!required) return undefined;
    throw new GgufyError("E_USAGE", `${what} must be a JSON object`, { file });
  }
  return j as Record<string, unknown>;
}

/** --metadata FILE.json: llama.cpp key names ("general.name", "general.tags", "general.base_models" …). */
export async function loadMetadataOverride(file: string): Promise<Record<string, unknown>> {
  return (await readJsonObject(path.resolve(file), "the --metadata file", true))!;
}

// ---- the heuristics --------------------------------------------------------------------------------

function asString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

function asStringList(v: unknown): string[] | undefined {
  if (typeof v === "string") return [v];
  if (!Array.isArray(v)) return undefined;
  return v.map(asString).filter((s): s is string => s !== undefined);
}

/** A base model or dataset reference: "org/name", a URL, or an object with the entry's fields. */
function linkedEntry(id: unknown, totalParams: number): LinkedEntry | undefined {
  if (id !== null && typeof id === "object" && !Array.isArray(id)) {
    const o = id as Record<string, unknown>;
    const e: LinkedEntry = {};
    for (const f of LINK_FIELDS) {
      const s = asString(o[f]);
      if (s !== undefined) e[f] = s;
    }
    return e;
  }
  if (typeof id !== "string") return undefined;
  const e: LinkedEntry = {};
  const fill = (modelId: string, withRepo: boolean): void => {
    const c = modelIdComponents(modelId, totalParams);
    if (c.fullName !== undefined) e.name = idToTitle(c.fullName);
    if (c.organization !== undefined) e.organization = idToTitle(c.organization);
    if (c.version !== undefined) e.version = c.version;
    if (withRepo && c.organization !== undefined && c.fullName !== undefined) e.repo_url = `https://huggingface.co/${c.organization}/${c.fullName}`;
  };
  if (/^(https?|ssh):\/\//.test(id)) {
    e.repo_url = id;
    if (id.includes("huggingface.co")) {
      const m = /^https?:\/\/huggingface.co\/([^/]+\/[^/]+)$/.exec(id);
      if (m) fill(m[1]!, false);
    }
  } else fill(id, true);
  return e;
}

export interface MetadataInput {
  /** the model folder (README.md, generation_config.json; its name is the last fallback) */
  dir: string;
  /** config.json, for `_name_or_path` */
  config?: Record<string, unknown>;
  /** parameters of the language model (for size labels and to tell sizes from context lengths) */
  totalParams: number;
  /** MoE: shared and per-expert parameters and the expert count (gguf_writer.get_total_parameter_count), for "8x7B"-style labels */
  expertParams?: ExpertParamCounts;
  /** --metadata: a file path or an already-parsed object with llama.cpp key names */
  metadata?: string | Record<string, unknown>;
  /** --model-name */
  modelName?: string;
  /** read README.md and generation_config.json (default true); false gives the folder-name heuristics only */
  readFiles?: boolean;
}

/** Fill `md` fields that are still unset from an id ("org/Model-7B-Instruct-v2" or a folder name). */
function applyIdHeuristics(md: ModelMetadata, modelId: string, totalParams: number): void {
  const c = modelIdComponents(modelId, totalParams);
  if (md.name === undefined && c.fullName !== undefined) md.name = idToTitle(c.fullName);
  if (md.organization === undefined && c.organization !== undefined) md.organization = idToTitle(c.organization);
  if (md.basename === undefined && c.basename !== undefined) md.basename = c.basename;
  if (md.finetune === undefined && c.finetune !== undefined) md.finetune = c.finetune;
  if (md.version === undefined && c.version !== undefined) md.version = c.version;
  if (md.sizeLabel === undefined && c.sizeLabel !== undefined) md.sizeLabel = c.sizeLabel;
}

/** Model-card heuristics (apply_metadata_heuristic, first part). */
function applyModelCard(md: ModelMetadata, card: Record<string, Yaml>, totalParams: number): void {
  const use = (field: keyof ModelMetadata, key: string): void => {
    if (key in card && md[field] === undefined) {
      const v = card[key];
      if (field === "license" && Array.isArray(v)) {
        const l = asStringList(v);
        if (l) md.license = l.join(",");
        return;
      }
      const s = asString(v);
      if (s !== undefined) (md as Record<string, unknown>)[field] = s;
    }
  };
  for (const prefix of ["", "model_"]) {
    use("name", `${prefix}name`);
    use("author", `${prefix}author`);
    use("version", `${prefix}version`);
    use("organization", `${prefix}organization`);
    use("description", `${prefix}description`);
    use("finetune", `${prefix}finetune`);
    use("basename", `${prefix}basename`);
    use("sizeLabel", `${prefix}size_label`);
    use("sourceUrl", `${prefix}url`);
    use("sourceDoi", `${prefix}doi`);
    use("sourceUuid", `${prefix}uuid`);
    use("sourceRepoUrl", `${prefix}repo_url`);
  }
  use("name", "model_name");
  use("author", "model_creator");
  use("basename", "model_type");
  const linked = (keys: readonly string[], field: "baseModels" | "datasets"): void => {
    if (!keys.some((k) => k in card)) return;
    const first = keys.map((k) => card[k]).find((v) => v !== undefined);
    const ids = first === null || first === undefined ? [] : Array.isArray(first) ? first : [first];
    const list = (md[field] ??= []);
    for (const id of ids) {
      const e = linkedEntry(id, totalParams);
      if (e) list.push(e);
    }
  };
  linked(["base_model", "base_models", "base_model_sources"], "baseModels");
  linked(["datasets", "dataset", "dataset_sources"], "datasets");
  use("license", "license");
  use("licenseName", "license_name");
  use("licenseLink", "license_link");
  const appendList = (field: "tags" | "languages", key: string): void => {
    const l = asStringList(card[key]);
    if (l === undefined) return;
    md[field] = [...(md[field] ?? []), ...l];
  };
  appendList("tags", "tags");
  appendList("tags", "pipeline_tag");
  appendList("languages", "languages");
  appendList("languages", "language");
}

function num(v: unknown, integer: boolean): number | undefined {
  if (typeof v !== "number" || !Number.isFinite(v)) return undefined;
  if (integer && !Number.isInteger(v)) return undefined;
  return v;
}

/**
 * Sampling defaults: from generation_config.json (its own key names; `penalty_repeat` falls back to
 * `repetition_penalty`) or from the override (general.sampling.* keys). A present null clears the value.
 */
function applySampling(md: ModelMetadata, src: Record<string, unknown>, fromOverride: boolean): void {
  for (const [field, ty, genKey] of SAMPLING_KEYS) {
    let key = fromOverride ? `general.sampling.${field}` : genKey;
    if (!fromOverride && field === "penalty_repeat" && !(key in src)) key = "repetition_penalty";
    if (!(key in src)) continue;
    const v = src[key];
    const s = (md.sampling ??= {});
    if (v === null) {
      delete s[field];
      continue;
    }
    const x = ty === "str" ? asString(v) : num(v, ty === "i32");
    if (x !== undefined) (s as Record<string, unknown>)[field] = x;
  }
}

/** The --metadata override (Metadata.load, after the heuristics): present keys win, null clears. */
function applyOverride(md: ModelMetadata, o: Record<string, unknown>, totalParams: number): void {
  applySampling(md, o, true);
  for (const [field, key] of STRING_FIELDS) {
    if (!(key in o)) continue;
    const v = o[key];
    if (v === null) delete md[field];
    else if (field === "license" && Array.isArray(v)) md.license = asStringList(v)!.join(",");
    else {
      const s = asString(v);
      if (s === undefined) throw new GgufyError("E_USAGE", `--metadata: ${key} must be a string`);
      (md as Record<string, unknown>)[field] = s;
    }
  }
  for (const [key, field] of [["general.base_models", "baseModels"], ["general.datasets", "datasets"]] as const) {
    if (!(key in o)) continue;
    const v = o[key];
    if (v === null) delete md[field];
    else if (!Array.isArray(v)) throw new GgufyError("E_USAGE", `--metadata: ${key} must be a list`);
    else md[field] = v.map((x) => linkedEntry(x, totalParams)).filter((e): e is LinkedEntry => e !== undefined);
  }
  for (const [key, field] of [["general.tags", "tags"], ["general.languages", "languages"]] as const) {
    if (!(key in o)) continue;
    const v = o[key];
    if (v === null) delete md[field];
    else {
      const l = asStringList(v);
      if (l === undefined) throw new GgufyError("E_USAGE", `--metadata: ${key} must be a list of strings`);
      md[field] = l;
    }
  }
}

/** Metadata.load + prepare_metadata's fallbacks (name = folder name, computed size label). */
export async function loadMetadata(input: MetadataInput): Promise<ModelMetadata> {
  const dir = path.resolve(input.dir);
  const readFiles = input.readFiles ?? true;
  const md: ModelMetadata = {};
  if (readFiles) applyModelCard(md, await loadModelCard(dir), input.totalParams);
  const nameOrPath = input.config?.["_name_or_path"];
  if (typeof nameOrPath === "string" && (nameOrPath.match(/\//g)?.length ?? 0) <= 1) applyIdHeuristics(md, nameOrPath, input.totalParams);
  applyIdHeuristics(md, modelFolderName(dir), input.totalParams);
  if (readFiles) {
    const gen = await readJsonObject(path.join(dir, "generation_config.json"), "generation_config.json", false);
    if (gen) applySampling(md, gen, false);
  }
  if (input.metadata !== undefined) {
    const o = typeof input.metadata === "string" ? await loadMetadataOverride(input.metadata) : input.metadata;
    applyOverride(md, o, input.totalParams);
  }
  if (input.modelName !== undefined) md.name = input.modelName;
  return finishMetadata(md, dir, input.totalParams, input.expertParams);
}

/** Synchronous variant from the folder name alone (for callers that plan one file by hand). */
export function metadataFromFolder(dir: string, totalParams: number, modelName?: string): ModelMetadata {
  const md: ModelMetadata = {};
  applyIdHeuristics(md, path.basename(path.resolve(dir)), totalParams);
  if (modelName !== undefined) md.name = modelName;
  return finishMetadata(md, dir, totalParams);
}

export interface ExpertParamCounts {
  shared: number;
  expert: number;
  count: number;
}

function finishMetadata(md: ModelMetadata, dir: string, totalParams: number, e?: ExpertParamCounts): ModelMetadata {
  md.name ??= modelFolderName(dir);
  // conversion/base.py prepare_metadata: gguf.size_label(total, shared, expert, expert_count)
  if (md.sizeLabel === undefined && totalParams > 0) md.sizeLabel = e && e.count > 0 ? sizeLabel(totalParams, e.shared, e.expert, e.count) : sizeLabel(totalParams);
  return md;
}

/** set_gguf_meta_model: general.sampling.*, name … languages, in llama.cpp's order. Empty strings/lists are skipped like gguf-py. */
export function metadataKvs(md: ModelMetadata): GGUFKV[] {
  const out: GGUFKV[] = [];
  const str = (key: string, v: string | undefined): void => {
    if (v !== undefined && v !== "") out.push(kv.str(key, v));
  };
  for (const [field, ty] of SAMPLING_KEYS) {
    const v = md.sampling?.[field];
    if (v === undefined) continue;
    const key = `general.sampling.${field}`;
    if (ty === "str") str(key, v as string);
    else if (ty === "i32") out.push(kv.i32(key, v as number));
    else out.push(kv.f32(key, v as number));
  }
  // gguf-py asserts a name is set (add_string still skips an empty one)
  str("general.name", md.name);
  for (const [field, key] of STRING_FIELDS) {
    if (field === "name") continue;
    str(key, md[field] as string | undefined);
  }
  for (const [list, prefix] of [[md.baseModels, "general.base_model"], [md.datasets, "general.dataset"]] as const) {
    if (list === undefined) continue;
    out.push(kv.u32(`${prefix}.count`, list.length));
    list.forEach((e, i) => {
      for (const f of LINK_FIELDS) str(`${prefix}.${i}.${f}`, e[f]);
    });
  }
  if (md.tags?.length) out.push(kv.strs("general.tags", md.tags));
  if (md.languages?.length) out.push(kv.strs("general.languages", md.languages));
  return out;
}

// ---- --override-kv ---------------------------------------------------------------------------------

/** One `--override-kv KEY=TYPE:VALUE` (llama.cpp common string_parse_kv_override). */
export interface KvOverride {
  key: string;
  type: "int" | "float" | "bool" | "str";
  value: number | bigint | boolean | string;
}

/** Parse `KEY=TYPE:VALUE` with TYPE one of int, float, bool (true|false), str. */
export function parseKvOverride(s: string): KvOverride {
  const eq = s.indexOf("=");
  if (eq <= 0 || eq >= 128) throw new GgufyError("E_USAGE", `--override-kv ${s}: expected KEY=TYPE:VALUE (key of 1–127 characters)`);
  const key = s.slice(0, eq);
  const rest = s.slice(eq + 1);
  const colon = rest.indexOf(":");
  const type = colon > 0 ? rest.slice(0, colon) : "";
  const v = colon > 0 ? rest.slice(colon + 1) : "";
  switch (type) {
    case "int": {
      if (!/^[+-]?\d+$/.test(v.trim())) throw new GgufyError("E_USAGE", `--override-kv ${s}: '${v}' is not an integer`);
      const b = BigInt(v.trim());
      if (b < -(1n << 63n) || b >= 1n << 64n) throw new GgufyError("E_USAGE", `--override-kv ${s}: integer out of range`);
      return { key, type, value: b };
    }
    case "float": {
      const x = Number(v.trim());
      if (v.trim() === "" || !Number.isFinite(x)) throw new GgufyError("E_USAGE", `--override-kv ${s}: '${v}' is not a number`);
      return { key, type, value: x };
    }
    case "bool":
      if (v !== "true" && v !== "false") throw new GgufyError("E_USAGE", `--override-kv ${s}: a bool is true or false`);
      return { key, type, value: v === "true" };
    case "str":
      return { key, type, value: v };
    default:
      throw new GgufyError("E_USAGE", `--override-kv ${s}: type must be int, float, bool or str`);
  }
}

const INT_RANGE: Partial<Record<GGUFValueType, [bigint, bigint]>> = {
  [GGUFValueType.UINT8]: [0n, 255n],
  [GGUFValueType.INT8]: [-128n, 127n],
  [GGUFValueType.UINT16]: [0n, 65535n],
  [GGUFValueType.INT16]: [-32768n, 32767n],
  [GGUFValueType.UINT32]: [0n, 4294967295n],
  [GGUFValueType.INT32]: [-2147483648n, 2147483647n],
  [GGUFValueType.UINT64]: [0n, (1n << 64n) - 1n],
  [GGUFValueType.INT64]: [-(1n << 63n), (1n << 63n) - 1n],
};

/**
 * Resolve an override to a typed KV. A key that already exists keeps its GGUF type (llama.cpp's loader
 * checks types exactly), the value converted and range-checked; a new key gets llama-quantize's type for
 * the override kind: int → UINT32 (INT64 when negative or ≥ 2³²), float → FLOAT32, bool → BOOL, str → STRING.
 */
export function resolveKvOverride(o: KvOverride, existing?: GGUFKV): GGUFKV {
  const fail = (why: string): never => {
    throw new GgufyError("E_USAGE", `--override-kv ${o.key}: ${why}`);
  };
  if (o.key.startsWith("split.")) fail("split.* keys are written by the splitter");
  if (existing) {
    const t = existing.value.type;
    if (t === GGUFValueType.ARRAY) fail("cannot override an array");
    const range = INT_RANGE[t as GGUFValueType];
    if (range) {
      if (o.type !== "int") fail(`the key is an integer (${GGUFValueType[t]}), got ${o.type}`);
      const b = o.value as bigint;
      if (b < range[0] || b > range[1]) fail(`${b} does not fit ${GGUFValueType[t]}`);
      const big = t === GGUFValueType.UINT64 || t === GGUFValueType.INT64;
      return { key: o.key, value: { type: t as GGUFScalarType, value: big ? b : Number(b) } };
    }
    if (t === GGUFValueType.FLOAT32 || t === GGUFValueType.FLOAT64) {
      if (o.type !== "float" && o.type !== "int") fail(`the key is a ${GGUFValueType[t]}, got ${o.type}`);
      return { key: o.key, value: { type: t, value: Number(o.value) } };
    }
    if (t === GGUFValueType.BOOL && o.type !== "bool") fail(`the key is a BOOL, got ${o.type}`);
    if (t === GGUFValueType.STRING && o.type !== "str") fail(`the key is a STRING, got ${o.type}`);
  }
  switch (o.type) {
    case "int": {
      const b = o.value as bigint;
      if (b >= 0n && b <= 4294967295n) return kv.u32(o.key, Number(b));
      if (b < -(1n << 63n) || b > (1n << 63n) - 1n) fail(`${b} does not fit INT64`);
      return { key: o.key, value: { type: GGUFValueType.INT64, value: b } };
    }
    case "float":
      return kv.f32(o.key, o.value as number);
    case "bool":
      return kv.bool(o.key, o.value as boolean);
    case "str":
      return kv.str(o.key, o.value as string);
  }
}

/** the largest general.alignment ggufy writes (llama.cpp accepts any power of two; padding is zero-filled in memory) */
export const MAX_ALIGNMENT = 1 << 16;

/**
 * Keys that shape the file itself, not just its metadata, checked whichever way they are set:
 * - `general.alignment` (gguf.cpp gguf_init_from_file_impl: UINT32, non-zero power of two) sets where every
 *   tensor's data starts; ggufy lays the data out with it (writer.ts), up to MAX_ALIGNMENT;
 * - `split.no` / `split.count` / `split.tensors.count` are written by the splitter (llama-model-loader reads
 *   them to find the other parts): set by hand they would describe parts that do not exist;
 * - `general.architecture` prefixes every hyper-parameter key (`llama.block_count` …): another value
 *   would leave those keys unread.
 */
export function checkStructuralKv(o: GGUFKV, existing: GGUFKV | undefined, via: string): void {
  const fail = (why: string): never => {
    throw new GgufyError("E_USAGE", `${via} ${o.key}: ${why}`);
  };
  if (o.key.startsWith("split.")) fail("split.* keys are written by the splitter (use --split-max-size / --split-max-tensors)");
  if (o.key === "general.alignment") {
    if (o.value.type !== GGUFValueType.UINT32) fail(`must be a UINT32 (int), got ${GGUFValueType[o.value.type]}`);
    const a = Number(o.value.value);
    if (!Number.isInteger(a) || a < 1 || (a & (a - 1)) !== 0) fail(`${a} is not a power of two (llama.cpp refuses the file)`);
    if (a > MAX_ALIGNMENT) fail(`${a} is over ggufy's ${MAX_ALIGNMENT}-byte cap`);
  }
  if (o.key === "general.architecture" && existing && (o.value.type !== GGUFValueType.STRING || o.value.value !== existing.value.value)) {
    fail(`the file's keys are written for '${String(existing.value.value)}'; another architecture would leave them unread`);
  }
}

/** Apply typed overrides and --override-kv ones, last: existing keys are replaced in place, new ones appended. */
export function applyKvOverrides(kvs: GGUFKV[], typed: readonly GGUFKV[] = [], raw: readonly KvOverride[] = []): GGUFKV[] {
  const out = [...kvs];
  const put = (o: GGUFKV, via: string): void => {
    const i = out.findIndex((k) => k.key === o.key);
    checkStructuralKv(o, i >= 0 ? out[i] : undefined, via);
    if (i >= 0) out[i] = o;
    else out.push(o);
  };
  for (const o of typed) put(o, "override");
  for (const o of raw) put(resolveKvOverride(o, out.find((k) => k.key === o.key)), "--override-kv");
  return out;
}
