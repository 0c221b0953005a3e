/**
 * What a chunk is and how its NaN/Inf are reported — the parts of encode.ts that the pipeline and the
 * worker pool need without loading a codec (encode.ts imports every quantizer; a conversion to F16 needs
 * none of them on the main thread).
 */
import { GgufyError } from "../errors.js";
import type { RawRows } from "../source/types.js";
import { GGMLType } from "../quant/ggml/types.js";

/** Whether stored `dtype` values encoded as `type` are copied unchanged (f32 → F32, f16 → F16, bf16 → BF16). */
export function unchangedCopy(type: GGMLType, dtype: "f32" | "f16" | "bf16"): boolean {
  return (dtype === "f32" && type === GGMLType.F32) || (dtype === "f16" && type === GGMLType.F16) || (dtype === "bf16" && type === GGMLType.BF16);
}

/** Index of the first NaN/Inf in `x`, or -1. */
export function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

export function nonFiniteError(value: number, tensor: string, flatIndex: number, file?: string): GgufyError {
  return new GgufyError("E_NONFINITE", `value ${value} at flat index ${flatIndex} (pass --allow-nonfinite to keep it)`, { tensor, ...(file ? { file } : {}) });
}

export function checkFinite(rows: Float32Array, tensor: string, firstElement: number, file?: string): void {
  const i = firstNonFinite(rows);
  if (i >= 0) throw nonFiniteError(rows[i]!, tensor, firstElement + i, file);
}

/** Rows as stored (plain float bytes, or rows a scheme read still encoded; see OutputTensor.readRaw). */
export type RawChunk = RawRows;

/** Number of values a raw chunk holds. */
export function rawCount(raw: RawChunk): number {
  return raw.encoded ? raw.encoded.count : raw.bytes.length / (raw.dtype === "f32" ? 4 : 2);
}

/** "reject": report the first NaN/Inf; "count": count them and encode anyway (--allow-nonfinite). */
export type FiniteMode = "reject" | "count";

export interface EncodeResult {
  bytes: Uint8Array;
  /** "reject": index within the chunk and value of the first NaN/Inf (bytes are then empty) */
  firstBad?: number;
  badValue?: number;
  /** "count": how many NaN/Inf values were encoded */
  nonFinite?: number;
}


/**
 * A loader of encode.ts (every codec and scheme decoder) with its own EncodeScratch, imported on the
 * first call and kept: an encoding thread or encoder loads the codecs only when a chunk needs them.
 */
export function lazyEncode(): () => Promise<{ E: typeof import("./encode.js"); scratch: import("./encode.js").EncodeScratch }> {
  let loaded: { E: typeof import("./encode.js"); scratch: import("./encode.js").EncodeScratch } | undefined;
  return async () => {
    if (!loaded) {
      const E = await import("./encode.js");
      loaded = { E, scratch: new E.EncodeScratch() };
    }
    return loaded;
  };
}
