/**
 * Encoded rows decoded a few rows at a time (encode.ts inPieces, SchemeDecoder.decodeRange): a worker
 * decodes and quantizes a 16 MB bnb chunk in cache-sized pieces instead of as one float32 array. The
 * truth: the scheme's whole-chunk decode (dequantize4bit, proven bit-exact against bitsandbytes in
 * test/quant) followed by one quantize of all rows, and encodeChecked's exact NaN/Inf report.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { decodeEncoded, decodeEncodedRange, openSource } from "../../src/source/registry.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { encodeChecked, encodeRaw, encodeRows, EncodeScratch } from "../../src/convert/encode.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import type { RawChunk } from "../../src/convert/chunk.js";
import { Rng } from "../../fixtures/rng.js";

/** a bnb 4-bit chunk as readBnb4Encoded gives it: packed bytes from floor(elem0 / 2), the blocks' absmax */
function bnbChunk(elem0: number, count: number, seed: number, blocksize = 64, quantType: "nf4" | "fp4" = "nf4", dtype: "bf16" | "f16" | "f32" = "bf16"): RawChunk {
  const g = new Rng(seed);
  const block0 = Math.floor(elem0 / blocksize);
  const block1 = Math.floor((elem0 + count - 1) / blocksize);
  const absmax = new Float32Array(block1 - block0 + 1);
  for (let i = 0; i < absmax.length; i++) absmax[i] = 0.01 + 0.05 * g.uniform();
  const packed = new Uint8Array(Math.ceil(((elem0 % 2) + count) / 2));
  for (let i = 0; i < packed.length; i++) packed[i] = Math.floor(g.uniform() * 256);
  return { dtype: "bf16", bytes: packed, encoded: { scheme: "bnb4", count, meta: { elem0, absmax, block0, blocksize, quantType, dtype } } };
}

const enc = (raw: RawChunk) => ({ ...raw.encoded!, bytes: raw.bytes });

test("bnb decodeRange gives the values of the whole-chunk decode, at any offset and parity", () => {
  for (const [elem0, count] of [[0, 5000], [4097, 3001], [123457, 777]] as const) {
    for (const quantType of ["nf4", "fp4"] as const) {
      const raw = bnbChunk(elem0, count, elem0 + count, 64, quantType);
      const whole = decodeEncoded(enc(raw));
      for (const [v0, m] of [[0, count], [1, 10], [63, 130], [count - 1, 1], [500, 0]]) {
        const part = decodeEncodedRange(enc(raw), v0, m, new Float32Array(m + 3));
        assert.ok(part, "bnb4 decodes ranges");
        assert.deepEqual(Array.from(part), Array.from(whole.subarray(v0, v0 + m)), `elem0 ${elem0} ${quantType}: [${v0}, ${v0 + m})`);
      }
      assert.throws(() => decodeEncodedRange(enc(raw), count - 1, 2, new Float32Array(2)), /outside/);
    }
  }
});

test("a bnb chunk larger than a piece quantizes to the bytes of one quantize over all its rows", () => {
  // 40 rows of 4096 (10 pieces of 16 rows, the last one partial), not starting at element 0
  const rowLength = 4096;
  const n = 40 * rowLength;
  const raw = bnbChunk(7 * rowLength, n, 19);
  const rows = decodeEncoded(enc(raw));
  for (const type of [GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q8_0, GGMLType.F16]) {
    const scratch = new EncodeScratch();
    const got = encodeRaw(type, raw, rowLength, "reject", undefined, undefined, scratch);
    assert.equal(got.firstBad, undefined);
    assert.ok(Buffer.from(encodeRows(type, rows, rowLength)).equals(Buffer.from(got.bytes)), `type ${type}: same bytes as the whole chunk`);
    // the pieces really ran: the scratch never held the whole chunk
    assert.ok((scratch as unknown as { f32: Float32Array }).f32.length < n, "decoded in pieces");
  }
});

