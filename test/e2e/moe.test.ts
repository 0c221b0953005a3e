/**
 * Mixture-of-Experts end to end: tiny Qwen3-MoE and Mixtral checkpoints (real config field sets, HF tensor
 * names, real tokenizers; fixtures/moe.ts) → F32 GGUF with ggufy →
 * (a) exactly the tensor names, shapes and architecture KVs llama.cpp's converter writes (read back with
 *     @huggingface/gguf, an independent reader);
 * (b) llama.cpp (node-llama-cpp 3.21.1, F32 KV cache) loads it and its next-token distributions equal the
 *     reference forward pass of the HF architecture (test/support/reference-moe.ts) within 1e-3;
 * (c) the same comparison on a deliberately broken GGUF — the experts of every stack in lexicographic order
 *     ("0, 1, 10, 11, …, 2, …", the bug of sorting expert names as strings; reversed for 8 experts, where
 *     that order is the identity) — is far outside the bound.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { convert } from "../../src/index.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyMoe, type TinyMoe, type TinyMoeOptions } from "../../fixtures/moe.js";
import { withModel, logProbsAt, tokenize, disposeTestLlama } from "../support/llama.js";
import { ReferenceMoe } from "../support/reference-moe.js";
import { logSoftmax, maxAbsDiff } from "../support/reference-qwen2.js";

const TOL = 1e-3;

const tmp = await scratchDir("ggufy-e2e-moe-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

async function build(name: string, o: TinyMoeOptions): Promise<{ m: TinyMoe; gguf: string }> {
  const dir = path.join(tmp, name);
  const m = await writeTinyMoe(dir, o);
  const out = path.join(tmp, `${name}-f32.gguf`);
  await convert({ input: dir, outfile: out, outtype: "f32", threads: 1 });
  return { m, gguf: out };
}

/** ggml ne of a numpy shape */
const ne = (shape: readonly number[]): number[] => [...shape].reverse();

/** The tensors llama.cpp's converter writes (conversion/qwen.py Qwen2MoeModel / conversion/llama.py LlamaModel.modify_tensors). */
function expectedTensors(m: TinyMoe): Map<string, number[]> {
  const { hidden: H, heads, kvHeads, headDim: D, experts: N, expertFf: E, vocabSize: V } = m;
  const t = new Map<string, number[]>();
  t.set("token_embd.weight", ne([V, H]));
  t.set("output_norm.weight", [H]);
  if (!m.tied) t.set("output.weight", ne([V, H]));
  for (let i = 0; i < m.layers; i++) {
    const b = `blk.${i}.`;
    t.set(b + "attn_norm.weight", [H]);
    t.set(b + "attn_q.weight", ne([heads * D, H]));
    t.set(b + "attn_k.weight", ne([kvHeads * D, H]));
    t.set(b + "attn_v.weight", ne([kvHeads * D, H]));
    t.set(b + "attn_output.weight", ne([H, heads * D]));
    if (m.family === "qwen3moe") {
      t.set(b + "attn_q_norm.weight", [D]);
      t.set(b + "attn_k_norm.weight", [D]);
    }
    t.set(b + "ffn_norm.weight", [H]);
    t.set(b + "ffn_gate_inp.weight", ne([N, H]));
    // torch.stack(experts, dim=0): [N, rows, cols] → ne [cols, rows, N]
    t.set(b + "ffn_gate_exps.weight", ne([N, E, H]));
    t.set(b + "ffn_up_exps.weight", ne([N, E, H]));
    t.set(b + "ffn_down_exps.weight", ne([N, H, E]));
  }
  return t;
}

