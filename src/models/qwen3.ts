/**
 * Qwen3 dense (Qwen3ForCausalLM) → GGUF `qwen3` (conversion/qwen.py Qwen3Model, a Qwen2Model: the base
 * TextModel KVs only; llama.cpp src/models/qwen3.cpp). What differs from Qwen2: per-head RMSNorms of q and
 * k before RoPE (`self_attn.q_norm` / `k_norm` → `blk.N.attn_q_norm` / `attn_k_norm`, [head_dim], required
 * by llama.cpp's loader), an explicit `head_dim` (→ attention.key_length / value_length), and no q/k/v biases
 * (`attention_bias: false`; llama.cpp loads them as optional, so a checkpoint that has them keeps them).
 * NEOX RoPE, so no Q/K permutation. Qwen3-MoE (Qwen3MoeForCausalLM → qwen3moe) is a separate family.
 */
import { GgufyError } from "../errors.js";
import { TENSOR } from "../formats/gguf/keys.js";
import { DEFAULT_LAYER_REQUIRED, textDecoder, type DecoderSpec } from "./text-decoder.js";
import { slidingWindowWarnings } from "./llama.js";

export const QWEN3_TENSORS = [
  TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT, TENSOR.ROPE_FREQS,
  TENSOR.ATTN_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_Q_NORM, TENSOR.ATTN_K, TENSOR.ATTN_K_NORM, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
  TENSOR.FFN_NORM, TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
] as const;

export const qwen3Spec: DecoderSpec = {
  id: "qwen3",
  hfArchitectures: ["Qwen3ForCausalLM", "Qwen3Model"],
  arch: "qwen3",
  tensors: QWEN3_TENSORS,
  alwaysRopeBase: 10000,
  layerRequired: [...DEFAULT_LAYER_REQUIRED, "self_attn.q_norm.weight", "self_attn.k_norm.weight"],
  transform: (c) => {
    if (c.template !== TENSOR.ATTN_Q_NORM && c.template !== TENSOR.ATTN_K_NORM) return undefined;
    // llama.cpp: create_tensor(attn_{q,k}_norm, {n_embd_head_k}); a mismatch would only fail at load time
    const hd = c.h.headDim ?? c.h.nEmbd / c.h.nHead;
    if (c.t.shape.length !== 1 || c.t.shape[0] !== hd) {
      throw new GgufyError("E_CONFIG", `shape is [${c.t.shape.join(", ")}] but config.json implies [${hd}] (head_dim)`, { file: c.cfg.file, tensor: c.t.name });
    }
    return undefined;
  },
  warnings: (cfg, h) => slidingWindowWarnings(cfg, h.nCtx, "qwen3", "use_sliding_window"),
};

export const qwen3 = textDecoder(qwen3Spec);
