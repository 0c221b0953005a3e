/**
 * The worker pool: an error raised while decoding in a worker reaches the caller as the same GgufyError
 * (code, file, tensor), and a worker that dies fails the pending jobs instead of leaving them hanging.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WorkerPoolEncoder } from "../../src/convert/workers.js";
import { GgufyError } from "../../src/errors.js";
import { GGMLType } from "../../src/quant/ggml/types.js";

test("a decoder's GgufyError keeps its code, file and tensor across the worker boundary", async () => {
  const pool = new WorkerPoolEncoder(1);
  try {
    // FP8 rows holding a NaN code (0x7f), decoded in the worker by the fp8 scheme decoder
    const codes = new Uint8Array([0x38, 0x7f, 0x38, 0x38]);
    const meta = { tensor: "blk.w.weight", fmt: "e4m3", rowLength: 4, row0: 0, scales: new Float32Array([1]), layout: { kind: "tensor" }, scheme: "fp8" };
    await assert.rejects(pool.encodeRaw(GGMLType.F32, { dtype: "f32", bytes: codes, encoded: { scheme: "fp8", count: 4, meta } }, 4, "reject"), (e: unknown) => {
      assert.ok(e instanceof GgufyError, String(e));
      assert.equal(e.code, "E_QUANT");
      assert.equal(e.tensor, "blk.w.weight");
      assert.match(e.message, /code 0x7f at flat index 1 is NaN/);
      return true;
    });
    // an unknown scheme id is refused by name, also from the worker
    await assert.rejects(pool.encodeRaw(GGMLType.F32, { dtype: "f32", bytes: new Uint8Array(4), encoded: { scheme: "nope", count: 1, meta: {} } }, 1, "reject"), (e: unknown) => e instanceof GgufyError && e.code === "E_UNSUPPORTED_QUANT" && /'nope'/.test(e.message) && /gptq/.test(e.message));
    // the pool still works afterwards
    const ok = await pool.encodeChecked!(GGMLType.F32, new Float32Array([1, 2]), 2, "reject");
    assert.deepEqual([...new Float32Array(ok.bytes.buffer, ok.bytes.byteOffset, 2)], [1, 2]);
  } finally {
    await pool.close();
  }
});

test("a worker that exits fails the pending and later jobs (no hang)", async () => {
  const pool = new WorkerPoolEncoder(1);
  try {
    const workers = (pool as unknown as { workers: { terminate(): Promise<number> }[] }).workers;
    const pending = pool.encodeChecked!(GGMLType.Q8_0, new Float32Array(32 * 4096).fill(0.5), 32 * 4096, "reject");
    await workers[0]!.terminate();
    await assert.rejects(pending, /worker thread exited/);
    await assert.rejects(pool.encodeChecked!(GGMLType.F32, new Float32Array([1]), 1, "reject"), /worker thread exited/);
  } finally {
    await pool.close();
  }
});

test("preload: the workers load the codecs on the hint, and jobs after it (and before it finishes) are answered in order", async () => {
  const pool = new WorkerPoolEncoder(2);
  try {
    pool.preload();
    const x = new Float32Array(32 * 64).map((_, i) => Math.sin(i) * 0.1);
    const [a, b] = await Promise.all([pool.encodeChecked!(GGMLType.Q8_0, x.slice(), 32 * 64, "reject"), pool.encodeChecked!(GGMLType.Q4_0, x.slice(), 32 * 64, "reject")]); // (the rows are transferred)
    const { encodeRows } = await import("../../src/convert/encode.js");
    assert.ok(Buffer.from(a.bytes).equals(Buffer.from(encodeRows(GGMLType.Q8_0, x, 32 * 64))));
    assert.ok(Buffer.from(b.bytes).equals(Buffer.from(encodeRows(GGMLType.Q4_0, x, 32 * 64))));
  } finally {
    await pool.close();
  }
});
