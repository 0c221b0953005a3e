/**
 * The PEFT adapter reader: key variants, scales (α/r, α/√r, rank/alpha patterns), values as stored, and
 * refusals by name (DoRA, rank mismatch, another architecture, options that change the math).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm, unlink, writeFile, readFile } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writePeftAdapter } from "../../fixtures/peft.js";
import { openLoraAdapter, matchAdapterToBase, type LoraAdapter } from "../../src/convert/lora/adapter.js";
import { GgufyError } from "../../src/errors.js";
import { writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { peftDefaultConfig } from "../../fixtures/peft.js";

/** a 2-layer Llama-like base: hidden 16, 4 heads × 4, 2 kv heads, ffn 24, vocab 40 */
function llamaShapes(layers = 2, hidden = 16): Map<string, number[]> {
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [40, hidden]], ["lm_head.weight", [40, hidden]], ["model.norm.weight", [hidden]]]);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    m.set(p + "self_attn.q_proj.weight", [16, hidden]);
    m.set(p + "self_attn.k_proj.weight", [8, hidden]);
    m.set(p + "self_attn.v_proj.weight", [8, hidden]);
    m.set(p + "self_attn.o_proj.weight", [hidden, 16]);
    m.set(p + "mlp.gate_proj.weight", [24, hidden]);
    m.set(p + "mlp.up_proj.weight", [24, hidden]);
    m.set(p + "mlp.down_proj.weight", [hidden, 24]);
    m.set(p + "input_layernorm.weight", [hidden]);
  }
  return m;
}

async function withAdapter<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await scratchDir("ggufy-lora-");
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function opened<T>(dir: string, fn: (a: LoraAdapter) => Promise<T>): Promise<T> {
  const a = await openLoraAdapter(dir);
  try {
    return await fn(a);
  } finally {
    await a.close();
  }
}

async function refusal(p: Promise<unknown>, re: RegExp, tensor?: string): Promise<GgufyError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof GgufyError, `expected a GgufyError, got ${String(e)}`);
  assert.equal(e.code, "E_LORA", e.message);
  assert.match(e.message, re);
  assert.ok(!e.message.includes("\n"), "one line");
  if (tensor !== undefined) assert.equal(e.tensor, tensor, e.message);
  return e;
}

test("PEFT keys: targets, ranks, α/r, values as stored (F32, BF16, F16), both key styles", async () => {
  for (const [dtype, keyStyle] of [["F32", "peft"], ["BF16", "adapter-name"], ["F16", "peft"]] as const) {
    await withAdapter(async (dir) => {
      const shapes = llamaShapes();
      const w = await writePeftAdapter(dir, { base: shapes, r: 4, loraAlpha: 8, dtype, keyStyle, targetModules: ["q_proj", "v_proj", "down_proj"] });
      if (keyStyle === "peft") assert.ok(w.keys.includes("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
      else assert.ok(w.keys.includes("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"));
      await opened(dir, async (a) => {
        assert.equal(a.targets.length, 6);
        assert.deepEqual(a.targets.map((t) => t.baseName).sort(), w.targets.map((t) => t.baseName).sort());
        for (const t of a.targets) {
          const want = w.targets.find((x) => x.baseName === t.baseName)!;
          assert.equal(t.rank, 4);
          assert.equal(t.alpha, 8);
          assert.equal(t.scale, 2);
          assert.equal(t.embedding, false);
          assert.deepEqual(t.a.shape, want.aShape);
          assert.deepEqual(t.b.shape, want.bShape);
          assert.deepEqual(await a.read(t.a), want.a);
          assert.deepEqual(await a.read(t.b), want.b);
        }
        matchAdapterToBase(a, shapes);
      });
    });
  }
});

test("use_rslora: α/√r; rank_pattern and alpha_pattern per module (first matching key, PEFT's regex)", async () => {
  await withAdapter(async (dir) => {
    const shapes = llamaShapes();
    await writePeftAdapter(dir, {
      base: shapes, r: 8, loraAlpha: 16, useRslora: true, targetModules: ["q_proj", "k_proj", "v_proj"],
      rankPattern: { "layers\\.1\\.self_attn\\.q_proj": 2, q_proj: 4 }, alphaPattern: { v_proj: 3 },
    });
    await opened(dir, async (a) => {
      const by = (n: string) => a.targets.find((t) => t.baseName === n)!;
      assert.equal(by("model.layers.0.self_attn.q_proj.weight").rank, 4);
      assert.equal(by("model.layers.1.self_attn.q_proj.weight").rank, 2);
      assert.equal(by("model.layers.0.self_attn.k_proj.weight").rank, 8);
      assert.equal(by("model.layers.0.self_attn.k_proj.weight").scale, 16 / Math.sqrt(8));
      assert.equal(by("model.layers.0.self_attn.q_proj.weight").scale, 16 / 2);
      assert.equal(by("model.layers.1.self_attn.q_proj.weight").scale, 16 / Math.sqrt(2));
      assert.equal(by("model.layers.1.self_attn.v_proj.weight").alpha, 3);
      assert.equal(by("model.layers.1.self_attn.v_proj.weight").scale, 3 / Math.sqrt(8));
    });
  });
});

test("lora_embedding_A/B for embed_tokens and modules_to_save (both saved forms)", async () => {
  for (const keyStyle of ["peft", "adapter-name"] as const) {
    await withAdapter(async (dir) => {
      const shapes = llamaShapes();
      const w = await writePeftAdapter(dir, { base: shapes, r: 4, targetModules: ["embed_tokens", "q_proj"], modulesToSave: ["lm_head"], keyStyle });
      assert.ok(w.keys.includes(keyStyle === "peft" ? "base_model.model.model.embed_tokens.lora_embedding_A" : "base_model.model.model.embed_tokens.lora_embedding_A.default"));
      assert.ok(w.keys.includes(keyStyle === "peft" ? "base_model.model.lm_head.weight" : "base_model.model.lm_head.modules_to_save.default.weight"));
      await opened(dir, async (a) => {
        const e = a.targets.find((t) => t.baseName === "model.embed_tokens.weight")!;
        assert.equal(e.embedding, true);
        assert.deepEqual(e.a.shape, [4, 40]);
        assert.deepEqual(e.b.shape, [16, 4]);
        assert.equal(a.saved.length, 1);
        assert.equal(a.saved[0]!.baseName, "lm_head.weight");
        assert.deepEqual(await a.read(a.saved[0]!.tensor), w.saved[0]!.values);
        matchAdapterToBase(a, shapes);
      });
    });
  }
});

test("refused: DoRA (config and magnitude vectors), each by name", async () => {
  await withAdapter(async (dir) => {
    // PEFT saves a DoRA adapter with its magnitude vectors: the refusal names the first of them
    await writePeftAdapter(dir, { base: llamaShapes(), useDora: true });
    await refusal(openLoraAdapter(dir), /DoRA magnitude vector \(adapter_config\.json: use_dora is true\)/, "base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector");
  });
  await withAdapter(async (dir) => {
    // the flag alone (no magnitude vector stored): refused by the config key
    await writePeftAdapter(dir, { base: llamaShapes(), extraConfig: { use_dora: true } });
    await refusal(openLoraAdapter(dir), /use_dora is true: DoRA/);
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes(), useDora: true, extraConfig: { use_dora: false } });
    await refusal(openLoraAdapter(dir), /DoRA magnitude vector/, "base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector");
  });
});

