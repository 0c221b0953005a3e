/**
 * safetensors reader: reads the header only, validates it the way the reference crate does, then
 * serves tensor bytes with positioned reads. Never loads a whole file.
 */
import { stat, type FileHandle } from "node:fs/promises";
import { MissingFile, openRegular } from "../files.js";
import { GgufyError, brief, jsonErrorDetail } from "../../errors.js";
import { ST_DTYPE_SIZE, isStDtype, type StDtype } from "./dtypes.js";

export const ST_MAX_HEADER = 100_000_000;

export interface StTensorInfo {
  readonly name: string;
  readonly dtype: StDtype;
  readonly shape: readonly number[];
  /** path of the file holding it */
  readonly file: string;
  /** absolute byte offset of the data in that file */
  readonly start: number;
  readonly byteLength: number;
}

export interface StHeader {
  tensors: Map<string, StTensorInfo>;
  metadata: Record<string, string>;
  /** tensor names in the order of their data offsets */
  order: string[];
  fileSize: number;
}

/** Parse and validate a header from its raw bytes (pure; used by the reader and the fuzz tests). */
export function parseSafetensorsHeader(file: string, headerBytes: Uint8Array, dataSize: number): StHeader {
  if (headerBytes.length === 0 || headerBytes[0] !== 0x7b) throw new GgufyError("E_ST_HEADER_START", "header does not start with '{'", { file });
  let json: unknown;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new GgufyError("E_ST_HEADER_JSON", "header is not valid UTF-8", { file });
  }
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GgufyError("E_ST_HEADER_JSON", `header is not valid JSON: ${jsonErrorDetail(text, e)}`, { file });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new GgufyError("E_ST_HEADER_JSON", "header is not a JSON object", { file });
  const tensors = new Map<string, StTensorInfo>();
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  const headerEnd = 8 + headerBytes.length;
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new GgufyError("E_ST_HEADER_JSON", "__metadata__ is not an object", { file });
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") throw new GgufyError("E_ST_HEADER_JSON", `__metadata__ value for '${k}' is not a string`, { file });
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new GgufyError("E_ST_HEADER_JSON", "entry is not an object", { file, tensor: name });
    const { dtype, shape, data_offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isStDtype(dtype)) throw new GgufyError("E_ST_DTYPE", `unknown dtype ${brief(dtype)}`, { file, tensor: name });
    if (!Array.isArray(shape)) throw new GgufyError("E_ST_SHAPE", "shape is not an array", { file, tensor: name });
    let n = 1;
    for (const d of shape) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) throw new GgufyError("E_ST_SHAPE", `shape ${brief(shape)} has a dimension that is not a non-negative integer`, { file, tensor: name });
      n *= d;
      if (!Number.isSafeInteger(n)) throw new GgufyError("E_ST_SHAPE", `shape ${brief(shape)} has more than 2^53 elements`, { file, tensor: name });
    }
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)) {
      throw new GgufyError("E_ST_OFFSETS", `data_offsets ${brief(data_offsets)} are not two non-negative integers`, { file, tensor: name });
    }
    const [begin, end] = data_offsets as [number, number];
    if (end < begin) throw new GgufyError("E_ST_OFFSETS", `data_offsets [${begin}, ${end}] end before they begin`, { file, tensor: name });
    const size = n * ST_DTYPE_SIZE[dtype];
    if (size !== end - begin) throw new GgufyError("E_ST_SIZE_MISMATCH", `shape ${brief(shape)} × ${dtype} is ${size} bytes but data_offsets span ${end - begin}`, { file, tensor: name });
    tensors.set(name, { name, dtype, shape: shape as number[], file, start: headerEnd + begin, byteLength: end - begin });
    spans.push({ name, begin, end });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const s of spans) {
    if (s.begin < cursor) throw new GgufyError("E_ST_OFFSETS", `data_offsets [${s.begin}, ${s.end}] overlap the previous tensor (ends at ${cursor})`, { file, tensor: s.name });
    if (s.begin > cursor) throw new GgufyError("E_ST_OFFSETS", `data_offsets [${s.begin}, ${s.end}] leave a gap after byte ${cursor}`, { file, tensor: s.name });
    cursor = s.end;
  }
  if (cursor !== dataSize) {
    const last = spans.length ? spans[spans.length - 1]!.name : undefined;
    if (cursor < dataSize) throw new GgufyError("E_ST_OFFSETS", `tensors cover ${cursor} data bytes but the file holds ${dataSize} (trailing bytes)`, { file, ...(last ? { tensor: last } : {}) });
    throw new GgufyError("E_ST_TRUNCATED", `tensors need ${cursor} data bytes but the file holds only ${dataSize}: it is truncated (an interrupted download?)`, { file, ...(last ? { tensor: last } : {}) });
  }
  return { tensors, metadata, order: spans.map((s) => s.name), fileSize: headerEnd + dataSize };
}

