/**
 * Chunk encoders: inline (one thread) or a small pool of worker_threads. Our own pool rather than
 * a library: the job is one message shape with transferable buffers, results are awaited in
 * order by the pipeline, and a dependency would add more surface than these lines.
 *
 * Work that moves to the workers with each chunk: the NaN/Inf check, and for plain float tensors
 * the widening of the stored bytes (bf16/f16 → f32). Buffers travel by transfer, and come back:
 * the worker hands its input buffer back with the answer and the pipeline recycles written output
 * buffers, so a conversion reuses a handful of chunk buffers instead of allocating (and page-faulting
 * in) fresh ones for every chunk.
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { BufferPool, inlineEncoder, type ChunkEncoder } from "./pipeline.js";
import { rawCount, type EncodeResult, type FiniteMode, type RawChunk } from "./encode.js";
import type { Answer, Job } from "./worker.js";
import { rowBytes, type GGMLType } from "../quant/ggml/types.js";
import { GgufyError } from "../errors.js";

/** A worker's error as the main thread rethrows it: a GgufyError keeps its code, file and tensor. */
export function answerError(m: Answer): Error {
  if (m.errorCode !== undefined) return new GgufyError(m.errorCode, m.errorDetail ?? m.error ?? "", { ...(m.errorFile !== undefined ? { file: m.errorFile } : {}), ...(m.errorTensor !== undefined ? { tensor: m.errorTensor } : {}) });
  return new Error(m.error);
}

interface Pending {
  resolve: (r: Answer) => void;
  reject: (e: Error) => void;
}

export class WorkerPoolEncoder implements ChunkEncoder {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { job: Job; transfer: ArrayBuffer[] }[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | undefined;
  private closing = false;
  readonly pool = new BufferPool();

  constructor(readonly size: number) {
    const url = new URL("./worker.js", import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.on("message", (m: Answer) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.idle.push(w);
        this.pump();
        if (m.unused) this.pool.give(m.unused);
        if (!p) return;
        if (m.error !== undefined) p.reject(answerError(m));
        else p.resolve(m);
      });
      w.on("error", (e) => this.fail(e));
      // a worker that dies (out of memory, process.exit, a native crash) fails every job instead of leaving them pending
      w.on("exit", (code) => {
        if (!this.closing) this.fail(new Error(`an encoder worker thread exited (code ${code}) while converting`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private fail(e: Error): void {
    this.failed ??= e;
    this.queue.length = 0;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private submit(job: Omit<Job, "id" | "into">, input: Uint8Array, outBytes: number, more: ArrayBuffer[] = []): Promise<Answer> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const into = this.pool.take(outBytes);
    const full: Job = { ...job, id, ...(into ? { into } : {}) };
    const transfer = [input.buffer as ArrayBuffer, ...more.filter((b) => b !== input.buffer)];
    if (into) transfer.push(into.buffer as ArrayBuffer);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ job: full, transfer });
      this.pump();
    });
  }

  /** transfer needs a buffer of its own */
  private static own(rows: Float32Array): Float32Array {
    return rows.byteOffset === 0 && rows.buffer.byteLength === rows.byteLength ? rows : rows.slice();
  }

  async encode(type: GGMLType, rows: Float32Array, rowLength: number, qw?: Float32Array): Promise<Uint8Array> {
    const own = WorkerPoolEncoder.own(rows);
    const a = await this.submit({ type, rows: own, rowLength, ...(qw ? { qw } : {}) }, new Uint8Array(own.buffer), rowBytes(type, rowLength) * (rows.length / rowLength));
    return a.bytes!;
  }

  async encodeChecked(type: GGMLType, rows: Float32Array, rowLength: number, mode: FiniteMode, qw?: Float32Array): Promise<EncodeResult & { spare?: Uint8Array }> {
    const own = WorkerPoolEncoder.own(rows);
    return (await this.submit({ type, rows: own, rowLength, mode, ...(qw ? { qw } : {}) }, new Uint8Array(own.buffer), rowBytes(type, rowLength) * (rows.length / rowLength))) as EncodeResult;
  }

  async encodeRaw(type: GGMLType, raw: RawChunk, rowLength: number, mode: FiniteMode, qw?: Float32Array): Promise<EncodeResult & { spare?: Uint8Array }> {
    const n = rawCount(raw);
    return (await this.submit({ type, raw, rowLength, mode, ...(qw ? { qw } : {}) }, raw.bytes, rowBytes(type, rowLength) * (n / rowLength), raw.encoded?.transfer ? [...raw.encoded.transfer] : [])) as EncodeResult;
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const { job, transfer } = this.queue.shift()!;
      w.postMessage(job, transfer);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** threads ≤ 1 → inline; otherwise a pool of that many workers (default: every core). */
export async function makeEncoder(threads?: number): Promise<ChunkEncoder> {
  const n = threads ?? availableParallelism();
  if (n <= 1) return inlineEncoder;
  return new WorkerPoolEncoder(n);
}
