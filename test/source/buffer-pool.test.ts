/**
 * The chunk-buffer pool stays a handful of buffers for a whole conversion. Session 5's pool kept exact-size
 * buffers and dropped any buffer given to it once it held 16: chunk sizes that differ by a few kB between
 * tensors (whole rows of different widths) and the packed bitsandbytes inputs handed back after each job
 * filled it with buffers no later request fitted, so every chunk allocated a fresh SharedArrayBuffer and
 * dropped it. V8 does not count those as external memory, so nothing prompted a GC: `--outtype f16
 * --threads 2` of the full-size MiniCPM-V-2_6-int4 checkpoint peaked at 2.4 GiB RSS (2,981 buffers, 23.5 GB
 * allocated) where the same run now peaks at 640 MiB.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { BufferPool, runPlan } from "../../src/convert/pipeline.js";
import { WorkerPoolEncoder } from "../../src/convert/workers.js";
import { plan } from "../../src/convert/convert.js";
import { readGguf } from "../../src/index.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { scratchDir } from "../../fixtures/qwen2.js";

const tmp = await scratchDir("ggufy-buffer-pool-");
after(() => rm(tmp, { recursive: true, force: true }));

test("a full pool keeps the larger buffers and sizes are rounded to a class", () => {
  const pool = new BufferPool(2);
  // rows of 3584 and 18944 f16 values, 4 Mi floats a chunk (MiniCPM-V-2_6's LLM): one size class
  assert.equal(BufferPool.sizeClass(1170 * 3584 * 2), 8 << 20);
  assert.equal(BufferPool.sizeClass(221 * 18944 * 2), 8 << 20);
  assert.equal(BufferPool.sizeClass(70000), 128 << 10);
  pool.give(new Uint8Array(2 << 20));
  pool.give(new Uint8Array(3 << 20));
  const big = new Uint8Array(8 << 20);
  pool.give(big); // full: replaces the 2 MiB buffer, the smallest
  assert.equal(pool.size, 2);
  assert.equal(pool.take(5 << 20)?.buffer, big.buffer);
  assert.equal(pool.take(5 << 20), undefined);
  pool.give(new Uint8Array(1 << 20)); // not full: kept
  pool.give(new Uint8Array(1 << 19)); // full, and smaller than everything held: dropped
  assert.equal(pool.size, 2);
  assert.ok(pool.take(3 << 20)!.length >= 3 << 20);
});

test("the pipeline's pattern (two row widths, foreign spares handed back) allocates a bounded number of buffers", () => {
  const pool = new BufferPool(16, true);
  const sizes = [8386560, 8373248];
  const inFlight: Uint8Array[] = [];
  for (let chunk = 0; chunk < 600; chunk++) {
    const want = sizes[Math.floor(chunk / 7) % 2]!; // a tensor of one width, then one of the other …
    const into = pool.takeOrAlloc(want);
    assert.ok(into.length >= want);
    // the packed NF4 input comes back from the worker as a spare: a buffer the pool never handed out
    pool.give(new Uint8Array(want / 4));
    inFlight.push(into);
    if (inFlight.length > 6) pool.give(inFlight.shift()!); // written: back to the pool
  }
  assert.ok(pool.allocations <= 8, `${pool.allocations} buffers allocated for 600 chunks with 6 in flight`);
});

test("bnb NF4 → f16 through two workers: a handful of chunk buffers for the whole run, same bytes as one thread", async (t) => {
  const src = path.join(tmp, "src");
  const dir = path.join(tmp, "nf4");
  // rows of 768 and 2064 values: chunks of 279,552 and 276,576 bytes of f16 at 140,000 floats a chunk, and
  // packed NF4 inputs of about 70 kB handed back by the workers (large enough for the pool to keep)
  await writeTinyFamily(src, "llama3.1", { sizes: { hidden: 768, heads: 12, kvHeads: 6, headDim: 64, ffn: 2064, layers: 2 } });
  await quantizeCheckpointToBnb(src, dir, { method: "nf4", doubleQuant: true, blocksize: 64 });
  const run = async (threads: number, outfile: string): Promise<{ allocations: number; chunks: number }> => {
    const p = await plan({ input: dir, outfile, outtype: "f16" });
    const encoder = new WorkerPoolEncoder(threads);
    try {
      let chunks = 0;
      await runPlan(p.files, { encoder, chunkElements: 140_000, inflight: 6, onProgress: () => chunks++ });
      return { allocations: encoder.pool.allocations, chunks };
    } finally {
      await encoder.close();
      await p.close();
    }
  };
  const two = await run(2, path.join(tmp, "t2.gguf"));
  const one = await run(1, path.join(tmp, "t1.gguf"));
  t.diagnostic(`${two.chunks} chunks; chunk buffers allocated: ${two.allocations} (2 workers), ${one.allocations} (1 worker)`);
  assert.ok(two.chunks > 80, `${two.chunks} chunks`);
  // two per chunk in flight (input read + output) and the hand-backs kept: 131 before the fix
  assert.ok(two.allocations <= 24, `${two.allocations} chunk buffers allocated for ${two.chunks} chunks`);
  const [a, b] = await Promise.all([readFile(path.join(tmp, "t2.gguf")), readFile(path.join(tmp, "t1.gguf"))]);
  assert.ok(a.equals(b), "the GGUF of 2 workers differs from 1 worker's");
  assert.equal((await readGguf(path.join(tmp, "t2.gguf"))).tensors.length, 2 + 2 * 9 + 1 + 1, "every tensor written (rope_freqs included)");
});
