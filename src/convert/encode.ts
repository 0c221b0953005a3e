/**
 * The per-chunk work: float32 rows → bytes of the target type. Pure, so it can run in a worker.
 */
import { GgufyError } from "../errors.js";
import { codecFor } from "../quant/ggml/index.js";
import { rowBytes, type GGMLType } from "../quant/ggml/types.js";

/** Index of the first NaN/Inf in `x`, or -1. */
export function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

export function encodeRows(type: GGMLType, rows: Float32Array, rowLength: number, into?: Uint8Array): Uint8Array {
  const nRows = rows.length / rowLength;
  const size = rowBytes(type, rowLength) * nRows;
  const out = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
  codecFor(type).quantize(rows, out);
  return out;
}

export function checkFinite(rows: Float32Array, tensor: string, firstElement: number, file?: string): void {
  const i = firstNonFinite(rows);
  if (i >= 0) throw new GgufyError("E_NONFINITE", `value ${rows[i]} at flat index ${firstElement + i} (pass --allow-nonfinite to keep it)`, { tensor, ...(file ? { file } : {}) });
}
