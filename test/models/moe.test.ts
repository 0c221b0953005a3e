/**
 * MoE checkpoints that must be refused before anything is written (one clear line naming config.json or the
 * tensor), planned from tiny Qwen3-MoE / Mixtral fixtures (fixtures/moe.ts), and how expert stacks are read:
 * chunks never cross an expert, and the stacked rows are expert x's rows in order; transformers v5's fused
 * expert parameters give the same GGUF as the per-expert layout.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert, plan } from "../../src/convert/convert.js";
import { chunkRanges } from "../../src/convert/pipeline.js";
import { GgufyError } from "../../src/errors.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyMoe, type TinyMoeOptions } from "../../fixtures/moe.js";
import { tensorToF32 } from "../support/reference-qwen2.js";

const tmp = await scratchDir("ggufy-models-moe-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const QWEN: TinyMoeOptions = { family: "qwen3moe", bpe: 1024, experts: 4, used: 2, seed: 31 };
const MIXTRAL: TinyMoeOptions = { family: "mixtral", experts: 4, used: 2, seed: 32 };

let n = 0;
/** Convert a variant; it must be refused with `code` and a message matching `re` (file or tensor named), writing nothing. */
async function refused(o: TinyMoeOptions, code: string, re: RegExp): Promise<void> {
  const dir = path.join(tmp, `case${n++}`);
  await writeTinyMoe(dir, o);
  const out = path.join(tmp, `case${n}.gguf`);
  await assert.rejects(convert({ input: dir, outfile: out, outtype: "f32", threads: 1 }), (e: unknown) => {
    assert.ok(e instanceof GgufyError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
  assert.equal(existsSync(out), false, "nothing written");
}

test("Qwen3-MoE: a missing expert is refused, naming the layer, the expert and the projection", async () => {
  await refused({ ...QWEN, drop: (s) => s === "model.layers.1.mlp.experts.2.up_proj.weight" }, "E_MISSING_TENSOR", /layer 1 has no expert 2 for up_proj \(config\.json says 4 experts\)/);
  // a projection with no experts at all in one layer
  await refused({ ...QWEN, drop: (s) => /^model\.layers\.0\.mlp\.experts\.\d+\.down_proj/.test(s) }, "E_MISSING_TENSOR", /layer 0 has no down_proj experts/);
  // the router
  await refused({ ...QWEN, drop: (s) => s === "model.layers.1.mlp.gate.weight" }, "E_MISSING_TENSOR", /model\.layers\.1\.mlp\.gate\.weight.*router/);
});

test("Qwen3-MoE: an expert count unlike config.json's is refused by name", async () => {
  // one more expert than num_experts
  await refused(
    { ...QWEN, extra: (mk) => [mk("model.layers.0.mlp.experts.4.gate_proj.weight", [32, 64]), mk("model.layers.0.mlp.experts.4.up_proj.weight", [32, 64]), mk("model.layers.0.mlp.experts.4.down_proj.weight", [64, 32])] },
    "E_CONFIG", /layer 0 has (gate|up|down)_proj experts up to 4 but config\.json says 4 experts/,
  );
  // num_experts larger than the checkpoint's: the router has 4 rows
  await refused({ ...QWEN, config: { num_experts: 6 } }, "E_CONFIG", /config\.json.*router shape is \[4, 64\] but config\.json implies \[6, 64\]/);
  // num_experts_per_tok above num_experts
  await refused({ ...QWEN, config: { num_experts_per_tok: 5 } }, "E_CONFIG", /num_experts_per_tok is 5, more than num_experts 4/);
});

test("Qwen3-MoE: differently shaped experts, and experts unlike moe_intermediate_size, are refused", async () => {
  await refused({ ...QWEN, reshape: (s, sh) => (s === "model.layers.1.mlp.experts.3.gate_proj.weight" ? [48, 64] : sh) }, "E_CONFIG", /experts\.3\.gate_proj.*expert 3 has shape \[48, 64\], unlike expert 0's \[32, 64\]/);
  await refused({ ...QWEN, config: { moe_intermediate_size: 48 } }, "E_CONFIG", /shape is \[(32, 64|64, 32)\] but config\.json implies \[(48, 64|64, 48)\] \((moe_intermediate_size × hidden_size|hidden_size × moe_intermediate_size)\)/);
  await refused({ ...QWEN, reshape: (s, sh) => (s === "model.layers.0.self_attn.k_norm.weight" ? [16] : sh) }, "E_CONFIG", /k_norm.*implies \[32\] \(head_dim/);
});

test("Qwen3-MoE: what llama.cpp's qwen3moe graph cannot run is refused by name", async () => {
  await refused({ ...QWEN, config: { norm_topk_prob: false } }, "E_CONFIG", /norm_topk_prob is false; llama\.cpp's qwen3moe always renormalises/);
  await refused({ ...QWEN, config: { norm_topk_prob: undefined } }, "E_CONFIG", /norm_topk_prob is absent \(transformers' default is false\)/);
  await refused({ ...QWEN, config: { norm_topk_prob: "yes" } }, "E_CONFIG", /norm_topk_prob is "yes"; expected true or false/);
  await refused({ ...QWEN, config: { mlp_only_layers: [1] } }, "E_CONFIG", /mlp_only_layers is \[1\]: dense layers/);
  await refused({ ...QWEN, config: { decoder_sparse_step: 2 } }, "E_CONFIG", /decoder_sparse_step is 2, which makes layer\(s\) 0 dense/);
  await refused({ ...QWEN, config: { num_experts: undefined } }, "E_CONFIG", /num_experts \/ num_local_experts is missing/);
  await refused({ ...QWEN, config: { use_sliding_window: true, sliding_window: 4, max_window_layers: 1 } }, "E_CONFIG", /use_sliding_window is true \(sliding_window 4 from layer 1 on\); llama\.cpp's qwen3moe has no sliding-window/);
  await refused({ ...QWEN, config: { hidden_act: "gelu" } }, "E_CONFIG", /hidden_act is "gelu"/);
});

test("Mixtral: a missing expert, an expert count unlike num_local_experts, a differently shaped expert", async () => {
  await refused({ ...MIXTRAL, drop: (s) => s === "model.layers.0.block_sparse_moe.experts.3.w2.weight" }, "E_MISSING_TENSOR", /layer 0 has no expert 3 for w2 \(config\.json says 4 experts\)/);
  await refused({ ...MIXTRAL, config: { num_local_experts: 2 } }, "E_CONFIG", /router shape is \[4, 64\] but config\.json implies \[2, 64\]/);
  await refused({ ...MIXTRAL, reshape: (s, sh) => (s === "model.layers.1.block_sparse_moe.experts.1.w3.weight" ? [32, 32] : sh) }, "E_CONFIG", /expert 1 has shape \[32, 32\], unlike expert 0's \[32, 64\]/);
  await refused({ ...MIXTRAL, config: { intermediate_size: 40 } }, "E_CONFIG", /shape is \[(32, 64|64, 32)\] but config\.json implies \[(40, 64|64, 40)\]/);
});

test("an expert stack reads expert x's rows in order, in chunks that never cross an expert", async () => {
  const dir = path.join(tmp, "stack");
  const m = await writeTinyMoe(dir, { ...QWEN, expertFf: 24 });
  const p = await plan({ input: dir, outtype: "f32", outfile: path.join(tmp, "stack.gguf") });
  const ck = await SafetensorsCheckpoint.open(dir);
  try {
    const stacks = p.files[0]!.tensors.filter((t) => /_exps\.weight$/.test(t.out.name));
    assert.equal(stacks.length, 3 * m.layers);
    for (const t of stacks) {
      const rows = t.out.ne[1]!;
      assert.equal(t.out.rowBoundary, rows);
      // 7 rows a chunk: ranges end at every expert's last row
      for (const [r0, k] of chunkRanges(t, 7 * t.out.ne[0]!)) assert.equal(Math.floor(r0 / rows), Math.floor((r0 + k - 1) / rows), `${t.out.name} [${r0}, ${r0 + k})`);
      const [, bid, proj] = /^blk\.(\d+)\.ffn_(gate|up|down)_exps/.exec(t.out.name)!;
      for (const x of [0, 2, 3]) {
        const want = tensorToF32(await ck.read(`model.layers.${bid}.mlp.experts.${x}.${proj}_proj.weight`), "F32");
        const got = await t.out.read(x * rows, rows);
        assert.deepEqual(got, want, `${t.out.name} expert ${x}`);
      }
      // a raw read that would cross an expert is declined (the pipeline then reads floats)
      if (t.out.readRaw) assert.equal(await t.out.readRaw(rows - 1, 2), undefined);
    }
  } finally {
    await ck.close();
    await p.close();
  }
});

test("transformers v5's fused experts (mlp.experts.gate_up_proj / down_proj) give the same GGUF as the per-expert layout", async () => {
  for (const o of [{ ...QWEN, dtype: "BF16" as const }, { ...MIXTRAL, experts: 3 }]) {
    const files: string[] = [];
    for (const fused of [false, true]) {
      const dir = path.join(tmp, `${o.family}-fused-${fused}`);
      await writeTinyMoe(dir, { ...o, fused });
      const out = path.join(tmp, `${o.family}-fused-${fused}.gguf`);
      // the fused side in chunks of 7 rows: several chunks per expert, none crossing one
      await convert({ input: dir, outfile: out, outtype: "f32", threads: 1, ...(fused ? { chunkElements: 7 * 64 } : {}) });
      files.push(out);
    }
    const [a, b] = await Promise.all(files.map((f) => readGguf(f)));
    const [ab, bb] = await Promise.all(files.map((f) => readFile(f)));
    const bByName = new Map(b!.tensors.map((t) => [t.name, t]));
    assert.deepEqual(a!.tensors.map((t) => t.name).sort(), [...bByName.keys()].sort());
    assert.ok(a!.tensors.some((t) => t.name === "blk.1.ffn_up_exps.weight"));
    for (const x of a!.tensors) {
      const y = bByName.get(x.name)!;
      assert.deepEqual(x.ne, y.ne, x.name);
      assert.ok(ab!.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb!.subarray(y.fileOffset, y.fileOffset + y.bytes)), `${o.family} ${x.name} bytes`);
    }
  }
});

test("fused experts: a shape unlike config.json's, and fused mixed with per-expert tensors, are refused", async () => {
  await refused({ ...QWEN, fused: true, config: { moe_intermediate_size: 48 } }, "E_CONFIG", /mlp\.experts\.(gate_up|down)_proj.*shape is \[4, (64, 32|64, 64)\] but config\.json implies \[4, (64, 48|96, 64)\]/);
  await refused({ ...MIXTRAL, fused: true, config: { num_local_experts: 5 } }, "E_CONFIG", /mlp\.gate\.weight.*router shape is \[4, 64\] but config\.json implies \[5, 64\]/);
  await refused({ ...QWEN, fused: true, extra: (mk) => [mk("model.layers.0.mlp.experts.0.up_proj.weight", [32, 64])] }, "E_DUPLICATE_TENSOR", /layer 0 has up_proj experts both fused/);
});
