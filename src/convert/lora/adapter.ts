/**
 * A PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`, as PEFT's
 * `PeftModel.save_pretrained` writes it), read typed and validated.
 *
 * Key layout (peft/utils/save_and_load.py:get_peft_model_state_dict): the module path of the wrapped
 * model under `base_model.model.`, then `lora_A.weight` / `lora_B.weight` for a Linear
 * (`lora_A.<adapter>.weight` when the state dict was saved without get_peft_model_state_dict removing
 * the adapter name), `lora_embedding_A` / `lora_embedding_B` (nn.Parameter, no `.weight`) for an
 * Embedding, and `modules_to_save` modules as their full parameters under the module path
 * (`…lm_head.weight`; `…lm_head.modules_to_save.<adapter>.weight` in an unfiltered state dict).
 *
 * The update PEFT adds (peft/tuners/lora/layer.py: Linear.get_delta_weight, Embedding.get_delta_weight):
 * Linear: ΔW = scale·B·A with A [r, in], B [out, r]; Embedding: ΔW = scale·(B·A)ᵀ with A [r, vocab],
 * B [hidden, r]; scale = α/r, or α/√r with `use_rslora` (LoraLayer.update_layer), where r and α are the
 * module's `rank_pattern` / `alpha_pattern` entries when one matches (peft/utils/other.py:get_pattern_key:
 * the first pattern key `k`, in insertion order, with `re.match(rf"(.*\.)?({k})$", module_name)`).
 *
 * Everything that changes that math and is not implemented here (DoRA, trainable LoRA biases, QALoRA,
 * layer replication, trainable tokens, activated LoRA, PiSSA/OLoRA/LoftQ initialisations that are
 * relative to a modified base …) is refused by name, never dropped.
 */
import path from "node:path";
import { GgufyError, brief, jsonErrorDetail } from "../../errors.js";
import { MissingFile, readSmallFile, SMALL_FILE_CAPS } from "../../formats/files.js";
import { FileReaderPool, readSafetensorsHeader, type StTensorInfo } from "../../formats/safetensors/index.js";
import { bf16RowToF32, f16RowToF32 } from "../../formats/half.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

/** One tensor of the adapter file (the safetensors reader's entry). */
export type TensorRef = StTensorInfo;

export interface LoraConfig {
  peftType: "LORA";
  /** default rank */
  r: number;
  /** default alpha */
  loraAlpha: number;
  useRslora: boolean;
  /** a list of module-name suffixes, a regex (Python fullmatch), "all-linear", or null (PEFT's per-model default) */
  targetModules: readonly string[] | string | null;
  excludeModules: readonly string[] | string | null;
  modulesToSave: readonly string[];
  /** pattern → rank, in insertion order */
  rankPattern: Readonly<Record<string, number>>;
  alphaPattern: Readonly<Record<string, number>>;
  layersToTransform: readonly number[] | null;
  layersPattern: readonly string[] | null;
  baseModelNameOrPath?: string;
  /**
   * activated LoRA (aLoRA): the adapter applies only from these token ids on. Only with
   * `{ allowAlora: true }` (a LoRA GGUF carries them; a merge cannot express them and refuses)
   */
  aloraInvocationTokens?: readonly number[];
  /** the parsed JSON as read */
  raw: Readonly<Record<string, unknown>>;
}

export interface LoraTarget {
  /** HF weight name in the base checkpoint, e.g. "model.layers.0.self_attn.q_proj.weight" */
  baseName: string;
  a: TensorRef;
  b: TensorRef;
  rank: number;
  alpha: number;
  /** alpha/r, or alpha/sqrt(r) with use_rslora, after rank_pattern/alpha_pattern */
  scale: number;
  /** lora_embedding_A/B: A is [r, vocab], B is [hidden, r] */
  embedding: boolean;
}

/** modules_to_save: a full replacement of the base tensor */
export interface LoraSaved {
  baseName: string;
  tensor: TensorRef;
}