test("a NaN in a later piece is reported and counted exactly as for the whole chunk", () => {
  const rowLength = 4096;
  const n = 40 * rowLength;
  const raw = bnbChunk(0, n, 23);
  const absmax = (raw.encoded!.meta as { absmax: Float32Array }).absmax;
  absmax[(33 * rowLength) / 64] = NaN; // block of row 33: in the third piece
  const rows = decodeEncoded(enc(raw));
  for (const mode of ["reject", "count"] as const) {
    const want = encodeChecked(GGMLType.Q4_K, rows, rowLength, mode);
    const got = encodeRaw(GGMLType.Q4_K, raw, rowLength, mode, undefined, undefined, new EncodeScratch());
    assert.equal(got.firstBad, want.firstBad, mode);
    assert.equal(got.nonFinite, want.nonFinite, mode);
    assert.ok(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), `${mode}: same bytes`);
  }
  assert.equal(encodeChecked(GGMLType.Q4_K, rows, rowLength, "reject").firstBad, 33 * rowLength);
});

test("finite scales that round to ±inf in the module's dtype are caught (the scan is skipped only when the scales allow it)", () => {
  // bf16 rounds |values| ≥ 0x7f7f8000 (≈ 3.3961e38) to inf, f16 those ≥ 65520; f32 products of finite scales stay finite
  const rowLength = 4096;
  const n = 40 * rowLength;
  for (const [dtype, scale, expectBad] of [["bf16", 3.4e38, true], ["f16", 70000, true], ["f32", 3.4e38, false], ["bf16", 3.38e38, false]] as const) {
    const raw = bnbChunk(0, n, 29, 64, "nf4", dtype);
    (raw.encoded!.meta as { absmax: Float32Array }).absmax[(21 * rowLength) / 64 + 3] = scale;
    const rows = decodeEncoded(enc(raw));
    const want = encodeChecked(GGMLType.Q6_K, rows, rowLength, "count");
    assert.equal((want.nonFinite ?? 0) > 0, expectBad, `${dtype} scale ${scale}: the whole-chunk truth`);
    const got = encodeRaw(GGMLType.Q6_K, raw, rowLength, "count", undefined, undefined, new EncodeScratch());
    assert.equal(got.nonFinite, want.nonFinite, `${dtype} scale ${scale}: counted as the whole chunk`);
    assert.ok(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), `${dtype} scale ${scale}: same bytes`);
  }
});

test("a bnb chunk's packed bytes are read into the chunk buffer the pipeline offers (no fresh memory per chunk)", async () => {
  // session 12: a fresh ArrayBuffer per chunk cost --threads 2 about 20 s of system time on the full-size
  // int4 benchmark (7 s with one thread)
  const tmp = await scratchDir("ggufy-encoded-into-");
  after(() => rm(tmp, { recursive: true, force: true }));
  const src = path.join(tmp, "src");
  const dir = path.join(tmp, "nf4");
  await writeTinyFamily(src, "llama3.1", { sizes: { hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ffn: 512, layers: 1 } });
  await quantizeCheckpointToBnb(src, dir, { method: "nf4", doubleQuant: true, blocksize: 64 });
  const ck = await openSource(dir);
  try {
    const name = "model.layers.0.mlp.down_proj.weight";
    const into = new Uint8Array(new SharedArrayBuffer(1 << 20));
    const raw = await ck.readRawRows(name, 3, 5, into);
    assert.ok(raw?.encoded, "bnb rows travel encoded");
    assert.equal(raw.bytes.buffer, into.buffer, "packed bytes in the offered buffer");
    assert.deepEqual(Array.from(decodeEncoded({ ...raw.encoded, bytes: raw.bytes })), Array.from(await ck.readRows(name, 3, 5)));
    const small = new Uint8Array(8);
    const fresh = await ck.readRawRows(name, 3, 5, small);
    assert.notEqual(fresh!.bytes.buffer, small.buffer, "a buffer too small is not used");
  } finally {
    await ck.close();
  }
});
