/**
 * Gemma 2 (Gemma2ForCausalLM → GGUF `gemma2`) and Gemma 3 text (Gemma3ForCausalLM and the language
 * model of Gemma3ForConditionalGeneration → GGUF `gemma3`), after llama.cpp's `conversion/gemma.py`
 * (Gemma2Model, Gemma3Model) and `conversion/base.py` (TextModel), checked against llama.cpp's
 * `src/models/gemma2.cpp` / `gemma3.cpp` and transformers' `modeling_gemma2.py` / `modeling_gemma3.py`.
 *
 * What differs from the Llama base:
 *  - Every RMSNorm weight is stored as w and applied as (1 + w) (Gemma2RMSNorm / Gemma3RMSNorm); the
 *    converter writes w + 1 (Gemma2Model / Gemma3Model.modify_tensors, every name ending in
 *    `norm.weight`, q/k norms included). The `+ 1` is computed in the dtype the converter holds the
 *    tensor in: ModelBase.prepare_tensors widens everything that is not float16/float32 to float32
 *    *before* modify_tensors, so a bf16 (or f32) norm gets `fround(x + 1)` — the exact sum rounded once
 *    to float32 — while an f16 norm stays float16 and torch rounds the float32 sum to float16
 *    (c10::Half arithmetic: float add, then RNE to half). Both are reproduced here bit for bit.
 *  - The embedding scale √hidden_size is the runtime's (llama.cpp's graph multiplies by sqrtf(n_embd)),
 *    never baked into token_embd.
 *  - NEOX RoPE (rotate_half), so no Q/K permutation; head_dim is explicit and ≠ hidden/heads.
 *  - Norms: input_layernorm → attn_norm, post_attention_layernorm → post_attention_norm (a post-norm
 *    here, not Llama's ffn_norm), pre_feedforward_layernorm → ffn_norm, post_feedforward_layernorm →
 *    post_ffw_norm; Gemma 3: self_attn.q_norm / k_norm → attn_q_norm / attn_k_norm.
 *  - Gemma 2: no lm_head (Gemma2Model.filter_tensors drops it; llama.cpp's gemma2 always uses
 *    token_embd as the output); attn/final logit softcapping and sliding_window KVs; its
 *    set_gguf_parameters does not call TextModel's, so the KV list is its own (no rope.freq_base).
 *  - Gemma 3: TextModel's KVs then Gemma3Model's overrides (same positions, gguf_writer overwrites in
 *    place); local/global RoPE bases (rope_local_base_freq → rope.freq_base_swa), the global layers'
 *    linear rope_scaling, sliding_window unless sliding_window_pattern is 1, final_logit_softcapping
 *    when set; attn_logit_softcapping must be unset (Gemma3Model asserts it).
 *  - Gemma3ForConditionalGeneration: the language model under transformers 4.50's `language_model.model.*`
 *    or ≥ 4.52's `model.language_model.*` (TextModel/ModelBase.filter_tensors drop "language_model."),
 *    the vision tower and projector skipped with a warning (no mmproj is written).
 *  - tokenizer.ggml.add_space_prefix false (Gemma2Model/Gemma3Model.set_vocab), written after the arch KVs
 *    unless the tokenizer module already writes it (the converter writes it after the vocabulary KVs).
 *  - config.json is read the way the converter reads it through transformers' AutoConfig: keys the
 *    file leaves out take Gemma2Config / Gemma3TextConfig defaults (google/gemma-3-4b-it's text_config
 *    names only five keys).
 *
 * Refused by name rather than converted into a file llama.cpp would run differently from the HF model:
 * a query_pre_attn_scalar other than the one llama.cpp derives (head_dim, or hidden/heads for the
 * 27B layer counts), a sliding/full layer pattern llama.cpp's period cannot express, an activation
 * other than gelu_pytorch_tanh, RoPE scaling other than none (Gemma 2) or linear (Gemma 3), Gemma 2
 * without softcapping, an untied Gemma 2 lm_head. Where llama.cpp's converter would silently produce
 * such a mismatch but a KV fixes it, ggufy writes the KV (a non-10000 Gemma 2 rope_theta as
 * rope.freq_base; a non-default layer period as attention.sliding_window_pattern).
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { kv } from "../formats/gguf/types.js";
import { LLM, TENSOR, TOKENIZER_ADD_SPACE_PREFIX } from "../formats/gguf/keys.js";
import { fromF16, toF16 } from "../formats/half.js";
import { vocabToKvs } from "../tokenizer/index.js";
import type { HfConfig } from "./config.js";
import { buildTextDecoder, DEFAULT_LAYER_REQUIRED, readTextHparams, textConfig, type DecoderSpec, type KvList, type TensorCtx, type TextHparams } from "./text-decoder.js";
import type { NameRow } from "./tensor-map.js";
import { mappedValues } from "./tensors.js";
import type { ConvertContext, ModelConverter, ModelFile, OutputTensor } from "./types.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";

/** transformers Gemma2Config.__init__ defaults (configuration_gemma2.py) for the keys ggufy reads. */
export const GEMMA2_DEFAULTS: Readonly<Record<string, unknown>> = {
  vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26,
  num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, hidden_activation: "gelu_pytorch_tanh",
  max_position_embeddings: 8192, rms_norm_eps: 1e-6, rope_theta: 10000.0, query_pre_attn_scalar: 256,
  sliding_window: 4096, final_logit_softcapping: 30.0, attn_logit_softcapping: 50.0, tie_word_embeddings: true,
};

