/**
 * bitsandbytes forms of Llama 3.1 and Qwen3 (tiny fixtures, fixtures/llama3.ts) quantized by the fixture
 * encoder (fixtures/bnb.ts: NF4 ± double quant, FP4, LLM.int8; lm_head skipped as transformers does by
 * default) and converted with `--outtype f32`: every quantized module's GGUF tensor equals the bnb
 * decoder's output bit for bit (Llama: Q/K rows permuted as LlamaModel.permute does — recomputed here from
 * its reshape/swapaxes definition, with num_key_value_heads for K; Qwen3: no permutation), every other
 * tensor equals the source's float32 bytes, rope_freqs is there; and the NF4 + double-quant GGUF's
 * distributions in llama.cpp equal the reference forward pass of the dequantized checkpoint (ggufy dequantize).
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
import { writeTinyFamily, type Family } from "../../fixtures/llama3.js";
import { disposeTestLlama } from "../support/llama.js";
import { TOL, compare, positionsOf, promptIds } from "../support/family-check.js";
import { permuteRows, llamaGgufName } from "../support/hf-llama.js";

const tmp = await scratchDir("ggufy-e2e-llama3-bnb-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const VARIANTS: { id: string; opts: QuantizeCheckpointOptions }[] = [
  { id: "nf4-dq", opts: { method: "nf4", doubleQuant: true, blocksize: 64, computeDtype: "bfloat16" } },
  { id: "nf4", opts: { method: "nf4", doubleQuant: false, blocksize: 64 } },
  { id: "fp4", opts: { method: "fp4", doubleQuant: false, blocksize: 64 } },
  { id: "int8", opts: { method: "int8" } },
];

const FAMILIES: { family: Family; permute: boolean; heads: number; kvHeads: number; linears: number }[] = [
  { family: "llama3.1", permute: true, heads: 4, kvHeads: 2, linears: 2 * 7 },
  { family: "qwen3", permute: false, heads: 4, kvHeads: 2, linears: 2 * 7 },
];

for (const f of FAMILIES) {
  const src = path.join(tmp, `${f.family}-src`);
  let srcReady: Promise<unknown> | undefined;
  for (const v of VARIANTS) {
    test(`${f.family} → bnb ${v.id} → GGUF f32: every tensor equals the bnb decoder (or the source) bit for bit`, async (t) => {
      srcReady ??= writeTinyFamily(src, f.family, { seed: 41 });
      await srcReady;
      const dir = path.join(tmp, `${f.family}-${v.id}`);
      const quantized = await quantizeCheckpointToBnb(src, dir, v.opts);
      assert.equal(quantized.length, f.linears, "every q/k/v/o/gate/up/down is quantized, lm_head is not");
      const outfile = path.join(tmp, `${f.family}-${v.id}.gguf`);
      await convert({ input: dir, outfile, outtype: "f32" });
      const g = await readGguf(outfile);
      const byName = new Map(g.tensors.map((x) => [x.name, x]));
      if (f.family === "llama3.1") assert.ok(byName.has("rope_freqs.weight"), "rope_freqs is written for the bnb form too");

      const st = await SafetensorsCheckpoint.open(dir);
      const orig = await SafetensorsCheckpoint.open(src);
      try {
        const mods = await detectBnb(st.tensors, (n) => st.read(n), undefined, dir);
        assert.equal(mods.size, f.linears);
        const read = (n: string, o: number, l: number): Promise<Uint8Array> => st.read(n, o, l);
        let checked = 0;
        for (const [w, m] of mods) {
          const gt = byName.get(llamaGgufName(w));
          assert.ok(gt, `${w} has a GGUF tensor`);
          assert.equal(gt.type, GGMLType.F32);
          assert.deepEqual(gt.ne, [m.shape[1], m.shape[0]]);
          let want = await decodeBnb(m, read);
          if (f.permute && /q_proj/.test(w)) want = permuteRows(want, m.shape[0]!, m.shape[1]!, f.heads);
          if (f.permute && /k_proj/.test(w)) want = permuteRows(want, m.shape[0]!, m.shape[1]!, f.kvHeads);
          assert.deepEqual(await readGgufTensorBytes(g, gt), new Uint8Array(want.buffer), `${gt.name} bytes`);
          checked++;
        }
        // the plain tensors (embedding, norms, q/k norms, lm_head) are the source's float32 bytes
        for (const name of orig.names()) {
          if (mods.has(name)) continue;
          const gt = byName.get(llamaGgufName(name))!;
          assert.ok(gt, `${name} has a GGUF tensor`);
          assert.deepEqual(await readGgufTensorBytes(g, gt), await orig.read(name), `${gt.name} bytes`);
          checked++;
        }
        assert.equal(g.tensors.length, checked + (f.family === "llama3.1" ? 1 : 0), "no other tensor");
      } finally {
        await st.close();
        await orig.close();
      }

      if (v.id === "nf4-dq") {
        // llama.cpp on the NF4 GGUF equals the reference on the dequantized checkpoint (the same float values)
        const deq = path.join(tmp, `${f.family}-${v.id}-deq`);
        await dequantize({ input: dir, outdir: deq, dtype: "f32" });
        const ids = promptIds(40, 9);
        const r = await compare(deq, outfile, ids, positionsOf(ids.length, 5));
        t.diagnostic(`NF4-dq GGUF in llama.cpp vs reference on the dequantized weights: ${r.max.toExponential(3)}`);
        assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);
      }
    });
  }
}
