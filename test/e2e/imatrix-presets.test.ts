/**
 * llama-quantize --imatrix end to end: a generated 8-layer Qwen2 checkpoint is converted by ggufy to
 * F32; llama.cpp's own `llama-imatrix` (built from node-llama-cpp's bundled source, test/support/llama-tools.ts)
 * computes an importance matrix on that file from a small text, in both formats it writes (GGUF and the
 * legacy .dat); then for every preset `ggufy convert --outtype P --imatrix F` must equal
 * `llama-quantize --imatrix F f32.gguf out.gguf P` tensor for tensor (names, order, types, bytes) with the
 * same KVs (quantize.imatrix.file/dataset/entries_count/chunks_count included).
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { convert, type ConvertOptions } from "../../src/index.js";
import { readGguf, type GGUFFile } from "../../src/formats/gguf/reader.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { findLlamaFtype } from "../../src/quant/presets.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeSmallQwen2 } from "../../fixtures/qwen2-small.js";
import { llamaTool } from "../support/llama-tools.js";
import { writeTinyMoe } from "../../fixtures/moe.js";

const tmp = await scratchDir("ggufy-e2e-imatrix-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const TEXT = `The importance matrix records, for every weight matrix of the model, how strongly each input column is
used while the model reads a sample of text. Quantizers then spend their precision where it matters: a column
that carries large activations is kept close to its true value, one that is nearly silent may be rounded more
coarsely. The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. Numbers such as
3.14159, 2.71828 and 1.41421 appear in text too, as do names, places, and the occasional line of code:
for (let i = 0; i < n; i++) sum += x[i] * w[i]. `.repeat(6);

let modelDir = "";
let f32 = "";
let imGguf = "";
let imDat = "";
let textFile = "";

function run(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${path.basename(tool)} ${args.join(" ")} failed (${r.status}):\n${(r.stderr + r.stdout).split("\n").slice(-30).join("\n")}`);
  return r.stderr + r.stdout;
}

before(async () => {
  modelDir = path.join(tmp, "qwen2");
  // 8 layers (n/8 = 1: layer 0 gets the first-layer rules), n_gqa 4, untied, ffn 288 (ffn_down rows need the fallbacks)
  await writeSmallQwen2(modelDir, { layers: 8, hidden: 256, heads: 4, kvHeads: 1, ffn: 288, tied: false, dtype: "F32", seed: 21 });
  f32 = path.join(tmp, "qwen2-f32.gguf");
  await convert({ input: modelDir, outtype: "f32", outfile: f32, force: true });
  textFile = path.join(tmp, "sample.txt");
  await writeFile(textFile, TEXT);
  const imatrix = llamaTool("llama-imatrix");
  imGguf = path.join(tmp, "imatrix.gguf");
  imDat = path.join(tmp, "imatrix.dat");
  const common = ["-m", f32, "-f", textFile, "-c", "64", "-b", "64", "-ub", "64", "--chunks", "6", "-t", "2", "--no-ppl"];
  run(imatrix, [...common, "-o", imGguf, "--output-format", "gguf"]);
  run(imatrix, [...common, "-o", imDat, "--output-format", "dat"]);
});

function kvText(f: GGUFFile, key: string): string {
  return JSON.stringify(f.kvs.get(key), (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
}

/** ggufy --imatrix vs llama-quantize --imatrix on ggufy's F32 file; returns the type tally. */
async function compare(preset: string, imatrix: string, extra: { include?: string[]; exclude?: string[] } = {}, m: { dir: string; f32: string } = { dir: modelDir, f32 }): Promise<Record<string, number>> {
  const p = findLlamaFtype(preset);
  assert.ok(p, preset);
  const tag = `${preset}-${path.extname(imatrix).slice(1)}-${extra.include ? "inc" : extra.exclude ? "exc" : "all"}`;
  const ours = path.join(tmp, `${tag}.gguf`);
  const ref = path.join(tmp, `${tag}-llama.gguf`);
  const opts: ConvertOptions = {
    input: m.dir, outtype: preset, outfile: ours, force: true, imatrix, threads: 1,
    ...(extra.include ? { includeWeights: extra.include } : {}), ...(extra.exclude ? { excludeWeights: extra.exclude } : {}),
  };
  await convert(opts);
  const flags = [...(extra.include ?? []).flatMap((s) => ["--include-weights", s]), ...(extra.exclude ?? []).flatMap((s) => ["--exclude-weights", s])];
  run(llamaTool("llama-quantize"), ["--imatrix", imatrix, ...flags, m.f32, ref, preset, "2"]);
  const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
  const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
  try {
    assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name), `${tag}: tensor names/order`);
    const diffs: string[] = [];
    const tally: Record<string, number> = {};
    for (let i = 0; i < b.tensors.length; i++) {
      const x = a.tensors[i]!;
      const y = b.tensors[i]!;
      tally[typeName(y.type)] = (tally[typeName(y.type)] ?? 0) + 1;
      assert.deepEqual(x.ne, y.ne, x.name);
      if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
      else if (!ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) diffs.push(`${x.name} (${typeName(x.type)}): bytes differ`);
    }
    assert.deepEqual(diffs, [], tag);
    assert.deepEqual([...a.keys].sort(), [...b.keys].sort(), `${tag}: KV keys`);
    for (const k of b.keys) assert.equal(kvText(a, k), kvText(b, k), `${tag}: ${k}`);
    return tally;
  } finally {
    await Promise.all([rm(ours, { force: true }), rm(ref, { force: true })]);
  }
}