/** transformers Gemma3TextConfig.__init__ defaults (configuration_gemma3.py) for the keys ggufy reads. */
export const GEMMA3_TEXT_DEFAULTS: Readonly<Record<string, unknown>> = {
  vocab_size: 262208, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26,
  num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, hidden_activation: "gelu_pytorch_tanh",
  max_position_embeddings: 131072, rms_norm_eps: 1e-6, rope_theta: 1_000_000.0, query_pre_attn_scalar: 256,
  sliding_window: 4096, final_logit_softcapping: null, attn_logit_softcapping: null, rope_scaling: null,
  rope_local_base_freq: 10000.0, sliding_window_pattern: 6, tie_word_embeddings: true,
};

/** config.json with the AutoConfig defaults filled in where a key is absent (a present null stays null). */
export function withDefaults(config: Record<string, unknown>, defaults: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const fill = (o: Record<string, unknown>): Record<string, unknown> => {
    const out = { ...o };
    for (const [k, v] of Object.entries(defaults)) if (!(k in out)) out[k] = v;
    return out;
  };
  const tc = config["text_config"];
  if (tc && typeof tc === "object" && !Array.isArray(tc)) return { ...config, text_config: fill(tc as Record<string, unknown>) };
  return fill(config);
}

const GEMMA_NAMES: readonly NameRow[] = [
  [TENSOR.ATTN_POST_NORM, ["model.layers.{bid}.post_attention_layernorm"]],
  [TENSOR.FFN_PRE_NORM, ["model.layers.{bid}.pre_feedforward_layernorm"]],
  [TENSOR.FFN_POST_NORM, ["model.layers.{bid}.post_feedforward_layernorm"]],
];

const GEMMA_LAYER_REQUIRED = [
  ...DEFAULT_LAYER_REQUIRED,
  "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight",
];

/**
 * w + 1 as llama.cpp's converter computes it (see the file comment): float16 sources add in float16,
 * everything else (bf16 widened first, f32) in float32.
 */
export function gemmaNormPlusOne(dtype: SourceTensor["dtype"]): (v: number) => number {
  if (dtype === "f16") return (v) => fromF16(toF16(v + 1));
  return (v) => Math.fround(v + 1);
}

function normTransform(c: TensorCtx): OutputTensor | undefined {
  if (!c.t.name.endsWith("norm.weight")) return undefined;
  return mappedValues(c.src, c.t, c.gguf, gemmaNormPlusOne(c.t.dtype), `${c.t.encoding} + 1`);
}

/** Which layers are sliding-window ones: `layer_types` when given, else every layer but each `period`-th. */
function slidingLayers(cfg: HfConfig, nLayer: number, defaultPeriod: number): boolean[] {
  const types = cfg.strs("layer_types");
  if (types) {
    if (types.length !== nLayer) cfg.refuse("layer_types", `has ${types.length} entries for ${nLayer} layers`);
    return types.map((t, i) => {
      if (t === "sliding_attention") return true;
      if (t === "full_attention") return false;
      return cfg.refuse("layer_types", `[${i}] is ${JSON.stringify(t)}; expected "sliding_attention" or "full_attention"`);
    });
  }
  const p = defaultPeriod === 6 ? (cfg.int("sliding_window_pattern") ?? 6) : defaultPeriod;
  // transformers: layer i slides unless (i + 1) % pattern == 0 (Gemma3DecoderLayer / Gemma2's layer_idx % 2 == 0)
  return Array.from({ length: nLayer }, (_, i) => (i + 1) % p !== 0);
}

/**
 * The period llama.cpp needs for this layer pattern (llama_hparams::set_swa_pattern: layer il slides
 * when il % period < period − 1), or a refusal naming the config key.
 */
