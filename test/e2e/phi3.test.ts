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
import { rm } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { PHI35_LONG_FACTOR, PHI35_SHORT_FACTOR } from "../../fixtures/phi3.js";
import { disposeTestLlama } from "../support/llama.js";
import { Phi3Reference, llamaCppFactorChoice } from "../support/reference-phi3.js";
import { TOL, N_CTX, build as buildIn, rewriteGguf, compare, checkFile, type Built } from "../support/phi3-e2e.js";
import type { TinyPhi3Options } from "../../fixtures/phi3.js";

const tmp = await scratchDir("ggufy-e2e-phi3-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});
const build = (name: string, opts: TinyPhi3Options): Promise<Built> => buildIn(tmp, name, opts);

test("Phi-3-mini-4k (no rope_scaling, sliding_window 2047) → f32: converter's tensors and KVs; llama.cpp equals the reference", async (t) => {
  const b = await build("phi-3-mini-4k", { variant: "phi-3-mini-4k", seed: 1 });
  await checkFile(t, b, b.fx.headDim, undefined);
  const r = await compare(b.fx.dir, [b.gguf], {});
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
  // the fused layouts matter: the same llama.cpp output against references that split them the other way
  const gateUp = await compare(b.fx.dir, [b.gguf], { swapGateUp: true });
  const kv = await compare(b.fx.dir, [b.gguf], { swapKV: true });
  t.diagnostic(`vs gate_up read as up | gate: ${gateUp.max[0]!.toFixed(3)}; vs qkv read as q | v | k: ${kv.max[0]!.toFixed(3)}`);
  assert.ok(gateUp.max[0]! > 20 * TOL, `a swapped gate/up reference is only ${gateUp.max[0]} away`);
  assert.ok(kv.max[0]! > 20 * TOL, `a swapped k/v reference is only ${kv.max[0]} away`);
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

test("Phi-3-mini-4k stored as F16 (torch_dtype float16) → f32: equal to the reference on the F16 weights", async (t) => {
  const b = await build("phi-3-mini-4k-f16", { variant: "phi-3-mini-4k", dtype: "F16", seed: 6 });
  assert.equal(b.fx.config["torch_dtype"], "float16");
  const r = await compare(b.fx.dir, [b.gguf], {});
  t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
  assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
});

test("sliding_window shorter than the prompt: written as llama.cpp's converter does, but llama.cpp's phi3 attends in full (SWA disabled in its loader), unlike transformers", async (t) => {
  const b = await build("phi-3-mini-4k-swa8", { variant: "phi-3-mini-4k", seed: 9, editConfig: (c) => void (c["sliding_window"] = 8) });
  await checkFile(t, b, b.fx.headDim, undefined);
  const full = await compare(b.fx.dir, [b.gguf], {});
  const windowed = await compare(b.fx.dir, [b.gguf], { slidingWindow: true });
  t.diagnostic(`${full.n} tokens, window 8: vs full attention ${full.max[0]!.toExponential(3)}, vs transformers' sliding-window mask ${windowed.max[0]!.toFixed(3)}`);
  assert.ok(full.max[0]! <= TOL, `max |Δ log p| = ${full.max[0]}`);
  assert.ok(windowed.max[0]! > 20 * TOL, `the sliding-window reference is only ${windowed.max[0]} away`);
});