export interface LoraAdapter {
  dir: string;
  /** the adapter's safetensors file */
  file: string;
  config: LoraConfig;
  targets: LoraTarget[];
  saved: LoraSaved[];
  /** read a tensor as float32 (row-major) */
  read(t: TensorRef): Promise<Float32Array>;
  close(): Promise<void>;
}

/** PEFT's PeftConfig / LoraConfig fields that do not change the merged weights (or only select modules). */
const HARMLESS_KEYS = new Set([
  "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version",
  "r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules", "exclude_modules", "modules_to_save",
  "rank_pattern", "alpha_pattern", "layers_to_transform", "layers_pattern", "init_lora_weights", "bias",
  "fan_in_fan_out", "use_dora", "lora_bias", "use_qalora", "qalora_group_size", "layer_replication",
  "megatron_config", "megatron_core", "loftq_config", "eva_config", "corda_config", "trainable_token_indices",
  "alora_invocation_tokens", "invocation_string", "target_parameters", "runtime_config", "arrow_config", "ensure_weight_tying",
]);

/** initialisations whose adapter is relative to the base as stored (only A/B were initialised) */
const PLAIN_INITS = new Set(["gaussian", "eva"]);

function isOff(v: unknown): boolean {
  return v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0) || (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
}

export interface OpenLoraOptions {
  /** accept `alora_invocation_tokens` (convert-lora writes them; everything that merges must not) */
  allowAlora?: boolean;
}

