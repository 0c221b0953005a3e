/**
 * RoPE parameters and config values, read typed (src/models/rope.ts, config.ts): llama3 factors against
 * a hand derivation for the real Llama 3.1 parameters, the scaling KVs base.py TextModel.set_gguf_parameters
 * writes for linear / yarn / longrope / dynamic, transformers ≥ 4.56's `rope_parameters` form, and the
 * refusals (each one line naming the key) — checked through `plan()` on the tiny fixtures (headers only).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { plan, GgufyError } from "../../src/index.js";
import { HfConfig } from "../../src/models/config.js";
import { llama3RopeFactors, readRope, ropeScalingKvs } from "../../src/models/rope.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyFamily, type Family, type TinyFamilyOptions } from "../../fixtures/llama3.js";
import { writeSafetensors } from "../../src/formats/safetensors/index.js";

const tmp = await scratchDir("ggufy-rope-config-");
after(() => rm(tmp, { recursive: true, force: true }));

const cfg = (json: Record<string, unknown>): HfConfig => new HfConfig(json, "config.json");

test("llama3 factors for Llama 3.1's real parameters (θ 500000, head 128, factor 8, low 1, high 4, original 8192): 29 × 1, 6 blended, 29 × 8", () => {
  const s = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, origCtx: 8192 };
  const f = llama3RopeFactors(s, 500000, 128);
  assert.equal(f.length, 64);
  // wavelength 2π·500000^(i/64) is below 8192/4 = 2048 for i ≤ 28 and above 8192 for i ≥ 35
  for (let i = 0; i <= 28; i++) assert.equal(f[i], 1, `pair ${i}`);
  for (let i = 35; i < 64; i++) assert.equal(f[i], 8, `pair ${i}`);
  for (let i = 29; i <= 34; i++) {
    const wavelen = 2 * Math.PI * Math.pow(500000, i / 64);
    const smooth = (8192 / wavelen - 1) / (4 - 1);
    const want = 1 / ((1 - smooth) / 8 + smooth);
    assert.ok(f[i]! > 1 && f[i]! < 8, `pair ${i} blended`);
    assert.ok(Math.abs(f[i]! - want) <= 2e-6 * want, `pair ${i}: ${f[i]} vs ${want}`);
  }
  // increasing with the wavelength
  for (let i = 1; i < 64; i++) assert.ok(f[i]! >= f[i - 1]!);
});

test("scaling KVs in base.py's order: linear, yarn (+ extrapolation/attention/beta), longrope; dynamic writes none and warns", () => {
  const rows = (c: Record<string, unknown>) => ropeScalingKvs("llama", readRope(cfg(c)).scaling).map((k) => [k.key, GGUFValueType[k.value.type], k.value.value]);
  assert.deepEqual(rows({ rope_scaling: { type: "linear", factor: 2.0 } }), [["llama.rope.scaling.type", "STRING", "linear"], ["llama.rope.scaling.factor", "FLOAT32", 2]]);
  assert.deepEqual(rows({ rope_scaling: { rope_type: "yarn", factor: 4.0, original_max_position_embeddings: 32768, extrapolation_factor: 1.0, attention_factor: 1.1, beta_fast: 32, beta_slow: 1 } }), [
    ["llama.rope.scaling.type", "STRING", "yarn"], ["llama.rope.scaling.factor", "FLOAT32", 4], ["llama.rope.scaling.original_context_length", "UINT32", 32768],
    ["llama.rope.scaling.yarn_ext_factor", "FLOAT32", 1], ["llama.rope.scaling.yarn_attn_factor", "FLOAT32", 1.1],
    ["llama.rope.scaling.yarn_beta_fast", "FLOAT32", 32], ["llama.rope.scaling.yarn_beta_slow", "FLOAT32", 1],
  ]);
  assert.deepEqual(rows({ rope_scaling: { type: "longrope", long_factor: [1, 2], short_factor: [1, 1] } }), [["llama.rope.scaling.type", "STRING", "longrope"]]);
  assert.deepEqual(rows({ rope_scaling: { rope_type: "llama3", factor: 8 } }), [], "llama3 is rope_freqs, not KVs");
  const dyn = readRope(cfg({ rope_scaling: { type: "dynamic", factor: 2.0 } }));
  assert.deepEqual(ropeScalingKvs("llama", dyn.scaling), []);
  assert.equal(dyn.warnings.length, 1);
  assert.match(dyn.warnings[0]!, /dynamic/);
});

async function planOf(name: string, family: Family, opts: TinyFamilyOptions): Promise<Awaited<ReturnType<typeof plan>>> {
  const dir = path.join(tmp, name);
  await writeTinyFamily(dir, family, opts);
  return plan({ input: dir, outfile: path.join(tmp, `${name}.gguf`), outtype: "f32" });
}

test("transformers ≥ 4.56 `rope_parameters` (rope_theta inside) gives the same freq_base and rope_freqs as the rope_scaling form", async () => {
  const read = async (p: Awaited<ReturnType<typeof plan>>) => {
    try {
      const m = p.models[0]!;
      const base = m.kvs.find((k) => k.key === "llama.rope.freq_base")?.value.value;
      const rf = m.tensors.find((t) => t.name === "rope_freqs.weight")!;
      return { base, rf: Array.from(await rf.read(0, 1)) };
    } finally {
      await p.close();
    }
  };
  const a = await read(await planOf("rp-old", "llama3.1", {}));
  const b = await read(
    await planOf("rp-new", "llama3.1", {
      editConfig: (c) => {
        c["rope_parameters"] = { ...(c["rope_scaling"] as object), rope_theta: c["rope_theta"] };
        delete c["rope_scaling"];
        delete c["rope_theta"];
      },
    }),
  );
  assert.equal(a.base, 500000);
  assert.deepEqual(b, a);
});

/** The error `plan` raises for a tiny checkpoint with `edit` applied to its config (or weights). */
async function refusal(name: string, family: Family, edit: (c: Record<string, unknown>) => void): Promise<GgufyError> {
  try {
    const p = await planOf(name, family, { editConfig: edit });
    await p.close();
  } catch (e) {
    assert.ok(e instanceof GgufyError, `a GgufyError, not ${String(e)}`);
    assert.ok(!e.message.includes("\n"), "one line");
    return e;
  }
  assert.fail(`${name}: accepted`);
}