test("refused: a rank mismatch names the tensor", async () => {
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes(), r: 8, extraConfig: { r: 4 } });
    await refusal(openLoraAdapter(dir), /rank mismatch: lora_A has 8 rows but the adapter's r for 'model\.layers\.0\.self_attn\.k_proj' is 4/, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes(), r: 8, rankPattern: { o_proj: 4 }, extraConfig: { rank_pattern: {} } });
    await refusal(openLoraAdapter(dir), /rank mismatch: lora_A has 4 rows/, "base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight");
  });
});

test("refused: an adapter for another architecture or size, naming the tensor", async () => {
  await withAdapter(async (dir) => {
    // a GPT-NeoX-style base: the adapter's modules do not exist in the Llama base
    const neox = new Map<string, number[]>([["gpt_neox.layers.0.attention.query_key_value.weight", [48, 16]], ["gpt_neox.layers.0.attention.dense.weight", [16, 16]]]);
    await writePeftAdapter(dir, { base: neox, targetModules: ["query_key_value", "dense"] });
    await opened(dir, async (a) => {
      assert.throws(() => matchAdapterToBase(a, llamaShapes()), (e: unknown) => e instanceof GgufyError && e.code === "E_LORA" && e.tensor === "base_model.model.gpt_neox.layers.0.attention.dense.lora_A.weight" && /base model does not have/.test(e.message) && !e.message.includes("\n"));
    });
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes(2, 32) });
    await opened(dir, async (a) => {
      assert.throws(() => matchAdapterToBase(a, llamaShapes(2, 16)), (e: unknown) => e instanceof GgufyError && e.tensor === "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight" && /'model\.layers\.0\.self_attn\.k_proj\.weight' is \[8, 16\] but lora_B·lora_A is \[8, 32\]/.test(e.message));
    });
  });
});

