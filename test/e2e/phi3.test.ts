/**
 * Phi-3 / Phi-3.5-mini / Phi-4 / Phi-4-mini end to end: a tiny generated Phi3ForCausalLM checkpoint (real
 * config field sets, fixtures/phi3.ts) → GGUF `phi3` with ggufy →
 * (a) exactly the tensors, shapes and `phi3.*` KVs llama.cpp's converter writes (conversion/phi.py
 *     Phi3MiniModel: set_gguf_parameters, generate_extra_tensors; tensor map: qkv_proj → attn_qkv,
 *     gate_up_proj → ffn_up with 2·n_ff rows, as src/models/phi3.cpp's loader expects);
 * (b) loaded in llama.cpp (node-llama-cpp 3.21.1), its next-token distributions equal the reference
 *     forward pass of transformers' Phi-3 (test/support/reference-phi3.ts) within 1e-3 (F32 GGUF, F32 KV
 *     cache), with the longrope factors llama.cpp picks for the context the test runs with;
 * (c) the comparison has teeth: the same file without rope_factors_short, with long and short swapped,
 *     or without rope.scaling.attn_factor is far outside the bound.
 * llama.cpp's phi3 disables sliding-window attention (load_arch_hparams), so no prompt here reaches a
 * window (2047 / 262144 / none): beyond it transformers and llama.cpp would differ by design.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { open, rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { readGguf, readGgufTensorBytes, kvValue } from "../../src/formats/gguf/reader.js";
import { GGUFStreamWriter } from "../../src/formats/gguf/writer.js";
import type { GGUFKV } from "../../src/formats/gguf/types.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyPhi3, PHI35_LONG_FACTOR, PHI35_SHORT_FACTOR, type TinyPhi3, type TinyPhi3Options } from "../../fixtures/phi3.js";
import { withModel, logProbsAt, tokenize, disposeTestLlama } from "../support/llama.js";
import { Phi3Reference, llamaCppFactorChoice, type Phi3Variant } from "../support/reference-phi3.js";
import { maxAbsDiff } from "../support/reference-qwen2.js";

const TOL = 1e-3;
/** the context logProbsAt creates for prompts up to 256 tokens (test/support/llama.ts) */
const N_CTX = 256;

const tmp = await scratchDir("ggufy-e2e-phi3-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

interface Built {
  fx: TinyPhi3;
  gguf: string;
}
const built = new Map<string, Promise<Built>>();
function build(name: string, opts: TinyPhi3Options): Promise<Built> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      const dir = path.join(tmp, name);
      const fx = await writeTinyPhi3(dir, opts);
      const gguf = path.join(tmp, `${name}-f32.gguf`);
      await convert({ input: dir, outfile: gguf, outtype: "f32" });
      return { fx, gguf };
    })();
    built.set(name, p);
  }
  return p;
}

/** A copy of a GGUF with tensors dropped or renamed and KVs dropped (a deliberately broken conversion). */
async function rewriteGguf(src: string, dst: string, edit: { drop?: string[]; rename?: Record<string, string>; dropKv?: string[] }): Promise<string> {
  const g = await readGguf(src);
  const kvs: GGUFKV[] = g.keys.filter((k) => !edit.dropKv?.includes(k)).map((key) => ({ key, value: g.kvs.get(key)! }));
  const tensors = g.tensors.filter((t) => !edit.drop?.includes(t.name));
  const fh = await open(dst, "w");
  try {
    const w = new GGUFStreamWriter({ write: async (b) => void (await fh.write(b)) }, kvs, tensors.map((t) => ({ name: edit.rename?.[t.name] ?? t.name, ne: t.ne, type: t.type })));
    await w.start();
    for (const t of tensors) await w.write(await readGgufTensorBytes(g, t));
    w.finish();
  } finally {
    await fh.close();
  }
  return dst;
}

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and every day she went to see the big old tree.";

