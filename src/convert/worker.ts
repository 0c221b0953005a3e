/**
 * Worker-thread side of the encoder pool. A job is float32 rows or the stored bytes of plain float
 * rows (widened here, off the main thread), optionally with the NaN/Inf check, and optionally a spare
 * output buffer to encode into; the answer carries the bytes and hands the input buffer back for reuse.
 * Buffers are transferred both ways.
 */
import { parentPort } from "node:worker_threads";
import { encodeChecked, encodeRaw, encodeRows, type EncodeResult, type FiniteMode, type RawChunk } from "./encode.js";
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
}

parentPort!.on("message", (job: Job) => {
  try {
    let r: EncodeResult;
    let input: Uint8Array;
    if (job.raw) {
      r = encodeRaw(job.type, job.raw, job.rowLength, job.mode ?? "count", job.into, job.qw);
      input = job.raw.bytes;
    } else {
      const rows = job.rows!;
      r = job.mode ? encodeChecked(job.type, rows, job.rowLength, job.mode, job.into, job.qw) : { bytes: encodeRows(job.type, rows, job.rowLength, job.into, job.qw) };
      input = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
    }
    const answer: Answer = { ...r, id: job.id };
    const transfer: ArrayBuffer[] = [r.bytes.buffer as ArrayBuffer];
    if (input.buffer !== r.bytes.buffer) {
      answer.spare = new Uint8Array(input.buffer);
      transfer.push(input.buffer as ArrayBuffer);
    }
    if (job.into && job.into.buffer !== r.bytes.buffer && job.into.buffer !== input.buffer) {
      // an unused spare goes back as well
      answer.unused = job.into;
      transfer.push(job.into.buffer as ArrayBuffer);
    }
    parentPort!.postMessage(answer, transfer);
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
});
