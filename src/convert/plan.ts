/**
 * The plan: for every output file, every tensor's GGUF name, shape, type and byte size, decided
 * from headers alone. The header can then be written before any weight is read, dry runs print
 * it, and the pipeline executes it.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { GgufyError } from "../errors.js";
import type { LoraSpec } from "./lora/merge.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { plannedHeader, type EncodedHeader } from "../formats/gguf/writer.js";
import { GGMLType as G, parseTypeName, tensorBytes, typeInfo, typeName } from "../quant/ggml/types.js";
import { isWritable } from "../quant/ggml/writable.js";
import { findPreset, findLlamaFtype, IMATRIX_PRESETS, UNSUPPORTED_PRESETS, presetTypes, quantizeOrder, fallbackType, tensorRequiresImatrix, imatrixRequiredBy, type Preset, type PresetOptions } from "../quant/presets.js";
import { imatrixKvs, matchImatrix, type Imatrix } from "../quant/imatrix.js";
import type { ModelFile, OutputTensor } from "../models/types.js";
import { vocabToKvs } from "../tokenizer/index.js";
import { conventionalName, fillTemplatedFilename, resolveOutputPath } from "./naming.js";
import { applyKvOverrides, metadataFromFolder, metadataKvs, type KvOverride, type ModelMetadata } from "./metadata.js";
import type { SplitInfo, SplitOptions } from "./split.js";

export interface PlanOptions extends SplitOptions {
  /** f32 | f16 | bf16 | q8_0 | tq1_0 | tq2_0 | auto, or a llama-quantize preset (Q4_K_M …) */
  outtype?: string;
  outfile?: string;
  mmprojOutfile?: string;
  /** f16 | f32 | q8_0 … for the vision projector */
  mmprojType?: string;
  pure?: boolean;
  outputTensorType?: string;
  tokenEmbeddingType?: string;
  tensorTypes?: readonly string[];
  leaveOutputTensor?: boolean;
  /** general.name (wins over every other source) */
  modelName?: string;
  /** --metadata: a JSON file (or the parsed object) with llama.cpp's general.* key names */
  metadata?: string | Record<string, unknown>;
  /** extra/overriding KVs, applied last */
  overrides?: readonly GGUFKV[];
  /** --override-kv KEY=TYPE:VALUE, applied after `overrides` (see metadata.ts parseKvOverride) */
  kvOverrides?: readonly KvOverride[];
  /** PEFT LoRA adapters merged into the base as it is read (src/convert/lora/merge.ts), in order */
  lora?: readonly LoraSpec[];
  /** --imatrix FILE: llama-imatrix's importance matrix (GGUF or legacy .dat), as llama-quantize --imatrix */
  imatrix?: string;
  /** --include-weights NAME (repeatable) */
  includeWeights?: readonly string[];
  /** --exclude-weights NAME (repeatable) */
  excludeWeights?: readonly string[];
}

export interface PlannedTensor {
  readonly out: OutputTensor;
  readonly type: G;
  readonly bytes: number;
  /** the type first chosen, when a row-length fallback replaced it */
  readonly fallbackFrom?: G;
  /** the importance vector (--imatrix): ne0 floats, or ne0 × ne2 for a stacked expert tensor (one slice per expert) */
  readonly imatrix?: Float32Array;
}

export interface PlannedFile {
  readonly path: string;
  readonly role: ModelFile["role"];
  readonly kvs: GGUFKV[];
  readonly tensors: PlannedTensor[];
  /** its layout (size, offsets); `bytes` is encoded on first use (writer.ts plannedHeader) */
  readonly header: EncodedHeader;
  readonly fileType: number;
  readonly typeLabel: string;
  /** general.* metadata of a language-model file */
  readonly metadata?: ModelMetadata;
  /** set when this file is one part of a split output */
  readonly split?: SplitInfo;
}

