/**
 * Gemma 2 and Gemma 3 (text) end to end: a tiny generated checkpoint with the real config field set →
 * GGUF with ggufy → exactly the tensors and KVs llama.cpp's converter writes (conversion/gemma.py
 * Gemma2Model / Gemma3Model, base.py TextModel.set_gguf_parameters) → llama.cpp (node-llama-cpp 3.21.1)
 * whose next-token distributions over a prompt longer than the sliding window equal the reference
 * forward pass of the HF architecture (test/support/reference-gemma.ts). The same comparison on a GGUF
 * whose norms lack the converter's + 1, and against wrong references (no sliding window, no softcapping,
 * one RoPE base), must exceed the bound — so the comparison can fail.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, open, rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf, readGgufTensorBytes, GGMLType } from "../../src/index.js";
import { kvValue, type GGUFFile } from "../../src/formats/gguf/reader.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyGemma, GEMMA_TINY_VOCAB, type TinyGemma, type TinyGemmaOptions } from "../../fixtures/gemma.js";
import { withModel, logProbsAt, tokenize, disposeTestLlama } from "../support/llama.js";
import { logSoftmax, maxAbsDiff } from "../support/reference-qwen2.js";
import { GemmaReference, type GemmaVariant } from "../support/reference-gemma.js";

const TOL = 1e-3;

const tmp = await scratchDir("ggufy-e2e-gemma-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const built = new Map<string, Promise<{ fx: TinyGemma; gguf: string; warnings: string[] }>>();
function tiny(name: string, opts: TinyGemmaOptions): Promise<{ fx: TinyGemma; gguf: string; warnings: string[] }> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      const fx = await writeTinyGemma(path.join(tmp, name), opts);
      const gguf = path.join(tmp, `${name}-f32.gguf`);
      const r = await convert({ input: fx.dir, outfile: gguf, outtype: "f32" });
      assert.equal(r.files.length, 1);
      return { fx, gguf, warnings: [...((r as unknown as { warnings?: string[] }).warnings ?? [])] };
    })();
    built.set(name, p);
  }
  return p;
}

/** A copy of `gguf` whose every `*norm.weight` (F32) holds v − 1: the file a converter forgetting Gemma's + 1 writes. */
async function withoutPlusOne(gguf: string): Promise<string> {
  const out = gguf.replace(/\.gguf$/, "-no-plus-one.gguf");
  await copyFile(gguf, out);
  const g = await readGguf(gguf);
  const fh = await open(out, "r+");
  try {
    for (const t of g.tensors.filter((t) => t.name.endsWith("norm.weight"))) {
      assert.equal(t.type, GGMLType.F32);
      const v = new Float32Array((await readGgufTensorBytes(g, t)).slice().buffer);
      for (let i = 0; i < v.length; i++) v[i] = v[i]! - 1;
      await fh.write(new Uint8Array(v.buffer), 0, v.byteLength, t.fileOffset);
    }
  } finally {
    await fh.close();
  }
  return out;
}

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";

interface Cmp {
  max: number;
  positions: number[];
  nTokens: number;
  variants: Record<string, number>;
  /** the same against the reference with llama.cpp's float16 GELU */
  ggmlGelu: number;
}

/** llama.cpp vs the reference after the first, every third and the last position of the prompt. */
async function compare(dir: string, gguf: string, variants: Record<string, GemmaVariant> = {}): Promise<Cmp> {
  const ref = await GemmaReference.load(dir);
  return withModel(gguf, async (model) => {
    const ids = tokenize(model, PROMPT);
    const positions = ids.map((_, i) => i).filter((i) => i % 3 === 0 || i === ids.length - 1);
    const ours = await logProbsAt(model, ids, positions, { precision: "exact" });
    const want = ref.logits(ids, positions).map(logSoftmax);
    let max = 0;
    for (let k = 0; k < positions.length; k++) max = Math.max(max, maxAbsDiff(ours[k]!, want[k]!).max);
    const v: Record<string, number> = {};
    for (const [name, variant] of Object.entries(variants)) {
      const w = ref.logits(ids, positions, variant).map(logSoftmax);
      let m = 0;
      for (let k = 0; k < positions.length; k++) m = Math.max(m, maxAbsDiff(ours[k]!, w[k]!).max);
      v[name] = m;
    }
    // diagnostic: llama.cpp's CPU GELU rounds through float16 (ggml-cpu vec.h GGML_GELU_FP16); emulated, the rest is float32 noise
    const wg = ref.logits(ids, positions, { ggmlGelu: true }).map(logSoftmax);
    let ggmlGelu = 0;
    for (let k = 0; k < positions.length; k++) ggmlGelu = Math.max(ggmlGelu, maxAbsDiff(ours[k]!, wg[k]!).max);
    return { max, positions, nTokens: ids.length, variants: v, ggmlGelu };
  });
}

