/**
 * llama-quantize presets end to end: a generated Qwen2 checkpoint is converted by ggufy once to f32
 * and once directly to a preset; the real `llama_model_quantize` of node-llama-cpp's libllama
 * (v0.4.0, through koffi) quantizes the f32 file with the same ftype and options; every tensor of
 * ggufy's file must have the same name, position, type and bytes as llama.cpp's, and the KVs the same values.
 *
 * Speed: the real Qwen2 vocabulary (151,936 embedding rows) would make the two embedding matrices
 * ~95% of the work of every run, quantized in JS; so the checkpoint here keeps the real Qwen2
 * BPE files cut to their first 1,024 tokens (and the merges among them), with Qwen2.5's 22 added
 * tokens renumbered after them. One run on the unmodified fixture (full vocabulary) stays.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { convert, type ConvertOptions } from "../../src/index.js";
import { readGguf, type GGUFFile } from "../../src/formats/gguf/reader.js";
import { parseTypeName, typeName } from "../../src/quant/ggml/types.js";
import { findPreset, PRESETS } from "../../src/quant/presets.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { writeSmallQwen2, type SmallQwen2 } from "../../fixtures/qwen2-small.js";
import { llamaQuantize, type LlamaQuantizeParams } from "../support/llama-quantize.js";

const tmp = await scratchDir("ggufy-e2e-presets-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ---- a Qwen2 checkpoint with a cut-down real tokenizer ------------------------------------------------


// ---- models and their f32 conversions --------------------------------------------------------------

/** 8 layers (use_more_bits: 0, 3, 6, 7), n_gqa 4, untied, ffn 544: ffn_down rows need the fallbacks. */
const A: SmallQwen2 = { layers: 8, hidden: 256, heads: 4, kvHeads: 1, ffn: 544, tied: false, dtype: "BF16", seed: 11 };
/** 16 layers (n/16 = 1 for Q3_K_M), n_gqa 2, tied embeddings, F32 source. */
const B: SmallQwen2 = { layers: 16, hidden: 256, heads: 4, kvHeads: 2, ffn: 256, tied: true, dtype: "F32", seed: 12 };

const f32Files = new Map<string, Promise<{ dir: string; f32: string }>>();
function model(name: string, write: (dir: string) => Promise<unknown>): Promise<{ dir: string; f32: string }> {
  let p = f32Files.get(name);
  if (!p) {
    p = (async () => {
      const dir = path.join(tmp, name);
      await write(dir);
      const f32 = path.join(tmp, `${name}-f32.gguf`);
      await convert({ input: dir, outtype: "f32", outfile: f32, force: true });
      return { dir, f32 };
    })();
    f32Files.set(name, p);
  }
  return p;
}
const modelA = (): Promise<{ dir: string; f32: string }> => model("A", (d) => writeSmallQwen2(d, A));
const modelB = (): Promise<{ dir: string; f32: string }> => model("B", (d) => writeSmallQwen2(d, B));

// ---- the comparison ---------------------------------------------------------------------------------

interface Flags {
  pure?: boolean;
  outputTensorType?: string;
  tokenEmbeddingType?: string;
  /** REGEX=TYPE (lower-case: llama-quantize lower-cases the pattern) */
  tensorTypes?: string[];
  leaveOutputTensor?: boolean;
}

function llamaParams(ftype: number, f: Flags): LlamaQuantizeParams {
  const t = (s: string): number => {
    const v = parseTypeName(s);
    assert.ok(v !== undefined, s);
    return v;
  };
  return {
    ftype,
    ...(f.pure ? { pure: true } : {}),
    ...(f.leaveOutputTensor ? { leaveOutputTensor: true } : {}),
    ...(f.outputTensorType ? { outputTensorType: t(f.outputTensorType) } : {}),
    ...(f.tokenEmbeddingType ? { tokenEmbeddingType: t(f.tokenEmbeddingType) } : {}),
    ...(f.tensorTypes ? { tensorTypes: f.tensorTypes.map((s) => { const i = s.indexOf("="); return [s.slice(0, i), t(s.slice(i + 1))] as const; }) } : {}),
  };
}

/** A KV value as comparable text (bigint-safe, arrays included). */
function kvText(f: GGUFFile, key: string): string {
  return JSON.stringify(f.kvs.get(key), (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
}

/** ggufy (direct) vs llama_model_quantize (from ggufy's f32): tensors and KVs. Returns the type tally. */
async function compare(label: string, m: { dir: string; f32: string }, presetName: string, flags: Flags = {}): Promise<Record<string, number>> {
  const preset = findPreset(presetName);
  assert.ok(preset, presetName);
  const tag = `${label}-${presetName}-${Object.keys(flags).join("+") || "plain"}`.replace(/[^A-Za-z0-9_+-]/g, "_");
  const ours = path.join(tmp, `${tag}.gguf`);
  const ref = path.join(tmp, `${tag}-llama.gguf`);
  const opts: ConvertOptions = { input: m.dir, outtype: presetName, outfile: ours, force: true, ...flags };
  await Promise.all([convert(opts), llamaQuantize(m.f32, ref, llamaParams(preset.ftype, flags))]);
  const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
  const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
  try {
    assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name), `${label} ${presetName}: tensor names/order`);
    const diffs: string[] = [];
    const tally: Record<string, number> = {};
    for (let i = 0; i < b.tensors.length; i++) {
      const x = a.tensors[i]!;
      const y = b.tensors[i]!;
      tally[typeName(y.type)] = (tally[typeName(y.type)] ?? 0) + 1;
      assert.deepEqual(x.ne, y.ne, x.name);
      if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
      else if (x.bytes !== y.bytes || !ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) {
        diffs.push(`${x.name} (${typeName(x.type)}): bytes differ`);
      }
    }
    assert.deepEqual(diffs, [], `${label} ${presetName} ${JSON.stringify(flags)}`);
    // KVs: the same keys and values (llama-quantize moves file_type and quantization_version to the end)
    assert.deepEqual([...a.keys].sort(), [...b.keys].sort(), "KV keys");
    for (const k of b.keys) assert.equal(kvText(a, k), kvText(b, k), k);
    assert.equal(Number(a.kvs.get("general.file_type")?.value), preset.ftype);
    return tally;
  } finally {
    await Promise.all([rm(ours, { force: true }), rm(ref, { force: true })]);
  }
}

