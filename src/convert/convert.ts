/**
 * The library's conversion entry points: plan (headers only) and convert (plan + pipeline).
 */
import { GgufyError } from "../errors.js";
import { findModel, MODELS } from "../models/registry.js";
import type { ModelFile } from "../models/types.js";
import { GGMLType } from "../quant/ggml/types.js";
import { loadVocab } from "../tokenizer/index.js";
import { SourceCheckpoint, readConfig } from "../source/checkpoint.js";
import { DECODERS } from "../source/registry.js";
import { countParams, expertParamCounts, planFile, type PlanOptions, type PlannedFile } from "./plan.js";
import { loadMetadata } from "./metadata.js";
import { splitPlannedFile, wantsSplit } from "./split.js";
import type { RunOptions, RunResult } from "./pipeline.js";
import { effectiveThreads } from "./limits.js";
import { loadImatrix } from "../quant/imatrix.js";
import { refuseInputOverwrite } from "./output.js";
import { profileFromEnv } from "./profile.js";
import { defaultOutputDir, extraReadAhead } from "../formats/store.js";
import type { OpenModelRefOptions } from "../hub/open.js";
import { isModelRef } from "../hub/ref.js";
import path from "node:path";
import { stat } from "node:fs/promises";
import { checkMergeWritten, type LoraMerge, type LoraMergeSummary } from "./lora/merge.js";

const FLOAT_OUT = new Set<GGMLType>([GGMLType.F32, GGMLType.F16, GGMLType.BF16]);

export interface ConvertOptions extends PlanOptions, Omit<RunOptions, "encoder"> {
  /** model folder, or a model reference (hf:owner/name[@rev], a Hub URL: hub/open.ts) */
  input: string;
  /** token, endpoint, --download … for a model reference */
  hub?: OpenModelRefOptions;
  /** only the tokenizer and metadata */
  vocabOnly?: boolean;
  /** --pre: the BPE pre-tokenizer name, overriding the one read from tokenizer.json */
  pre?: string;
  /** --minicpmv-version: convert a MiniCPM-V checkpoint as this clip.minicpmv_version (a warning says so) */
  minicpmvVersion?: number;
  /** worker threads for quantization (default: number of cores) */
  threads?: number;
}

export interface Plan {
  /** every output file in write order (the parts of a split output are separate files) */
  files: PlannedFile[];
  /** the open checkpoint the plan reads from: close it (or call close()) when done */
  source: SourceCheckpoint;
  models: ModelFile[];
  /**
   * what the conversion will change or drop that the user should know about (tokenizer: pieces beyond the
   * embedding rows trimmed, special tokens that resolve to no id …), one line each; also passed to
   * `onWarning` as they are found
   */
  warnings: string[];
  /** with `lora`: the adapters and every base tensor they change */
  lora?: LoraMergeSummary;
  /** release the checkpoint's file handles */
  close(): Promise<void>;
}

/** The quantization schemes (bitsandbytes, GPTQ …): src/source/registry.ts. */
export { DECODERS };

