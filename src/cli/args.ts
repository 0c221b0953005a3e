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
