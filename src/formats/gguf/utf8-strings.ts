/**
 * A list of strings kept as UTF-8 byte ranges of one buffer, for the two large string arrays of a GGUF
 * header: a BPE vocabulary's 151k tokens and merges. They come from vocab.json and merges.txt as bytes
 * and go into the header as bytes (writer.ts copies the ranges), so no JavaScript string is made for
 * them unless someone reads them (`get`, `toArray`). Every range holds valid UTF-8 (the files are
 * checked as a whole, strings added by the builder are encoded here).
 */

const EMPTY = new Uint8Array(0);

/** Entries summed per call of rangeSum (a small function called in chunks: see tokenizer/bpe.ts CHUNK). */
const SUM_CHUNK = 1024;

function rangeSum(starts: Int32Array, ends: Int32Array, i0: number, i1: number): number {
  let n = 0;
  for (let i = i0; i < i1; i++) n += ends[i]! - starts[i]!;
  return n;
}

export class Utf8Strings {
  private sum: number;

  /**
   * String i is the bytes from starts[i] to ends[i] of `bytes` followed by `extra` (a position p at or
   * past bytes.length is extra[p - bytes.length]; a string lies wholly in one of them): a file's bytes
   * and the few strings encoded beside it, without copying the file. `byteLength`, when given, must be
   * the sum of ends[i] - starts[i] (the builder keeps it as it goes); otherwise it is summed when first read.
   */
  constructor(readonly bytes: Uint8Array, readonly starts: Int32Array, readonly ends: Int32Array, readonly extra: Uint8Array = EMPTY, byteLength?: number) {
    if (starts.length !== ends.length) throw new Error("Utf8Strings: starts and ends differ in length");
    this.sum = byteLength ?? -1;
  }

  /**
   * the sum of the strings' byte lengths (startup: not summed in the constructor — a loop run once over
   * 151k entries went mostly unoptimised, and the vocab.json scanner's list never needs it)
   */
  get byteLength(): number {
    if (this.sum < 0) {
      let n = 0;
      for (let i = 0; i < this.starts.length; i += SUM_CHUNK) n += rangeSum(this.starts, this.ends, i, Math.min(this.starts.length, i + SUM_CHUNK));
      this.sum = n;
    }
    return this.sum;
  }

  get length(): number {
    return this.starts.length;
  }

  get(i: number): string {
    const a = this.starts[i]!;
    const b = this.ends[i]!;
    const bl = this.bytes.length;
    return a < bl ? asBuffer(this.bytes).toString("utf8", a, b) : asBuffer(this.extra).toString("utf8", a - bl, b - bl);
  }

  /** every string, decoded (a new array on each call) */
  toArray(): string[] {
    const out = new Array<string>(this.length);
    for (let i = 0; i < out.length; i++) out[i] = this.get(i);
    return out;
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Collects ranges of a base buffer and whole strings, in list order; strings are encoded into the
 * extra buffer (which starts as a copy of `extra`, so ranges into an earlier list's extra stay valid).
 */
export class Utf8StringsBuilder {
  private starts: Int32Array;
  private ends: Int32Array;
  private n = 0;
  /** the sum of the ranges' lengths so far (Utf8Strings.byteLength) */
  private sum = 0;
  private extra: Buffer;
  private extraLen: number;

  constructor(private readonly base: Uint8Array, capacity = 16, extra: Uint8Array = EMPTY) {
    this.starts = new Int32Array(Math.max(1, capacity));
    this.ends = new Int32Array(Math.max(1, capacity));
    this.extra = Buffer.allocUnsafe(Math.max(256, extra.length * 2));
    this.extra.set(extra);
    this.extraLen = extra.length;
  }

  get length(): number {
    return this.n;
  }

  private grow(): void {
    const s = new Int32Array(this.starts.length * 2);
    s.set(this.starts);
    const e = new Int32Array(this.ends.length * 2);
    e.set(this.ends);
    this.starts = s;
    this.ends = e;
  }

  /** positions a .. b of the base (or of its extra, past base.length) as the next string */
  range(a: number, b: number): void {
    if (this.n === this.starts.length) this.grow();
    this.starts[this.n] = a;
    this.ends[this.n] = b;
    this.n++;
    this.sum += b - a;
  }

  /** `s`, UTF-8 encoded (a lone surrogate as U+FFFD, as Buffer.write and the header writer do) */
  string(s: string): void {
    const need = this.extraLen + 3 * s.length;
    if (need > this.extra.length) {
      const nb = Buffer.allocUnsafe(Math.max(need, this.extra.length * 2));
      this.extra.copy(nb, 0, 0, this.extraLen);
      this.extra = nb;
    }
    const w = this.extra.write(s, this.extraLen, "utf8");
    const at = this.base.length + this.extraLen;
    this.extraLen += w;
    this.range(at, at + w);
  }

  /** b[0 .. n), valid UTF-8, as the next string */
  bytes(b: Uint8Array, n: number): void {
    if (this.extraLen + n > this.extra.length) {
      const nb = Buffer.allocUnsafe(Math.max(this.extraLen + n, this.extra.length * 2));
      this.extra.copy(nb, 0, 0, this.extraLen);
      this.extra = nb;
    }
    this.extra.set(b.subarray(0, n), this.extraLen);
    const at = this.base.length + this.extraLen;
    this.extraLen += n;
    this.range(at, at + n);
  }

  finish(): Utf8Strings {
    return new Utf8Strings(this.base, this.starts.subarray(0, this.n), this.ends.subarray(0, this.n), this.extra.subarray(0, this.extraLen), this.sum);
  }
}

/**
 * Give `obj` a property `key` whose value is `u.toArray()`, decoded on first read. Until then
 * `bytesKey` (not enumerable) holds `u`, for a writer that takes the bytes; the first read or an
 * assignment removes it, so that what is written is always what the property shows.
 */
export function defineLazyStrings(obj: object, key: string, bytesKey: string, u: Utf8Strings): void {
  const settle = (v: unknown): void => {
    delete (obj as Record<string, unknown>)[bytesKey];
    Object.defineProperty(obj, key, { value: v, writable: true, enumerable: true, configurable: true });
  };
  Object.defineProperty(obj, bytesKey, { value: u, writable: false, enumerable: false, configurable: true });
  Object.defineProperty(obj, key, {
    enumerable: true,
    configurable: true,
    get() {
      const v = u.toArray();
      settle(v);
      return v;
    },
    set(v: unknown) {
      settle(v);
    },
  });
}
