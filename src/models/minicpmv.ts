/**
 * The MiniCPM-V family (`architectures: ["MiniCPMV"]` / `["MiniCPMO"]`): MiniCPM-Llama3-V 2.5, MiniCPM-V 2.6,
 * MiniCPM-o 2.6 (vision part), MiniCPM-V 4.0 and 4.5 — a SigLIP-400M-shaped vision tower (`vpm`), a one-layer
 * resampler (`resampler`) and an LLM (`llm`). Which release, and so which clip.minicpmv_version and LLM
 * architecture, is decided in src/models/minicpmv/versions.ts from config.json (or --minicpmv-version).
 *
 * llama.cpp has no convert_hf_to_gguf path for these; the supported route is the legacy pipeline
 * (tools/mtmd/legacy-models/minicpmv-surgery.py, minicpmv-convert-image-encoder-to-gguf.py,
 * then convert_hf_to_gguf.py on the surgery output). This module produces the same two files
 * directly from the checkpoint:
 *
 * - the language model: every `llm.*` tensor with the prefix stripped, converted exactly as the release's LLM
 *   class (Llama: conversion/llama.py LlamaModel, Q/K un-permuted; Qwen2 / Qwen3: conversion/qwen.py), with the
 *   checkpoint's own tokenizer (its added tokens <image>, <slice> … and chat template);
 * - the vision projector ("mmproj", `general.architecture = clip`): `vpm.*` (SigLIP) and
 *   `resampler.*`, with the legacy image-encoder script's keys, names and dtype rules
 *   (tools/mtmd/legacy-models/minicpmv-convert-image-encoder-to-gguf.py):
 *   `resampler.attn.in_proj_*` split into q/k/v thirds, `resampler.proj` transposed into
 *   `resampler.proj.weight`, the computed 2-D sin/cos table `resampler.pos_embed_k`, and the
 *   legacy (swapped) vision FFN names `ffn_down` = fc1, `ffn_up` = fc2, which load in both old
 *   and current clip.cpp (current clip.cpp detects the legacy layout and swaps back). The releases differ
 *   only in `clip.minicpmv_version` and the widths / query count read from config.json.
 * - MiniCPM-o's audio encoder (`apm`), audio projection and TTS (`tts`) are not converted (the legacy pipeline
 *   keeps vision only); a warning names them with their tensor counts.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { MissingFile, readSmallFileSync, SMALL_FILE_CAPS } from "../formats/files.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { GGMLType as G, typeInfo } from "../quant/ggml/types.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import { passThrough, toNe } from "./tensors.js";
import { buildTextDecoder, type DecoderSpec } from "./text-decoder.js";
import { llamaSpec } from "./llama.js";
import { qwen2Spec } from "./qwen2.js";
import { qwen3Spec } from "./qwen3.js";
import { detectMinicpmvRelease, MINICPMO_SKIPPED_MODULES, MINICPMV_VISION_TYPES, type MinicpmvLlm, type MinicpmvRelease } from "./minicpmv/versions.js";
import type { ConvertContext, ModelConverter, ModelFile, OutputTensor } from "./types.js";

export { MINICPMV_RELEASES, detectMinicpmvRelease, parseMinicpmvVersion } from "./minicpmv/versions.js";

/** The resampler's position grid is always 70×70 (Resampler max_size; the legacy script hard-codes it). */
export const MINICPMV_POS_GRID = 70;
/** clip.minicpmv_version for MiniCPM-V 2.6 (selects the 2.6 slice template and 64 queries in mtmd). */
export const MINICPMV_26_VERSION = 3;
/** The vision / resampler LayerNorm epsilon the legacy script writes (SigLIP and the resampler both use 1e-6). */
const LAYER_NORM_EPS = 1e-6;
/** The legacy script's default image mean/std (SigLIP normalisation), used when preprocessor_config.json has none. */
const DEFAULT_MEAN_STD = [0.5, 0.5, 0.5];

