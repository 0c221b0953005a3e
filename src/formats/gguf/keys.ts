/**
 * The GGUF vocabulary ggufy writes: metadata key names and tensor names as typed constants, in one
 * place (after gguf-py's `gguf/constants.py`: `Keys` and `MODEL_TENSOR`/`TENSOR_NAMES`). Key names
 * that depend on the architecture are templates with `{arch}`; per-block tensor names carry `{bid}`.
 * Formats know nothing of models: this file only names things; which architecture has which tensor
 * is the models' business (src/models/tensor-map.ts).
 */

/** `{arch}.*` hyper-parameter keys (gguf-py Keys.LLM / Keys.Attention / Keys.Rope / Keys.Expert). */
export const LLM = {
  VOCAB_SIZE: "{arch}.vocab_size",
  CONTEXT_LENGTH: "{arch}.context_length",
  EMBEDDING_LENGTH: "{arch}.embedding_length",
  BLOCK_COUNT: "{arch}.block_count",
  FEED_FORWARD_LENGTH: "{arch}.feed_forward_length",
  EXPERT_FEED_FORWARD_LENGTH: "{arch}.expert_feed_forward_length",
  EXPERT_COUNT: "{arch}.expert_count",
  EXPERT_USED_COUNT: "{arch}.expert_used_count",
  EXPERT_GATING_FUNC: "{arch}.expert_gating_func",
  EXPERT_WEIGHTS_NORM: "{arch}.expert_weights_norm",
  ATTN_LOGIT_SOFTCAPPING: "{arch}.attn_logit_softcapping",
  FINAL_LOGIT_SOFTCAPPING: "{arch}.final_logit_softcapping",
  HEAD_COUNT: "{arch}.attention.head_count",
  HEAD_COUNT_KV: "{arch}.attention.head_count_kv",
  KEY_LENGTH: "{arch}.attention.key_length",
  VALUE_LENGTH: "{arch}.attention.value_length",
  LAYERNORM_EPS: "{arch}.attention.layer_norm_epsilon",
  LAYERNORM_RMS_EPS: "{arch}.attention.layer_norm_rms_epsilon",
  SLIDING_WINDOW: "{arch}.attention.sliding_window",
  SLIDING_WINDOW_PATTERN: "{arch}.attention.sliding_window_pattern",
  CAUSAL: "{arch}.attention.causal",
  ROPE_DIMENSION_COUNT: "{arch}.rope.dimension_count",
  ROPE_DIMENSION_SECTIONS: "{arch}.rope.dimension_sections",
  ROPE_FREQ_BASE: "{arch}.rope.freq_base",
  ROPE_FREQ_BASE_SWA: "{arch}.rope.freq_base_swa",
  ROPE_SCALING_TYPE: "{arch}.rope.scaling.type",
  ROPE_SCALING_FACTOR: "{arch}.rope.scaling.factor",
  ROPE_SCALING_ATTN_FACTOR: "{arch}.rope.scaling.attn_factor",
  ROPE_SCALING_ORIG_CTX_LEN: "{arch}.rope.scaling.original_context_length",
  ROPE_SCALING_FINETUNED: "{arch}.rope.scaling.finetuned",
  ROPE_SCALING_YARN_LOG_MUL: "{arch}.rope.scaling.yarn_log_multiplier",
  ROPE_SCALING_YARN_EXT_FACTOR: "{arch}.rope.scaling.yarn_ext_factor",
  ROPE_SCALING_YARN_ATTN_FACTOR: "{arch}.rope.scaling.yarn_attn_factor",
  ROPE_SCALING_YARN_BETA_FAST: "{arch}.rope.scaling.yarn_beta_fast",
  ROPE_SCALING_YARN_BETA_SLOW: "{arch}.rope.scaling.yarn_beta_slow",
} as const;

export type LlmKey = (typeof LLM)[keyof typeof LLM];

/** The concrete key of an `{arch}.*` template. */
export function archKey(template: LlmKey, arch: string): string {
  return template.replace("{arch}", arch);
}

/** `general.*` keys (gguf-py Keys.General). */
export const GENERAL = {
  ARCHITECTURE: "general.architecture",
  TYPE: "general.type",
  FILE_TYPE: "general.file_type",
  QUANTIZATION_VERSION: "general.quantization_version",
  ALIGNMENT: "general.alignment",
  NAME: "general.name",
} as const;

/**
 * Tensor names (gguf-py TENSOR_NAMES), the ones ggufy's text decoders write. `{bid}` is the block
 * index; `{xid}` an expert index where a format keeps experts apart.
 */
export const TENSOR = {
  TOKEN_EMBD: "token_embd",
  OUTPUT_NORM: "output_norm",
  OUTPUT: "output",
  ROPE_FREQS: "rope_freqs",
  ROPE_FACTORS_LONG: "rope_factors_long",
  ROPE_FACTORS_SHORT: "rope_factors_short",
  ATTN_NORM: "blk.{bid}.attn_norm",
  ATTN_Q: "blk.{bid}.attn_q",
  ATTN_K: "blk.{bid}.attn_k",
  ATTN_V: "blk.{bid}.attn_v",
  ATTN_QKV: "blk.{bid}.attn_qkv",
  ATTN_OUT: "blk.{bid}.attn_output",
  ATTN_Q_NORM: "blk.{bid}.attn_q_norm",
  ATTN_K_NORM: "blk.{bid}.attn_k_norm",
  ATTN_POST_NORM: "blk.{bid}.post_attention_norm",
  FFN_NORM: "blk.{bid}.ffn_norm",
  FFN_PRE_NORM: "blk.{bid}.ffn_norm",
  FFN_POST_NORM: "blk.{bid}.post_ffw_norm",
  FFN_GATE: "blk.{bid}.ffn_gate",
  FFN_UP: "blk.{bid}.ffn_up",
  FFN_DOWN: "blk.{bid}.ffn_down",
  FFN_GATE_INP: "blk.{bid}.ffn_gate_inp",
  FFN_GATE_EXP: "blk.{bid}.ffn_gate_exps",
  FFN_UP_EXP: "blk.{bid}.ffn_up_exps",
  FFN_DOWN_EXP: "blk.{bid}.ffn_down_exps",
  FFN_GATE_SHEXP: "blk.{bid}.ffn_gate_shexp",
  FFN_UP_SHEXP: "blk.{bid}.ffn_up_shexp",
  FFN_DOWN_SHEXP: "blk.{bid}.ffn_down_shexp",
  FFN_GATE_INP_SHEXP: "blk.{bid}.ffn_gate_inp_shexp",
} as const;

export type TensorTemplate = (typeof TENSOR)[keyof typeof TENSOR];

/** The concrete name of a tensor template (`suffix` "weight" / "bias"). */
export function tensorName(template: TensorTemplate, bid: number | undefined, suffix = "weight"): string {
  if (template.includes("{bid}")) {
    if (bid === undefined) throw new Error(`${template} needs a block index`);
    return `${template.replace("{bid}", String(bid))}.${suffix}`;
  }
  return `${template}.${suffix}`;
}

/** gguf-py RopeScalingType values as llama.cpp reads them (`llama_rope_scaling_type_from_string`). */
export const ROPE_SCALING = { NONE: "none", LINEAR: "linear", YARN: "yarn", LONGROPE: "longrope" } as const;

// --- Gemma 2 / 3 (src/models/gemma.ts): Gemma2Model/Gemma3Model.set_vocab write add_space_prefix false
/** gguf-py Keys.Tokenizer.ADD_PREFIX */
export const TOKENIZER_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix";