const CONVERT_TYPES: Record<string, { ftype: number; type: G }> = {
  f32: { ftype: 0, type: G.F32 },
  f16: { ftype: 1, type: G.F16 },
  bf16: { ftype: 32, type: G.BF16 },
  q8_0: { ftype: 7, type: G.Q8_0 },
  tq1_0: { ftype: 36, type: G.TQ1_0 },
  tq2_0: { ftype: 37, type: G.TQ2_0 },
};

function parseUserType(s: string, what: string): G {
  const t = parseTypeName(s);
  if (t === undefined || !isWritable(t)) throw new GgufyError("E_USAGE", `${what}: unknown or unsupported type '${s}'`);
  return t;
}

/** convert_hf_to_gguf's per-tensor rule for a plain outtype (base.py prepare_tensors). */
function convertRuleType(t: OutputTensor, type: G): G {
  if (t.forceType !== undefined) return t.forceType;
  const nDims = t.ne.length;
  if (nDims <= 1 || t.name.endsWith("_norm.weight")) return G.F32;
  if (!t.name.endsWith(".weight")) return G.F32;
  if ((type === G.TQ1_0 || type === G.TQ2_0) && /^(token_embd|output)\.weight$/.test(t.name)) return G.F16;
  // gguf-py cannot quantize a row that is not a whole number of blocks: the tensor falls back to F16
  if (t.ne[0]! % typeInfo(type).blockSize !== 0) return G.F16;
  return type;
}

/** "auto": the first ≥2-D tensor's source precision (bf16 → BF16, f16 → F16), else F16. */
function autoType(m: ModelFile): { ftype: number; type: G; label: string } {
  const first = m.tensors.find((t) => t.ne.length >= 2);
  if (first?.dtype === "bf16") return { ftype: 32, type: G.BF16, label: "bf16" };
  return { ftype: 1, type: G.F16, label: "f16" };
}

function hparam(m: ModelFile, suffix: string): number | undefined {
  const e = m.kvs.find((k) => k.key === `${m.arch}.${suffix}`);
  return e && e.value.type !== 9 ? Number(e.value.value) : undefined;
}

export interface TypeChoice {
  types: G[];
  order: OutputTensor[];
  ftype: number;
  label: string;
  fallbacks: Map<string, G>;
  /** the llama-quantize preset, when one chose the types (undefined types = copied unchanged) */
  preset?: Preset;
  chosen?: (G | undefined)[];
}

