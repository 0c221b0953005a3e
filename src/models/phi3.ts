/**
 * Phi-3 / Phi-3.5-mini / Phi-4 / Phi-4-mini (Phi3ForCausalLM) → GGUF `phi3`
 * (llama.cpp conversion/phi.py Phi3MiniModel; runtime src/models/phi3.cpp).
 *
 * - The fused projections stay fused, as llama.cpp keeps them: `self_attn.qkv_proj` → `blk.N.attn_qkv`
 *   (rows q | k | v), `mlp.gate_up_proj` → `blk.N.ffn_up` with 2·intermediate_size rows (gate | up; the
 *   runtime's LLM_FFN_SWIGLU takes silu of the first half times the second, as transformers'
 *   Phi3MLP `gate, up = chunk(2)`; `up * silu(gate)`). No Q/K permutation: phi3 uses NEOX RoPE.
 * - KVs: Phi3MiniModel.set_gguf_parameters does not call TextModel's, so the base's KV list is not
 *   used; the list below is its own, in its order. `rope.dimension_count` is
 *   int(partial_rotary_factor · hidden_size) // num_attention_heads (Phi-4-mini: 0.75);
 *   `rope.scaling.original_context_length` is original_max_position_embeddings (required, as there);
 *   `attention.sliding_window` is written always, 0 when the config has none (Phi-4) — llama.cpp's
 *   phi3 loader reads it and then disables SWA for phi3 (load_arch_hparams), so the runtime attends in full.
 * - `rope_scaling` longrope / su (Phi-3-mini-128k, Phi-3.5-mini, Phi-4-mini): `rope_factors_long.weight`
 *   and `rope_factors_short.weight` (F32, rope dims / 2 each, generated first, Phi3MiniModel.
 *   generate_extra_tensors) and `rope.scaling.attn_factor` = √(1 + ln(s) / ln(original)) with
 *   s = max_position_embeddings / original_max_position_embeddings (1 when s ≤ 1). llama.cpp picks the
 *   long factors when the context (n_ctx_seq) exceeds the original length, else the short ones
 *   (llama_model::get_rope_factors). Unlike llama.cpp's converter, ggufy writes rope_scaling's explicit
 *   `attention_factor` when the config gives one (transformers' _compute_longrope_parameters uses it
 *   then); the real Phi configs have none, and both write the same value. The converter writes the
 *   attn_factor KV first (during prepare_tensors); ggufy appends it after the others (llama.cpp reads
 *   KVs by name). No `rope.scaling.type` is written, as there.
 * - Any other rope_scaling type is refused by name: the converter would drop it silently.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { kv } from "../formats/gguf/types.js";
import { GENERAL, LLM, TENSOR } from "../formats/gguf/keys.js";
import type { HfConfig } from "./config.js";
import { constTensor, KvList, mapDecoderTensors, readTextHparams, textConfig, type DecoderSpec, type TextHparams } from "./text-decoder.js";
import type { ConvertContext, ModelConverter, ModelFile, OutputTensor } from "./types.js";
import { validateTextModel, validateVocab } from "./validate.js";

/** gguf-py MODEL_TENSORS[MODEL_ARCH.PHI3] */
export const PHI3_TENSORS = [
  TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT, TENSOR.ROPE_FACTORS_LONG, TENSOR.ROPE_FACTORS_SHORT,
  TENSOR.ATTN_NORM, TENSOR.ATTN_QKV, TENSOR.ATTN_Q, TENSOR.ATTN_K, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
  TENSOR.FFN_NORM, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
] as const;

/** What Phi3MiniModel reads beyond the text-decoder base, typed. */
export interface Phi3Hparams {
  /** original_max_position_embeddings (rope_scaling's, else the top level's) */
  readonly origCtx: number;
  /** int(partial_rotary_factor · hidden_size) // num_attention_heads */
  readonly ropeDims: number;
  readonly ropeTheta: number;
  readonly rmsEps: number;
  /** attention.sliding_window (0: none) */
  readonly slidingWindow: number;
  /** longrope / su: the factors and the attention factor */
  readonly longrope?: { readonly long: Float32Array; readonly short: Float32Array; readonly attnFactor: number };
}

