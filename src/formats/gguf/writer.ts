/**
 * GGUF v3 writer. The header (KVs + tensor infos with running, padded offsets) is fully known
 * before any weight is produced, so it is encoded first; tensor data then streams in info order.
 * A small state machine enforces that order and each tensor's exact byte count.
 */
import { GGUFValueType, GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, type GGUFKV, type GGUFScalar, type GGUFScalarType } from "./types.js";
import { tensorBytes, type GGMLType } from "../../quant/ggml/types.js";
import type { Utf8Strings } from "./utf8-strings.js";

export interface GGUFTensorInfo {
  name: string;
  /** ggml order: ne[0] is the row length (numpy shape reversed) */
  ne: readonly number[];
  type: GGMLType;
}

/** Where the header's tensors lie, and how big it is: everything but its bytes. */
export interface HeaderLayout {
  /** header bytes, padding up to the data section included */
  size: number;
  /** offset of each tensor relative to the data section */
  offsets: number[];
  sizes: number[];
  /** total file size once all tensors (and their padding) are written */
  fileSize: number;
}

export interface EncodedHeader extends HeaderLayout {
  bytes: Uint8Array;
}

export const GGML_MAX_NAME = 64;

/**
 * What the header is written to: the bytes (ByteSink) or only their count (SizeSink). Both receive the
 * same calls from emitHeader, so the size a dry run prints and the bytes a conversion writes cannot
 * disagree.
 */
interface HeaderSink {
  len: number;
  u8(v: number): void;
  i8(v: number): void;
  u16(v: number): void;
  i16(v: number): void;
  u32(v: number): void;
  i32(v: number): void;
  f32(v: number): void;
  f64(v: number): void;
  u64(v: number | bigint): void;
  i64(v: number | bigint): void;
  /** u64 byte length, then the UTF-8 bytes */
  str(s: string): void;
  /** each string as str() writes it, from its UTF-8 bytes */
  strs(u: Utf8Strings): void;
  pad(align: number): void;
}

