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

for (const outtype of ["f16", "q8_0"]) {
  test(`stories260K → ${outtype}: loads in llama.cpp and produces text`, async (t) => {
    const expected = words(await stories260kSamplePrefix());
    await withModel(await ggufFor(outtype), async (model) => {
      const prompt = "Once upon a time";
      const g = await greedyTokens(model, prompt, 48);
      assert.ok(g.tokens.length > 0, "generated tokens");
      assert.ok(g.text.trim().length > 0, "non-empty text");
      const got = words(prompt + g.text);
      let same = 0;
      while (same < expected.length && got[same] === expected[same]) same++;
      t.diagnostic(`${outtype}: ${JSON.stringify(prompt + g.text)} (first ${same}/${expected.length} words as llama2.c)`);
    });
  });
}