/** Decide the type of every tensor of a text-model file. */
export function chooseTypes(m: ModelFile, opts: PlanOptions, hasImatrix = false): TypeChoice {
  const requested = opts.outtype ?? "auto";
  const lower = requested.toLowerCase();
  const fallbacks = new Map<string, G>();
  if (m.chooseType) {
    const req = m.role === "mmproj" ? (opts.mmprojType ?? "f16") : requested;
    const types = m.tensors.map((t) => m.chooseType!(t, req.toLowerCase()));
    const ft = CONVERT_TYPES[req.toLowerCase()]?.ftype ?? 1;
    return { types, order: m.tensors, ftype: ft, label: req.toLowerCase(), fallbacks };
  }
  if (IMATRIX_PRESETS.includes(requested.toUpperCase()) && !hasImatrix) {
    throw new GgufyError("E_IMATRIX_REQUIRED", `${requested.toUpperCase()} needs an importance matrix (llama-quantize refuses it without one): pass --imatrix FILE (from llama-imatrix), or choose IQ3_S, IQ4_XS, Q4_K_M or another type`);
  }
  if (lower === "auto" || (CONVERT_TYPES[lower] && requested === lower)) {
    const c = lower === "auto" ? autoType(m) : { ...CONVERT_TYPES[lower]!, label: lower };
    const types = m.tensors.map((t) => convertRuleType(t, c.type));
    return { types, order: m.tensors, ftype: c.ftype, label: lower === "auto" ? c.label : lower, fallbacks };
  }
  if (UNSUPPORTED_PRESETS.includes(requested.toUpperCase())) {
    throw new GgufyError("E_USAGE", `${requested.toUpperCase()} is a llama-quantize preset ggufy cannot produce yet (no codec for its types) — choose IQ4_XS, Q3_K_M, Q4_K_M or another type`);
  }
  const imatrixOnly = hasImatrix && IMATRIX_PRESETS.includes(requested.toUpperCase());
  const preset: Preset | undefined = imatrixOnly ? findLlamaFtype(requested) : findPreset(requested);
  if (!preset) throw new GgufyError("E_USAGE", `--outtype ${requested}: not a known type or preset (try f32, f16, bf16, q8_0, auto, Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0 …)`);
  const order = quantizeOrder(m.tensors);
  const popts: PresetOptions = {
    nLayer: m.hparams?.nLayer ?? hparam(m, "block_count") ?? 0,
    nHead: m.hparams?.nHead ?? hparam(m, "attention.head_count") ?? 1,
    nHeadKv: m.hparams?.nHeadKv ?? hparam(m, "attention.head_count_kv") ?? hparam(m, "attention.head_count") ?? 1,
    nExpert: m.hparams?.nExpert ?? hparam(m, "expert_count") ?? 0,
    arch: m.arch,
    ...(opts.pure ? { pure: true } : {}),
    ...(opts.leaveOutputTensor ? { leaveOutputTensor: true } : {}),
    ...(opts.outputTensorType ? { outputTensorType: parseUserType(opts.outputTensorType, "--output-tensor-type") } : {}),
    ...(opts.tokenEmbeddingType ? { tokenEmbeddingType: parseUserType(opts.tokenEmbeddingType, "--token-embedding-type") } : {}),
    ...(opts.tensorTypes?.length ? { tensorTypes: opts.tensorTypes.map((s) => parseTensorTypeOverride(s)) } : {}),
    ...(hasImatrix ? { imatrix: true } : {}),
  };
  const chosen = presetTypes(order, preset, popts);
  const types = order.map((t, i) => {
    const c = chosen[i];
    if (c === undefined) return t.forceType ?? G.F32; // copied unchanged: 1-D and excluded tensors stay F32
    const f = fallbackType(c, t.ne[0]!);
    if (f !== c) fallbacks.set(t.name, c);
    return f;
  });
  if (imatrixOnly) {
    // an imatrix-only preset (Q2_K_S, the IQ1/IQ2/IQ3 ones): every type it chooses needs a codec
    const missing = types.find((t) => !isWritable(t));
    if (missing !== undefined) throw new GgufyError("E_USAGE", `${preset.name} needs type ${typeName(missing)}, which ggufy cannot write yet`);
  }
  // a type override may pick an IQ type that needs an importance matrix (llama-quantize: "this quantization requires an imatrix!")
  const needs = hasImatrix ? undefined : imatrixRequiredBy(order, types);
  if (needs) throw new GgufyError("E_IMATRIX_REQUIRED", `tensor '${needs.name}': type ${typeName(needs.type)} needs an importance matrix (llama-quantize refuses it without one)`);
  return { types, order, ftype: preset.ftype, label: preset.name, fallbacks, preset, chosen };
}

export function parseTensorTypeOverride(s: string): [RegExp, G] {
  const i = s.lastIndexOf("=");
  if (i <= 0) throw new GgufyError("E_USAGE", `--tensor-type ${s}: expected REGEX=TYPE`);
  let re: RegExp;
  try {
    re = new RegExp(s.slice(0, i));
  } catch (e) {
    throw new GgufyError("E_USAGE", `--tensor-type ${s}: bad regular expression (${(e as Error).message})`);
  }
  return [re, parseUserType(s.slice(i + 1), "--tensor-type")];
}

