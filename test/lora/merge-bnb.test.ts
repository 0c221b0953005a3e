/**
 * `convert --lora` on a bitsandbytes NF4 (double-quant) base — the QLoRA case: the merged F32 GGUF equals
 * an independent float64 merge on the bnb decoder's rows within 1 ulp; `convert --lora --outtype Q4_K_M`
 * is byte-identical to llama.cpp's own `llama_model_quantize` applied to that merged F32 GGUF; and
 * `dequantize --lora --dtype f32` (the merged full-precision HF checkpoint, merge_and_unload) converted
 * with `--outtype f32` equals `convert --lora --outtype f32`.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert, dequantize, GGMLType } from "../../src/index.js";
import { findPreset } from "../../src/quant/presets.js";
import { main } from "../../src/cli/main.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { writePeftAdapter, baseShapesOf } from "../../fixtures/peft.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { llamaQuantize } from "../support/llama-quantize.js";
import { asF32, captureIO, decodedBase, ggufNameOf, ggufTensors, independentMerge, maxUlp, permuteRows } from "./merge-support.js";

const tmp = await scratchDir("ggufy-lora-bnb-");
after(() => rm(tmp, { recursive: true, force: true }));

const sizes = { hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ffn: 256, layers: 2 };
const plainDir = path.join(tmp, "plain");
await writeTinyFamily(plainDir, "llama3.1", { sizes, dtype: "BF16", seed: 162 });
const bnbDir = path.join(tmp, "nf4");
const quantized = await quantizeCheckpointToBnb(plainDir, bnbDir, { method: "nf4", doubleQuant: true, blocksize: 64 });
assert.equal(quantized.length, 2 * 7, "every Linear of the 2 blocks is NF4 (lm_head skipped, transformers' default)");
const adapter = await writePeftAdapter(path.join(tmp, "adapter"), { base: await baseShapesOf(plainDir), targetModules: "all-linear", r: 16, loraAlpha: 32, seed: 3 });
const mergedF32 = path.join(tmp, "merged-f32.gguf");
{
  const c = captureIO();
  assert.equal(await main(["convert", bnbDir, "--lora", adapter.dir, "--outtype", "f32", "--outfile", mergedF32, "--quiet", "--threads", "2"], c.io), 0, c.err());
}

test("NF4 base + LoRA → F32: = independent float64 merge on the decoded NF4 rows within 1 ulp", async () => {
  const base = await decodedBase(bnbDir);
  const want = independentMerge(base, [{ adapter }]);
  assert.equal(want.size, 2 * 7);
  const got = await ggufTensors(mergedF32);
  for (const [hf, w] of want) {
    const s = base.get(hf)!.shape;
    const g = ggufNameOf(hf);
    const nHead = /attn_q/.test(g) ? sizes.heads : /attn_k/.test(g) ? sizes.kvHeads : 0;
    const u = maxUlp(asF32(got.bytes.get(g)!), nHead ? permuteRows(w, s[0]!, s[1]!, nHead) : w);
    assert.ok(u.max <= 1, `${g}: ${u.max} ulp`);
  }
});

test("NF4 base + LoRA → Q4_K_M is byte-identical to llama_model_quantize of the merged F32 GGUF", async () => {
  const ours = path.join(tmp, "merged-q4km.gguf");
  const ref = path.join(tmp, "merged-q4km-llama.gguf");
  await Promise.all([
    convert({ input: bnbDir, outfile: ours, outtype: "Q4_K_M", threads: 2, lora: [{ dir: adapter.dir }] }),
    llamaQuantize(mergedF32, ref, { ftype: findPreset("Q4_K_M")!.ftype }),
  ]);
  const a = await ggufTensors(ours);
  const b = await ggufTensors(ref);
  assert.deepEqual(a.g.tensors.map((t) => [t.name, t.type]), b.g.tensors.map((t) => [t.name, t.type]));
  assert.ok(a.g.tensors.some((t) => t.type === GGMLType.Q4_K), "Q4_K tensors present");
  for (const [n, bytes] of b.bytes) assert.ok(Buffer.from(a.bytes.get(n)!).equals(Buffer.from(bytes)), `${n} byte-identical`);
});

test("dequantize --lora --dtype f32 → convert f32 equals convert --lora f32 (tensor bytes); the checkpoint has no quantization_config", async () => {
  const outdir = path.join(tmp, "merged-hf");
  const c = captureIO();
  assert.equal(await main(["dequantize", bnbDir, "--outdir", outdir, "--dtype", "f32", "--lora", adapter.dir, "--quiet"], c.io), 0, c.err());
  const cfg = JSON.parse(await readFile(path.join(outdir, "config.json"), "utf8")) as Record<string, unknown>;
  assert.equal(cfg["quantization_config"], undefined);
  const via = path.join(tmp, "via-hf-f32.gguf");
  await convert({ input: outdir, outfile: via, outtype: "f32", threads: 2 });
  const a = await ggufTensors(via);
  const b = await ggufTensors(mergedF32);
  assert.deepEqual([...a.bytes.keys()], [...b.bytes.keys()]);
  for (const [n, bytes] of b.bytes) assert.ok(Buffer.from(a.bytes.get(n)!).equals(Buffer.from(bytes)), `${n} identical`);
  // the library: default dtype (auto = torch_dtype bfloat16, as merge_and_unload keeps the model's dtype)
  const r = await dequantize({ input: bnbDir, outdir: path.join(tmp, "merged-hf-bf16"), lora: [{ dir: adapter.dir }] });
  assert.deepEqual(r.restoredDtypes, ["BF16"]);
});
