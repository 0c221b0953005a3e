/**
 * Llama 3.1 / 3.2 end to end: a tiny LlamaForCausalLM with Llama-3.1-8B-Instruct's / Llama-3.2-1B's config
 * field set (fixtures/llama3.ts; rope_scaling llama3 with original_max_position_embeddings 32 so that the
 * scaled frequencies matter within 48 tokens) → GGUF F32 with ggufy →
 * (a) exactly the tensors, shapes and `llama.*` KVs llama.cpp's converter writes (conversion/llama.py
 *     LlamaModel + base.py TextModel.set_gguf_parameters; rope_freqs from generate_extra_tensors);
 * (b) llama.cpp's next-token distributions equal the reference forward pass with transformers' llama3
 *     frequency scaling (≤ 1e-3), and the same comparison fails when rope_freqs is dropped from the file.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { readGguf, readGgufTensorBytes } from "../../src/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { disposeTestLlama } from "../support/llama.js";
import { ReferenceDecoder } from "../support/reference-qwen2.js";
import { TOL, archKvs, buildFamily, compare, expectTensors, f32, positionsOf, promptIds, tensorList, u32 } from "../support/family-check.js";

const tmp = await scratchDir("ggufy-e2e-llama3-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const IDS = promptIds(48);
const POS = positionsOf(IDS.length);

const llamaLayer = (q: number, kv: number, h: number, ff: number) => (i: number) => [
  `blk.${i}.attn_norm.weight [${h}]`, `blk.${i}.attn_q.weight [${h}, ${q}]`, `blk.${i}.attn_k.weight [${h}, ${kv}]`,
  `blk.${i}.attn_v.weight [${h}, ${kv}]`, `blk.${i}.attn_output.weight [${q}, ${h}]`, `blk.${i}.ffn_norm.weight [${h}]`,
  `blk.${i}.ffn_gate.weight [${h}, ${ff}]`, `blk.${i}.ffn_up.weight [${h}, ${ff}]`, `blk.${i}.ffn_down.weight [${ff}, ${h}]`,
];

test("Llama 3.1 (rope_type llama3, untied) → f32: llama.cpp's tensors and KVs, rope_freqs; distributions equal the reference; dropping rope_freqs breaks them", async (t) => {
  const m = await buildFamily(tmp, "llama31", "llama3.1", { seed: 11 });
  const g = await readGguf(m.gguf);
  assert.deepEqual(
    tensorList(g),
    expectTensors(["token_embd.weight [64, 512]", "output_norm.weight [64]", "output.weight [64, 512]", "rope_freqs.weight [8]"], llamaLayer(64, 32, 64, 128), 2),
  );
  // base.py TextModel.set_gguf_parameters order, then LlamaModel's vocab_size and rope.dimension_count; llama3 writes no scaling KV
  assert.deepEqual(archKvs(g, "llama"), [
    u32("llama.block_count", 2), u32("llama.context_length", 131072), u32("llama.embedding_length", 64), u32("llama.feed_forward_length", 128),
    u32("llama.attention.head_count", 4), u32("llama.attention.head_count_kv", 2), f32("llama.rope.freq_base", 500000),
    f32("llama.attention.layer_norm_rms_epsilon", 1e-5), u32("llama.vocab_size", 512), u32("llama.rope.dimension_count", 16),
  ]);
  assert.equal(g.kvs.get("general.architecture")?.value, "llama");

  // rope_freqs: the per-pair divisors of the frequencies = reference's plain inv_freq / transformers' llama3 inv_freq
  const rf = g.tensors.find((x) => x.name === "rope_freqs.weight")!;
  const got = new Float32Array((await readGgufTensorBytes(g, rf)).slice().buffer);
  const ref = await ReferenceDecoder.load(m.dir);
  const scaled = ref.inverseFrequencies;
  for (let j = 0; j < 8; j++) {
    const plain = 1 / Math.pow(500000, (2 * j) / 16);
    assert.ok(Math.abs(got[j]! - plain / scaled[j]!) <= 1e-6 * got[j]!, `rope_freqs[${j}] = ${got[j]}, transformers ${plain / scaled[j]!}`);
  }
  // with original context 64, low/high 1/4: wavelengths below 16 keep 1 (pair 0: 2π), above 64 get 8, between blend (pair 1: 2π·500000^(1/8) ≈ 32.5)
  assert.equal(got[0], 1);
  assert.ok(got[1]! > 1 && got[1]! < 8, `rope_freqs[1] = ${got[1]} is blended`);
  assert.equal(got[7], 8);

  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| over positions [${r.positions.join(",")}] × 512 = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);

  // the scaling matters at these positions: the reference without it is far from llama.cpp with it …
  const plain = await compare(m.dir, m.gguf, IDS, POS, { noRopeScaling: true });
  t.diagnostic(`vs the reference without llama3 scaling: ${plain.max.toFixed(3)}`);
  assert.ok(plain.max > 100 * TOL, `llama3 scaling changes the result by only ${plain.max}`);
  // … and a GGUF without rope_freqs (the same checkpoint converted with rope_scaling removed) fails the comparison
  const broken = await buildFamily(tmp, "llama31-norope", "llama3.1", { seed: 11, editConfig: (c) => delete c["rope_scaling"] });
  const gb = await readGguf(broken.gguf);
  assert.deepEqual(tensorList(gb), tensorList(g).filter((n) => !n.startsWith("rope_freqs.")), "only rope_freqs is missing");
  const rb = await compare(m.dir, broken.gguf, IDS, POS);
  t.diagnostic(`GGUF without rope_freqs vs the reference: ${rb.max.toFixed(3)}`);
  assert.ok(rb.max > 100 * TOL, `dropping rope_freqs moves the distributions by only ${rb.max}`);
  // that file is Llama 3.0's form (no rope_scaling, θ 500000): it equals the reference of its own config
  const r30 = await compare(broken.dir, broken.gguf, IDS, POS);
  t.diagnostic(`Llama 3.0 form (no rope_scaling) vs its reference: ${r30.max.toExponential(3)}`);
  assert.ok(r30.max <= TOL, `Llama 3.0 form: max |Δ log p| = ${r30.max}`);
});

test("Llama 3.2 (head_dim, tie_word_embeddings: no lm_head, factor 32) → f32: no output.weight, key/value_length; distributions equal the reference", async (t) => {
  const m = await buildFamily(tmp, "llama32", "llama3.2", { seed: 12, dtype: "BF16" });
  assert.ok(!m.tensors.some((x) => x.name === "lm_head.weight"), "the checkpoint has no lm_head");
  const g = await readGguf(m.gguf);
  // head_dim 32 (hidden 64 / 4 heads would be 16): q is 4·32 rows, rope_freqs has 32/2 entries
  assert.deepEqual(
    tensorList(g),
    expectTensors(["token_embd.weight [64, 512]", "output_norm.weight [64]", "rope_freqs.weight [16]"], llamaLayer(128, 64, 64, 128), 2),
  );
  assert.deepEqual(archKvs(g, "llama"), [
    u32("llama.block_count", 2), u32("llama.context_length", 131072), u32("llama.embedding_length", 64), u32("llama.feed_forward_length", 128),
    u32("llama.attention.head_count", 4), u32("llama.attention.head_count_kv", 2), f32("llama.rope.freq_base", 500000),
    f32("llama.attention.layer_norm_rms_epsilon", 1e-5), u32("llama.attention.key_length", 32), u32("llama.attention.value_length", 32),
    u32("llama.vocab_size", 512), u32("llama.rope.dimension_count", 32),
  ]);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  const plain = await compare(m.dir, m.gguf, IDS, POS, { noRopeScaling: true });
  assert.ok(plain.max > 100 * TOL, `llama3 scaling (factor 32) changes the result by only ${plain.max}`);
});

test("LlamaForCausalLM with linear rope_scaling (factor 4, as long-context Llama 2 fine-tunes ship it) → rope.scaling.type/factor KVs, no rope_freqs; distributions equal the reference", async (t) => {
  const m = await buildFamily(tmp, "llama-linear", "llama3.1", { seed: 13, editConfig: (c) => ((c["rope_scaling"] = { type: "linear", factor: 4.0 }), (c["rope_theta"] = 10000.0)) });
  const g = await readGguf(m.gguf);
  assert.ok(!g.tensors.some((x) => x.name === "rope_freqs.weight"));
  const kvs = archKvs(g, "llama");
  assert.deepEqual(kvs.slice(6, 9), [["llama.rope.scaling.type", "STRING", "linear"], f32("llama.rope.scaling.factor", 4), f32("llama.rope.freq_base", 10000)]);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  const plain = await compare(m.dir, m.gguf, IDS, POS, { noRopeScaling: true });
  assert.ok(plain.max > 100 * TOL, `linear scaling changes the result by only ${plain.max}`);
});
