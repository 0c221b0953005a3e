/** Worker-thread side of the encoder pool: float32 rows in, quantized bytes out (buffers transferred). */
import { parentPort } from "node:worker_threads";
import { encodeRows } from "./encode.js";
import type { GGMLType } from "../quant/ggml/types.js";

interface Job {
  id: number;
  type: GGMLType;
  rows: Float32Array;
  rowLength: number;
}

parentPort!.on("message", (job: Job) => {
  try {
    const bytes = encodeRows(job.type, job.rows, job.rowLength);
    parentPort!.postMessage({ id: job.id, bytes }, [bytes.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
