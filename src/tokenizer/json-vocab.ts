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
import { Utf8Strings, Utf8StringsBuilder } from "../formats/gguf/utf8-strings.js";

export interface ScannedVocab {
  readonly count: number;
  /** ids[k] is the id of text k */
  readonly ids: Float64Array;
  /** text k is the UTF-8 from starts[k] to ends[k] of bytes followed by extra (Utf8Strings) */
  readonly bytes: Uint8Array;
  readonly extra: Uint8Array;
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

function skipWs(b: Uint8Array, i: number): number {
  while (i < b.length && isWs(b[i]!)) i++;
  return i;
}

/**
 * The text starting after its opening quote at b[i]: the index of its closing quote, or -1 (a control
 * character, or the end of the buffer); r[0] = FNV-1a of its bytes before mixing, r[1] = 1 when it has
 * a backslash escape. (The scanner's loops are small functions of their own: V8 optimises them at
 * once, where one large function runs most of a single 2.7 MB pass unoptimised while it is compiled.)
 */
function scanText(b: Uint8Array, i: number, r: Int32Array): number {
  const n = b.length;
  let h = 0x811c9dc5;
  let esc = 0;
  for (;;) {
    if (i >= n) return -1;
    const c = b[i]!;
    if (c === QUOTE) break;
    if (c < 0x20) return -1;
    if (c === BACKSLASH) {
      esc = 1;
      i += 2;
      continue;
    }
    h = Math.imul(h ^ c, 0x01000193);
    i++;
  }
  r[0] = h;
  r[1] = esc;
  return i;
}

/** The id starting at b[i] — 0 or [1-9][0-9]*, at most 15 digits (exact as a double) — into r[0]: the index after it, or -1. */
function scanId(b: Uint8Array, i: number, r: Float64Array): number {
  const n = b.length;
  const d0 = i;
  let id = 0;
  while (i < n) {
    const c = b[i]!;
    if (!(c >= 0x30 && c <= 0x39)) break;
    id = id * 10 + (c - 0x30);
    i++;
  }
  const digits = i - d0;
  if (digits === 0 || digits > 15 || (digits > 1 && b[d0] === 0x30)) return -1;
  r[0] = id;
  return i;
}

/** b[a .. z) with its escapes \" \\ \/ undone, into out: the length, or -1 for any other escape. */
function unescapeSimple(b: Uint8Array, a: number, z: number, out: Uint8Array): number {
  let m = 0;
  for (let i = a; i < z; i++) {
    let c = b[i]!;
    if (c === BACKSLASH) {
      c = b[++i]!;
      if (c !== QUOTE && c !== BACKSLASH && c !== 0x2f) return -1;
    }
    out[m++] = c;
  }
  return m;
}

function grown<T extends Int32Array | Float64Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a);
  return b;
}

/** scanEntries's outcome in st[1]: more entries follow, the object closed, or the input is not the plain form */
const MORE = 0;
const CLOSED = 1;
const FAILED = 2;
/**
 * Entries scanned per call of scanEntries. (Startup: a loop in one call that runs once over the whole
 * file is left to on-stack replacement, and most of the 151k entries went by in unoptimised code — a
 * cold scan took ~8× a warm one; called in chunks, the small function is compiled while the first
 * chunks run and the later chunks enter its optimised code.)
 */
const CHUNK = 1024;

/**
 * Up to `limit` `"text": id` entries from b[i] (at a text's opening quote), each followed by `,` or
 * the closing `}`, into the arrays from index st[0] on. Returns the position after the last one read
 * (past its comma and the whitespace after it, or past the `}`); st[0] becomes the count, st[1] MORE,
 * CLOSED or FAILED.
 */
function scanEntries(b: Uint8Array, i: number, limit: number, ids: Float64Array, hashes: Int32Array, starts: Int32Array, ends: Int32Array, escapes: number[], st: Int32Array, tr: Int32Array, ir: Float64Array): number {
  let count = st[0]!;
  const stop = count + limit;
  st[1] = FAILED;
  while (count < stop) {
    // "text"
    if (b[i] !== QUOTE) return i;
    const a = i + 1;
    i = scanText(b, a, tr);
    if (i < 0) return i;
    if (tr[1]) escapes.push(count, a, i); // (decoded, placed and hashed below)
    starts[count] = a;
    ends[count] = i;
    hashes[count] = mix(tr[0]!);
    i = skipWs(b, i + 1);
    if (b[i] !== 0x3a) return i; // :
    i = scanId(b, skipWs(b, i + 1), ir);
    if (i < 0) return i;
    ids[count] = ir[0]!;
    count++;
    st[0] = count;
    i = skipWs(b, i);
    const c = b[i];
    i++;
    if (c === 0x2c) {
      i = skipWs(b, i);
      continue;
    }
    if (c === 0x7d) {
      st[1] = CLOSED;
      return i;
    }
    return i;
  }
  st[1] = MORE;
  return i;
}

/** Text k (Utf8Strings' positions: past buf.length is extra) equals bs[a .. e). */
function sameText(buf: Uint8Array, extra: Uint8Array, starts: Int32Array, ends: Int32Array, k: number, bs: Uint8Array, a: number, e: number): boolean {
  let s = starts[k]!;
  if (ends[k]! - s !== e - a) return false;
  let src = buf;
  if (s >= buf.length) {
    src = extra;
    s -= buf.length;
  }
  for (let j = 0; j < e - a; j++) if (src[s + j] !== bs[a + j]) return false;
  return true;
}

