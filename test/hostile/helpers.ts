/**
 * Shared pieces of the hostile-input tests: a writable copy of stories260K to corrupt, safetensors
 * header surgery, sharding, a larger random llama checkpoint, the CLI with captured output, and
 * "nothing was left behind" checks.
 */
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { testData } from "../../fixtures/paths.js";
import { Rng } from "../../fixtures/rng.js";
import { writeSafetensors, type StTensor } from "../../src/formats/safetensors/writer.js";
import { main } from "../../src/cli/main.js";

export const STORIES = testData("tinyllamas-stories260K", "derived-hf-llama");
export const STORIES_FILES = ["config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"];

export async function scratch(prefix = "ggufy-hostile-"): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** A writable copy of stories260K in a fresh folder under `parent`. */
export async function copyStories(parent: string, name = "model"): Promise<string> {
  const dir = path.join(parent, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const f of STORIES_FILES) {
    await copyFile(path.join(STORIES, f), path.join(dir, f));
    await chmod(path.join(dir, f), 0o644);
  }
  return dir;
}

export interface RawSafetensors {
  json: Record<string, unknown>;
  data: Uint8Array;
}

/** The header JSON and the data section of a safetensors file. */
export async function readRaw(file: string): Promise<RawSafetensors> {
  const b = await readFile(file);
  const n = Number(b.readBigUInt64LE(0));
  return { json: JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>, data: new Uint8Array(b.subarray(8 + n)) };
}

/** Write header JSON (or raw header text) + data, with a correct length prefix unless `length` is given. */
export async function writeRaw(file: string, header: Record<string, unknown> | string | Uint8Array, data: Uint8Array, length?: bigint): Promise<void> {
  const body = typeof header === "string" ? Buffer.from(header, "utf8") : header instanceof Uint8Array ? Buffer.from(header) : Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(body.length));
  await writeFile(file, Buffer.concat([len, body, data]));
}

/** Edit the header of `file` in place; `edit` may mutate the JSON and/or return new data. */
export async function editHeader(file: string, edit: (json: Record<string, unknown>, data: Uint8Array) => Uint8Array | void): Promise<void> {
  const { json, data } = await readRaw(file);
  const d = edit(json, data) ?? data;
  await writeRaw(file, json, d);
}

export type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };

export function entry(json: Record<string, unknown>, name: string): Entry {
  const e = json[name] as Entry | undefined;
  if (!e) throw new Error(`no ${name} in the header`);
  return e;
}

export async function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const f = path.join(dir, "config.json");
  const c = JSON.parse(await readFile(f, "utf8")) as Record<string, unknown>;
  edit(c);
  await writeFile(f, JSON.stringify(c, null, 2));
}

