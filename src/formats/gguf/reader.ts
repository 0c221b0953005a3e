/**
 * GGUF reader for inspect, verify and tests. It reads untrusted files: every length is checked
 * against caps and the file size before anything is allocated, tensor types and ranges are
 * validated, and nothing is read whole except the header.
 */
import { type FileHandle } from "node:fs/promises";
import { MissingFile, openRegular } from "../files.js";
import { GgufyError } from "../../errors.js";
import { GGUFValueType, GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, type GGUFScalar, type GGUFScalarType, type GGUFValue } from "./types.js";
import { TYPE_INFO, tensorBytes, type GGMLType } from "../../quant/ggml/types.js";
import { padTo } from "./writer.js";

export const MAX_STRING = 1 << 30;
export const MAX_ARRAY = 1 << 30;
export const MAX_KV = 1 << 20;
export const MAX_TENSORS = 1 << 20;

export interface GGUFTensorEntry {
  name: string;
  ne: number[];
  type: GGMLType;
  /** relative to the data section */
  offset: number;
  /** absolute file offset of the data */
  fileOffset: number;
  bytes: number;
}

export interface GGUFFile {
  path: string;
  version: number;
  kvs: Map<string, GGUFValue>;
  /** keys in file order */
  keys: string[];
  tensors: GGUFTensorEntry[];
  alignment: number;
  dataStart: number;
  fileSize: number;
}

const SCALAR_SIZE: Partial<Record<GGUFValueType, number>> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};

