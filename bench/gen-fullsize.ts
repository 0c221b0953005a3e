/**
 * Benchmark checkpoints at full size, written fast (large sequential writes, bytes from a seeded
 * xoshiro128** stream, floats as random windows of a small pool of normals):
 *
 *   node dist/bench/gen-fullsize.js --out DIR [--layers N] [--seed S]
 *     MiniCPM-V-2_6-int4: the real 789 bf16 keys (test/data/minicpm-v-2_6/derived index) and shapes,
 *     every Linear that openbmb/MiniCPM-V-2_6-int4 quantizes (docs/bitsandbytes.md: LLM q/k/v/o/gate/
 *     up/down, SigLIP q/k/v/fc1/fc2) stored as NF4 with double quant (blocksize 64, nested 256, bf16
 *     quant-state dtype, u8 storage) — random packed nibbles, absmax codes and nested absmax taken
 *     from a double-quantized pool of plausible block maxima (max |x| of 64 N(0, 0.02²) values), so
 *     the decoded absmax are ≈ 0.03–0.09 — the rest bf16; the real 4-shard assignment, an index,
 *     config.json with quantization_config, preprocessor_config.json and the real tokenizer files.
 *     ~5.6 GB. `--layers N` keeps the first N LLM layers and round(27·N/28) vision layers (N = 14:
 *     the half-depth version).
 *
 *   node dist/bench/gen-fullsize.js --qwen2-bf16 --out DIR [--layers N]
 *     Qwen2-7B-shaped Qwen2ForCausalLM in bf16 (hidden 3584, ffn 18944, 28 heads / 4 KV heads,
 *     28 layers, vocab 152064, untied), 4 shards + index, the real Qwen2 tokenizer. ~15.2 GB. Refuses
 *     to start without that much free space (+1 GiB); `--dry-run` prints the size and the free space
 *     and writes nothing.
 *
 *   node dist/bench/gen-fullsize.js --qwen2-small --out DIR
 *     The issue-19 checkpoint: the same layout at hidden 2048, ffn 5632, 16 / 2 heads, 4 layers,
 *     vocab 151936, one shard + index. 1.60 GB. Either Qwen2 preset takes --hidden --ffn --heads
 *     --kv-heads --layers --vocab --shards to change a dimension.
 *
 * Nothing here is meant to be a good model: the values only need realistic magnitudes so that the
 * quantizers' searches take their usual paths.
 */
import { mkdir, open, readFile, rm, stat, statfs, writeFile, readdir } from "node:fs/promises";
import path from "node:path";
import { safetensorsHeader, stByteLength, type StEntry, type StDtype } from "../src/formats/safetensors/index.js";
import { f32RowToBf16 } from "../src/formats/half.js";
import { Rng } from "../fixtures/rng.js";
import { testData } from "../fixtures/paths.js";
import {
  MINICPMV_26_DIMS,
  MINICPMV_INT4_BNB,
  MINICPMV_TOKENIZER_FILES,
  minicpmvConfig,
  minicpmvPreprocessorConfig,
  minicpmvShape,
  readRealMinicpmvIndex,
  scaledKeys,
  type MinicpmvDims,
} from "../fixtures/minicpmv.js";
import { bnbModuleTensors, bnbQuantizationConfig, defaultIsLinear, doubleQuantize, isSkippedModule, pyJsonDumps, quantStateJson, type PyJson } from "../fixtures/bnb.js";
import { qwen2TokenizerSources } from "../fixtures/qwen2.js";

// ------------------------------------------------------------------------------------------------
// fast byte sources