/** Split model.safetensors into shards with an index (tensor names sorted, `perShard` per file). */
export async function shard(dir: string, nShards = 2): Promise<{ shards: string[]; weightMap: Record<string, string> }> {
  const { json, data } = await readRaw(path.join(dir, "model.safetensors"));
  const names = Object.keys(json).filter((k) => k !== "__metadata__").sort();
  const per = Math.ceil(names.length / nShards);
  const shards: string[] = [];
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < nShards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(nShards).padStart(5, "0")}.safetensors`;
    const tensors: StTensor[] = names.slice(s * per, (s + 1) * per).map((name) => {
      const e = entry(json, name);
      return { name, dtype: e.dtype as StTensor["dtype"], shape: e.shape, data: data.subarray(e.data_offsets[0], e.data_offsets[1]) };
    });
    await writeSafetensors(path.join(dir, file), tensors);
    for (const t of tensors) weightMap[t.name] = file;
    shards.push(file);
  }
  await rm(path.join(dir, "model.safetensors"));
  await writeIndex(dir, weightMap);
  return { shards, weightMap };
}

export async function writeIndex(dir: string, weightMap: Record<string, unknown>): Promise<void> {
  await writeFile(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
}

/** Every GGUF or ggufy temp file under `dir` (recursively). */
export async function leftovers(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    if (e.name.endsWith(".gguf") || e.name.includes(".ggufy-tmp-")) out.push(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
  }
  return out;
}

/** Run the CLI in-process with captured stdout/stderr. */
export async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const sink = (f: (s: string) => void): Writable => new Writable({ write(chunk, _enc, cb) { f(String(chunk)); cb(); } });
  const out = sink((s) => (stdout += s));
  const err = sink((s) => (stderr += s)) as unknown as NodeJS.WriteStream;
  const code = await main(argv, { stdout: out, stderr: err });
  return { code, stdout, stderr };
}

export interface RandomLlama {
  hidden: number;
  layers: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  seed?: number;
}

/**
 * A random LlamaForCausalLM with stories260K's tokenizer (512 tokens), F32 weights: big enough that
 * a K-quant conversion takes seconds, so it can be interrupted halfway.
 */
export async function writeRandomLlama(dir: string, o: RandomLlama): Promise<{ params: number; bytes: number }> {
  await mkdir(dir, { recursive: true });
  const r = new Rng(o.seed ?? 7);
  const vocab = 512;
  const hd = o.hidden / o.heads;
  const f32 = (n: number, std: number, mean = 0): Uint8Array => new Uint8Array(r.normals(n, mean, std).buffer);
  const tensors: StTensor[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0): void => {
    tensors.push({ name, dtype: "F32", shape, data: f32(shape.reduce((a, b) => a * b, 1), std, mean) });
  };
  add("model.embed_tokens.weight", [vocab, o.hidden], 0.02);
  add("model.norm.weight", [o.hidden], 0.05, 1);
  for (let i = 0; i < o.layers; i++) {
    const l = `model.layers.${i}.`;
    add(`${l}input_layernorm.weight`, [o.hidden], 0.05, 1);
    add(`${l}post_attention_layernorm.weight`, [o.hidden], 0.05, 1);
    add(`${l}self_attn.q_proj.weight`, [o.heads * hd, o.hidden], 0.02);
    add(`${l}self_attn.k_proj.weight`, [o.kvHeads * hd, o.hidden], 0.02);
    add(`${l}self_attn.v_proj.weight`, [o.kvHeads * hd, o.hidden], 0.02);
    add(`${l}self_attn.o_proj.weight`, [o.hidden, o.heads * hd], 0.02);
    add(`${l}mlp.gate_proj.weight`, [o.ffn, o.hidden], 0.02);
    add(`${l}mlp.up_proj.weight`, [o.ffn, o.hidden], 0.02);
    add(`${l}mlp.down_proj.weight`, [o.hidden, o.ffn], 0.02);
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  await writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const config = JSON.parse(await readFile(path.join(STORIES, "config.json"), "utf8")) as Record<string, unknown>;
  Object.assign(config, { hidden_size: o.hidden, intermediate_size: o.ffn, num_attention_heads: o.heads, num_key_value_heads: o.kvHeads, num_hidden_layers: o.layers, vocab_size: vocab, tie_word_embeddings: true });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  for (const f of ["tokenizer.model", "tokenizer_config.json"]) {
    await copyFile(path.join(STORIES, f), path.join(dir, f));
    await chmod(path.join(dir, f), 0o644);
  }
  const params = tensors.reduce((a, t) => a + t.data.length / 4, 0);
  return { params, bytes: params * 4 };
}

export function haveStories(): boolean {
  return existsSync(path.join(STORIES, "model.safetensors"));
}

/** Rewrite model.safetensors through `edit`, which may change, add or drop tensors (offsets are recomputed). */
export async function rewriteTensors(dir: string, edit: (tensors: StTensor[]) => StTensor[] | void): Promise<void> {
  const file = path.join(dir, "model.safetensors");
  const { json, data } = await readRaw(file);
  let tensors: StTensor[] = Object.keys(json)
    .filter((k) => k !== "__metadata__")
    .map((name) => {
      const e = entry(json, name);
      return { name, dtype: e.dtype as StTensor["dtype"], shape: e.shape, data: data.slice(e.data_offsets[0], e.data_offsets[1]) };
    });
  tensors = edit(tensors) ?? tensors;
  await writeSafetensors(file, tensors);
}

/** Float32 view of an F32 tensor's bytes (for planting NaN/Inf). */
export function f32View(t: StTensor): Float32Array {
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