/** Sequential reader over a file handle with a sliding buffer; every read is bounds-checked. */
class Cursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly fh: FileHandle, readonly size: number, private readonly file: string) {}

  private fail(msg: string): never {
    throw new GgufyError("E_GGUF_FORMAT", msg, { file: this.file });
  }

  async need(n: number): Promise<Buffer> {
    if (n < 0 || this.pos + n > this.size) this.fail(`unexpected end of file: need ${n} bytes at offset ${this.pos}, file has ${this.size}`);
    const rel = this.pos - this.bufStart;
    if (rel < 0 || rel + n > this.buf.length) {
      const want = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
      const b = Buffer.alloc(want);
      let done = 0;
      while (done < want) {
        const { bytesRead } = await this.fh.read(b, done, want - done, this.pos + done);
        if (bytesRead === 0) this.fail(`file shrank while reading at ${this.pos + done}`);
        done += bytesRead;
      }
      this.buf = b;
      this.bufStart = this.pos;
    }
    const s = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(s, s + n);
  }
  async u32(): Promise<number> { return (await this.need(4)).readUInt32LE(0); }
  async i32(): Promise<number> { return (await this.need(4)).readInt32LE(0); }
  async u64(): Promise<bigint> { return (await this.need(8)).readBigUInt64LE(0); }
  async str(what: string): Promise<string> {
    const len = await this.u64();
    if (len > BigInt(MAX_STRING) || Number(len) > this.size - this.pos) this.fail(`${what}: string length ${len} exceeds the file or the ${MAX_STRING}-byte cap`);
    return (await this.need(Number(len))).toString("utf8");
  }
  /** A string's raw bytes (names are measured and compared as bytes: invalid UTF-8 decodes lossily). */
  async strBytes(what: string): Promise<Buffer> {
    const len = await this.u64();
    if (len > BigInt(MAX_STRING) || Number(len) > this.size - this.pos) this.fail(`${what}: string length ${len} exceeds the file or the ${MAX_STRING}-byte cap`);
    return Buffer.from(await this.need(Number(len)));
  }
  async scalar(t: GGUFScalarType, what: string): Promise<GGUFScalar> {
    switch (t) {
      case GGUFValueType.UINT8: return (await this.need(1)).readUInt8(0);
      case GGUFValueType.INT8: return (await this.need(1)).readInt8(0);
      case GGUFValueType.BOOL: return (await this.need(1)).readUInt8(0) !== 0;
      case GGUFValueType.UINT16: return (await this.need(2)).readUInt16LE(0);
      case GGUFValueType.INT16: return (await this.need(2)).readInt16LE(0);
      case GGUFValueType.UINT32: return (await this.need(4)).readUInt32LE(0);
      case GGUFValueType.INT32: return (await this.need(4)).readInt32LE(0);
      case GGUFValueType.FLOAT32: return (await this.need(4)).readFloatLE(0);
      case GGUFValueType.UINT64: return (await this.need(8)).readBigUInt64LE(0);
      case GGUFValueType.INT64: return (await this.need(8)).readBigInt64LE(0);
      case GGUFValueType.FLOAT64: return (await this.need(8)).readDoubleLE(0);
      case GGUFValueType.STRING: return this.str(what);
      default: this.fail(`${what}: invalid value type ${t}`);
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A numeric GGUF array from its little-endian bytes: a typed array over a copy (BOOL: booleans). */
function numericArray(t: GGUFValueType, bytes: Uint8Array, n: number): ArrayLike<GGUFScalar> {
  if (t === GGUFValueType.BOOL) return Array.from(bytes, (b) => b !== 0);
  const own = new ArrayBuffer(bytes.length);
  new Uint8Array(own).set(bytes);
  const v = new DataView(own);
  const fix = <T extends { [i: number]: number | bigint }>(a: T, get: (o: number) => number | bigint, size: number): T => {
    if (!LITTLE_ENDIAN) for (let i = 0; i < n; i++) a[i] = get(i * size);
    return a;
  };
  switch (t) {
    case GGUFValueType.UINT8: return new Uint8Array(own);
    case GGUFValueType.INT8: return new Int8Array(own);
    case GGUFValueType.UINT16: return fix(new Uint16Array(own), (o) => v.getUint16(o, true), 2);
    case GGUFValueType.INT16: return fix(new Int16Array(own), (o) => v.getInt16(o, true), 2);
    case GGUFValueType.UINT32: return fix(new Uint32Array(own), (o) => v.getUint32(o, true), 4);
    case GGUFValueType.INT32: return fix(new Int32Array(own), (o) => v.getInt32(o, true), 4);
    case GGUFValueType.FLOAT32: return fix(new Float32Array(own), (o) => v.getFloat32(o, true), 4);
    case GGUFValueType.UINT64: return fix(new BigUint64Array(own), (o) => v.getBigUint64(o, true), 8) as ArrayLike<bigint>;
    case GGUFValueType.INT64: return fix(new BigInt64Array(own), (o) => v.getBigInt64(o, true), 8) as ArrayLike<bigint>;
    case GGUFValueType.FLOAT64: return fix(new Float64Array(own), (o) => v.getFloat64(o, true), 8);
    default: throw new Error(`internal: not a numeric GGUF type ${t}`);
  }
}

function isScalarType(t: number): t is GGUFScalarType {
  return Number.isInteger(t) && t >= 0 && t <= 12 && t !== GGUFValueType.ARRAY;
}

/** Parse a GGUF file's header and tensor table. */
export async function readGguf(path: string): Promise<GGUFFile> {
  let fh: FileHandle;
  try {
    // a FIFO or device would block or never end: only regular files are read (checked on the descriptor)
    fh = (await openRegular(path, "E_IO")).fh;
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    if (e instanceof MissingFile) throw new GgufyError("E_IO", "does not exist", { file: path });
    throw new GgufyError("E_IO", (e as Error).message, { file: path, cause: e });
  }
  try {
    const size = (await fh.stat()).size;
    const c = new Cursor(fh, size, path);
    const fail = (msg: string, tensor?: string): never => {
      throw new GgufyError("E_GGUF_FORMAT", msg, { file: path, ...(tensor ? { tensor } : {}) });
    };
    const magic = await c.u32();
    if (magic !== GGUF_MAGIC) fail(`not a GGUF file (magic 0x${magic.toString(16)})`);
    const version = await c.u32();
    if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version}`);
    const nTensors = await c.u64();
    const nKv = await c.u64();
    if (nTensors > BigInt(MAX_TENSORS)) fail(`tensor count ${nTensors} is implausible`);
    if (nKv > BigInt(MAX_KV)) fail(`key/value count ${nKv} is implausible`);
    // smallest possible entries: a key/value is ≥ 13 bytes, a tensor info ≥ 32
    if (Number(nKv) * 13 + Number(nTensors) * 32 > size - c.pos) fail(`${nKv} key/value pairs and ${nTensors} tensor infos cannot fit in a ${size}-byte file`);
    const kvs = new Map<string, GGUFValue>();
    const keys: string[] = [];
    const rawKeys = new Set<string>();
    for (let i = 0; i < Number(nKv); i++) {
      const keyBytes = await c.strBytes(`key #${i}`);
      const key = keyBytes.toString("utf8");
      if (!key) fail(`key #${i} is empty`);
      // compared as bytes: two distinct invalid-UTF-8 keys decode to the same replacement characters
      if (rawKeys.has(keyBytes.toString("latin1"))) fail(`duplicate key '${key}'`);
      rawKeys.add(keyBytes.toString("latin1"));
      if (kvs.has(key)) fail(`key '${key}' is not valid UTF-8 and collides with another key once decoded`);
      const t = await c.u32();
      let value: GGUFValue;
      if (t === GGUFValueType.ARRAY) {
        const it = await c.u32();
        if (!isScalarType(it)) fail(`key '${key}': array element type ${it} is invalid (nested arrays are not loadable by llama.cpp)`);
        const n = await c.u64();
        const minSize = it === GGUFValueType.STRING ? 8 : SCALAR_SIZE[it as GGUFValueType]!;
        if (n > BigInt(MAX_ARRAY) || Number(n) * minSize > size - c.pos) fail(`key '${key}': array of ${n} elements does not fit in the file`);
        let arr: ArrayLike<GGUFScalar>;
        if (it === GGUFValueType.STRING) {
          const strs: string[] = new Array(Number(n));
          for (let j = 0; j < Number(n); j++) strs[j] = await c.str(`key '${key}'[${j}]`);
          arr = strs;
        } else {
          // numbers in one read, kept as a typed array: exactly the bytes the file holds, no per-element awaits
          arr = numericArray(it as GGUFValueType, await c.need(Number(n) * minSize), Number(n));
        }
        value = { type: GGUFValueType.ARRAY, itemType: it as GGUFScalarType, value: arr };
      } else if (isScalarType(t)) {
        value = { type: t, value: await c.scalar(t, `key '${key}'`) };
      } else {
        return fail(`key '${key}' has invalid type ${t}`);
      }
      kvs.set(key, value);
      keys.push(key);
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const al = kvs.get("general.alignment");
    if (al) {
      if (al.type !== GGUFValueType.UINT32) fail(`general.alignment must be UINT32`);
      const a = Number(al.value);
      if (a === 0 || (a & (a - 1)) !== 0) fail(`general.alignment ${a} is not a power of two`);
      alignment = a;
    }
    const tensors: GGUFTensorEntry[] = [];
    const names = new Set<string>();
    for (let i = 0; i < Number(nTensors); i++) {
      const nameBytes = await c.strBytes(`tensor #${i} name`);
      const name = nameBytes.toString("utf8");
      // measured and compared as the bytes in the file (llama.cpp GGML_MAX_NAME counts bytes)
      if (nameBytes.length >= 64) fail(`tensor name is ${nameBytes.length} bytes (max 63)`, name);
      const rawName = nameBytes.toString("latin1");
      if (names.has(rawName)) fail(`duplicate tensor name`, name);
      names.add(rawName);
      const nDims = await c.u32();
      if (nDims < 1 || nDims > 4) fail(`${nDims} dimensions (1–4 allowed)`, name);
      const ne: number[] = [];
      let elems = 1;
      for (let d = 0; d < nDims; d++) {
        const v = await c.u64();
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`dimension ${v} is too large`, name);
        ne.push(Number(v));
        elems *= Number(v);
        if (!Number.isSafeInteger(elems)) fail(`element count overflows`, name);
      }
      const type = await c.i32();
      const info = TYPE_INFO.get(type);
      if (!info) fail(`unknown ggml type id ${type}`, name);
      if (ne[0]! % info!.blockSize !== 0) fail(`row length ${ne[0]} is not a multiple of ${info!.name}'s block size ${info!.blockSize}`, name);
      const off = await c.u64();
      if (off > BigInt(Number.MAX_SAFE_INTEGER)) fail(`offset ${off} is too large`, name);
      const bytes = tensorBytes(type, ne);
      tensors.push({ name, ne, type, offset: Number(off), fileOffset: 0, bytes });
    }
    const dataStart = padTo(c.pos, alignment);
    let expected = 0;
    for (const t of tensors) {
      if (t.offset % alignment !== 0) fail(`offset ${t.offset} is not aligned to ${alignment}`, t.name);
      if (t.offset !== expected) fail(`offset ${t.offset}, expected ${expected} (llama.cpp requires tightly packed, padded tensors)`, t.name);
      t.fileOffset = dataStart + t.offset;
      if (t.fileOffset + t.bytes > size) fail(`data [${t.fileOffset}, ${t.fileOffset + t.bytes}) runs past the end of the file (${size} bytes)`, t.name);
      expected = t.offset + padTo(t.bytes, alignment);
    }
    return { path, version, kvs, keys, tensors, alignment, dataStart, fileSize: size };
  } finally {
    await fh.close();
  }
}

/** Read a tensor's raw bytes (or a byte range of them). */
export async function readGgufTensorBytes(file: GGUFFile, t: GGUFTensorEntry, offset = 0, length = t.bytes - offset): Promise<Uint8Array> {
  // the file may have been swapped for a FIFO since its header was read: the same checked open
  const fh = await openRegular(file.path, "E_IO").then((o) => o.fh, (e: unknown) => {
    throw e instanceof MissingFile ? new GgufyError("E_IO", "disappeared while being read", { file: file.path }) : e;
  });
  try {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(out, done, length - done, t.fileOffset + offset + done);
      if (bytesRead === 0) throw new GgufyError("E_GGUF_FORMAT", "unexpected end of file", { file: file.path, tensor: t.name });
      done += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** A scalar KV value, or undefined. */
export function kvValue(f: GGUFFile, key: string): GGUFScalar | ArrayLike<GGUFScalar> | undefined {
  return f.kvs.get(key)?.value;
}