export function countParams(tensors: readonly OutputTensor[]): number {
  let n = 0;
  for (const t of tensors) n += t.ne.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Shared and per-expert parameter counts (gguf-py GGUFWriter.get_total_parameter_count): a `_exps.`
 * tensor of 3+ dims counts size / n_expert (n_expert = ne[2], numpy shape[-3]; ne[1] for a bias) as
 * expert parameters; everything else is shared; the expert count is the mean over those tensors.
 */
export function expertParamCounts(tensors: readonly OutputTensor[]): { shared: number; expert: number; count: number } {
  let shared = 0;
  let expert = 0;
  let sum = 0;
  let n = 0;
  for (const t of tensors) {
    const size = t.ne.reduce((a, b) => a * b, 1);
    if (t.name.includes("_exps.") && t.ne.length >= 3) {
      const count = t.name.includes(".bias") ? t.ne[1]! : t.ne[2]!;
      expert += Math.floor(size / count);
      sum += count;
      n++;
    } else shared += size;
  }
  return { shared, expert, count: n > 0 ? Math.floor(sum / n) : 0 };
}

export interface FilePlanInput {
  model: ModelFile;
  modelDir: string;
  opts: PlanOptions;
  /** the language model's base name, shared by the mmproj name */
  baseName?: string;
  /** general.* metadata (default: from the folder name alone; plan() reads the model card and --metadata) */
  metadata?: ModelMetadata;
  /** a --vocab-only file: named <name>-vocab.gguf */
  vocabOnly?: boolean;
  /** the loaded --imatrix (convert.ts plan() reads it) */
  imatrix?: Imatrix;
}

/** The importance vector of each tensor of a preset's choice (quant/imatrix.ts matchImatrix). */
function imatrixFor(im: Imatrix, choice: TypeChoice): (Float32Array | undefined)[] {
  return matchImatrix(
    im,
    choice.order.map((t, i) => {
      const type = choice.types[i]!;
      const quantized = choice.chosen![i] !== undefined && type !== G.F32;
      return { name: t.name, ne: t.ne, quantized, requiresImatrix: quantized && tensorRequiresImatrix(t.name, type, choice.preset!) };
    }),
  );
}

/** Plan one output file: types, KVs in llama.cpp's order, header, path. */
export function planFile({ model, modelDir, opts, baseName, metadata, vocabOnly, imatrix }: FilePlanInput): PlannedFile {
  const im = imatrix && imatrix.entries.size > 0 ? imatrix : undefined; // an imatrix left empty by the filters is none (quantize.cpp)
  const req = opts.outtype ?? "auto";
  const convertRule = req.toLowerCase() === "auto" || (CONVERT_TYPES[req.toLowerCase()] !== undefined && req === req.toLowerCase());
  if (im && (model.chooseType || convertRule || !findLlamaFtype(req))) {
    throw new GgufyError("E_USAGE", `--imatrix applies to llama-quantize presets (Q4_K_M, IQ4_XS, Q2_K_S …), not to --outtype ${opts.outtype ?? "auto"}`);
  }
  const choice = chooseTypes(model, opts, im !== undefined);
  const qws = im && choice.preset ? imatrixFor(im, choice) : undefined;
  for (let i = 0; i < choice.order.length; i++) {
    const t = choice.order[i]!;
    const type = choice.types[i]!;
    if (t.ne[0]! % typeInfo(type).blockSize !== 0) throw new GgufyError("E_TYPE", `row length ${t.ne[0]} is not a multiple of ${typeName(type)}'s block size ${typeInfo(type).blockSize}`, { tensor: t.name });
  }
  const params = model.paramCount ?? countParams(model.tensors);
  const md = model.role === "model" ? (metadata ?? metadataFromFolder(modelDir, params, opts.modelName)) : undefined;
  let kvs: GGUFKV[] = [kv.str("general.architecture", model.arch)];
  if (md) {
    kvs.push(kv.str("general.type", "model"));
    kvs.push(...metadataKvs(md));
  }
  kvs.push(...(model.generalKvs ?? []));
  // a model may place general.file_type itself (the mmproj script writes it mid-list); the value is ours
  const fileType = kv.u32("general.file_type", choice.ftype);
  const placed = model.kvs.findIndex((k) => k.key === fileType.key);
  kvs.push(...model.kvs.map((k, i) => (i === placed ? fileType : k)));
  if (placed < 0) kvs.push(fileType);
  if (model.role === "model") kvs.push(kv.u32("general.quantization_version", 2));
  if (model.vocab) kvs.push(...vocabToKvs(model.vocab));
  kvs = applyKvOverrides(kvs, opts.overrides, opts.kvOverrides);
  if (im) kvs.push(...imatrixKvs(im));
  const tensors: PlannedTensor[] = choice.order.map((out, i) => {
    const type = choice.types[i]!;
    const from = choice.fallbacks.get(out.name);
    const qw = qws?.[i];
    return { out, type, bytes: tensorBytes(type, out.ne), ...(from !== undefined ? { fallbackFrom: from } : {}), ...(qw ? { imatrix: qw } : {}) };
  });
  const header = plannedHeader(kvs, tensors.map((t) => ({ name: t.out.name, ne: t.out.ne, type: t.type })));
  const label = choice.label;
  // the GGUF naming convention (gguf-py naming_convention), as convert_hf_to_gguf names its default output
  const parts = md ? { ...(md.name !== undefined ? { name: md.name } : {}), ...(md.basename !== undefined ? { baseName: md.basename } : {}), ...(md.finetune !== undefined ? { fineTune: md.finetune } : {}), ...(md.version !== undefined ? { version: md.version } : {}) } : {};
  const base = baseName ?? conventionalName({ ...parts, ...(md?.sizeLabel !== undefined ? { sizeLabel: md.sizeLabel } : {}) });
  const defaultFile =
    model.role === "mmproj" ? `mmproj-${base}-${label.toLowerCase()}.gguf` : vocabOnly ? `${conventionalName({ ...parts, kind: "vocab" })}.gguf` : `${conventionalName({ ...parts, ...(md?.sizeLabel !== undefined ? { sizeLabel: md.sizeLabel } : {}), encoding: label })}.gguf`;
  const explicit = model.role === "mmproj" ? opts.mmprojOutfile : opts.outfile;
  // one safe file name inside the folder the user chose, or the model folder (naming.ts resolveOutputPath)
  let p: string;
  if (!explicit && model.role === "mmproj" && opts.outfile) {
    // no --mmproj-outfile but an --outfile: the projector goes beside the language model, named after it
    // (out/x.gguf, out/x-{ftype}.gguf and out/x-Q4_K_M.gguf with --outtype Q4_K_M → out/mmproj-x-f16.gguf), as
    // the converter's --mmproj run prefixes "mmproj-" to the file name (conversion/base.py MmprojModel.prepare_metadata)
    const isDir = (f: string): boolean => {
      try {
        return statSync(f).isDirectory();
      } catch {
        return false;
      }
    };
    if (isDir(opts.outfile) || /[/\\]$/.test(opts.outfile)) p = resolveOutputPath(modelDir, defaultFile, opts.outfile, label, "--outfile");
    else {
      let stem = path.basename(opts.outfile).replace(/\.gguf$/i, "");
      const llmType = opts.outtype?.toLowerCase();
      if (llmType && llmType !== "auto" && stem.toLowerCase().endsWith(`-${llmType}`) && stem.length > llmType.length + 1) stem = stem.slice(0, -(llmType.length + 1));
      const name = /\{(ftype|outtype|FTYPE|OUTTYPE|)\}/.test(stem) ? fillTemplatedFilename(stem, label) : `${stem}-${label.toLowerCase()}`;
      p = resolveOutputPath(modelDir, defaultFile, path.join(path.dirname(opts.outfile), `mmproj-${name}.gguf`), label, "--outfile");
    }
  } else p = resolveOutputPath(modelDir, defaultFile, explicit, label, model.role === "mmproj" ? "--mmproj-outfile" : "--outfile");
  return { path: p, role: model.role, kvs, tensors, header, fileType: choice.ftype, typeLabel: label, ...(md ? { metadata: md } : {}) };
}
