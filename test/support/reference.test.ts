/**
 * The test tooling itself: the seeded PRNG, the tiny Qwen2 fixture, and the reference forward pass
 * (checked against a real trained model: stories260K must reproduce llama2.c's greedy sample).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Rng } from "../../fixtures/rng.js";
import { writeTinyQwen2, scratchDir, QWEN2_ODD_FFN } from "../../fixtures/qwen2.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { ReferenceDecoder, maxAbsDiff, logSoftmax } from "./reference-qwen2.js";
import { STORIES260K_HF_DIR, STORIES260K_DOC_SAMPLE, Llama2cTokenizer, stories260kSamplePrefix, words } from "./reference-llama.js";

const tmp = await scratchDir("ggufy-ref-");
after(() => rm(tmp, { recursive: true, force: true }));

test("rng: xoshiro128** matches the C reference, seeds are reproducible, normals look normal", () => {
  // reference: xoshiro128starstar.c with s = {1, 2, 3, 4}
  const r = new Rng(0) as unknown as { s0: number; s1: number; s2: number; s3: number; u32(): number };
  [r.s0, r.s1, r.s2, r.s3] = [1, 2, 3, 4];
  assert.deepEqual(Array.from({ length: 5 }, () => r.u32()), [11520, 0, 5927040, 70819200, 2031721883]);

  const a = new Rng(42).normals(10_001);
  const b = new Rng(42).normals(10_001);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, new Rng(43).normals(10_001));
  // fillNormal and normal() give the same stream
  const c = new Rng(42);
  for (let i = 0; i < 7; i++) assert.equal(Math.fround(c.normal()), a[i]);

  const n = new Rng(7).normals(200_000, 3, 2);
  let m = 0;
  for (const v of n) m += v;
  m /= n.length;
  let v2 = 0;
  for (const v of n) v2 += (v - m) ** 2;
  const sd = Math.sqrt(v2 / n.length);
  assert.ok(Math.abs(m - 3) < 0.02, `mean ${m}`);
  assert.ok(Math.abs(sd - 2) < 0.02, `sd ${sd}`);
  const u = new Rng(1);
  for (let i = 0; i < 1000; i++) {
    const x = u.uniform();
    assert.ok(x >= 0 && x < 1);
  }
});

test("reference forward: stories260K (HF layout) greedy from BOS reproduces llama2.c's sample, 256 tokens", async () => {
  const ref = await ReferenceDecoder.load(STORIES260K_HF_DIR());
  const tok = await Llama2cTokenizer.load();
  const ids = ref.greedy([1], 256, [1]);
  const text = tok.decode(ids);
  const prefix = await stories260kSamplePrefix();
  assert.ok(text.startsWith(prefix), `starts with the PROVENANCE.md sample:\n${text}`);
  assert.deepEqual(words(text), words(STORIES260K_DOC_SAMPLE));
  assert.equal(text, STORIES260K_DOC_SAMPLE);
});

test("reference forward: logits() at several positions equals separate runs; log-softmax normalises", async () => {
  const ref = await ReferenceDecoder.load(STORIES260K_HF_DIR());
  const ids = [1, 403, 407, 261, 378];
  const all = ref.logits(ids, [1, 4]);
  assert.deepEqual(all[0], ref.logits(ids.slice(0, 2))[0]);
  assert.deepEqual(all[1], ref.logits(ids)[0]);
  const lp = logSoftmax(all[1]!);
  let s = 0;
  for (const v of lp) s += Math.exp(v);
  assert.ok(Math.abs(s - 1) < 1e-12);
});

test("tiny Qwen2 fixture: files, config, tensors; sharded BF16 tied variant; reference is sensitive to RoPE layout and biases", async () => {
  const dirA = path.join(tmp, "a");
  const a = await writeTinyQwen2(dirA, { tied: true, dtype: "BF16", oddFfn: true, seed: 5 });
  const dirB = path.join(tmp, "b");
  const b = await writeTinyQwen2(dirB, { tied: true, dtype: "BF16", oddFfn: true, seed: 5, shards: 3 });
  assert.deepEqual(a.files, ["model.safetensors"]);
  assert.deepEqual(b.files, ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]);

  const names = (await readdir(dirB)).sort();
  for (const f of ["vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json", "model.safetensors.index.json"]) {
    assert.ok(names.includes(f), f);
  }
  assert.equal((await readFile(path.join(dirB, "merges.txt"), "utf8")).split("\n", 1)[0], "#version: 0.2");
  assert.ok(((await stat(path.join(dirB, "vocab.json"))).mode & 0o200) !== 0, "copied files are writable");

  const cfg = JSON.parse(await readFile(path.join(dirB, "config.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(cfg["architectures"], ["Qwen2ForCausalLM"]);
  assert.equal(cfg["model_type"], "qwen2");
  assert.equal(cfg["hidden_size"], 256);
  assert.equal(cfg["intermediate_size"], QWEN2_ODD_FFN);
  assert.ok(QWEN2_ODD_FFN % 32 === 0 && QWEN2_ODD_FFN % 256 !== 0);
  assert.equal(cfg["num_hidden_layers"], 2);
  assert.equal(cfg["num_attention_heads"], 4);
  assert.equal(cfg["num_key_value_heads"], 2);
  assert.equal(cfg["vocab_size"], 151936);
  assert.equal(cfg["tie_word_embeddings"], true);
  assert.equal(cfg["torch_dtype"], "bfloat16");
  assert.equal(cfg["rope_theta"], 1e6);
  assert.equal(cfg["rms_norm_eps"], 1e-6);

  const index = JSON.parse(await readFile(path.join(dirB, "model.safetensors.index.json"), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const ck = await SafetensorsCheckpoint.open(dirB);
  try {
    assert.equal(ck.files.length, 3);
    assert.deepEqual(new Set(Object.keys(index.weight_map)), new Set(b.tensorNames));
    assert.equal(Object.keys(index.weight_map).length, 2 + 2 * 12); // embed + norm + 12 per layer, no lm_head
    let total = 0;
    for (const t of ck.tensors.values()) {
      total += t.byteLength;
      assert.equal(t.dtype, "BF16");
    }
    assert.equal(index.metadata.total_size, total);
    assert.deepEqual(ck.get("model.embed_tokens.weight")!.shape, [151936, 256]);
    assert.deepEqual(ck.get("model.layers.1.self_attn.k_proj.weight")!.shape, [128, 256]);
    assert.deepEqual(ck.get("model.layers.1.self_attn.k_proj.bias")!.shape, [128]);
    assert.deepEqual(ck.get("model.layers.0.mlp.down_proj.weight")!.shape, [256, QWEN2_ODD_FFN]);
    assert.equal(ck.get("lm_head.weight"), undefined);
  } finally {
    await ck.close();
  }

  const ids = [9707, 11, 847, 829, 374, 1207, 16948, 13];
  const refA = await ReferenceDecoder.load(dirA);
  const refB = await ReferenceDecoder.load(dirB);
  const lpA = refA.nextTokenLogProbs(ids);
  assert.deepEqual(lpA, refB.nextTokenLogProbs(ids), "same seed, same weights, whatever the sharding");

  // non-degenerate: a spread-out distribution that depends on the context
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of lpA) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  assert.ok(hi - lo > 1.5, `log-prob spread ${hi - lo}`);
  assert.ok(maxAbsDiff(lpA, refA.nextTokenLogProbs(ids.slice(1))).max > 0.1);
  // a wrong RoPE layout, no RoPE, or dropped biases move the distribution far beyond the e2e tolerance (1e-3)
  for (const variant of [{ interleavedRope: true }, { noRope: true }, { noBias: true }]) {
    const d = maxAbsDiff(lpA, refA.nextTokenLogProbs(ids, variant)).max;
    assert.ok(d > 0.05, `${JSON.stringify(variant)} only moves log-probs by ${d}`);
  }
});
