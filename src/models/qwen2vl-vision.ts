/**
 * The vision projector ("mmproj", `general.architecture = clip`) of Qwen2-VL / Qwen2.5-VL, as llama.cpp's
 * `conversion/qwenvl.py` Qwen2VLVisionModel (on base.py MmprojModel) writes it, for what
 * tools/mtmd/clip.cpp (PROJECTOR_TYPE_QWEN2VL / QWEN25VL, models/qwen2vl.cpp) loads:
 *
 * - `visual.patch_embed.proj.weight`, a Conv3d kernel [C, 3, 2, p, p] (temporal kernel 2, no bias), split on
 *   the temporal axis into two Conv2d kernels `v.patch_embd.weight` (t = 0) and `v.patch_embd.weight.1`
 *   (t = 1); clip.cpp convolves the image with both and adds them (a still image is its own second frame).
 * - `visual.blocks.N.attn.qkv` split into thirds `attn_q` / `attn_k` / `attn_v` (weight and bias);
 *   `attn.proj` → `attn_out`; `norm1` / `norm2` → `ln1` / `ln2` (LayerNorm with bias in Qwen2-VL, RMSNorm
 *   without in 2.5 — clip.cpp picks the norm from the projector type); the MLP `fc1` / `fc2` (Qwen2-VL,
 *   quick-GELU) or `gate_proj` / `up_proj` / `down_proj` (2.5, SwiGLU: `clip.use_silu`) → `ffn_up` /
 *   `ffn_down` / `ffn_gate`.
 * - the merger: `ln_q` → `v.post_ln`, `mlp.0` / `mlp.2` → `mm.0` / `mm.2` (GELU between them).
 * - KVs (MmprojModel.set_gguf_parameters, then qwenvl.py's): file type, has_vision_encoder, projection_dim
 *   (the LLM width), image_size (560 when the config has none), patch_size, embedding_length,
 *   feed_forward_length (Qwen2-VL: qwenvl.py renames vision_config.hidden_size — the merger's output width —
 *   to intermediate_size, so that is what it writes; clip.cpp does not use it for this projector),
 *   block_count, head_count, image_mean / image_std (preprocessor_config.json), projector_type
 *   (`qwen2vl_merger` / `qwen2.5vl_merger`), for 2.5 `clip.use_silu` and `clip.vision.n_wa_pattern`
 *   (= fullatt_block_indexes[0] + 1: clip.cpp attends over the whole image in layers with (il+1) % n == 0 and
 *   within 112-pixel windows elsewhere), then the norm epsilon (the config's top-level rms_norm_eps, 1e-6
 *   when absent).
 * - types (base.py prepare_tensors + MmprojModel.tensor_force_quant): 1-D tensors F32; the two patch kernels
 *   F16 with --mmproj-type f16 and F32 otherwise; other weights the requested type (q8_0 falls back to F16 when
 *   a row is not a multiple of 32, as gguf-py's QuantError fallback does).
 *
 * Values clip.cpp hard-codes are checked, not assumed: spatial_merge_size 2, temporal_patch_size 2, 3 input
 * channels, window_size 112 (clip.cpp's default; qwenvl.py writes no window size), and a
 * fullatt_block_indexes list that clip.cpp's single pattern reproduces exactly.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { MissingFile, readSmallFileSync, SMALL_FILE_CAPS } from "../formats/files.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { GGMLType as G, typeInfo } from "../quant/ggml/types.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import { HfConfig } from "./config.js";
import { textConfig } from "./text-decoder.js";
import { passThrough, toNe } from "./tensors.js";
import type { ConvertContext, ModelFile, OutputTensor } from "./types.js";

export type QwenVlKind = "qwen2vl" | "qwen25vl";

/** clip.projector_type values (gguf-py constants.py VisionProjectorType.QWEN2VL / QWEN25VL). */
export const QWENVL_PROJECTOR: Readonly<Record<QwenVlKind, string>> = { qwen2vl: "qwen2vl_merger", qwen25vl: "qwen2.5vl_merger" };
/** qwenvl.py: `self.hparams_vision.get("image_size", 560)` */
export const QWENVL_DEFAULT_IMAGE_SIZE = 560;
/** clip.cpp: `attn_window_size > 0 ? … : 112` (no KV carries it) */
export const QWENVL_WINDOW_SIZE = 112;
export const QWENVL_MMPROJ_TYPES = ["f16", "f32", "q8_0"] as const;

