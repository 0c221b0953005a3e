/**
 * bitsandbytes Phi-3: a tiny Phi-3.5-mini (BF16 weights, torch_dtype bfloat16, longrope) quantized by the
 * fixture encoder (fixtures/bnb.ts, independent of the decoder) to NF4 + double quantization, FP4 and
 * LLM.int8, converted with `--outtype f32`. The fused projections stay fused, so every quantized module's
 * GGUF tensor (attn_qkv, attn_output, ffn_up with 2·n_ff rows, ffn_down) must equal the bnb decoder's
 * output bit for bit (no row permutation for phi3), every other tensor the BF16 source widened, and the
 * rope factor tensors the config's. The NF4 file, loaded in llama.cpp, matches the reference forward pass
 * run on the dequantized checkpoint (ggufy dequantize --dtype f32) within 1e-3.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, dequantize, readGguf, readGgufTensorBytes, GGMLType } from "../../src/index.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { detectBnb, decodeBnb } from "../../src/quant/bnb/index.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyPhi3 } from "../../fixtures/phi3.js";
import { disposeTestLlama } from "../support/llama.js";
import { tensorToF32 } from "../support/reference-qwen2.js";
import { TOL, compare } from "../support/phi3-e2e.js";

const tmp = await scratchDir("ggufy-e2e-phi3-bnb-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const GGUF_NAME: [RegExp, string][] = [
  [/^model\.layers\.(\d+)\.self_attn\.qkv_proj\.weight$/, "blk.$1.attn_qkv.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
];

const src = (async () => {
  const dir = path.join(tmp, "phi35-bf16");
  await writeTinyPhi3(dir, { variant: "phi-3.5-mini", dtype: "BF16", seed: 21 });
  return dir;
})();

const VARIANTS = [
  { id: "nf4-dq", opts: { method: "nf4" as const, doubleQuant: true, blocksize: 64 } },
  { id: "fp4", opts: { method: "fp4" as const, doubleQuant: false, blocksize: 64 } },
  { id: "int8", opts: { method: "int8" as const } },
];

for (const v of VARIANTS) {
  test(`Phi-3.5-mini BF16 → bnb ${v.id} → GGUF f32: quantized modules equal the bnb decoder bit for bit, the rest the source${v.id === "nf4-dq" ? "; llama.cpp equals the reference on the dequantized weights" : ""}`, async (t) => {
    const dir = path.join(tmp, v.id);
    const quantized = await quantizeCheckpointToBnb(await src, dir, v.opts);
    assert.equal(quantized.length, 2 * 4, "the encoder quantized qkv, o, gate_up, down of both layers");
    const outfile = path.join(tmp, `${v.id}.gguf`);
    await convert({ input: dir, outfile, outtype: "f32" });
    const g = await readGguf(outfile);
    const byName = new Map(g.tensors.map((x) => [x.name, x]));
    const st = await SafetensorsCheckpoint.open(dir);
    let nQuant = 0;
    let nPlain = 0;
    try {
      const mods = await detectBnb(st.tensors, (n) => st.read(n), undefined, dir);
      assert.equal(mods.size, 2 * 4, "qkv_proj, o_proj, gate_up_proj, down_proj of both layers are quantized (lm_head is skipped, as transformers does)");
      const read = (n: string, o: number, l: number): Promise<Uint8Array> => st.read(n, o, l);
      for (const [w, m] of mods) {
        const [re, to] = GGUF_NAME.find(([re]) => re.test(w))!;
        const e = byName.get(w.replace(re, to));
        assert.ok(e, `${w} has a GGUF tensor`);
        assert.equal(e.type, GGMLType.F32);
        assert.deepEqual(e.ne, [m.shape[1], m.shape[0]]);
        const want = await decodeBnb(m, read);
        assert.deepEqual(await readGgufTensorBytes(g, e), new Uint8Array(want.buffer), `${e.name} bytes`);
        nQuant++;
      }
      // the plain tensors: BF16 widened exactly
      for (const name of st.names()) {
        if (mods.has(name) || !/\.weight$/.test(name) || st.get(name)!.dtype !== "BF16") continue;
        const [re, to] = GGUF_NAME.find(([re]) => re.test(name)) ?? [];
        if (!re) continue;
        const e = byName.get(name.replace(re, to!))!;
        const want = tensorToF32(await st.read(name), "BF16");
        assert.deepEqual(await readGgufTensorBytes(g, e), new Uint8Array(want.buffer), `${e.name} bytes`);
        nPlain++;
      }
      assert.equal(nPlain, 2 * 2 + 3, "norms, embedding, final norm and lm_head compared");
    } finally {
      await st.close();
    }
    assert.deepEqual(g.tensors.slice(0, 2).map((x) => x.name), ["rope_factors_long.weight", "rope_factors_short.weight"]);
    t.diagnostic(`${nQuant} bnb modules bit-exact, ${g.tensors.length} tensors`);
    if (v.id === "nf4-dq") {
      const plain = path.join(tmp, "nf4-dequantized");
      await dequantize({ input: dir, outdir: plain, dtype: "f32" });
      const r = await compare(plain, [outfile], { factors: "short" });
      t.diagnostic(`${r.n} tokens: max |Δ log p| = ${r.max[0]!.toExponential(3)}`);
      assert.ok(r.max[0]! <= TOL, `max |Δ log p| = ${r.max[0]}`);
    }
  });
}