/** Parse and validate adapter_config.json's object (pure; `file` names it in errors). */
export function parseLoraConfig(j: unknown, file: string, opts: OpenLoraOptions = {}): LoraConfig {
  const bad = (detail: string): never => {
    throw new GgufyError("E_LORA", detail, { file });
  };
  if (j === null || typeof j !== "object" || Array.isArray(j)) bad("is not a JSON object");
  const c = j as Record<string, unknown>;
  if (c["peft_type"] !== "LORA") bad(`peft_type is ${brief(c["peft_type"])}; only "LORA" adapters are supported`);
  const r = c["r"];
  if (typeof r !== "number" || !Number.isSafeInteger(r) || r <= 0) bad(`r is ${brief(r)}, not a positive integer`);
  const alpha = c["lora_alpha"];
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) bad(`lora_alpha is ${brief(alpha)}, not a finite number`);
  const bool = (k: string): boolean => {
    const v = c[k];
    if (v === undefined || v === null) return false;
    if (typeof v !== "boolean") bad(`${k} is ${brief(v)}, not true or false`);
    return v as boolean;
  };
  const useRslora = bool("use_rslora");
  // options that change the math, refused by name
  if (bool("use_dora")) bad("use_dora is true: DoRA adapters (weight-decomposed LoRA, a per-row magnitude renormalisation) are not supported");
  if (bool("lora_bias")) bad("lora_bias is true: LoRA adapters with a trained lora_B bias are not supported");
  if (bool("use_qalora")) bad("use_qalora is true: QALoRA adapters (pooled inputs) are not supported");
  if (bool("fan_in_fan_out")) bad("fan_in_fan_out is true: adapters of transposed (Conv1D) weights are not supported");
  const bias = c["bias"];
  if (bias !== undefined && bias !== null && bias !== "none") bad(`bias is ${brief(bias)}: adapters that train the base biases ("all", "lora_only") are not supported, only "none"`);
  let alora: number[] | undefined;
  if (!isOff(c["alora_invocation_tokens"])) {
    const t = c["alora_invocation_tokens"];
    if (!opts.allowAlora) bad(`alora_invocation_tokens is ${brief(t)}: an activated LoRA (applied only after its invocation tokens) cannot be merged into the weights; ggufy convert-lora writes it as a LoRA GGUF`);
    if (!Array.isArray(t) || !t.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0 && x <= 0xffffffff)) bad(`alora_invocation_tokens is ${brief(t)}, not a list of token ids`);
    alora = t as number[];
  }
  if (!isOff(c["invocation_string"]) && alora === undefined) bad(`invocation_string is ${brief(c["invocation_string"])} without alora_invocation_tokens: ggufy does not tokenize it; add the token ids as alora_invocation_tokens`);
  for (const k of ["layer_replication", "megatron_config", "loftq_config", "trainable_token_indices", "target_parameters", "arrow_config"] as const) {
    if (!isOff(c[k])) bad(`${k} is ${brief(c[k])}: not supported (it changes what the adapter computes)`);
  }
  const init = c["init_lora_weights"];
  if (init !== undefined && init !== null && typeof init !== "boolean") {
    if (typeof init !== "string") bad(`init_lora_weights is ${brief(init)}, not a boolean or a string`);
    if (!PLAIN_INITS.has(init as string)) {
      bad(`init_lora_weights is ${brief(init)}: an adapter initialised this way (PiSSA, OLoRA, CorDA, LoftQ, orthogonal …) is relative to a modified base; save it converted to a plain LoRA (save_pretrained(path_initial_model_for_weight_conversion=…))`);
    }
  }
  for (const k of Object.keys(c)) {
    if (!HARMLESS_KEYS.has(k) && !isOff(c[k])) bad(`unknown option ${k} = ${brief(c[k])}: ggufy does not know whether it changes the adapter's math`);
  }
  const strList = (k: string, allowString: boolean): readonly string[] | string | null => {
    const v = c[k];
    if (v === undefined || v === null) return null;
    if (typeof v === "string" && allowString) return v;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) bad(`${k} is ${brief(v)}, not a list of module names${allowString ? " or a regular expression" : ""}`);
    return v as string[];
  };
  const targetModules = strList("target_modules", true);
  const excludeModules = strList("exclude_modules", true);
  const modulesToSave = (strList("modules_to_save", false) as readonly string[] | null) ?? [];
  const pattern = (k: string, integer: boolean): Record<string, number> => {
    const v = c[k];
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v)) bad(`${k} is ${brief(v)}, not an object`);
    const out: Record<string, number> = {};
    for (const [pk, pv] of Object.entries(v as Record<string, unknown>)) {
      if (typeof pv !== "number" || !Number.isFinite(pv) || (integer && (!Number.isSafeInteger(pv) || pv <= 0))) bad(`${k}["${pk}"] is ${brief(pv)}, not ${integer ? "a positive integer" : "a finite number"}`);
      compilePython(pk, `${k} key`, file);
      out[pk] = pv as number;
    }
    return out;
  };
  const rankPattern = pattern("rank_pattern", true);
  const alphaPattern = pattern("alpha_pattern", false);
  let layersToTransform: number[] | null = null;
  const lt = c["layers_to_transform"];
  if (lt !== undefined && lt !== null) {
    const arr = typeof lt === "number" ? [lt] : lt;
    if (!Array.isArray(arr) || !arr.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) bad(`layers_to_transform is ${brief(lt)}, not a layer index or a list of them`);
    layersToTransform = arr as number[];
  }
  let layersPattern: string[] | null = null;
  const lp = c["layers_pattern"];
  if (lp !== undefined && lp !== null) {
    const arr = typeof lp === "string" ? [lp] : lp;
    if (!Array.isArray(arr) || !arr.every((x) => typeof x === "string")) bad(`layers_pattern is ${brief(lp)}, not a string or a list of strings`);
    layersPattern = arr as string[];
  }
  if (typeof targetModules === "string" && targetModules !== "all-linear") compilePython(targetModules, "target_modules", file);
  if (typeof excludeModules === "string") compilePython(excludeModules, "exclude_modules", file);
  const base = c["base_model_name_or_path"];
  return {
    peftType: "LORA",
    r: r as number,
    loraAlpha: alpha as number,
    useRslora,
    targetModules,
    excludeModules,
    modulesToSave,
    rankPattern,
    alphaPattern,
    layersToTransform,
    layersPattern,
    ...(typeof base === "string" ? { baseModelNameOrPath: base } : {}),
    ...(alora ? { aloraInvocationTokens: alora } : {}),
    raw: c,
  };
}

