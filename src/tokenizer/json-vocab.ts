/**
 * A fast reader for the one large JSON shape a BPE tokenizer has: vocab.json, an object of token text →
 * integer id (151k entries for Qwen2). `JSON.parse` builds a dictionary object of it (and internalises
 * every key), which then has to be walked again; this scanner goes over the file's bytes once and gives
 * each text as a byte range of the file (no string is made for it unless asked: the GGUF header takes
 * the bytes, formats/gguf/utf8-strings.ts), the ids as an array, in file order, with a lookup by text on
 * a hash table of its own.
 *
 * It accepts only the plain form: `{`, then `"text": id` pairs separated by commas, `}`, JSON whitespace
 * around them; ids written as non-negative integers without sign, fraction, exponent or leading zero and
 * of at most 15 digits; texts without control characters (a text with a backslash escape is decoded by
 * JSON.parse of that one string, and its UTF-8 kept beside the file's bytes). For anything else — another
 * value type, a syntax error, two texts with the same UTF-8 (a repeated key: JSON.parse keeps the last id;
 * the scanner does not try to reproduce that) — it returns undefined and the caller parses the file with
 * JSON.parse as before, so every result and every error message is the one the general path gives. The
 * bytes must be valid UTF-8 (files.ts readUtf8Bytes checks that first).
 */
import { Utf8StringsBuilder } from "../formats/gguf/utf8-strings.js";

export interface ScannedVocab {
  readonly count: number;
  /** ids[k] is the id of text k */
  readonly ids: Float64Array;
  /** text k is the UTF-8 bytes[starts[k] .. ends[k]) */
  readonly bytes: Uint8Array;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  /** text k as a string */
  text(k: number): string;
  /** the index k of a text, or undefined when it is not a key */
  indexOf(text: string): number | undefined;
  /** the id of a text, or undefined when it is not a key */
  idOf(text: string): number | undefined;
  /** every text as a string, in file order (decoded when read) */
  readonly tokens: readonly string[];
}

