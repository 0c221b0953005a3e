/**
 * `convert --lora` on the MiniCPM-V-2_6-int4 layout (tiny: NF4 LLM and SigLIP linears, bf16 resampler): an
 * adapter on the LLM's q/v projections and, in the vision tower, on q_proj and fc1, and on the resampler's
 * kv_proj (bf16 there). The LLM GGUF and the mmproj both carry the merged weights — each equal to an
 * independent float64 merge of the decoded base within 1 ulp (the GGUF names and layouts from the fixture's
 * spec of llama.cpp's legacy MiniCPM-V scripts) — and every other tensor of both files is byte-identical
 * to the plain conversion.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4, specLlmTensors, specMmprojTensors, TINY_MINICPMV_DIMS } from "../../fixtures/minicpmv.js";
import { writePeftAdapter, baseShapesOf } from "../../fixtures/peft.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { asF32, decodedBase, ggufTensors, independentMerge, maxUlp } from "./merge-support.js";

const tmp = await scratchDir("ggufy-lora-minicpmv-");
after(() => rm(tmp, { recursive: true, force: true }));

test("MiniCPM-V int4 + adapter on LLM and vision: LLM GGUF and mmproj merged within 1 ulp, the rest byte-identical", async () => {
  const bf16 = path.join(tmp, "bf16");
  const int4 = path.join(tmp, "int4");
  await writeTinyMinicpmv(bf16);
  await writeTinyMinicpmvInt4(bf16, int4);
  const adapter = await writePeftAdapter(path.join(tmp, "adapter"), { base: await baseShapesOf(bf16), targetModules: ["q_proj", "v_proj", "fc1", "kv_proj"], r: 8, loraAlpha: 16, seed: 9 });
  const targeted = new Set(adapter.targets.map((t) => t.baseName));
  assert.ok([...targeted].some((n) => n.startsWith("llm.")) && [...targeted].some((n) => n.startsWith("vpm.")) && targeted.has("resampler.kv_proj.weight"));
  const conv = (lora: boolean, tag: string) =>
    convert({ input: int4, outtype: "f32", mmprojType: "f32", outfile: path.join(tmp, `${tag}.gguf`), mmprojOutfile: path.join(tmp, `mmproj-${tag}.gguf`), threads: 2, ...(lora ? { lora: [{ dir: adapter.dir }] } : {}) });
  await conv(false, "plain");
  await conv(true, "merged");
  const base = await decodedBase(int4, (n) => targeted.has(n));
  const want = independentMerge(base, [{ adapter }]);
  const d = TINY_MINICPMV_DIMS;
  const specs = [
    ...specLlmTensors(d).map((s) => ({ ...s, file: "" })),
    ...specMmprojTensors(d).filter((s) => s.how === "copy" && s.source).map((s) => ({ name: s.name, source: s.source!, file: "mmproj-" })),
  ];
  let merged = 0;
  for (const prefix of ["", "mmproj-"]) {
    const got = await ggufTensors(path.join(tmp, `${prefix}merged.gguf`));
    const plain = await ggufTensors(path.join(tmp, `${prefix}plain.gguf`));
    assert.deepEqual([...got.bytes.keys()], [...plain.bytes.keys()]);
    for (const [name, bytes] of plain.bytes) {
      const s = specs.find((x) => x.file === prefix && x.name === name);
      const w = s ? want.get(s.source) : undefined;
      if (w) {
        const u = maxUlp(asF32(got.bytes.get(name)!), w);
        assert.ok(u.max <= 1, `${prefix}${name}: ${u.max} ulp`);
        assert.notDeepEqual(got.bytes.get(name), bytes, `${name} changed`);
        merged++;
      } else assert.deepEqual(got.bytes.get(name), bytes, `${prefix}${name} byte-identical to the plain conversion`);
    }
  }
  // LLM q, v of 2 layers; vision q, fc1 of 2 layers … and v_proj there too; resampler kv
  assert.equal(merged, targeted.size, "every targeted tensor was found merged in one of the two files");
});
