/**
 * Executes a plan: each file's header first, then every tensor in order, in row chunks:
 * decode → (transform, in the model's read) → check → quantize → write. Reads run one chunk
 * ahead of encoding; memory is a few chunks whatever the model size. Outputs are committed
 * (renamed into place) only when every file is complete; on any error or abort all temp files go.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { alignmentOf, GGUFStreamWriter } from "../formats/gguf/writer.js";
import { rowBytes } from "../quant/ggml/types.js";
import { AtomicOutput, type FileOpener } from "./output.js";
import { checkFinite, firstNonFinite, lazyEncode, nonFiniteError, rawCount, type EncodeResult, type FiniteMode, type RawChunk } from "./chunk.js";
import { newJobTimes, type StageTimes } from "./profile.js";
import type { PlannedFile, PlannedTensor } from "./plan.js";
import { importanceForRows } from "../quant/imatrix.js";
import { diskUsage, statfsFree, type DiskUsage } from "./disk.js";
import type { SlotPool } from "./slots.js";

export { diskUsage, type DiskUsage };

export interface ProgressEvent {
  file: string;
  tensor: string;
  tensorIndex: number;
  tensorCount: number;
  /** output bytes written so far over all files, and the total planned */
  bytesDone: number;
  bytesTotal: number;
}

/** Encodes chunks; the default runs in this thread, the worker pool implements the same shape. */
export interface ChunkEncoder {
  /** `qw`: the importance vector of the rows (--imatrix, rowLength floats) for the codec's weighted path */
  encode(type: PlannedTensor["type"], rows: Float32Array, rowLength: number, qw?: Float32Array): Promise<Uint8Array>;
  /** check (per mode) and encode float32 rows where the encoding runs; `spare` is a buffer free for reuse */
  encodeChecked?(type: PlannedTensor["type"], rows: Float32Array, rowLength: number, mode: FiniteMode, qw?: Float32Array): Promise<EncodeResult & { spare?: Uint8Array }>;
  /** widen, check and encode the stored bytes of plain float rows */
  encodeRaw?(type: PlannedTensor["type"], raw: RawChunk, rowLength: number, mode: FiniteMode, qw?: Float32Array): Promise<EncodeResult & { spare?: Uint8Array }>;
  /** chunk buffers for reuse (read targets, encode targets) */
  readonly pool?: BufferPool;
  /**
   * a buffer to read the stored bytes of `n` values into when encodeRaw can convert them where they
   * land (a float slot, slots.ts), or undefined; it goes back through pool.give like any chunk buffer
   */
  readTarget?(type: PlannedTensor["type"], dtype: "f32" | "f16" | "bf16", n: number): Uint8Array | undefined;
  /** start loading the codecs where the encoding runs (they load on the first chunk that needs them otherwise) */
  preload?(): void;
  close?(): Promise<void>;
}

/**
 * A few chunk-sized buffers kept for reuse: a fresh 16 MB buffer per chunk costs thousands of page
 * faults (and GC of external memory) on every chunk. take() hands out the smallest one that fits.
 */
