/**
 * Chunk encoders: inline (one thread) or a small pool of worker_threads. Our own pool rather than
 * a library: the job is one message shape with transferable buffers, results are awaited in
 * order by the pipeline, and a dependency would add more surface than these 60 lines.
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { inlineEncoder, type ChunkEncoder } from "./pipeline.js";
import type { GGMLType } from "../quant/ggml/types.js";

interface Pending {
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class WorkerPoolEncoder implements ChunkEncoder {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { id: number; type: GGMLType; rows: Float32Array; rowLength: number }[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly busy = new Map<Worker, number>();
  private nextId = 0;
  private failed: Error | undefined;

  constructor(readonly size: number) {
    const url = new URL("./worker.js", import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.on("message", (m: { id: number; bytes?: Uint8Array; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.busy.delete(w);
        this.idle.push(w);
        this.pump();
        if (!p) return;
        if (m.error !== undefined) p.reject(new Error(m.error));
        else p.resolve(m.bytes!);
      });
      w.on("error", (e) => this.fail(e));
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  encode(type: GGMLType, rows: Float32Array, rowLength: number): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed);
    // transfer needs a buffer of its own
    const own = rows.byteOffset === 0 && rows.buffer.byteLength === rows.byteLength ? rows : rows.slice();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ id, type, rows: own, rowLength });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.busy.set(w, job.id);
      w.postMessage(job, [job.rows.buffer as ArrayBuffer]);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** threads ≤ 1 → inline; otherwise a pool of that many workers (default: every core). */
export async function makeEncoder(threads?: number): Promise<ChunkEncoder> {
  const n = threads ?? availableParallelism();
  if (n <= 1) return inlineEncoder;
  return new WorkerPoolEncoder(n);
}
