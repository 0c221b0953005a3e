/**
 * Gemma 2 / Gemma 3 with llama-quantize presets: ggufy's direct Q4_K_M / Q3_K_M / Q8_0 conversion of a tiny
 * checkpoint (hidden 256, so K-quant blocks fit) must equal, tensor for tensor and byte for byte, the real
 * `llama_model_quantize` (node-llama-cpp's libllama through koffi, test/support/llama-quantize.ts) run on
 * ggufy's F32 file — Gemma's tied output (no output.weight: llama-quantize gives token_embd the output
 * tensor's type) included — and the Q4_K_M file must load in llama.cpp.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf, typeName } from "../../src/index.js";
import { findPreset } from "../../src/quant/presets.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyGemma } from "../../fixtures/gemma.js";
import { withModel, tokenize, disposeTestLlama } from "../support/llama.js";
import { llamaQuantize } from "../support/llama-quantize.js";

const tmp = await scratchDir("ggufy-e2e-gemma-presets-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

// ---- presets: ggufy's direct quantization equals llama_model_quantize on ggufy's F32 file ----------------

async function sameAsLlamaQuantize(dir: string, f32: string, preset: string): Promise<Record<string, number>> {
  const p = findPreset(preset);
  assert.ok(p, preset);
  const ours = path.join(tmp, `${path.basename(dir)}-${preset}.gguf`);
  const ref = path.join(tmp, `${path.basename(dir)}-${preset}-llama.gguf`);
  await Promise.all([convert({ input: dir, outtype: preset, outfile: ours, force: true }), llamaQuantize(f32, ref, { ftype: p.ftype })]);
  const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
  const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
  assert.deepEqual(a.tensors.map((x) => x.name), b.tensors.map((x) => x.name), "tensor order");
  const tally: Record<string, number> = {};
  const diffs: string[] = [];
  for (let i = 0; i < b.tensors.length; i++) {
    const x = a.tensors[i]!;
    const y = b.tensors[i]!;
    tally[typeName(y.type)] = (tally[typeName(y.type)] ?? 0) + 1;
    if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
    else if (!ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) diffs.push(`${x.name}: bytes differ`);
  }
  assert.deepEqual(diffs, [], preset);
  assert.deepEqual([...a.keys].sort(), [...b.keys].sort(), "KV keys");
  return tally;
}

for (const family of ["gemma2", "gemma3"] as const) {
  test(`tiny ${family} (hidden 256) → Q4_K_M, Q3_K_M, Q8_0: byte-identical to llama_model_quantize, and the Q4_K_M file loads`, async (t) => {
    const dir = path.join(tmp, `${family}-256`);
    await writeTinyGemma(dir, { family, hidden: 256, headDim: 64, ffn: 512, dtype: "BF16", seed: 6 });
    const gguf = path.join(tmp, `${family}-256-f32.gguf`);
    await convert({ input: dir, outfile: gguf, outtype: "f32" });
    const fx = { dir };
    for (const preset of ["Q4_K_M", "Q3_K_M", "Q8_0"]) {
      const tally = await sameAsLlamaQuantize(fx.dir, gguf, preset);
      t.diagnostic(`${preset}: ${JSON.stringify(tally)}`);
      // no output.weight: llama-quantize gives token_embd the output tensor's type (Q6_K for Q4_K_M)
      if (preset === "Q4_K_M") assert.equal(tally["q6_K"]! >= 1, true);
    }
    const q = path.join(tmp, `${family}-256-Q4_K_M-load.gguf`);
    await convert({ input: fx.dir, outtype: "Q4_K_M", outfile: q });
    await withModel(q, async (model) => assert.ok(tokenize(model, "Once upon a time").length > 0));
  });
}