test("refused by name: options that change the math, unknown options, bad values, missing halves, pickles", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ lora_bias: true }, /lora_bias is true/],
    [{ bias: "all" }, /bias is "all"/],
    [{ use_qalora: true }, /use_qalora is true/],
    [{ fan_in_fan_out: true }, /fan_in_fan_out is true/],
    [{ layer_replication: [[0, 2]] }, /layer_replication is/],
    [{ trainable_token_indices: [1, 2] }, /trainable_token_indices is/],
    [{ alora_invocation_tokens: [5, 6] }, /alora_invocation_tokens is \[5,6\]: an activated LoRA .* cannot be merged/],
    [{ invocation_string: "<think>" }, /invocation_string is "<think>" without alora_invocation_tokens/],
    [{ init_lora_weights: "pissa" }, /init_lora_weights is "pissa"/],
    [{ loftq_config: { loftq_bits: 4 } }, /loftq_config is/],
    [{ peft_type: "ADALORA" }, /peft_type is "ADALORA"/],
    [{ r: "8" }, /r is "8", not a positive integer/],
    [{ r: 0 }, /r is 0, not a positive integer/],
    [{ lora_alpha: null }, /lora_alpha is null/],
    [{ use_rslora: "yes" }, /use_rslora is "yes", not true or false/],
    [{ rank_pattern: { q_proj: 2.5 } }, /rank_pattern\["q_proj"\] is 2\.5/],
    [{ some_future_option: 3 }, /unknown option some_future_option = 3/],
    [{ target_modules: ["k_proj"] }, /module 'model\.layers\.0\.self_attn\.o_proj' is not selected by target_modules/],
    [{ layers_to_transform: [1] }, /not selected by target_modules .* layers_to_transform \[1\]/],
  ];
  for (const [extra, re] of cases) {
    await withAdapter(async (dir) => {
      await writePeftAdapter(dir, { base: llamaShapes(), extraConfig: extra });
      await refusal(openLoraAdapter(dir), re);
    });
  }
  // harmless defaults and an unknown option that is off are accepted
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes(), extraConfig: { some_future_flag: false, init_lora_weights: "gaussian", layers_to_transform: [0, 1] } });
    await opened(dir, async (a) => assert.equal(a.targets.length, 8));
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes() });
    await unlink(path.join(dir, "adapter_model.safetensors"));
    await writeFile(path.join(dir, "adapter_model.bin"), "PK");
    await refusal(openLoraAdapter(dir), /adapter_model\.safetensors is missing \(an adapter_model\.bin pickle is not read/);
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes() });
    await unlink(path.join(dir, "adapter_config.json"));
    await refusal(openLoraAdapter(dir), /adapter_config\.json is missing: not a PEFT adapter folder/);
  });
  await withAdapter(async (dir) => {
    await writePeftAdapter(dir, { base: llamaShapes() });
    const f = path.join(dir, "adapter_config.json");
    await writeFile(f, (await readFile(f, "utf8")).slice(0, 40));
    await refusal(openLoraAdapter(dir), /not valid JSON/);
  });
});

test("refused by name: a lora_A without its lora_B, two adapter names, an integer tensor, a non-finite value, an unknown key", async () => {
  const f32 = (n: number, v = 0.01): Uint8Array => new Uint8Array(new Float32Array(n).fill(v).buffer);
  const cases: [StTensor[], RegExp, string][] = [
    [[{ name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "F32", shape: [8, 16], data: f32(128) }], /has no matching lora_B tensor/, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"],
    [[
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", dtype: "F32", shape: [8, 16], data: f32(128) },
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.other.weight", dtype: "F32", shape: [16, 8], data: f32(128) },
    ], /holds adapter 'other' as well as 'default'/, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.other.weight"],
    [[{ name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "I32", shape: [8, 16], data: f32(128) }], /dtype I32 is not a float type/, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"],
    [[{ name: "base_model.model.model.layers.0.self_attn.q_proj.weight", dtype: "F32", shape: [16, 16], data: f32(256) }], /not a LoRA tensor/, "base_model.model.model.layers.0.self_attn.q_proj.weight"],
  ];
  for (const [tensors, re, tensor] of cases) {
    await withAdapter(async (dir) => {
      await writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
      await writeFile(path.join(dir, "adapter_config.json"), JSON.stringify({ ...peftDefaultConfig(), target_modules: ["q_proj"] }));
      await refusal(openLoraAdapter(dir), re, tensor);
    });
  }
  await withAdapter(async (dir) => {
    const a = new Float32Array(128).fill(0.01);
    a[5] = NaN;
    await writeSafetensors(path.join(dir, "adapter_model.safetensors"), [
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "F32", shape: [8, 16], data: new Uint8Array(a.buffer) },
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", dtype: "F32", shape: [16, 8], data: f32(128) },
    ], { format: "pt" });
    await writeFile(path.join(dir, "adapter_config.json"), JSON.stringify({ ...peftDefaultConfig(), target_modules: ["q_proj"] }));
    await opened(dir, async (ad) => {
      const e = await ad.read(ad.targets[0]!.a).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof GgufyError && e.code === "E_NONFINITE" && e.tensor === "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" && /element 5 is NaN/.test(e.message), String(e));
    });
  });
});

test("a FIFO as adapter_config.json or adapter_model.safetensors is refused at once, never read (no hang)", { skip: process.platform === "win32" }, async () => {
  const { execFileSync } = await import("node:child_process");
  for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
    await withAdapter(async (dir) => {
      await writePeftAdapter(dir, { base: llamaShapes() });
      await unlink(path.join(dir, f));
      execFileSync("mkfifo", [path.join(dir, f)]);
      const e = await openLoraAdapter(dir).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof GgufyError && /FIFO/.test(e.message) && e.file === path.join(dir, f), String(e));
    });
  }
});
