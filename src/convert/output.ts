/**
 * Output files that appear only when complete: bytes go to a temp file beside the target, which
 * is renamed over the target at commit and removed on abort. Writes are buffered.
 */
import { open, rename, unlink, access, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { GgufyError } from "../errors.js";
import type { ByteWriter } from "../formats/gguf/writer.js";

const BUFFER_BYTES = 8 << 20;

/** Opens the real file; tests inject a failing one to prove cleanup. */
export type FileOpener = (p: string) => Promise<Pick<FileHandle, "write" | "close" | "sync">>;

export class AtomicOutput implements ByteWriter {
  private buf = new Uint8Array(BUFFER_BYTES);
  private used = 0;
  private closed = false;
  bytesWritten = 0;

  private constructor(readonly target: string, readonly tempPath: string, private readonly fh: Pick<FileHandle, "write" | "close" | "sync">) {}

  static tempPathFor(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}.ggufy-tmp-${process.pid}`);
  }

  static async create(target: string, opts: { force?: boolean; opener?: FileOpener } = {}): Promise<AtomicOutput> {
    if (!opts.force && (await exists(target))) throw new GgufyError("E_OUTPUT_EXISTS", "output file already exists; pass --force to overwrite it", { file: target });
    const tmp = AtomicOutput.tempPathFor(target);
    let fh;
    try {
      fh = await (opts.opener ?? ((p: string) => open(p, "w")))(tmp);
    } catch (e) {
      throw new GgufyError("E_WRITE", `cannot create the output (${(e as Error).message})`, { file: target, cause: e });
    }
    return new AtomicOutput(target, tmp, fh);
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
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off);
        if (bytesWritten <= 0) throw new Error("write returned 0 bytes");
        off += bytesWritten;
      }
    } catch (e) {
      const msg = (e as NodeJS.ErrnoException).code === "ENOSPC" ? "the disk is full" : (e as Error).message;
      throw new GgufyError("E_WRITE", `writing failed after ${this.bytesWritten + off} bytes: ${msg}`, { file: this.target, cause: e });
    }
    this.bytesWritten += chunk.length;
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    await this.raw(this.buf.subarray(0, n));
  }

  /** Flush, sync, close and rename over the target. */
  async commit(): Promise<void> {
    await this.flush();
    try {
      await this.fh.sync();
    } catch {
      /* not every file system syncs; the rename is what makes the output appear */
    }
    await this.closeHandle();
    await rename(this.tempPath, this.target);
  }

  /** Close and remove the temp file; never throws. */
  async abort(): Promise<void> {
    await this.closeHandle().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
  }

  private async closeHandle(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
