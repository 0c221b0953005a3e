/**
 * Strings from files (GGUF keys and values, tensor names, model-card names, paths) on their way to a
 * terminal. A GGUF key `\x1b]0;…\x07` would retitle the user's terminal, `\x1b[2J` clear it; C1 controls
 * (U+0080–U+009F) act the same on many terminals; bidi overrides make a name display as another one.
 */

// C0, DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates and marks, BOM, lone surrogates
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function esc(c: string): string {
  if (c === "\n") return "\\n";
  if (c === "\r") return "\\r";
  if (c === "\t") return "\\t";
  const u = c.charCodeAt(0);
  return u < 0x100 ? `\\x${u.toString(16).padStart(2, "0")}` : `\\u${u.toString(16).padStart(4, "0")}`;
}

/** `s` with every control, bidi or unpaired-surrogate character escaped (\x1b, \u202e …); printable text unchanged. */
export function termSafe(s: string): string {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(s) ? s.replace(UNSAFE, esc) : s;
}

// what JSON.stringify leaves raw but a terminal acts on
const JSON_UNSAFE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff]/g;

/**
 * JSON.stringify, then DEL, C1, separators and bidi controls written as \u escapes: the same JSON value,
 * with no byte on the wire a terminal would act on (JSON.stringify escapes C0 and lone surrogates itself).
 */
export function jsonSafe(value: unknown, replacer?: (this: unknown, key: string, value: unknown) => unknown, space?: number): string {
  const s = JSON.stringify(value, replacer, space) ?? "null";
  return s.replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The largest of `f(x)` over `xs` (no spread: 200,000 arguments overflow the call stack). */
export function maxOf<T>(xs: readonly T[], f: (x: T) => number, min = 0): number {
  let m = min;
  for (const x of xs) {
    const v = f(x);
    if (v > m) m = v;
  }
  return m;
}
