/**
 * Phi-3 (src/models/phi3.ts) planned from a tiny checkpoint, no llama.cpp: the `phi3.*` KV list and the
 * tensor plan as conversion/phi.py Phi3MiniModel writes them, and every config the converter could not
 * represent refused with one line naming the key (or the tensor).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { plan } from "../../src/convert/convert.js";
import { GgufyError } from "../../src/errors.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyPhi3, PHI35_LONG_FACTOR, type TinyPhi3Options } from "../../fixtures/phi3.js";

const tmp = await scratchDir("ggufy-models-phi3-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function planOf(opts: TinyPhi3Options): Promise<Awaited<ReturnType<typeof plan>>> {
  const dir = path.join(tmp, `m${n++}`);
  await writeTinyPhi3(dir, { layers: 1, ...opts });
  return plan({ input: dir, outtype: "f32" });
}

async function refused(opts: TinyPhi3Options, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(planOf(opts), (e: unknown) => {
    assert.ok(e instanceof GgufyError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    assert.equal(e.message.split("\n").length, 1, "one line");
    return true;
  });
}

const rope = (c: Record<string, unknown>): Record<string, unknown> => c["rope_scaling"] as Record<string, unknown>;

test("Phi-3.5-mini plan: phi3.* KVs in Phi3MiniModel's order, no rope.scaling.type / vocab_size, factor tensors first and F32", async () => {
  const p = await planOf({ variant: "phi-3.5-mini" });
  try {
    const f = p.files[0]!;
    const keys = f.kvs.map((k) => k.key).filter((k) => k.startsWith("phi3.") || k === "general.file_type");
    assert.deepEqual(keys, [
      "phi3.context_length", "phi3.rope.scaling.original_context_length", "phi3.embedding_length", "phi3.feed_forward_length",
      "phi3.block_count", "phi3.attention.head_count", "phi3.attention.head_count_kv", "phi3.attention.layer_norm_rms_epsilon",
      "phi3.rope.dimension_count", "phi3.rope.freq_base", "general.file_type", "phi3.attention.sliding_window", "phi3.rope.scaling.attn_factor",
    ]);
    assert.deepEqual(f.tensors.slice(0, 2).map((t) => [t.out.name, t.out.ne]), [["rope_factors_long.weight", [48]], ["rope_factors_short.weight", [48]]]);
    assert.ok(f.tensors.some((t) => t.out.name === "blk.0.attn_qkv.weight"));
    assert.ok(!f.tensors.some((t) => /attn_[qkv]\.weight|ffn_gate/.test(t.out.name)), "fused projections stay fused");
  } finally {
    await p.source.close();
  }
});

test("rope_scaling type \"su\" (Phi-3-mini-128k's older configs) is longrope", async () => {
  const p = await planOf({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["type"] = "su") });
  try {
    assert.deepEqual(p.files[0]!.tensors.slice(0, 2).map((t) => t.out.name), ["rope_factors_long.weight", "rope_factors_short.weight"]);
  } finally {
    await p.source.close();
  }
});

test("refused by name: rope_scaling types Phi-3 cannot carry, wrong factor counts, non-positive factors", async () => {
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (c["rope_scaling"] = { type: "yarn", factor: 4, original_max_position_embeddings: 4096 }) }, "E_CONFIG", /rope_scaling\.type is "yarn"/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (c["rope_scaling"] = { type: "linear", factor: 2 }) }, "E_CONFIG", /rope_scaling\.type is "linear"/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["type"] = "ntk-by-parts") }, "E_CONFIG", /rope_scaling\.type is "ntk-by-parts"/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["short_factor"] = PHI35_LONG_FACTOR.slice(1)) }, "E_CONFIG", /rope_scaling\.short_factor has 47 values; expected .* 48/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["long_factor"] = [...PHI35_LONG_FACTOR, 1]) }, "E_CONFIG", /rope_scaling\.long_factor has 49 values/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["long_factor"] = PHI35_LONG_FACTOR.map((v, i) => (i === 3 ? 0 : v))) }, "E_CONFIG", /must be positive/);
  await refused({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["short_factor"] = "1.0") }, "E_CONFIG", /rope_scaling\.short_factor is "1\.0"; expected a list of numbers/);
});

test("refused by name: missing original_max_position_embeddings, head_dim ≠ hidden/heads, odd rotary dims, missing rms_norm_eps", async () => {
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void delete c["original_max_position_embeddings"] }, "E_CONFIG", /original_max_position_embeddings is missing/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["head_dim"] = 64) }, "E_CONFIG", /head_dim is 64/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["partial_rotary_factor"] = 0.1) }, "E_CONFIG", /partial_rotary_factor is 0\.1: .* 3 rotary dimensions/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["partial_rotary_factor"] = 1.5) }, "E_CONFIG", /partial_rotary_factor is 1\.5; expected at most 1/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void delete c["rms_norm_eps"] }, "E_CONFIG", /rms_norm_eps is missing/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["sliding_window"] = "2047") }, "E_CONFIG", /sliding_window is "2047"; expected a number/);
});

test("refused naming the tensor: fused shapes that contradict config.json", async () => {
  // weights for 4 kv heads, config says 2: qkv_proj has 4·32 + 2·4·32 rows, config implies (4 + 2·2)·32
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["num_key_value_heads"] = 2) }, "E_CONFIG", /tensor 'model\.layers\.0\.self_attn\.qkv_proj\.weight': shape is \[384, 128\] but config\.json implies \[256, 128\]/);
  await refused({ variant: "phi-3-mini-4k", editConfig: (c) => void (c["intermediate_size"] = 128) }, "E_CONFIG", /tensor 'model\.layers\.0\.mlp\.down_proj\.weight': shape is \[128, 256\] but config\.json implies \[128, 128\]/);
});

test("transformers ≥ 4.56 `rope_parameters` (rope_type, rope_theta, partial_rotary_factor inside) read like rope_scaling + top-level keys", async () => {
  const p = await planOf({
    variant: "phi-3.5-mini",
    editConfig: (c) => {
      const rs = rope(c);
      c["rope_parameters"] = { rope_type: "longrope", long_factor: rs["long_factor"], short_factor: rs["short_factor"], rope_theta: 50000, original_max_position_embeddings: 4096 };
      delete c["rope_scaling"];
      delete c["rope_theta"];
    },
  });
  try {
    const kv = (k: string): unknown => p.files[0]!.kvs.find((x) => x.key === k)?.value.value;
    assert.equal(kv("phi3.rope.freq_base"), 50000);
    assert.equal(kv("phi3.rope.scaling.original_context_length"), 4096);
    assert.deepEqual(p.files[0]!.tensors.slice(0, 2).map((t) => t.out.name), ["rope_factors_long.weight", "rope_factors_short.weight"]);
  } finally {
    await p.source.close();
  }
});

test("rope.scaling.attn_factor: √(1 + ln(max/original) / ln(original)) by default; rope_scaling.attention_factor when the config gives one (as transformers uses it)", async () => {
  const kvOf = async (opts: TinyPhi3Options): Promise<unknown> => {
    const p = await planOf(opts);
    try {
      return p.files[0]!.kvs.find((x) => x.key === "phi3.rope.scaling.attn_factor")?.value.value;
    } finally {
      await p.source.close();
    }
  };
  assert.equal(await kvOf({ variant: "phi-3.5-mini" }), Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096)));
  assert.equal(await kvOf({ variant: "phi-3.5-mini", editConfig: (c) => void (c["max_position_embeddings"] = 4096) }), 1);
  assert.equal(await kvOf({ variant: "phi-3.5-mini", editConfig: (c) => void (rope(c)["attention_factor"] = 1.25) }), 1.25);
  assert.equal(await kvOf({ variant: "phi-3-mini-4k" }), undefined);
});