/** mmproj output types ggufy offers (--mmproj-type). */
export const MMPROJ_TYPES = ["f16", "f32", "q8_0"] as const;

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function num(o: Record<string, unknown> | undefined, key: string): number | undefined {
  const v = o?.[key];
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/**
 * The release (src/models/minicpmv/versions.ts) and its vision_config, refused by name when ggufy does not know it:
 * every release's tower is SigLIP-400M-shaped (Idefics2VisionTransformer for 2.5, the SigLIP NaViT copy for 2.6+)
 * with gelu_pytorch_tanh, which is what clip.cpp's `clip.use_gelu` graph computes.
 */
export function checkSupported(config: Record<string, unknown>, file: string, override?: number): { vc: Record<string, unknown>; release: MinicpmvRelease; warnings: readonly string[] } {
  const { release, warnings } = detectMinicpmvRelease(config, file, override);
  const vc = obj(config["vision_config"]);
  if (!vc) throw new GgufyError("E_CONFIG", "vision_config is missing or not an object (MiniCPM-V needs its vision tower's config)", { file });
  const vt = vc["model_type"];
  if (vt !== undefined && !(MINICPMV_VISION_TYPES as readonly unknown[]).includes(vt)) {
    throw new GgufyError("E_UNSUPPORTED_ARCH", `vision_config.model_type ${JSON.stringify(vt)} is not a MiniCPM-V vision tower ggufy knows (${MINICPMV_VISION_TYPES.join(", ")})`, { file });
  }
  const act = vc["hidden_act"];
  if (act !== undefined && act !== "gelu_pytorch_tanh") {
    throw new GgufyError("E_UNSUPPORTED_ARCH", `vision_config.hidden_act ${JSON.stringify(act)}: llama.cpp's MiniCPM-V graph computes gelu_pytorch_tanh (clip.use_gelu)`, { file });
  }
  for (const k of ["hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "patch_size", "image_size"]) {
    const x = vc[k];
    if (x !== undefined && !(typeof x === "number" && Number.isInteger(x) && x > 0)) {
      throw new GgufyError("E_CONFIG", `vision_config.${k} must be a positive integer, found ${JSON.stringify(x)}`, { file });
    }
  }
  return { vc, release, warnings };
}

/** image_mean / image_std from preprocessor_config.json (`image_mean`, or MiniCPM-V's `norm_mean`), else 0.5. */
function meanStd(dir: string): { mean: number[]; std: number[] } {
  const file = path.join(dir, "preprocessor_config.json");
  let pp: Record<string, unknown> | undefined;
  let text: string;
  try {
    // a regular file of bounded size inside the model folder: a FIFO or device is refused, never waited on
    text = readSmallFileSync(file, { code: "E_CONFIG", cap: SMALL_FILE_CAPS.config, what: "preprocessor_config.json", confine: true }).toString("utf8");
  } catch (e) {
    if (e instanceof MissingFile) return { mean: DEFAULT_MEAN_STD, std: DEFAULT_MEAN_STD };
    throw e;
  }
  try {
    pp = obj(JSON.parse(text));
  } catch (e) {
    throw new GgufyError("E_CONFIG", `preprocessor_config.json is not valid JSON (${(e as Error).message})`, { file });
  }
  const pick = (keys: string[]): number[] => {
    for (const k of keys) {
      const v = pp?.[k];
      if (v === undefined) continue;
      if (!Array.isArray(v) || v.length < 3 || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
        throw new GgufyError("E_CONFIG", `${k} must be an array of at least 3 numbers`, { file });
      }
      return v as number[];
    }
    return DEFAULT_MEAN_STD;
  };
  return { mean: pick(["image_mean", "norm_mean"]), std: pick(["image_std", "norm_std"]) };
}

// ---------------------------------------------------------------------------------------------
// resampler.pos_embed_k: the legacy script's get_2d_sincos_pos_embed(D, (70, 70)) in float32

/**
 * ω[k] = 1 / 10000^(k / (D/4)), k = 0 … D/4−1, each numpy float32 step rounded to float32:
 * `arange(D/4, float32) /= D/4`, `10000 ** ω`, `1 / ·`.
 */
export function sincosOmega(embedDim: number): Float32Array {
  const q = embedDim / 4;
  const out = new Float32Array(q);
  for (let k = 0; k < q; k++) {
    const e = Math.fround(k / q);
    const p = Math.fround(Math.pow(10000, e));
    out[k] = Math.fround(1 / p);
  }
  return out;
}

/**
 * Rows [row0, row0+nRows) of the 2-D sin/cos table (grid × grid rows of D columns). Row m is the
 * position h = ⌊m / grid⌋, w = m mod grid; columns: sin(w·ω), cos(w·ω), sin(h·ω), cos(h·ω), each D/4 wide
 * (the script's meshgrid(grid_w, grid_h) puts w first). Products and sin/cos are rounded to float32
 * as numpy's float32 einsum/sin/cos would (numpy's SIMD sin/cos may differ in the last bit; the
 * tensor is loaded but not used by clip.cpp, which recomputes the embedding at run time).
 */
export function sincosRows(embedDim: number, grid: number, row0: number, nRows: number, omega = sincosOmega(embedDim)): Float32Array {
  const q = embedDim / 4;
  // the 1-D table of one axis, [sin(p·ω), cos(p·ω)] for p = 0 … grid−1: every row is two of its rows
  // (grid·D/2 sin/cos evaluations per call instead of D per row — 70× fewer for MiniCPM-V's 70 × 70)
  const axis = new Float32Array(grid * 2 * q);
  for (let p = 0; p < grid; p++) {
    for (let k = 0; k < q; k++) {
      const x = Math.fround(p * omega[k]!);
      axis[p * 2 * q + k] = Math.sin(x);
      axis[p * 2 * q + q + k] = Math.cos(x);
    }
  }
  const out = new Float32Array(nRows * embedDim);
  for (let r = 0; r < nRows; r++) {
    const m = row0 + r;
    const h = Math.floor(m / grid);
    const w = m - h * grid;
    out.set(axis.subarray(w * 2 * q, (w + 1) * 2 * q), r * embedDim);
    out.set(axis.subarray(h * 2 * q, (h + 1) * 2 * q), r * embedDim + 2 * q);
  }
  return out;
}

function posEmbedK(embedDim: number, grid: number): OutputTensor {
  if (embedDim % 4 !== 0) throw new GgufyError("E_CONFIG", `the resampler width ${embedDim} is not a multiple of 4 (needed by its 2-D sin/cos position table)`);
  const omega = sincosOmega(embedDim);
  return {
    name: "resampler.pos_embed_k",
    ne: [embedDim, grid * grid],
    sources: [],
    encoding: `computed (2-D sin/cos, ${grid}x${grid})`,
    dtype: "f32",
    read: async (row0, nRows) => sincosRows(embedDim, grid, row0, nRows, omega),
  };
}

// ---------------------------------------------------------------------------------------------
// transformed resampler tensors

/** Rows [part·n, (part+1)·n) of a 2-D tensor (one third of `in_proj_weight`), or that slice of a 1-D tensor. */
function rowSlice(src: SourceCheckpoint, t: SourceTensor, ggufName: string, part: number, parts: number): OutputTensor {
  if (t.shape.length === 1) {
    const n = t.shape[0]! / parts;
    return {
      name: ggufName, ne: [n], sources: [t.name], encoding: `${t.encoding}, [${part * n}:${(part + 1) * n}]`, dtype: t.dtype,
      read: async (row0, nRows) => {
        if (nRows === 0) return new Float32Array(0);
        // a bias: one GGUF row; the source is one row of parts·n elements
        const all = await src.readAll(t.name);
        return all.slice(part * n, (part + 1) * n);
      },
    };
  }
  const n = t.shape[0]! / parts;
  return {
    name: ggufName, ne: toNe([n, ...t.shape.slice(1)]), sources: [t.name], encoding: `${t.encoding}, rows ${part * n}:${(part + 1) * n}`, dtype: t.dtype,
    read: (row0, nRows) => src.readRows(t.name, part * n + row0, nRows),
    // the stored bytes of the same rows: widened and converted in the workers, not on the main thread
    readRaw: (row0, nRows, into) => src.readRawRows(t.name, part * n + row0, nRows, into),
  };
}

/**
 * `resampler.proj` ([A, B] numpy, used as x @ proj) stored transposed as `resampler.proj.weight`
 * (numpy [B, A], ne [A, B]) so that ggml_mul_mat(W, x) = x @ proj. Output row r is column r of the
 * source, so the whole tensor is needed for any row: this one 2-D tensor (3584² floats = 51 MB for
 * MiniCPM-V 2.6) is materialised, transposed once, and released after its last row has been read.
 */
function transposed(src: SourceCheckpoint, t: SourceTensor, ggufName: string): OutputTensor {
  if (t.shape.length !== 2) throw new GgufyError("E_CONFIG", `expected a 2-D matrix, found shape [${t.shape.join(", ")}]`, { tensor: t.name });
  const [a, b] = [t.shape[0]!, t.shape[1]!];
  let cache: Promise<Float32Array> | undefined;
  const load = async (): Promise<Float32Array> => {
    const s = await src.readAll(t.name);
    const out = new Float32Array(a * b);
    const BLK = 64;
    for (let i0 = 0; i0 < a; i0 += BLK) {
      for (let j0 = 0; j0 < b; j0 += BLK) {
        const i1 = Math.min(a, i0 + BLK);
        const j1 = Math.min(b, j0 + BLK);
        for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * a + i] = s[i * b + j]!;
      }
    }
    return out;
  };
  return {
    name: ggufName, ne: [a, b], sources: [t.name], encoding: `${t.encoding}, transposed`, dtype: t.dtype,
    read: async (row0, nRows) => {
      const p = (cache ??= load());
      const m = await p;
      const rows = m.slice(row0 * a, (row0 + nRows) * a);
      if (row0 + nRows >= b && cache === p) cache = undefined;
      return rows;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the mmproj file

/** The legacy script's type rule, extended with q8_0: see chooseType below. */
export function mmprojTensorType(t: Pick<OutputTensor, "name" | "ne">, requested: string): G {
  const req = requested.toLowerCase();
  if (!(MMPROJ_TYPES as readonly string[]).includes(req)) {
    throw new GgufyError("E_USAGE", `--mmproj-type ${requested}: MiniCPM-V's vision projector can be ${MMPROJ_TYPES.join(", ")}`);
  }
  // convolution kernels: ggml's conv op needs F16 (the script writes them F16 even with --use-f32)
  if (t.ne.length === 4) return G.F16;
  // biases, LayerNorms, resampler.query and resampler.pos_embed_k stay F32
  if (t.ne.length !== 2 || !t.name.endsWith(".weight")) return G.F32;
  if (req === "f32") return G.F32;
  if (req === "f16") return G.F16;
  // q8_0: llama-quantize never block-quantizes position embeddings; rows that no block divides
  // (SigLIP fc2: 4304) stay F16 like convert_hf_to_gguf's fallback
  if (t.name === "v.position_embd.weight") return G.F16;
  return t.ne[0]! % typeInfo(G.Q8_0).blockSize === 0 ? G.Q8_0 : G.F16;
}

interface VisionDims {
  hidden: number;
  ffn: number;
  heads: number;
  patch: number;
  layers: number;
}

export function buildMinicpmvMmproj(ctx: ConvertContext, release?: MinicpmvRelease): ModelFile {
  const file = path.join(ctx.dir, "config.json");
  const checked = checkSupported(ctx.config, file, ctx.minicpmvVersion);
  const vc = checked.vc;
  const rel = release ?? checked.release;
  const src = ctx.src;
  const req = (name: string): SourceTensor => src.require(name);

  // vision layers actually stored (drop_vision_last_layer checkpoints store one fewer than num_hidden_layers)
  const layerIds = new Set<number>();
  for (const n of src.names()) {
    const m = /^vpm\.encoder\.layers\.(\d+)\./.exec(n);
    if (m) layerIds.add(Number(m[1]));
  }
  const nLayers = layerIds.size;
  for (let i = 0; i < nLayers; i++) if (!layerIds.has(i)) throw new GgufyError("E_MISSING_TENSOR", `vision layer ${i} is missing (found ${nLayers} layers)`, { file: src.dir, tensor: `vpm.encoder.layers.${i}` });
  const cfgLayers = num(vc, "num_hidden_layers") ?? 27;
  const drop = ctx.config["drop_vision_last_layer"] === true;
  if (nLayers === 0) throw new GgufyError("E_MISSING_TENSOR", "no vision tower (vpm.encoder.layers.*) in the checkpoint", { file: src.dir });
  if (nLayers !== cfgLayers && !(drop && nLayers === cfgLayers - 1)) {
    throw new GgufyError("E_CONFIG", `vision_config.num_hidden_layers is ${cfgLayers}${drop ? " (drop_vision_last_layer)" : ""} but the checkpoint has ${nLayers} vision layers`, { file });
  }
  const dims: VisionDims = {
    hidden: num(vc, "hidden_size") ?? 1152,
    ffn: num(vc, "intermediate_size") ?? 4304,
    heads: num(vc, "num_attention_heads") ?? 16,
    patch: num(vc, "patch_size") ?? 14,
    layers: nLayers,
  };
  const embDim = num(ctx.config, "hidden_size");
  if (embDim === undefined) throw new GgufyError("E_CONFIG", "needs hidden_size (the LLM width, also the resampler width)", { file });
  const imageSize = num(ctx.config, "image_size") ?? 448;

  const tensors: OutputTensor[] = [];
  let queryNum = num(ctx.config, "query_num");
  const expectShape = (t: SourceTensor, shape: number[]): void => {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new GgufyError("E_CONFIG", `shape [${t.shape.join(", ")}] contradicts config.json (expected [${shape.join(", ")}])`, { file: src.dir, tensor: t.name });
    }
  };
  const E = embDim;
  const V = dims.hidden;
  const pass = (name: string, gguf: string, shape: number[], extra: Partial<OutputTensor> = {}): void => {
    const t = req(name);
    expectShape(t, shape);
    tensors.push({ ...passThrough(src, t, gguf), ...extra });
  };

  // resampler, in the script's (state-dict) order
  const query = req("resampler.query");
  queryNum ??= query.shape[0]!;
  expectShape(query, [queryNum, E]);
  tensors.push(passThrough(src, query, "resampler.query"));
  const proj = req("resampler.proj");
  expectShape(proj, [E, E]);
  tensors.push(posEmbedK(E, MINICPMV_POS_GRID));
  tensors.push(transposed(src, proj, "resampler.proj.weight"));
  pass("resampler.kv_proj.weight", "resampler.kv.weight", [E, V]);
  const inW = req("resampler.attn.in_proj_weight");
  expectShape(inW, [3 * E, E]);
  const inB = req("resampler.attn.in_proj_bias");
  expectShape(inB, [3 * E]);
  ["q", "k", "v"].forEach((p, i) => tensors.push(rowSlice(src, inW, `resampler.attn.${p}.weight`, i, 3)));
  ["q", "k", "v"].forEach((p, i) => tensors.push(rowSlice(src, inB, `resampler.attn.${p}.bias`, i, 3)));
  pass("resampler.attn.out_proj.weight", "resampler.attn.out.weight", [E, E]);
  pass("resampler.attn.out_proj.bias", "resampler.attn.out.bias", [E]);
  for (const ln of ["ln_q", "ln_kv", "ln_post"]) {
    pass(`resampler.${ln}.weight`, `resampler.${ln}.weight`, [E]);
    pass(`resampler.${ln}.bias`, `resampler.${ln}.bias`, [E]);
  }

  // SigLIP, in the script's order (its SiglipAttention registers k, v, q, out)
  // a Conv2d kernel [V, 3, p, p], written 4-D as it is (ne [p, p, 3, V]) and always F16
  pass("vpm.embeddings.patch_embedding.weight", "v.patch_embd.weight", [V, 3, dims.patch, dims.patch], { forceType: G.F16 });
  pass("vpm.embeddings.patch_embedding.bias", "v.patch_embd.bias", [V]);
  const side = Math.floor((num(vc, "image_size") ?? 980) / dims.patch);
  const posRows = side * side;
  pass("vpm.embeddings.position_embedding.weight", "v.position_embd.weight", [posRows, V]);
  for (let i = 0; i < nLayers; i++) {
    const p = `vpm.encoder.layers.${i}.`;
    const g = `v.blk.${i}.`;
    for (const x of ["k", "v", "q"]) {
      pass(`${p}self_attn.${x}_proj.weight`, `${g}attn_${x}.weight`, [V, V]);
      pass(`${p}self_attn.${x}_proj.bias`, `${g}attn_${x}.bias`, [V]);
    }
    pass(`${p}self_attn.out_proj.weight`, `${g}attn_out.weight`, [V, V]);
    pass(`${p}self_attn.out_proj.bias`, `${g}attn_out.bias`, [V]);
    pass(`${p}layer_norm1.weight`, `${g}ln1.weight`, [V]);
    pass(`${p}layer_norm1.bias`, `${g}ln1.bias`, [V]);
    // legacy names: fc1 (V → ffn) is written as ffn_down, fc2 (ffn → V) as ffn_up
    pass(`${p}mlp.fc1.weight`, `${g}ffn_down.weight`, [dims.ffn, V]);
    pass(`${p}mlp.fc1.bias`, `${g}ffn_down.bias`, [dims.ffn]);
    pass(`${p}mlp.fc2.weight`, `${g}ffn_up.weight`, [V, dims.ffn]);
    pass(`${p}mlp.fc2.bias`, `${g}ffn_up.bias`, [V]);
    pass(`${p}layer_norm2.weight`, `${g}ln2.weight`, [V]);
    pass(`${p}layer_norm2.bias`, `${g}ln2.bias`, [V]);
  }
  pass("vpm.post_layernorm.weight", "v.post_ln.weight", [V]);
  pass("vpm.post_layernorm.bias", "v.post_ln.bias", [V]);

  // every vpm.* / resampler.* tensor must have been used
  const used = new Set(tensors.flatMap((t) => t.sources));
  for (const n of src.names()) {
    if (!(n.startsWith("vpm.") || n.startsWith("resampler.")) || used.has(n)) continue;
    if (n === "vpm.embeddings.position_ids") continue; // a buffer the script skips
    throw new GgufyError("E_UNEXPECTED_TENSOR", `no GGUF name for this tensor in ${rel.name}'s vision projector`, { file: src.dir, tensor: n });
  }

  const { mean, std } = meanStd(ctx.dir);
  const kvs: GGUFKV[] = [
    kv.bool("clip.has_text_encoder", false),
    kv.bool("clip.has_vision_encoder", true),
    kv.bool("clip.has_minicpmv_projector", true),
    // the legacy script's order: file_type (value set by the plan) and description come here
    kv.u32("general.file_type", 1),
    kv.str("general.description", "image encoder for MiniCPM-V"),
    kv.str("clip.projector_type", "resampler"),
    kv.i32("clip.minicpmv_version", rel.clipVersion),
    kv.u32("clip.vision.image_size", imageSize),
    kv.u32("clip.vision.patch_size", dims.patch),
    kv.u32("clip.vision.embedding_length", dims.hidden),
    kv.u32("clip.vision.feed_forward_length", dims.ffn),
    kv.u32("clip.vision.projection_dim", 0),
    kv.u32("clip.vision.attention.head_count", dims.heads),
    kv.f32("clip.vision.attention.layer_norm_epsilon", LAYER_NORM_EPS),
    kv.u32("clip.vision.block_count", dims.layers),
    kv.u32("clip.minicpmv_query_num", queryNum ?? 0),
    kv.f32s("clip.vision.image_mean", mean),
    kv.f32s("clip.vision.image_std", std),
    kv.bool("clip.use_gelu", true),
  ];
  return {
    role: "mmproj",
    arch: "clip",
    kvs,
    tensors,
    chooseType: mmprojTensorType,
  };
}

/** The decoder module of each release's language model (the architectures of src/models). */
const LLM_SPECS: Record<MinicpmvLlm, DecoderSpec> = { llama: llamaSpec, qwen2: qwen2Spec, qwen3: qwen3Spec };

/** Top-level module of a checkpoint key ("llm", "vpm", "apm" …). */
const topModule = (n: string): string => n.slice(0, n.indexOf(".") >>> 0);

export const minicpmv: ModelConverter = {
  id: "minicpmv",
  hfArchitectures: ["MiniCPMV", "MiniCPMO"],
  async build(ctx: ConvertContext): Promise<ModelFile[]> {
    const { release, warnings } = checkSupported(ctx.config, path.join(ctx.dir, "config.json"), ctx.minicpmvVersion);
    const skipped = new Map<string, number>();
    for (const n of ctx.src.names()) {
      if (/^(llm|vpm|resampler)\./.test(n)) continue;
      const m = topModule(n);
      if (release.architecture === "MiniCPMO" && (MINICPMO_SKIPPED_MODULES as readonly string[]).includes(m)) {
        skipped.set(m, (skipped.get(m) ?? 0) + 1);
        continue;
      }
      throw new GgufyError("E_UNEXPECTED_TENSOR", `${release.name} tensors live under llm., vpm. or resampler.${release.architecture === "MiniCPMO" ? ` (and the skipped ${MINICPMO_SKIPPED_MODULES.join(", ")})` : ""}`, { file: ctx.src.dir, tensor: n });
    }
    const notes = [...warnings];
    if (skipped.size) {
      notes.push(`${release.name}: not converted (llama.cpp's MiniCPM-V pipeline has vision only): ${[...skipped].map(([m, c]) => `${m} (${c} tensor${c === 1 ? "" : "s"})`).join(", ")}`);
    }
    // the surgery script's net effect: the LLM is every llm.* tensor with the prefix stripped, converted as
    // convert_hf_to_gguf.py converts the class the release's modeling code instantiates
    const llm = await buildTextDecoder(ctx, LLM_SPECS[release.llm], "llm.", ctx.dir);
    const withNotes = notes.length ? { ...llm, warnings: [...notes, ...(llm.warnings ?? [])] } : llm;
    // --vocab-only: the tokenizer lives in the LLM file; there is no vision projector to write
    return ctx.vocabOnly ? [withNotes] : [withNotes, buildMinicpmvMmproj(ctx, release)];
  },
};
