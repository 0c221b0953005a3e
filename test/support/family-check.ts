/**
 * Shared steps of the llama3 helper's family tests (Llama 3.x, Mistral, Qwen2.5, Qwen3): generate a tiny
 * checkpoint (fixtures/llama3.ts), convert it, read back the GGUF's architecture KVs and tensor shapes, and
 * compare llama.cpp's next-token distributions with the reference forward pass (reference-qwen2.ts).
 */
import assert from "node:assert/strict";
import path from "node:path";
import { convert, type GGUFFile } from "../../src/index.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { writeTinyFamily, TINY_VOCAB, type Family, type TinyFamily, type TinyFamilyOptions } from "../../fixtures/llama3.js";
import { Rng } from "../../fixtures/rng.js";
import { withModel, logProbsAt } from "./llama.js";
import { ReferenceDecoder, logSoftmax, maxAbsDiff, type ForwardVariant } from "./reference-qwen2.js";

/** llama.cpp in float32 (F32 KV cache, no flash attention) vs the float64 reference. */
export const TOL = 1e-3;

export interface Built extends TinyFamily {
  gguf: string;
}

/** Generate `family` under `tmp/name` and convert it to `tmp/name-<outtype>.gguf`. */
export async function buildFamily(tmp: string, name: string, family: Family, opts: TinyFamilyOptions = {}, outtype = "f32"): Promise<Built> {
  const dir = path.join(tmp, name);
  const t = await writeTinyFamily(dir, family, opts);
  const gguf = path.join(tmp, `${name}-${outtype}.gguf`);
  await convert({ input: dir, outfile: gguf, outtype });
  return { ...t, gguf };
}

/** A reproducible prompt of `n` ordinary token ids (3…511: not <unk>, <s>, </s>). */
export function promptIds(n: number, seed = 7): number[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => 3 + r.int(TINY_VOCAB - 3));
}

type KvRow = [key: string, type: string, value: unknown];

/** The `<arch>.*` KVs in file order, as [key, GGUF type name, value] (floats as stored: float32). */
export function archKvs(g: GGUFFile, arch: string): KvRow[] {
  const rows: KvRow[] = [];
  for (const k of g.keys) {
    if (!k.startsWith(`${arch}.`)) continue;
    const v = g.kvs.get(k)!;
    rows.push([k, GGUFValueType[v.type], v.type === GGUFValueType.ARRAY ? Array.from(v.value) : v.value]);
  }
  return rows;
}

/** KV rows a test expects; f32 values rounded as the file stores them. */
export const u32 = (key: string, v: number): KvRow => [key, "UINT32", v];
export const f32 = (key: string, v: number): KvRow => [key, "FLOAT32", Math.fround(v)];
export const str = (key: string, v: string): KvRow => [key, "STRING", v];

/** Every tensor as `name [ne…] TYPE`, sorted by name. */
export function tensorList(g: GGUFFile): string[] {
  return g.tensors.map((t) => `${t.name} [${t.ne.join(", ")}]`).sort();
}

/** A helper for expected lists: the per-layer part for layers 0…n−1 plus the global part, sorted. */
export function expectTensors(global: string[], perLayer: (i: number) => string[], layers: number): string[] {
  const out = [...global];
  for (let i = 0; i < layers; i++) out.push(...perLayer(i));
  return out.sort();
}

export interface Comparison {
  /** max |Δ log p| over the positions × vocabulary */
  max: number;
  positions: number[];
}

/**
 * llama.cpp's log-probabilities after each of `positions` of `ids` against the reference's (with `variant`),
 * F32 KV cache, no flash attention.
 */
export async function compare(dir: string, gguf: string, ids: readonly number[], positions: readonly number[], variant: ForwardVariant = {}): Promise<Comparison> {
  const ref = await ReferenceDecoder.load(dir);
  const want = ref.logits(ids, positions, variant).map(logSoftmax);
  const got = await withModel(gguf, (model) => logProbsAt(model, ids, positions, { precision: "exact" }));
  let max = 0;
  for (let k = 0; k < positions.length; k++) {
    assert.equal(got[k]!.length, want[k]!.length);
    max = Math.max(max, maxAbsDiff(got[k]!, want[k]!).max);
  }
  return { max, positions: [...positions] };
}

/** Every `step`-th position and the last. */
export function positionsOf(n: number, step = 4): number[] {
  return Array.from({ length: n }, (_, i) => i).filter((i) => i % step === 0 || i === n - 1);
}