function swaPeriod(cfg: HfConfig, sliding: readonly boolean[]): number {
  const n = sliding.length;
  for (let p = 1; p <= n + 1; p++) {
    if (sliding.every((s, il) => s === il % p < p - 1)) return p;
  }
  const key = cfg.has("layer_types") ? "layer_types" : "sliding_window_pattern";
  return cfg.refuse(key, `gives sliding layers [${sliding.map((s, i) => (s ? i : -1)).filter((i) => i >= 0).join(", ")}], which llama.cpp's periodic sliding_window_pattern cannot express`);
}

/** llama.cpp's attention scale (gemma2.cpp / gemma3.cpp load_arch_hparams) as a query_pre_attn_scalar. */
function checkQueryScalar(cfg: HfConfig, h: TextHparams, arch: string, layers27b: number): void {
  const q = cfg.reqNum("query_pre_attn_scalar", { gt: 0 });
  const headDim = h.headDim ?? h.nEmbd / h.nHead;
  const llamaCpp = h.nLayer === layers27b ? h.nEmbd / h.nHead : headDim;
  if (q !== llamaCpp) {
    cfg.refuse(
      "query_pre_attn_scalar",
      `is ${q}, but llama.cpp's ${arch} scales attention by 1/√${llamaCpp} (${h.nLayer === layers27b ? `hidden_size/num_attention_heads for ${layers27b} layers` : "head_dim"}); the GGUF would not compute this model`,
    );
  }
}

function checkActivation(cfg: HfConfig): void {
  // transformers' Gemma MLPs use config.hidden_activation; llama.cpp's LLM_FFN_GELU is the tanh approximation
  const act = cfg.str("hidden_activation") ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh") cfg.refuse("hidden_activation", `is ${JSON.stringify(act)}; llama.cpp's Gemma graphs use the tanh-approximated GELU (gelu_pytorch_tanh)`);
}

/** The placeholder llama.cpp's converter's general.file_type position takes (the planner writes the value). */
const FILE_TYPE_HERE = kv.u32("general.file_type", 0);

/** Gemma2Model.set_gguf_parameters, in its order (it does not call TextModel's). */
function gemma2Kvs(cfg: HfConfig, h: TextHparams, out: KvList): void {
  checkActivation(cfg);
  checkQueryScalar(cfg, h, "gemma2", 46);
  if (h.rope.scaling.type !== "none") cfg.refuse("rope_scaling", "is set, but llama.cpp's gemma2 has no RoPE scaling (its converter ignores it)");
  const attnCap = cfg.num("attn_logit_softcapping", { gt: 0 });
  const finalCap = cfg.num("final_logit_softcapping", { gt: 0 });
  if (attnCap === undefined) cfg.refuse("attn_logit_softcapping", "is null; llama.cpp's gemma2 always soft-caps attention logits");
  if (finalCap === undefined) cfg.refuse("final_logit_softcapping", "is null; llama.cpp's gemma2 always soft-caps the output logits");
  const window = cfg.reqInt("sliding_window");
  const period = swaPeriod(cfg, slidingLayers(cfg, h.nLayer, 2));
  // the base has written TextModel's KVs; Gemma2Model.set_gguf_parameters never calls super(): start over
  out.list.splice(0);
  out.u32(LLM.CONTEXT_LENGTH, h.nCtx).u32(LLM.EMBEDDING_LENGTH, h.nEmbd).u32(LLM.BLOCK_COUNT, h.nLayer).u32(LLM.FEED_FORWARD_LENGTH, h.nFf);
  out.u32(LLM.HEAD_COUNT, h.nHead).u32(LLM.HEAD_COUNT_KV, h.nHeadKv);
  out.f32(LLM.LAYERNORM_RMS_EPS, cfg.reqNum("rms_norm_eps", { gt: 0 }));
  const headDim = cfg.reqInt("head_dim");
  out.u32(LLM.KEY_LENGTH, headDim).u32(LLM.VALUE_LENGTH, headDim);
  out.push(FILE_TYPE_HERE);
  out.f32(LLM.ATTN_LOGIT_SOFTCAPPING, attnCap).f32(LLM.FINAL_LOGIT_SOFTCAPPING, finalCap).u32(LLM.SLIDING_WINDOW, window);
  // beyond llama.cpp's converter, only where its file would be wrong: llama.cpp defaults to base 10000, period 2
  if (h.ropeTheta !== undefined && h.ropeTheta !== 10000) out.f32(LLM.ROPE_FREQ_BASE, h.ropeTheta);
  if (period !== 2) out.u32(LLM.SLIDING_WINDOW_PATTERN, period);
}