/**
 * Texts k0 .. k1 into `table` (open addressing, a power of two long: slot → index + 1, 0 = empty):
 * false when one of them has the bytes of a text already there. (Called in chunks, like scanEntries.)
 */
function insertTexts(buf: Uint8Array, extra: Uint8Array, starts: Int32Array, ends: Int32Array, hashes: Int32Array, table: Int32Array, k0: number, k1: number): boolean {
  const n = buf.length;
  const mask = table.length - 1;
  for (let k = k0; k < k1; k++) {
    const h = hashes[k]!;
    let s = h & mask;
    for (;;) {
      const e = table[s]!;
      if (e === 0) {
        table[s] = k + 1;
        break;
      }
      if (hashes[e - 1] === h && (starts[k]! < n ? sameText(buf, extra, starts, ends, e - 1, buf, starts[k]!, ends[k]!) : sameText(buf, extra, starts, ends, e - 1, extra, starts[k]! - n, ends[k]! - n))) return false;
      s = (s + 1) & mask;
    }
  }
  return true;
}

/** The lookup table of texts 0 .. count, load ≤ 1/2; undefined when two texts are the same bytes. */
function hashTable(buf: Uint8Array, extra: Uint8Array, starts: Int32Array, ends: Int32Array, hashes: Int32Array, count: number): Int32Array | undefined {
  let size = 16;
  while (size < count * 2) size *= 2;
  const table = new Int32Array(size);
  for (let k = 0; k < count; k += CHUNK) if (!insertTexts(buf, extra, starts, ends, hashes, table, k, Math.min(count, k + CHUNK))) return undefined;
  return table;
}

/** The scanned object in the UTF-8 `buf` (the whole of it, surrounding whitespace allowed), or undefined (see above). */
export function scanVocabJsonBytes(buf: Uint8Array): ScannedVocab | undefined {
  const n = buf.length;
  let i = skipWs(buf, 0);
  if (buf[i] !== 0x7b) return undefined; // {
  // (about 18 bytes an entry in real files: n / 16 rarely has to grow)
  let cap = Math.max(1 << 10, n >> 4);
  let ids = new Float64Array(cap);
  let hashes = new Int32Array(cap);
  let starts = new Int32Array(cap);
  let ends = new Int32Array(cap);
  /** the texts with a backslash escape: index, then the literal's start and end (its quotes excluded) */
  const escapes: number[] = [];
  const tr = new Int32Array(2);
  const ir = new Float64Array(1);
  /** [count, MORE | CLOSED | FAILED] */
  const st = new Int32Array(2);
  i = skipWs(buf, i + 1);
  if (buf[i] === 0x7d) {
    i++;
  } else {
    for (;;) {
      if (st[0] === cap) {
        cap *= 2;
        ids = grown(ids);
        hashes = grown(hashes);
        starts = grown(starts);
        ends = grown(ends);
      }
      i = scanEntries(buf, i, Math.min(CHUNK, cap - st[0]!), ids, hashes, starts, ends, escapes, st, tr, ir);
      if (st[1] === FAILED) return undefined;
      if (st[1] === CLOSED) break;
    }
  }
  const count = st[0]!;
  i = skipWs(buf, i);
  if (i !== n) return undefined;
  starts = starts.subarray(0, count);
  ends = ends.subarray(0, count);

  // an escaped text: JSON.parse of its literal, its UTF-8 in `extra` (positions from n on)
  /** the decoded string of each text with a \\u escape (a lone surrogate compares only as a string) */
  const escaped = new Map<number, string>();
  const ex = new Utf8StringsBuilder(buf, 1);
  const plain = new Uint8Array(256);
  for (let e = 0; e < escapes.length; e += 3) {
    const k = escapes[e]!;
    const a = escapes[e + 1]!;
    const z = escapes[e + 2]!;
    // only \" \\ \/ (Qwen2's 2,000-odd): the bytes without their backslashes, which is what JSON.parse gives
    const m = z - a <= plain.length ? unescapeSimple(buf, a, z, plain) : -1;
    if (m >= 0) {
      ex.bytes(plain, m);
      continue;
    }
    let tok: string;
    try {
      tok = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + a - 1, z - a + 2).toString("utf8")) as string;
    } catch {
      return undefined;
    }
    escaped.set(k, tok);
    ex.string(tok);
  }
  const encoded = ex.finish();
  const extra = encoded.extra;
  for (let e = 0, j = 0; e < escapes.length; e += 3, j++) {
    const k = escapes[e]!;
    starts[k] = encoded.starts[j]!;
    ends[k] = encoded.ends[j]!;
    hashes[k] = hashOf(extra, starts[k]! - n, ends[k]! - n);
  }
  const all = new Utf8Strings(buf, starts, ends, extra);

  const table = hashTable(buf, extra, starts, ends, hashes, count);
  if (!table) return undefined; // a repeated key (or two lone surrogates)
  const mask = table.length - 1;
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
      if (hashes[k] === h && sameText(buf, extra, starts, ends, k, q, 0, q.length) && (!escaped.has(k) || escaped.get(k) === t)) return k;
      s = (s + 1) & mask;
    }
  };
  let tokens: string[] | undefined;
  return {
    count,
    ids: ids.subarray(0, count),
    bytes: buf,
    extra,
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