const REFUSALS: [string, Family, (c: Record<string, unknown>) => void, RegExp][] = [
  ["unknown-rope-type", "llama3.1", (c) => ((c["rope_scaling"] as Record<string, unknown>)["rope_type"] = "llama4"), /^E_CONFIG: .*config\.json: rope_scaling\.rope_type is "llama4"; ggufy knows "default", .*"llama3"/],
  ["unknown-rope-type-old-key", "qwen2.5-yarn", (c) => ((c["rope_scaling"] as Record<string, unknown>)["type"] = "ntk"), /rope_scaling\.type is "ntk"; ggufy knows/],
  ["eps-string", "llama3.1", (c) => (c["rms_norm_eps"] = "1e-5"), /config\.json: rms_norm_eps is "1e-5"; expected a number$/],
  ["theta-string", "llama3.1", (c) => (c["rope_theta"] = "500000.0"), /config\.json: rope_theta is "500000.0"; expected a number$/],
  ["factor-string", "llama3.1", (c) => ((c["rope_scaling"] as Record<string, unknown>)["factor"] = "two"), /rope_scaling\.factor is "two"; expected a number$/],
  ["factor-zero", "llama3.1", (c) => ((c["rope_scaling"] as Record<string, unknown>)["factor"] = 0), /rope_scaling\.factor is 0; expected a number above 0$/],
  ["yarn-factor-zero", "qwen2.5-yarn", (c) => ((c["rope_scaling"] as Record<string, unknown>)["factor"] = 0), /rope_scaling\.factor is 0; expected a number above 0$/],
  ["yarn-no-orig", "qwen2.5-yarn", (c) => delete (c["rope_scaling"] as Record<string, unknown>)["original_max_position_embeddings"], /rope_scaling\.original_max_position_embeddings is missing/],
  ["llama3-orig-string", "llama3.1", (c) => ((c["rope_scaling"] as Record<string, unknown>)["original_max_position_embeddings"] = "8192"), /rope_scaling\.original_max_position_embeddings is "8192"; expected a number$/],
  ["scaling-not-object", "llama3.1", (c) => (c["rope_scaling"] = "llama3"), /config\.json: rope_scaling is "llama3"; expected an object$/],
  ["head-dim-string", "qwen3", (c) => (c["head_dim"] = "32"), /config\.json: head_dim is "32"; expected a number$/],
  ["unknown-arch", "llama3.1", (c) => ((c["architectures"] = ["Llama5ForCausalLM"]), (c["model_type"] = "llama5")), /^E_UNSUPPORTED_ARCH: .*config\.json: architecture "Llama5ForCausalLM" is not supported \(supported: .*Qwen3ForCausalLM/],
  ["hidden-mismatch", "llama3.1", (c) => (c["hidden_size"] = 96), /^E_CONFIG: .*tensor 'model\.embed_tokens\.weight': hidden_size is 96 but the token embedding is \[512, 64\]/],
  ["head-dim-mismatch", "llama3.2", (c) => (c["head_dim"] = 16), /tensor 'model\.layers\.0\.self_attn\.q_proj\.weight': shape is \[128, 64\] but config\.json implies \[64, 64\] \(num_attention_heads 4 × head size 16/],
  ["layers-mismatch", "mistral-nemo", (c) => (c["num_hidden_layers"] = 1), /the checkpoint has layer 1 but num_hidden_layers is 1/],
  ["vocab-mismatch", "qwen3", (c) => (c["vocab_size"] = 1024), /vocab_size is 1024 but the token embedding has 512 rows/],
];

for (const [name, family, edit, re] of REFUSALS) {
  test(`refused by name: ${name}`, async () => {
    const e = await refusal(name, family, edit);
    assert.match(e.message, re);
  });
}

test("refused by name: a Qwen3 q_norm whose size is not head_dim (config/weights mismatch)", async () => {
  const dir = path.join(tmp, "qnorm-shape");
  const t = await writeTinyFamily(dir, "qwen3", {});
  // rewrite the checkpoint with layer 1's q_norm one element short
  const { SafetensorsCheckpoint } = await import("../../src/formats/safetensors/index.js");
  const ck = await SafetensorsCheckpoint.open(dir);
  const tensors = [];
  for (const x of t.tensors) {
    const info = ck.get(x.name)!;
    let data = await ck.read(x.name);
    let shape = [...info.shape];
    if (x.name === "model.layers.1.self_attn.q_norm.weight") {
      data = data.slice(0, data.length - 4);
      shape = [shape[0]! - 1];
    }
    tensors.push({ name: x.name, dtype: info.dtype, shape, data: data.slice() });
  }
  await ck.close();
  await writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  await assert.rejects(plan({ input: dir, outfile: path.join(tmp, "qnorm.gguf"), outtype: "f32" }), (e: unknown) => {
    assert.ok(e instanceof GgufyError);
    assert.match(e.message, /tensor 'model\.layers\.1\.self_attn\.q_norm\.weight': shape is \[31\] but config\.json implies \[32\] \(head_dim\)/);
    return true;
  });
});

test("refused by name: a Qwen3 checkpoint without k_norm (llama.cpp requires it)", async () => {
  const dir = path.join(tmp, "no-knorm");
  const t = await writeTinyFamily(dir, "qwen3", {});
  const { SafetensorsCheckpoint } = await import("../../src/formats/safetensors/index.js");
  const ck = await SafetensorsCheckpoint.open(dir);
  const tensors = [];
  for (const x of t.tensors) {
    if (x.name === "model.layers.0.self_attn.k_norm.weight") continue;
    const info = ck.get(x.name)!;
    tensors.push({ name: x.name, dtype: info.dtype, shape: [...info.shape], data: (await ck.read(x.name)).slice() });
  }
  await ck.close();
  await writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  await assert.rejects(plan({ input: dir, outfile: path.join(tmp, "noknorm.gguf"), outtype: "f32" }), /E_MISSING_TENSOR: .*tensor 'model\.layers\.0\.self_attn\.k_norm\.weight': absent from the checkpoint/);
});

test("warnings: Qwen2/Qwen3 with use_sliding_window true (transformers windows layers ≥ max_window_layers; llama.cpp's qwen2/qwen3 do not), none for Qwen2.5's inert sliding_window 131072, dynamic NTK", async () => {
  const warningsOf = async (name: string, family: Family, edit?: (c: Record<string, unknown>) => void): Promise<readonly string[]> => {
    const p = await planOf(name, family, edit ? { editConfig: edit } : {});
    try {
      return p.models[0]!.warnings ?? [];
    } finally {
      await p.close();
    }
  };
  assert.deepEqual(await warningsOf("w-qwen25", "qwen2.5-yarn"), []);
  assert.deepEqual(await warningsOf("w-qwen3", "qwen3"), []);
  const q2 = await warningsOf("w-qwen25-swa", "qwen2.5-yarn", (c) => ((c["use_sliding_window"] = true), (c["sliding_window"] = 4096)));
  assert.equal(q2.length, 1);
  assert.match(q2[0]!, /^sliding_window 4096: llama\.cpp's qwen2 architecture has no sliding-window attention/);
  const q3 = await warningsOf("w-qwen3-swa", "qwen3", (c) => ((c["use_sliding_window"] = true), (c["sliding_window"] = 4096)));
  assert.match(q3[0]!, /^sliding_window 4096: llama\.cpp's qwen3 architecture/);
  const dyn = await warningsOf("w-dyn", "mistral-v0.3", (c) => (c["rope_scaling"] = { type: "dynamic", factor: 2.0 }));
  assert.equal(dyn.length, 1);
  assert.match(dyn[0]!, /rope_scaling\.type "dynamic": llama\.cpp has no dynamic NTK scaling/);
});
