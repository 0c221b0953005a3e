/**
 * stories260K (a real trained tiny Llama) quantized by the fixture generator to NF4 + double quant, FP4,
 * NF4 with bf16 storage/dtype, and LLM.int8; then detected and decoded through SafetensorsCheckpoint.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, readFile, readdir, mkdir, copyFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SafetensorsCheckpoint, writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { detectBnb, decodeBnbRows, describeBnb, bnbAuxKeys, bnbDecoder, type BnbModule } from "../../src/quant/bnb/index.js";
import { SourceCheckpoint } from "../../src/convert/source.js";
import { testData } from "../../fixtures/paths.js";
import { quantizeCheckpointToBnb, isSkippedModule, type QuantizeCheckpointOptions } from "../../fixtures/bnb.js";

const SRC = testData("tinyllamas-stories260K", "derived-hf-llama");
const PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
const LINEAR = Array.from({ length: 5 }, (_, l) => PROJ.map((p) => `model.layers.${l}.${p}.weight`)).flat().sort();

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-bnb-"));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function sourceF32(name: string): Promise<Float32Array> {
  const c = await SafetensorsCheckpoint.open(SRC);
  try {
    const b = await c.read(name);
    return new Float32Array(b.slice().buffer);
  } finally {
    await c.close();
  }
}

interface Variant {
  label: string;
  opts: QuantizeCheckpointOptions;
  describe: string;
  dtype: "f32" | "bf16";
}
const VARIANTS: Variant[] = [
  { label: "nf4-dq", opts: { method: "nf4", doubleQuant: true, computeDtype: "bfloat16" }, describe: "nf4-dq bs64 f32 (u8 storage)", dtype: "f32" },
  { label: "fp4", opts: { method: "fp4" }, describe: "fp4 bs64 f32 (u8 storage)", dtype: "f32" },
  { label: "nf4-bf16", opts: { method: "nf4", quantStorage: "bfloat16", torchDtype: "bfloat16", blocksize: 128 }, describe: "nf4 bs128 bf16 (bf16 storage)", dtype: "bf16" },
  { label: "int8", opts: { method: "int8" }, describe: "int8 row f32 (SCB, weight_format)", dtype: "f32" },
];

for (const v of VARIANTS) {
  test(`stories260K → ${v.label}: detection, row ranges, fidelity, config and files`, async () => {
    const dir = path.join(tmp, v.label);
    const quantized = await quantizeCheckpointToBnb(SRC, dir, v.opts);
    assert.deepEqual([...quantized].sort(), LINEAR);

    const config = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      const mods = await detectBnb(ckpt.tensors, (n) => ckpt.read(n), config, dir);
      assert.deepEqual([...mods.keys()], LINEAR);
      const read = (n: string, o: number, l: number) => ckpt.read(n, o, l);
      for (const m of mods.values()) {
        assert.equal(describeBnb(m), v.describe, m.weight);
        assert.equal(m.dtype, v.dtype);
        assert.deepEqual(m.warnings, []);
      }
      // every tensor is either a module weight, an aux key, or a plain tensor of the source
      const aux = bnbAuxKeys(mods);
      const src = await SafetensorsCheckpoint.open(SRC);
      try {
        for (const name of ckpt.tensors.keys()) {
          if (mods.has(name) || aux.has(name)) continue;
          const s = src.get(name);
          assert.ok(s, `${name} comes from the source`);
          const t = ckpt.get(name)!;
          assert.equal(t.dtype, v.dtype === "bf16" ? "BF16" : "F32", name);
          if (t.dtype === "F32") assert.deepEqual(await ckpt.read(name), await src.read(name), `${name} unchanged`);
        }
        assert.equal([...ckpt.tensors.keys()].filter((n) => !mods.has(n) && !aux.has(n)).length, src.tensors.size - LINEAR.length);
      } finally {
        await src.close();
      }

      // row ranges equal the full decode, and the decode is close to the float weights
      for (const name of ["model.layers.0.self_attn.k_proj.weight", "model.layers.3.mlp.down_proj.weight", "model.layers.4.mlp.up_proj.weight"]) {
        const m = mods.get(name) as BnbModule;
        const full = await decodeBnbRows(m, read, 0, m.rows);
        assert.equal(full.length, m.rows * m.cols);
        for (const [r0, k] of [[0, 1], [1, 2], [3, 5], [m.rows - 1, 1], [7, m.rows - 7], [0, 0]] as const) {
          const part = await decodeBnbRows(m, read, r0, k);
          assert.deepEqual(part, full.subarray(r0 * m.cols, (r0 + k) * m.cols), `${name} rows [${r0}, ${r0 + k})`);
        }
        const x = await sourceF32(name);
        let err = 0;
        let ref = 0;
        for (let i = 0; i < x.length; i++) {
          err += (full[i]! - x[i]!) ** 2;
          ref += x[i]! ** 2;
        }
        const rel = Math.sqrt(err / ref);
        assert.ok(rel < (v.opts.method === "int8" ? 0.01 : 0.2), `${name}: relative RMS error ${rel}`);
      }

      // the converter's decoder hook sees the same logical tensors
      const sc = await SourceCheckpoint.open(dir, [bnbDecoder]);
      try {
        const srcNames = (await SafetensorsCheckpoint.open(SRC).then(async (c) => [c.names(), await c.close()][0] as string[])).sort();
        assert.deepEqual([...sc.names()].sort(), srcNames);
        const t = sc.get("model.layers.2.mlp.down_proj.weight")!;
        assert.deepEqual([t.rows, t.rowLength, t.dtype, t.encoding], [64, 172, v.dtype, v.describe]);
        const m = mods.get("model.layers.2.mlp.down_proj.weight")!;
        assert.deepEqual(await sc.readRows(t.name, 5, 9), await decodeBnbRows(m, read, 5, 9));
      } finally {
        await sc.close();
      }
    } finally {
      await ckpt.close();
    }

    // config.json: sorted keys, Python float formatting kept, transformers' quantization_config
    const text = await readFile(path.join(dir, "config.json"), "utf8");
    assert.match(text, /"rope_theta": 10000\.0,/);
    assert.match(text, /"rms_norm_eps": 1e-05,/);
    assert.match(text, /"llm_int8_threshold": 6\.0,/);
    const keys = Object.keys(config);
    assert.deepEqual(keys, [...keys].sort());
    const is4 = v.opts.method !== "int8";
    assert.deepEqual(config["quantization_config"], {
      _load_in_4bit: is4,
      _load_in_8bit: !is4,
      bnb_4bit_compute_dtype: v.opts.computeDtype ?? "float32",
      bnb_4bit_quant_storage: v.opts.quantStorage ?? "uint8",
      bnb_4bit_quant_type: is4 ? v.opts.method : "fp4",
      bnb_4bit_use_double_quant: v.opts.doubleQuant ?? false,
      llm_int8_enable_fp32_cpu_offload: false,
      llm_int8_has_fp16_weight: false,
      llm_int8_skip_modules: null,
      llm_int8_threshold: 6,
      load_in_4bit: is4,
      load_in_8bit: !is4,
      quant_method: "bitsandbytes",
    });
    assert.equal(config["torch_dtype"], v.opts.torchDtype ?? "float32");
    assert.deepEqual((await readdir(dir)).sort(), ["config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]);
    assert.deepEqual(await readFile(path.join(dir, "tokenizer.model")), await readFile(path.join(SRC, "tokenizer.model")));
  });
}

test("sharded source: shard layout and index kept, aux keys beside their weight", async () => {
  // split stories260K into two shards (layers 0-2 + embeddings | layers 3-4 + norm) with an index
  const sharded = path.join(tmp, "sharded-src");
  await mkdir(sharded, { recursive: true });
  const src = await SafetensorsCheckpoint.open(SRC);
  const shards: [string, StTensor[]][] = [["model-00001-of-00002.safetensors", []], ["model-00002-of-00002.safetensors", []]];
  try {
    for (const name of src.names()) {
      const info = src.get(name)!;
      const which = /^model\.layers\.[34]\.|^model\.norm/.test(name) ? 1 : 0;
      shards[which]![1].push({ name, dtype: info.dtype, shape: info.shape, data: (await src.read(name)).slice() });
    }
  } finally {
    await src.close();
  }
  const weightMap: Record<string, string> = {};
  for (const [file, ts] of shards) {
    await writeSafetensors(path.join(sharded, file), ts);
    for (const t of ts) weightMap[t.name] = file;
  }
  const { writeFile } = await import("node:fs/promises");
  await writeFile(path.join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  for (const f of ["config.json", "tokenizer.model", "tokenizer_config.json"]) await copyFile(path.join(SRC, f), path.join(sharded, f));

  const out = path.join(tmp, "sharded-nf4");
  await quantizeCheckpointToBnb(sharded, out, { method: "nf4", doubleQuant: true, skipModules: ["lm_head", "o_proj"] });
  assert.deepEqual((await readdir(out)).sort(), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.model", "tokenizer_config.json"]);
  const index = JSON.parse(await readFile(path.join(out, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
  const ckpt = await SafetensorsCheckpoint.open(out);
  try {
    const config = JSON.parse(await readFile(path.join(out, "config.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual((config["quantization_config"] as Record<string, unknown>)["llm_int8_skip_modules"], ["lm_head", "o_proj"]);
    const mods = await detectBnb(ckpt.tensors, (n) => ckpt.read(n), config, out);
    assert.deepEqual([...mods.keys()], LINEAR.filter((n) => !n.includes("o_proj")));
    for (const m of mods.values()) {
      const shard = index.weight_map[m.weight];
      assert.equal(shard, weightMap[m.weight]);
      for (const k of m.auxKeys) assert.equal(index.weight_map[k], shard, `${k} stored with its weight`);
    }
    assert.equal(ckpt.get("model.layers.1.self_attn.o_proj.weight")!.dtype, "F32");
  } finally {
    await ckpt.close();
  }
});

test("transformers' skip rule (MiniCPM-V 2.6 int4 skip list)", () => {
  const skip = ["out_proj", "kv_proj", "lm_head"];
  for (const m of ["vpm.encoder.layers.3.self_attn.out_proj", "resampler.kv_proj", "resampler.attn.out_proj", "llm.lm_head", "lm_head"]) assert.ok(isSkippedModule(m, skip), m);
  for (const m of ["vpm.encoder.layers.3.self_attn.q_proj", "vpm.encoder.layers.3.mlp.fc1", "llm.model.layers.0.mlp.down_proj"]) assert.ok(!isSkippedModule(m, skip), m);
});
