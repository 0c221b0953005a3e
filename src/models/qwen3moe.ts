/**
 * Qwen3-MoE (Qwen3MoeForCausalLM: Qwen3-30B-A3B, Qwen3-235B-A22B) → GGUF `qwen3moe`
 * (llama.cpp conversion/qwen.py Qwen3MoeModel ← Qwen2MoeModel ← TextModel).
 *
 * - Attention as Qwen3: no q/k/v bias, RMSNorm over each head of Q and K (`self_attn.q_norm` /
 *   `k_norm` → attn_q_norm / attn_k_norm) before NEOX RoPE, so no Q/K permutation; an explicit
 *   `head_dim` (128 in the real models, not hidden_size / heads) → attention.key_length/value_length.
 * - Every layer is sparse: `mlp.gate` (the router, [n_expert, hidden]) → ffn_gate_inp, and the
 *   experts `mlp.experts.{x}.{gate,up,down}_proj` stacked along a new outer axis (torch.stack(dim=0)
 *   in Qwen2MoeModel.modify_tensors) into ffn_{gate,up,down}_exps, ne = [cols, rows, n_expert]. The
 *   stacks stream: the base's stackedExperts reads one expert's rows at a time.
 * - KVs: the base ones (expert_count from `num_experts`, expert_used_count from
 *   `num_experts_per_tok`), then `moe_intermediate_size` → expert_feed_forward_length
 *   (Qwen2MoeModel.set_gguf_parameters).
 *
 * Refused by name, because llama.cpp's qwen3moe graph (src/models/qwen3moe.cpp) cannot run them and
 * its converter would write a file that is silently wrong or fails to load:
 * - `norm_topk_prob` false or absent (transformers' Qwen3MoeConfig default is false): the graph always
 *   renormalises the top-k router weights (build_moe_ffn norm_w = true);
 * - dense layers (`mlp_only_layers` non-empty, `decoder_sparse_step` ≠ 1 — modeling_qwen3_moe.py
 *   Qwen3MoeDecoderLayer): the loader wants ffn_gate_inp and the _exps tensors in every layer;
 * - `shared_expert_intermediate_size` (a Qwen2-MoE shared expert): qwen3moe has none;
 * - `use_sliding_window` with layers at or beyond `max_window_layers`, a `hidden_act` other than silu.
 */
import { GgufyError } from "../errors.js";
import { LLM, TENSOR } from "../formats/gguf/keys.js";
import type { HfConfig } from "./config.js";
import { textDecoder, type DecoderSpec, type TextHparams } from "./text-decoder.js";

/** gguf-py MODEL_TENSORS[MODEL_ARCH.QWEN3MOE] */
export const QWEN3MOE_TENSORS = [
  TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT,
  TENSOR.ATTN_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_Q_NORM, TENSOR.ATTN_K, TENSOR.ATTN_K_NORM, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
  TENSOR.FFN_NORM, TENSOR.FFN_GATE_INP, TENSOR.FFN_GATE_EXP, TENSOR.FFN_DOWN_EXP, TENSOR.FFN_UP_EXP,
] as const;

/** The expert FFN width: `moe_intermediate_size`, else llama.cpp's fallback n_ff / n_expert_used (llama_model_qwen3moe::load_arch_tensors). */
export function qwen3MoeExpertFf(cfg: HfConfig, h: TextHparams): { nFfExp: number; why: string } {
  const m = cfg.int("moe_intermediate_size");
  if (m !== undefined) return { nFfExp: m, why: "moe_intermediate_size" };
  const used = h.nExpertUsed ?? 0;
  return { nFfExp: used > 0 ? Math.floor(h.nFf / used) : 0, why: "intermediate_size / num_experts_per_tok, as llama.cpp assumes without moe_intermediate_size" };
}