class ByteSink implements HeaderSink {
  private buf: Buffer;
  private view: DataView;
  len = 0;
  /** `capacity`: the expected size (the layout's, when known), so the buffer is not regrown */
  constructor(capacity = 1 << 16) {
    this.buf = Buffer.allocUnsafe(Math.max(16, capacity));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = Buffer.allocUnsafe(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.view = new DataView(nb.buffer, nb.byteOffset, nb.byteLength);
  }
  u8(v: number) { this.ensure(1); this.view.setUint8(this.len, v); this.len += 1; }
  i8(v: number) { this.ensure(1); this.view.setInt8(this.len, v); this.len += 1; }
  u16(v: number) { this.ensure(2); this.view.setUint16(this.len, v, true); this.len += 2; }
  i16(v: number) { this.ensure(2); this.view.setInt16(this.len, v, true); this.len += 2; }
  u32(v: number) { this.ensure(4); this.view.setUint32(this.len, v, true); this.len += 4; }
  i32(v: number) { this.ensure(4); this.view.setInt32(this.len, v, true); this.len += 4; }
  f32(v: number) { this.ensure(4); this.view.setFloat32(this.len, v, true); this.len += 4; }
  f64(v: number) { this.ensure(8); this.view.setFloat64(this.len, v, true); this.len += 8; }
  u64(v: number | bigint) {
    this.ensure(8);
    // a safe non-negative number as two u32 halves: no BigInt per string length (a vocabulary has 300k)
    if (typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)) {
      this.view.setUint32(this.len, v >>> 0, true);
      this.view.setUint32(this.len + 4, Math.floor(v / 4294967296), true);
    } else this.view.setBigUint64(this.len, BigInt(v), true);
    this.len += 8;
  }
  i64(v: number | bigint) { this.ensure(8); this.view.setBigInt64(this.len, BigInt(v), true); this.len += 8; }
  str(s: string) {
    // UTF-8 is at most 3 bytes per UTF-16 unit: written in place, then its length in front
    const L = s.length;
    this.ensure(8 + 3 * L);
    const at = this.len + 8;
    let n: number;
    if (L > 64) n = this.buf.write(s, at, "utf8");
    else {
      // short strings (tokens, merges): encoded here, a native call per string costs more than the string.
      // The same bytes as Buffer.write: a lone surrogate becomes U+FFFD (EF BF BD).
      const b = this.buf;
      let o = at;
      for (let i = 0; i < L; i++) {
        const c = s.charCodeAt(i);
        if (c < 0x80) b[o++] = c;
        else if (c < 0x800) {
          b[o++] = 0xc0 | (c >> 6);
          b[o++] = 0x80 | (c & 0x3f);
        } else if (c < 0xd800 || c > 0xdfff) {
          b[o++] = 0xe0 | (c >> 12);
          b[o++] = 0x80 | ((c >> 6) & 0x3f);
          b[o++] = 0x80 | (c & 0x3f);
        } else {
          const d = i + 1 < L ? s.charCodeAt(i + 1) : 0;
          if (c <= 0xdbff && (d & 0xfc00) === 0xdc00) {
            const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            b[o++] = 0xf0 | (cp >> 18);
            b[o++] = 0x80 | ((cp >> 12) & 0x3f);
            b[o++] = 0x80 | ((cp >> 6) & 0x3f);
            b[o++] = 0x80 | (cp & 0x3f);
            i++;
          } else {
            b[o++] = 0xef;
            b[o++] = 0xbf;
            b[o++] = 0xbd;
          }
        }
      }
      n = o - at;
    }
    this.view.setUint32(this.len, n, true);
    this.view.setUint32(this.len + 4, 0, true);
    this.len += 8 + n;
  }
  strs(u: Utf8Strings) {
    this.ensure(8 * u.length + u.byteLength);
    const buf = this.buf;
    const base = u.bytes;
    const bl = base.length;
    const extra = u.extra;
    const starts = u.starts;
    const ends = u.ends;
    let p = this.len;
    for (let i = 0; i < starts.length; i++) {
      let a = starts[i]!;
      let b = ends[i]!;
      const n = b - a;
      let src = base;
      if (a >= bl) {
        src = extra;
        a -= bl;
        b -= bl;
      }
      // the u64 length, little-endian (a string in a file under the 2 GiB read cap is below 2^31 bytes)
      buf[p] = n & 0xff;
      buf[p + 1] = (n >>> 8) & 0xff;
      buf[p + 2] = (n >>> 16) & 0xff;
      buf[p + 3] = n >>> 24;
      buf[p + 4] = 0;
      buf[p + 5] = 0;
      buf[p + 6] = 0;
      buf[p + 7] = 0;
      p += 8;
      if (n > 64) {
        buf.set(src.subarray(a, b), p);
        p += n;
      } else for (let j = a; j < b; j++) buf[p++] = src[j]!;
    }
    this.len = p;
  }
  pad(align: number) { const p = (align - (this.len % align)) % align; this.ensure(p); this.buf.fill(0, this.len, this.len + p); this.len += p; }
  /** the bytes: a view when the buffer is its own allocation (no 6 MB copy of a vocabulary's header), else a copy */
  result(): Uint8Array {
    if (this.buf.byteOffset === 0 && this.buf.buffer.byteLength === this.buf.length) return new Uint8Array(this.buf.buffer, 0, this.len);
    return new Uint8Array(this.buf.buffer.slice(this.buf.byteOffset, this.buf.byteOffset + this.len));
  }
}

/** Counts the bytes ByteSink would hold. */
class SizeSink implements HeaderSink {
  len = 0;
  u8() { this.len += 1; }
  i8() { this.len += 1; }
  u16() { this.len += 2; }
  i16() { this.len += 2; }
  u32() { this.len += 4; }
  i32() { this.len += 4; }
  f32() { this.len += 4; }
  f64() { this.len += 8; }
  u64() { this.len += 8; }
  i64() { this.len += 8; }
  str(s: string) { this.len += 8 + utf8Length(s); }
  strs(u: Utf8Strings) { this.len += 8 * u.length + u.byteLength; }
  pad(align: number) { this.len += (align - (this.len % align)) % align; }
}

/**
 * Buffer.byteLength(s, "utf8") without a native call per string (a vocabulary has 300k of them): 1, 2 or
 * 3 bytes per UTF-16 unit, 4 for a surrogate pair; a lone surrogate is written as U+FFFD, 3 bytes.
 */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // the pair: 2 units, 4 bytes
      i++;
    } else n += 2;
  }
  return n;
}

function num(v: GGUFScalar, key: string): number {
  if (typeof v !== "number" && typeof v !== "bigint") throw new TypeError(`GGUF key ${key}: expected a number, got ${typeof v}`);
  return Number(v);
}