/** max |Δ log p| between llama.cpp on each GGUF and the reference, at positions 0, 3, 6 … and the last. */
async function compare(dir: string, ggufs: readonly string[], variant: Phi3Variant, prompt = PROMPT): Promise<{ max: number[]; n: number }> {
  const ref = await Phi3Reference.load(dir);
  let ids: number[] = [];
  const max: number[] = [];
  for (const gguf of ggufs) {
    await withModel(gguf, async (model) => {
      if (ids.length === 0) ids = tokenize(model, prompt);
      assert.ok(ids.length > 30 && ids.length <= N_CTX, `${ids.length} prompt tokens`);
      const positions = ids.map((_, i) => i).filter((i) => i % 3 === 0 || i === ids.length - 1);
      const want = ref.logProbs(ids, positions, variant);
      const ours = await logProbsAt(model, ids, positions, { precision: "exact" });
      let m = 0;
      for (let k = 0; k < positions.length; k++) m = Math.max(m, maxAbsDiff(ours[k]!, want[k]!).max);
      max.push(m);
    });
  }
  return { max, n: ids.length };
}

/** The tensors llama.cpp's converter writes for this checkpoint: name → ggml ne. */
function expectedTensors(fx: TinyPhi3, ropeFactors: number): Map<string, number[]> {
  const m = new Map<string, number[]>();
  if (ropeFactors > 0) {
    m.set("rope_factors_long.weight", [ropeFactors]);
    m.set("rope_factors_short.weight", [ropeFactors]);
  }
  const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocabSize: V } = fx;
  m.set("token_embd.weight", [H, V]);
  m.set("output_norm.weight", [H]);
  if (!fx.tied) m.set("output.weight", [H, V]);
  for (let i = 0; i < fx.layers; i++) {
    m.set(`blk.${i}.attn_norm.weight`, [H]);
    m.set(`blk.${i}.attn_qkv.weight`, [H, (heads + 2 * kvHeads) * D]);
    m.set(`blk.${i}.attn_output.weight`, [heads * D, H]);
    m.set(`blk.${i}.ffn_norm.weight`, [H]);
    m.set(`blk.${i}.ffn_up.weight`, [H, 2 * F]);
    m.set(`blk.${i}.ffn_down.weight`, [F, H]);
  }
  return m;
}

/**
 * The `phi3.*` KVs Phi3MiniModel writes (set_gguf_parameters, no TextModel KVs; attn_factor from
 * generate_extra_tensors when there are long factors), with their values.
 */
function expectedKvs(c: Record<string, unknown>, ropeDims: number, attnFactor: number | undefined): Record<string, number> {
  const n = (k: string): number => c[k] as number;
  const o: Record<string, number> = {
    "phi3.context_length": n("max_position_embeddings"),
    "phi3.rope.scaling.original_context_length": n("original_max_position_embeddings"),
    "phi3.embedding_length": n("hidden_size"),
    "phi3.feed_forward_length": n("intermediate_size"),
    "phi3.block_count": n("num_hidden_layers"),
    "phi3.attention.head_count": n("num_attention_heads"),
    "phi3.attention.head_count_kv": n("num_key_value_heads"),
    "phi3.attention.layer_norm_rms_epsilon": Math.fround(n("rms_norm_eps")),
    "phi3.rope.dimension_count": ropeDims,
    "phi3.rope.freq_base": Math.fround(n("rope_theta")),
    "phi3.attention.sliding_window": (c["sliding_window"] as number | null) ?? 0,
  };
  if (attnFactor !== undefined) o["phi3.rope.scaling.attn_factor"] = Math.fround(attnFactor);
  return o;
}

async function checkFile(t: { diagnostic: (s: string) => void }, b: Built, ropeDims: number, attnFactor: number | undefined, factors?: { long: number[]; short: number[] }): Promise<void> {
  const g = await readGguf(b.gguf);
  assert.equal(kvValue(g, "general.architecture"), "phi3");
  const got = new Map(g.tensors.map((x) => [x.name, x.ne]));
  const want = expectedTensors(b.fx, factors ? ropeDims / 2 : 0);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, ne] of want) assert.deepEqual(got.get(name), ne, name);
  for (const x of g.tensors) assert.equal(x.type, 0, `${x.name} is F32`);
  // the generated factors come first, as generate_extra_tensors yields them before the checkpoint's
  if (factors) assert.deepEqual(g.tensors.slice(0, 2).map((x) => x.name), ["rope_factors_long.weight", "rope_factors_short.weight"]);
  const archKvs = Object.fromEntries(g.keys.filter((k) => k.startsWith("phi3.")).map((k) => [k, Number(kvValue(g, k))]));
  assert.deepEqual(archKvs, expectedKvs(b.fx.config, ropeDims, attnFactor));
  if (factors) {
    const f32 = async (name: string): Promise<number[]> => {
      const e = g.tensors.find((x) => x.name === name)!;
      const bytes = await readGgufTensorBytes(g, e);
      return [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)];
    };
    assert.deepEqual(await f32("rope_factors_long.weight"), factors.long.map(Math.fround));
    assert.deepEqual(await f32("rope_factors_short.weight"), factors.short.map(Math.fround));
  }
  t.diagnostic(`${g.tensors.length} tensors, ${Object.keys(archKvs).length} phi3.* KVs as llama.cpp's converter writes them`);
}