function checkQwen3Moe(cfg: HfConfig, h: TextHparams): void {
  const nExpert = cfg.reqInt(["num_experts", "num_local_experts"]);
  const used = cfg.reqInt(["num_experts_per_tok"]);
  if (used > nExpert) cfg.refuse("num_experts_per_tok", `is ${used}, more than num_experts ${nExpert}`);
  const norm = cfg.bool("norm_topk_prob");
  if (norm !== true) {
    cfg.refuse("norm_topk_prob", `is ${norm === undefined ? "absent (transformers' default is false)" : "false"}; llama.cpp's qwen3moe always renormalises the top-k router weights, so the converted model would compute something else`);
  }
  const step = cfg.int("decoder_sparse_step") ?? 1;
  if (step !== 1 && h.nLayer >= 1) {
    const dense = Array.from({ length: h.nLayer }, (_, i) => i).filter((i) => (i + 1) % step !== 0);
    if (dense.length) cfg.refuse("decoder_sparse_step", `is ${step}, which makes layer(s) ${dense.slice(0, 8).join(", ")}${dense.length > 8 ? " …" : ""} dense; llama.cpp's qwen3moe has experts in every layer`);
  }
  const mlpOnly = cfg.ints("mlp_only_layers") ?? [];
  const inRange = mlpOnly.filter((i) => i >= 0 && i < h.nLayer);
  if (inRange.length) cfg.refuse("mlp_only_layers", `is [${mlpOnly.join(", ")}]: dense layers; llama.cpp's qwen3moe has experts in every layer`);
  const shared = cfg.int("shared_expert_intermediate_size", false);
  if (shared !== undefined && shared > 0) cfg.refuse("shared_expert_intermediate_size", `is ${shared}: a shared expert, which llama.cpp's qwen3moe does not have`);
  if (qwen3MoeExpertFf(cfg, h).nFfExp < 1) cfg.refuse("moe_intermediate_size", "is missing and intermediate_size / num_experts_per_tok is 0");
  const act = cfg.str("hidden_act");
  if (act !== undefined && act !== "silu") cfg.refuse("hidden_act", `is ${JSON.stringify(act)}; llama.cpp's qwen3moe experts use SiLU`);
  // modeling_qwen3_moe.py: with use_sliding_window, layers from max_window_layers on attend within sliding_window
  if (cfg.bool("use_sliding_window") === true) {
    const window = cfg.int("sliding_window");
    const from = cfg.int("max_window_layers", false) ?? h.nLayer;
    if (window !== undefined && from < h.nLayer) cfg.refuse("use_sliding_window", `is true (sliding_window ${window} from layer ${from} on); llama.cpp's qwen3moe has no sliding-window attention`);
  }
}

export const qwen3MoeSpec: DecoderSpec = {
  id: "qwen3moe",
  hfArchitectures: ["Qwen3MoeForCausalLM"],
  arch: "qwen3moe",
  tensors: QWEN3MOE_TENSORS,
  layerRequired: [
    "input_layernorm.weight", "post_attention_layernorm.weight",
    "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "self_attn.q_norm.weight", "self_attn.k_norm.weight",
  ],
  experts: {
    pattern: /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$/,
    to: { gate_proj: TENSOR.FFN_GATE_EXP, up_proj: TENSOR.FFN_UP_EXP, down_proj: TENSOR.FFN_DOWN_EXP },
    router: "mlp.gate.weight",
    // transformers v5 saves the experts fused (Qwen3MoeExperts): handled like llama.cpp's Qwen2MoeModel
    fused: { pattern: /^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)(?:\.weight)?$/, gateUp: ["gate_proj", "up_proj"], down: "down_proj" },
    shape: (proj, h, cfg) => {
      const { nFfExp, why } = qwen3MoeExpertFf(cfg, h);
      return proj === "down_proj"
        ? { rows: h.nEmbd, cols: nFfExp, why: `hidden_size × ${why}` }
        : { rows: nFfExp, cols: h.nEmbd, why: `${why} × hidden_size` };
    },
  },
  kvs: (cfg, h, out) => {
    checkQwen3Moe(cfg, h);
    const m = cfg.int("moe_intermediate_size");
    if (m !== undefined) out.u32(LLM.EXPERT_FEED_FORWARD_LENGTH, m);
  },
  transform: (c) => {
    if (c.template === TENSOR.ATTN_Q_NORM || c.template === TENSOR.ATTN_K_NORM) {
      const hd = c.h.headDim ?? c.h.nEmbd / c.h.nHead;
      if (c.t.shape.length !== 1 || c.t.shape[0] !== hd) {
        throw new GgufyError("E_CONFIG", `shape is [${c.t.shape.join(", ")}] but config.json implies [${hd}] (head_dim: the norm is per head)`, { file: c.cfg.file, tensor: c.t.name });
      }
    }
    return undefined;
  },
};

export const qwen3moe = textDecoder(qwen3MoeSpec);