async function compareOnly(dir: string, gguf: string): Promise<number> {
  return (await compare(dir, gguf)).max;
}

type Kv = [string, number | string | boolean];

function assertKvs(g: GGUFFile, arch: string, want: Kv[]): void {
  // the arch KVs, in the converter's order, and nothing else of the arch
  const archKeys = g.keys.filter((k) => k.startsWith(`${arch}.`) || k === "general.file_type");
  assert.deepEqual(archKeys, want.map(([k]) => k), "arch KVs and their order");
  for (const [k, v] of want) {
    const got = kvValue(g, k);
    if (typeof v === "number" && !Number.isInteger(v)) assert.equal(got, Math.fround(v), k);
    else assert.equal(got, v, k);
  }
  assert.equal(kvValue(g, "general.architecture"), arch);
  assert.equal(kvValue(g, "tokenizer.ggml.model"), "llama");
  assert.equal(kvValue(g, "tokenizer.ggml.add_space_prefix"), false, "Gemma2Model/Gemma3Model.set_vocab: add_space_prefix false");
  assert.equal(g.keys.filter((k) => k === "tokenizer.ggml.add_space_prefix").length, 1);
}

function layerTensors(fx: TinyGemma, qk: boolean): [string, number[]][] {
  const { hidden: H, heads, kvHeads, headDim: D, ffn: F } = fx;
  const out: [string, number[]][] = [];
  for (let i = 0; i < fx.layers; i++) {
    const b = `blk.${i}.`;
    out.push([b + "attn_norm.weight", [H]]);
    out.push([b + "attn_q.weight", [H, heads * D]]);
    out.push([b + "attn_k.weight", [H, kvHeads * D]]);
    out.push([b + "attn_v.weight", [H, kvHeads * D]]);
    out.push([b + "attn_output.weight", [heads * D, H]]);
    if (qk) out.push([b + "attn_q_norm.weight", [D]], [b + "attn_k_norm.weight", [D]]);
    out.push([b + "post_attention_norm.weight", [H]]);
    out.push([b + "ffn_norm.weight", [H]]);
    out.push([b + "ffn_gate.weight", [H, F]]);
    out.push([b + "ffn_up.weight", [H, F]]);
    out.push([b + "ffn_down.weight", [F, H]]);
    out.push([b + "post_ffw_norm.weight", [H]]);
  }
  return out;
}

function assertTensors(g: GGUFFile, want: [string, number[]][]): void {
  const got = new Map(g.tensors.map((t) => [t.name, t.ne]));
  assert.deepEqual([...got.keys()].sort(), want.map(([n]) => n).sort(), "tensor names");
  for (const [n, ne] of want) assert.deepEqual(got.get(n), ne, `${n} ne`);
}

const G2: TinyGemmaOptions = { family: "gemma2", dtype: "F32", seed: 1 };

test("tiny Gemma 2 → f32: the tensors and KVs llama.cpp's Gemma2Model writes", async () => {
  const { fx, gguf } = await tiny("g2", G2);
  const g = await readGguf(gguf);
  // Gemma2Model.set_gguf_parameters (no TextModel KVs: no rope.freq_base, no rope dimension count)
  assertKvs(g, "gemma2", [
    ["gemma2.context_length", 8192], ["gemma2.embedding_length", fx.hidden], ["gemma2.block_count", fx.layers],
    ["gemma2.feed_forward_length", fx.ffn], ["gemma2.attention.head_count", fx.heads], ["gemma2.attention.head_count_kv", fx.kvHeads],
    ["gemma2.attention.layer_norm_rms_epsilon", 1e-6], ["gemma2.attention.key_length", fx.headDim], ["gemma2.attention.value_length", fx.headDim],
    ["general.file_type", 0], ["gemma2.attn_logit_softcapping", 12], ["gemma2.final_logit_softcapping", 4], ["gemma2.attention.sliding_window", fx.slidingWindow],
  ]);
  // MODEL_TENSORS[GEMMA2]: no output.weight (lm_head is never written; the model is tied anyway)
  assertTensors(g, [["token_embd.weight", [fx.hidden, GEMMA_TINY_VOCAB]], ["output_norm.weight", [fx.hidden]], ...layerTensors(fx, false)]);
});

