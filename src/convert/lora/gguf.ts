/**
 * A PEFT LoRA adapter → llama.cpp's LoRA GGUF, the file `convert_lora_to_gguf.py` writes and
 * `src/llama-adapter.cpp:llama_adapter_lora_init_impl` loads:
 *
 * - KVs, in the script's order: general.architecture (the base's), general.type = "adapter",
 *   adapter.type = "lora", the general.* metadata (gguf-py Metadata.load on the adapter folder; no size
 *   label: the script's parameter count is negative for LoRA, so prepare_metadata skips it),
 *   adapter.lora.alpha (f32), general.quantization_version = 2. No general.file_type: LoraModel's
 *   set_gguf_parameters does not call the base class's.
 * - Tensors, per targeted base weight `<gguf name>` (the base architecture's name map), in the order of
 *   the adapter's sorted keys: `<gguf name>.lora_a` (HF A [r, in] → ne [in, r]) then `.lora_b`
 *   (B [out, r] → ne [r, out]). For Llama-family bases the Q/K row permutation of the base conversion
 *   (conversion/llama.py LlamaModel.permute) is applied to lora_b's rows, as LoraTorchTensor.permute
 *   does. token_embd: lora_a is Aᵀ ([vocab, r] → ne [r, vocab]) and lora_b is B ([hidden, r]), what
 *   llm_graph_context::build_inp_embd expects (get_rows on lora_a, then lora_b × rows).
 * - Types: --outtype for every tensor (f32 default, f16, bf16, q8_0); a q8_0 tensor whose row is not a
 *   whole number of 32-element blocks falls back to F16 (gguf-py QuantError → F16 in base.py prepare_tensors).
 *
 * Scale. llama.cpp applies `adapter_scale · alpha / rank` with one alpha per file and rank = lora_b's
 * ne[0] (llama-adapter.h llama_adapter_lora_weight::get_scale; alpha 0 means scale 1). PEFT's scale is
 * α/r, α/√r with use_rslora, per module after rank_pattern / alpha_pattern. convert_lora_to_gguf.py writes
 * lora_alpha and ignores use_rslora and the patterns (its rslora / pattern adapters come out with the wrong
 * strength). Here adapter.lora.alpha is lora_alpha (α·√r with use_rslora, r the default rank), which is
 * exact for every module using the default r and α; a module whose scale that alpha cannot express
 * (a rank_pattern / alpha_pattern entry with use_rslora, or an alpha_pattern entry) gets its lora_b
 * multiplied by scale / (alpha / rank), in float64, rounded once to float32 — the same product B·A·scale.
 *
 * What a LoRA GGUF cannot hold is refused by name: modules_to_save (full replacement tensors; the script
 * exits on them and llama-adapter.cpp accepts only .lora_a/.lora_b pairs), MiniCPM-V vision-tower /
 * resampler targets (llama.cpp applies adapters to the language model only) — merge those with
 * `ggufy convert --lora` instead.
 */
import path from "node:path";
import { stat } from "node:fs/promises";
import { GgufyError } from "../../errors.js";
import { GGUFValueType, kv, type GGUFKV } from "../../formats/gguf/types.js";
import { encodeGgufHeader } from "../../formats/gguf/writer.js";
import { TENSOR } from "../../formats/gguf/keys.js";
import { GGMLType as G, tensorBytes, typeInfo } from "../../quant/ggml/types.js";
import { findModel, MODELS } from "../../models/registry.js";
import { compileNames, COMMON_NAMES, mapTensorName } from "../../models/tensor-map.js";
import { permutedSourceRow } from "../../models/tensors.js";
import { readTextHparams, textConfig, type DecoderSpec } from "../../models/text-decoder.js";
import { qwen2Spec } from "../../models/qwen2.js";
import type { OutputTensor } from "../../models/types.js";
import { SourceCheckpoint, readConfig } from "../../source/checkpoint.js";
import { DECODERS } from "../../source/registry.js";
import { loadMetadata, metadataKvs, applyKvOverrides, type KvOverride } from "../metadata.js";
import { conventionalName, resolveOutputPath } from "../naming.js";
import { refuseInputOverwrite } from "../output.js";
import { runPlan, type RunOptions } from "../pipeline.js";
import type { PlannedFile, PlannedTensor } from "../plan.js";
import { matchAdapterToBase, openLoraAdapter, type LoraAdapter, type LoraTarget } from "./adapter.js";
import { isModelRef, openModelRef, type OpenModelRefOptions } from "../../hub/open.js";
import { defaultOutputDir } from "../../formats/store.js";

