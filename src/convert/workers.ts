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
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { availableParallelism } from "node:os";
import { BufferPool, createInlineEncoder, type ChunkEncoder } from "./pipeline.js";
import type { StageTimes } from "./profile.js";
import { effectiveThreads } from "./limits.js";
import { rawCount, type EncodeResult, type FiniteMode, type RawChunk } from "./chunk.js";
import type { Answer, Job } from "./worker.js";
import { rowBytes, type GGMLType } from "../quant/ggml/types.js";
import { GgufyError } from "../errors.js";
import { SlotPool, slotServes, type Slot } from "./slots.js";

/** A worker's error as the main thread rethrows it: a GgufyError keeps its code, file and tensor. */
export function answerError(m: Answer): Error {
  if (m.errorCode !== undefined) return new GgufyError(m.errorCode, m.errorDetail ?? m.error ?? "", { ...(m.errorFile !== undefined ? { file: m.errorFile } : {}), ...(m.errorTensor !== undefined ? { tensor: m.errorTensor } : {}) });
  return new Error(m.error);
}

interface Pending {
  /** the float slot the job's input is in (slots.ts) */
  slot?: Slot;
  resolve: (r: Answer) => void;
  reject: (e: Error) => void;
  /** profiling: when the job was submitted and posted, and its input size */
  submitted?: number;
  posted?: number;
  bytes?: number;
}

export class WorkerPoolEncoder implements ChunkEncoder {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { job: Job; transfer: ArrayBuffer[]; p?: Pending }[] = [];
  /** the float slots each worker has been sent (a slot's memory travels once per worker) */
  private readonly knows = new Map<Worker, Set<number>>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | undefined;
  private closing = false;
  /** workers let go by shrink(): their exit is expected */
  private readonly retired = new Set<Worker>();
  /** chunk buffers: shared with the workers (no transfer, no new external memory per message); two per chunk in flight */
  readonly pool = new BufferPool(16, true);
  /** float slots: the chunks in flight (2 × threads + 2, convert.ts), the one being written and one spare */
  readonly slots: SlotPool;