/** config.json model_type → which projector (qwenvl.py set_gguf_parameters: anything else is an error). */
export function qwenVlKind(config: Record<string, unknown>, file: string): QwenVlKind {
  const mt = config["model_type"];
  if (mt === "qwen2_vl") return "qwen2vl";
  if (mt === "qwen2_5_vl") return "qwen25vl";
  throw new GgufyError("E_CONFIG", `model_type is ${JSON.stringify(mt ?? null)}; a Qwen2-VL checkpoint has "qwen2_vl" and a Qwen2.5-VL one "qwen2_5_vl"`, { file });
}

export interface QwenVisionHparams {
  kind: QwenVlKind;
  /** ViT width */
  embd: number;
  /** MLP width (fc1 / gate_proj / up_proj rows) */
  ffn: number;
  /** clip.vision.feed_forward_length as qwenvl.py writes it */
  ffnKv: number;
  heads: number;
  depth: number;
  patch: number;
  imageSize: number;
  /** merger output width = the LLM's hidden_size */
  outDim: number;
  /** 2.5: full-attention interval (clip.vision.n_wa_pattern) */
  nWaPattern?: number;
  fullAtt?: number[];
  eps: number;
}

/** vision_config read typed and checked against what clip.cpp can run. */
export function readQwenVision(config: Record<string, unknown>, file: string): QwenVisionHparams {
  const kind = qwenVlKind(config, file);
  const root = new HfConfig(config, file);
  const vc = root.obj("vision_config") ?? root.refuse("vision_config", "is missing; Qwen2-VL's vision tower is described there");
  const text = textConfig(config, file);
  const llmHidden = text.reqInt("hidden_size");
  const depth = vc.reqInt("depth");
  const heads = vc.reqInt("num_heads");
  const patch = vc.int("patch_size") ?? 14;
  const sp = vc.int("spatial_patch_size");
  if (sp !== undefined && sp !== patch) vc.refuse("spatial_patch_size", `is ${sp} but patch_size is ${patch}; the patch embedding has one spatial size`);
  const merge = vc.int("spatial_merge_size") ?? 2;
  if (merge !== 2) vc.refuse("spatial_merge_size", `is ${merge}; llama.cpp's qwen2vl graph merges 2×2 patches (clip.cpp hard-codes 2; qwenvl.py writes no merge size)`);
  const tps = vc.int("temporal_patch_size") ?? 2;
  if (tps !== 2) vc.refuse("temporal_patch_size", `is ${tps}; llama.cpp splits the Conv3d patch kernel into exactly 2 frames (qwenvl.py asserts temporal_patch_size 2)`);
  for (const k of ["in_chans", "in_channels"]) {
    const c = vc.int(k);
    if (c !== undefined && c !== 3) vc.refuse(k, `is ${c}; clip.cpp feeds 3-channel RGB images`);
  }
  const imageSize = vc.int("image_size") ?? QWENVL_DEFAULT_IMAGE_SIZE;
  const eps = root.num("rms_norm_eps", { gt: 0 }) ?? 1e-6;
  const act = vc.str("hidden_act");
  if (kind === "qwen2vl") {
    const embd = vc.reqInt("embed_dim");
    const outDim = vc.reqInt("hidden_size");
    const ratio = vc.num("mlp_ratio", { gt: 0 }) ?? 4;
    const ffn = embd * ratio;
    if (!Number.isInteger(ffn)) vc.refuse("mlp_ratio", `is ${ratio}; embed_dim × mlp_ratio = ${ffn} is not an integer`);
    // modeling_qwen2_vl.py VisionMlp uses ACT2FN[hidden_act] (default quick_gelu); clip.cpp's default FFN op is quick GELU
    if (act !== undefined && act !== "quick_gelu") vc.refuse("hidden_act", `is ${JSON.stringify(act)}; llama.cpp runs Qwen2-VL's vision MLP with quick GELU (qwenvl.py writes no activation flag for qwen2_vl)`);
    if (outDim !== llmHidden) vc.refuse("hidden_size", `is ${outDim} but the language model's hidden_size is ${llmHidden}; the merger's output feeds the LLM`);
    if (embd % heads !== 0) vc.refuse("num_heads", `is ${heads}; embed_dim ${embd} is not a multiple of it`);
    return { kind, embd, ffn, ffnKv: outDim, heads, depth, patch, imageSize, outDim, eps };
  }
  const embd = vc.reqInt("hidden_size");
  const ffn = vc.reqInt("intermediate_size");
  const outDim = vc.reqInt("out_hidden_size");
  if (act !== undefined && act !== "silu") vc.refuse("hidden_act", `is ${JSON.stringify(act)}; llama.cpp runs Qwen2.5-VL's vision MLP as SwiGLU with SiLU (qwenvl.py writes clip.use_silu)`);
  if (outDim !== llmHidden) vc.refuse("out_hidden_size", `is ${outDim} but the language model's hidden_size is ${llmHidden}; the merger's output feeds the LLM`);
  if (embd % heads !== 0) vc.refuse("num_heads", `is ${heads}; hidden_size ${embd} is not a multiple of it`);
  const ws = vc.int("window_size");
  if (ws !== undefined && ws !== QWENVL_WINDOW_SIZE) vc.refuse("window_size", `is ${ws}; llama.cpp's window attention uses ${QWENVL_WINDOW_SIZE}-pixel windows (clip.cpp's fixed default; qwenvl.py writes no window size)`);
  const full = vc.ints("fullatt_block_indexes") ?? vc.refuse("fullatt_block_indexes", "is missing; Qwen2.5-VL needs it (qwenvl.py asserts it is present)");
  if (full.length === 0) vc.refuse("fullatt_block_indexes", "is empty; llama.cpp's window-attention pattern needs at least one full-attention layer");
  // qwenvl.py: n_wa_pattern = first index + 1, and every gap must equal it
  const n = full[0]! + 1;
  for (let i = 1; i < full.length; i++) {
    if (full[i]! - full[i - 1]! !== n) vc.refuse("fullatt_block_indexes", `is ${JSON.stringify(full)}; llama.cpp can only express full attention every n-th layer (gaps of ${n}, as qwenvl.py requires)`);
  }
  // clip.cpp attends fully in every layer il with (il + 1) % n == 0: that set must be exactly the config's
  const cpp: number[] = [];
  for (let il = 0; il < depth; il++) if ((il + 1) % n === 0) cpp.push(il);
  if (cpp.join(",") !== full.join(",")) vc.refuse("fullatt_block_indexes", `is ${JSON.stringify(full)}; with depth ${depth} llama.cpp's pattern (every ${n}th layer) gives full attention in layers ${JSON.stringify(cpp)}`);
  return { kind, embd, ffn, ffnKv: ffn, heads, depth, patch, imageSize, outDim, nWaPattern: n, fullAtt: full, eps };
}

