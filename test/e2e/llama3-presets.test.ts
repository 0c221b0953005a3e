/**
 * llama-quantize presets on the llama3 helper's families: Llama 3.1 (rope_freqs, GQA 2) and Qwen3 (attn_q_norm /
 * attn_k_norm, head_dim ≠ hidden/heads), 4 layers with 256-wide rows so that the K-quants apply. ggufy converts
 * (and its bitsandbytes NF4 form) directly to the preset; the real `llama_model_quantize` of node-llama-cpp's libllama (through koffi) quantizes
 * ggufy's f32 file with the same ftype; every tensor must have the same name, position, type and bytes, and
 * every KV the same value.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf, typeName, type GGUFFile } from "../../src/index.js";
import { findPreset } from "../../src/quant/presets.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyFamily, type Family, type TinySizes } from "../../fixtures/llama3.js";
import { llamaQuantize } from "../support/llama-quantize.js";
import { quantizeCheckpointToBnb, type QuantizeCheckpointOptions } from "../../fixtures/bnb.js";

const tmp = await scratchDir("ggufy-e2e-llama3-presets-");
after(() => rm(tmp, { recursive: true, force: true }));

const MODELS: Record<string, { family: Family; sizes: TinySizes; bnb?: QuantizeCheckpointOptions }> = {
  llama31: { family: "llama3.1", sizes: { hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ffn: 256, layers: 4 } },
  qwen3: { family: "qwen3", sizes: { hidden: 256, heads: 4, kvHeads: 2, headDim: 128, ffn: 256, layers: 4 } },
  // the bitsandbytes form: NF4 + double quant (fixtures/bnb.ts), decoded then quantized
  "llama31-nf4": { family: "llama3.1", sizes: { hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ffn: 256, layers: 4 }, bnb: { method: "nf4", doubleQuant: true } },
};

const f32s = new Map<string, Promise<{ dir: string; f32: string }>>();
function f32Of(name: string): Promise<{ dir: string; f32: string }> {
  let p = f32s.get(name);
  if (!p) {
    p = (async () => {
      const spec = MODELS[name]!;
      let dir = path.join(tmp, name);
      await writeTinyFamily(dir, spec.family, { sizes: spec.sizes, dtype: "BF16", seed: 51 });
      if (spec.bnb) {
        const q = `${dir}-bnb`;
        await quantizeCheckpointToBnb(dir, q, spec.bnb);
        dir = q;
      }
      const f32 = path.join(tmp, `${name}-f32.gguf`);
      await convert({ input: dir, outfile: f32, outtype: "f32" });
      return { dir, f32 };
    })();
    f32s.set(name, p);
  }
  return p;
}

const kvText = (f: GGUFFile, key: string): string =>
  JSON.stringify(f.kvs.get(key), (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));

for (const name of Object.keys(MODELS)) {
  for (const preset of MODELS[name]!.bnb ? ["Q4_K_M"] : ["Q4_K_M", "Q6_K", "Q8_0"]) {
    test(`${name} ${preset}: byte-identical to llama_model_quantize on ggufy's f32`, async () => {
      const m = await f32Of(name);
      const p = findPreset(preset)!;
      const ours = path.join(tmp, `${name}-${preset}.gguf`);
      const ref = path.join(tmp, `${name}-${preset}-llama.gguf`);
      await convert({ input: m.dir, outfile: ours, outtype: preset });
      await llamaQuantize(m.f32, ref, { ftype: p.ftype });
      const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
      const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
      assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name));
      const diffs: string[] = [];
      for (let i = 0; i < b.tensors.length; i++) {
        const x = a.tensors[i]!;
        const y = b.tensors[i]!;
        assert.deepEqual(x.ne, y.ne, x.name);
        if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
        else if (!ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) diffs.push(`${x.name}: bytes differ`);
      }
      assert.deepEqual(diffs, []);
      assert.deepEqual([...a.keys].sort(), [...b.keys].sort());
      for (const k of b.keys) assert.equal(kvText(a, k), kvText(b, k), k);
      // the 1-D tensors llama.cpp keeps in F32
      for (const t of a.tensors) if (/rope_freqs|_norm\./.test(t.name)) assert.equal(typeName(t.type), "f32", t.name);
      await Promise.all([rm(ours), rm(ref)]);
    });
  }
}
