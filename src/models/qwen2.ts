/**
 * Qwen2 / Qwen2.5 (Qwen2ForCausalLM) → GGUF `qwen2` (conversion/qwen.py Qwen2Model): NEOX RoPE, so
 * no Q/K permutation; q/k/v biases; YaRN rope_scaling (Qwen2.5 long context) through the base.
 * rope.freq_base is always written (Qwen2 uses 1e6; llama.cpp would otherwise assume 10000).
 */
import { TENSOR } from "../formats/gguf/keys.js";
import { buildTextDecoder, textDecoder, type DecoderSpec } from "./text-decoder.js";
import { slidingWindowWarnings } from "./llama.js";
import type { ConvertContext, ModelFile } from "./types.js";

export const qwen2Spec: DecoderSpec = {
  id: "qwen2",
  hfArchitectures: ["Qwen2ForCausalLM", "Qwen2Model"],
  arch: "qwen2",
  tensors: [
    TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT, TENSOR.ROPE_FREQS,
    TENSOR.ATTN_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_K, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
    TENSOR.FFN_NORM, TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
  ],
  alwaysRopeBase: 10000,
  // Qwen2.5 ships sliding_window 131072 with use_sliding_window false: only a true flag is a window
  warnings: (cfg, h) => slidingWindowWarnings(cfg, h.nCtx, "qwen2", "use_sliding_window"),
};

/** The Qwen2 language model found under `prefix` of a checkpoint (MiniCPM-V keeps it under `llm.`). */
export function buildQwen2(ctx: ConvertContext, prefix = "", tokenizerDir = ctx.dir): Promise<ModelFile> {
  return buildTextDecoder(ctx, qwen2Spec, prefix, tokenizerDir);
}

export const qwen2 = textDecoder(qwen2Spec);
