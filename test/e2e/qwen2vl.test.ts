/**
 * Qwen2-VL / Qwen2.5-VL language models end to end: a tiny bf16 checkpoint (fixtures/qwen2vl.ts, real field
 * set, real Qwen2 tokenizer) → `qwen2vl` GGUF (F32) with ggufy → llama.cpp (node-llama-cpp 3.21.1, F32 KV cache)
 * → next-token log-probabilities after several positions of a text prompt, against the M-RoPE reference
 * (test/support/reference-qwen2vl.ts) with text positions t = h = w (max |Δ log p| ≤ 1e-3).
 * Teeth: the same reference with image-like positions (h, w ≠ t) is far away, so M-RoPE's sections are live in
 * the reference; and a GGUF whose rope.freq_base is overridden to 10000 must fail the bound.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf } from "../../src/index.js";
import { parseKvOverride } from "../../src/convert/metadata.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { QWEN25VL_REAL, TINY_QWEN2VL, TINY_QWEN25VL, qwenVlConfig, writeTinyQwenVl, type QwenVlDims } from "../../fixtures/qwen2vl.js";
import { testData } from "../../fixtures/paths.js";
import { withModel, logProbsAt, disposeTestLlama } from "../support/llama.js";
import { logSoftmax, maxAbsDiff } from "../support/reference-qwen2.js";
import { ReferenceQwen2VlText, textPositions } from "../support/reference-qwen2vl.js";

const TOL = 1e-3;
const tmp = await scratchDir("ggufy-e2e-qwen2vl-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

function prompt(n: number, seed = 3): number[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => r.int(151_643));
}

async function maxDiff(gguf: string, want: Float64Array[], ids: number[], at: number[]): Promise<number> {
  const got = await withModel(gguf, (m) => logProbsAt(m, ids, at, { precision: "exact" }));
  let max = 0;
  for (let k = 0; k < at.length; k++) max = Math.max(max, maxAbsDiff(got[k]!, want[k]!).max);
  return max;
}

for (const [label, dims] of [["Qwen2-VL", TINY_QWEN2VL], ["Qwen2.5-VL", TINY_QWEN25VL]] as [string, QwenVlDims][]) {
  test(`tiny ${label} → qwen2vl F32: llama.cpp's next-token distributions equal the M-RoPE reference on text (≤ ${TOL}); broken rope base and image positions are far`, async (t) => {
    const dir = path.join(tmp, dims.variant);
    await writeTinyQwenVl(dir, dims, 11);
    const gguf = path.join(tmp, `${dims.variant}-f32.gguf`);
    const r = await convert({ input: dir, outtype: "f32", outfile: gguf, mmprojOutfile: path.join(tmp, `mmproj-${dims.variant}.gguf`) });
    assert.equal(r.files.length, 2);
    const g = await readGguf(gguf);
    assert.equal(g.kvs.get("general.architecture")!.value, "qwen2vl");
    assert.deepEqual(Array.from(g.kvs.get("qwen2vl.rope.dimension_sections")!.value as ArrayLike<number>), [...dims.llm.mrope, 0]);

    const ref = await ReferenceQwen2VlText.load(dir);
    const ids = prompt(14);
    const at = [0, 3, 7, 10, 13];
    const want = ref.logits(ids, at).map(logSoftmax);
    const diff = await maxDiff(gguf, want, ids, at);
    assert.ok(diff <= TOL, `max |Δ log p| = ${diff}`);

    // the reference's M-RoPE really uses the sections: image-like positions (h, w ≠ t) give another distribution
    const imagePos = textPositions(ids.length).map(([t]) => [t, 2 * t + 1, (3 * t) % 5] as [number, number, number]);
    const moved = ref.logits(ids, at, imagePos).map(logSoftmax);
    let far = 0;
    for (let k = 0; k < at.length; k++) far = Math.max(far, maxAbsDiff(moved[k]!, want[k]!).max);
    assert.ok(far > 10 * TOL, `image positions change the reference by only ${far}`);

    t.diagnostic(`max |Δ log p| ${diff.toExponential(2)}; image positions move the reference by ${far.toFixed(3)}`);
    // a broken GGUF (rope.freq_base 10000 instead of the config's 1e6) must fail the comparison (once: same LLM in both)
    if (dims.variant !== "qwen25vl") return;
    const broken = path.join(tmp, `${dims.variant}-broken.gguf`);
    await convert({ input: dir, outtype: "f32", outfile: broken, mmprojOutfile: path.join(tmp, `mmproj-${dims.variant}-broken.gguf`), kvOverrides: [parseKvOverride("qwen2vl.rope.freq_base=float:10000")] });
    const bad = await maxDiff(broken, want, ids, at);
    assert.ok(bad > 10 * TOL, `a wrong rope base stays within ${bad}`);
    t.diagnostic(`rope.freq_base 10000: max |Δ log p| ${bad.toFixed(3)}`);
  });
}

test("the Qwen2.5-VL fixture's config.json is Qwen/Qwen2.5-VL-3B-Instruct's (test/data/qwen2.5-vl-3b-instruct): same keys in the same order, same values", async () => {
  const real = JSON.parse(await readFile(testData("qwen2.5-vl-3b-instruct", "config.json"), "utf8")) as Record<string, unknown>;
  const ours = qwenVlConfig(QWEN25VL_REAL);
  assert.deepEqual(Object.keys(ours), Object.keys(real));
  assert.deepEqual(Object.keys(ours["vision_config"] as object), Object.keys(real["vision_config"] as object));
  assert.deepEqual(ours, real);
});