/** The `{arch}.*` KVs, in the order TextModel.set_gguf_parameters then the family's set_gguf_parameters write them. */
function expectedArchKvs(m: TinyMoe): [string, number][] {
  const c = m.config as Record<string, number>;
  const a = m.family === "qwen3moe" ? "qwen3moe" : "llama";
  const kvs: [string, number][] = [
    [`${a}.block_count`, m.layers], [`${a}.context_length`, c["max_position_embeddings"]!], [`${a}.embedding_length`, m.hidden],
    [`${a}.feed_forward_length`, c["intermediate_size"]!], [`${a}.attention.head_count`, m.heads], [`${a}.attention.head_count_kv`, m.kvHeads],
    [`${a}.rope.freq_base`, c["rope_theta"]!], [`${a}.attention.layer_norm_rms_epsilon`, Math.fround(c["rms_norm_eps"]!)],
    [`${a}.expert_count`, m.experts], [`${a}.expert_used_count`, m.used],
  ];
  if (m.family === "qwen3moe") {
    kvs.push([`${a}.attention.key_length`, m.headDim], [`${a}.attention.value_length`, m.headDim]);
    kvs.push([`${a}.expert_feed_forward_length`, m.expertFf]); // Qwen2MoeModel.set_gguf_parameters
  } else {
    kvs.push([`${a}.vocab_size`, m.vocabSize], [`${a}.rope.dimension_count`, m.hidden / m.heads]); // LlamaModel.set_gguf_parameters
  }
  return kvs;
}

async function checkLayout(file: string, m: TinyMoe, sizeLabel: string): Promise<void> {
  const r = await gguf(file, { allowLocalFile: true });
  const got = new Map(r.tensorInfos.map((t) => [t.name, t.shape.map(Number)]));
  assert.deepEqual([...got.keys()].sort(), [...expectedTensors(m).keys()].sort(), "tensor names");
  for (const [name, shape] of expectedTensors(m)) assert.deepEqual(got.get(name), shape, name);
  for (const t of r.tensorInfos) assert.equal(t.dtype, 0, `${t.name} is F32`);
  const md = r.metadata as unknown as Record<string, unknown>;
  const arch = m.family === "qwen3moe" ? "qwen3moe" : "llama";
  assert.equal(md["general.architecture"], arch);
  const archKeys = Object.keys(md).filter((k) => k.startsWith(`${arch}.`));
  const want = expectedArchKvs(m);
  assert.deepEqual(archKeys, want.map(([k]) => k), "architecture KVs and their order");
  for (const [k, v] of want) assert.equal(Number(md[k]), v, k);
  // gguf.size_label(total, shared, expert, expert_count) = f"{expert_count}x{rounded(shared + expert)}"
  assert.equal(md["general.size_label"], sizeLabel);
}

/** Lexicographic order of 0 … n−1 when that moves anything (n > 10), else the reversed order. */
function shuffledOrder(n: number): number[] {
  const ids = Array.from({ length: n }, (_, i) => i);
  return n > 10 ? ids.sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0)) : ids.reverse();
}

/**
 * Copy of an F32 GGUF whose expert stacks hold the experts shuffled: slot j gets expert order[j]
 * (order = [0, 1, 10, 11, …, 2, 3, …] for 16 experts, [7, 6, …, 0] for 8). The router is left alone.
 */
async function lexicographicExperts(file: string, out: string): Promise<number> {
  const f = await readGguf(file);
  const bytes = await readFile(file);
  let changed = 0;
  for (const t of f.tensors) {
    if (!/_exps\.weight$/.test(t.name)) continue;
    const n = t.ne[2]!;
    const order = shuffledOrder(n);
    const per = t.bytes / n;
    const src = Buffer.from(bytes.subarray(t.fileOffset, t.fileOffset + t.bytes));
    for (let j = 0; j < n; j++) src.copy(bytes, t.fileOffset + j * per, order[j]! * per, (order[j]! + 1) * per);
    changed += order.filter((x, j) => x !== j).length;
  }
  await writeFile(out, bytes);
  return changed;
}