/** image_mean / image_std from preprocessor_config.json (base.py MmprojModel requires them). */
export function readQwenMeanStd(dir: string): { mean: number[]; std: number[] } {
  const file = path.join(dir, "preprocessor_config.json");
  let text: string;
  try {
    text = readSmallFileSync(file, { code: "E_CONFIG", cap: SMALL_FILE_CAPS.config, what: "preprocessor_config.json", confine: true }).toString("utf8");
  } catch (e) {
    if (e instanceof MissingFile) throw new GgufyError("E_CONFIG", "preprocessor_config.json is missing; the vision projector needs its image_mean and image_std", { file });
    throw e;
  }
  let pp: unknown;
  try {
    pp = JSON.parse(text);
  } catch (e) {
    throw new GgufyError("E_CONFIG", `preprocessor_config.json is not valid JSON (${(e as Error).message})`, { file });
  }
  if (!pp || typeof pp !== "object" || Array.isArray(pp)) throw new GgufyError("E_CONFIG", "preprocessor_config.json is not a JSON object", { file });
  const cfg = new HfConfig(pp as Record<string, unknown>, file);
  const get = (k: string): number[] => {
    const v = cfg.nums(k) ?? cfg.refuse(k, "is missing; the vision projector needs it");
    if (v.length !== 3) cfg.refuse(k, `is ${JSON.stringify(v)}; expected 3 numbers (R, G, B)`);
    return v;
  };
  const mean = get("image_mean");
  const std = get("image_std");
  std.forEach((s) => {
    if (!(s > 0)) cfg.refuse("image_std", `is ${JSON.stringify(std)}; every value must be positive`);
  });
  return { mean, std };
}

// ---------------------------------------------------------------------------------------------
// transformed tensors

/** Rows [part·n, (part+1)·n) of a [parts·n, cols] weight, or that slice of a [parts·n] bias. */
export function thirdOf(src: SourceCheckpoint, t: SourceTensor, ggufName: string, part: number): OutputTensor {
  const n = t.shape[0]! / 3;
  if (t.shape.length === 1) {
    return {
      name: ggufName, ne: [n], sources: [t.name], encoding: `${t.encoding}, [${part * n}:${(part + 1) * n}]`, dtype: t.dtype,
      read: async (_row0, nRows) => (nRows === 0 ? new Float32Array(0) : (await src.readAll(t.name)).slice(part * n, (part + 1) * n)),
    };
  }
  return {
    name: ggufName, ne: toNe([n, ...t.shape.slice(1)]), sources: [t.name], encoding: `${t.encoding}, rows ${part * n}:${(part + 1) * n}`, dtype: t.dtype,
    read: (row0, nRows) => src.readRows(t.name, part * n + row0, nRows),
  };
}

