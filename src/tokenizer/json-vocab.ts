/**
 * A fast reader for the one large JSON shape a BPE tokenizer has: vocab.json, an object of token text →
 * integer id (151k entries for Qwen2). `JSON.parse` builds a dictionary object of it (and internalises
 * every key), which then has to be walked again; this scanner goes over the text once and gives the
 * texts and ids as arrays, in file order, with a lookup by text on a hash table of its own.
 *
 * It accepts only the plain form: `{`, then `"text": id` pairs separated by commas, `}`, JSON whitespace
 * around them; ids written as non-negative integers without sign, fraction, exponent or leading zero and
 * of at most 15 digits; texts without control characters (escapes are decoded by JSON.parse of that one
 * string). For anything else — another value type, a syntax error, a duplicated text (JSON.parse keeps
 * the last id; the scanner does not try to reproduce that) — it returns undefined and the caller parses
 * the file with JSON.parse as before, so every result and every error message is the one the general
 * path gives.
 */

export interface ScannedVocab {
  /** the texts, in file order */
  readonly tokens: readonly string[];
  /** ids[k] is the id of tokens[k] */
  readonly ids: ArrayLike<number>;
  /** the id of a text, or undefined when it is not a key */
  idOf(text: string): number | undefined;
}

// FNV-1a over UTF-16 code units (the hash table's, not a checksum), then MurmurHash3's fmix32: a multiply
// carries only upwards, so FNV's low bits — the table's index — need the final mixing
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function hashOf(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix(h);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The scanned object in `text` (the whole of it, surrounding whitespace allowed), or undefined (see above). */
export function scanVocabJson(text: string): ScannedVocab | undefined {
  const n = text.length;
  let i = 0;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x7b) return undefined; // {
  i++;
  // an entry takes at least 6 characters (`"":0,`), so n / 6 + 1 entries at most: filled in place
  const cap = Math.floor(n / 6) + 1;
  const tokens: string[] = [];
  const ids = new Float64Array(cap);
  const hashes = new Int32Array(cap);
  let count = 0;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) === 0x7d) {
    i++;
  } else {
    for (;;) {
      // "text"
      if (text.charCodeAt(i) !== QUOTE) return undefined;
      const a = ++i;
      let h = 0x811c9dc5;
      let escaped = false;
      for (;;) {
        if (i >= n) return undefined;
        const c = text.charCodeAt(i);
        if (c === QUOTE) break;
        if (c < 0x20) return undefined;
        if (c === BACKSLASH) {
          escaped = true;
          i += 2;
          continue;
        }
        h = Math.imul(h ^ c, 0x01000193);
        i++;
      }
      let tok: string;
      if (escaped) {
        try {
          tok = JSON.parse(text.slice(a - 1, i + 1)) as string;
        } catch {
          return undefined;
        }
        h = hashOf(tok);
      } else {
        tok = text.slice(a, i);
        h = mix(h);
      }
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== 0x3a) return undefined; // :
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      // id: 0 or [1-9][0-9]*, at most 15 digits (exact as a double), followed by a delimiter
      const d0 = i;
      let id = 0;
      for (;;) {
        const c = text.charCodeAt(i);
        if (!(c >= 0x30 && c <= 0x39)) break; // (NaN past the end breaks too)
        id = id * 10 + (c - 0x30);
        i++;
      }
      const digits = i - d0;
      if (digits === 0 || digits > 15 || (digits > 1 && text.charCodeAt(d0) === 0x30)) return undefined;
      tokens.push(tok);
      ids[count] = id;
      hashes[count] = h;
      count++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      const c = text.charCodeAt(i);
      i++;
      if (c === 0x2c) {
        while (i < n && isWs(text.charCodeAt(i))) i++;
        continue;
      }
      if (c === 0x7d) break;
      return undefined;
    }
  }
  while (i < n && isWs(text.charCodeAt(i))) i++;
  if (i !== n) return undefined;

  // open addressing, load ≤ 1/2: slot → index + 1 (0 = empty)
  let size = 16;
  while (size < tokens.length * 2) size *= 2;
  const mask = size - 1;
  const table = new Int32Array(size);
  for (let k = 0; k < tokens.length; k++) {
    let s = hashes[k]! & mask;
    for (;;) {
      const e = table[s]!;
      if (e === 0) {
        table[s] = k + 1;
        break;
      }
      if (hashes[e - 1] === hashes[k] && tokens[e - 1] === tokens[k]) return undefined; // a duplicated key
      s = (s + 1) & mask;
    }
  }
  const idOf = (t: string): number | undefined => {
    const h = hashOf(t);
    let s = h & mask;
    for (;;) {
      const e = table[s]!;
      if (e === 0) return undefined;
      if (hashes[e - 1] === h && tokens[e - 1] === t) return ids[e - 1];
      s = (s + 1) & mask;
    }
  };
  return { tokens, ids: ids.subarray(0, count), idOf };
}
