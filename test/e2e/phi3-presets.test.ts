/**
 * llama-quantize presets on Phi-3 (GGUF `phi3`: fused attn_qkv, ffn_up with 2·n_ff rows, rope factor
 * tensors): ggufy converts a tiny checkpoint straight to a preset; the real `llama_model_quantize` of
 * node-llama-cpp's libllama (through koffi, test/support/llama-quantize.ts) quantizes ggufy's f32 file
 * with the same ftype. Every tensor must have the same name, position, type and bytes, and the KVs the
 * same values. Two shapes: head size 64 / hidden 256 (K-quant rows), and Phi-3.5-mini's head size 96 /
 * hidden 192 (rows not a multiple of 256: llama.cpp's fallback types), with longrope factors.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { readGguf, type GGUFFile } from "../../src/formats/gguf/reader.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { findPreset } from "../../src/quant/presets.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyPhi3, type TinyPhi3Options } from "../../fixtures/phi3.js";
import { llamaQuantize } from "../support/llama-quantize.js";

const tmp = await scratchDir("ggufy-e2e-phi3-presets-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const made = new Map<string, Promise<{ dir: string; f32: string }>>();
function model(name: string, opts: TinyPhi3Options): Promise<{ dir: string; f32: string }> {
  let p = made.get(name);
  if (!p) {
    p = (async () => {
      const dir = path.join(tmp, name);
      await writeTinyPhi3(dir, opts);
      const f32 = path.join(tmp, `${name}-f32.gguf`);
      await convert({ input: dir, outtype: "f32", outfile: f32 });
      return { dir, f32 };
    })();
    made.set(name, p);
  }
  return p;
}

function kvText(f: GGUFFile, key: string): string {
  return JSON.stringify(f.kvs.get(key), (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
}

async function sameAsLlamaQuantize(name: string, opts: TinyPhi3Options, presetName: string): Promise<Record<string, number>> {
  const m = await model(name, opts);
  const preset = findPreset(presetName);
  assert.ok(preset, presetName);
  const ours = path.join(tmp, `${name}-${presetName}.gguf`);
  const ref = path.join(tmp, `${name}-${presetName}-llama.gguf`);
  await Promise.all([convert({ input: m.dir, outtype: presetName, outfile: ours }), llamaQuantize(m.f32, ref, { ftype: preset.ftype })]);
  try {
    const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
    const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
    assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name), "tensor names and order");
    const diffs: string[] = [];
    const tally: Record<string, number> = {};
    for (let i = 0; i < b.tensors.length; i++) {
      const x = a.tensors[i]!;
      const y = b.tensors[i]!;
      tally[typeName(y.type)] = (tally[typeName(y.type)] ?? 0) + 1;
      assert.deepEqual(x.ne, y.ne, x.name);
      if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
      else if (x.bytes !== y.bytes || !ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) diffs.push(`${x.name} (${typeName(x.type)}): bytes differ`);
    }
    assert.deepEqual(diffs, [], `${name} ${presetName}`);
    assert.deepEqual([...a.keys].sort(), [...b.keys].sort(), "KV keys");
    for (const k of b.keys) assert.equal(kvText(a, k), kvText(b, k), k);
    return tally;
  } finally {
    await Promise.all([rm(ours, { force: true }), rm(ref, { force: true })]);
  }
}

const K256: TinyPhi3Options = { variant: "phi-3-mini-4k", hidden: 256, heads: 4, kvHeads: 4, ffn: 512, layers: 2, seed: 7 };
const PHI35: TinyPhi3Options = { variant: "phi-3.5-mini", layers: 2, seed: 8 };

for (const preset of ["Q4_K_M", "Q3_K_M", "Q2_K", "Q6_K", "IQ4_XS"]) {
  test(`Phi-3 (hidden 256) ${preset}: byte-identical to llama_model_quantize on ggufy's f32`, async (t) => {
    const tally = await sameAsLlamaQuantize("k256", K256, preset);
    t.diagnostic(JSON.stringify(tally));
  });
}

for (const preset of ["Q4_K_M", "Q8_0"]) {
  test(`Phi-3.5-mini (hidden 192, longrope factors) ${preset}: byte-identical to llama_model_quantize on ggufy's f32`, async (t) => {
    const tally = await sameAsLlamaQuantize("phi35", PHI35, preset);
    t.diagnostic(JSON.stringify(tally));
  });
}
