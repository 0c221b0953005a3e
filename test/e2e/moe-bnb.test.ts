/**
 * bitsandbytes MoE checkpoints: tiny Qwen3-MoE and Mixtral (fixtures/moe.ts) quantized by the fixture encoder
 * (fixtures/bnb.ts, independent of the decoder) as transformers saves them — every nn.Linear, the routers and
 * every expert projection included — to NF4 with double quantization (Qwen3-MoE) and FP4 (Mixtral), then
 * converted with `--outtype f32`. Every slice of every expert stack, the routers and the other projections of
 * the GGUF must equal the bnb decoder's output for that module bit for bit (Mixtral's Q/K rows permuted as
 * llama.cpp's converter does), and the NF4 model loads in llama.cpp and generates.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, readGguf, readGgufTensorBytes, GGMLType } from "../../src/index.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { detectBnb, decodeBnb } from "../../src/quant/bnb/index.js";
import { quantizeCheckpointToBnb, type QuantizeCheckpointOptions } from "../../fixtures/bnb.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyMoe, type TinyMoeOptions } from "../../fixtures/moe.js";
import { withModel, greedyTokens, disposeTestLlama } from "../support/llama.js";
import { permuteRows } from "../support/hf-llama.js";

const tmp = await scratchDir("ggufy-e2e-moe-bnb-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

/** HF module weight → [GGUF tensor, expert slot or undefined] */
function ggufOf(w: string): [string, number | undefined] | undefined {
  let m = /^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight$/.exec(w);
  if (m) {
    const proj = { gate_proj: "gate", up_proj: "up", down_proj: "down", w1: "gate", w3: "up", w2: "down" }[m[3]!]!;
    return [`blk.${m[1]}.ffn_${proj}_exps.weight`, Number(m[2])];
  }
  m = /^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe)\.gate\.weight$/.exec(w);
  if (m) return [`blk.${m[1]}.ffn_gate_inp.weight`, undefined];
  m = /^model\.layers\.(\d+)\.self_attn\.(q|k|v|o)_proj\.weight$/.exec(w);
  if (m) return [`blk.${m[1]}.attn_${m[2] === "o" ? "output" : m[2]}.weight`, undefined];
  return undefined;
}

const CASES: { id: string; o: TinyMoeOptions; q: QuantizeCheckpointOptions; generate: boolean }[] = [
  { id: "qwen3moe-nf4-dq", o: { family: "qwen3moe", bpe: 1024, experts: 8, used: 2, dtype: "BF16", seed: 41 }, q: { method: "nf4", doubleQuant: true, blocksize: 64 }, generate: true },
  { id: "mixtral-fp4", o: { family: "mixtral", experts: 4, used: 2, dtype: "BF16", seed: 42 }, q: { method: "fp4", doubleQuant: false, blocksize: 64 }, generate: false },
];

for (const c of CASES) {
  test(`${c.id}: every expert of every stack, the routers and the projections equal the bnb decoder bit for bit`, async () => {
    const plain = path.join(tmp, `${c.id}-plain`);
    const dir = path.join(tmp, c.id);
    const m = await writeTinyMoe(plain, c.o);
    const quantized = await quantizeCheckpointToBnb(plain, dir, c.q);
    const outfile = path.join(tmp, `${c.id}.gguf`);
    await convert({ input: dir, outfile, outtype: "f32", threads: 1 });
    const g = await readGguf(outfile);
    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    const st = await SafetensorsCheckpoint.open(dir);
    try {
      const mods = await detectBnb(st.tensors, (n) => st.read(n), undefined, dir);
      // q, k, v, o, router and 3 projections per expert, in every layer
      assert.equal(mods.size, m.layers * (5 + 3 * m.experts));
      assert.equal(quantized.length, mods.size);
      const read = (n: string, o: number, l: number): Promise<Uint8Array> => st.read(n, o, l);
      let slices = 0;
      for (const [w, mod] of mods) {
        const to = ggufOf(w);
        assert.ok(to, `${w} has a GGUF tensor`);
        const t = byName.get(to[0])!;
        assert.ok(t, to[0]);
        assert.equal(t.type, GGMLType.F32);
        const [rows, cols] = mod.shape as [number, number];
        let want = await decodeBnb(mod, read);
        if (m.family === "mixtral" && /q_proj/.test(w)) want = permuteRows(want, rows, cols, m.heads);
        if (m.family === "mixtral" && /k_proj/.test(w)) want = permuteRows(want, rows, cols, m.kvHeads);
        const slot = to[1];
        if (slot === undefined) {
          assert.deepEqual(t.ne, [cols, rows]);
          assert.deepEqual(await readGgufTensorBytes(g, t), new Uint8Array(want.buffer), `${t.name} bytes`);
        } else {
          assert.deepEqual(t.ne, [cols, rows, m.experts]);
          const bytes = rows * cols * 4;
          assert.deepEqual(await readGgufTensorBytes(g, t, slot * bytes, bytes), new Uint8Array(want.buffer), `${t.name} expert ${slot} bytes`);
          slices++;
        }
      }
      assert.equal(slices, m.layers * 3 * m.experts);
    } finally {
      await st.close();
    }
    if (c.generate) {
      await withModel(outfile, async (model) => {
        const r = await greedyTokens(model, "Hello", 8);
        assert.ok(r.tokens.length > 0, "the NF4 MoE model generates");
      });
    }
  });
}