test(`tiny Gemma 2 → f32: llama.cpp's distributions over a prompt beyond the sliding window equal the reference (≤ ${TOL}); without the + 1 they do not`, async (t) => {
  const { fx, gguf } = await tiny("g2", G2);
  const r = await compare(fx.dir, gguf, { "no sliding window": { noSlidingWindow: true }, "no softcapping": { noSoftcap: true }, "reference without + 1": { noPlusOne: true } });
  t.diagnostic(`${r.nTokens} tokens (sliding window ${fx.slidingWindow}), positions [${r.positions.join(",")}]: max |Δ log p| = ${r.max.toExponential(3)}; wrong references: ${JSON.stringify(r.variants)}`);
  assert.ok(r.nTokens > 3 * fx.slidingWindow, `the prompt (${r.nTokens} tokens) goes well beyond the window`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  t.diagnostic(`with llama.cpp's float16 GELU in the reference: ${r.ggmlGelu.toExponential(3)}`);
  assert.ok(r.ggmlGelu <= TOL / 4, `the float16 GELU does not explain the difference (${r.ggmlGelu})`);
  for (const [name, d] of Object.entries(r.variants)) assert.ok(d > 10 * TOL, `${name}: only ${d} away`);
  const broken = await compareOnly(fx.dir, await withoutPlusOne(gguf));
  t.diagnostic(`GGUF without the + 1: max |Δ log p| = ${broken.toFixed(3)}`);
  assert.ok(broken > 100 * TOL, `forgetting the + 1 is only ${broken} away`);
});

const G3: TinyGemmaOptions = { family: "gemma3", dtype: "F32", seed: 3 };

test("tiny Gemma 3 (Gemma3ForCausalLM) → f32: the tensors and KVs llama.cpp's Gemma3Model writes", async () => {
  const { fx, gguf } = await tiny("g3", G3);
  const g = await readGguf(gguf);
  // TextModel.set_gguf_parameters, then Gemma3Model's (overwritten keys keep their place)
  assertKvs(g, "gemma3", [
    ["gemma3.block_count", fx.layers], ["gemma3.context_length", 32768], ["gemma3.embedding_length", fx.hidden],
    ["gemma3.feed_forward_length", fx.ffn], ["gemma3.attention.head_count", fx.heads], ["gemma3.attention.head_count_kv", fx.kvHeads],
    ["gemma3.rope.freq_base", 1e6], ["gemma3.rope.freq_base_swa", 10000], ["gemma3.attention.layer_norm_rms_epsilon", 1e-6],
    ["gemma3.attention.key_length", fx.headDim], ["gemma3.attention.value_length", fx.headDim], ["general.file_type", 0],
    ["gemma3.attention.sliding_window", fx.slidingWindow],
  ]);
  assertTensors(g, [["token_embd.weight", [fx.hidden, GEMMA_TINY_VOCAB]], ["output_norm.weight", [fx.hidden]], ...layerTensors(fx, true)]);
});

test(`tiny Gemma 3 → f32: distributions beyond the sliding window equal the reference (≤ ${TOL}); without the + 1 they do not`, async (t) => {
  const { fx, gguf } = await tiny("g3", G3);
  const r = await compare(fx.dir, gguf, { "no sliding window": { noSlidingWindow: true }, "one RoPE base": { oneRope: true }, "reference without + 1": { noPlusOne: true } });
  t.diagnostic(`${r.nTokens} tokens (window ${fx.slidingWindow}): max |Δ log p| = ${r.max.toExponential(3)}; wrong references: ${JSON.stringify(r.variants)}`);
  assert.ok(r.nTokens > 3 * fx.slidingWindow);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  t.diagnostic(`with llama.cpp's float16 GELU in the reference: ${r.ggmlGelu.toExponential(3)}`);
  assert.ok(r.ggmlGelu <= TOL / 4, `the float16 GELU does not explain the difference (${r.ggmlGelu})`);
  for (const [name, d] of Object.entries(r.variants)) assert.ok(d > 10 * TOL, `${name}: only ${d} away`);
  const broken = await compareOnly(fx.dir, await withoutPlusOne(gguf));
  t.diagnostic(`GGUF without the + 1: max |Δ log p| = ${broken.toFixed(3)}`);
  assert.ok(broken > 100 * TOL, `forgetting the + 1 is only ${broken} away`);
});

const G3CG: TinyGemmaOptions = { family: "gemma3-cg", dtype: "F32", seed: 4 };

test("tiny Gemma3ForConditionalGeneration (gemma-3-4b-it's sparse text_config, linear RoPE ×8) → f32: text model only, defaults filled, vision skipped", async (t) => {
  const { fx, gguf } = await tiny("g3cg", G3CG);
  const g = await readGguf(gguf);
  assertKvs(g, "gemma3", [
    ["gemma3.block_count", fx.layers], ["gemma3.context_length", 131072], ["gemma3.embedding_length", fx.hidden],
    ["gemma3.feed_forward_length", fx.ffn], ["gemma3.attention.head_count", fx.heads], ["gemma3.attention.head_count_kv", fx.kvHeads],
    ["gemma3.rope.scaling.type", "linear"], ["gemma3.rope.scaling.factor", 8],
    ["gemma3.rope.freq_base", 1e6], ["gemma3.rope.freq_base_swa", 10000], ["gemma3.attention.layer_norm_rms_epsilon", 1e-6],
    ["gemma3.attention.key_length", fx.headDim], ["gemma3.attention.value_length", fx.headDim], ["general.file_type", 0],
    ["gemma3.attention.sliding_window", fx.slidingWindow],
  ]);
  assertTensors(g, [["token_embd.weight", [fx.hidden, GEMMA_TINY_VOCAB]], ["output_norm.weight", [fx.hidden]], ...layerTensors(fx, true)]);
  const r = await compare(fx.dir, gguf, { "no linear scaling on global layers": { oneRope: true } });
  t.diagnostic(`${r.nTokens} tokens: max |Δ log p| = ${r.max.toExponential(3)}; wrong references: ${JSON.stringify(r.variants)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  t.diagnostic(`with llama.cpp's float16 GELU in the reference: ${r.ggmlGelu.toExponential(3)}`);
  assert.ok(r.ggmlGelu <= TOL / 4, `the float16 GELU does not explain the difference (${r.ggmlGelu})`);
  for (const [name, d] of Object.entries(r.variants)) assert.ok(d > 10 * TOL, `${name}: only ${d} away`);
});

test("tiny Gemma 3 with every other layer global (layer_types): ggufy writes sliding_window_pattern 2 and llama.cpp matches the reference", async (t) => {
  const lt = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"));
  const { fx, gguf } = await tiny("g3-period2", { family: "gemma3", seed: 5, configOverrides: { layer_types: lt } });
  const g = await readGguf(gguf);
  assert.equal(kvValue(g, "gemma3.attention.sliding_window_pattern"), 2);
  // without the KV (llama.cpp's converter writes none) llama.cpp's gemma3 would use period 6: that model is far away
  const period6 = Array.from({ length: 6 }, (_, i) => (i + 1) % 6 !== 0);
  const r = await compare(fx.dir, gguf, { "period 6": { slidingLayers: period6 } });
  t.diagnostic(`max |Δ log p| = ${r.max.toExponential(3)}; the period-6 model: ${r.variants["period 6"]!.toFixed(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  assert.ok(r.variants["period 6"]! > 10 * TOL);
});

test("tiny Gemma3ForConditionalGeneration in transformers ≥ 4.52's layout (model.language_model.*, model.vision_tower.*), bf16 → f32: same tensors, matches the reference", async (t) => {
  const { fx, gguf } = await tiny("g3cg-452", { family: "gemma3-cg", cgLayout: "4.52", dtype: "BF16", seed: 7 });
  const g = await readGguf(gguf);
  assertTensors(g, [["token_embd.weight", [fx.hidden, GEMMA_TINY_VOCAB]], ["output_norm.weight", [fx.hidden]], ...layerTensors(fx, true)]);
  const r = await compare(fx.dir, gguf, { "reference without + 1": { noPlusOne: true } });
  t.diagnostic(`${r.nTokens} tokens: max |Δ log p| = ${r.max.toExponential(3)}; wrong references: ${JSON.stringify(r.variants)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  for (const [name, d] of Object.entries(r.variants)) assert.ok(d > 10 * TOL, `${name}: only ${d} away`);
});

test("a 62-layer Gemma 3 (the 27B layer count) with query_pre_attn_scalar = hidden/heads ≠ head_dim: accepted, and llama.cpp's 27B scaling matches the reference", async (t) => {
  // llama.cpp's gemma3.cpp: f_attention_scale = 1/√(n_embd/n_head) for 62 layers, else 1/√head_dim
  const { fx, gguf } = await tiny("g3-62", { family: "gemma3", layers: 62, hidden: 64, heads: 4, headDim: 32, seed: 8, postFfwMean: -0.95, postFfwStd: 0.02, configOverrides: { query_pre_attn_scalar: 16 } });
  // 62 MLPs: a smaller MLP share keeps llama.cpp's float16 GELU rounding (see fixtures/gemma.ts) under the bound
  const r = await compare(fx.dir, gguf, { "scaled by 1/√head_dim": { queryPreAttnScalar: fx.headDim } });
  t.diagnostic(`62 layers, query_pre_attn_scalar 16, head_dim ${fx.headDim}: max |Δ log p| = ${r.max.toExponential(3)} (with llama.cpp's float16 GELU: ${r.ggmlGelu.toExponential(3)}); 1/√head_dim: ${r.variants["scaled by 1/√head_dim"]!.toFixed(3)}`);
  assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
  assert.ok(r.variants["scaled by 1/√head_dim"]! > 10 * TOL);
});
