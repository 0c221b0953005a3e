/**
 * Mistral end to end (MistralForCausalLM → GGUF `llama`, conversion/llama.py LlamaModel): v0.3
 * (sliding_window null), Mistral-Nemo (explicit head_dim 16 ≠ hidden 80 / 4 heads) and v0.1
 * (sliding_window 4096). llama.cpp's converter writes no sliding-window KV for the `llama` architecture
 * and its runtime (src/models/llama.cpp) has no sliding window: llama.cpp attends in full. The tests show
 * it — llama.cpp equals the full-attention reference, and differs from transformers' windowed attention
 * once the prompt is longer than the window — and that ggufy warns about it.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, plan, readGguf } from "../../src/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { disposeTestLlama } from "../support/llama.js";
import { TOL, archKvs, buildFamily, compare, expectTensors, f32, positionsOf, promptIds, tensorList, u32 } from "../support/family-check.js";

const tmp = await scratchDir("ggufy-e2e-mistral-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const IDS = promptIds(48, 3);
const POS = positionsOf(IDS.length);

const layer = (q: number, kv: number, h: number, ff: number) => (i: number) => [
  `blk.${i}.attn_norm.weight [${h}]`, `blk.${i}.attn_q.weight [${h}, ${q}]`, `blk.${i}.attn_k.weight [${h}, ${kv}]`,
  `blk.${i}.attn_v.weight [${h}, ${kv}]`, `blk.${i}.attn_output.weight [${q}, ${h}]`, `blk.${i}.ffn_norm.weight [${h}]`,
  `blk.${i}.ffn_gate.weight [${h}, ${ff}]`, `blk.${i}.ffn_up.weight [${h}, ${ff}]`, `blk.${i}.ffn_down.weight [${ff}, ${h}]`,
];

test("Mistral-7B-v0.3 → f32: llama tensors and KVs (no sliding window, no rope_freqs); distributions equal the reference", async (t) => {
  const m = await buildFamily(tmp, "v03", "mistral-v0.3", { seed: 21 });
  const g = await readGguf(m.gguf);
  assert.equal(g.kvs.get("general.architecture")?.value, "llama");
  assert.deepEqual(tensorList(g), expectTensors(["token_embd.weight [64, 512]", "output_norm.weight [64]", "output.weight [64, 512]"], layer(64, 32, 64, 128), 2));
  assert.deepEqual(archKvs(g, "llama"), [
    u32("llama.block_count", 2), u32("llama.context_length", 32768), u32("llama.embedding_length", 64), u32("llama.feed_forward_length", 128),
    u32("llama.attention.head_count", 4), u32("llama.attention.head_count_kv", 2), f32("llama.rope.freq_base", 1e6),
    f32("llama.attention.layer_norm_rms_epsilon", 1e-5), u32("llama.vocab_size", 512), u32("llama.rope.dimension_count", 16),
  ]);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  const wrong = await compare(m.dir, m.gguf, IDS, POS, { interleavedRope: true });
  assert.ok(wrong.max > 100 * TOL, `a wrong Q/K permutation is only ${wrong.max} away`);
});

test("Mistral-Nemo (head_dim 16 ≠ 80/4) → f32: q/k/v/o shapes from head_dim, key/value_length, rope.dimension_count 16; distributions equal the reference", async (t) => {
  const m = await buildFamily(tmp, "nemo", "mistral-nemo", { seed: 22, dtype: "BF16" });
  const g = await readGguf(m.gguf);
  assert.deepEqual(tensorList(g), expectTensors(["token_embd.weight [80, 512]", "output_norm.weight [80]", "output.weight [80, 512]"], layer(64, 32, 80, 128), 2));
  assert.deepEqual(archKvs(g, "llama"), [
    u32("llama.block_count", 2), u32("llama.context_length", 1024000), u32("llama.embedding_length", 80), u32("llama.feed_forward_length", 128),
    u32("llama.attention.head_count", 4), u32("llama.attention.head_count_kv", 2), f32("llama.rope.freq_base", 1e6),
    f32("llama.attention.layer_norm_rms_epsilon", 1e-5), u32("llama.attention.key_length", 16), u32("llama.attention.value_length", 16),
    u32("llama.vocab_size", 512), u32("llama.rope.dimension_count", 16),
  ]);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
});

test("Mistral-7B-v0.1 (sliding_window 4096) → f32: no window KV, a warning; llama.cpp attends in full (equals the full reference, not transformers' window beyond it)", async (t) => {
  // the real config: window 4096 ≥ this prompt, so transformers and llama.cpp agree
  const m = await buildFamily(tmp, "v01", "mistral-v0.1", { seed: 23 });
  const g = await readGguf(m.gguf);
  assert.ok(!g.keys.some((k) => /sliding_window/.test(k)), "no sliding-window KV (llama.cpp's converter writes none for llama)");
  assert.equal(g.kvs.get("llama.rope.freq_base")?.value, 10000);
  const p = await plan({ input: m.dir, outfile: path.join(tmp, "v01-plan.gguf"), outtype: "f32" });
  let w0: string[] = [];
  try {
    const w = (w0 = [...(p.models[0]!.warnings ?? [])]);
    assert.equal(w.length, 1);
    assert.match(w[0]!, /^sliding_window 4096: llama\.cpp's llama architecture has no sliding-window attention/);
  } finally {
    await p.close();
  }
  // convert() hands it to onWarning (the CLI prints it as "ggufy: warning: …" on stderr)
  const seen: string[] = [];
  await convert({ input: m.dir, outfile: path.join(tmp, "v01-again.gguf"), outtype: "f32", onWarning: (s) => seen.push(s) });
  assert.deepEqual(seen, w0);
  const r = await compare(m.dir, m.gguf, IDS, POS);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);

  // a window of 16 (shorter than the 48-token prompt): llama.cpp still attends in full
  const dir16 = path.join(tmp, "v01-w16");
  await writeTinyFamily(dir16, "mistral-v0.1", { seed: 23, editConfig: (c) => (c["sliding_window"] = 16) });
  const full = await compare(dir16, m.gguf, IDS, POS);
  const windowed = await compare(dir16, m.gguf, IDS, POS, { slidingWindow: 16 });
  t.diagnostic(`window 16, 48 tokens: llama.cpp vs full attention ${full.max.toExponential(3)}, vs transformers' window ${windowed.max.toFixed(3)}`);
  assert.ok(full.max <= TOL, `llama.cpp vs full attention: ${full.max}`);
  assert.ok(windowed.max > 100 * TOL, `the window changes the result by only ${windowed.max}`);
  // Mistral v0.3 / Nemo (sliding_window null) get no warning
  const d3 = path.join(tmp, "v03-warn");
  await writeTinyFamily(d3, "mistral-v0.3", { seed: 21 });
  const p3 = await plan({ input: d3, outfile: path.join(tmp, "v03-plan.gguf"), outtype: "f32" });
  try {
    assert.deepEqual(p3.models[0]!.warnings ?? [], []);
  } finally {
    await p3.close();
  }
});