export type LoraOuttype = "f32" | "f16" | "bf16" | "q8_0";

const OUTTYPES: Record<LoraOuttype, { type: G; label: string }> = {
  f32: { type: G.F32, label: "F32" },
  f16: { type: G.F16, label: "F16" },
  bf16: { type: G.BF16, label: "BF16" },
  q8_0: { type: G.Q8_0, label: "Q8_0" },
};

export interface ConvertLoraOptions extends Omit<RunOptions, "encoder"> {
  /** the PEFT adapter folder, or a model reference (hf:owner/name[@rev]: downloaded into the Hub cache, hub/open.ts) */
  adapter: string;
  /** the base model folder (config.json and the checkpoint's tensor names/shapes; plain, bitsandbytes, GPTQ …), or a model reference (only its headers are read) */
  base: string;
  /** token, endpoint … for model references */
  hub?: OpenModelRefOptions;
  /** default f32, as convert_lora_to_gguf.py; "auto": bf16 or f16 after the first pair's dtype (its heuristics) */
  outtype?: LoraOuttype | string;
  /** output file, or a folder (default: the adapter folder), `{ftype}` templates as convert */
  outfile?: string;
  /** general.name */
  modelName?: string;
  /** --metadata: a JSON file (or the parsed object) with llama.cpp's general.* key names */
  metadata?: string | Record<string, unknown>;
  kvOverrides?: readonly KvOverride[];
}

/** One target as written: GGUF names, what was done to it. */
export interface LoraTensorPlan {
  target: LoraTarget;
  /** the base tensor's GGUF name (`blk.0.attn_q.weight`) */
  gguf: string;
  /** rows of lora_b permuted per head (Llama Q/K): the head count, else undefined */
  permuteHeads?: number;
  /** lora_b multiplied by this to express the module's scale with the file's one alpha (1: untouched) */
  bFactor: number;
}

export interface LoraPlan {
  file: PlannedFile;
  adapter: LoraAdapter;
  /** general.architecture */
  arch: string;
  /** adapter.lora.alpha as written */
  alpha: number;
  targets: LoraTensorPlan[];
  close(): Promise<void>;
}

interface BaseFamily {
  spec: DecoderSpec;
  /** where the language model's tensors live in the base checkpoint */
  prefix: string;
}

/** The base families whose LoRA GGUF ggufy writes: the decoder spec and the language model's prefix. */
function baseFamily(config: Record<string, unknown>, file: string): BaseFamily {
  const conv = findModel(config, file, MODELS) as { id: string; spec?: DecoderSpec };
  if (conv.id === "minicpmv") return { spec: qwen2Spec, prefix: "llm." };
  if ((conv.id === "llama" || conv.id === "qwen2" || conv.id === "qwen3") && conv.spec) return { spec: conv.spec, prefix: "" };
  throw new GgufyError("E_LORA", `convert-lora does not support ${conv.id} bases yet (supported: Llama/Mistral, Qwen2, Qwen3, MiniCPM-V); merge the adapter with ggufy convert --lora instead`, { file });
}

/** Plan the LoRA GGUF: headers only (the adapter's tensors are read when it is written). */
export async function planLora(opts: ConvertLoraOptions): Promise<LoraPlan> {
  if (!isModelRef(opts.adapter) && !isModelRef(opts.base)) return planLoraLocal(opts);
  // model references: the adapter (small) into the Hub cache, the base streamed (its headers only)
  const a = await openModelRef(opts.adapter, { ...opts.hub, download: true });
  try {
    const b = await openModelRef(opts.base, opts.hub ?? {});
    try {
      const p = await planLoraLocal({ ...opts, adapter: a.dir, base: b.dir });
      return { ...p, close: async () => {
        try {
          await p.close();
        } finally {
          await b.close();
          await a.close();
        }
      } };
    } catch (e) {
      await b.close();
      throw e;
    }
  } catch (e) {
    await a.close();
    throw e;
  }
}