export class BufferPool {
  private readonly bufs: Uint8Array[] = [];
  /**
   * `shared`: alloc() makes SharedArrayBuffers, which the worker pool passes to its workers without a
   * transfer. A transferred ArrayBuffer arrives as a new object holding 8–16 MB of external memory on
   * the receiving side; hundreds of them per conversion made V8 run a full mark-compact every few chunks
   * on the main thread (profile: ~100 in a 1.6 GB copy). Shared chunk buffers are allocated once.
   */
  constructor(private readonly max = 8, readonly shared = false) {}
  /** float slots (slots.ts): a view of one given back frees the slot instead of joining the pool */
  slots: SlotPool | undefined;
  /** buffers takeOrAlloc had to allocate, and their bytes (GGUFY_PROFILE, tests) */
  allocations = 0;
  allocatedBytes = 0;
  /**
   * a pooled buffer of at least `n` bytes, or a new one (shared when the pool is). Not a shared
   * WebAssembly.Memory (session 5 had chunk buffers as such, for f16 conversions in place): V8 does not
   * count a wasm memory as external memory, so dropped ones waited for an unrelated GC — peak RSS
   * 3.6 GiB (Q4_K_M) and 8.5 GiB (f16) on the full-size MiniCPM-V-2_6-int4 instead of ~0.6 GiB.
   */
  takeOrAlloc(n: number): Uint8Array {
    const pooled = this.take(n);
    if (pooled) return pooled;
    const size = BufferPool.sizeClass(n);
    this.allocations++;
    this.allocatedBytes += size;
    return new Uint8Array(this.shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
  }
  /**
   * Allocation size for a request of n bytes: rounded up to a multiple of 1 MiB (64 KiB below 1 MiB).
   * Chunk sizes differ by a few kB between tensors (whole rows of different widths: 8,386,560 and
   * 8,373,248 bytes of f16 in MiniCPM-V-2_6's LLM); exact-size buffers of the smaller kind then never
   * served the larger requests, so a full pool of them made every chunk allocate a fresh buffer and drop
   * it. Dropped SharedArrayBuffers are not counted as V8 external memory, so nothing prompted a GC:
   * `--outtype f16 --threads 2` of the full-size int4 checkpoint peaked at 2.4 GiB RSS (2,981 buffers
   * allocated, 23.5 GB in all). Rounded, a handful of buffers serve the whole conversion.
   */
  static sizeClass(n: number): number {
    const g = n >= 1 << 20 ? 1 << 20 : 1 << 16;
    return Math.ceil(n / g) * g;
  }
  take(n: number): Uint8Array | undefined {
    let best = -1;
    for (let i = 0; i < this.bufs.length; i++) if (this.bufs[i]!.length >= n && (best < 0 || this.bufs[i]!.length < this.bufs[best]!.length)) best = i;
    if (best < 0) return undefined;
    return this.bufs.splice(best, 1)[0]!;
  }
  /**
   * Keep `b`'s buffer for reuse. A full pool keeps the larger buffers: `b` replaces the smallest one when
   * it is larger (a pool full of buffers too small for the next requests would otherwise stay so).
   */
  give(b: Uint8Array): void {
    const slot = this.slots?.of(b);
    if (slot) {
      this.slots!.release(slot);
      return;
    }
    if (b.buffer.byteLength < 1 << 16 || this.bufs.some((x) => x.buffer === b.buffer)) return;
    const whole = new Uint8Array(b.buffer as ArrayBuffer);
    if (this.bufs.length < this.max) {
      this.bufs.push(whole);
      return;
    }
    let small = 0;
    for (let i = 1; i < this.bufs.length; i++) if (this.bufs[i]!.length < this.bufs[small]!.length) small = i;
    if (this.bufs[small]!.length < whole.length) this.bufs[small] = whole;
  }
  /** buffers held (tests) */
  get size(): number {
    return this.bufs.length;
  }
  clear(): void {
    this.bufs.length = 0;
  }
}

/** An encoder that runs in this thread (--threads 1), with its own buffers and scratch; `profile`: its stage times. */
export function createInlineEncoder(profile?: StageTimes): ChunkEncoder {
  const pool = new BufferPool(4);
  // encode.ts (every codec) is imported on the first chunk: a pool conversion never needs it here
  const load = lazyEncode();
  const timed = <T>(bytes: number, f: () => T): T => {
    if (!profile) return f();
    const t0 = performance.now();
    try {
      return f();
    } finally {
      profile.add("inline: quantize / encode", performance.now() - t0, bytes);
    }
  };
  return {
    encode: async (type, rows, rowLength, qw) => {
      const { E } = await load();
      return timed(rows.byteLength, () => E.encodeRows(type, rows, rowLength, undefined, qw));
    },
    encodeChecked: async (type, rows, rowLength, mode, qw) => {
      const { E } = await load();
      return timed(rows.byteLength, () => E.encodeChecked(type, rows, rowLength, mode, pool.take(rowBytes(type, rowLength) * (rows.length / rowLength)), qw));
    },
    encodeRaw: async (type, raw, rowLength, mode, qw) => {
      const { E, scratch } = await load();
      const n = rawCount(raw);
      const into = pool.take(rowBytes(type, rowLength) * (n / rowLength));
      scratch.times = profile ? newJobTimes() : undefined;
      const r = E.encodeRaw(type, raw, rowLength, mode, into, qw, scratch);
      if (scratch.times) profile!.addJob(scratch.times, raw.bytes.length);
      if (into && into.buffer !== r.bytes.buffer) pool.give(into);
      return r.bytes.buffer === raw.bytes.buffer ? r : { ...r, spare: raw.bytes };
    },
    pool,
    preload: () => void load().catch(() => undefined), // a failure surfaces on the first chunk
    close: async () => pool.clear(),
  };
}

/** Encodes in this thread (--threads 1). */
export const inlineEncoder: ChunkEncoder = createInlineEncoder();

export interface RunOptions {
  force?: boolean;
  allowNonfinite?: boolean;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
  /** called with the number of non-finite values passed through (only with allowNonfinite) */
  onWarning?: (msg: string) => void;
  encoder?: ChunkEncoder;
  /** floats per chunk (default 4 Mi) */
  chunkElements?: number;
  /** open files through this (tests inject failures) */
  opener?: FileOpener;
  /** how many chunks may be in flight at once (read-ahead and parallel encoding) */
  inflight?: number;
  /** free bytes for unprivileged users where `dir` lives, undefined if unknown (tests inject a small disk) */
  freeSpace?: (dir: string) => Promise<number | undefined>;
  /** per-stage timers (GGUFY_PROFILE, profile.ts) */
  profile?: StageTimes;
}

function gb(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

/** Refuse to start when the planned outputs do not fit on their file systems (grouped by device). */
export async function checkFreeSpace(files: readonly PlannedFile[], freeSpace: (dir: string) => Promise<number | undefined> = statfsFree): Promise<void> {
  for (const { dir, needed: need, free, first } of await diskUsage(files, freeSpace)) {
    if (free !== undefined && need > free) {
      throw new GgufyError("E_DISK_SPACE", `the output needs ${gb(need)} (${need} bytes) but only ${gb(free)} is free in ${dir}`, { file: first });
    }
  }
}

export interface RunResult {
  files: { path: string; bytes: number; tensors: number }[];
  nonFinite: number;
}

function rowsOf(t: PlannedTensor): number {
  return t.out.ne.slice(1).reduce((a, b) => a * b, 1);
}

/** Row ranges of a tensor: about `chunkElements` floats each, aligned to the tensor's rowAlign. */
export function chunkRanges(t: PlannedTensor, chunkElements: number): [number, number][] {
  const rows = rowsOf(t);
  const ne0 = t.out.ne[0]!;
  const align = Math.max(1, t.out.rowAlign ?? 1);
  let per = Math.max(1, Math.floor(chunkElements / ne0));
  per = Math.max(align, per - (per % align));
  const out: [number, number][] = [];
  // a stacked MoE tensor: chunks end at each expert's last row, so each reads from one source tensor
  // (and, with an imatrix, each chunk has one expert's importance vector)
  const boundary = t.out.rowBoundary ?? (t.imatrix && t.imatrix.length > ne0 ? t.out.ne[1]! : rows);
  for (let b = 0; b < rows; b += boundary) {
    const end = Math.min(rows, b + boundary);
    for (let r = b; r < end; r += per) out.push([r, Math.min(per, end - r)]);
  }
  return out;
}

/**
 * `p`, or a rejection as soon as `signal` aborts. Nothing is kept once `p` settles: a Promise.race
 * against one long-lived "aborted" promise would leave a reaction on it per chunk, each holding that
 * race's result — every chunk's output bytes — until the conversion ends (memory grew with the model).
 */
function untilAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new GgufyError("E_INTERRUPTED", "conversion interrupted; no output was written"));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

export async function runPlan(files: readonly PlannedFile[], opts: RunOptions = {}): Promise<RunResult> {
  const prof = opts.profile;
  const encoder = opts.encoder ?? createInlineEncoder(prof);
  /** `f`, timed as `stage` when profiling */
  const timed = <T>(stage: string, f: () => Promise<T>, bytes = 0): Promise<T> => (prof ? prof.time(stage, f, bytes) : f());
  const chunkElements = opts.chunkElements ?? 4 << 20;
  const inflight = Math.max(1, opts.inflight ?? 2);
  const bytesTotal = files.reduce((a, f) => a + f.header.fileSize, 0);
  let bytesDone = 0;
  let nonFinite = 0;
  const outputs: AtomicOutput[] = [];
  const abortCheck = (): void => {
    if (opts.signal?.aborted) throw new GgufyError("E_INTERRUPTED", "conversion interrupted; no output was written");
  };
  try {
    abortCheck();
    prof?.markRunStart();
    await timed("main: create outputs, check free space", async () => {
      for (const f of files) outputs.push(await AtomicOutput.create(f.path, { ...(opts.force ? { force: true } : {}), ...(opts.opener ? { opener: opts.opener } : {}), ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) }));
      await checkFreeSpace(files, opts.freeSpace);
    });
    for (let fi = 0; fi < files.length; fi++) {
      const f = files[fi]!;
      const out = outputs[fi]!;
      const fileStart = performance.now();
      // One sliding window of chunks in flight over the whole file — it runs on across tensor
      // boundaries, so the workers never wait for the last chunk of a tensor (k/v projections are a
      // single chunk) — reading and encoding ahead, writing strictly in order.
      const chunks: { ti: number; r0: number; n: number; last: boolean }[] = [];
      for (let ti = 0; ti < f.tensors.length; ti++) {
        const t = f.tensors[ti]!;
        if (rowBytes(t.type, t.out.ne[0]!) * rowsOf(t) !== t.bytes) throw new Error(`internal: size mismatch for ${t.out.name}`);
        const ranges = chunkRanges(t, chunkElements);
        ranges.forEach(([r0, n], k) => chunks.push({ ti, r0, n, last: k === ranges.length - 1 }));
      }
      const mode: FiniteMode = opts.allowNonfinite ? "count" : "reject";
      const encodeChunk = async (t: PlannedTensor, r0: number, n: number): Promise<Uint8Array> => {
        const ne0 = t.out.ne[0]!;
        const qw = importanceForRows(t.imatrix, t.out.ne, r0, n);
        // name the checkpoint tensor(s) too: the flat index is in the GGUF tensor's layout
        const named = (e: unknown): unknown => (e instanceof GgufyError && t.out.sources.length ? new GgufyError(e.code, `${e.detail}; made from ${t.out.sources.join(" + ")}`, { tensor: t.out.name }) : e);
        let res: (EncodeResult & { spare?: Uint8Array }) | undefined;
        if (t.out.readRaw && encoder.encodeRaw) {
          // plain float rows: the stored bytes go to the encoder, which widens and checks them off this thread
          const want = n * ne0 * (t.out.dtype === "f32" ? 4 : 2);
          // a float slot only for rows stored plain (encoding = dtype): a scheme's encoded bytes are decoded
          // by the worker's general path, never in a slot; any chunk buffer serves them
          const slot = t.out.encoding === t.out.dtype ? encoder.readTarget?.(t.type, t.out.dtype, n * ne0) : undefined;
          const into = slot ?? (encoder.pool?.shared ? encoder.pool.takeOrAlloc(want) : encoder.pool?.take(want));
          const raw = await timed("main: read (stored bytes)", () => t.out.readRaw!(r0, n, into), n * ne0 * (t.out.dtype === "f32" ? 4 : 2));
          if (into && raw?.bytes.buffer !== into.buffer) encoder.pool!.give(into); // not used for this read
          if (raw) {
            const got = rawCount(raw);
            if (got !== n * ne0) throw new Error(`${t.out.name}: raw read of rows [${r0}, ${r0 + n}) returned ${got} values, expected ${n * ne0}`);
            res = await timed("main: encode (submit → answer)", () => encoder.encodeRaw!(t.type, raw, ne0, mode, qw));
          }
        }
        if (!res) {
          const rows = await timed("main: read + decode (float32 rows)", () => t.out.read(r0, n), n * ne0 * 4);
          if (rows.length !== n * ne0) throw new Error(`${t.out.name}: read of rows [${r0}, ${r0 + n}) returned ${rows.length} values, expected ${n * ne0}`);
          if (encoder.encodeChecked) res = await encoder.encodeChecked(t.type, rows, ne0, mode, qw);
          else {
            if (opts.allowNonfinite) {
              if (firstNonFinite(rows) >= 0) for (const v of rows) if (v - v !== 0) nonFinite++;
            } else {
              try {
                checkFinite(rows, t.out.name, r0 * ne0);
              } catch (e) {
                throw named(e);
              }
            }
            res = { bytes: await encoder.encode(t.type, rows, ne0, qw) };
          }
        }
        if (res.spare) encoder.pool?.give(res.spare);
        if (res.firstBad !== undefined) throw named(nonFiniteError(res.badValue!, t.out.name, r0 * ne0 + res.firstBad));
        if (res.nonFinite) nonFinite += res.nonFinite;
        return res.bytes;
      };
      const pending: Promise<Uint8Array>[] = [];
      let next = 0;
      const launch = (): void => {
        const c = chunks[next++]!;
        const p = encodeChunk(f.tensors[c.ti]!, c.r0, c.n);
        p.catch(() => undefined); // rejections surface when awaited in order; never unhandled
        pending.push(p);
      };
      // the first reads and encodes start before the header is encoded and written (its bytes are
      // made on first use: a 151k vocabulary is a 6 MB header), so they overlap it
      while (next < chunks.length && pending.length < inflight) launch();
      const w = await timed("main: GGUF header (encode + write)", async () => {
        // the plan's header (planFile / splitPlannedFile, same KVs and tensors): written as it is
        const w = new GGUFStreamWriter(out, f.kvs, f.tensors.map((t) => ({ name: t.out.name, ne: t.out.ne, type: t.type })), alignmentOf(f.kvs), f.header);
        await w.start();
        return w;
      }, f.header.size);
      bytesDone += f.header.size;
      for (let k = 0; k < chunks.length; k++) {
        abortCheck();
        const c = chunks[k]!;
        const t = f.tensors[c.ti]!;
        // an abort does not wait for the chunk being encoded (workers are terminated by encoder.close)
        const bytes = await timed("main: writer waits for the next chunk", () => untilAbort(pending.shift()!, opts.signal));
        if (next < chunks.length) launch();
        await timed("main: write (awaited)", () => w.write(bytes), bytes.length);
        encoder.pool?.give(bytes); // written (or copied into the output buffer): free for reuse
        bytesDone += bytes.length;
        if (c.last) bytesDone += Math.ceil(t.bytes / 32) * 32 - t.bytes;
        opts.onProgress?.({ file: f.path, tensor: t.out.name, tensorIndex: c.ti, tensorCount: f.tensors.length, bytesDone, bytesTotal });
      }
      w.finish();
      await timed("main: write (awaited)", () => out.flush());
      prof?.add(`main: file ${path.basename(f.path)}, first chunk to flush`, performance.now() - fileStart, out.bytesWritten);
    }
    abortCheck();
    await timed("main: commit (fsync, link/rename)", () => AtomicOutput.commitAll(outputs)); // all parts or none: a failed later part takes back the earlier ones
    if (nonFinite > 0) opts.onWarning?.(`${nonFinite} non-finite value(s) were passed through (--allow-nonfinite)`);
    return { files: files.map((f, i) => ({ path: f.path, bytes: outputs[i]!.bytesWritten, tensors: f.tensors.length })), nonFinite };
  } catch (e) {
    await Promise.all(outputs.map((o) => o.abort()));
    throw e;
  } finally {
    await encoder.close?.();
  }
}
