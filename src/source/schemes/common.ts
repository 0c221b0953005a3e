/**
 * Helpers shared by the integer / FP8 schemes (GPTQ, AWQ, FP8, compressed-tensors): typed reading of
 * quantization_config fields, the module skip lists, widening of stored scales, and column-range reads
 * of tensors packed along their last dimension.
 */
import { GgufyError, brief } from "../../errors.js";
import type { SafetensorsCheckpoint, StTensorInfo } from "../../formats/safetensors/index.js";
import { f16Lut } from "../../formats/half.js";

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Refusal of a module: one line naming the scheme, the module and the problem. */
export function moduleError(scheme: string, module: string, detail: string, file: string | undefined, tensor?: string, code: "E_QUANT" | "E_UNSUPPORTED_QUANT" = "E_QUANT"): GgufyError {
  return new GgufyError(code, `${scheme} module '${module}': ${detail}`, { ...(file !== undefined ? { file } : {}), ...(tensor !== undefined ? { tensor } : {}) });
}

/** Typed field reader over a quantization config object; a wrong value is refused by name. */
export class ConfigReader {
  constructor(
    readonly obj: Json,
    readonly file: string,
    readonly what: string,
  ) {}
  private bad(key: string, want: string): never {
    throw new GgufyError("E_CONFIG", `${this.what}.${key} is ${brief(this.obj[key])}: expected ${want}`, { file: this.file });
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  int(key: string, dflt?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) throw new GgufyError("E_CONFIG", `${this.what}.${key} is missing`, { file: this.file });
      return dflt;
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v)) this.bad(key, "an integer");
    return v;
  }
  bool(key: string, dflt: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") this.bad(key, "true or false");
    return v;
  }
  str(key: string, dflt?: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "string") this.bad(key, "a string");
    return v;
  }
  strings(key: string): string[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) this.bad(key, "a list of module names");
    return v as string[];
  }
  ints(key: string): number[] | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x > 0)) this.bad(key, "a list of positive integers");
    return v as number[];
  }
  object(key: string): Json | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) this.bad(key, "an object");
    return v;
  }
}

/**
 * transformers' skip test for `modules_to_not_convert` (and compressed-tensors' `ignore` without the
 * `re:` prefix): a listed name matches the module itself, a module whose dotted name contains it as a
 * component path, or its last component. `re:<regex>` entries (compressed-tensors) match by regex.
 */
export function isSkipped(module: string, skip: readonly string[]): boolean {
  const last = module.slice(module.lastIndexOf(".") + 1);
  return skip.some((k) => {
    if (k.startsWith("re:")) {
      try {
        return new RegExp(k.slice(3)).test(module);
      } catch {
        return false;
      }
    }
    return k === module || k === last || module.startsWith(k + ".") || module.includes("." + k + ".") || module.endsWith("." + k);
  });
}

/** Stored F32/F16/BF16 bytes → float32 (exact). */
export function widenFloats(bytes: Uint8Array, dtype: string): Float32Array {
  if (dtype === "F32") {
    const out = new Float32Array(bytes.byteLength / 4);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const n = bytes.byteLength / 2;
  const h = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : new Uint16Array(bytes.slice().buffer);
  const out = new Float32Array(n);
  if (dtype === "BF16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = h[i]! << 16;
  } else {
    const lut = f16Lut();
    for (let i = 0; i < n; i++) out[i] = lut[h[i]!]!;
  }
  return out;
}

export const FLOAT_STORED = new Set(["F32", "F16", "BF16"]);

export function int32View(bytes: Uint8Array): Int32Array {
  return bytes.byteOffset % 4 === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2) : new Int32Array(bytes.slice().buffer);
}

/**
 * Columns [c0, c0 + n) of every row of a 2-D tensor `[rows, cols]` of `item`-byte elements, gathered
 * row-major into `[rows, n]` — read in bands of whole rows (a few large reads rather than one per row).
 */
export async function readColumns(st: SafetensorsCheckpoint, info: StTensorInfo, item: number, c0: number, n: number): Promise<Uint8Array> {
  const rows = info.shape.length === 2 ? info.shape[0]! : 1;
  const cols = info.shape.length === 2 ? info.shape[1]! : info.shape[0]!;
  if (c0 === 0 && n === cols) return st.read(info.name, 0, rows * cols * item);
  const out = new Uint8Array(rows * n * item);
  const band = Math.max(1, Math.floor((8 << 20) / Math.max(1, cols * item)));
  for (let r = 0; r < rows; r += band) {
    const nr = Math.min(band, rows - r);
    // from the first wanted column of row r to the last wanted column of row r + nr - 1
    const start = (r * cols + c0) * item;
    const len = ((nr - 1) * cols + n) * item;
    const b = await st.read(info.name, start, len);
    for (let i = 0; i < nr; i++) out.set(b.subarray(i * cols * item, (i * cols + n) * item), (r + i) * n * item);
  }
  return out;
}

/**
 * `count` values starting at bit `bit0` of a little-endian bit stream of `bits`-bit unsigned values packed in 32-bit
 * words (value j in bits [j·bits, (j+1)·bits) of the words' concatenation, word 0 lowest) — GPTQ's
 * packing for every width, 3-bit values crossing word boundaries included.
 */
export function unpackStream(words: Int32Array, wordStride: number, wordOffset: number, bit0: number, count: number, bits: number, out: Int32Array, outOffset = 0): void {
  const mask = (1 << bits) - 1;
  for (let j = 0; j < count; j++) {
    const bit = bit0 + j * bits;
    const w = bit >>> 5;
    const s = bit & 31;
    let v = words[wordOffset + w * wordStride]! >>> s;
    if (s + bits > 32) v |= words[wordOffset + (w + 1) * wordStride]! << (32 - s);
    out[outOffset + j] = v & mask;
  }
}