async function planLoraLocal(opts: ConvertLoraOptions): Promise<LoraPlan> {
  const baseDir = path.resolve(opts.base);
  const bst = await stat(baseDir).catch(() => undefined);
  if (!bst?.isDirectory()) throw new GgufyError("E_IO", bst ? "is not a folder (give the base model folder)" : "base model folder not found", { file: baseDir });
  const requested = (opts.outtype ?? "f32").toLowerCase();
  if (!(requested in OUTTYPES) && requested !== "auto") throw new GgufyError("E_USAGE", `--outtype ${opts.outtype}: a LoRA GGUF is f32, f16, bf16, q8_0 or auto (as convert_lora_to_gguf.py)`);
  const configFile = path.join(baseDir, "config.json");
  const config = await readConfig(baseDir);
  const fam = baseFamily(config, configFile);
  const h = readTextHparams(textConfig(config, configFile));
  const adapter = await openLoraAdapter(opts.adapter, { allowAlora: true });
  try {
    const ot = OUTTYPES[requested === "auto" ? autoOuttype(adapter) : (requested as LoraOuttype)];
    // the base's logical tensors (a quantized base is described, never decoded)
    const src = await SourceCheckpoint.open(baseDir, DECODERS);
    let shapes: Map<string, readonly number[]>;
    try {
      shapes = new Map(src.names().map((n) => [n, src.get(n)!.shape]));
    } finally {
      await src.close();
    }
    matchAdapterToBase(adapter, shapes);
    for (const s of adapter.saved) {
      throw new GgufyError("E_LORA", `a modules_to_save replacement of '${s.baseName}': a llama.cpp LoRA GGUF holds only lora_a/lora_b pairs (convert_lora_to_gguf.py refuses these too); merge the adapter into the model with ggufy convert --lora`, { file: adapter.file, tensor: s.tensor.name });
    }
    const cfg = adapter.config;
    const alora = cfg.aloraInvocationTokens;
    if (alora && h.vocabSize !== undefined) {
      const bad = alora.find((t) => t >= h.vocabSize!);
      if (bad !== undefined) throw new GgufyError("E_LORA", `alora_invocation_tokens holds ${bad}, beyond the base's vocab_size ${h.vocabSize}`, { file: path.join(adapter.dir, "adapter_config.json") });
    }
    // the one alpha of the file: exact for every module with the default r and α (see the header comment)
    const alpha = cfg.useRslora ? cfg.loraAlpha * Math.sqrt(cfg.r) : cfg.loraAlpha;
    const alpha32 = Math.fround(alpha);
    const names = compileNames([...(fam.spec.names ?? []), ...COMMON_NAMES], fam.spec.tensors);
    const targets: LoraTensorPlan[] = [];
    for (const t of [...adapter.targets].sort((x, y) => (x.a.name < y.a.name ? -1 : x.a.name > y.a.name ? 1 : 0))) {
      if (!t.baseName.startsWith(fam.prefix)) {
        throw new GgufyError("E_LORA", `targets '${t.baseName}' outside the language model (${fam.prefix}*): llama.cpp applies LoRA adapters to the language model only; merge the adapter with ggufy convert --lora`, { file: adapter.file, tensor: t.a.name });
      }
      const m = mapTensorName(names, t.baseName.slice(fam.prefix.length));
      if (!m || m.gguf.endsWith(".bias")) throw new GgufyError("E_LORA", `targets '${t.baseName}', which has no tensor in llama.cpp's ${fam.spec.arch} name map`, { file: adapter.file, tensor: t.a.name });
      if (t.embedding !== (m.template === TENSOR.TOKEN_EMBD)) {
        throw new GgufyError("E_LORA", t.embedding ? `an embedding LoRA (lora_embedding_A/B) on '${t.baseName}', which is not the token embedding` : `a linear LoRA (lora_A/B) on the token embedding '${t.baseName}'`, { file: adapter.file, tensor: t.a.name });
      }
      let permuteHeads: number | undefined;
      if (fam.spec.permuteQK && (m.template === TENSOR.ATTN_Q || m.template === TENSOR.ATTN_K)) {
        permuteHeads = m.template === TENSOR.ATTN_Q ? h.nHead : h.nHeadKv;
        const rows = t.b.shape[0]!;
        if (rows % permuteHeads !== 0 || (rows / permuteHeads) % 2 !== 0) throw new GgufyError("E_LORA", `lora_B has ${rows} rows, which do not split into ${permuteHeads} heads of even size (config.json)`, { file: adapter.file, tensor: t.b.name });
      }
      // llama.cpp's scale for this pair, in float32 as get_scale computes it
      const llamaScale = alpha32 !== 0 ? Math.fround(alpha32 / t.rank) : 1;
      const ratio = t.scale / llamaScale;
      const bFactor = Math.abs(ratio - 1) < 1e-6 ? 1 : ratio;
      targets.push({ target: t, gguf: m.gguf, ...(permuteHeads !== undefined ? { permuteHeads } : {}), bFactor });
    }
    if (targets.length === 0) throw new GgufyError("E_LORA", "the adapter has no lora_A/lora_B pairs", { file: adapter.file });

    const outs: OutputTensor[] = [];
    for (const p of targets) outs.push(loraA(adapter, p), loraB(adapter, p));
    const tensors: PlannedTensor[] = outs.map((out) => {
      // gguf-py cannot quantize a row that is not whole blocks: F16 instead (base.py prepare_tensors)
      const type = out.ne[0]! % typeInfo(ot.type).blockSize === 0 ? ot.type : G.F16;
      return { out, type, bytes: tensorBytes(type, out.ne) };
    });
    // gguf-py GGUFWriter.get_total_parameter_count: a lora_b counts (*B.shape[:-1], A.shape[-1]), negated for LoRA
    let params = 0;
    for (let i = 0; i < outs.length; i += 2) params += outs[i + 1]!.ne[1]! * outs[i]!.ne[0]!;
    const md = await loadMetadata({
      dir: adapter.dir,
      totalParams: -params,
      ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
      ...(opts.modelName !== undefined ? { modelName: opts.modelName } : {}),
    });
    let kvs: GGUFKV[] = [
      kv.str("general.architecture", fam.spec.arch),
      kv.str("general.type", "adapter"),
      kv.str("adapter.type", "lora"),
      ...metadataKvs(md),
      kv.f32("adapter.lora.alpha", alpha),
      // activated LoRA: the token ids as u32 (convert_lora_to_gguf.py set_gguf_parameters; llama-adapter.cpp requires UINT32)
      ...(alora ? [{ key: "adapter.alora.invocation_tokens", value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.UINT32, value: Uint32Array.from(alora) } } as GGUFKV] : []),
      kv.u32("general.quantization_version", 2),
    ];
    kvs = applyKvOverrides(kvs, [], opts.kvOverrides ?? []);
    const header = encodeGgufHeader(kvs, tensors.map((t) => ({ name: t.out.name, ne: t.out.ne, type: t.type })));
    const parts = { ...(md.name !== undefined ? { name: md.name } : {}), ...(md.basename !== undefined ? { baseName: md.basename } : {}), ...(md.finetune !== undefined ? { fineTune: md.finetune } : {}), ...(md.version !== undefined ? { version: md.version } : {}) };
    const defaultFile = `${conventionalName({ ...parts, encoding: ot.label, kind: "LoRA" })}.gguf`;
    const out = resolveOutputPath(defaultOutputDir(adapter.dir), defaultFile, opts.outfile, ot.label, "--outfile");
    await refuseInputOverwrite([out], adapter.dir, [adapter.file]);
    const file: PlannedFile = { path: out, role: "model", kvs, tensors, header, fileType: 0, typeLabel: ot.label, metadata: md };
    return { file, adapter, arch: fam.spec.arch, alpha, targets, close: () => adapter.close() };
  } catch (e) {
    await adapter.close();
    throw e;
  }
}

