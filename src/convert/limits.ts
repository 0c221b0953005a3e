/**
 * Resource caps that hold whatever the flags say. Each worker thread is a V8 isolate (~10–30 MB) with
 * its chunk buffers (16 MB in, up to 16 MB out per 4 Mi-float chunk), and the pipeline keeps
 * threads + 1 chunks in flight, so memory grows with the thread count: `--threads 1000000000` must
 * not mean a billion isolates.
 */
import { availableParallelism } from "node:os";
import { GgufyError } from "../errors.js";

/** never more worker threads than this, whatever the machine */
export const MAX_THREADS = 64;

/**
 * The worker threads a conversion uses: the request (default: every core), validated (a positive
 * integer), capped at min(4 × cores, 64), and never more than there are chunks to encode (a 1 MB
 * model gets one or two workers, not 200).
 */
export function effectiveThreads(requested: number | undefined, chunks = Infinity, cores = availableParallelism()): number {
  if (requested !== undefined && (!Number.isSafeInteger(requested) || requested < 1)) throw new GgufyError("E_USAGE", `--threads ${requested}: expected a positive integer`);
  const cap = Math.min(4 * Math.max(1, cores), MAX_THREADS);
  return Math.max(1, Math.min(requested ?? cores, cap, Math.max(1, chunks)));
}
