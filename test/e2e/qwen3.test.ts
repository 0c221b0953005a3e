/**
 * Qwen3 dense and Qwen2.5 with YaRN end to end.
 * - Qwen3ForCausalLM (Qwen3-8B's config field set, head_dim 32 ≠ 64/4) → GGUF `qwen3` (conversion/qwen.py
 *   Qwen3Model: base KVs only, attn_q_norm/attn_k_norm): exact tensors/shapes/KVs; llama.cpp's distributions
 *   equal the reference with transformers' per-head q/k RMSNorms (modeling_qwen3.py), and not the reference
 *   without them.
 * - Qwen2.5-7B-Instruct + the model card's YaRN block → `qwen2.rope.scaling.{type,factor,original_context_length}`
 *   exactly as base.py TextModel.set_gguf_parameters writes them (no ext/attn/beta KVs: the config has none);
 *   llama.cpp's YaRN runtime equals the reference's transformers YaRN, and a file without the KVs does not.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { readGguf } from "../../src/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { disposeTestLlama } from "../support/llama.js";
import { TOL, archKvs, buildFamily, compare, expectTensors, f32, positionsOf, promptIds, str, tensorList, u32 } from "../support/family-check.js";

const tmp = await scratchDir("ggufy-e2e-qwen3-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const IDS = promptIds(48, 5);
const POS = positionsOf(IDS.length);

test("Qwen3-8B-style (head_dim, q/k norms, no biases) → f32: qwen3 tensors and KVs; distributions equal the reference", async (t) => {
  const m = await buildFamily(tmp, "qwen3", "qwen3", { seed: 31 });
  const g = await readGguf(m.gguf);
  assert.equal(g.kvs.get("general.architecture")?.value, "qwen3");
  assert.deepEqual(
    tensorList(g),
    expectTensors(["token_embd.weight [64, 512]", "output_norm.weight [64]", "output.weight [64, 512]"], (i) => [
      `blk.${i}.attn_norm.weight [64]`, `blk.${i}.attn_q.weight [64, 128]`, `blk.${i}.attn_k.weight [64, 64]`, `blk.${i}.attn_v.weight [64, 64]`,
      `blk.${i}.attn_output.weight [128, 64]`, `blk.${i}.attn_q_norm.weight [32]`, `blk.${i}.attn_k_norm.weight [32]`, `blk.${i}.ffn_norm.weight [64]`,
      `blk.${i}.ffn_gate.weight [64, 128]`, `blk.${i}.ffn_up.weight [64, 128]`, `blk.${i}.ffn_down.weight [128, 64]`,
    ], 2),
  );
  // Qwen3Model → Qwen2Model.set_gguf_parameters = TextModel's (no vocab_size, no rope.dimension_count)
  assert.deepEqual(archKvs(g, "qwen3"), [
    u32("qwen3.block_count", 2), u32("qwen3.context_length", 40960), u32("qwen3.embedding_length", 64), u32("qwen3.feed_forward_length", 128),
    u32("qwen3.attention.head_count", 4), u32("qwen3.attention.head_count_kv", 2), f32("qwen3.rope.freq_base", 1e6),
    f32("qwen3.attention.layer_norm_rms_epsilon", 1e-6), u32("qwen3.attention.key_length", 32), u32("qwen3.attention.value_length", 32),
  ]);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  const noNorm = await compare(m.dir, m.gguf, IDS, POS, { noQkNorm: true });
  t.diagnostic(`vs the reference without q/k norms: ${noNorm.max.toFixed(3)}`);
  assert.ok(noNorm.max > 100 * TOL, `q/k norms change the result by only ${noNorm.max}`);
});

test("Qwen2.5-7B-Instruct + YaRN block (factor 4, original 32768, \"type\": \"yarn\") → qwen2.rope.scaling.* KVs as base.py writes them; llama.cpp's YaRN equals transformers'", async (t) => {
  const m = await buildFamily(tmp, "qwen25-yarn", "qwen2.5-yarn", { seed: 33 });
  const g = await readGguf(m.gguf);
  assert.deepEqual(archKvs(g, "qwen2"), [
    u32("qwen2.block_count", 2), u32("qwen2.context_length", 32768), u32("qwen2.embedding_length", 64), u32("qwen2.feed_forward_length", 128),
    u32("qwen2.attention.head_count", 4), u32("qwen2.attention.head_count_kv", 2),
    str("qwen2.rope.scaling.type", "yarn"), f32("qwen2.rope.scaling.factor", 4), u32("qwen2.rope.scaling.original_context_length", 32768),
    f32("qwen2.rope.freq_base", 1e6), f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6),
  ]);
  assert.deepEqual(
    tensorList(g).filter((n) => n.startsWith("blk.0.attn_")),
    ["blk.0.attn_k.bias [32]", "blk.0.attn_k.weight [64, 32]", "blk.0.attn_norm.weight [64]", "blk.0.attn_output.weight [64, 64]", "blk.0.attn_q.bias [64]", "blk.0.attn_q.weight [64, 64]", "blk.0.attn_v.bias [32]", "blk.0.attn_v.weight [64, 32]"],
  );
  // llama.cpp's YaRN (llama-context.cpp: attention factor get_mscale(factor) = 1 + 0.1·ln 4; ggml rope_yarn's ramp
  // between the beta_fast/beta_slow correction dimensions) equals current transformers' _compute_yarn_parameters with
  // the explicit factor 4 (earlier transformers 4.x releases used max_position_embeddings / original = 1 here whenever original_max_position_embeddings is set, i.e. no YaRN at all)
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| vs the YaRN reference = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  const plain = await compare(m.dir, m.gguf, IDS, POS, { noRopeScaling: true });
  t.diagnostic(`vs the reference without YaRN: ${plain.max.toFixed(3)}`);
  assert.ok(plain.max > 100 * TOL, `YaRN changes the result by only ${plain.max}`);
  // the same checkpoint converted without the YaRN block (no scaling KVs) fails the comparison
  const broken = await buildFamily(tmp, "qwen25-noyarn", "qwen2.5-yarn", { seed: 33, editConfig: (c) => delete c["rope_scaling"] });
  const rb = await compare(m.dir, broken.gguf, IDS, POS);
  assert.ok(rb.max > 100 * TOL, `dropping the YaRN KVs moves the distributions by only ${rb.max}`);
});

test("Qwen3, tied embeddings (Qwen3-0.6B/4B style: no lm_head), BF16, with its tokenizer family (the real Qwen2 BPE, 151,936 rows) → f32: no output.weight, gpt2/qwen2 vocabulary, chat tokens special; distributions on a tokenized chat prompt equal the reference", async (t) => {
  const m = await buildFamily(tmp, "qwen3-bpe", "qwen3", { seed: 34, dtype: "BF16", tokenizer: "qwen2-bpe", editConfig: (c) => (c["tie_word_embeddings"] = true) });
  const g = await readGguf(m.gguf);
  assert.equal(g.kvs.get("tokenizer.ggml.model")?.value, "gpt2");
  assert.equal(g.kvs.get("tokenizer.ggml.pre")?.value, "qwen2");
  assert.deepEqual(tensorList(g).filter((n) => /^(token_embd|output)\./.test(n)), ["token_embd.weight [64, 151936]"]);
  const { withModel, tokenize } = await import("../support/llama.js");
  const ids = await withModel(m.gguf, (model) => tokenize(model, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", true));
  assert.equal(ids[0], 151644);
  assert.ok(ids.includes(151645));
  const r = await compare(m.dir, m.gguf, ids, positionsOf(ids.length, 6));
  t.diagnostic(`${ids.length} tokens, max |Δ log p| over ${r.positions.length} positions × 151936 = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
});
