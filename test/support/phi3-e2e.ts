/**
 * Shared steps of the Phi-3 end-to-end tests (test/e2e/phi3*.test.ts): build and convert a tiny checkpoint,
 * write deliberately broken copies of a GGUF, compare llama.cpp with the reference forward pass, and the
 * tensors / KVs llama.cpp's converter (conversion/phi.py Phi3MiniModel) writes for a checkpoint.
 */
import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { readGguf, readGgufTensorBytes, kvValue } from "../../src/formats/gguf/reader.js";
import { GGUFStreamWriter } from "../../src/formats/gguf/writer.js";
import type { GGUFKV } from "../../src/formats/gguf/types.js";
import { writeTinyPhi3, type TinyPhi3, type TinyPhi3Options } from "../../fixtures/phi3.js";
import { withModel, logProbsAt, tokenize } from "./llama.js";
import { Phi3Reference, type Phi3Variant } from "./reference-phi3.js";
import { maxAbsDiff } from "./reference-qwen2.js";

export const TOL = 1e-3;
/** the context logProbsAt creates for prompts up to 256 tokens (test/support/llama.ts) */
export const N_CTX = 256;

export interface Built {
  fx: TinyPhi3;
  gguf: string;
}
const built = new Map<string, Promise<Built>>();
export function build(tmp: string, name: string, opts: TinyPhi3Options): Promise<Built> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      const dir = path.join(tmp, name);
      const fx = await writeTinyPhi3(dir, opts);
      const gguf = path.join(tmp, `${name}-f32.gguf`);
      await convert({ input: dir, outfile: gguf, outtype: "f32" });
      return { fx, gguf };
    })();
    built.set(name, p);
  }
  return p;
}

/** A copy of a GGUF with tensors dropped or renamed and KVs dropped (a deliberately broken conversion). */
export async function rewriteGguf(src: string, dst: string, edit: { drop?: string[]; rename?: Record<string, string>; dropKv?: string[] }): Promise<string> {
  const g = await readGguf(src);
  const kvs: GGUFKV[] = g.keys.filter((k) => !edit.dropKv?.includes(k)).map((key) => ({ key, value: g.kvs.get(key)! }));
  const tensors = g.tensors.filter((t) => !edit.drop?.includes(t.name));
  const fh = await open(dst, "w");
  try {
    const w = new GGUFStreamWriter({ write: async (b) => void (await fh.write(b)) }, kvs, tensors.map((t) => ({ name: edit.rename?.[t.name] ?? t.name, ne: t.ne, type: t.type })));
    await w.start();
    for (const t of tensors) await w.write(await readGgufTensorBytes(g, t));
    w.finish();
  } finally {
    await fh.close();
  }
  return dst;
}

export const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and every day she went to see the big old tree.";

/** max |Δ log p| between llama.cpp on each GGUF and the reference, at positions 0, 3, 6 … and the last. */
export async function compare(dir: string, ggufs: readonly string[], variant: Phi3Variant, prompt = PROMPT): Promise<{ max: number[]; n: number }> {
  const ref = await Phi3Reference.load(dir);
  let ids: number[] = [];
  const max: number[] = [];
  for (const gguf of ggufs) {
    await withModel(gguf, async (model) => {
      if (ids.length === 0) ids = tokenize(model, prompt);
      assert.ok(ids.length > 30 && ids.length <= N_CTX, `${ids.length} prompt tokens`);
      const positions = ids.map((_, i) => i).filter((i) => i % 3 === 0 || i === ids.length - 1);
      const want = ref.logProbs(ids, positions, variant);
      const ours = await logProbsAt(model, ids, positions, { precision: "exact" });
      let m = 0;
      for (let k = 0; k < positions.length; k++) m = Math.max(m, maxAbsDiff(ours[k]!, want[k]!).max);
      max.push(m);
    });
  }
  return { max, n: ids.length };
}