// FNV-1a over the UTF-8 bytes (the hash table's, not a checksum), then MurmurHash3's fmix32: a multiply
// carries only upwards, so FNV's low bits — the table's index — need the final mixing
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function hashOf(b: Uint8Array, a: number, e: number): number {
  let h = 0x811c9dc5;
  for (let i = a; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return mix(h);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The lone surrogates of a string become U+FFFD in UTF-8: such a text is compared as a string. */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The scanned object in the UTF-8 `buf` (the whole of it, surrounding whitespace allowed), or undefined (see above). */
export function scanVocabJsonBytes(buf: Uint8Array): ScannedVocab | undefined {
  const n = buf.length;
  let i = 0;
  while (i < n && isWs(buf[i]!)) i++;
  if (buf[i] !== 0x7b) return undefined; // {
  i++;
  // an entry takes at least 6 bytes (`"":0,`), so n / 6 + 1 entries at most
  const cap = Math.floor(n / 6) + 1;
  const ids = new Float64Array(cap);
  const hashes = new Int32Array(cap);
  const texts = new Utf8StringsBuilder(buf, Math.min(cap, 1 << 16));
  /** the decoded string of each text that had an escape */
  const escaped = new Map<number, string>();
  let count = 0;
  while (i < n && isWs(buf[i]!)) i++;
  if (buf[i] === 0x7d) {
    i++;
  } else {
    for (;;) {
      // "text"
      if (buf[i] !== QUOTE) return undefined;
      const a = ++i;
      let h = 0x811c9dc5;
      let esc = false;
      for (;;) {
        if (i >= n) return undefined;
        const c = buf[i]!;
        if (c === QUOTE) break;
        if (c < 0x20) return undefined;
        if (c === BACKSLASH) {
          esc = true;
          i += 2;
          continue;
        }
        h = Math.imul(h ^ c, 0x01000193);
        i++;
      }
      if (esc) {
        let tok: string;
        try {
          tok = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + a - 1, i + 1 - (a - 1)).toString("utf8")) as string;
        } catch {
          return undefined;
        }
        escaped.set(count, tok);
        texts.string(tok);
      } else {
        texts.range(a, i);
        h = mix(h);
      }
      hashes[count] = h; // (an escaped text's hash is taken below, over its encoded bytes)
      i++;
      while (i < n && isWs(buf[i]!)) i++;
      if (buf[i] !== 0x3a) return undefined; // :
      i++;
      while (i < n && isWs(buf[i]!)) i++;
      // id: 0 or [1-9][0-9]*, at most 15 digits (exact as a double), followed by a delimiter
      const d0 = i;
      let id = 0;
      for (;;) {
        const c = buf[i]!;
        if (!(c >= 0x30 && c <= 0x39)) break; // (undefined past the end breaks too)
        id = id * 10 + (c - 0x30);
        i++;
      }
      const digits = i - d0;
      if (digits === 0 || digits > 15 || (digits > 1 && buf[d0] === 0x30)) return undefined;
      ids[count] = id;
      count++;
      while (i < n && isWs(buf[i]!)) i++;
      const c = buf[i];
      i++;
      if (c === 0x2c) {
        while (i < n && isWs(buf[i]!)) i++;
        continue;
      }
      if (c === 0x7d) break;
      return undefined;
    }
  }
  while (i < n && isWs(buf[i]!)) i++;
  if (i !== n) return undefined;

  const all = texts.finish();
  const bytes = all.bytes;
  const starts = all.starts;
  const ends = all.ends;
  for (const k of escaped.keys()) hashes[k] = hashOf(bytes, starts[k]!, ends[k]!);
  const same = (k: number, bs: Uint8Array, a: number, e: number): boolean => {
    const s = starts[k]!;
    if (ends[k]! - s !== e - a) return false;
    for (let j = 0; j < e - a; j++) if (bytes[s + j] !== bs[a + j]) return false;
    return true;
  };

  // open addressing, load ≤ 1/2: slot → index + 1 (0 = empty)
  let size = 16;
  while (size < count * 2) size *= 2;
  const mask = size - 1;
  const table = new Int32Array(size);
  for (let k = 0; k < count; k++) {
    let s = hashes[k]! & mask;
    for (;;) {
      const e = table[s]!;
      if (e === 0) {
        table[s] = k + 1;
        break;
      }
      if (hashes[e - 1] === hashes[k] && same(e - 1, bytes, starts[k]!, ends[k]!)) return undefined; // a repeated key (or two lone surrogates)
      s = (s + 1) & mask;
    }
  }
  const text = (k: number): string => escaped.get(k) ?? all.get(k);
  const indexOf = (t: string): number | undefined => {
    if (!wellFormed(t)) {
      // only an escaped text can hold a lone surrogate
      for (const [k, s] of escaped) if (s === t) return k;
      return undefined;
    }
    const q = Buffer.from(t, "utf8");
    const h = hashOf(q, 0, q.length);
    let s = h & mask;
    for (;;) {
      const e = table[s]!;
      if (e === 0) return undefined;
      const k = e - 1;
      if (hashes[k] === h && same(k, q, 0, q.length) && (!escaped.has(k) || escaped.get(k) === t)) return k;
      s = (s + 1) & mask;
    }
  };
  let tokens: string[] | undefined;
  return {
    count,
    ids: ids.subarray(0, count),
    bytes,
    starts,
    ends,
    text,
    indexOf,
    idOf: (t) => {
      const k = indexOf(t);
      return k === undefined ? undefined : ids[k];
    },
    get tokens() {
      return (tokens ??= Array.from({ length: count }, (_, k) => text(k)));
    },
  };
}

/** scanVocabJsonBytes of a string (its UTF-8), or undefined; a string with a lone surrogate is declined. */
export function scanVocabJson(text: string): ScannedVocab | undefined {
  if (!wellFormed(text)) return undefined;
  return scanVocabJsonBytes(Buffer.from(text, "utf8"));
}
