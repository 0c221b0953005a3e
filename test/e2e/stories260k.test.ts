/**
 * End to end on a real trained model: Karpathy's stories260K (llama2.c, Llama-2 architecture, 512-token
 * SentencePiece vocabulary) in the HF layout → GGUF with ggufy → llama.cpp (node-llama-cpp 3.21.1).
 * At f32, llama.cpp's greedy text must be llama2.c's greedy sample, word for word.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { withModel, greedyTokens, logProbsAt, tokenize, disposeTestLlama } from "../support/llama.js";
import { ReferenceDecoder, maxAbsDiff, logSoftmax } from "../support/reference-qwen2.js";
import { STORIES260K_HF_DIR, STORIES260K_DOC_SAMPLE, stories260kSamplePrefix, words } from "../support/reference-llama.js";

const tmp = await scratchDir("ggufy-e2e-stories-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const ggufs = new Map<string, Promise<string>>();
/** Convert once per outtype (lazily), return the GGUF path. */
function ggufFor(outtype: string): Promise<string> {
  let p = ggufs.get(outtype);
  if (!p) {
    p = (async () => {
      const outfile = path.join(tmp, `stories260K-${outtype}.gguf`);
      const r = await convert({ input: STORIES260K_HF_DIR(), outfile, outtype });
      assert.equal(r.files.length, 1);
      assert.equal(path.resolve(r.files[0]!.path), path.resolve(outfile));
      return outfile;
    })();
    ggufs.set(outtype, p);
  }
  return p;
}

test("stories260K → f32: greedy continuation of 'Once upon a time' is llama2.c's sample (PROVENANCE.md) word for word", async (t) => {
  const expected = words(await stories260kSamplePrefix());
  assert.ok(expected.length >= 20, `PROVENANCE.md quotes ${expected.length} words`);
  await withModel(await ggufFor("f32"), async (model) => {
    const prompt = "Once upon a time";
    const g = await greedyTokens(model, prompt, 80);
    assert.equal(g.promptTokens[0], 1, "BOS first (add_bos_token)");
    const got = words(prompt + g.text);
    t.diagnostic(`llama.cpp f32: ${JSON.stringify(prompt + g.text)}`);
    assert.deepEqual(got.slice(0, expected.length), expected);
  });
});

test("stories260K → f32: greedy from BOS alone reproduces the whole 256-step sample of llama2.c's doc/stories260K.md", async () => {
  await withModel(await ggufFor("f32"), async (model) => {
    const g = await greedyTokens(model, "", 256);
    assert.deepEqual(g.promptTokens, [1]);
    assert.deepEqual(words(g.text), words(STORIES260K_DOC_SAMPLE));
    assert.equal(g.text, STORIES260K_DOC_SAMPLE);
  });
});

test("stories260K → f32: next-token distributions equal the reference forward pass (max |Δ log p| ≤ 1e-3)", async (t) => {
  const ref = await ReferenceDecoder.load(STORIES260K_HF_DIR());
  await withModel(await ggufFor("f32"), async (model) => {
    const ids = [1, ...tokenize(model, "Once upon a time, there was a dog named Max. He liked to run.")];
    const positions = ids.map((_, i) => i);
    const ours = await logProbsAt(model, ids, positions);
    const want = ref.logits(ids, positions).map(logSoftmax);
    let max = 0;
    for (const p of positions) max = Math.max(max, maxAbsDiff(ours[p]!, want[p]!).max);
    t.diagnostic(`max |Δ log p| over ${positions.length} positions × 512 tokens: ${max.toExponential(3)}`);
    assert.ok(max <= 1e-3, `max |Δ log p| = ${max}`);
  });
});

// The truth for the lossy types: the reference forward pass (test/support/reference-qwen2.ts, float64, on the HF
// checkpoint — no ggufy code involved) greedy from BOS, which is llama2.c's published 256-step sample
// (test/support/reference.test.ts). Measured with node-llama-cpp 3.21.1 on x86-64: llama.cpp on ggufy's f16
// agrees for all 256 tokens, on q8_0 for the first 114 (then a near-tie flips). The thresholds leave room for
// other CPUs' SIMD paths and still fail a broken conversion: with the Q/K rows left unpermuted
// (permutedSourceRow returning its input) every type agrees for 3 tokens only, with the inverse permutation for 10.
const REF_STEPS = 256;
const MIN_AGREEMENT: Record<string, number> = { f16: 192, q8_0: 48 };
let refGreedy: Promise<number[]> | undefined;
const referenceGreedy = (): Promise<number[]> => (refGreedy ??= ReferenceDecoder.load(STORIES260K_HF_DIR()).then((r) => r.greedy([1], REF_STEPS, [2])));
const agreement = (a: readonly number[], b: readonly number[]): number => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

for (const outtype of ["f16", "q8_0"]) {
  test(`stories260K → ${outtype}: greedy from BOS follows the reference forward pass for ≥ ${MIN_AGREEMENT[outtype]} of ${REF_STEPS} tokens`, async (t) => {
    const want = await referenceGreedy();
    assert.equal(want.length, REF_STEPS);
    await withModel(await ggufFor(outtype), async (model) => {
      const g = await greedyTokens(model, "", REF_STEPS);
      assert.deepEqual(g.promptTokens, [1]);
      const same = agreement(g.tokens, want);
      t.diagnostic(`${outtype}: the first ${same} of ${REF_STEPS} greedy tokens equal the reference's`);
      assert.ok(same >= MIN_AGREEMENT[outtype]!, `${outtype}: only the first ${same} greedy tokens equal the reference's (want ≥ ${MIN_AGREEMENT[outtype]}): ${JSON.stringify(g.text)}`);
    });
  });
}

test("stories260K → q8_0: the continuation of 'Once upon a time' starts as f32's and as llama2.c's sample", async (t) => {
  const expected = words(await stories260kSamplePrefix());
  const prompt = "Once upon a time";
  const f32 = await withModel(await ggufFor("f32"), (model) => greedyTokens(model, prompt, 48));
  await withModel(await ggufFor("q8_0"), async (model) => {
    const g = await greedyTokens(model, prompt, 48);
    assert.deepEqual(g.promptTokens, f32.promptTokens);
    const same = agreement(g.tokens, f32.tokens);
    const got = words(prompt + g.text);
    let sameWords = 0;
    while (sameWords < expected.length && got[sameWords] === expected[sameWords]) sameWords++;
    t.diagnostic(`q8_0: ${JSON.stringify(prompt + g.text)} (first ${same}/48 tokens as f32, ${sameWords}/${expected.length} words as llama2.c)`);
    assert.ok(same >= 24, `q8_0's first ${same} tokens equal f32's (want ≥ 24)`);
    assert.ok(sameWords >= Math.min(12, expected.length), `q8_0's first ${sameWords} words are llama2.c's (want ≥ 12)`);
  });
});
