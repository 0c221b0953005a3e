/**
 * Llama family → GGUF `llama` (conversion/llama.py LlamaModel): LlamaForCausalLM (Llama 1–3.3),
 * MistralForCausalLM (Mistral v0.1–v0.3, Mistral-Nemo: explicit head_dim) and MixtralForCausalLM
 * (experts stacked into ffn_{gate,up,down}_exps). Q and K rows are un-permuted: HF stores them for
 * rotate_half RoPE, llama.cpp's LLAMA graph uses the interleaved (NORM) form. Llama 3.1+'s
 * `rope_type: llama3` becomes the `rope_freqs.weight` factors (LlamaModel.generate_extra_tensors).
 * Mistral's `sliding_window` is not written: llama.cpp's `llama` architecture has no sliding window
 * (LlamaModel.set_gguf_parameters writes none; src/models/llama.cpp reads no SWA key), so a prompt beyond
 * the window (Mistral v0.1: 4096) is attended in full there, unlike transformers' MistralAttention. The
 * conversion says so in a warning; v0.2+ and Nemo have `sliding_window: null`.
 */
import { TENSOR } from "../formats/gguf/keys.js";
import { llama3RopeFactors } from "./rope.js";
import { constTensor, DEFAULT_LAYER_REQUIRED, llamaKvs, textDecoder, type DecoderSpec } from "./text-decoder.js";
import type { HfConfig } from "./config.js";

export { permutedSourceRow } from "./tensors.js";

export const LLAMA_TENSORS = [
  TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT, TENSOR.ROPE_FREQS,
  TENSOR.ATTN_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_K, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
  TENSOR.FFN_GATE_INP, TENSOR.FFN_NORM, TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
  TENSOR.FFN_GATE_EXP, TENSOR.FFN_DOWN_EXP, TENSOR.FFN_UP_EXP,
] as const;

export const llamaSpec: DecoderSpec = {
  id: "llama",
  hfArchitectures: ["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"],
  arch: "llama",
  tensors: LLAMA_TENSORS,
  permuteQK: true,
  // llama.cpp's llama loader: ffn_gate/up/down required when n_expert == 0; MoE layers (Mixtral) have no dense MLP
  layerRequired: (h) => (h.nExpert ? ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"] : DEFAULT_LAYER_REQUIRED),
  // Mixtral (modeling_mixtral.py MixtralSparseMoeBlock): w1 = gate, w2 = down, w3 = up, each [intermediate_size, hidden]
  // (w2 transposed), stacked as LlamaModel.modify_tensors does; the router block_sparse_moe.gate → ffn_gate_inp
  experts: {
    pattern: /^model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight$/,
    to: { w1: TENSOR.FFN_GATE_EXP, w2: TENSOR.FFN_DOWN_EXP, w3: TENSOR.FFN_UP_EXP },
    // transformers v5 (MixtralExperts): the router at mlp.gate and the experts fused into mlp.experts.gate_up_proj
    // [n, 2·ff, hidden] (w1 rows, then w3 rows) and mlp.experts.down_proj [n, hidden, ff] (llama.cpp's converter
    // does not read this layout; it is split as for Qwen3-MoE)
    router: ["block_sparse_moe.gate.weight", "mlp.gate.weight"],
    fused: { pattern: /^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)(?:\.weight)?$/, gateUp: ["w1", "w3"], down: "w2" },
    // a dense Llama / Mistral: the MLP llama.cpp's LLAMA loader requires in every layer
    denseRequired: ["mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"],
    shape: (proj, h) => (proj === "w2" ? { rows: h.nEmbd, cols: h.nFf, why: "hidden_size × intermediate_size" } : { rows: h.nFf, cols: h.nEmbd, why: "intermediate_size × hidden_size" }),
  },
  kvs: (_cfg, h, out, { nVocab }) => llamaKvs(h, out, nVocab),
  extraTensors: (_cfg, h) => {
    const s = h.rope.scaling;
    if (s.type !== "llama3") return [];
    const dim = h.headDim ?? h.nEmbd / h.nHead;
    const f = llama3RopeFactors(s, h.ropeTheta ?? 10000, dim);
    return [constTensor("rope_freqs.weight", [f.length], f)];
  },
  warnings: (cfg, h) => slidingWindowWarnings(cfg, h.nCtx, "llama"),
};

/**
 * A `sliding_window` smaller than the context that transformers applies (Mistral; Qwen2 only with
 * `use_sliding_window: true`) but that llama.cpp's `llama` / `qwen2` runtime does not: the converted
 * model equals the original only up to that many tokens.
 */
export function slidingWindowWarnings(cfg: HfConfig, nCtx: number, arch: string, gate?: string): string[] {
  if (gate !== undefined && cfg.bool(gate) !== true) return [];
  const w = cfg.int("sliding_window");
  if (w === undefined || w >= nCtx) return [];
  return [
    `sliding_window ${w}: llama.cpp's ${arch} architecture has no sliding-window attention (llama.cpp's converter writes none either); prompts longer than ${w} tokens are attended in full, unlike transformers`,
  ];
}

export const llama = textDecoder(llamaSpec);