/**
 * Frame `frame` of a Conv3d kernel [C, Cin, 2, p, p] as a Conv2d kernel [C, Cin, p, p] (ne [p, p, Cin, C]):
 * output row ((c·Cin + ch)·p + y) is source row (((c·Cin + ch)·2 + frame)·p + y); each run of p rows is contiguous.
 */
export function temporalFrame(src: SourceCheckpoint, t: SourceTensor, ggufName: string, frame: number): OutputTensor {
  const [c, cin, kt, kh, kw] = t.shape as [number, number, number, number, number];
  return {
    name: ggufName, ne: [kw, kh, cin, c], sources: [t.name], encoding: `${t.encoding}, frame ${frame} of ${kt}`, dtype: t.dtype,
    read: async (row0, nRows) => {
      const out = new Float32Array(nRows * kw);
      for (let done = 0; done < nRows; ) {
        const r = row0 + done;
        const plane = Math.floor(r / kh);
        const y = r - plane * kh;
        const k = Math.min(nRows - done, kh - y);
        out.set(await src.readRows(t.name, (plane * kt + frame) * kh + y, k), done * kw);
        done += k;
      }
      return out;
    },
  };
}

/** The mmproj type rule (see the header); `requested` is --mmproj-type. */
export function qwenVlMmprojType(t: Pick<OutputTensor, "name" | "ne">, requested: string): G {
  const req = requested.toLowerCase();
  if (!(QWENVL_MMPROJ_TYPES as readonly string[]).includes(req)) {
    throw new GgufyError("E_USAGE", `--mmproj-type ${requested}: Qwen2-VL's vision projector can be ${QWENVL_MMPROJ_TYPES.join(", ")}`);
  }
  // MmprojModel.tensor_force_quant: the patch kernels are F16 for an F16 file and F32 otherwise
  if (t.name.includes(".patch_embd.weight")) return req === "f16" ? G.F16 : G.F32;
  if (t.ne.length <= 1 || !t.name.endsWith(".weight")) return G.F32;
  if (req === "f32") return G.F32;
  if (req === "f16") return G.F16;
  return t.ne[0]! % typeInfo(G.Q8_0).blockSize === 0 ? G.Q8_0 : G.F16;
}

/** What the vision tower's tensors must look like, per layer (after `visual.blocks.N.`). */
function layerShapes(h: QwenVisionHparams): Record<string, number[]> {
  const E = h.embd;
  const F = h.ffn;
  const common: Record<string, number[]> = {
    "norm1.weight": [E], "norm2.weight": [E],
    "attn.qkv.weight": [3 * E, E], "attn.qkv.bias": [3 * E],
    "attn.proj.weight": [E, E], "attn.proj.bias": [E],
  };
  if (h.kind === "qwen2vl") {
    return { ...common, "norm1.bias": [E], "norm2.bias": [E], "mlp.fc1.weight": [F, E], "mlp.fc1.bias": [F], "mlp.fc2.weight": [E, F], "mlp.fc2.bias": [E] };
  }
  return {
    ...common,
    "mlp.gate_proj.weight": [F, E], "mlp.gate_proj.bias": [F], "mlp.up_proj.weight": [F, E], "mlp.up_proj.bias": [F],
    "mlp.down_proj.weight": [E, F], "mlp.down_proj.bias": [E],
  };
}

/** per-layer HF suffix → GGUF suffix (gguf-py tensor_mapping.py, the "qwen2vl" / "qwen2.5vl" rows) */
const LAYER_NAMES: Readonly<Record<string, string>> = {
  "norm1": "ln1", "norm2": "ln2", "attn.proj": "attn_out",
  "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down",
  "mlp.up_proj": "ffn_up", "mlp.gate_proj": "ffn_gate", "mlp.down_proj": "ffn_down",
};