  /** `profile`: per-stage timers (GGUFY_PROFILE) the workers' job times and the messaging go to */
  constructor(readonly size: number, private readonly profile?: StageTimes) {
    this.slots = new SlotPool(2 * size + 4);
    this.pool.slots = this.slots;
    const url = new URL("./worker.js", import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.on("message", (m: Answer) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (this.profile && p?.posted !== undefined) {
          const t = m.times;
          const work = t ? t.decode + t.encode + t.scan : 0;
          if (t) this.profile.addJob(t, p.bytes ?? 0);
          this.profile.add("pool: job queued for an idle worker", p.posted - p.submitted!);
          this.profile.add("pool: messaging (round trip − compute)", performance.now() - p.posted - work);
        }
        this.idle.push(w);
        this.pump();
        if (m.unused) this.pool.give(m.unused);
        if (!p) return;
        if (p.slot) {
          // the output is in the slot (this thread's view of it, so that pool.give finds the slot),
          // or elsewhere: then the slot's input is no longer needed
          if (m.inSlot && m.bytes) m.bytes = new Uint8Array(p.slot.u8.buffer, m.bytes.byteOffset, m.bytes.length);
          else this.slots.release(p.slot);
        }
        if (m.error !== undefined) p.reject(answerError(m));
        else p.resolve(m);
      });
      w.on("error", (e) => this.fail(e));
      // a worker that dies (out of memory, process.exit, a native crash) fails every job instead of leaving them pending
      w.on("exit", (code) => {
        if (!this.closing && !this.retired.has(w)) this.fail(new Error(`an encoder worker thread exited (code ${code}) while converting`));
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

  private submit(job: Omit<Job, "id" | "into">, input: Uint8Array, outBytes: number, more: ArrayBuffer[] = [], slot?: Slot): Promise<Answer> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    // a slot job's output goes to the slot (the worker allocates only if it falls back)
    const into = slot ? undefined : this.pool.takeOrAlloc(outBytes);
    const full: Job = { ...job, id, ...(into ? { into } : {}), ...(slot ? { slot: slot.id } : {}), ...(this.profile ? { profile: true } : {}) };
    // shared buffers travel without a transfer (listing one would be a DataCloneError)
    const transfer = [input.buffer, ...more.filter((b) => b !== input.buffer), ...(into ? [into.buffer] : [])].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, ...(slot ? { slot } : {}), ...(this.profile ? { submitted: performance.now(), bytes: input.length } : {}) };
      this.pending.set(id, p);
      this.queue.push({ job: full, transfer, p });
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

  preload(): void {
    for (const w of this.workers) w.postMessage({ preload: true });
  }

  readTarget(type: GGMLType, dtype: "f32" | "f16" | "bf16", n: number): Uint8Array | undefined {
    return slotServes(type, dtype, n) ? this.slots.take()?.u8 : undefined;
  }

  async encodeRaw(type: GGMLType, raw: RawChunk, rowLength: number, mode: FiniteMode, qw?: Float32Array): Promise<EncodeResult & { spare?: Uint8Array }> {
    const n = rawCount(raw);
    const slot = raw.encoded ? undefined : this.slots.of(raw.bytes);
    if (slot && (raw.bytes.byteOffset !== 0 || !slotServes(type, raw.dtype, n))) throw new Error("internal: a float slot's chunk is not at its start or does not fit");
    return (await this.submit({ type, raw, rowLength, mode, ...(qw ? { qw } : {}) }, raw.bytes, rowBytes(type, rowLength) * (n / rowLength), raw.encoded?.transfer ? [...raw.encoded.transfer] : [], slot)) as EncodeResult;
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const { job, transfer, p } = this.queue.shift()!;
      if (p && this.profile) p.posted = performance.now();
      if (p?.slot) {
        let known = this.knows.get(w);
        if (!known) this.knows.set(w, (known = new Set()));
        if (!known.has(p.slot.id)) {
          known.add(p.slot.id);
          job.slotMemory = p.slot.memory;
        } else delete job.slotMemory;
      }
      w.postMessage(job, transfer);
    }
  }

  /** Keep `n` workers (n ≥ 1), terminating the others; only before the first job. */
  async shrink(n: number): Promise<void> {
    if (this.nextId > 0) throw new Error("internal: WorkerPoolEncoder.shrink after jobs were submitted");
    const extra = this.workers.splice(Math.max(1, n));
    for (const w of extra) {
      this.retired.add(w);
      this.idle.splice(this.idle.indexOf(w), 1);
    }
    await Promise.all(extra.map((w) => w.terminate()));
  }

  async close(): Promise<void> {
    this.closing = true;
    this.profile?.add("pool: chunk buffers allocated", 0, this.pool.allocatedBytes, this.pool.allocations);
    if (this.profile) for (const w of this.workers) {
      const e = w.performance.eventLoopUtilization();
      this.profile.workerElu.push({ busyMs: e.active, idleMs: e.idle });
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Worker threads started before the plan is known, so that they load their modules while the main
 * thread reads the vocabulary: `settle(threads)` gives the encoder for the thread count the plan
 * decided (fewer workers are terminated; one thread: the inline encoder), `close()` ends them when
 * the plan fails. Undefined when one thread is asked for (or the request is invalid: the caller's
 * own effectiveThreads reports it).
 */
/** below this much safetensors data a conversion is a few chunks: workers are started only if the plan wants them */
const PRESTART_MIN_BYTES = 64 << 20;

/** Bytes of the *.safetensors files directly in `dir` (0 when it cannot be listed: a model reference …). */
async function weightBytes(dir: string): Promise<number> {
  try {
    const names = (await readdir(dir)).filter((f) => f.endsWith(".safetensors"));
    const sizes = await Promise.all(names.map((f) => stat(path.join(dir, f)).then((s) => (s.isFile() ? s.size : 0), () => 0)));
    return sizes.reduce((a, b) => a + b, 0);
  } catch {
    return 0;
  }
}

export interface PrestartedEncoder {
  settle(threads: number): Promise<ChunkEncoder>;
  close(): Promise<void>;
}

export async function prestartEncoder(dir: string, requested: number | undefined, profile?: StageTimes): Promise<PrestartedEncoder | undefined> {
  let n: number;
  try {
    n = effectiveThreads(requested);
  } catch {
    return undefined;
  }
  if (n <= 1 || (await weightBytes(dir)) < PRESTART_MIN_BYTES) return undefined;
  const pool = new WorkerPoolEncoder(n, profile);
  return {
    settle: async (threads) => {
      if (threads <= 1) {
        await pool.close();
        return createInlineEncoder(profile);
      }
      await pool.shrink(threads);
      return pool;
    },
    close: () => pool.close(),
  };
}

/** threads ≤ 1 → inline; otherwise a pool of that many workers (default: every core). */
export async function makeEncoder(threads?: number, profile?: StageTimes): Promise<ChunkEncoder> {
  const n = threads ?? availableParallelism();
  if (n <= 1) return createInlineEncoder(profile);
  return new WorkerPoolEncoder(n, profile);
}