test("Phi-3-mini-4k (no rope_scaling, sliding_window 2047) → f32: converter's tensors and KVs; llama.cpp equals the reference", async (t) => {
  const b = await build("phi-3-mini-4k", { variant: "phi-3-mini-4k", seed: 1 });
  await checkFile(t, b, b.fx.headDim, undefined);
  const r = await compare(b.fx.dir, [b.gguf], {});
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
});

test("Phi-3.5-mini (longrope, original 4096 > n_ctx 256 → short factors) → f32: factors, attn_factor; equal to the reference; fails without/with swapped factors", async (t) => {
  const b = await build("phi-3.5-mini", { variant: "phi-3.5-mini", seed: 2 });
  const af = Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096));
  await checkFile(t, b, 96, af, { long: PHI35_LONG_FACTOR, short: PHI35_SHORT_FACTOR });
  const ref = await Phi3Reference.load(b.fx.dir);
  assert.equal(llamaCppFactorChoice(ref.cfg, N_CTX), "short");
  const noShort = await rewriteGguf(b.gguf, path.join(tmp, "phi35-no-short.gguf"), { drop: ["rope_factors_short.weight"] });
  const swapped = await rewriteGguf(b.gguf, path.join(tmp, "phi35-swapped.gguf"), { rename: { "rope_factors_long.weight": "rope_factors_short.weight", "rope_factors_short.weight": "rope_factors_long.weight" } });
  const noAttn = await rewriteGguf(b.gguf, path.join(tmp, "phi35-no-attn.gguf"), { dropKv: ["phi3.rope.scaling.attn_factor"] });
  const r = await compare(b.fx.dir, [b.gguf, noShort, swapped, noAttn], { factors: "short" });
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}; without rope_factors_short ${r.max[1]!.toFixed(3)}, long/short swapped ${r.max[2]!.toFixed(3)}, without attn_factor ${r.max[3]!.toFixed(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
  assert.ok(r.max[1]! > 20 * TOL, `dropping rope_factors_short is only ${r.max[1]} away`);
  assert.ok(r.max[2]! > 20 * TOL, `swapping the factors is only ${r.max[2]} away`);
  assert.ok(r.max[3]! > 20 * TOL, `dropping attn_factor is only ${r.max[3]} away`);
});

test("Phi-3.5-mini with original context 64 < n_ctx 256 → llama.cpp uses the long factors: equal to the reference with long factors; fails when swapped", async (t) => {
  const b = await build("phi-3.5-mini-orig64", { variant: "phi-3.5-mini", seed: 3, origCtx: 64 });
  const af = Math.sqrt(1 + Math.log(131072 / 64) / Math.log(64));
  await checkFile(t, b, 96, af, { long: PHI35_LONG_FACTOR, short: PHI35_SHORT_FACTOR });
  const ref = await Phi3Reference.load(b.fx.dir);
  assert.equal(llamaCppFactorChoice(ref.cfg, N_CTX), "long");
  const swapped = await rewriteGguf(b.gguf, path.join(tmp, "phi35-64-swapped.gguf"), { rename: { "rope_factors_long.weight": "rope_factors_short.weight", "rope_factors_short.weight": "rope_factors_long.weight" } });
  const r = await compare(b.fx.dir, [b.gguf, swapped], { factors: "long" });
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}; long/short swapped ${r.max[1]!.toFixed(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
  assert.ok(r.max[1]! > 20 * TOL, `swapping the factors is only ${r.max[1]} away`);
});

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
  await checkFile(t, b, 96, af, { long: b.fx.config["rope_scaling"] ? ((b.fx.config["rope_scaling"] as Record<string, number[]>)["long_factor"]!) : [], short: PHI35_SHORT_FACTOR });
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