const PRESETS = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q8_0", "TQ1_0", "TQ2_0"];

test("llama-imatrix wrote both formats, with the dataset and chunk count llama-quantize records", async () => {
  const g = await readGguf(imGguf);
  assert.equal(g.kvs.get("general.type")?.value, "imatrix");
  assert.ok(g.tensors.some((t) => t.name === "blk.0.attn_q.weight.in_sum2"));
  const dat = await readFile(imDat);
  assert.ok(dat.readInt32LE(0) === 8 * 7 || dat.readInt32LE(0) === 8 * 5, `entries ${dat.readInt32LE(0)}`);
});

for (const p of PRESETS) {
  test(`${p} --imatrix (GGUF imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    const tally = await compare(p, imGguf);
    assert.equal(Object.values(tally).reduce((x, y) => x + y, 0), 3 + 8 * 12);
    if (p === "Q4_0") assert.equal(tally["q4_1"], 1, "ffn_down of layer 0 → q4_1 with an imatrix (llama_tensor_get_type)");
  });
}

for (const p of ["Q2_K_S", "Q4_K_M", "Q5_0", "IQ4_XS"]) {
  test(`${p} --imatrix (legacy .dat imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    await compare(p, imDat);
  });
}

test("--include-weights / --exclude-weights (Q4_K_M) match llama-quantize's", async () => {
  await compare("Q4_K_M", imGguf, { include: ["attn_v", "ffn_down"] });
  await compare("Q4_K_M", imGguf, { exclude: ["blk.3.", "attn_q"] });
});

test("MoE (Qwen3-MoE, 8 experts): per-expert importance slices, both formats, byte-identical to llama-quantize --imatrix", async () => {
  const dir = path.join(tmp, "moe");
  await writeTinyMoe(dir, { family: "qwen3moe", bpe: 1024, layers: 2, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, expertFf: 256, experts: 8, used: 2, dtype: "F32", seed: 31 });
  const moeF32 = path.join(tmp, "moe-f32.gguf");
  await convert({ input: dir, outtype: "f32", outfile: moeF32, force: true, threads: 1 });
  const g = path.join(tmp, "moe-imatrix.gguf");
  const d = path.join(tmp, "moe-imatrix.dat");
  const common = ["-m", moeF32, "-f", textFile, "-c", "64", "-b", "64", "-ub", "64", "--chunks", "6", "-t", "2", "--no-ppl"];
  run(llamaTool("llama-imatrix"), [...common, "-o", g, "--output-format", "gguf"]);
  run(llamaTool("llama-imatrix"), [...common, "-o", d, "--output-format", "dat"]);
  // the expert stacks have one importance row per expert
  const im = await readGguf(g);
  assert.deepEqual(im.tensors.find((t) => t.name === "blk.0.ffn_up_exps.weight.in_sum2")?.ne, [256, 8]);
  const m = { dir, f32: moeF32 };
  const tally = await compare("Q4_K_M", g, {}, m);
  assert.ok((tally["q4_K"] ?? 0) > 0);
  await compare("IQ4_XS", g, {}, m);
  await compare("Q4_K_M", d, {}, m);
});
