/**
 * Output files that appear only when complete, and never anywhere else.
 *
 * - Bytes go to a temp file `.NAME.ggufy-tmp-PID` beside the target, created exclusively
 *   (O_CREAT|O_EXCL|O_NOFOLLOW: a file or link planted at that name is never opened or followed).
 * - At commit the temp file is hard-linked to the target: link(2) fails with EEXIST when anything (a
 *   file, a link, even a dangling one) is already there, so of two concurrent runs to the same output
 *   exactly one wins and the other gets E_OUTPUT_EXISTS. With --force it is renamed over the target
 *   instead (rename(2) replaces a link, it does not follow it). File systems without hard links fall
 *   back to check-then-rename.
 * - A folder, or a FIFO/device/socket, at the target is never replaced, even with --force.
 * - Temp files of dead runs (their pid no longer alive, owned by this user, regular files) are removed
 *   and reported; those of live runs, or that are not provably ours, are reported and left alone.
 * - The temp files this process is writing are registered (liveTemps) so that a forced exit on a signal
 *   removes them synchronously.
 * Writes are buffered.
 */
import fs from "node:fs";
import { link, lstat, open, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { GgufyError } from "../errors.js";
import type { ByteWriter } from "../formats/gguf/writer.js";
import { IO_PIECE } from "../formats/safetensors/reader.js";

const BUFFER_BYTES = 8 << 20;
/**
 * Every this many bytes written, an fsync starts in the background (not awaited by the writes): the
 * page cache is written back while the conversion goes on, so the fsync at commit has little left to
 * do (with no such syncs, the whole output waits at the end, as `cp` + `sync` does).
 */
const SYNC_EVERY = 256 << 20;

/** Opens the real file; tests inject a failing one to prove cleanup. */
export type FileOpener = (p: string) => Promise<Pick<FileHandle, "write" | "close" | "sync">>;

/** Temp files this process has created and not yet committed or removed. */
export const liveTemps = new Set<string>();

/** Remove every live temp file, synchronously (for a forced exit on a signal); never throws. */
export function removeLiveTempsSync(): void {
  for (const t of liveTemps) {
    try {
      fs.unlinkSync(t);
    } catch {
      /* already gone */
    }
  }
  liveTemps.clear();
}

const TEMP_MARK = ".ggufy-tmp-";
const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

/** Is process `pid` alive? (EPERM: it exists but belongs to someone else.) */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** link(2) is not available on this file system (FAT, some network mounts): check-then-rename instead. */
function noHardLinks(e: unknown): boolean {
  return ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV", "EMLINK", "EACCES"].includes((e as NodeJS.ErrnoException).code ?? "");
}

export interface CreateOptions {
  force?: boolean;
  opener?: FileOpener;
  /** stale temp files found and removed or left alone are reported here */
  onWarning?: (msg: string) => void;
}

export class AtomicOutput implements ByteWriter {
  private buf = new Uint8Array(BUFFER_BYTES);
  private used = 0;
  private closed = false;
  /** set once linked/renamed into place: [dev, ino] of the file, for a rollback */
  private placed: { dev: number; ino: number } | undefined;
  bytesWritten = 0;
  private unsynced = 0;
  private syncing: Promise<void> | undefined;

  private constructor(readonly target: string, readonly tempPath: string, private readonly fh: Pick<FileHandle, "write" | "close" | "sync">, private readonly force: boolean) {}

  static tempPathFor(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}${TEMP_MARK}${process.pid}`);
  }

  static async create(target: string, opts: CreateOptions = {}): Promise<AtomicOutput> {
    // what is there now, never following a link
    const st = await lstat(target).catch(() => undefined);
    if (st?.isDirectory()) throw new GgufyError("E_OUTPUT_EXISTS", "is an existing folder; ggufy never replaces a folder (even with --force)", { file: target });
    if (st && !st.isFile() && !st.isSymbolicLink()) throw new GgufyError("E_OUTPUT_EXISTS", "exists and is not a regular file (a FIFO, device or socket); it is not replaced (even with --force)", { file: target });
    if (st && !opts.force) throw new GgufyError("E_OUTPUT_EXISTS", "output file already exists; pass --force to overwrite it", { file: target });
    const tmp = AtomicOutput.tempPathFor(target);
    if (liveTemps.has(tmp)) throw new GgufyError("E_OUTPUT_EXISTS", "another conversion in this process is writing this output", { file: target });
    await cleanStaleTemps(target, opts.onWarning);
    if (liveTemps.has(tmp)) throw new GgufyError("E_OUTPUT_EXISTS", "another conversion in this process is writing this output", { file: target });
    liveTemps.add(tmp); // reserved before the first await that could let another conversion in
    let fh;
    try {
      fh = await (opts.opener ?? ((p: string) => open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o666)))(tmp);
    } catch (e) {
      liveTemps.delete(tmp);
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ELOOP") throw new GgufyError("E_WRITE", `cannot create the temp file ${tmp}: something that is not ours (a link or another file) is already there; remove it`, { file: target, cause: e });
      throw new GgufyError("E_WRITE", `cannot create the output (${(e as Error).message})`, { file: target, cause: e });
    }
    return new AtomicOutput(target, tmp, fh, opts.force === true);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length >= BUFFER_BYTES) {
      await this.flush();
      await this.raw(chunk);
      return;
    }
    if (this.used + chunk.length > BUFFER_BYTES) await this.flush();
    this.buf.set(chunk, this.used);
    this.used += chunk.length;
  }

  private async raw(chunk: Uint8Array): Promise<void> {
    let off = 0;
    try {
      while (off < chunk.length) {
        // in pieces of IO_PIECE: far cheaper per byte than one large write(2) here (reader.ts)
        const { bytesWritten } = await this.fh.write(chunk, off, Math.min(IO_PIECE, chunk.length - off));
        if (bytesWritten <= 0) throw new Error("write returned 0 bytes");
        off += bytesWritten;
      }
    } catch (e) {
      const msg = (e as NodeJS.ErrnoException).code === "ENOSPC" ? "the disk is full" : (e as Error).message;
      throw new GgufyError("E_WRITE", `writing failed after ${this.bytesWritten + off} bytes: ${msg}`, { file: this.target, cause: e });
    }
    this.bytesWritten += chunk.length;
    this.unsynced += chunk.length;
    if (this.unsynced >= SYNC_EVERY && !this.syncing && !this.closed) {
      this.unsynced = 0;
      // early write-back only: a failure here is not an error (commit's own fsync is the one that counts)
      this.syncing = Promise.resolve()
        .then(() => this.fh.sync())
        .catch(() => undefined)
        .finally(() => {
          this.syncing = undefined;
        });
    }
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    await this.raw(this.buf.subarray(0, n));
  }

  /** Flush, sync, close and move into place: link (refusing an existing target) or, with force, rename. */
  async commit(): Promise<void> {
    await this.flush();
    await this.syncing;
    try {
      await this.fh.sync();
    } catch {
      /* not every file system syncs; the rename is what makes the output appear */
    }
    await this.closeHandle();
    const tst = await lstat(this.tempPath);
    const exists = (): GgufyError => new GgufyError("E_OUTPUT_EXISTS", "the output appeared while converting (another run?); pass --force to overwrite it", { file: this.target });
    const failed = (e: unknown): GgufyError => new GgufyError("E_WRITE", `cannot move the finished file into place (${(e as Error).message})`, { file: this.target, cause: e });
    if (this.force) {
      // a folder that appeared since create() is not replaced: rename(2) of a file over it fails anyway
      await rename(this.tempPath, this.target).catch((e: unknown) => {
        throw (e as NodeJS.ErrnoException).code === "EISDIR" ? new GgufyError("E_OUTPUT_EXISTS", "is an existing folder; ggufy never replaces a folder", { file: this.target }) : failed(e);
      });
    } else {
      try {
        await link(this.tempPath, this.target);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") throw exists();
        if (!noHardLinks(e)) throw failed(e);
        if (await lstat(this.target).then(() => true, () => false)) throw exists();
        await rename(this.tempPath, this.target).catch((e2: unknown) => {
          throw failed(e2);
        });
      }
      await unlink(this.tempPath).catch(() => undefined);
    }
    liveTemps.delete(this.tempPath);
    this.placed = { dev: tst.dev, ino: tst.ino };
  }

  /**
   * Undo a commit of this run (a later part of the same output failed): the target is removed when it is
   * still the file this run placed there. A file replaced with --force cannot be brought back.
   */
  async uncommit(): Promise<void> {
    if (!this.placed) return;
    const st = await lstat(this.target).catch(() => undefined);
    if (st && st.dev === this.placed.dev && st.ino === this.placed.ino) await unlink(this.target).catch(() => undefined);
    this.placed = undefined;
  }

  /** Commit every output, in order; if one fails, those already placed are removed again. */
  static async commitAll(outputs: readonly AtomicOutput[]): Promise<void> {
    const done: AtomicOutput[] = [];
    try {
      for (const o of outputs) {
        await o.commit();
        done.push(o);
      }
    } catch (e) {
      for (const o of done) await o.uncommit();
      throw e;
    }
  }

  /** Close and remove the temp file; never throws. */
  async abort(): Promise<void> {
    await this.closeHandle().catch(() => undefined);
    if (liveTemps.has(this.tempPath)) await unlink(this.tempPath).catch(() => undefined);
    liveTemps.delete(this.tempPath);
  }

  private async closeHandle(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.syncing; // never close the descriptor under a running fsync
    await this.fh.close();
  }
}

/**
 * Temp files `.NAME.ggufy-tmp-PID` beside `target` left by runs that died (SIGKILL, power loss): removed
 * when provably ours and dead — a regular file (not a link), owned by this user, whose pid is not alive
 * (or is this process's pid without being one of its live temps: a reused pid) — and reported; others
 * (a live run's, another user's, links) are reported and left alone.
 */
export async function cleanStaleTemps(target: string, warn: ((msg: string) => void) | undefined): Promise<void> {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}${TEMP_MARK}`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // the folder is missing: creating the temp file will say so
  }
  const uid = process.getuid?.();
  for (const n of names) {
    if (!n.startsWith(prefix) || !/^\d+$/.test(n.slice(prefix.length))) continue;
    const p = path.join(dir, n);
    const pid = Number(n.slice(prefix.length));
    const alive = pid === process.pid ? liveTemps.has(p) : pidAlive(pid);
    const st = await lstat(p).catch(() => undefined);
    if (!st) continue;
    const ours = st.isFile() && (uid === undefined || st.uid === uid);
    if (!alive && ours) {
      const gone = await unlink(p).then(() => true, () => false);
      warn?.(gone ? `removed ${p}, the temp file of an interrupted run (pid ${pid}, no longer running)` : `cannot remove ${p}, the temp file of an interrupted run (pid ${pid})`);
    } else if (alive) {
      warn?.(`${p}: another run (pid ${pid}) seems to be writing this output`);
    } else {
      warn?.(`${p} looks like a ggufy temp file but is ${st.isSymbolicLink() ? "a link" : st.isFile() ? "another user's" : "not a regular file"}; left alone`);
    }
  }
}

/**
 * Refuse outputs that would overwrite a file the conversion reads — a shard, config.json, a tokenizer
 * file, the model card, anything in the model folder that is not a GGUF — even with --force (the check
 * compares device and inode, so links and hard links to an input are caught too).
 */
export async function refuseInputOverwrite(outputs: readonly string[], modelDir: string, inputFiles: readonly string[]): Promise<void> {
  const ids = new Map<string, string>();
  const add = async (f: string): Promise<void> => {
    const st = await stat(f).catch(() => undefined);
    if (st?.isFile()) ids.set(`${st.dev}:${st.ino}`, f);
  };
  for (const f of inputFiles) await add(f);
  let entries: string[] = [];
  try {
    entries = await readdir(modelDir);
  } catch {
    /* listed by the checkpoint reader already */
  }
  for (const e of entries) if (!e.toLowerCase().endsWith(".gguf")) await add(path.join(modelDir, e));
  for (const o of outputs) {
    const st = await stat(o).catch(() => undefined);
    const hit = st ? ids.get(`${st.dev}:${st.ino}`) : undefined;
    if (hit !== undefined) throw new GgufyError("E_USAGE", `the output would overwrite ${hit}, a file of the model being converted; choose another output (refused even with --force)`, { file: o });
  }
}
