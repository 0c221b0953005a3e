/**
 * llama-quantize --imatrix end to end: a generated 8-layer Qwen2 checkpoint is converted by ggufy to
 * F32; llama.cpp's own `llama-imatrix` (built from node-llama-cpp's bundled source, test/support/llama-tools.ts)
 * computes an importance matrix on that file from a small text, in both formats it writes (GGUF and the
 * legacy .dat); then for every preset `ggufy convert --outtype P --imatrix F` must equal
 * `llama-quantize --imatrix F f32.gguf out.gguf P` tensor for tensor (names, order, types, bytes) with the
 * same KVs (quantize.imatrix.file/dataset/entries_count/chunks_count included). The machinery is
 * test/support/imatrix-e2e.ts (shared with iq-presets-imatrix.test.ts).
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { setupImatrixModel, compareWithLlamaQuantize, runTool, type ImatrixSetup } from "../support/imatrix-e2e.js";
import path from "node:path";
import { convert } from "../../src/index.js";
import { llamaTool } from "../support/llama-tools.js";
import { writeTinyMoe } from "../../fixtures/moe.js";

const tmp = await scratchDir("ggufy-e2e-imatrix-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let s: ImatrixSetup;

before(async () => {
  // 8 layers (n/8 = 1: layer 0 gets the first-layer rules), n_gqa 4, untied, ffn 288 (ffn_down rows need the fallbacks)
  s = await setupImatrixModel(tmp, { layers: 8, hidden: 256, heads: 4, kvHeads: 1, ffn: 288, tied: false, dtype: "F32", seed: 21 });
});

const compare = (preset: string, imatrix: string, extra: { include?: string[]; exclude?: string[] } = {}): Promise<Record<string, number>> =>
  compareWithLlamaQuantize(s, tmp, preset, imatrix, extra);

const PRESETS = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q8_0", "TQ1_0", "TQ2_0"];

test("llama-imatrix wrote both formats, with the dataset and chunk count llama-quantize records", async () => {
  const g = await readGguf(s.imGguf);
  assert.equal(g.kvs.get("general.type")?.value, "imatrix");
  assert.ok(g.tensors.some((t) => t.name === "blk.0.attn_q.weight.in_sum2"));
  const dat = await readFile(s.imDat);
  assert.ok(dat.readInt32LE(0) === 8 * 7 || dat.readInt32LE(0) === 8 * 5, `entries ${dat.readInt32LE(0)}`);
});

for (const p of PRESETS) {
  test(`${p} --imatrix (GGUF imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    const tally = await compare(p, s.imGguf);
    assert.equal(Object.values(tally).reduce((x, y) => x + y, 0), 3 + 8 * 12);
    if (p === "Q4_0") assert.equal(tally["q4_1"], 1, "ffn_down of layer 0 → q4_1 with an imatrix (llama_tensor_get_type)");
  });
}

// every preset with the legacy .dat imatrix as well (issue 18: both formats)
for (const p of PRESETS) {
  test(`${p} --imatrix (legacy .dat imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    await compare(p, s.imDat);
  });
}

test("--include-weights / --exclude-weights (Q4_K_M) match llama-quantize's", async () => {
  await compare("Q4_K_M", s.imGguf, { include: ["attn_v", "ffn_down"] });
  await compare("Q4_K_M", s.imGguf, { exclude: ["blk.3.", "attn_q"] });
});

test("MoE (Qwen3-MoE, 8 experts): per-expert importance slices, both formats, byte-identical to llama-quantize --imatrix", async () => {
  const dir = path.join(tmp, "moe");
  await writeTinyMoe(dir, { family: "qwen3moe", bpe: 1024, layers: 2, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, expertFf: 256, experts: 8, used: 2, dtype: "F32", seed: 31 });
  const moeF32 = path.join(tmp, "moe-f32.gguf");
  await convert({ input: dir, outtype: "f32", outfile: moeF32, force: true, threads: 1 });
  const g = path.join(tmp, "moe-imatrix.gguf");
  const d = path.join(tmp, "moe-imatrix.dat");
  const common = ["-m", moeF32, "-f", path.join(tmp, "sample.txt"), "-c", "64", "-b", "64", "-ub", "64", "--chunks", "6", "-t", "2", "--no-ppl"];
  runTool(llamaTool("llama-imatrix"), [...common, "-o", g, "--output-format", "gguf"]);
  runTool(llamaTool("llama-imatrix"), [...common, "-o", d, "--output-format", "dat"]);
  // the expert stacks have one importance row per expert
  const im = await readGguf(g);
  assert.deepEqual(im.tensors.find((t) => t.name === "blk.0.ffn_up_exps.weight.in_sum2")?.ne, [256, 8]);
  const m: ImatrixSetup = { modelDir: dir, f32: moeF32, imGguf: g, imDat: d };
  const tally = await compareWithLlamaQuantize(m, tmp, "Q4_K_M", g);
  assert.ok((tally["q4_K"] ?? 0) > 0);
  await compareWithLlamaQuantize(m, tmp, "IQ4_XS", g);
  await compareWithLlamaQuantize(m, tmp, "Q4_K_M", d);
});