/**
 * conversion/base.py ModelBase.__init__ for LlamaFileType.GUESSED: the first ≥2-D tensor (a LoRA pair, in
 * sorted-key order; float32 when A and B differ) in bf16 → BF16, in f16 → F16; none → F16.
 */
function autoOuttype(adapter: LoraAdapter): LoraOuttype {
  for (const t of [...adapter.targets].sort((x, y) => (x.a.name < y.a.name ? -1 : x.a.name > y.a.name ? 1 : 0))) {
    if (t.a.dtype !== t.b.dtype) continue;
    if (t.a.dtype === "BF16") return "bf16";
    if (t.a.dtype === "F16") return "f16";
  }
  return "f16";
}

/** A whole adapter tensor, read once per output tensor and dropped after its last row was served. */
function cached(read: () => Promise<Float32Array>, totalRows: number): (row0: number, nRows: number, rowLen: number) => Promise<Float32Array> {
  let p: Promise<Float32Array> | undefined;
  return async (row0, nRows, rowLen) => {
    p ??= read();
    const v = await p;
    if (row0 + nRows >= totalRows) p = undefined;
    return v.slice(row0 * rowLen, (row0 + nRows) * rowLen);
  };
}

function loraA(adapter: LoraAdapter, p: LoraTensorPlan): OutputTensor {
  const a = p.target.a;
  const [r, n] = [a.shape[0]!, a.shape[1]!];
  const enc = a.dtype.toLowerCase();
  if (p.target.embedding) {
    // token_embd: Aᵀ, [vocab, r] → ne [r, vocab]
    const rows = cached(async () => {
      const v = await adapter.read(a);
      const tr = new Float32Array(r * n);
      for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) tr[j * r + i] = v[i * n + j]!;
      return tr;
    }, n);
    return { name: `${p.gguf}.lora_a`, ne: [r, n], sources: [a.name], encoding: `${enc} transposed`, dtype: "f32", read: (r0, k) => rows(r0, k, r) };
  }
  const rows = cached(() => adapter.read(a), r);
  return { name: `${p.gguf}.lora_a`, ne: [n, r], sources: [a.name], encoding: enc, dtype: "f32", read: (r0, k) => rows(r0, k, n) };
}