/** The tensors llama.cpp's converter writes for this checkpoint: name → ggml ne. */
export function expectedTensors(fx: TinyPhi3, ropeFactors: number): Map<string, number[]> {
  const m = new Map<string, number[]>();
  if (ropeFactors > 0) {
    m.set("rope_factors_long.weight", [ropeFactors]);
    m.set("rope_factors_short.weight", [ropeFactors]);
  }
  const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocabSize: V } = fx;
  m.set("token_embd.weight", [H, V]);
  m.set("output_norm.weight", [H]);
  if (!fx.tied) m.set("output.weight", [H, V]);
  for (let i = 0; i < fx.layers; i++) {
    m.set(`blk.${i}.attn_norm.weight`, [H]);
    m.set(`blk.${i}.attn_qkv.weight`, [H, (heads + 2 * kvHeads) * D]);
    m.set(`blk.${i}.attn_output.weight`, [heads * D, H]);
    m.set(`blk.${i}.ffn_norm.weight`, [H]);
    m.set(`blk.${i}.ffn_up.weight`, [H, 2 * F]);
    m.set(`blk.${i}.ffn_down.weight`, [F, H]);
  }
  return m;
}

/**
 * The `phi3.*` KVs Phi3MiniModel writes (set_gguf_parameters, no TextModel KVs; attn_factor from
 * generate_extra_tensors when there are long factors), with their values.
 */
export function expectedKvs(c: Record<string, unknown>, ropeDims: number, attnFactor: number | undefined): Record<string, number> {
  const n = (k: string): number => c[k] as number;
  const o: Record<string, number> = {
    "phi3.context_length": n("max_position_embeddings"),
    "phi3.rope.scaling.original_context_length": n("original_max_position_embeddings"),
    "phi3.embedding_length": n("hidden_size"),
    "phi3.feed_forward_length": n("intermediate_size"),
    "phi3.block_count": n("num_hidden_layers"),
    "phi3.attention.head_count": n("num_attention_heads"),
    "phi3.attention.head_count_kv": n("num_key_value_heads"),
    "phi3.attention.layer_norm_rms_epsilon": Math.fround(n("rms_norm_eps")),
    "phi3.rope.dimension_count": ropeDims,
    "phi3.rope.freq_base": Math.fround(n("rope_theta")),
    "phi3.attention.sliding_window": (c["sliding_window"] as number | null) ?? 0,
  };
  if (attnFactor !== undefined) o["phi3.rope.scaling.attn_factor"] = Math.fround(attnFactor);
  return o;
}

export async function checkFile(t: { diagnostic: (s: string) => void }, b: Built, ropeDims: number, attnFactor: number | undefined, factors?: { long: number[]; short: number[] }): Promise<void> {
  const g = await readGguf(b.gguf);
  assert.equal(kvValue(g, "general.architecture"), "phi3");
  const got = new Map(g.tensors.map((x) => [x.name, x.ne]));
  const want = expectedTensors(b.fx, factors ? ropeDims / 2 : 0);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, ne] of want) assert.deepEqual(got.get(name), ne, name);
  for (const x of g.tensors) assert.equal(x.type, 0, `${x.name} is F32`);
  // the generated factors come first, as generate_extra_tensors yields them before the checkpoint's
  if (factors) assert.deepEqual(g.tensors.slice(0, 2).map((x) => x.name), ["rope_factors_long.weight", "rope_factors_short.weight"]);
  const archKvs = Object.fromEntries(g.keys.filter((k) => k.startsWith("phi3.")).map((k) => [k, Number(kvValue(g, k))]));
  assert.deepEqual(archKvs, expectedKvs(b.fx.config, ropeDims, attnFactor));
  if (factors) {
    const f32 = async (name: string): Promise<number[]> => {
      const e = g.tensors.find((x) => x.name === name)!;
      const bytes = await readGgufTensorBytes(g, e);
      return [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)];
    };
    assert.deepEqual(await f32("rope_factors_long.weight"), factors.long.map(Math.fround));
    assert.deepEqual(await f32("rope_factors_short.weight"), factors.short.map(Math.fround));
  }
  t.diagnostic(`${g.tensors.length} tensors, ${Object.keys(archKvs).length} phi3.* KVs as llama.cpp's converter writes them`);
}