/** Reads the 8-byte length and the header of one file; validates against the file size. */
export async function readSafetensorsHeader(file: string): Promise<StHeader> {
  let fh: FileHandle | undefined;
  try {
    // a FIFO or device would block or never end: only regular files are read (checked on the descriptor)
    let size: number;
    try {
      ({ fh, size } = await openRegular(file, "E_IO"));
    } catch (e) {
      if (e instanceof MissingFile) throw new GgufyError("E_IO", "does not exist", { file });
      throw e;
    }
    if (size < 8) throw new GgufyError("E_ST_HEADER_LENGTH", `file is ${size} bytes, too short for the 8-byte header length`, { file });
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(ST_MAX_HEADER)) throw new GgufyError("E_ST_HEADER_TOO_LARGE", `header length ${n} exceeds the ${ST_MAX_HEADER}-byte cap`, { file });
    const hlen = Number(n);
    if (8 + hlen > size) throw new GgufyError("E_ST_HEADER_LENGTH", `header length ${hlen} runs past the end of the file (${size} bytes)`, { file });
    const header = Buffer.alloc(hlen);
    for (let done = 0; done < hlen; ) {
      const { bytesRead } = await fh.read(header, done, hlen - done, 8 + done);
      if (bytesRead === 0) throw new GgufyError("E_ST_HEADER_LENGTH", `file shrank while reading its header`, { file });
      done += bytesRead;
    }
    return parseSafetensorsHeader(file, header, size - 8 - hlen);
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    throw new GgufyError("E_IO", (e as Error).message, { file, cause: e });
  } finally {
    await fh?.close();
  }
}

/**
 * The header of a file read through `read` (a remote store's range reads): the same checks as
 * readSafetensorsHeader, against the size the store reports.
 */
export async function readSafetensorsHeaderVia(file: string, size: number, read: (position: number, length: number, into?: Uint8Array) => Promise<Uint8Array>): Promise<StHeader> {
  if (size < 8) throw new GgufyError("E_ST_HEADER_LENGTH", `file is ${size} bytes, too short for the 8-byte header length`, { file });
  const lenBuf = Buffer.from(await read(0, 8));
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(ST_MAX_HEADER)) throw new GgufyError("E_ST_HEADER_TOO_LARGE", `header length ${n} exceeds the ${ST_MAX_HEADER}-byte cap`, { file });
  const hlen = Number(n);
  if (8 + hlen > size) throw new GgufyError("E_ST_HEADER_LENGTH", `header length ${hlen} runs past the end of the file (${size} bytes)`, { file });
  const header = hlen === 0 ? new Uint8Array(0) : await read(8, hlen);
  return parseSafetensorsHeader(file, header, size - 8 - hlen);
}

/**
 * Bytes per read(2). Measured on the 2-core benchmark VM (bench/README.md, issue 19): copying 1.6 GB
 * through a user buffer in 1 MiB system calls took 1.9–2.7 s of system time, in 2 or 8 MiB calls
 * 4.8–4.9 s (dd shows the same: bs=1M 0.8 s, bs=8M 4.3 s); 256 KiB pays more per-call overhead.
 */
export const IO_PIECE = 1 << 20;

/** Positioned reads over a set of files, handles opened on demand and kept until close(). */
export class FileReaderPool {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  async read(file: string, position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    let h = this.handles.get(file);
    if (!h) {
      // a shard swapped for a FIFO after its header was read must not block: the same checked open
      h = openRegular(file, "E_IO").then((o) => o.fh, (e: unknown) => {
        throw e instanceof MissingFile ? new GgufyError("E_IO", "disappeared while converting", { file }) : e;
      });
      h.catch(() => undefined);
      this.handles.set(file, h);
    }
    const fh = await h;
    const buf = into ?? new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, Math.min(IO_PIECE, length - done), position + done);
      if (bytesRead === 0) throw new GgufyError("E_ST_TRUNCATED", `unexpected end of file at byte ${position + done}`, { file });
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}

export async function fileSize(file: string): Promise<number> {
  return (await stat(file)).size;
}
