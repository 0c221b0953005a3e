/**
 * Output tensors made from source tensors: passed through, rows permuted, or generated. They read
 * float rows through the SourceCheckpoint; the pipeline quantizes them.
 */
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import type { OutputTensor } from "./types.js";

/** Names the converter drops on purpose (buffers, not weights). */
export const SKIPPED = [/\.rotary_emb\.inv_freq$/, /\.attention\.masked_bias$/, /\.attention\.bias$/];

/** numpy shape → ggml ne */
export function toNe(shape: readonly number[]): number[] {
  return shape.length === 0 ? [1] : [...shape].reverse();
}

/** An output tensor that is the source tensor unchanged (rows pass straight through). */
export function passThrough(src: SourceCheckpoint, t: SourceTensor, ggufName: string): OutputTensor {
  return {
    name: ggufName,
    ne: toNe(t.shape),
    sources: [t.name],
    encoding: t.encoding,
    dtype: t.dtype,
    read: (row0, nRows) => src.readRows(t.name, row0, nRows),
    readRaw: (row0, nRows, into) => src.readRawRows(t.name, row0, nRows, into),
  };
}

/** An output tensor whose values are computed (rope factors …): float32, 1-D or [ne]. */
export function constTensor(name: string, ne: readonly number[], data: Float32Array): OutputTensor {
  const rowLen = ne[0]!;
  return {
    name, ne, sources: [], encoding: "generated", dtype: "f32",
    read: async (row0, nRows) => data.slice(row0 * rowLen, (row0 + nRows) * rowLen),
  };
}

/** An output tensor whose rows are the source's mapped element-wise (Gemma's norm + 1 …), in float32. */
export function mappedValues(src: SourceCheckpoint, t: SourceTensor, ggufName: string, fn: (v: number) => number, encoding = t.encoding): OutputTensor {
  return {
    name: ggufName, ne: toNe(t.shape), sources: [t.name], encoding, dtype: "f32",
    read: async (row0, nRows) => {
      const v = await src.readRows(t.name, row0, nRows);
      for (let i = 0; i < v.length; i++) v[i] = fn(v[i]!);
      return v;
    },
  };
}

/**
 * Row index permutation of llama.cpp's `permute(w, n_head)` (conversion/llama.py LlamaModel.permute):
 * within each head of `d` rows, reshape(2, d/2).swapaxes → output row i*2+j comes from source row j*(d/2)+i.
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
  const total = t.shape[0]!;
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
