/** Small helpers over node:util parseArgs: sizes like 2G, repeated flags. */
import { GgufyError } from "../errors.js";

export function parseSize(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$/i.exec(s.trim());
  if (!m) throw new GgufyError("E_USAGE", `${flag} ${s}: expected a size like 500M or 2G`);
  const mult = { "": 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G" | "T"];
  return Math.floor(Number(m[1]) * mult);
}

export function parseIntFlag(s: string | undefined, flag: string, min = 1): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new GgufyError("E_USAGE", `${flag} ${s}: expected an integer ≥ ${min}`);
  return n;
}

/**
 * `--tensor-type PATTERN=TYPE` as llama-quantize's command line reads it (tools/quantize/quantize.cpp:
 * parse_tensor_type): the tensor-name pattern is lower-cased (std::transform … tolower) before it becomes a
 * regex, so `ATTN_V=q8_0` matches `blk.0.attn_v.weight` — and, as there, `\D`/`\W`/`\S` turn into
 * `\d`/`\w`/`\s`. The type name keeps its case (it is matched case-insensitively: parse_ggml_type). The
 * library's `tensorTypes` option takes patterns as given, like llama_model_quantize_params.tensor_types.
 */
export function lowerTensorTypePattern(s: string): string {
  const i = s.lastIndexOf("=");
  return i <= 0 ? s : s.slice(0, i).toLowerCase() + s.slice(i);
}

/** A parseArgs failure (unknown option, missing value …) as a usage error. */
export function usageError(e: unknown): never {
  throw new GgufyError("E_USAGE", (e as Error).message);
}