function writeScalar(s: HeaderSink, t: GGUFScalarType, v: GGUFScalar, key: string): void {
  switch (t) {
    case GGUFValueType.UINT8: return s.u8(num(v, key));
    case GGUFValueType.INT8: return s.i8(num(v, key));
    case GGUFValueType.UINT16: return s.u16(num(v, key));
    case GGUFValueType.INT16: return s.i16(num(v, key));
    case GGUFValueType.UINT32: return s.u32(num(v, key));
    case GGUFValueType.INT32: return s.i32(num(v, key));
    case GGUFValueType.FLOAT32: return s.f32(num(v, key));
    case GGUFValueType.FLOAT64: return s.f64(num(v, key));
    case GGUFValueType.UINT64: return s.u64(typeof v === "bigint" ? v : BigInt(num(v, key)));
    case GGUFValueType.INT64: return s.i64(typeof v === "bigint" ? v : BigInt(num(v, key)));
    case GGUFValueType.BOOL:
      if (typeof v !== "boolean") throw new TypeError(`GGUF key ${key}: expected a boolean`);
      return s.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof v !== "string") throw new TypeError(`GGUF key ${key}: expected a string`);
      return s.str(v);
  }
}

export function padTo(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** The data alignment a file with these KVs must use: `general.alignment` when set (a UINT32), else 32. */
export function alignmentOf(kvs: readonly GGUFKV[]): number {
  const a = kvs.find((k) => k.key === "general.alignment");
  if (!a) return GGUF_DEFAULT_ALIGNMENT;
  const v = a.value.type === GGUFValueType.UINT32 ? Number(a.value.value) : NaN;
  if (!Number.isInteger(v) || v < 1 || (v & (v - 1)) !== 0) throw new Error(`GGUF: general.alignment must be a UINT32 power of two`);
  return v;
}

/**
 * Magic, counts, KVs, tensor infos and the padding up to the data section, into `s`, checking what
 * llama.cpp would refuse; returns the tensors' offsets and sizes and the data section's length.
 */
function emitHeader(s: HeaderSink, kvs: readonly GGUFKV[], tensors: readonly GGUFTensorInfo[], alignment: number): { offsets: number[]; sizes: number[]; data: number } {
  const seen = new Set<string>();
  for (const { key } of kvs) {
    if (!key) throw new Error("GGUF: empty key");
    if (seen.has(key)) throw new Error(`GGUF: duplicate key ${key}`);
    seen.add(key);
  }
  const names = new Set<string>();
  s.u32(GGUF_MAGIC);
  s.u32(GGUF_VERSION);
  s.u64(tensors.length);
  s.u64(kvs.length);
  for (const { key, value } of kvs) {
    s.str(key);
    s.u32(value.type);
    if (value.type === GGUFValueType.ARRAY) {
      if ((value.itemType as number) === GGUFValueType.ARRAY) throw new Error(`GGUF key ${key}: nested arrays are rejected by llama.cpp`);
      s.u32(value.itemType);
      // (a vocabulary's tokens and merges: their bytes copied as they came from the files)
      const utf8 = value.itemType === GGUFValueType.STRING ? value.utf8 : undefined;
      if (utf8) {
        s.u64(utf8.length);
        s.strs(utf8);
        continue;
      }
      s.u64(value.value.length);
      for (let i = 0; i < value.value.length; i++) writeScalar(s, value.itemType, value.value[i]!, key);
    } else writeScalar(s, value.type, value.value, key);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let off = 0;
  for (const t of tensors) {
    if (Buffer.byteLength(t.name, "utf8") >= GGML_MAX_NAME) throw new Error(`GGUF: tensor name '${t.name}' is ${Buffer.byteLength(t.name)} bytes; llama.cpp allows at most ${GGML_MAX_NAME - 1}`);
    if (names.has(t.name)) throw new Error(`GGUF: duplicate tensor name ${t.name}`);
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > 4) throw new Error(`GGUF: tensor ${t.name} has ${t.ne.length} dims`);
    const size = tensorBytes(t.type, t.ne);
    s.str(t.name);
    s.u32(t.ne.length);
    for (const d of t.ne) s.u64(d);
    s.u32(t.type);
    s.u64(off);
    offsets.push(off);
    sizes.push(size);
    off += padTo(size, alignment);
  }
  s.pad(alignment);
  return { offsets, sizes, data: off };
}

/** Encode magic, counts, KVs, tensor infos and the padding up to the data section. */
export function encodeGgufHeader(kvs: readonly GGUFKV[], tensors: readonly GGUFTensorInfo[], alignment = alignmentOf(kvs), sizeHint?: number): EncodedHeader {
  // (slack: str() reserves 3 bytes per UTF-16 unit before it knows the length)
  const s = new ByteSink(sizeHint === undefined ? undefined : sizeHint + (1 << 16));
  const { offsets, sizes, data } = emitHeader(s, kvs, tensors, alignment);
  const bytes = s.result();
  return { bytes, size: bytes.length, offsets, sizes, fileSize: bytes.length + data };
}

/**
 * The header's size and tensor offsets without its bytes (a dry run prints them; a 151k-token
 * vocabulary makes a 6 MB header): the same emitHeader calls, counted by a SizeSink — string lengths
 * by Buffer.byteLength — so the result equals encodeGgufHeader's, errors included.
 */
export function ggufHeaderLayout(kvs: readonly GGUFKV[], tensors: readonly GGUFTensorInfo[], alignment = alignmentOf(kvs)): HeaderLayout {
  const s = new SizeSink();
  const { offsets, sizes, data } = emitHeader(s, kvs, tensors, alignment);
  return { size: s.len, offsets, sizes, fileSize: s.len + data };
}

/**
 * A header as a plan holds it: the layout computed at once (ggufHeaderLayout), the bytes encoded on
 * first use of `bytes` and kept. The KVs and tensors must not change afterwards.
 */
export function plannedHeader(kvs: readonly GGUFKV[], tensors: readonly GGUFTensorInfo[], alignment = alignmentOf(kvs)): EncodedHeader {
  const layout = ggufHeaderLayout(kvs, tensors, alignment);
  let bytes: Uint8Array | undefined;
  return {
    ...layout,
    get bytes(): Uint8Array {
      if (!bytes) {
        bytes = encodeGgufHeader(kvs, tensors, alignment, layout.size).bytes;
        if (bytes.length !== layout.size) throw new Error(`internal: GGUF header is ${bytes.length} bytes, its layout said ${layout.size}`);
      }
      return bytes;
    },
  };
}

/** Where bytes go. The atomic-file output implements this; tests can inject failing sinks. */
export interface ByteWriter {
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * Streams one GGUF: header on start(), then each tensor's bytes in info order (any chunking),
 * padding inserted automatically. Throws if a tensor gets too many or too few bytes.
 */
export class GGUFStreamWriter {
  private state: "new" | "data" | "done" = "new";
  private current = 0;
  private writtenInCurrent = 0;
  readonly header: EncodedHeader;

  /** `header`: the encoding of exactly these kvs and tensors when the caller has it already (a plan does) */
  constructor(private readonly out: ByteWriter, kvs: readonly GGUFKV[], readonly tensors: readonly GGUFTensorInfo[], private readonly alignment = alignmentOf(kvs), header?: EncodedHeader) {
    this.header = header ?? encodeGgufHeader(kvs, tensors, alignment);
  }

  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("GGUFStreamWriter: start() called twice");
    await this.out.write(this.header.bytes);
    this.state = "data";
    await this.skipEmpty();
  }

  /** Append bytes of the current tensor. */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== "data") throw new Error(`GGUFStreamWriter: write() in state ${this.state}`);
    const size = this.header.sizes[this.current]!;
    if (this.writtenInCurrent + chunk.length > size) throw new Error(`GGUFStreamWriter: tensor ${this.tensors[this.current]!.name} would get ${this.writtenInCurrent + chunk.length} bytes, expected ${size}`);
    await this.out.write(chunk);
    this.writtenInCurrent += chunk.length;
    if (this.writtenInCurrent === size) {
      const pad = padTo(size, this.alignment) - size;
      if (pad) await this.out.write(new Uint8Array(pad));
      this.current++;
      this.writtenInCurrent = 0;
      await this.skipEmpty();
    }
  }

  /** Name of the tensor whose bytes are expected next. */
  get currentTensor(): string | undefined {
    return this.tensors[this.current]?.name;
  }

  private async skipEmpty(): Promise<void> {
    while (this.current < this.tensors.length && this.header.sizes[this.current] === 0) this.current++;
    if (this.current >= this.tensors.length) this.state = "done";
  }

  finish(): void {
    if (this.state !== "done") throw new Error(`GGUFStreamWriter: finished after ${this.current} of ${this.tensors.length} tensors`);
  }
}