/** TextModel.set_gguf_parameters (the base's KVs, already in `out`) then Gemma3Model's additions. */
function gemma3Kvs(cfg: HfConfig, h: TextHparams, out: KvList): void {
  checkActivation(cfg);
  checkQueryScalar(cfg, h, "gemma3", 62);
  const s = h.rope.scaling.type;
  if (s !== "none" && s !== "linear") cfg.refuse("rope_scaling", `is ${JSON.stringify(s)}; ggufy converts Gemma 3 with no or linear RoPE scaling (llama.cpp applies it to the global layers only)`);
  if (cfg.has("attn_logit_softcapping")) cfg.refuse("attn_logit_softcapping", "is set; Gemma 3 has no attention softcapping (llama.cpp's converter asserts it is null)");
  const finalCap = cfg.num("final_logit_softcapping", { min: 0 });
  out.push(FILE_TYPE_HERE);
  if (finalCap) out.f32(LLM.FINAL_LOGIT_SOFTCAPPING, finalCap);
  const period = swaPeriod(cfg, slidingLayers(cfg, h.nLayer, 6));
  if (period !== 1) {
    out.u32(LLM.SLIDING_WINDOW, cfg.reqInt("sliding_window"));
    // llama.cpp's gemma3 assumes period 6; anything else is written (the converter would not)
    if (period !== 6) out.u32(LLM.SLIDING_WINDOW_PATTERN, period);
  }
}

export const gemma2Spec: DecoderSpec = {
  id: "gemma2",
  hfArchitectures: ["Gemma2ForCausalLM"],
  arch: "gemma2",
  tensors: [
    TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_K, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
    TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP, TENSOR.ATTN_NORM, TENSOR.ATTN_POST_NORM, TENSOR.FFN_PRE_NORM, TENSOR.FFN_POST_NORM,
  ],
  names: GEMMA_NAMES,
  layerRequired: GEMMA_LAYER_REQUIRED,
  // Gemma2Model.filter_tensors: lm_head is never written (llama.cpp's gemma2 reuses token_embd)
  skip: [/^lm_head\.weight$/],
  kvs: (cfg, h, out) => gemma2Kvs(cfg, h, out),
  transform: normTransform,
};

export const gemma3Spec: DecoderSpec = {
  id: "gemma3",
  hfArchitectures: ["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"],
  arch: "gemma3",
  tensors: [
    TENSOR.TOKEN_EMBD, TENSOR.OUTPUT, TENSOR.OUTPUT_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_Q_NORM, TENSOR.ATTN_K, TENSOR.ATTN_K_NORM,
    TENSOR.ATTN_V, TENSOR.ATTN_OUT, TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
    TENSOR.ATTN_NORM, TENSOR.ATTN_POST_NORM, TENSOR.FFN_PRE_NORM, TENSOR.FFN_POST_NORM,
  ],
  names: GEMMA_NAMES,
  layerRequired: [...GEMMA_LAYER_REQUIRED, "self_attn.q_norm.weight", "self_attn.k_norm.weight"],
  kvs: (cfg, h, out) => gemma3Kvs(cfg, h, out),
  transform: normTransform,
};

/** The shapes the base does not check: Gemma's extra norms. */
function checkGemmaShapes(src: SourceCheckpoint, h: TextHparams, file: string, qkNorm: boolean): void {
  const hd = h.headDim ?? h.nEmbd / h.nHead;
  const want: [string, number, string][] = [
    ["pre_feedforward_layernorm.weight", h.nEmbd, "hidden_size"],
    ["post_feedforward_layernorm.weight", h.nEmbd, "hidden_size"],
    ...(qkNorm ? ([["self_attn.q_norm.weight", hd, "head_dim"], ["self_attn.k_norm.weight", hd, "head_dim"]] as [string, number, string][]) : []),
  ];
  for (let i = 0; i < h.nLayer; i++) {
    for (const [part, n, why] of want) {
      const t = src.get(`model.layers.${i}.${part}`);
      if (t && (t.shape.length !== 1 || t.shape[0] !== n)) {
        throw new GgufyError("E_CONFIG", `shape is [${t.shape.join(", ")}] but config.json implies [${n}] (${why})`, { file, tensor: t.name });
      }
    }
  }
}

/** Gemma3ForConditionalGeneration: the parts llama.cpp's TextModel.filter_tensors skips (vision tower, projector). */
const VISION = /^(model\.)?(vision_tower|multi_modal_projector)\./;

