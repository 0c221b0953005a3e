/**
 * Phi-4 and Phi-4-mini end to end (as test/e2e/phi3.test.ts, which has the Phi-3 / Phi-3.5 cases):
 * Phi-4 (14B's field set: GPT-2-style byte-level BPE with tokenizer_class GPT2Tokenizer, GQA 4:1,
 * rope_theta 250000, no rope_scaling, sliding_window null → 0) and Phi-4-mini's shape (partial_rotary_factor
 * 0.75, tied embeddings, longrope): exact tensors and phi3.* KVs as llama.cpp's converter writes them, and
 * llama.cpp's next-token distributions equal to the reference forward pass within 1e-3 (F32, F32 KV cache).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { readGguf, kvValue } from "../../src/formats/gguf/reader.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { PHI35_SHORT_FACTOR, PHI4_MINI_LONG_FACTOR, type TinyPhi3Options } from "../../fixtures/phi3.js";
import { disposeTestLlama } from "../support/llama.js";
import { Phi3Reference } from "../support/reference-phi3.js";
import { TOL, build as buildIn, compare, checkFile, type Built } from "../support/phi3-e2e.js";

const tmp = await scratchDir("ggufy-e2e-phi4-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});
const build = (name: string, opts: TinyPhi3Options): Promise<Built> => buildIn(tmp, name, opts);

test("Phi-4 (GPT-2-style BPE, GQA 4:1, rope_theta 250000, sliding_window null → 0) → f32: converter's KVs; equal to the reference", async (t) => {
  const b = await build("phi-4", { variant: "phi-4", seed: 4 });
  await checkFile(t, b, b.fx.headDim, undefined);
  const g = await readGguf(b.gguf);
  assert.equal(kvValue(g, "tokenizer.ggml.model"), "gpt2");
  const r = await compare(b.fx.dir, [b.gguf], {});
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
});

test("Phi-4-mini shape (partial_rotary_factor 0.75: 96 of 128 dims rotated, tied embeddings, longrope) → f32: equal to the reference; fails if the whole head is rotated", async (t) => {
  const b = await build("phi-4-mini", { variant: "phi-4-mini", seed: 5 });
  const af = Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096));
  assert.ok(b.fx.tied);
  await checkFile(t, b, 96, af, { long: PHI4_MINI_LONG_FACTOR, short: PHI35_SHORT_FACTOR });
  const r = await compare(b.fx.dir, [b.gguf], { factors: "short" });
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
  // the same llama.cpp output against a reference that rotates all 128 dims (θ frequencies, no factors)
  const ref = await Phi3Reference.load(b.fx.dir);
  const wrong = await compare(b.fx.dir, [b.gguf], { factors: "none", fullRotary: true });
  t.diagnostic(`vs a full-rotary reference: ${wrong.max[0]!.toFixed(3)}`);
  assert.ok(wrong.max[0]! > 20 * TOL, `a full-rotary reference is only ${wrong.max[0]} away`);
  assert.equal(ref.cfg.ropeDims, 96);
});
