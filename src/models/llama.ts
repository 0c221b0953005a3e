/**
 * Llama (LlamaForCausalLM and friends). llama.cpp's converter un-permutes Q and K rows because HF
 * stores them for rotate_half RoPE while llama.cpp's LLAMA graph uses the interleaved (NORM) form.
 */
import { kv } from "../formats/gguf/types.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import { LLAMA_LIKE_NAMES, mapAll, textHparams, textKvs, toNe } from "./hf-text.js";
import type { ConvertContext, ModelConverter, ModelFile, OutputTensor } from "./types.js";
import { validateTextModel, validateVocab } from "./validate.js";
import path from "node:path";

/**
 * Row index permutation of llama.cpp's `permute(w, n_head)`: within each head of `d` rows,
 * reshape(2, d/2).swapaxes → output row i*2+j comes from source row j*(d/2)+i.
 */
export function permutedSourceRow(outRow: number, headRows: number): number {
  const h = Math.floor(outRow / headRows);
  const r = outRow - h * headRows;
  const half = headRows / 2;
  const i = r >> 1;
  const j = r & 1;
  return h * headRows + j * half + i;
}

/** Q/K output tensor with rows permuted per head; reads whole heads (rowAlign) so chunks stay local. */
export function permutedRows(src: SourceCheckpoint, t: SourceTensor, ggufName: string, nHead: number): OutputTensor {
  const is1d = t.shape.length === 1;
  const total = is1d ? t.shape[0]! : t.shape[0]!;
  const headRows = total / nHead;
  if (!Number.isInteger(headRows) || headRows % 2 !== 0) throw new Error(`${t.name}: ${total} rows do not split into ${nHead} heads of even size`);
  if (is1d) {
    // a bias: one GGUF row of `total` elements, permuted element-wise
    return {
      name: ggufName, ne: toNe(t.shape), sources: [t.name], encoding: t.encoding, dtype: t.dtype,
      read: async (row0, nRows) => {
        if (nRows === 0) return new Float32Array(0);
        const v = await src.readAll(t.name);
        const out = new Float32Array(total);
        for (let r = 0; r < total; r++) out[r] = v[permutedSourceRow(r, headRows)]!;
        return out;
      },
    };
  }
  const cols = t.shape[1]!;
  return {
    name: ggufName, ne: toNe(t.shape), sources: [t.name], encoding: t.encoding, dtype: t.dtype, rowAlign: headRows,
    read: async (row0, nRows) => {
      const out = new Float32Array(nRows * cols);
      if (nRows === 0) return out;
      const first = Math.floor(row0 / headRows) * headRows;
      const last = Math.ceil((row0 + nRows) / headRows) * headRows;
      const block = await src.readRows(t.name, first, last - first);
      for (let r = 0; r < nRows; r++) {
        const s = permutedSourceRow(row0 + r, headRows) - first;
        out.set(block.subarray(s * cols, (s + 1) * cols), r * cols);
      }
      return out;
    },
  };
}

export const llama: ModelConverter = {
  id: "llama",
  hfArchitectures: ["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"],
  async build(ctx: ConvertContext): Promise<ModelFile[]> {
    const file = path.join(ctx.dir, "config.json");
    const h = textHparams(ctx.config, file);
    validateTextModel({ src: ctx.src, h, configFile: file, vocabOnly: ctx.vocabOnly === true, evenHeadDim: true });
    const arch = "llama";
    const kvs = textKvs(arch, h);
    const vocab = await ctx.loadVocab({ dir: ctx.dir, arch, config: ctx.config, ...(h.vocabSize !== undefined ? { vocabSize: h.vocabSize } : {}) });
    validateVocab(vocab, { src: ctx.src, configFile: file, tokenizerDir: ctx.dir, vocabOnly: ctx.vocabOnly === true });
    kvs.push(kv.u32(`${arch}.vocab_size`, vocab.tokens.length));
    kvs.push(kv.u32(`${arch}.rope.dimension_count`, h.headDim ?? h.nEmbd / h.nHead));
    const tensors = ctx.vocabOnly ? [] : mapAll(ctx.src, LLAMA_LIKE_NAMES, {
      transform: (t, g) => {
        if (/\.attn_q\.(weight|bias)$/.test(g)) return permutedRows(ctx.src, t, g, h.nHead);
        if (/\.attn_k\.(weight|bias)$/.test(g)) return permutedRows(ctx.src, t, g, h.nHeadKv);
        return undefined;
      },
    });
    return [{ role: "model", arch, kvs, tensors, vocab }];
  },
};
