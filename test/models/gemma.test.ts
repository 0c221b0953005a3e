/**
 * Gemma 2 / 3 conversion details that need no llama.cpp run: the + 1 on norm weights computed in the
 * dtype llama.cpp's converter holds them in (ModelBase.prepare_tensors widens bf16 to float32 *before*
 * Gemma2Model/Gemma3Model.modify_tensors; float16 stays float16, so torch rounds x + 1 to half), the
 * vision tower reported, and every config value llama.cpp would compute differently refused by name.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf, readGgufTensorBytes, GgufyError, SourceCheckpoint } from "../../src/index.js";
import { kvValue } from "../../src/formats/gguf/reader.js";
import { SafetensorsCheckpoint, writeSafetensors } from "../../src/formats/safetensors/index.js";
import { readConfig } from "../../src/convert/source.js";
import { toF16, fromF16, toBf16, fromBf16 } from "../../src/formats/half.js";
import { loadVocab } from "../../src/tokenizer/index.js";
import { gemma3 } from "../../src/models/gemma.js";
import { DECODERS } from "../../src/convert/convert.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyGemma, type TinyGemmaOptions } from "../../fixtures/gemma.js";
import { tensorToF32 } from "../support/reference-qwen2.js";

const tmp = await scratchDir("ggufy-models-gemma-");
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
async function convertTiny(opts: TinyGemmaOptions): Promise<{ dir: string; gguf: string }> {
  const dir = path.join(tmp, `m${n++}`);
  await writeTinyGemma(dir, opts);
  const gguf = `${dir}.gguf`;
  await convert({ input: dir, outfile: gguf, outtype: "f32" });
  return { dir, gguf };
}

/** HF norm name → GGUF name (the rows the + 1 applies to). */
function ggufNorm(hf: string): string | undefined {
  const m = /^(?:language_model\.)?model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  const to: Record<string, string> = {
    input_layernorm: "attn_norm", post_attention_layernorm: "post_attention_norm", pre_feedforward_layernorm: "ffn_norm",
    post_feedforward_layernorm: "post_ffw_norm", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
  };
  if (m) return to[m[2]!] ? `blk.${m[1]}.${to[m[2]!]}.weight` : undefined;
  return /^(?:language_model\.)?model\.norm\.weight$/.test(hf) ? "output_norm.weight" : undefined;
}

/** every norm of the GGUF equals `rule(stored)`; returns how many elements `other(stored)` would get wrong */
async function checkNorms(dir: string, gguf: string, rule: (x: number) => number, other: (x: number) => number): Promise<{ norms: number; values: number; otherWrong: number }> {
  const g = await readGguf(gguf);
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const st = await SafetensorsCheckpoint.open(dir);
  let norms = 0;
  let values = 0;
  let otherWrong = 0;
  try {
    for (const name of st.names()) {
      const to = ggufNorm(name);
      if (!to) continue;
      const x = tensorToF32(await st.read(name), st.get(name)!.dtype);
      const t = byName.get(to);
      assert.ok(t, `${to} is in the GGUF`);
      const got = new Float32Array((await readGgufTensorBytes(g, t)).slice().buffer);
      const want = Float32Array.from(x, rule);
      assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `${to}: bit for bit`);
      for (let i = 0; i < x.length; i++) if (Math.fround(other(x[i]!)) !== want[i]) otherWrong++;
      norms++;
      values += x.length;
    }
  } finally {
    await st.close();
  }
  return { norms, values, otherWrong };
}

const f32Sum = (x: number): number => Math.fround(x + 1);
const halfSum = (x: number): number => fromF16(toF16(Math.fround(x + 1)));
const bf16Sum = (x: number): number => fromBf16(toBf16(Math.fround(x + 1)));

test("Gemma 2, bf16 checkpoint: norm + 1 in float32 (bf16 widened first, as prepare_tensors does), not rounded back to bf16", async (t) => {
  const { dir, gguf } = await convertTiny({ family: "gemma2", dtype: "BF16", seed: 11 });
  const r = await checkNorms(dir, gguf, f32Sum, bf16Sum);
  t.diagnostic(`${r.norms} norms, ${r.values} values; a bf16 add would differ in ${r.otherWrong}`);
  assert.equal(r.norms, 4 * 4 + 1);
  assert.ok(r.otherWrong > r.values / 2, "the bf16 and float32 rules are told apart");
});

test("Gemma 3, f16 checkpoint: norm + 1 in float16 (torch half add: float32 sum rounded to half), q/k norms included", async (t) => {
  const { dir, gguf } = await convertTiny({ family: "gemma3", dtype: "F16", seed: 12 });
  const r = await checkNorms(dir, gguf, halfSum, f32Sum);
  t.diagnostic(`${r.norms} norms, ${r.values} values; a float32 add would differ in ${r.otherWrong}`);
  assert.equal(r.norms, 6 * 6 + 1);
  assert.ok(r.otherWrong > r.values / 2, "the float16 and float32 rules are told apart");
});

