/**
 * bitsandbytes Gemma 2 (and Gemma 3, NF4 + double quant): a tiny bf16 Gemma2ForCausalLM quantized by the fixture encoders (fixtures/bnb.ts:
 * NF4 with and without double quantization, FP4, LLM.int8 — transformers' Linear layers only; norms and
 * the embedding stay bf16), converted with `--outtype f32`. Checked tensor by tensor:
 *  - every quantized matrix equals the bnb decoder's output (src/quant/bnb decodeBnb) bit for bit
 *    (NEOX RoPE: no Q/K permutation for Gemma);
 *  - every norm equals float32(bf16 value widened + 1), computed here — the + 1 on top of the stored
 *    weight, in float32 as llama.cpp's converter computes it for a bf16 source;
 *  - token_embd is the bf16 embedding widened, unscaled; there is no output.weight.
 * The NF4 + double-quant files load in llama.cpp and its next-token distributions equal the HF reference run
 * on the dequantized checkpoint (float32, src/convert/dequantize) within 1e-3.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, dequantize, readGguf, readGgufTensorBytes, GGMLType } from "../../src/index.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { detectBnb, decodeBnb } from "../../src/quant/bnb/index.js";
import { quantizeCheckpointToBnb, type QuantizeCheckpointOptions } from "../../fixtures/bnb.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyGemma } from "../../fixtures/gemma.js";
import { withModel, logProbsAt, tokenize, disposeTestLlama } from "../support/llama.js";
import { logSoftmax, maxAbsDiff, tensorToF32 } from "../support/reference-qwen2.js";
import { GemmaReference } from "../support/reference-gemma.js";

const TOL = 1e-3;
const tmp = await scratchDir("ggufy-e2e-gemma-bnb-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const sources = {
  gemma2: writeTinyGemma(path.join(tmp, "gemma2-bf16"), { family: "gemma2", dtype: "BF16", seed: 21 }),
  gemma3: writeTinyGemma(path.join(tmp, "gemma3-bf16"), { family: "gemma3", dtype: "BF16", seed: 22 }),
};

const LINEAR: [RegExp, string][] = [
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.weight$/, "blk.$1.attn_q.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.weight$/, "blk.$1.attn_k.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.weight$/, "blk.$1.attn_v.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, "blk.$1.ffn_gate.weight"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
];
const NORMS: [RegExp, string][] = [
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.post_attention_norm.weight"],
  [/^model\.layers\.(\d+)\.pre_feedforward_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_feedforward_layernorm\.weight$/, "blk.$1.post_ffw_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$/, "blk.$1.attn_q_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$/, "blk.$1.attn_k_norm.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
];
const to = (rows: [RegExp, string][], n: string): string | undefined => {
  const r = rows.find(([re]) => re.test(n));
  return r ? n.replace(r[0], r[1]) : undefined;
};

const VARIANTS: { family: "gemma2" | "gemma3"; id: string; opts: QuantizeCheckpointOptions }[] = [
  { family: "gemma2", id: "nf4-dq", opts: { method: "nf4", doubleQuant: true, blocksize: 64, computeDtype: "bfloat16" } },
  { family: "gemma2", id: "nf4", opts: { method: "nf4", doubleQuant: false, blocksize: 64 } },
  { family: "gemma2", id: "fp4", opts: { method: "fp4", doubleQuant: false, blocksize: 64 } },
  { family: "gemma2", id: "int8", opts: { method: "int8" } },
  { family: "gemma3", id: "nf4-dq", opts: { method: "nf4", doubleQuant: true, blocksize: 64, computeDtype: "bfloat16" } },
];

for (const v of VARIANTS) {
  test(`tiny ${v.family} bf16 → bnb ${v.id} → GGUF f32: matrices equal the bnb decoder, norms equal float32(bf16 + 1), bit for bit`, async (t) => {
    const f = await sources[v.family];
    const srcDir = f.dir;
    const dir = path.join(tmp, `${v.family}-${v.id}`);
    await quantizeCheckpointToBnb(srcDir, dir, v.opts);
    const gguf = path.join(tmp, `${v.family}-${v.id}.gguf`);
    await convert({ input: dir, outfile: gguf, outtype: "f32" });
    const g = await readGguf(gguf);
    const byName = new Map(g.tensors.map((x) => [x.name, x]));
    assert.equal(byName.has("output.weight"), false);
    const st = await SafetensorsCheckpoint.open(dir);
    try {
      const mods = await detectBnb(st.tensors, (n) => st.read(n), undefined, dir);
      assert.equal(mods.size, f.layers * 7, "every Linear of every layer is quantized");
      const read = (n: string, o: number, l: number): Promise<Uint8Array> => st.read(n, o, l);
      let matrices = 0;
      for (const [w, m] of mods) {
        const x = byName.get(to(LINEAR, w) ?? "")!;
        assert.ok(x, `${w} has a GGUF tensor`);
        assert.equal(x.type, GGMLType.F32);
        assert.deepEqual(x.ne, [m.shape[1], m.shape[0]]);
        const want = await decodeBnb(m, read);
        assert.deepEqual(await readGgufTensorBytes(g, x), new Uint8Array(want.buffer), `${x.name} bytes`);
        matrices++;
      }
      let norms = 0;
      for (const n of st.names()) {
        const nn = to(NORMS, n);
        if (!nn) continue;
        const info = st.get(n)!;
        assert.equal(info.dtype, "BF16", `${n} stays bf16 in the bnb checkpoint`);
        const stored = tensorToF32(await st.read(n), info.dtype);
        const want = Float32Array.from(stored, (s) => Math.fround(s + 1));
        const x = byName.get(nn)!;
        assert.equal(x.type, GGMLType.F32);
        assert.deepEqual(await readGgufTensorBytes(g, x), new Uint8Array(want.buffer), `${nn} = bf16 + 1 in float32`);
        norms++;
      }
      assert.equal(norms, f.layers * (v.family === "gemma2" ? 4 : 6) + 1);
      const emb = tensorToF32(await st.read("model.embed_tokens.weight"), st.get("model.embed_tokens.weight")!.dtype);
      assert.deepEqual(await readGgufTensorBytes(g, byName.get("token_embd.weight")!), new Uint8Array(emb.buffer), "token_embd: the bf16 embedding widened, unscaled");
      t.diagnostic(`${matrices} bnb matrices, ${norms} norms, token_embd: bit for bit`);
    } finally {
      await st.close();
    }

    if (v.id === "nf4-dq") {
      // the dequantized checkpoint is what the GGUF should compute
      const deq = path.join(tmp, `${v.family}-${v.id}-dequantized`);
      await dequantize({ input: dir, outdir: deq, dtype: "f32" });
      const ref = await GemmaReference.load(deq);
      const d = await withModel(gguf, async (model) => {
        const ids = tokenize(model, "Once upon a time, there was a little girl named Lily. She loved to play outside.");
        const positions = ids.map((_, i) => i).filter((i) => i % 4 === 0 || i === ids.length - 1);
        const ours = await logProbsAt(model, ids, positions, { precision: "exact" });
        const want = ref.logits(ids, positions).map(logSoftmax);
        let m = 0;
        for (let k = 0; k < positions.length; k++) m = Math.max(m, maxAbsDiff(ours[k]!, want[k]!).max);
        return { m, n: ids.length };
      });
      t.diagnostic(`NF4-dq GGUF in llama.cpp vs the reference on the dequantized checkpoint, ${d.n} tokens: max |Δ log p| = ${d.m.toExponential(3)}`);
      assert.ok(d.n > 2 * f.slidingWindow);
      assert.ok(d.m <= TOL, `max |Δ log p| = ${d.m}`);
    }
  });
}
