/**
 * Opening input files from strangers without blocking or ballooning.
 *
 * A checkpoint folder may hold a FIFO (open() for reading blocks until a writer appears, forever),
 * a device (/dev/zero never ends), a socket, or a link to any of these. Every input is therefore
 * opened with O_NONBLOCK — which makes open() of a FIFO return at once instead of waiting for a
 * writer — and then fstat()ed on the descriptor it got: only a regular file (possibly reached through
 * a link) is read. Checking the descriptor, not the name, leaves no window between the check and the
 * open. O_NONBLOCK has no effect on reads of regular files.
 *
 * Small files (config, tokenizer, index, model card) are read with a size cap, so a 600 MB
 * "config.json" is refused by its size before a byte of it is read.
 */
import fs from "node:fs";
import path from "node:path";
import { open, type FileHandle } from "node:fs/promises";
import { GgufyError, type ErrorCode } from "../errors.js";

const { O_RDONLY, O_NONBLOCK } = fs.constants;
/** O_NONBLOCK is POSIX; where it is missing (Windows) the flag is 0 and FIFOs do not exist anyway */
const READ_FLAGS = O_RDONLY | (O_NONBLOCK ?? 0);

/** The file is missing (or a dangling link): callers phrase that their own way. */
export class MissingFile extends Error {
  constructor(readonly file: string, readonly errno: string | undefined) {
    super(`${file}: missing`);
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return "a folder";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** A message for a file that is there but not readable as a regular file. */
function notRegular(st: fs.Stats): string {
  const k = kindOf(st);
  return k === "not a regular file" ? "is not a regular file" : `is ${k}, not a regular file`;
}

export interface OpenedFile {
  fh: FileHandle;
  size: number;
}

/**
 * Open `file` for reading when it is a regular file (links followed), without ever blocking in open().
 * Missing → MissingFile; anything else that is not a regular file, or unreadable → GgufyError(code).
 */
export async function openRegular(file: string, code: ErrorCode = "E_IO"): Promise<OpenedFile> {
  let fh: FileHandle;
  try {
    fh = await open(file, READ_FLAGS);
  } catch (e) {
    const c = (e as NodeJS.ErrnoException).code;
    if (c === "ENOENT" || c === "ENOTDIR") throw new MissingFile(file, c);
    if (c === "ENXIO") throw new GgufyError(code, "is a socket or a device without a reader, not a regular file", { file });
    if (c === "EISDIR") throw new GgufyError(code, "is a folder, not a regular file", { file });
    throw new GgufyError(code, `cannot open: ${(e as Error).message}`, { file, cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new GgufyError(code, notRegular(st), { file });
    return { fh, size: st.size };
  } catch (e) {
    await fh.close().catch(() => undefined);
    if (e instanceof GgufyError) throw e;
    throw new GgufyError(code, `cannot read: ${(e as Error).message}`, { file, cause: e });
  }
}

/** Read all of an opened file of at most `cap` bytes (it may not grow past the cap while being read). */
async function readCapped(fh: FileHandle, size: number, cap: number, file: string, code: ErrorCode, what: string): Promise<Buffer> {
  if (size > cap) throw new GgufyError(code, `${what} is ${size} bytes, over the ${cap}-byte cap`, { file });
  const buf = Buffer.alloc(size);
  let done = 0;
  while (done < size) {
    const { bytesRead } = await fh.read(buf, done, size - done, done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  // one byte past the announced size: a file that grows is noticed, never read without bound
  if ((await fh.read(Buffer.alloc(1), 0, 1, size)).bytesRead !== 0) throw new GgufyError(code, `${what} grew while being read (over ${size} bytes)`, { file });
  return buf.subarray(0, done);
}

/**
 * Is `real` (a resolved path) inside the resolved folder `realDir`, or in the `blobs/` of the Hugging Face
 * cache repository whose snapshot `realDir` is (the hub keeps files as links from
 * models--org--name/snapshots/<rev>/ into models--org--name/blobs/)?
 */
export function insideFolder(real: string, realDir: string): boolean {
  if (real === realDir || real.startsWith(realDir + path.sep)) return true;
  let d = realDir;
  while (path.basename(path.dirname(d)) !== "snapshots") {
    const up = path.dirname(d);
    if (up === d) return false;
    d = up;
  }
  const repo = path.dirname(path.dirname(d));
  return path.basename(repo).startsWith("models--") && path.dirname(real) === path.join(repo, "blobs");
}

function checkConfined(file: string, code: ErrorCode): void {
  let real: string;
  let realDir: string;
  try {
    real = fs.realpathSync(file);
    realDir = fs.realpathSync(path.dirname(file));
  } catch {
    return; // missing or dangling: the open reports it
  }
  if (!insideFolder(real, realDir)) throw new GgufyError(code, "links outside the model folder; only files inside it (or in its Hugging Face cache blobs) are read", { file });
}

export interface SmallFileOptions {
  /** the file must resolve (through links) inside its own folder — the model folder (default false) */
  confine?: boolean;
  /** the error code for everything but a missing file (default E_IO) */
  code?: ErrorCode;
  /** size cap in bytes */
  cap: number;
  /** how the file is named in messages (default "the file") */
  what?: string;
}

/** The bytes of a small regular file; MissingFile when absent. */
export async function readSmallFile(file: string, o: SmallFileOptions): Promise<Buffer> {
  const code = o.code ?? "E_IO";
  if (o.confine) checkConfined(file, code);
  const { fh, size } = await openRegular(file, code);
  try {
    return await readCapped(fh, size, o.cap, file, code, o.what ?? "the file");
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    throw new GgufyError(code, `cannot read: ${(e as Error).message}`, { file, cause: e });
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Synchronous readSmallFile (the tokenizer loaders are synchronous). */
export function readSmallFileSync(file: string, o: SmallFileOptions): Buffer {
  const code = o.code ?? "E_IO";
  const what = o.what ?? "the file";
  if (o.confine) checkConfined(file, code);
  let fd: number;
  try {
    fd = fs.openSync(file, READ_FLAGS);
  } catch (e) {
    const c = (e as NodeJS.ErrnoException).code;
    if (c === "ENOENT" || c === "ENOTDIR") throw new MissingFile(file, c);
    if (c === "ENXIO") throw new GgufyError(code, "is a socket or a device without a reader, not a regular file", { file });
    if (c === "EISDIR") throw new GgufyError(code, "is a folder, not a regular file", { file });
    throw new GgufyError(code, `cannot open: ${(e as Error).message}`, { file, cause: e });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new GgufyError(code, notRegular(st), { file });
    if (st.size > o.cap) throw new GgufyError(code, `${what} is ${st.size} bytes, over the ${o.cap}-byte cap`, { file });
    const buf = Buffer.alloc(st.size);
    let done = 0;
    while (done < st.size) {
      const n = fs.readSync(fd, buf, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
    if (fs.readSync(fd, Buffer.alloc(1), 0, 1, st.size) !== 0) throw new GgufyError(code, `${what} grew while being read (over ${st.size} bytes)`, { file });
    return buf.subarray(0, done);
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    throw new GgufyError(code, `cannot read: ${(e as Error).message}`, { file, cause: e });
  } finally {
    fs.closeSync(fd);
  }
}

/** Caps for the small files of a checkpoint (real ones are far smaller; see each use). */
export const SMALL_FILE_CAPS = {
  /** config.json: a few kB; generous for id2label tables and vision sub-configs */
  config: 16 << 20,
  /** tokenizer.json of 250k-token vocabularies is ~20 MB; tokenizer.model ~5 MB */
  tokenizer: 256 << 20,
} as const;