export async function plan(opts: ConvertOptions): Promise<Plan> {
  // hf:owner/name or a Hub URL (hub/open.ts): planned from the folder it resolves to, released with the plan
  if (isModelRef(opts.input)) {
    // (startup: the Hub client, the LoRA reader and the pipeline are imported when used)
    const { openModelRef } = await import("../hub/open.js");
    const loc = await openModelRef(opts.input, opts.hub ?? {});
    try {
      const p = await plan({ ...opts, input: loc.dir });
      return { ...p, close: async () => { await p.close(); await loc.close(); } };
    } catch (e) {
      await loc.close();
      throw e;
    }
  }
  const dir = path.resolve(opts.input);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new GgufyError("E_IO", st ? "is not a folder (give the model folder, not a file in it)" : "model folder not found", { file: dir });
  const config = await readConfig(dir);
  const conv = findModel(config, path.join(dir, "config.json"), MODELS);
  const source = await SourceCheckpoint.open(dir, DECODERS);
  const warnings: string[] = [];
  const warn = (m: string): void => {
    warnings.push(m);
    opts.onWarning?.(m);
  };
  let merge: LoraMerge | undefined;
  try {
    // --lora: the models read the base through a view with the adapters merged (src/convert/lora/merge.ts)
    merge = opts.lora?.length && !opts.vocabOnly ? await (await import("./lora/open.js")).openLoraMerge(source, opts.lora, opts.hub ?? {}) : undefined;
    const models = await conv.build({
      src: merge ? merge.view() : source,
      dir,
      config,
      ...(opts.vocabOnly ? { vocabOnly: true } : {}),
      ...(opts.minicpmvVersion !== undefined ? { minicpmvVersion: opts.minicpmvVersion } : {}),
      loadVocab: (r) => loadVocab(r.dir, { arch: r.arch, config: r.config, ...(r.vocabSize !== undefined ? { vocabSize: r.vocabSize } : {}), ...(opts.pre !== undefined ? { pre: opts.pre } : {}), warn }),
    });
    if (merge) checkMergeWritten(merge, models);
    // the models' notes (a MiniCPM-V release taken without config.json version, skipped audio modules, a RoPE
    // scaling llama.cpp does not honour …) are plan warnings: --dry-run prints them, convert() returns them
    for (const m of models) for (const w of m.warnings ?? []) warn(w);
    const llm = models.find((m) => m.role === "model");
    if (opts.vocabOnly && wantsSplit(opts)) throw new GgufyError("E_USAGE", "a vocabulary-only file cannot be split");
    // general.* as llama.cpp's converter fills it: model card, config _name_or_path, folder name, --metadata, --model-name
    const metadata = llm
      ? await loadMetadata({
          dir,
          config,
          totalParams: llm.paramCount ?? countParams(llm.tensors),
          expertParams: expertParamCounts(llm.tensors),
          ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
          ...(opts.modelName !== undefined ? { modelName: opts.modelName } : {}),
        })
      : undefined;
    // --imatrix: read, normalised and filtered as llama-quantize's load_imatrix / prepare_imatrix
    const imatrix = opts.imatrix !== undefined ? await loadImatrix(opts.imatrix, { ...(opts.includeWeights ? { include: opts.includeWeights } : {}), ...(opts.excludeWeights ? { exclude: opts.excludeWeights } : {}) }) : undefined;
    if (!imatrix && (opts.includeWeights?.length || opts.excludeWeights?.length)) throw new GgufyError("E_USAGE", "--include-weights / --exclude-weights need --imatrix");
    const files: PlannedFile[] = [];
    let baseName: string | undefined;
    for (const m of opts.vocabOnly ? models.filter((x) => x === llm) : models) {
      // a model streamed from the Hub (formats/store.ts) writes into the working folder by default
      const f = planFile({ model: m, modelDir: defaultOutputDir(dir), opts, ...(baseName ? { baseName } : {}), ...(m === llm && metadata ? { metadata } : {}), ...(opts.vocabOnly ? { vocabOnly: true } : {}), ...(m === llm && imatrix ? { imatrix } : {}) });
      if (m === llm) baseName = path.basename(f.path).replace(/-[^-]+\.gguf$/, "");
      // --split-max-size / --split-max-tensors: the language model in llama.cpp's split format
      files.push(...(m === llm ? splitPlannedFile(f, opts) : [f]));
    }
    const seen = new Set<string>();
    for (const f of files) {
      if (seen.has(f.path)) throw new GgufyError("E_USAGE", "two outputs would have the same path", { file: f.path });
      seen.add(f.path);
    }
    // never over a file the conversion reads, even with --force (output.ts)
    await refuseInputOverwrite(files.map((f) => f.path), dir, source.st.files);
    return { files, source, models, warnings, ...(merge ? { lora: merge.summary() } : {}), close: async () => {
      await source.close();
      await merge?.close();
    } };
  } catch (e) {
    await source.close();
    await merge?.close();
    throw e;
  }
}

export interface ConvertResult extends RunResult {
  plan: PlannedFile[];
  /** every warning of the plan and the run (also passed to `onWarning` as they happened) */
  warnings: string[];
}

export async function convert(opts: ConvertOptions): Promise<ConvertResult> {
  // GGUFY_PROFILE=1: per-stage timers, printed to stderr at the end (profile.ts)
  const prof = profileFromEnv();
  prof?.add("startup: process start → convert()", performance.now());
  const { makeEncoder, prestartEncoder } = await import("./workers.js");
  // the workers load while the plan (vocabulary, metadata) is made; settled to the plan's thread count below
  const early = opts.vocabOnly || isModelRef(opts.input) ? undefined : await prestartEncoder(opts.input, opts.threads, prof);
  const tPlan = performance.now();
  let p: Plan;
  try {
    p = await plan(opts);
  } catch (e) {
    await early?.close();
    throw e;
  }
  prof?.add("startup: plan (config, headers, vocabulary, metadata)", performance.now() - tPlan);
  const warnings = p.warnings;
  let settled = false;
  try {
    const { chunkRanges, runPlan } = await import("./pipeline.js");
    // validated and capped (limits.ts): min(requested, 4 × cores, 64, chunks to encode)
    // --lora: merged chunks are decoded and merged on this thread and travel as float32 (not packed): a
    // quarter of the chunk keeps the memory of the chunks in flight near the plain conversion's
    const chunkElements = opts.chunkElements ?? (p.lora ? 1 << 20 : 4 << 20);
    const chunks = p.files.reduce((a, f) => a + f.tensors.reduce((b, t) => b + chunkRanges(t, chunkElements).length, 0), 0);
    const threads = effectiveThreads(opts.threads, chunks);
    const encoder = early ? await early.settle(threads) : await makeEncoder(threads, prof);
    settled = true;
    // a quantized output needs the codecs in the encoding threads: they load them now, beside the header
    // (an F16/BF16/F32 conversion converts in float slots and never loads them)
    if (p.files.some((f) => f.tensors.some((t) => !FLOAT_OUT.has(t.type)))) encoder.preload?.();
    const onWarning = (m: string): void => {
      warnings.push(m);
      opts.onWarning?.(m);
    };
    // keep every worker busy and the writer fed: two chunks per worker plus read-ahead (a slow write
    // or read does not stall the others)
    // (more for a model read over the network: formats/store.ts extraReadAhead)
    const r = await runPlan(p.files, { ...opts, chunkElements, encoder, inflight: opts.inflight ?? 2 * threads + 2 + extraReadAhead(p.source.dir), onWarning, ...(prof ? { profile: prof } : {}) });
    return { ...r, plan: p.files, warnings };
  } finally {
    if (!settled) await early?.close();
    await p.close();
    if (prof) process.stderr.write(prof.report() + "\n");
  }
}