function addSpacePrefixFalse(file: ModelFile): ModelFile {
  // Gemma2Model/Gemma3Model.set_vocab: add_space_prefix false (unless the tokenizer module already writes it)
  if (!file.vocab || vocabToKvs(file.vocab).some((k) => k.key === TOKENIZER_ADD_SPACE_PREFIX)) return file;
  return { ...file, kvs: [...file.kvs, kv.bool(TOKENIZER_ADD_SPACE_PREFIX, false)] };
}

/**
 * The checkpoint seen under the names llama.cpp's converter maps (ModelBase.filter_tensors drops every
 * "language_model." — transformers 4.50's `language_model.model.layers.N…` and ≥ 4.52's
 * `model.language_model.layers.N…` both become `model.layers.N…`). Lookups use the new names; the
 * tensors keep their checkpoint names, so every read and message names the real tensor.
 */
function renamedView(src: SourceCheckpoint, rename: ReadonlyMap<string, string>): SourceCheckpoint {
  const back = new Map([...rename].map(([from, to]) => [to, from]));
  const view = Object.create(src) as SourceCheckpoint & Record<string, unknown>;
  view["names"] = (): string[] => src.names().filter((n) => rename.has(n)).map((n) => rename.get(n)!);
  view["get"] = (name: string): SourceTensor | undefined => {
    const from = back.get(name);
    return from === undefined ? undefined : src.get(from);
  };
  view["require"] = (name: string): SourceTensor => {
    const from = back.get(name);
    return src.require(from ?? name);
  };
  return view;
}

/** Gemma3ForConditionalGeneration's language model: the tensor renames, and the vision tensors skipped. */
function languageModelNames(src: SourceCheckpoint): { rename: Map<string, string>; vision: string[] } | undefined {
  const names = src.names();
  if (!names.some((n) => n.startsWith("language_model.") || n.startsWith("model.language_model."))) return undefined;
  const rename = new Map<string, string>();
  const vision: string[] = [];
  for (const n of names) {
    if (VISION.test(n)) vision.push(n);
    else if (n.startsWith("language_model.")) rename.set(n, n.slice("language_model.".length));
    else if (n.startsWith("model.language_model.")) rename.set(n, `model.${n.slice("model.language_model.".length)}`);
    else if (n === "lm_head.weight") rename.set(n, n);
    else throw new GgufyError("E_UNEXPECTED_TENSOR", "neither the language model (language_model.*) nor the vision tower / projector", { file: src.dir, tensor: n });
  }
  const seen = new Map<string, string>();
  for (const [from, to] of rename) {
    const other = seen.get(to);
    if (other !== undefined) throw new GgufyError("E_DUPLICATE_TENSOR", `${from} and ${other} are both the language model's ${to}`, { file: src.dir, tensor: from });
    seen.set(to, from);
  }
  return { rename, vision };
}

async function buildGemma(ctx: ConvertContext, spec: DecoderSpec, defaults: Readonly<Record<string, unknown>>): Promise<ModelFile> {
  const config = withDefaults(ctx.config, defaults);
  const file = path.join(ctx.dir, "config.json");
  const cfg = textConfig(config, file);
  const warnings: string[] = [];
  let src = ctx.src;
  const lm = spec === gemma3Spec ? languageModelNames(ctx.src) : undefined;
  if (lm) {
    src = renamedView(ctx.src, lm.rename);
    if (lm.vision.length) warnings.push(`skipped ${lm.vision.length} vision tower / multi-modal projector tensors (the text model only; ggufy does not write Gemma 3's mmproj)`);
  }
  if (spec === gemma2Spec && src.get("lm_head.weight") && cfg.bool("tie_word_embeddings") === false) {
    cfg.refuse("tie_word_embeddings", "is false and the checkpoint has its own lm_head.weight, but llama.cpp's gemma2 always uses token_embd as the output matrix");
  }
  if (!ctx.vocabOnly) checkGemmaShapes(src, readTextHparams(cfg), file, spec === gemma3Spec);
  const built = await buildTextDecoder({ ...ctx, src, config }, spec);
  const all = [...(built.warnings ?? []), ...warnings];
  return addSpacePrefixFalse({ ...built, ...(all.length ? { warnings: all } : {}) });
}

function gemmaConverter(spec: DecoderSpec, defaults: Readonly<Record<string, unknown>>): ModelConverter & { spec: DecoderSpec } {
  return {
    id: spec.id,
    hfArchitectures: spec.hfArchitectures,
    spec,
    async build(ctx: ConvertContext): Promise<ModelFile[]> {
      return [await buildGemma(ctx, spec, defaults)];
    },
  };
}

export const gemma2 = gemmaConverter(gemma2Spec, GEMMA2_DEFAULTS);
export const gemma3 = gemmaConverter(gemma3Spec, GEMMA3_TEXT_DEFAULTS);