// ---- the presets ------------------------------------------------------------------------------------

const ALL = ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q2_K", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32", "TQ1_0", "TQ2_0", "IQ3_S", "IQ3_M"];

test("every preset ggufy offers is exercised here", () => {
  assert.deepEqual([...ALL].sort(), PRESETS.map((p) => p.name).sort());
});

for (const p of ALL) {
  test(`${p}: untied 8-layer Qwen2 (n_gqa 4, ffn 544) — byte-identical to llama_model_quantize`, async () => {
    const tally = await compare("A", await modelA(), p);
    const tensors = Object.values(tally).reduce((x, y) => x + y, 0);
    assert.equal(tensors, 3 + 8 * 12);
    if (p === "Q4_K_M") {
      // attn_v and ffn_down bumped on use_more_bits layers {0, 3, 6, 7}; ffn_down (ne0 544) falls back q6_K → q8_0, q4_K → q5_0
      assert.deepEqual(tally, { f32: 1 + 8 * 5, q6_K: 1 + 4, q4_K: 1 + 4 + 8 * 5, q8_0: 4, q5_0: 4 });
    }
  });
}

for (const p of ["Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_NL", "Q8_0", "F16"]) {
  test(`${p}: tied 16-layer Qwen2 (n_gqa 2) — byte-identical to llama_model_quantize`, async () => {
    await compare("B", await modelB(), p);
  });
}

test("imatrix-only presets and presets without codecs are refused before anything is written", async () => {
  const m = await modelA();
  for (const p of ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"]) {
    await assert.rejects(convert({ input: m.dir, outtype: p, outfile: path.join(tmp, "refused.gguf"), force: true }), { code: "E_IMATRIX_REQUIRED" }, p);
  }
  // an override to an IQ type that needs an imatrix (tensor_requires_imatrix / ggml_quantize_requires_imatrix)
  for (const [tt, o] of [["attn_q=iq2_xxs", {}], ["ffn_up=iq3_xxs", {}], ["attn_k=iq1_m", {}], ["x=q4_k", { outputTensorType: "iq2_xs" }]] as const) {
    await assert.rejects(convert({ input: m.dir, outtype: "Q4_K_M", tensorTypes: [tt], ...o, outfile: path.join(tmp, "refused.gguf"), force: true }), { code: "E_IMATRIX_REQUIRED" }, tt);
  }
  for (const p of ["MXFP4_MOE", "Q1_0", "Q2_0"]) {
    await assert.rejects(convert({ input: m.dir, outtype: p, outfile: path.join(tmp, "refused.gguf"), force: true }), { code: "E_USAGE" }, p);
  }
  assert.equal(existsSync(path.join(tmp, "refused.gguf")), false);
});

// ---- the options --------------------------------------------------------------------------------------

test("--pure (Q4_K_M) matches llama_model_quantize pure", async () => {
  const tally = await compare("A", await modelA(), "Q4_K_M", { pure: true });
  assert.equal(tally["q6_K"], undefined);
});

test("--output-tensor-type q8_0 --token-embedding-type q5_K (Q4_K_S) match output_tensor_type / token_embedding_type", async () => {
  await compare("A", await modelA(), "Q4_K_S", { outputTensorType: "q8_0", tokenEmbeddingType: "q5_K" });
});

test("--output-tensor-type on a tied model (Q5_K_M): token_embd follows it", async () => {
  await compare("B", await modelB(), "Q5_K_M", { outputTensorType: "q8_0" });
});

test("--token-embedding-type with the F16 preset (applies even though F16 is not quantized)", async () => {
  await compare("A", await modelA(), "F16", { tokenEmbeddingType: "q8_0", outputTensorType: "q6_K" });
});

test("--tensor-type (first match wins, before the mixture; counters skip the overridden tensors) matches tt_overrides", async () => {
  await compare("A", await modelA(), "Q3_K_M", { tensorTypes: ["blk\\.0\\.attn_v=q8_0", "attn_v=q6_K", "blk\\.[0-3]\\.ffn_(up|gate)=q5_k", "ffn_down=iq4_nl", "token_embd=q4_0"] });
});

test("--leave-output-tensor (Q4_K_M) matches quantize_output_tensor = false", async () => {
  const tally = await compare("A", await modelA(), "Q4_K_M", { leaveOutputTensor: true });
  assert.equal(tally["f32"], 1 + 8 * 5 + 1);
});

// ---- the unmodified fixture (full Qwen2 vocabulary) ---------------------------------------------------

test("full-vocabulary fixture (writeTinyQwen2, tied, 151,936 rows): Q8_0 byte-identical", async () => {
  // tied and Q8_0 (the cheap codec): the 38.9M-element embedding dominates this run
  const m = await model("full", (d) => writeTinyQwen2(d, { layers: 2, hidden: 256, heads: 4, kvHeads: 1, oddFfn: true, tied: true, dtype: "BF16", seed: 5 }));
  const tally = await compare("full", m, "Q8_0");
  assert.deepEqual(tally, { f32: 1 + 2 * 5, q8_0: 1 + 2 * 7 });
});