/** Read and check Phi-3's own hyper-parameters (Phi3MiniModel.set_gguf_parameters / generate_extra_tensors). */
export function readPhi3Hparams(cfg: HfConfig, h: TextHparams): Phi3Hparams {
  const hd = h.nEmbd / h.nHead;
  if (!Number.isInteger(hd)) cfg.refuse("hidden_size", `is ${h.nEmbd}; not a multiple of num_attention_heads ${h.nHead} (llama.cpp's phi3 has head size hidden_size / heads)`);
  if (h.headDim !== undefined && h.headDim !== hd) {
    cfg.refuse("head_dim", `is ${h.headDim}; llama.cpp's phi3 loader assumes hidden_size / num_attention_heads = ${hd}`);
  }
  const rs = cfg.has("rope_parameters") ? cfg.obj("rope_parameters") : cfg.obj("rope_scaling");
  const rsName = cfg.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  const origCtx = rs?.int("original_max_position_embeddings") ?? cfg.int("original_max_position_embeddings") ??
    cfg.refuse("original_max_position_embeddings", "is missing; llama.cpp's phi3 needs the original context length (rope.scaling.original_context_length)");
  const rot = rs?.num("partial_rotary_factor", { gt: 0, max: 1 }) ?? cfg.num("partial_rotary_factor", { gt: 0, max: 1 }) ?? 1;
  const ropeDims = Math.floor(Math.floor(rot * h.nEmbd) / h.nHead);
  if (ropeDims < 2 || ropeDims % 2 !== 0) {
    cfg.refuse("partial_rotary_factor", `is ${rot}: int(${rot} × hidden_size ${h.nEmbd}) // ${h.nHead} heads = ${ropeDims} rotary dimensions; expected a positive even number`);
  }
  const sw = cfg.int("sliding_window", false) ?? 0;
  const rmsEps = h.rmsEps ?? cfg.refuse("rms_norm_eps", "is missing (llama.cpp's phi3 requires attention.layer_norm_rms_epsilon)");
  // transformers' Phi3Config defaults rope_theta to 10000 (llama.cpp's converter would fail without it)
  const ropeTheta = h.ropeTheta ?? 10000;

  const s = h.rope.scaling;
  let longrope: Phi3Hparams["longrope"];
  if (s.type === "longrope") {
    const n = ropeDims / 2;
    if (s.longFactor.length !== n) rs!.refuse("long_factor", `has ${s.longFactor.length} values; expected rotary dimensions / 2 = ${n}`);
    if (s.shortFactor.length !== n) rs!.refuse("short_factor", `has ${s.shortFactor.length} values; expected rotary dimensions / 2 = ${n}`);
    const bad = [...s.longFactor, ...s.shortFactor].find((v) => !(v > 0));
    if (bad !== undefined) rs!.refuse("long_factor", `/ short_factor hold ${bad}; RoPE factors divide the angle and must be positive`);
    const scale = h.nCtx / origCtx;
    const attnFactor = s.attnFactor ?? (scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(origCtx)) : 1);
    longrope = { long: Float32Array.from(s.longFactor), short: Float32Array.from(s.shortFactor), attnFactor };
  } else if (s.type !== "none") {
    const typeKey = rs?.has("rope_type") ? "rope_type" : "type";
    rs!.refuse(typeKey, `is ${JSON.stringify(s.type)}; Phi-3 (llama.cpp phi3) supports only "longrope" / "su" factors (${rsName})`);
  }
  return { origCtx, ropeDims, ropeTheta, rmsEps, slidingWindow: sw, ...(longrope ? { longrope } : {}) };
}

/** The `phi3.*` KVs in Phi3MiniModel.set_gguf_parameters' order (general.file_type's place kept; the planner sets its value). */
export function phi3Kvs(h: TextHparams, p: Phi3Hparams): KvList {
  const out = new KvList("phi3");
  out.u32(LLM.CONTEXT_LENGTH, h.nCtx).u32(LLM.ROPE_SCALING_ORIG_CTX_LEN, p.origCtx);
  out.u32(LLM.EMBEDDING_LENGTH, h.nEmbd).u32(LLM.FEED_FORWARD_LENGTH, h.nFf).u32(LLM.BLOCK_COUNT, h.nLayer);
  out.u32(LLM.HEAD_COUNT, h.nHead).u32(LLM.HEAD_COUNT_KV, h.nHeadKv).f32(LLM.LAYERNORM_RMS_EPS, p.rmsEps);
  out.u32(LLM.ROPE_DIMENSION_COUNT, p.ropeDims).f32(LLM.ROPE_FREQ_BASE, p.ropeTheta);
  out.push(kv.u32(GENERAL.FILE_TYPE, 0));
  out.u32(LLM.SLIDING_WINDOW, p.slidingWindow);
  if (p.longrope) out.f32(LLM.ROPE_SCALING_ATTN_FACTOR, p.longrope.attnFactor);
  return out;
}

