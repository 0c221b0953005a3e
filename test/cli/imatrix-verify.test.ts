/**
 * `ggufy convert --imatrix` and `ggufy verify --imatrix` through the CLI: the file records the imatrix in
 * quantize.imatrix.*, verify re-plans with it and reports the importance-weighted relative RMSE next to the
 * plain one — checked against the formula computed here from ggml's own dequantization (koffi oracle) of
 * the file's bytes, the F32 source and the imatrix's raw legacy values; --exact re-quantizes with the
 * importance vector; verify without the imatrix finds the Q4_0 file's imatrix-only type choice wrong.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { convert, verify } from "../../src/index.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeSmallQwen2 } from "../../fixtures/qwen2-small.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { cli } from "./helpers.js";

const tmp = await scratchDir("ggufy-imatrix-verify-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let dir = "";
let imFile = "";
const H = 256;
/** the importance of column c of every matrix (hand-chosen: a few hot columns) */
const imp = (c: number): number => (c % 17 === 0 ? 40 : 0.25 + (c % 5) * 0.5);

before(async () => {
  dir = path.join(tmp, "m");
  await writeSmallQwen2(dir, { layers: 2, hidden: H, heads: 4, kvHeads: 2, ffn: 512, tied: true, dtype: "F32", seed: 7 });
  // a legacy imatrix written by hand: ncall 2, values 2·imp → importance imp (load_imatrix divides by ncall)
  const names: [string, number][] = [];
  for (let l = 0; l < 2; l++) {
    for (const t of ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"]) names.push([`blk.${l}.${t}.weight`, H]);
    names.push([`blk.${l}.ffn_down.weight`, 512]);
  }
  const parts: Buffer[] = [];
  const i32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
  parts.push(i32(names.length));
  for (const [n, len] of names) {
    parts.push(i32(n.length), Buffer.from(n), i32(2), i32(len));
    const f = Buffer.alloc(4 * len);
    for (let c = 0; c < len; c++) f.writeFloatLE(2 * imp(c), 4 * c);
    parts.push(f);
  }
  parts.push(i32(9), i32(8), Buffer.from("wiki.txt"));
  imFile = path.join(tmp, "hand.dat");
  await writeFile(imFile, Buffer.concat(parts));
});

test("convert --imatrix (CLI) writes quantize.imatrix.*; verify --imatrix reports the weighted error, equal to the formula on ggml's dequantization", async () => {
  const out = path.join(tmp, "q4_0.gguf");
  const r = await cli(["convert", dir, "--outtype", "Q4_0", "--imatrix", imFile, "--outfile", out, "--quiet", "--threads", "1"]);
  assert.equal(r.code, 0, r.stderr);
  const g = await readGguf(out);
  assert.equal(g.kvs.get("quantize.imatrix.file")?.value, imFile);
  assert.equal(g.kvs.get("quantize.imatrix.dataset")?.value, "wiki.txt");
  assert.equal(g.kvs.get("quantize.imatrix.entries_count")?.value, 14);
  assert.equal(g.kvs.get("quantize.imatrix.chunks_count")?.value, 9);
  // llama_tensor_get_type with an imatrix: ffn_down of the first n/8 layers → q4_1 (n = 2 → none: 2/8 = 0)
  assert.equal(g.tensors.find((t) => t.name === "blk.0.ffn_down.weight")?.type, GGMLType.Q4_0);

  const v = await verify(out, dir, { imatrix: imFile, exact: true });
  assert.equal(v.ok, true, v.failures.join("\n"));
  const q = v.tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
  assert.equal(q.bytesDiffering, 0, "--exact re-quantizes with the importance vector");
  assert.ok(q.weightedRelRmse !== undefined && Number.isFinite(q.weightedRelRmse));
  assert.equal(v.tensors.find((t) => t.name === "token_embd.weight")!.weightedRelRmse, undefined, "no imatrix entry → no weighted error");
  // the formula, independently: ggml's to_float of the file's bytes vs the F32 source
  const f32 = path.join(tmp, "f32.gguf");
  await convert({ input: dir, outtype: "f32", outfile: f32, force: true });
  const src = await readGguf(f32);
  const [qb, sb] = await Promise.all([readFile(out), readFile(f32)]);
  const e = g.tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
  const s = src.tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
  const n = e.ne[0]! * e.ne[1]!;
  const deq = ggmlOracle().dequantize(e.type, qb.subarray(e.fileOffset, e.fileOffset + e.bytes), n);
  const ref = new Float32Array(sb.buffer.slice(sb.byteOffset + s.fileOffset, sb.byteOffset + s.fileOffset + 4 * n));
  let we = 0;
  let wr = 0;
  let pe = 0;
  let pr = 0;
  for (let i = 0; i < n; i++) {
    const d = deq[i]! - ref[i]!;
    const w = Math.fround(Math.fround(2 * imp(i % H)) / 2);
    we += w * d * d;
    wr += w * ref[i]! * ref[i]!;
    pe += d * d;
    pr += ref[i]! * ref[i]!;
  }
  assert.ok(Math.abs(q.weightedRelRmse! - Math.sqrt(we / wr)) <= 1e-9 * Math.sqrt(we / wr), `${q.weightedRelRmse} vs ${Math.sqrt(we / wr)}`);
  assert.ok(Math.abs(q.relRmse - Math.sqrt(pe / pr)) <= 1e-9 * Math.sqrt(pe / pr));
  // the imatrix buys accuracy where the imatrix looks: weighted error below the plain one
  assert.ok(q.weightedRelRmse! < q.relRmse, `${q.weightedRelRmse} < ${q.relRmse}`);

  const text = await cli(["verify", out, dir, "--imatrix", imFile]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /w rel RMSE/);
  assert.match(text.stdout, /weighted \(imatrix\) mean/);
});

test("verify without the imatrix of an imatrix-made file fails (its bytes differ from the plain quantization)", async () => {
  const out = path.join(tmp, "q4_k.gguf");
  await convert({ input: dir, outtype: "Q4_K_M", outfile: out, force: true, imatrix: imFile, threads: 1 });
  const v = await verify(out, dir, { exact: true });
  assert.equal(v.ok, false);
  assert.ok(v.failures.some((f) => /blk\.0\.attn_q\.weight: \d+ byte\(s\) differ from a fresh quantization/.test(f)), v.failures.join("\n"));
  const w = await verify(out, dir, { exact: true, imatrix: imFile });
  assert.equal(w.ok, true, w.failures.join("\n"));
});

test("the CLI refuses --include-weights with --exclude-weights", async () => {
  const r = await cli(["convert", dir, "--outtype", "Q4_K_M", "--imatrix", imFile, "--include-weights", "a", "--exclude-weights", "b", "--outfile", path.join(tmp, "x.gguf")]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /E_USAGE: --include-weights and --exclude-weights cannot be used together/);
});

test("the importance vector reaches the worker threads: --threads 2 writes the same bytes as --threads 1 (and not the plain ones)", async () => {
  const one = path.join(tmp, "t1.gguf");
  const two = path.join(tmp, "t2.gguf");
  const plain = path.join(tmp, "t0.gguf");
  await convert({ input: dir, outtype: "Q5_K_S", outfile: one, force: true, imatrix: imFile, threads: 1 });
  await convert({ input: dir, outtype: "Q5_K_S", outfile: two, force: true, imatrix: imFile, threads: 2, chunkElements: 1 << 14 });
  await convert({ input: dir, outtype: "Q5_K_S", outfile: plain, force: true, threads: 2 });
  const [a, b, c] = await Promise.all([readFile(one), readFile(two), readFile(plain)]);
  assert.ok(a.equals(b), "threads 1 and 2 differ");
  const g = await readGguf(two);
  const p = await readGguf(plain);
  const t = g.tensors.find((x) => x.name === "blk.1.ffn_up.weight")!;
  const u = p.tensors.find((x) => x.name === "blk.1.ffn_up.weight")!;
  assert.ok(!b.subarray(t.fileOffset, t.fileOffset + t.bytes).equals(c.subarray(u.fileOffset, u.fileOffset + u.bytes)), "the imatrix must change the bytes");
});
