/**
 * Test-side truths about Llama-style Hugging Face checkpoints, written from their definitions and
 * independent of src/: the Q/K row permutation of llama.cpp's converter and the HF → GGUF tensor names.
 * Shared by the end-to-end tests that check converted tensors against a decoder's output.
 */

/**
 * llama.cpp `conversion/llama.py` LlamaModel.permute, from its numpy definition:
 * `w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)`
 * (n_head is num_key_value_heads for K).
 */
export function permuteRows(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const out = new Float32Array(w.length);
  const d = rows / nHead;
  let o = 0;
  for (let h = 0; h < nHead; h++)
    for (let i = 0; i < d / 2; i++)
      for (let j = 0; j < 2; j++, o++) {
        const s = h * d + j * (d / 2) + i;
        out.set(w.subarray(s * cols, (s + 1) * cols), o * cols);
      }
  return out;
}

/** gguf-py tensor_mapping.py rows for the Llama/Qwen families' dense tensors (Qwen3's q/k norms included) */
export const LLAMA_HF_TO_GGUF: readonly (readonly [RegExp, string])[] = [
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.weight$/, "blk.$1.attn_q.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.weight$/, "blk.$1.attn_k.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.weight$/, "blk.$1.attn_v.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$/, "blk.$1.attn_q_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$/, "blk.$1.attn_k_norm.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, "blk.$1.ffn_gate.weight"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
];

/** the GGUF name of a Llama-style HF tensor (throws for a name the table does not know) */
export function llamaGgufName(hf: string): string {
  const row = LLAMA_HF_TO_GGUF.find(([re]) => re.test(hf));
  if (!row) throw new Error(`no GGUF name for ${hf}`);
  return hf.replace(row[0], row[1]);
}