/** xoshiro128** filling whole Uint32Arrays (the state stays in locals in the loop). */
class FastBytes {
  private s = new Int32Array(4);
  constructor(seed: number) {
    const r = new Rng(seed);
    for (let i = 0; i < 4; i++) this.s[i] = r.u32() | 0;
    if ((this.s[0]! | this.s[1]! | this.s[2]! | this.s[3]!) === 0) this.s[0] = 1;
  }
  fill(out: Uint8Array): void {
    // bytes before the first 4-byte boundary and after the last one one at a time, words in between
    const head = Math.min(out.length, (4 - (out.byteOffset & 3)) & 3);
    const n4 = (out.length - head) >>> 2;
    const u = new Int32Array(out.buffer, out.byteOffset + head, n4);
    let s0 = this.s[0]!, s1 = this.s[1]!, s2 = this.s[2]!, s3 = this.s[3]!;
    let j = 0;
    const byteAt = (i: number): void => {
      const x = Math.imul(s1, 5);
      out[i] = Math.imul((x << 7) | (x >>> 25), 9) >>> 24;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    };
    for (; j < head; j++) byteAt(j);
    for (let i = 0; i < n4; i++) {
      const x = Math.imul(s1, 5);
      u[i] = Math.imul((x << 7) | (x >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    for (j = head + n4 * 4; j < out.length; j++) byteAt(j);
    this.s[0] = s0;
    this.s[1] = s1;
    this.s[2] = s2;
    this.s[3] = s3;
  }
  /** uniform integer in [0, n) */
  int(n: number): number {
    const b = new Uint8Array(4);
    this.fill(b);
    return (new Uint32Array(b.buffer)[0]! % n) >>> 0;
  }
}

const POOL = 1 << 20;

/** bf16 values cut as random windows of a pool of N(mean, std²) samples. */
class Bf16Pool {
  readonly bits: Uint8Array;
  constructor(rng: Rng, mean: number, std: number) {
    const h = new Uint16Array(POOL + 8192);
    f32RowToBf16(rng.normals(h.length, mean, std), h);
    this.bits = new Uint8Array(h.buffer);
  }
  /** fill `out` (an even number of bytes) with windows of at most 8192 values at random offsets */
  fill(out: Uint8Array, rnd: FastBytes): void {
    for (let o = 0; o < out.length; o += 16384) {
      const n = Math.min(16384, out.length - o);
      const start = 2 * rnd.int(POOL);
      out.set(this.bits.subarray(start, start + n), o);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// streaming shard writer

/** How a tensor's bytes are produced, in pieces of at most `len` bytes written at `out`. */
type Producer = (out: Uint8Array, offset: number) => void;

interface PlannedTensor extends StEntry {
  produce: Producer;
}

const WRITE_BUF = 32 << 20;

async function writeShard(file: string, tensors: readonly PlannedTensor[]): Promise<number> {
  const header = safetensorsHeader(tensors, { format: "pt" });
  const fh = await open(file, "w");
  const buf = new Uint8Array(WRITE_BUF);
  let used = 0;
  let total = header.length;
  const flush = async (): Promise<void> => {
    let off = 0;
    while (off < used) off += (await fh.write(buf, off, used - off)).bytesWritten;
    used = 0;
  };
  try {
    buf.set(header);
    used = header.length;
    for (const t of tensors) {
      const n = stByteLength(t);
      let done = 0;
      while (done < n) {
        if (used === WRITE_BUF) await flush();
        // keep pieces even-sized so that 2-byte values never straddle a flush
        const k = Math.min(n - done, (WRITE_BUF - used) & ~7 || WRITE_BUF - used);
        t.produce(buf.subarray(used, used + k), done);
        used += k;
        done += k;
      }
      total += n;
    }
    await flush();
  } finally {
    await fh.close();
  }
  return total;
}

/** safetensors' on-disk order (what save_file produces): dtype rank descending, then name. */
const DTYPE_RANK: Record<string, number> = { BOOL: 0, U8: 1, I8: 2, F16: 8, BF16: 9, I32: 10, U32: 11, F32: 12, F64: 13, I64: 14, U64: 15 };
const byStOrder = (a: StEntry, b: StEntry): number => DTYPE_RANK[b.dtype]! - DTYPE_RANK[a.dtype]! || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function constBytes(data: Uint8Array): Producer {
  return (out, off) => out.set(data.subarray(off, off + out.length));
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function cleanDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of await readdir(dir)) if (f.endsWith(".safetensors") || f.endsWith(".json") || f === "merges.txt") await rm(path.join(dir, f), { force: true });
}

// ------------------------------------------------------------------------------------------------
// MiniCPM-V-2_6-int4

/** A pool of double-quantized absmax: realistic block maxima, quantized once with bitsandbytes' rules. */
function absmaxPool(rng: Rng): { q: Uint8Array; nested: Float32Array; offset: number; code: Float32Array } {
  const groups = 1024;
  const blocks = new Float32Array(groups * 256);
  const x = new Float32Array(64);
  for (let b = 0; b < blocks.length; b++) {
    rng.fillNormal(x, 0, 0.02);
    let m = 0;
    for (const v of x) m = Math.max(m, Math.abs(v));
    blocks[b] = m;
  }
  // bf16 weights → bf16-exact maxima
  const h = new Uint16Array(blocks.length);
  f32RowToBf16(blocks, h);
  const u = new Uint32Array(blocks.buffer);
  for (let i = 0; i < h.length; i++) u[i] = h[i]! << 16;
  const dq = doubleQuantize(blocks, 256);
  return { q: dq.q, nested: dq.nestedAbsmax, offset: dq.offset, code: dq.code };
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

async function genMinicpmvInt4(dir: string, llmLayers: number, seed: number): Promise<void> {
  const real = await readRealMinicpmvIndex();
  const visionLayers = Math.round((27 * llmLayers) / 28);
  const d: MinicpmvDims = { ...MINICPMV_26_DIMS, llm: { ...MINICPMV_26_DIMS.llm, layers: llmLayers }, vision: { ...MINICPMV_26_DIMS.vision, layers: visionLayers } };
  const keys = scaledKeys(Object.keys(real.weightMap), llmLayers, visionLayers);
  await cleanDir(dir);
  const rng = new Rng(seed);
  const rnd = new FastBytes(seed ^ 0x5eed);
  const normal = new Bf16Pool(rng, 0, 0.02);
  const norms = new Bf16Pool(rng, 1, 0.05);
  const pool = absmaxPool(rng);
  // the constant tensors of a module (quant_map, nested_quant_map) exactly as the fixture encoder writes them
  const proto = bnbModuleTensors("p.weight", rng.normals(64, 0, 0.02), [1, 64], { method: "nf4", doubleQuant: true, blocksize: 64, quantStorage: "uint8", dtype: "bfloat16" });
  const quantMap = proto.find((t) => t.name === "p.weight.quant_map")!.data;
  const nestedMap = f32Bytes(pool.code);
  const skip = [...MINICPMV_INT4_BNB.skipModules];

  const shards = new Map<string, PlannedTensor[]>();
  const weightMap: Record<string, string> = {};
  const add = (shard: string, t: PlannedTensor): void => {
    if (!shards.has(shard)) shards.set(shard, []);
    shards.get(shard)!.push(t);
    weightMap[t.name] = shard;
  };
  let quantized = 0;
  for (const name of keys) {
    const shape = minicpmvShape(name, d);
    const shard = real.weightMap[name]!;
    const n = shape.reduce((a, b) => a * b, 1);
    if (defaultIsLinear(name, shape) && !isSkippedModule(name.replace(/\.weight$/, ""), skip)) {
      quantized++;
      const nb = Math.ceil(n / 64);
      const ng = Math.ceil(nb / 256);
      const q = new Uint8Array(nb);
      const nested = new Float32Array(ng);
      for (let g = 0; g < ng; g++) {
        const pg = rnd.int(1024);
        q.set(pool.q.subarray(pg * 256, pg * 256 + Math.min(256, nb - g * 256)), g * 256);
        nested[g] = pool.nested[pg]!;
      }
      const state = new Uint8Array(Buffer.from(quantStateJson({ quantType: "nf4", blocksize: 64, dtype: "bfloat16", shape, nested: { blocksize: 256, dtype: "float32", offset: pool.offset } }), "utf8"));
      add(shard, { name, dtype: "U8", shape: [Math.ceil(n / 2), 1], produce: (out) => rnd.fill(out) });
      add(shard, { name: `${name}.absmax`, dtype: "U8", shape: [nb], produce: constBytes(q) });
      add(shard, { name: `${name}.quant_map`, dtype: "F32", shape: [16], produce: constBytes(quantMap) });
      add(shard, { name: `${name}.nested_absmax`, dtype: "F32", shape: [ng], produce: constBytes(f32Bytes(nested)) });
      add(shard, { name: `${name}.nested_quant_map`, dtype: "F32", shape: [256], produce: constBytes(nestedMap) });
      add(shard, { name: `${name}.quant_state.bitsandbytes__nf4`, dtype: "U8", shape: [state.length], produce: constBytes(state) });
    } else {
      const isNorm = /(norm|ln_q|ln_kv|ln_post|layer_norm\d|post_layernorm)\.weight$/.test(name);
      const src = isNorm ? norms : normal;
      add(shard, { name, dtype: "BF16", shape, produce: (out) => src.fill(out, rnd) });
    }
  }
  // side files
  const tok = testData("minicpm-v-2_6");
  for (const f of MINICPMV_TOKENIZER_FILES) await writeFile(path.join(dir, f), await readFile(path.join(tok, f)));
  const config = minicpmvConfig(d) as { [k: string]: PyJson };
  config["quantization_config"] = bnbQuantizationConfig({ method: "nf4", doubleQuant: true, quantStorage: "uint8", computeDtype: "bfloat16", skipModules: skip });
  config["_name_or_path"] = "openbmb/MiniCPM-V-2_6-int4";
  await writeFile(path.join(dir, "config.json"), pyJsonDumps(config, 2, true) + "\n");
  await writeFile(path.join(dir, "preprocessor_config.json"), JSON.stringify(minicpmvPreprocessorConfig(d), null, 2) + "\n");
  let total = 0;
  for (const [file, ts] of [...shards].sort(([a], [b]) => (a < b ? -1 : 1))) {
    ts.sort(byStOrder);
    const t0 = performance.now();
    const bytes = await writeShard(path.join(dir, file), ts);
    total += bytes;
    console.log(`${file}: ${ts.length} tensors, ${(bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const dataSize = [...shards.values()].flat().reduce((a, t) => a + stByteLength(t), 0);
  await writeFile(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: dataSize }, weight_map: sortKeys(weightMap) }, null, 2) + "\n");
  console.log(`MiniCPM-V-2_6-int4 (${llmLayers} LLM layers, ${visionLayers} vision layers): ${keys.length} logical tensors, ${quantized} NF4 modules, ${(total / 1e9).toFixed(2)} GB in ${dir}`);
}

// ------------------------------------------------------------------------------------------------
// Qwen2-7B bf16

export interface Qwen2Shape {
  hidden: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  layers: number;
  vocab: number;
  shards: number;
}

export const QWEN2_7B: Qwen2Shape = { hidden: 3584, ffn: 18944, heads: 28, kvHeads: 4, layers: 28, vocab: 152064, shards: 4 };
/**
 * The issue-19 benchmark (`--qwen2-small`): hidden 2048, 16 heads / 2 KV heads, FFN 5632, 4 layers,
 * vocab 151936 (Qwen2-1.5B's), untied, one shard: 1.60 GB (1.49 GiB), two thirds of it the two
 * vocabulary-sized matrices.
 */
export const QWEN2_SMALL: Qwen2Shape = { hidden: 2048, ffn: 5632, heads: 16, kvHeads: 2, layers: 4, vocab: 151936, shards: 1 };

/** A preset's shape with any of --hidden --ffn --heads --kv-heads --layers --vocab --shards overriding it. */
function qwen2ShapeFromArgs(base: Qwen2Shape): Qwen2Shape {
  const int = (flag: string, v: number): number => {
    const a = arg(flag);
    if (a === undefined) return v;
    const n = Number(a);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${flag} needs a positive integer, got '${a}'`);
    return n;
  };
  const q: Qwen2Shape = { hidden: int("hidden", base.hidden), ffn: int("ffn", base.ffn), heads: int("heads", base.heads), kvHeads: int("kv-heads", base.kvHeads), layers: int("layers", base.layers), vocab: int("vocab", base.vocab), shards: int("shards", base.shards) };
  if (q.hidden % q.heads !== 0 || q.heads % q.kvHeads !== 0) throw new Error(`--hidden ${q.hidden} must be a multiple of --heads ${q.heads}, and --heads of --kv-heads ${q.kvHeads}`);
  if (q.vocab < 151665) throw new Error(`--vocab ${q.vocab}: the real Qwen2 tokenizer has 151665 tokens`);
  return q;
}

/** bytes of the bf16 safetensors data of shape `q` (the tensors genQwen2Bf16 writes) */
function qwen2Bytes(q: Qwen2Shape): number {
  const kv = q.kvHeads * (q.hidden / q.heads);
  const layer = 2 * q.hidden * q.hidden + q.hidden + 2 * (kv * q.hidden + kv) + 3 * q.ffn * q.hidden + 2 * q.hidden;
  return 2 * (2 * q.vocab * q.hidden + q.layers * layer + q.hidden);
}

async function genQwen2Bf16(dir: string, q: Qwen2Shape, seed: number): Promise<void> {
  // the disk is shared: refuse up front rather than fill it (--dry-run: print the size and stop, touching nothing)
  const need = qwen2Bytes(q);
  let probe = dir;
  while (!(await stat(probe).then(() => true, () => false)) && path.dirname(probe) !== probe) probe = path.dirname(probe);
  const st = await statfs(probe);
  const free = st.bavail * st.bsize;
  console.log(`Qwen2-shaped bf16 (hidden ${q.hidden}, ${q.layers} layers, vocab ${q.vocab}): ${(need / 1e9).toFixed(2)} GB of safetensors, ${(free / 1e9).toFixed(1)} GB free at ${probe}`);
  if (process.argv.includes("--dry-run")) return;
  if (need + (1 << 30) > free) throw new Error(`not enough free space at ${probe}: ${(need / 1e9).toFixed(2)} GB needed (+1 GiB margin), ${(free / 1e9).toFixed(2)} GB free`);
  await cleanDir(dir);
  const layers = q.layers;
  const { bpeDir, qwen25Dir } = qwen2TokenizerSources();
  await writeFile(path.join(dir, "vocab.json"), await readFile(path.join(bpeDir, "vocab.json")));
  const merges = await readFile(path.join(bpeDir, "merges.txt"));
  await writeFile(path.join(dir, "merges.txt"), merges.subarray(0, 8).toString("latin1").startsWith("#version") ? merges : Buffer.concat([Buffer.from("#version: 0.2\n"), merges]));
  for (const f of ["added_tokens.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]) await writeFile(path.join(dir, f), await readFile(path.join(qwen25Dir, f)));
  const base = JSON.parse(await readFile(path.join(qwen25Dir, "config.json"), "utf8")) as Record<string, unknown>;
  delete base["_name_or_path"];
  const config = {
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    hidden_size: q.hidden,
    intermediate_size: q.ffn,
    num_hidden_layers: layers,
    num_attention_heads: q.heads,
    num_key_value_heads: q.kvHeads,
    max_window_layers: layers,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-6,
    rope_theta: 1_000_000.0,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: q.vocab,
  };
  await writeFile(path.join(dir, "config.json"), JSON.stringify(sortKeys(config), null, 2) + "\n");
  const hd = q.hidden / q.heads;
  const kv = q.kvHeads * hd;
  const specs: { name: string; shape: number[] }[] = [{ name: "model.embed_tokens.weight", shape: [q.vocab, q.hidden] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    specs.push(
      { name: p + "self_attn.q_proj.weight", shape: [q.hidden, q.hidden] },
      { name: p + "self_attn.q_proj.bias", shape: [q.hidden] },
      { name: p + "self_attn.k_proj.weight", shape: [kv, q.hidden] },
      { name: p + "self_attn.k_proj.bias", shape: [kv] },
      { name: p + "self_attn.v_proj.weight", shape: [kv, q.hidden] },
      { name: p + "self_attn.v_proj.bias", shape: [kv] },
      { name: p + "self_attn.o_proj.weight", shape: [q.hidden, q.hidden] },
      { name: p + "mlp.gate_proj.weight", shape: [q.ffn, q.hidden] },
      { name: p + "mlp.up_proj.weight", shape: [q.ffn, q.hidden] },
      { name: p + "mlp.down_proj.weight", shape: [q.hidden, q.ffn] },
      { name: p + "input_layernorm.weight", shape: [q.hidden] },
      { name: p + "post_attention_layernorm.weight", shape: [q.hidden] },
    );
  }
  specs.push({ name: "model.norm.weight", shape: [q.hidden] }, { name: "lm_head.weight", shape: [q.vocab, q.hidden] });
  const rng = new Rng(seed);
  const rnd = new FastBytes(seed ^ 0x7b);
  const normal = new Bf16Pool(rng, 0, 0.02);
  const norms = new Bf16Pool(rng, 1, 0.05);
  const bytes = (s: { shape: number[] }): number => 2 * s.shape.reduce((a, b) => a * b, 1);
  const total = specs.reduce((a, s) => a + bytes(s), 0);
  if (total !== qwen2Bytes(q)) throw new Error(`internal: ${total} bytes planned, qwen2Bytes says ${qwen2Bytes(q)}`);
  // contiguous in state-dict order, split by bytes (as save_pretrained's max_shard_size does)
  const nShards = q.shards;
  const groups: (typeof specs)[] = [[]];
  let acc = 0;
  for (const s of specs) {
    if (acc >= (total / nShards) * groups.length && groups.length < nShards) groups.push([]);
    groups[groups.length - 1]!.push(s);
    acc += bytes(s);
  }
  const weightMap: Record<string, string> = {};
  for (let k = 0; k < groups.length; k++) {
    const file = `model-${String(k + 1).padStart(5, "0")}-of-${String(groups.length).padStart(5, "0")}.safetensors`;
    const ts: PlannedTensor[] = groups[k]!.map((s) => {
      weightMap[s.name] = file;
      const src = /norm\.weight$/.test(s.name) ? norms : normal;
      return { name: s.name, dtype: "BF16" as StDtype, shape: s.shape, produce: (out: Uint8Array) => src.fill(out, rnd) };
    });
    ts.sort(byStOrder);
    const t0 = performance.now();
    const b = await writeShard(path.join(dir, file), ts);
    console.log(`${file}: ${ts.length} tensors, ${(b / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  await writeFile(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: sortKeys(weightMap) }, null, 2) + "\n");
  console.log(`Qwen2-shaped bf16 (hidden ${q.hidden}, ffn ${q.ffn}, ${q.heads}/${q.kvHeads} heads, ${layers} layers, vocab ${q.vocab}): ${specs.length} tensors, ${(total / 1e9).toFixed(2)} GB in ${dir}`);
}

async function main(): Promise<void> {
  const out = arg("out");
  if (!out) {
    console.error("usage: gen-fullsize --out DIR [--layers N] [--seed S] [--qwen2-bf16 | --qwen2-small [--dry-run]] [--hidden N --ffn N --heads N --kv-heads N --vocab N --shards N]");
    process.exit(64);
  }
  const seed = Number(arg("seed") ?? 2026);
  const t0 = performance.now();
  if (process.argv.includes("--qwen2-bf16")) await genQwen2Bf16(path.resolve(out), qwen2ShapeFromArgs(QWEN2_7B), seed);
  else if (process.argv.includes("--qwen2-small")) await genQwen2Bf16(path.resolve(out), qwen2ShapeFromArgs(QWEN2_SMALL), seed);
  else await genMinicpmvInt4(path.resolve(out), Number(arg("layers") ?? MINICPMV_26_DIMS.llm.layers), seed);
  console.log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

await main();
