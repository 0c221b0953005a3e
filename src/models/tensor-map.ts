/**
 * Hugging Face → GGUF tensor names, as data (after gguf-py `gguf/tensor_mapping.py`,
 * `TensorNameMap.mappings_cfg` / `block_mappings_cfg`). Each row names a GGUF tensor template and
 * the HF module paths that become it; `{bid}` is the block index, `{xid}` an expert index. The
 * `.weight` / `.bias` suffix is carried over. Which GGUF tensors an architecture has is the
 * architecture's list (gguf-py MODEL_TENSORS); a family may put its own rows first where HF reuses a
 * module name for another role (Gemma 2's `post_attention_layernorm` is a post-norm, not ffn_norm).
 */
import { TENSOR, type TensorTemplate } from "../formats/gguf/keys.js";

export type NameRow = readonly [TensorTemplate, readonly string[]];

/** The rows ggufy's decoder families share. */
export const COMMON_NAMES: readonly NameRow[] = [
  [TENSOR.TOKEN_EMBD, ["model.embed_tokens"]],
  [TENSOR.OUTPUT_NORM, ["model.norm"]],
  [TENSOR.OUTPUT, ["lm_head"]],
  [TENSOR.ATTN_NORM, ["model.layers.{bid}.input_layernorm"]],
  [TENSOR.ATTN_Q, ["model.layers.{bid}.self_attn.q_proj"]],
  [TENSOR.ATTN_K, ["model.layers.{bid}.self_attn.k_proj"]],
  [TENSOR.ATTN_V, ["model.layers.{bid}.self_attn.v_proj"]],
  [TENSOR.ATTN_QKV, ["model.layers.{bid}.self_attn.qkv_proj"]],
  [TENSOR.ATTN_OUT, ["model.layers.{bid}.self_attn.o_proj"]],
  [TENSOR.ATTN_Q_NORM, ["model.layers.{bid}.self_attn.q_norm"]],
  [TENSOR.ATTN_K_NORM, ["model.layers.{bid}.self_attn.k_norm"]],
  [TENSOR.FFN_NORM, ["model.layers.{bid}.post_attention_layernorm"]],
  [TENSOR.FFN_GATE, ["model.layers.{bid}.mlp.gate_proj"]],
  [TENSOR.FFN_UP, ["model.layers.{bid}.mlp.up_proj", "model.layers.{bid}.mlp.gate_up_proj"]],
  [TENSOR.FFN_DOWN, ["model.layers.{bid}.mlp.down_proj"]],
  [TENSOR.FFN_GATE_INP, ["model.layers.{bid}.block_sparse_moe.gate", "model.layers.{bid}.mlp.gate"]],
];

export interface CompiledName {
  readonly re: RegExp;
  readonly template: TensorTemplate;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Compile rows into matchers for `<prefix><hf path>.(weight|bias)`, keeping only the architecture's tensors. */
export function compileNames(rows: readonly NameRow[], allowed: readonly TensorTemplate[]): CompiledName[] {
  const out: CompiledName[] = [];
  for (const [template, hfs] of rows) {
    if (!allowed.includes(template)) continue;
    for (const hf of hfs) {
      const re = new RegExp(`^${esc(hf).replace("\\{bid\\}", "(\\d+)").replace("\\{xid\\}", "(\\d+)")}\\.(weight|bias)$`);
      out.push({ re, template });
    }
  }
  return out;
}

/** The GGUF name of an HF tensor name, or undefined. */
export function mapTensorName(names: readonly CompiledName[], hfName: string): { gguf: string; bid?: number; template: TensorTemplate } | undefined {
  for (const n of names) {
    const m = n.re.exec(hfName);
    if (!m) continue;
    const suffix = m[m.length - 1]!;
    const bid = n.template.includes("{bid}") ? Number(m[1]) : undefined;
    const base = bid !== undefined ? n.template.replace("{bid}", String(bid)) : n.template;
    return { gguf: `${base}.${suffix}`, template: n.template, ...(bid !== undefined ? { bid } : {}) };
  }
  return undefined;
}