/** Per-layer HF weights llama.cpp's phi3 loader requires (the fused forms; separate q/k/v are accepted too). */
const LAYER_REQUIRED = ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight", "mlp.down_proj.weight"];

export const phi3Spec: DecoderSpec = {
  id: "phi3",
  hfArchitectures: ["Phi3ForCausalLM"],
  arch: "phi3",
  tensors: PHI3_TENSORS,
  layerRequired: LAYER_REQUIRED,
};

/** The fused shapes config.json implies (validateTextModel checks the unfused ones). */
function checkFusedShapes(ctx: ConvertContext, h: TextHparams, file: string): void {
  const hd = h.nEmbd / h.nHead;
  for (let i = 0; i < h.nLayer; i++) {
    const l = `model.layers.${i}.`;
    const qkv = ctx.src.get(`${l}self_attn.qkv_proj.weight`);
    const want = (h.nHead + 2 * h.nHeadKv) * hd;
    if (qkv && (qkv.shape.length !== 2 || qkv.shape[0] !== want || qkv.shape[1] !== h.nEmbd)) {
      throw new GgufyError("E_CONFIG", `shape is [${qkv.shape.join(", ")}] but config.json implies [${want}, ${h.nEmbd}] ((num_attention_heads ${h.nHead} + 2 × num_key_value_heads ${h.nHeadKv}) × head size ${hd} rows)`, { file, tensor: qkv.name });
    }
    if (!qkv && !(ctx.src.get(`${l}self_attn.q_proj.weight`) && ctx.src.get(`${l}self_attn.k_proj.weight`) && ctx.src.get(`${l}self_attn.v_proj.weight`))) {
      throw new GgufyError("E_MISSING_TENSOR", "absent from the checkpoint (and no separate q/k/v projections); llama.cpp needs it to load the model", { file: ctx.src.dir, tensor: `${l}self_attn.qkv_proj.weight` });
    }
    const gu = ctx.src.get(`${l}mlp.gate_up_proj.weight`);
    if (gu && (gu.shape.length !== 2 || gu.shape[0] !== 2 * h.nFf || gu.shape[1] !== h.nEmbd)) {
      throw new GgufyError("E_CONFIG", `shape is [${gu.shape.join(", ")}] but config.json implies [${2 * h.nFf}, ${h.nEmbd}] (2 × intermediate_size rows: gate | up)`, { file, tensor: gu.name });
    }
  }
}

/** The rope factor tensors (Phi3MiniModel.generate_extra_tensors), written before the model's tensors. */
export function phi3RopeFactorTensors(p: Phi3Hparams): OutputTensor[] {
  if (!p.longrope) return [];
  const n = p.ropeDims / 2;
  return [constTensor("rope_factors_long.weight", [n], p.longrope.long), constTensor("rope_factors_short.weight", [n], p.longrope.short)];
}

export async function buildPhi3(ctx: ConvertContext): Promise<ModelFile> {
  const file = path.join(ctx.dir, "config.json");
  const cfg = textConfig(ctx.config, file);
  const h = readTextHparams(cfg);
  const p = readPhi3Hparams(cfg, h);
  const vocabOnly = ctx.vocabOnly === true;
  validateTextModel({ src: ctx.src, h, configFile: file, vocabOnly, required: LAYER_REQUIRED });
  if (!vocabOnly) checkFusedShapes(ctx, h, file);
  const vocab = await ctx.loadVocab({ dir: ctx.dir, arch: "phi3", config: ctx.config, ...(h.vocabSize !== undefined ? { vocabSize: h.vocabSize } : {}) });
  validateVocab(vocab, { src: ctx.src, configFile: file, tokenizerDir: ctx.dir, vocabOnly });
  const tensors = vocabOnly ? [] : [...phi3RopeFactorTensors(p), ...mapDecoderTensors(ctx.src, phi3Spec, h, cfg)];
  return {
    role: "model", arch: "phi3", kvs: phi3Kvs(h, p).list, tensors, vocab,
    hparams: { nLayer: h.nLayer, nHead: h.nHead, nHeadKv: h.nHeadKv, nExpert: 0 },
    ...(h.rope.warnings.length ? { warnings: [...h.rope.warnings] } : {}),
  };
}

export const phi3: ModelConverter & { spec: DecoderSpec } = {
  id: phi3Spec.id,
  hfArchitectures: phi3Spec.hfArchitectures,
  spec: phi3Spec,
  async build(ctx: ConvertContext): Promise<ModelFile[]> {
    return [await buildPhi3(ctx)];
  },
};