/** A Python `re` pattern compiled as a JS RegExp (the common subset); refused by name when JS cannot compile it. */
function compilePython(p: string, what: string, file: string, wrap: (s: string) => string = (s) => s): RegExp {
  try {
    return new RegExp(wrap(p), "u");
  } catch (e) {
    throw new GgufyError("E_LORA", `${what} ${brief(p)} is not a regular expression ggufy can evaluate: ${(e as Error).message}`, { file });
  }
}

/** peft/utils/other.py:get_pattern_key — the first key k (insertion order) with re.match(rf"(.*\.)?({k})$", name). */
export function patternKey(keys: readonly string[], moduleName: string): string | undefined {
  for (const k of keys) if (new RegExp(`^(?:.*\\.)?(?:${k})$`, "u").test(moduleName)) return k;
  return undefined;
}

function matchesModuleList(spec: readonly string[] | string, name: string): boolean {
  if (typeof spec === "string") return new RegExp(`^(?:${spec})$`, "u").test(name);
  return spec.some((t) => name === t || name.endsWith("." + t));
}

/** The layer index PEFT reads for layers_to_transform (peft/tuners/tuners_utils.py:check_target_module_exists). */
function layerIndex(name: string, patterns: readonly string[] | null): number | undefined {
  const res = patterns === null ? [/^.*\.[^.]*\.(\d+)\./u] : patterns.map((p) => new RegExp(`^.*\\.(?:${p})\\.(\\d+)\\.`, "u"));
  for (const re of res) {
    const m = re.exec(name);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Whether PEFT would have put a LoRA layer on `moduleName` (the module path inside the transformers model). */
export function isTargeted(cfg: LoraConfig, moduleName: string): boolean {
  const t = cfg.targetModules;
  if (t !== null && t !== "all-linear" && !matchesModuleList(t, moduleName)) return false;
  if (cfg.excludeModules !== null && matchesModuleList(cfg.excludeModules, moduleName)) return false;
  if (cfg.layersToTransform !== null) {
    const i = layerIndex(moduleName, cfg.layersPattern);
    if (i === undefined || !cfg.layersToTransform.includes(i)) return false;
  }
  return true;
}

/** r, α and the scale PEFT uses for `moduleName` (LoraModel._create_and_replace, LoraLayer.update_layer). */
export function loraScale(cfg: LoraConfig, moduleName: string): { rank: number; alpha: number; scale: number } {
  const rk = patternKey(Object.keys(cfg.rankPattern), moduleName);
  const ak = patternKey(Object.keys(cfg.alphaPattern), moduleName);
  const rank = rk !== undefined ? cfg.rankPattern[rk]! : cfg.r;
  const alpha = ak !== undefined ? cfg.alphaPattern[ak]! : cfg.loraAlpha;
  return { rank, alpha, scale: cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}

type Kind = "A" | "B" | "embA" | "embB";

interface ParsedKey {
  module: string;
  kind: Kind;
  adapterName?: string;
}

const LORA_KEY = /^(.+)\.(lora_A|lora_B)(?:\.([^.]+))?\.weight$/u;
const EMB_KEY = /^(.+)\.(lora_embedding_A|lora_embedding_B)(?:\.([^.]+))?$/u;

function parseKey(key: string): ParsedKey | undefined {
  let m = LORA_KEY.exec(key);
  if (m) return { module: m[1]!, kind: m[2] === "lora_A" ? "A" : "B", ...(m[3] ? { adapterName: m[3] } : {}) };
  m = EMB_KEY.exec(key);
  if (m) return { module: m[1]!, kind: m[2] === "lora_embedding_A" ? "embA" : "embB", ...(m[3] ? { adapterName: m[3] } : {}) };
  return undefined;
}

const PREFIX = "base_model.model.";

/** The module path inside the transformers model: PEFT's `base_model.model.` wrapper prefix removed. */
function stripPrefix(key: string): string {
  return key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
}

/**
 * Open and validate an adapter folder. Nothing is read but the config and the safetensors header;
 * `read` reads one tensor when asked (positioned reads; `close()` releases the file).
 */
export async function openLoraAdapter(dir: string, opts: OpenLoraOptions = {}): Promise<LoraAdapter> {
  const absDir = path.resolve(dir);
  const cfgFile = path.join(absDir, ADAPTER_CONFIG);
  let text: string;
  try {
    text = (await readSmallFile(cfgFile, { code: "E_LORA", cap: SMALL_FILE_CAPS.config, what: ADAPTER_CONFIG, confine: true })).toString("utf8");
  } catch (e) {
    if (e instanceof MissingFile) throw new GgufyError("E_LORA", `${ADAPTER_CONFIG} is missing: not a PEFT adapter folder`, { file: cfgFile });
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GgufyError("E_LORA", `not valid JSON: ${jsonErrorDetail(text, e)}`, { file: cfgFile });
  }
  const file = path.join(absDir, ADAPTER_WEIGHTS);
  // DoRA: refused naming the first magnitude vector PEFT saved with it (the tensor llama.cpp could not use),
  // else by the config flag (parseLoraConfig)
  if (typeof json === "object" && json !== null && (json as Record<string, unknown>)["use_dora"] === true) {
    const h = await readSafetensorsHeader(file).catch(() => undefined);
    const mag = h && [...h.tensors.keys()].sort().find((n) => /\.lora_magnitude_vector(\.|$)/u.test(n));
    if (mag) throw new GgufyError("E_LORA", `a DoRA magnitude vector (${ADAPTER_CONFIG}: use_dora is true): DoRA adapters (weight-decomposed LoRA, a per-row magnitude renormalisation) are not supported`, { file, tensor: mag });
  }
  const config = parseLoraConfig(json, cfgFile, opts);
  let header;
  try {
    header = await readSafetensorsHeader(file);
  } catch (e) {
    if (e instanceof GgufyError && e.code === "E_IO" && /does not exist/.test(e.detail)) {
      throw new GgufyError("E_LORA", `${ADAPTER_WEIGHTS} is missing (an adapter_model.bin pickle is not read: re-save with safe_serialization=True)`, { file });
    }
    throw e;
  }
  const { targets, saved } = classify(config, [...header.tensors.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)), file);
  const pool = new FileReaderPool();
  return {
    dir: absDir,
    file,
    config,
    targets,
    saved,
    read: (t) => readTensor(pool, t),
    close: () => pool.close(),
  };
}

/** Pair the adapter's tensors into targets and modules_to_save, checking names, pairs, ranks and shapes. */
export function classify(config: LoraConfig, tensors: readonly TensorRef[], file: string): { targets: LoraTarget[]; saved: LoraSaved[] } {
  const refuse = (tensor: string, detail: string): never => {
    throw new GgufyError("E_LORA", detail, { file, tensor });
  };
  const pairs = new Map<string, { a?: TensorRef; b?: TensorRef; embedding: boolean }>();
  const saved: LoraSaved[] = [];
  let adapterName: string | undefined;
  for (const t of tensors) {
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") refuse(t.name, `dtype ${t.dtype} is not a float type (F32, F16, BF16)`);
    const key = stripPrefix(t.name);
    if (/\.lora_magnitude_vector(\.|$)/u.test(key)) refuse(t.name, "a DoRA magnitude vector: DoRA adapters are not supported");
    if (/\.lora_B(\.[^.]+)?\.bias$/u.test(key)) refuse(t.name, "a lora_B bias (lora_bias): not supported");
    const p = parseKey(key);
    if (!p) {
      const savedName = savedBaseName(config, key);
      if (savedName !== undefined) {
        if (saved.some((s) => s.baseName === savedName)) refuse(t.name, `a second replacement for modules_to_save tensor '${savedName}'`);
        saved.push({ baseName: savedName, tensor: t });
        continue;
      }
      if (/\.base_layer\.weight$/u.test(key)) refuse(t.name, "a base-layer weight inside the adapter: not a PEFT-saved adapter");
      refuse(t.name, `not a LoRA tensor (lora_A / lora_B / lora_embedding_A / lora_embedding_B) nor a module in modules_to_save ${brief(config.modulesToSave)}`);
    }
    const pk = p!;
    if (pk.adapterName !== undefined) {
      if (adapterName !== undefined && adapterName !== pk.adapterName) refuse(t.name, `holds adapter '${pk.adapterName}' as well as '${adapterName}': one adapter per folder`);
      adapterName = pk.adapterName;
    }
    const embedding = pk.kind === "embA" || pk.kind === "embB";
    let e = pairs.get(pk.module);
    if (!e) pairs.set(pk.module, (e = { embedding }));
    if (e.embedding !== embedding) refuse(t.name, "mixes lora_A/lora_B and lora_embedding_A/lora_embedding_B for one module");
    const isA = pk.kind === "A" || pk.kind === "embA";
    if (isA ? e.a : e.b) refuse(t.name, `a second lora_${isA ? "A" : "B"} for module '${pk.module}'`);
    if (isA) e.a = t;
    else e.b = t;
  }
  const targets: LoraTarget[] = [];
  for (const [module, e] of pairs) {
    if (!e.a || !e.b) refuse((e.a ?? e.b)!.name, `has no matching ${e.a ? "lora_B" : "lora_A"} tensor`);
    const a = e.a!;
    const b = e.b!;
    if (a.shape.length !== 2) refuse(a.name, `shape [${a.shape.join(", ")}] is not 2-D${a.shape.length === 4 ? " (LoRA on a convolution is not supported)" : ""}`);
    if (b.shape.length !== 2) refuse(b.name, `shape [${b.shape.join(", ")}] is not 2-D`);
    if (!isTargeted(config, module)) refuse(a.name, `module '${module}' is not selected by target_modules ${brief(config.targetModules)}${config.layersToTransform ? ` / layers_to_transform ${brief(config.layersToTransform)}` : ""}: PEFT would not load it`);
    const { rank, alpha, scale } = loraScale(config, module);
    // Linear: A [r, in], B [out, r]; Embedding: A [r, vocab], B [hidden, r] — the rank is A's rows and B's columns either way
    if (a.shape[0] !== rank) refuse(a.name, `rank mismatch: ${e.embedding ? "lora_embedding_A" : "lora_A"} has ${a.shape[0]} rows but the adapter's r${Object.keys(config.rankPattern).length ? " (after rank_pattern)" : ""} for '${module}' is ${rank}`);
    if (b.shape[1] !== rank) refuse(b.name, `rank mismatch: ${e.embedding ? "lora_embedding_B" : "lora_B"} has ${b.shape[1]} columns but the adapter's r for '${module}' is ${rank}`);
    if (a.shape[1]! === 0 || b.shape[0]! === 0) refuse(a.name, "has an empty dimension");
    targets.push({ baseName: `${module}.weight`, a, b, rank, alpha, scale, embedding: e.embedding });
  }
  return { targets, saved };
}

/**
 * The base name of a modules_to_save tensor: `<module>.<param>` (get_peft_model_state_dict's form) or
 * `<module>.modules_to_save.<adapter>.<param>` (an unfiltered state dict), where `<module>` ends with an entry
 * of modules_to_save (peft/utils/other.py:_set_trainable: `key.endswith(target_key)`, no dot boundary).
 */
function savedBaseName(cfg: LoraConfig, key: string): string | undefined {
  if (cfg.modulesToSave.length === 0) return undefined;
  const m = /^(.+)\.modules_to_save\.[^.]+\.([^.]+)$/u.exec(key);
  const [module, param] = m ? [m[1]!, m[2]!] : [key.slice(0, key.lastIndexOf(".")), key.slice(key.lastIndexOf(".") + 1)];
  if (!module || !param) return undefined;
  return cfg.modulesToSave.some((t) => module.endsWith(t)) ? `${module}.${param}` : undefined;
}

async function readTensor(pool: FileReaderPool, t: TensorRef): Promise<Float32Array> {
  const bytes = await pool.read(t.file, t.start, t.byteLength);
  const n = t.shape.reduce((x, y) => x * y, 1);
  const out = new Float32Array(n);
  if (t.dtype === "F32") new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * n));
  else {
    const h = new Uint16Array(n);
    new Uint8Array(h.buffer).set(bytes.subarray(0, 2 * n));
    if (t.dtype === "F16") f16RowToF32(h, out);
    else if (t.dtype === "BF16") bf16RowToF32(h, out);
    else throw new GgufyError("E_LORA", `dtype ${t.dtype} is not a float type`, { file: t.file, tensor: t.name });
  }
  for (let i = 0; i < n; i++) if (!Number.isFinite(out[i]!)) throw new GgufyError("E_NONFINITE", `element ${i} is ${out[i]}`, { file: t.file, tensor: t.name });
  return out;
}