export function buildQwen2vlMmproj(ctx: ConvertContext): ModelFile {
  const file = path.join(ctx.dir, "config.json");
  const h = readQwenVision(ctx.config, file);
  const src = ctx.src;
  const E = h.embd;
  const want = layerShapes(h);
  const expect = (t: SourceTensor, shape: readonly number[]): void => {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new GgufyError("E_CONFIG", `shape [${t.shape.join(", ")}] contradicts config.json's vision_config (expected [${shape.join(", ")}])`, { file: src.dir, tensor: t.name });
    }
  };
  const globalShapes: Record<string, number[]> = {
    "visual.patch_embed.proj.weight": [E, 3, 2, h.patch, h.patch],
    "visual.merger.ln_q.weight": [E],
    "visual.merger.mlp.0.weight": [4 * E, 4 * E], "visual.merger.mlp.0.bias": [4 * E],
    "visual.merger.mlp.2.weight": [h.outDim, 4 * E], "visual.merger.mlp.2.bias": [h.outDim],
    ...(h.kind === "qwen2vl" ? { "visual.merger.ln_q.bias": [E] } : {}),
  };
  const tensors: OutputTensor[] = [];
  const seen = new Set<string>();
  for (const name of src.names()) {
    if (!name.startsWith("visual.")) continue;
    const t = src.get(name)!;
    seen.add(name);
    const m = /^visual\.blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (m) {
      const bid = Number(m[1]);
      const sub = `${m[2]}.${m[3]}`;
      const shape = want[sub];
      if (!shape || bid >= h.depth) {
        throw new GgufyError("E_UNEXPECTED_TENSOR", bid >= h.depth ? `vision block ${bid} is beyond vision_config.depth ${h.depth}` : `no GGUF name for this tensor in ${h.kind === "qwen2vl" ? "Qwen2-VL" : "Qwen2.5-VL"}'s vision projector`, { file: src.dir, tensor: name });
      }
      expect(t, shape);
      const g = `v.blk.${bid}.`;
      if (m[2] === "attn.qkv") {
        ["q", "k", "v"].forEach((p, i) => tensors.push(thirdOf(src, t, `${g}attn_${p}.${m[3]}`, i)));
      } else tensors.push(passThrough(src, t, `${g}${LAYER_NAMES[m[2]!]}.${m[3]}`));
      continue;
    }
    const shape = globalShapes[name];
    if (!shape) throw new GgufyError("E_UNEXPECTED_TENSOR", `no GGUF name for this tensor in ${h.kind === "qwen2vl" ? "Qwen2-VL" : "Qwen2.5-VL"}'s vision projector`, { file: src.dir, tensor: name });
    expect(t, shape);
    if (name === "visual.patch_embed.proj.weight") {
      tensors.push(temporalFrame(src, t, "v.patch_embd.weight", 0), temporalFrame(src, t, "v.patch_embd.weight.1", 1));
    } else if (name.startsWith("visual.merger.ln_q.")) {
      tensors.push(passThrough(src, t, `v.post_ln.${name.slice("visual.merger.ln_q.".length)}`));
    } else {
      const mm = /^visual\.merger\.mlp\.(0|2)\.(weight|bias)$/.exec(name)!;
      tensors.push(passThrough(src, t, `mm.${mm[1]}.${mm[2]}`));
    }
  }
  // everything clip.cpp loads as required must be there
  const required = [...Object.keys(globalShapes)];
  for (let i = 0; i < h.depth; i++) for (const s of Object.keys(want)) required.push(`visual.blocks.${i}.${s}`);
  for (const r of required) {
    if (!seen.has(r)) throw new GgufyError("E_MISSING_TENSOR", `absent from the checkpoint; the ${h.kind === "qwen2vl" ? "Qwen2-VL" : "Qwen2.5-VL"} vision projector needs it (vision_config.depth ${h.depth})`, { file: src.dir, tensor: r });
  }

  const { mean, std } = readQwenMeanStd(ctx.dir);
  const text = textConfig(ctx.config, file);
  const kvs: GGUFKV[] = [
    kv.u32("general.file_type", 1),
    kv.bool("clip.has_vision_encoder", true),
    kv.u32("clip.vision.projection_dim", text.reqInt("hidden_size")),
    kv.u32("clip.vision.image_size", h.imageSize),
    kv.u32("clip.vision.patch_size", h.patch),
    kv.u32("clip.vision.embedding_length", h.embd),
    kv.u32("clip.vision.feed_forward_length", h.ffnKv),
    kv.u32("clip.vision.block_count", h.depth),
    kv.u32("clip.vision.attention.head_count", h.heads),
    kv.f32s("clip.vision.image_mean", mean),
    kv.f32s("clip.vision.image_std", std),
    kv.str("clip.projector_type", QWENVL_PROJECTOR[h.kind]),
    ...(h.kind === "qwen25vl" ? [kv.bool("clip.use_silu", true), kv.u32("clip.vision.n_wa_pattern", h.nWaPattern!)] : []),
    kv.f32("clip.vision.attention.layer_norm_epsilon", h.eps),
  ];
  return {
    role: "mmproj",
    arch: "clip",
    kvs,
    generalKvs: [kv.str("general.type", "mmproj")],
    tensors,
    chooseType: qwenVlMmprojType,
  };
}