test("Gemma 2, f32 checkpoint: norm + 1 in float32; token_embd and matrices pass through unchanged (the √hidden scale is the runtime's)", async () => {
  const { dir, gguf } = await convertTiny({ family: "gemma2", dtype: "F32", seed: 13 });
  await checkNorms(dir, gguf, f32Sum, f32Sum);
  const g = await readGguf(gguf);
  const st = await SafetensorsCheckpoint.open(dir);
  try {
    for (const [hf, to] of [["model.embed_tokens.weight", "token_embd.weight"], ["model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"], ["model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"]] as const) {
      assert.deepEqual(await readGgufTensorBytes(g, g.tensors.find((t) => t.name === to)!), await st.read(hf), to);
    }
  } finally {
    await st.close();
  }
});

for (const layout of ["4.50", "4.52"] as const) {
  test(`Gemma3ForConditionalGeneration (transformers ${layout} layout): the vision tower and projector are skipped and reported; only the text model is written`, async () => {
    const dir = path.join(tmp, `cg-${layout}`);
    await writeTinyGemma(dir, { family: "gemma3-cg", cgLayout: layout, seed: 14 });
    const src = await SourceCheckpoint.open(dir, DECODERS);
    try {
      const config = await readConfig(dir);
      const [m] = await gemma3.build({ src, dir, config, loadVocab: (r) => loadVocab(r.dir, { arch: r.arch, config: r.config, ...(r.vocabSize !== undefined ? { vocabSize: r.vocabSize } : {}) }) });
      assert.ok(m);
      const lm = layout === "4.50" ? "language_model.model." : "model.language_model.";
      // the tensors keep their checkpoint names as sources
      assert.ok(m.tensors.every((t) => t.sources.length === 1 && t.sources[0]!.startsWith(lm)), "only the language model's tensors");
      assert.equal(m.tensors.length, 2 + 6 * 13);
      assert.deepEqual(m.warnings, ["skipped 5 vision tower / multi-modal projector tensors (the text model only; ggufy does not write Gemma 3's mmproj)"]);
    } finally {
      await src.close();
    }
  });
}

test("Gemma3ForConditionalGeneration: a tensor that is neither the language model nor the vision part is refused by name", async () => {
  const dir = path.join(tmp, "cg-extra");
  const fx = await writeTinyGemma(dir, { family: "gemma3-cg", seed: 15 });
  const st = await SafetensorsCheckpoint.open(dir);
  const tensors = [];
  try {
    for (const name of st.names()) tensors.push({ name, dtype: st.get(name)!.dtype, shape: [...st.get(name)!.shape], data: (await st.read(name)).slice() });
  } finally {
    await st.close();
  }
  tensors.push({ name: "audio_tower.proj.weight", dtype: "F32" as const, shape: [2, 2], data: new Uint8Array(16) });
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  await writeSafetensors(path.join(fx.dir, "model.safetensors"), tensors, { format: "pt" });
  await assert.rejects(convert({ input: dir, outfile: `${dir}.gguf`, outtype: "f32" }), (e: unknown) => e instanceof GgufyError && e.code === "E_UNEXPECTED_TENSOR" && /audio_tower\.proj\.weight/.test(e.message));
});

test("Gemma 3: a q_norm whose length is not head_dim is refused naming the tensor and config.json", async () => {
  const dir = path.join(tmp, "qnorm");
  const fx = await writeTinyGemma(dir, { family: "gemma3", seed: 16 });
  const st = await SafetensorsCheckpoint.open(dir);
  const tensors = [];
  try {
    for (const name of st.names()) {
      const bad = name === "model.layers.2.self_attn.q_norm.weight";
      tensors.push({ name, dtype: st.get(name)!.dtype, shape: bad ? [16] : [...st.get(name)!.shape], data: bad ? new Uint8Array(64) : (await st.read(name)).slice() });
    }
  } finally {
    await st.close();
  }
  await writeSafetensors(path.join(fx.dir, "model.safetensors"), tensors, { format: "pt" });
  await assert.rejects(convert({ input: dir, outfile: `${dir}.gguf`, outtype: "f32" }), (e: unknown) => {
    assert.ok(e instanceof GgufyError);
    assert.equal(e.code, "E_CONFIG");
    assert.match(e.message, /config\.json.*model\.layers\.2\.self_attn\.q_norm\.weight.*shape is \[16\] but config\.json implies \[32\] \(head_dim\)/);
    return true;
  });
});

test("Gemma 2 with its own lm_head and tie_word_embeddings false is refused (llama.cpp's gemma2 always uses token_embd as output); tied, the lm_head is dropped", async () => {
  for (const tied of [false, true]) {
    const dir = path.join(tmp, `lmhead-${tied}`);
    const fx = await writeTinyGemma(dir, { family: "gemma2", seed: 17, configOverrides: { tie_word_embeddings: tied } });
    const st = await SafetensorsCheckpoint.open(dir);
    const tensors = [];
    try {
      for (const name of st.names()) tensors.push({ name, dtype: st.get(name)!.dtype, shape: [...st.get(name)!.shape], data: (await st.read(name)).slice() });
    } finally {
      await st.close();
    }
    tensors.push({ name: "lm_head.weight", dtype: "F32" as const, shape: [fx.vocabSize, fx.hidden], data: new Uint8Array(fx.vocabSize * fx.hidden * 4) });
    await writeSafetensors(path.join(fx.dir, "model.safetensors"), tensors, { format: "pt" });
    const run = convert({ input: dir, outfile: `${dir}.gguf`, outtype: "f32" });
    if (!tied) {
      await assert.rejects(run, (e: unknown) => e instanceof GgufyError && e.code === "E_CONFIG" && /tie_word_embeddings is false.*lm_head\.weight/.test(e.message));
    } else {
      await run;
      const g = await readGguf(`${dir}.gguf`);
      assert.equal(g.tensors.some((t) => t.name === "output.weight"), false, "Gemma2Model.filter_tensors drops lm_head");
    }
  }
});