/** max |Δ log p| between llama.cpp on `file` and the reference, over several positions of `prompt`. */
async function compare(file: string, ref: ReferenceMoe, prompt: string, addBos: number | undefined): Promise<{ max: number; positions: number[]; ids: number[] }> {
  return withModel(file, async (model) => {
    const ids = [...(addBos !== undefined ? [addBos] : []), ...tokenize(model, prompt)];
    const positions = ids.map((_, i) => i).filter((i) => i % 4 === 1 || i === ids.length - 1);
    const want = ref.logits(ids, positions).map(logSoftmax);
    const ours = await logProbsAt(model, ids, positions, { precision: "exact" });
    let max = 0;
    for (let k = 0; k < positions.length; k++) max = Math.max(max, maxAbsDiff(ours[k]!, want[k]!).max);
    return { max, positions, ids };
  });
}

const PROMPT = "Mixture of experts: each token is routed to a few small feed-forward networks, chosen by a router.";

for (const c of [
  { label: "Qwen3-MoE (16 experts, top-4, head_dim ≠ hidden/heads, BF16)", name: "qwen3moe", o: { family: "qwen3moe", dtype: "BF16", seed: 3 } as TinyMoeOptions, bos: undefined,
    // shared 2·151936·64 + 64 + 2·25,792 = 19,499,456; per expert 6 · 32·64 = 12,288 → 19.51M → "20M"
    sizeLabel: "16x20M" },
  { label: "Mixtral (8 experts, top-2, F32)", name: "mixtral", o: { family: "mixtral", dtype: "F32", seed: 4 } as TinyMoeOptions, bos: 1,
    // shared 2·32000·64 + 64 + 2·12,928 = 4,121,920; per expert 12,288 → 4.134M → "4.1M"
    sizeLabel: "8x4.1M" },
]) {
  test(`tiny ${c.label} → f32: llama.cpp's tensors and KVs, and next-token distributions equal the reference (≤ ${TOL}); shuffled experts are far off`, async (t) => {
    const { m, gguf: file } = await build(c.name, c.o);
    await checkLayout(file, m, c.sizeLabel);
    const ref = await ReferenceMoe.load(m.dir);
    const r = await compare(file, ref, PROMPT, c.bos);
    t.diagnostic(`${r.ids.length} tokens, positions [${r.positions.join(",")}] × ${m.vocabSize} tokens: max |Δ log p| = ${r.max.toExponential(3)}`);
    assert.ok(r.ids.length >= 16, `${r.ids.length} tokens`);
    assert.ok(r.max <= TOL, `max |Δ log p| = ${r.max}`);

    // a GGUF with the experts shuffled must fail the same comparison
    const broken = path.join(tmp, `${c.name}-lexicographic.gguf`);
    const moved = await lexicographicExperts(file, broken);
    assert.ok(moved > 0, "the lexicographic order moves some experts");
    const b = await compare(broken, ref, PROMPT, c.bos);
    t.diagnostic(`experts shuffled (${moved} slots moved): max |Δ log p| = ${b.max.toFixed(3)}`);
    assert.ok(b.max > 100 * TOL, `shuffled experts are only ${b.max} away`);
  });
}

test("the MoE reference has teeth: Qwen3-MoE routing without norm_topk_prob computes something else", async () => {
  const dir = path.join(tmp, "qwen3moe-small");
  await writeTinyMoe(dir, { family: "qwen3moe", bpe: 1024, seed: 5 });
  const ids = [9, 70, 11, 847, 829, 374, 120, 169, 13, 358, 1000];
  const a = (await ReferenceMoe.load(dir)).nextTokenLogProbs(ids);
  await writeTinyMoe(dir, { family: "qwen3moe", bpe: 1024, seed: 5, config: { norm_topk_prob: false } });
  const b = (await ReferenceMoe.load(dir)).nextTokenLogProbs(ids);
  // the routers are peaked (top-4 of 16 hold most of the mass), so the difference is moderate
  assert.ok(maxAbsDiff(a, b).max > 10 * TOL, `norm_topk_prob changes log p by only ${maxAbsDiff(a, b).max}`);
});