function loraB(adapter: LoraAdapter, p: LoraTensorPlan): OutputTensor {
  const b = p.target.b;
  const [out, r] = [b.shape[0]!, b.shape[1]!];
  const heads = p.permuteHeads;
  const rows = cached(async () => {
    const v = await adapter.read(b);
    let w = v;
    if (heads !== undefined) {
      // LlamaModel.permute on the rows (LoraTorchTensor reshapes/permutes B, never A)
      const headRows = out / heads;
      w = new Float32Array(v.length);
      for (let i = 0; i < out; i++) {
        const s = permutedSourceRow(i, headRows);
        w.set(v.subarray(s * r, (s + 1) * r), i * r);
      }
    }
    if (p.bFactor !== 1) {
      if (w === v) w = new Float32Array(v);
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i]! * p.bFactor);
    }
    return w;
  }, out);
  const enc = [b.dtype.toLowerCase(), heads !== undefined ? "rows permuted" : "", p.bFactor !== 1 ? `× ${p.bFactor}` : ""].filter(Boolean).join(", ");
  return { name: `${p.gguf}.lora_b`, ne: [r, out], sources: [b.name], encoding: enc, dtype: "f32", read: (r0, k) => rows(r0, k, r) };
}

export interface ConvertLoraResult {
  path: string;
  bytes: number;
  tensors: number;
  plan: LoraPlan;
}

/** Plan and write the LoRA GGUF (a temp file renamed into place; nothing is left on an error). */
export async function convertLora(opts: ConvertLoraOptions): Promise<ConvertLoraResult> {
  const p = await planLora(opts);
  try {
    const r = await runPlan([p.file], opts);
    const f = r.files[0]!;
    return { path: f.path, bytes: f.bytes, tensors: f.tensors, plan: p };
  } finally {
    await p.close();
  }
}