async function refused(opts: TinyGemmaOptions, re: RegExp): Promise<void> {
  const dir = path.join(tmp, `r${n++}`);
  await writeTinyGemma(dir, opts);
  await assert.rejects(convert({ input: dir, outfile: `${dir}.gguf`, outtype: "f32" }), (e: unknown) => {
    assert.ok(e instanceof GgufyError, String(e));
    assert.equal(e.code, "E_CONFIG");
    assert.match(e.message, re);
    assert.match(e.message, /config\.json/);
    return true;
  });
}

test("Gemma config values llama.cpp would compute differently are refused by name", async () => {
  // llama.cpp scales by 1/√head_dim (gemma2.cpp / gemma3.cpp) unless the layer count is the 27B one
  await refused({ family: "gemma2", configOverrides: { query_pre_attn_scalar: 64 } }, /query_pre_attn_scalar is 64.*1\/√32/);
  await refused({ family: "gemma3-cg", configOverrides: { query_pre_attn_scalar: 256 } }, /query_pre_attn_scalar is 256/);
  // …and 1/√(hidden/heads) for the 27B layer counts (Gemma 2: 46, Gemma 3: 62)
  await refused({ family: "gemma3", layers: 62, configOverrides: { query_pre_attn_scalar: 32 } }, /query_pre_attn_scalar is 32.*1\/√16 \(hidden_size\/num_attention_heads for 62 layers\)/);
  await refused({ family: "gemma2", layers: 46, configOverrides: { query_pre_attn_scalar: 32 } }, /query_pre_attn_scalar is 32.*1\/√16 \(hidden_size\/num_attention_heads for 46 layers\)/);
  await refused({ family: "gemma2", configOverrides: { attn_logit_softcapping: null } }, /attn_logit_softcapping is null/);
  await refused({ family: "gemma2", configOverrides: { final_logit_softcapping: null } }, /final_logit_softcapping is null/);
  await refused({ family: "gemma2", configOverrides: { layer_types: ["sliding_attention", "full_attention", "full_attention", "sliding_attention"] } }, /layer_types gives sliding layers \[0, 3\]/);
  await refused({ family: "gemma2", configOverrides: { layer_types: ["sliding_attention", "full_attention", "chunked_attention", "full_attention"] } }, /layer_types \[2\] is "chunked_attention"/);
  await refused({ family: "gemma2", configOverrides: { rope_scaling: { rope_type: "linear", factor: 2 } } }, /rope_scaling is set/);
  await refused({ family: "gemma3", configOverrides: { attn_logit_softcapping: 50 } }, /attn_logit_softcapping is set/);
  await refused({ family: "gemma3", configOverrides: { hidden_activation: "gelu" } }, /hidden_activation is "gelu"/);
  await refused({ family: "gemma3", configOverrides: { rope_scaling: { rope_type: "dynamic", factor: 2 } } }, /rope_scaling is "dynamic"/);
  await refused({ family: "gemma3", configOverrides: { sliding_window: "512" } }, /sliding_window is "512"; expected a number/);
});

test("Gemma: where llama.cpp's converter would write a silently different model, ggufy writes the KV that fixes it", async () => {
  // Gemma 2 with a rope_theta llama.cpp's gemma2 default (10000) does not have
  const a = await readGguf((await convertTiny({ family: "gemma2", configOverrides: { rope_theta: 20000 } })).gguf);
  assert.equal(kvValue(a, "gemma2.rope.freq_base"), 20000);
  assert.equal(kvValue(a, "gemma2.attention.sliding_window_pattern"), undefined);
  // Gemma 3 with every other layer global: llama.cpp's gemma3 assumes period 6
  const lt = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"));
  const b = await readGguf((await convertTiny({ family: "gemma3", configOverrides: { layer_types: lt } })).gguf);
  assert.equal(kvValue(b, "gemma3.attention.sliding_window_pattern"), 2);
  // sliding_window_pattern 1: no sliding layer → no sliding_window KV (Gemma3Model.set_gguf_parameters)
  const c = await readGguf((await convertTiny({ family: "gemma3", configOverrides: { sliding_window_pattern: 1 } })).gguf);
  assert.equal(kvValue(c, "gemma3.attention.sliding_window"), undefined);
  assert.equal(kvValue(c, "gemma3.attention.sliding_window_pattern"), undefined);
});
