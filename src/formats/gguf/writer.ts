/**
 * GGUF v3 writer. The header (KVs + tensor infos with running, padded offsets) is fully known
 * before any weight is produced, so it is encoded first; tensor data then streams in info order.
 * A small state machine enforces that order and each tensor's exact byte count.
 */
import { GGUFValueType, GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, type GGUFKV, type GGUFScalar, type GGUFScalarType } from "./types.js";
import { tensorBytes, type GGMLType } from "../../quant/ggml/types.js";

export interface GGUFTensorInfo {
  name: string;
  /** ggml order: ne[0] is the row length (numpy shape reversed) */
  ne: readonly number[];
  type: GGMLType;
}

export interface EncodedHeader {
  bytes: Uint8Array;
  /** offset of each tensor relative to the data section */
  offsets: number[];
  sizes: number[];
  /** total file size once all tensors (and their padding) are written */
  fileSize: number;
}

export const GGML_MAX_NAME = 64;

class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }
  u8(v: number) { this.ensure(1); this.view.setUint8(this.len, v); this.len += 1; }
  i8(v: number) { this.ensure(1); this.view.setInt8(this.len, v); this.len += 1; }
  u16(v: number) { this.ensure(2); this.view.setUint16(this.len, v, true); this.len += 2; }
  i16(v: number) { this.ensure(2); this.view.setInt16(this.len, v, true); this.len += 2; }
  u32(v: number) { this.ensure(4); this.view.setUint32(this.len, v, true); this.len += 4; }
  i32(v: number) { this.ensure(4); this.view.setInt32(this.len, v, true); this.len += 4; }
  f32(v: number) { this.ensure(4); this.view.setFloat32(this.len, v, true); this.len += 4; }
  f64(v: number) { this.ensure(8); this.view.setFloat64(this.len, v, true); this.len += 8; }
  u64(v: number | bigint) { this.ensure(8); this.view.setBigUint64(this.len, BigInt(v), true); this.len += 8; }
  i64(v: number | bigint) { this.ensure(8); this.view.setBigInt64(this.len, BigInt(v), true); this.len += 8; }
  bytes(b: Uint8Array) { this.ensure(b.length); this.buf.set(b, this.len); this.len += b.length; }
  str(s: string) { const b = Buffer.from(s, "utf8"); this.u64(b.length); this.bytes(b); }
  pad(align: number) { const p = (align - (this.len % align)) % align; this.ensure(p); this.buf.fill(0, this.len, this.len + p); this.len += p; }
  result(): Uint8Array { return this.buf.slice(0, this.len); }
}

function writeScalar(s: ByteSink, t: GGUFScalarType, v: GGUFScalar, key: string): void {
  const num = (): number => {
    if (typeof v !== "number" && typeof v !== "bigint") throw new TypeError(`GGUF key ${key}: expected a number, got ${typeof v}`);
    return Number(v);
  };
  switch (t) {
    case GGUFValueType.UINT8: return s.u8(num());
    case GGUFValueType.INT8: return s.i8(num());
    case GGUFValueType.UINT16: return s.u16(num());
    case GGUFValueType.INT16: return s.i16(num());
    case GGUFValueType.UINT32: return s.u32(num());
    case GGUFValueType.INT32: return s.i32(num());
    case GGUFValueType.FLOAT32: return s.f32(num());
    case GGUFValueType.FLOAT64: return s.f64(num());
    case GGUFValueType.UINT64: return s.u64(typeof v === "bigint" ? v : BigInt(num()));
    case GGUFValueType.INT64: return s.i64(typeof v === "bigint" ? v : BigInt(num()));
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

/** Encode magic, counts, KVs, tensor infos and the padding up to the data section. */
export function encodeGgufHeader(kvs: readonly GGUFKV[], tensors: readonly GGUFTensorInfo[], alignment = alignmentOf(kvs)): EncodedHeader {
  const seen = new Set<string>();
  for (const { key } of kvs) {
    if (!key) throw new Error("GGUF: empty key");
    if (seen.has(key)) throw new Error(`GGUF: duplicate key ${key}`);
    seen.add(key);
  }
  const names = new Set<string>();
  const s = new ByteSink();
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
  const bytes = s.result();
  return { bytes, offsets, sizes, fileSize: bytes.length + off };
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
