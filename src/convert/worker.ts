/**
 * Worker-thread side of the encoder pool. A job is float32 rows or the stored bytes of plain float
 * rows (widened here, off the main thread), optionally with the NaN/Inf check, and optionally a spare
 * output buffer to encode into; the answer carries the bytes and hands the input buffer back for reuse.
 * The pool's chunk buffers are SharedArrayBuffers and travel as shared views; any other buffer is
 * transferred.
 */
import { parentPort } from "node:worker_threads";
import { lazyEncode, type EncodeResult, type FiniteMode, type RawChunk } from "./chunk.js";
import { newJobTimes, type JobTimes } from "./profile.js";
import { bindFloatSlot, floatSlotsAvailable, floatWasmAvailable, type FloatSlot } from "../quant/ggml/float-wasm.js";
import { encodeInSlot } from "./encode-slot.js";
import type { GGMLType } from "../quant/ggml/types.js";
import { GgufyError, type ErrorCode } from "../errors.js";

export interface Job {
  id: number;
  type: GGMLType;
  rowLength: number;
  rows?: Float32Array;
  raw?: RawChunk;
  /** check NaN/Inf here (undefined: the caller checked) */
  mode?: FiniteMode;
  /** a spare output buffer */
  into?: Uint8Array;
  /** the importance vector of the rows (--imatrix), copied with the job */
  qw?: Float32Array;
  /** measure the job's stages (GGUFY_PROFILE) */
  profile?: boolean;
  /** the raw bytes are at the start of this float slot (slots.ts) */
  slot?: number;
  /** the slot's memory, sent with the first job this worker gets in it */
  slotMemory?: WebAssembly.Memory;
}

export interface Answer extends Partial<EncodeResult> {
  id: number;
  error?: string;
  /** a GgufyError's parts, so that the main thread rethrows it with its code */
  errorCode?: ErrorCode;
  errorDetail?: string;
  errorFile?: string;
  errorTensor?: string;
  /** the input buffer, handed back for reuse (absent when it became the output) */
  spare?: Uint8Array;
  /** the spare output buffer of the job when it was not used */
  unused?: Uint8Array;
  /** the job's compute time by stage (Job.profile) */
  times?: JobTimes;
  /** the bytes are in the job's float slot */
  inSlot?: boolean;
}

/**
 * encode.ts and, through it, every codec and scheme decoder (with this worker's scratch): imported on the first job that needs them.
 * A chunk converted in a float slot does not, so a conversion to F16/BF16/F32 never loads them — the
 * workers start while the main thread plans, and on two cores their module loading competed with it.
 */
const loadEncode = lazyEncode();
/** the float slots this worker has been sent, bound to the kernels (undefined: binding failed) */
const slots = new Map<number, FloatSlot | undefined>();
// compile the float conversion kernels now, while the main thread is still planning (they are lazy)
floatWasmAvailable();
floatSlotsAvailable();

// jobs run one at a time, in order (a job may wait for loadEncode)
let chain: Promise<void> = Promise.resolve();
parentPort!.on("message", (job: Job | { preload: true }) => {
  // preload: the pool's hint that codec jobs are coming (a failure surfaces on the first such job)
  chain = chain.then(() => ("preload" in job ? loadEncode().then(() => undefined, () => undefined) : handle(job)));
});

async function handle(job: Job): Promise<void> {
  try {
    let r: EncodeResult;
    let input: Uint8Array;
    const times = job.profile ? newJobTimes() : undefined;
    if (job.raw && job.slot !== undefined) {
      if (job.slotMemory) slots.set(job.slot, bindFloatSlot(job.slotMemory));
      const k = slots.get(job.slot);
      // without the kernels the bytes are still a valid shared view: encodeRaw copies as usual
      const t0 = times ? performance.now() : 0;
      const fast = k ? encodeInSlot(job.type, job.raw, k) : undefined;
      if (times) times[fast && fast.bytes === job.raw.bytes ? "scan" : "encode"] += performance.now() - t0;
      if (fast) r = fast;
      else {
        const { E, scratch } = await loadEncode();
        scratch.times = times;
        scratch.slot = k;
        try {
          r = E.encodeRaw(job.type, job.raw, job.rowLength, job.mode ?? "count", undefined, job.qw, scratch);
        } finally {
          scratch.slot = undefined;
        }
      }
      const inSlot = r.bytes.buffer === job.raw.bytes.buffer || (k !== undefined && r.bytes.buffer === k.u8.buffer);
      const answer: Answer = { ...r, id: job.id, ...(inSlot ? { inSlot: true } : {}), ...(times ? { times } : {}) };
      parentPort!.postMessage(answer, r.bytes.buffer instanceof ArrayBuffer ? [r.bytes.buffer] : []);
      return;
    }
    const { E, scratch } = await loadEncode();
    scratch.times = times;
    if (job.raw) {
      r = E.encodeRaw(job.type, job.raw, job.rowLength, job.mode ?? "count", job.into, job.qw, scratch);
      input = job.raw.bytes;
    } else {
      const rows = job.rows!;
      const t0 = times ? performance.now() : 0;
      r = job.mode ? E.encodeChecked(job.type, rows, job.rowLength, job.mode, job.into, job.qw) : { bytes: E.encodeRows(job.type, rows, job.rowLength, job.into, job.qw) };
      if (times) times.encode += performance.now() - t0;
      input = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
    }
    const answer: Answer = { ...r, id: job.id, ...(times ? { times } : {}) };
    const transfer: ArrayBufferLike[] = [r.bytes.buffer];
    if (input.buffer !== r.bytes.buffer) {
      answer.spare = new Uint8Array(input.buffer);
      transfer.push(input.buffer);
    }
    if (job.into && job.into.buffer !== r.bytes.buffer && job.into.buffer !== input.buffer) {
      // an unused spare goes back as well
      answer.unused = job.into;
      transfer.push(job.into.buffer);
    }
    // SharedArrayBuffers (the pool's chunk buffers) are shared, not transferred
    parentPort!.postMessage(answer, transfer.filter((b): b is ArrayBuffer => b instanceof ArrayBuffer));
  } catch (e) {
    const answer: Answer = { id: job.id, error: e instanceof Error ? e.message : String(e) };
    if (e instanceof GgufyError) {
      answer.errorCode = e.code;
      answer.errorDetail = e.detail;
      if (e.file !== undefined) answer.errorFile = e.file;
      if (e.tensor !== undefined) answer.errorTensor = e.tensor;
    }
    parentPort!.postMessage(answer);
  }
}
