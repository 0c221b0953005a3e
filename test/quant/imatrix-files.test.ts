/**
 * Importance-matrix files: both formats llama-imatrix writes are read to the same entries; the
 * normalisation is llama-quantize's (checked on hand-built files with known sums/counts); and every way a
 * file can be wrong — another model's imatrix, a wrong length, a truncated file, missing metadata,
 * mismatched sums/counts, non-finite values — is refused in one line naming the file and the entry.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { convert, plan } from "../../src/index.js";
import { loadImatrix } from "../../src/quant/imatrix.js";
import { encodeGgufHeader } from "../../src/formats/gguf/writer.js";
import { kv, type GGUFKV } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeSmallQwen2 } from "../../fixtures/qwen2-small.js";
import { llamaTool } from "../support/llama-tools.js";

const tmp = await scratchDir("ggufy-imatrix-files-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let modelDir = "";
let otherDir = "";
let f32 = "";
let imGguf = "";
let imDat = "";

function run(tool: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(tool, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  return { status: r.status, out: r.stderr + r.stdout };
}

const TEXT = "An importance matrix is the mean of the squared activations seen by every column of every weight matrix. ".repeat(40);

before(async () => {
  modelDir = path.join(tmp, "m");
  otherDir = path.join(tmp, "other");
  await writeSmallQwen2(modelDir, { layers: 2, hidden: 256, heads: 4, kvHeads: 2, ffn: 512, tied: true, dtype: "F32", seed: 3 });
  // another model: same layer count and names, hidden 512 instead of 256
  await writeSmallQwen2(otherDir, { layers: 2, hidden: 512, heads: 4, kvHeads: 2, ffn: 512, tied: true, dtype: "F32", seed: 4 });
  f32 = path.join(tmp, "m-f32.gguf");
  await convert({ input: modelDir, outtype: "f32", outfile: f32, force: true });
  const text = path.join(tmp, "t.txt");
  await writeFile(text, TEXT);
  imGguf = path.join(tmp, "im.gguf");
  imDat = path.join(tmp, "im.dat");
  const common = ["-m", f32, "-f", text, "-c", "64", "-b", "64", "-ub", "64", "--chunks", "3", "-t", "2", "--no-ppl"];
  for (const [o, fmt] of [[imGguf, "gguf"], [imDat, "dat"]] as const) {
    const r = run(llamaTool("llama-imatrix"), [...common, "-o", o, "--output-format", fmt]);
    assert.equal(r.status, 0, r.out);
  }
});

test("GGUF and legacy imatrices from llama-imatrix load to the same entries, dataset and chunk count", async () => {
  const g = await loadImatrix(imGguf);
  const d = await loadImatrix(imDat);
  assert.equal(g.format, "gguf");
  assert.equal(d.format, "dat");
  assert.deepEqual([...g.entries.keys()], [...d.entries.keys()]);
  // 2 layers × (q, k, v, o, gate, up, down): blk.* only (no output.weight without --process-output)
  assert.equal(g.entries.size, 2 * 7);
  assert.equal(g.chunkCount, 3);
  assert.equal(d.chunkCount, 3);
  assert.deepEqual(g.datasets, [path.join(tmp, "t.txt")]);
  assert.deepEqual(d.datasets, [path.join(tmp, "t.txt")]);
  for (const [name, v] of g.entries) {
    const w = d.entries.get(name)!;
    assert.equal(v.length, w.length, name);
    // the same means, rounded differently by the two formats' arithmetic: equal to a few ulps
    for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i]! - w[i]!) <= 1e-5 * Math.abs(v[i]!) + 1e-30, `${name}[${i}]: ${v[i]} vs ${w[i]}`);
    assert.ok(v.every((x) => x >= 0) && v.some((x) => x > 0), name);
  }
});

// ---- hand-built files --------------------------------------------------------------------------------

function dat(entries: [string, number, number[]][], trailer?: { chunks: number; dataset: string }): Buffer {
  const parts: Buffer[] = [];
  const i32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
  parts.push(i32(entries.length));
  for (const [name, ncall, vals] of entries) {
    const nb = Buffer.from(name);
    parts.push(i32(nb.length), nb, i32(ncall), i32(vals.length));
    const f = Buffer.alloc(4 * vals.length);
    vals.forEach((v, j) => f.writeFloatLE(v, 4 * j));
    parts.push(f);
  }
  if (trailer) {
    const ds = Buffer.from(trailer.dataset);
    parts.push(i32(trailer.chunks), i32(ds.length), ds);
  }
  return Buffer.concat(parts);
}

function ggufImatrix(entries: [string, number[][], number[]][], kvs: GGUFKV[] = [kv.str("general.type", "imatrix"), kv.strs("imatrix.datasets", ["d.txt"]), kv.u32("imatrix.chunk_count", 5), kv.u32("imatrix.chunk_size", 512)], skip?: "counts"): Buffer {
  const tensors: { name: string; ne: number[]; type: GGMLType; data: Float32Array }[] = [];
  for (const [name, sums, counts] of entries) {
    tensors.push({ name: `${name}.in_sum2`, ne: [sums[0]!.length, sums.length], type: GGMLType.F32, data: Float32Array.from(sums.flat()) });
    if (skip !== "counts") tensors.push({ name: `${name}.counts`, ne: [1, counts.length], type: GGMLType.F32, data: Float32Array.from(counts) });
  }
  const h = encodeGgufHeader(kvs, tensors);
  const out = Buffer.alloc(h.fileSize);
  Buffer.from(h.bytes).copy(out);
  tensors.forEach((t, i) => Buffer.from(t.data.buffer).copy(out, h.bytes.length + h.offsets[i]!));
  return out;
}

test("normalisation as load_imatrix: GGUF sums / count per expert (count 0 → 1), legacy values / ncall", async () => {
  const g = path.join(tmp, "h.gguf");
  await writeFile(g, ggufImatrix([["blk.0.ffn_up_exps.weight", [[3, 6], [5, 7], [1, 2]], [3, 0, 4]]]));
  const a = await loadImatrix(g);
  assert.deepEqual(Array.from(a.entries.get("blk.0.ffn_up_exps.weight")!), [1, 2, 1, 1, Math.fround(1 / 4), Math.fround(2 / 4)]);
  assert.equal(a.chunkCount, 5);
  assert.deepEqual(a.datasets, ["d.txt"]);
  const d = path.join(tmp, "h.dat");
  await writeFile(d, dat([["blk.0.attn_q.weight", 3, [1, 2, 10]], ["blk.0.attn_k.weight", 0, [4, 5]]], { chunks: 7, dataset: "data.txt" }));
  const b = await loadImatrix(d);
  assert.deepEqual(Array.from(b.entries.get("blk.0.attn_q.weight")!), [Math.fround(1 / 3), Math.fround(2 / 3), Math.fround(10 / 3)]);
  assert.deepEqual(Array.from(b.entries.get("blk.0.attn_k.weight")!), [4, 5]);
  assert.equal(b.chunkCount, 7);
  assert.deepEqual(b.datasets, ["data.txt"]);
  // include / exclude: substring matches, as prepare_imatrix
  assert.deepEqual([...(await loadImatrix(d, { exclude: ["attn_q"] })).entries.keys()], ["blk.0.attn_k.weight"]);
  assert.deepEqual([...(await loadImatrix(d, { include: ["attn_q", "nothing"] })).entries.keys()], ["blk.0.attn_q.weight"]);
  await assert.rejects(loadImatrix(d, { include: ["a"], exclude: ["b"] }), { code: "E_USAGE" });
});

async function refused(file: string, code: string, re: RegExp, outtype = "Q4_K_M", dir = modelDir): Promise<void> {
  const out = path.join(tmp, "refused.gguf");
  await assert.rejects(convert({ input: dir, outtype, outfile: out, force: true, imatrix: file }), (e: Error & { code?: string }) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
  assert.equal(existsSync(out), false);
}

test("an imatrix for another model is refused by name (length), as llama-quantize does", async () => {
  await refused(imGguf, "E_IMATRIX", /im\.gguf: tensor 'blk\.0\.attn_[a-z]+\.weight': importance vector of 256 values, but the tensor \[512, \d+\] needs 512/, "Q4_K_M", otherDir);
  // llama-quantize refuses it too
  const otherF32 = path.join(tmp, "other-f32.gguf");
  await convert({ input: otherDir, outtype: "f32", outfile: otherF32, force: true });
  const r = run(llamaTool("llama-quantize"), ["--imatrix", imGguf, otherF32, path.join(tmp, "o.gguf"), "Q4_K_M", "1"]);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /imatrix size 256 is different from tensor size 512/);
});

test("an imatrix naming tensors the model does not have is refused", async () => {
  const f = path.join(tmp, "extra.dat");
  await writeFile(f, dat([["blk.0.attn_q.weight", 1, new Array(256).fill(1)], ["blk.9.attn_q.weight", 1, new Array(256).fill(1)]], { chunks: 1, dataset: "x" }));
  await refused(f, "E_IMATRIX", /extra\.dat: names tensor 'blk\.9\.attn_q\.weight', which this model does not have/);
});

test("a wrong length (legacy and GGUF) is refused naming the tensor", async () => {
  const f = path.join(tmp, "short.dat");
  await writeFile(f, dat([["blk.1.ffn_down.weight", 2, new Array(256).fill(1)]], { chunks: 2, dataset: "x" }));
  await refused(f, "E_IMATRIX", /short\.dat: tensor 'blk\.1\.ffn_down\.weight': importance vector of 256 values, but the tensor \[512, 256\] needs 512/);
  const g = path.join(tmp, "short.gguf");
  await writeFile(g, ggufImatrix([["blk.0.attn_v.weight", [new Array(128).fill(2)], [1]]]));
  await refused(g, "E_IMATRIX", /short\.gguf: tensor 'blk\.0\.attn_v\.weight': importance vector of 128 values/);
});

test("truncated files are refused (every cut of the legacy file, GGUF cut in its data)", async () => {
  const full = await readFile(imDat);
  const cut = path.join(tmp, "cut.dat");
  let n = 0;
  for (const len of [0, 3, 4, 9, 30, Math.floor(full.length / 2), full.length - 9, full.length - 1]) {
    await writeFile(cut, full.subarray(0, len));
    await assert.rejects(loadImatrix(cut), (e: Error & { code?: string }) => {
      assert.equal(e.code, "E_IMATRIX", `${len}: ${e.message}`);
      assert.match(e.message, /cut\.dat/);
      return true;
    }, `cut at ${len}`);
    n++;
  }
  assert.equal(n, 8);
  await refused(cut, "E_IMATRIX", /cut\.dat: truncated/);
  const g = await readFile(imGguf);
  const gc = path.join(tmp, "cut.gguf");
  await writeFile(gc, g.subarray(0, g.length - 100));
  await refused(gc, "E_IMATRIX", /cut\.gguf: (tensor '[^']+': )?not a readable GGUF imatrix: .*runs past the end/);
});

test("GGUF imatrix without metadata, with mismatched sums/counts, or non-finite values is refused", async () => {
  const a = path.join(tmp, "nometa.gguf");
  await writeFile(a, ggufImatrix([["blk.0.attn_q.weight", [new Array(256).fill(1)], [1]]], [kv.str("general.type", "imatrix")]));
  await refused(a, "E_IMATRIX", /nometa\.gguf: missing imatrix metadata/);
  const b = path.join(tmp, "nocounts.gguf");
  await writeFile(b, ggufImatrix([["blk.0.attn_q.weight", [new Array(256).fill(1)], [1]]], undefined, "counts"));
  await refused(b, "E_IMATRIX", /nocounts\.gguf: tensor 'blk\.0\.attn_q\.weight': \.counts is missing/);
  const c = path.join(tmp, "nan.dat");
  const v = new Array(256).fill(1);
  v[17] = NaN;
  await writeFile(c, dat([["blk.0.attn_q.weight", 1, v]]));
  await refused(c, "E_IMATRIX", /nan\.dat: tensor 'blk\.0\.attn_q\.weight': non-finite importance NaN at index 17/);
  // a model file is not an imatrix
  await refused(f32, "E_IMATRIX", /missing imatrix metadata/);
  await refused(path.join(tmp, "absent.dat"), "E_IMATRIX", /absent\.dat: does not exist/);
});

test("Q2_K_S: refused without an imatrix, planned with one; a tensor it needs an entry for is refused as llama-quantize does", async () => {
  await assert.rejects(convert({ input: modelDir, outtype: "Q2_K_S", outfile: path.join(tmp, "x.gguf"), force: true }), { code: "E_IMATRIX_REQUIRED" });
  const p = await plan({ input: modelDir, outtype: "Q2_K_S", outfile: path.join(tmp, "x.gguf"), imatrix: imGguf });
  try {
    const t = p.files[0]!.tensors.find((x) => x.out.name === "blk.1.ffn_up.weight")!;
    assert.equal(t.type, GGMLType.Q2_K);
    assert.equal(t.imatrix?.length, 256);
    assert.equal(p.files[0]!.tensors.find((x) => x.out.name === "token_embd.weight")!.imatrix, undefined);
    assert.equal(p.files[0]!.kvs.find((k) => k.key === "quantize.imatrix.entries_count")?.value.value, 14);
  } finally {
    await p.close();
  }
  const out = path.join(tmp, "x.gguf");
  await assert.rejects(convert({ input: modelDir, outtype: "Q2_K_S", outfile: out, force: true, imatrix: imGguf, excludeWeights: ["ffn_up"] }), (e: Error & { code?: string }) => {
    assert.equal(e.code, "E_IMATRIX_REQUIRED");
    assert.match(e.message, /tensor 'blk\.0\.ffn_up\.weight'/);
    return true;
  });
  const r = run(llamaTool("llama-quantize"), ["--imatrix", imGguf, "--exclude-weights", "ffn_up", f32, path.join(tmp, "o2.gguf"), "Q2_K_S", "1"]);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /Missing importance matrix for tensor blk\.0\.ffn_up\.weight/);
});

test("--imatrix with a converter type (f16, q8_0) is refused; --include-weights needs --imatrix", async () => {
  await refused(imGguf, "E_USAGE", /--imatrix applies to llama-quantize presets/, "f16");
  await refused(imGguf, "E_USAGE", /--imatrix applies to llama-quantize presets/, "q8_0");
  await assert.rejects(convert({ input: modelDir, outtype: "Q4_K_M", outfile: path.join(tmp, "y.gguf"), includeWeights: ["attn"] }), { code: "E_USAGE" });
});