/**
 * Check the adapter against the base checkpoint's logical tensor shapes (HF names → torch shape):
 * every target's base weight exists with shape [out, in] = [B rows, A columns] (an embedding: [vocab, hidden]
 * = [A columns, B rows]), every modules_to_save tensor replaces a base tensor of its shape. The first
 * misfit is refused naming the adapter tensor.
 */
export function matchAdapterToBase(adapter: Pick<LoraAdapter, "targets" | "saved" | "file">, baseShapes: ReadonlyMap<string, readonly number[]>): void {
  const refuse = (tensor: string, detail: string): never => {
    throw new GgufyError("E_LORA", detail, { file: adapter.file, tensor });
  };
  for (const t of adapter.targets) {
    const s = baseShapes.get(t.baseName);
    if (!s && /(^|\.)lm_head\.weight$/u.test(t.baseName) && [...baseShapes.keys()].some((n) => n.endsWith("embed_tokens.weight"))) {
      // conversion: convert_lora_to_gguf.py LoraModel.modify_tensors raises "lm_head is present in adapter, but is ignored in base model"
      refuse(t.a.name, `targets '${t.baseName}', but the base has no lm_head (its output layer is tied to the token embeddings)`);
    }
    if (!s) refuse(t.a.name, `targets '${t.baseName}', which the base model does not have (an adapter for another model or architecture?)`);
    const want = t.embedding ? [t.a.shape[1]!, t.b.shape[0]!] : [t.b.shape[0]!, t.a.shape[1]!];
    if (s!.length !== 2 || s![0] !== want[0] || s![1] !== want[1]) {
      refuse(t.a.name, `does not fit the base: '${t.baseName}' is [${s!.join(", ")}] but lora_B·lora_A${t.embedding ? " (embedding, transposed)" : ""} is [${want.join(", ")}]`);
    }
  }
  for (const v of adapter.saved) {
    const s = baseShapes.get(v.baseName);
    if (!s) refuse(v.tensor.name, `replaces '${v.baseName}' (modules_to_save), which the base model does not have`);
    if (s!.length !== v.tensor.shape.length || s!.some((d, i) => d !== v.tensor.shape[i])) refuse(v.tensor.name, `does not fit the base: '${v.baseName}' is [${s!.join(", ")}], the replacement is [${v.tensor.shape.join(", ")}]`);
  }
}
