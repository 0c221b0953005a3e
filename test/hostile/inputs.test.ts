/**
 * One case per input check: stories260K copied to a temp folder, corrupted one way, converted
 * through the library's convert(). Each must fail with its own code, a one-line message naming the
 * file and (where there is one) the tensor, and leave no .gguf and no temp file behind.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm, symlink, unlink, writeFile, copyFile, rename } from "node:fs/promises";
import path from "node:path";
import { convert, GgufyError, ERROR_CODES, type ErrorCode } from "../../src/index.js";
import type { ConvertOptions } from "../../src/convert/convert.js";
import { SourceCheckpoint } from "../../src/convert/source.js";
import { validateVocab } from "../../src/models/validate.js";
import type { GGUFVocab } from "../../src/tokenizer/types.js";
import {
  copyStories, editConfig, editHeader, entry, f32View, leftovers, readRaw, rewriteTensors, scratch, shard, writeIndex, writeRaw, type Entry,
} from "./helpers.js";

let root: string;
before(async () => {
  root = await scratch();
});
after(() => rm(root, { recursive: true, force: true }));

const ST = "model.safetensors";
const EMB = "model.embed_tokens.weight";
let n = 0;

/** A fresh copy, corrupted by `setup`; returns the folder. */
async function corrupt(setup: (dir: string) => Promise<void>): Promise<string> {
  const dir = await copyStories(root, `case-${n++}`);
  await setup(dir);
  return dir;
}

/** convert() must reject with `code`; the message must be one line naming every string in `mentions`. */
async function expectError(dir: string, code: ErrorCode, mentions: (string | RegExp)[], opts: Partial<ConvertOptions> = {}): Promise<GgufyError> {
  let caught: unknown;
  try {
    await convert({ input: dir, outfile: path.join(dir, "out.gguf"), threads: 1, ...opts });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof GgufyError, `expected a GgufyError, got ${caught === undefined ? "success" : (caught as Error).stack}`);
  const e = caught;
  assert.equal(e.code, code, e.message);
  assert.ok(e.code in ERROR_CODES);
  assert.ok(!/[\r\n]/.test(e.message), `not one line: ${JSON.stringify(e.message)}`);
  assert.ok(e.message.startsWith(`${code}: `), e.message);
  for (const m of mentions) assert.ok(typeof m === "string" ? e.message.includes(m) : m.test(e.message), `message does not mention ${m}: ${e.message}`);
  assert.deepEqual(await leftovers(dir), [], "an output or temp file was left behind");
  return e;
}

interface Case {
  name: string;
  setup: (dir: string) => Promise<void>;
  code: ErrorCode;
  mentions: (dir: string) => (string | RegExp)[];
}

const st = (dir: string): string => path.join(dir, ST);

/** the two tensors of the same size whose data comes first and second in the file */
function sameSizePair(json: Record<string, unknown>): [string, string] {
  const names = Object.keys(json).filter((k) => k.endsWith("input_layernorm.weight") || k.endsWith("post_attention_layernorm.weight"));
  names.sort((a, b) => entry(json, a).data_offsets[0] - entry(json, b).data_offsets[0]);
  return [names[0]!, names[1]!];
}

function lastTensor(json: Record<string, unknown>): string {
  return Object.keys(json).filter((k) => k !== "__metadata__").sort((a, b) => entry(json, b).data_offsets[0] - entry(json, a).data_offsets[0])[0]!;
}

const SAFETENSORS_CASES: Case[] = [
  {
    name: "header length runs past the end of the file",
    setup: async (d) => { const { json, data } = await readRaw(st(d)); await writeRaw(st(d), json, data, 5_000_000n); },
    code: "E_ST_HEADER_LENGTH", mentions: (d) => [st(d), "5000000", "runs past the end of the file"],
  },
  {
    name: "header length over the 100 MB cap",
    setup: async (d) => { const { json, data } = await readRaw(st(d)); await writeRaw(st(d), json, data, 1n << 40n); },
    code: "E_ST_HEADER_TOO_LARGE", mentions: (d) => [st(d), "1099511627776", "cap"],
  },
  {
    name: "file shorter than the length prefix",
    setup: async (d) => writeFile(st(d), "abc"),
    code: "E_ST_HEADER_LENGTH", mentions: (d) => [st(d), "3 bytes"],
  },
  {
    name: "header is not JSON (with position)",
    setup: async (d) => { const { json, data } = await readRaw(st(d)); await writeRaw(st(d), JSON.stringify(json).replace('"dtype":"F32"', '"dtype":F32'), data); },
    code: "E_ST_HEADER_JSON", mentions: (d) => [st(d), "not valid JSON", /line 1, column \d+/],
  },
  {
    name: "header is not UTF-8",
    setup: async (d) => {
      const { json, data } = await readRaw(st(d));
      const b = Buffer.from(JSON.stringify(json));
      b[b.indexOf("F32") + 1] = 0xff;
      await writeRaw(st(d), b, data);
    },
    code: "E_ST_HEADER_JSON", mentions: (d) => [st(d), "UTF-8"],
  },
  {
    name: "header does not start with '{'",
    setup: async (d) => { const { json, data } = await readRaw(st(d)); await writeRaw(st(d), `[${JSON.stringify(json)}]`, data); },
    code: "E_ST_HEADER_START", mentions: (d) => [st(d)],
  },
  {
    name: "unknown dtype",
    setup: async (d) => editHeader(st(d), (j) => void (entry(j, "model.norm.weight").dtype = "F128")),
    code: "E_ST_DTYPE", mentions: (d) => [st(d), "tensor 'model.norm.weight'", '"F128"'],
  },
  {
    name: "negative dimension",
    setup: async (d) => editHeader(st(d), (j) => void (entry(j, EMB).shape = [-512, 64])),
    code: "E_ST_SHAPE", mentions: (d) => [st(d), `tensor '${EMB}'`, "[-512,64]", "not a non-negative integer"],
  },
  {
    name: "non-integer dimension",
    setup: async (d) => editHeader(st(d), (j) => void (entry(j, EMB).shape = [512.5, 64])),
    code: "E_ST_SHAPE", mentions: (d) => [st(d), `tensor '${EMB}'`, "512.5"],
  },
  {
    name: "element count past 2^53",
    setup: async (d) => editHeader(st(d), (j) => void (entry(j, EMB).shape = [2 ** 27, 2 ** 27])),
    code: "E_ST_SHAPE", mentions: (d) => [st(d), `tensor '${EMB}'`, "2^53"],
  },
  {
    name: "dtype × shape differs from the byte range",
    setup: async (d) => editHeader(st(d), (j) => void (entry(j, EMB).shape = [512, 63])),
    code: "E_ST_SIZE_MISMATCH", mentions: (d) => [st(d), `tensor '${EMB}'`, "129024 bytes", "131072"],
  },
  {
    name: "offsets end before they begin",
    setup: async (d) => editHeader(st(d), (j) => { const e = entry(j, EMB); e.data_offsets = [e.data_offsets[1], e.data_offsets[0]]; }),
    code: "E_ST_OFFSETS", mentions: (d) => [st(d), `tensor '${EMB}'`, "end before they begin"],
  },
  {
    name: "offsets overlap another tensor",
    setup: async (d) => editHeader(st(d), (j) => { const [a, b] = sameSizePair(j); entry(j, b).data_offsets = [...entry(j, a).data_offsets]; }),
    code: "E_ST_OFFSETS", mentions: (d) => [st(d), "overlap the previous tensor"],
  },
  {
    name: "offsets leave a gap",
    setup: async (d) => editHeader(st(d), (j, data) => {
      const e: Entry = entry(j, lastTensor(j));
      e.data_offsets = [e.data_offsets[0] + 4, e.data_offsets[1] + 4];
      return Buffer.concat([data, Buffer.alloc(4)]);
    }),
    code: "E_ST_OFFSETS", mentions: (d) => [st(d), "leave a gap"],
  },
  {
    name: "bytes after the last tensor",
    setup: async (d) => editHeader(st(d), (_j, data) => Buffer.concat([data, Buffer.alloc(16)])),
    code: "E_ST_OFFSETS", mentions: (d) => [st(d), "trailing bytes"],
  },
  {
    name: "truncated file (interrupted download)",
    setup: async (d) => { const b = await readFile(st(d)); await writeFile(st(d), b.subarray(0, b.length - 1000)); },
    code: "E_ST_TRUNCATED", mentions: (d) => [st(d), "truncated"],
  },
  {
    name: "no weights in the folder",
    setup: async (d) => unlink(st(d)),
    code: "E_IO", mentions: (d) => [d, "no .safetensors file"],
  },
  {
    name: "the same tensor in two files",
    setup: async (d) => copyFile(st(d), path.join(d, "model-copy.safetensors")),
    code: "E_DUPLICATE_TENSOR", mentions: (d) => [path.join(d, ST), "also stored in model-copy.safetensors"],
  },
];

const SH1 = "model-00001-of-00002.safetensors";
const SH2 = "model-00002-of-00002.safetensors";
const INDEX = "model.safetensors.index.json";

async function editIndex(d: string, edit: (wm: Record<string, unknown>) => void): Promise<void> {
  const wm = (JSON.parse(await readFile(path.join(d, INDEX), "utf8")) as { weight_map: Record<string, unknown> }).weight_map;
  edit(wm);
  await writeIndex(d, wm);
}

function firstIn(wm: Record<string, unknown>, shardFile: string): string {
  return Object.keys(wm).filter((k) => wm[k] === shardFile).sort()[0]!;
}

const INDEX_CASES: Case[] = [
  {
    name: "index names a missing shard",
    setup: async (d) => { await shard(d); await unlink(path.join(d, SH2)); },
    code: "E_SHARD_MISSING", mentions: (d) => [path.join(d, INDEX), `shard '${SH2}' does not exist`, "tensor '"],
  },
  {
    name: "index path with ..",
    setup: async (d) => { await shard(d); await editIndex(d, (wm) => void (wm[firstIn(wm, SH2)] = `../${path.basename(d)}/${SH2}`)); },
    code: "E_SHARD_PATH", mentions: (d) => [path.join(d, INDEX), "outside the model folder"],
  },
  {
    name: "index with an absolute path",
    setup: async (d) => { await shard(d); await editIndex(d, (wm) => void (wm[firstIn(wm, SH2)] = path.join(d, SH2))); },
    code: "E_SHARD_PATH", mentions: (d) => [path.join(d, INDEX), "outside the model folder"],
  },
  {
    name: "shard behind a symlink leaving the folder",
    setup: async (d) => {
      await shard(d);
      const outside = path.join(root, `outside-${path.basename(d)}`);
      await mkdir(outside, { recursive: true });
      await rename(path.join(d, SH2), path.join(outside, SH2));
      await symlink(path.join(outside, SH2), path.join(d, SH2));
    },
    code: "E_SHARD_PATH", mentions: (d) => [path.join(d, INDEX), "through a link", SH2],
  },
  {
    name: "tensor listed in the index but absent from its shard",
    setup: async (d) => { await shard(d); await editIndex(d, (wm) => void (wm["model.layers.9.mlp.up_proj.weight"] = SH1)); },
    code: "E_INDEX_MISMATCH", mentions: (d) => [path.join(d, SH1), "tensor 'model.layers.9.mlp.up_proj.weight'", "listed in"],
  },
  {
    name: "tensor in a shard but not in the index",
    setup: async (d) => { await shard(d); await editIndex(d, (wm) => void delete wm["model.norm.weight"]); },
    code: "E_INDEX_MISMATCH", mentions: (d) => [path.join(d, SH2), "tensor 'model.norm.weight'", "not listed"],
  },
  {
    name: "index places a tensor in the wrong shard",
    setup: async (d) => { await shard(d); await editIndex(d, (wm) => void (wm["model.norm.weight"] = SH1)); },
    code: "E_INDEX_MISMATCH", mentions: (d) => [path.join(d, SH2), "tensor 'model.norm.weight'", `places it in ${SH1}`],
  },
  {
    name: "index is not JSON",
    setup: async (d) => { await shard(d); await writeFile(path.join(d, INDEX), '{"weight_map": {"a": "b",}}'); },
    code: "E_INDEX", mentions: (d) => [path.join(d, INDEX), "not valid JSON", /line 1, column 26/],
  },
  {
    name: "index without weight_map",
    setup: async (d) => { await shard(d); await writeFile(path.join(d, INDEX), '{"metadata": {}}'); },
    code: "E_INDEX", mentions: (d) => [path.join(d, INDEX), "weight_map"],
  },
  {
    name: "empty index",
    setup: async (d) => { await shard(d); await writeFile(path.join(d, INDEX), ""); },
    code: "E_INDEX", mentions: (d) => [path.join(d, INDEX), "empty"],
  },
];

const cfg = (d: string): string => path.join(d, "config.json");

const CONFIG_CASES: Case[] = [
  { name: "config.json missing", setup: async (d) => unlink(cfg(d)), code: "E_CONFIG", mentions: (d) => [cfg(d), "missing"] },
  { name: "config.json not JSON", setup: async (d) => writeFile(cfg(d), "{ nope"), code: "E_CONFIG", mentions: (d) => [cfg(d), "not a valid JSON object"] },
  { name: "architecture not supported", setup: async (d) => editConfig(d, (c) => { c["architectures"] = ["GPTBigCodeForCausalLM"]; c["model_type"] = "gpt_bigcode"; }), code: "E_UNSUPPORTED_ARCH", mentions: (d) => [cfg(d), "GPTBigCodeForCausalLM"] },
  { name: "hidden_size is a string", setup: async (d) => editConfig(d, (c) => void (c["hidden_size"] = "64")), code: "E_CONFIG", mentions: (d) => [cfg(d), "hidden_size"] },
  { name: "num_hidden_layers not an integer", setup: async (d) => editConfig(d, (c) => void (c["num_hidden_layers"] = 2.5)), code: "E_CONFIG", mentions: (d) => [cfg(d), "num_hidden_layers is 2.5"] },
  { name: "vocab_size vs embedding rows", setup: async (d) => editConfig(d, (c) => void (c["vocab_size"] = 600)), code: "E_CONFIG", mentions: (d) => [cfg(d), `tensor '${EMB}'`, "vocab_size is 600", "512 rows"] },
  { name: "hidden_size vs embedding width", setup: async (d) => editConfig(d, (c) => { c["hidden_size"] = 128; }), code: "E_CONFIG", mentions: (d) => [cfg(d), `tensor '${EMB}'`, "hidden_size is 128"] },
  { name: "num_key_value_heads vs k_proj rows", setup: async (d) => editConfig(d, (c) => void (c["num_key_value_heads"] = 8)), code: "E_CONFIG", mentions: (d) => [cfg(d), "tensor 'model.layers.0.self_attn.k_proj.weight'", "[32, 64]", "[64, 64]", "num_key_value_heads 8"] },
  { name: "num_attention_heads vs q_proj rows (head_dim given)", setup: async (d) => editConfig(d, (c) => { c["num_attention_heads"] = 4; c["num_key_value_heads"] = 2; c["head_dim"] = 8; }), code: "E_CONFIG", mentions: (d) => [cfg(d), "tensor 'model.layers.0.self_attn.q_proj.weight'", "[32, 64]", "num_attention_heads 4"] },
  { name: "heads not a multiple of kv heads", setup: async (d) => editConfig(d, (c) => void (c["num_attention_heads"] = 6)), code: "E_CONFIG", mentions: (d) => [cfg(d), "num_attention_heads 6 is not a multiple of num_key_value_heads 4"] },
  { name: "hidden_size not divisible by heads", setup: async (d) => editConfig(d, (c) => { c["num_attention_heads"] = 12; c["num_key_value_heads"] = 12; }), code: "E_CONFIG", mentions: (d) => [cfg(d), "not divisible by num_attention_heads 12"] },
  { name: "intermediate_size vs MLP shapes", setup: async (d) => editConfig(d, (c) => void (c["intermediate_size"] = 100)), code: "E_CONFIG", mentions: (d) => [cfg(d), "tensor 'model.layers.0.mlp.", "intermediate_size"] },
  { name: "more layers in config than in the weights", setup: async (d) => editConfig(d, (c) => void (c["num_hidden_layers"] = 6)), code: "E_MISSING_TENSOR", mentions: (d) => [d, "tensor 'model.layers.5.self_attn.q_proj.weight'", "num_hidden_layers is 6"] },
  { name: "fewer layers in config than in the weights", setup: async (d) => editConfig(d, (c) => void (c["num_hidden_layers"] = 4)), code: "E_CONFIG", mentions: (d) => [cfg(d), "tensor 'model.layers.4.", "layer 4 but num_hidden_layers is 4"] },
  { name: "a required tensor is missing", setup: async (d) => rewriteTensors(d, (ts) => ts.filter((t) => t.name !== "model.layers.3.mlp.down_proj.weight")), code: "E_MISSING_TENSOR", mentions: (d) => [d, "tensor 'model.layers.3.mlp.down_proj.weight'"] },
  { name: "a tensor no rule maps", setup: async (d) => rewriteTensors(d, (ts) => [...ts, { name: "model.layers.0.mystery.weight", dtype: "F32", shape: [2], data: new Uint8Array(8) }]), code: "E_UNEXPECTED_TENSOR", mentions: (d) => [d, "tensor 'model.layers.0.mystery.weight'"] },
  { name: "a tensor stored as integers", setup: async (d) => rewriteTensors(d, (ts) => ts.map((t) => (t.name === "model.norm.weight" ? { ...t, dtype: "I32" } : t))), code: "E_UNSUPPORTED_QUANT", mentions: (d) => [st(d), "tensor 'model.norm.weight'", "I32"] },
];

const tok = (d: string): string => path.join(d, "tokenizer.model");

const TOKENIZER_CASES: Case[] = [
  { name: "tokenizer files missing", setup: async (d) => unlink(tok(d)), code: "E_TOKENIZER", mentions: (d) => [d, "tokenizer.model"] },
  { name: "tokenizer.model truncated", setup: async (d) => { const b = await readFile(tok(d)); await writeFile(tok(d), b.subarray(0, b.length >> 1)); }, code: "E_TOKENIZER", mentions: (d) => [tok(d)] },
  { name: "tokenizer_config.json not JSON", setup: async (d) => writeFile(path.join(d, "tokenizer_config.json"), "{ x"), code: "E_TOKENIZER", mentions: (d) => [path.join(d, "tokenizer_config.json"), /line 1, column 3/] },
  { name: "tokenizer_config.json not an object", setup: async (d) => writeFile(path.join(d, "tokenizer_config.json"), "[]"), code: "E_TOKENIZER", mentions: (d) => [path.join(d, "tokenizer_config.json")] },
  { name: "tokenizer.model is garbage", setup: async (d) => writeFile(tok(d), Buffer.from("\u0000\u00ff garbage ".repeat(40), "latin1")), code: "E_TOKENIZER", mentions: (d) => [tok(d)] },
  {
    name: "tokenizer has fewer tokens than embedding rows and config gives no vocab_size",
    setup: async (d) => {
      await rewriteTensors(d, (ts) => ts.map((t) => (t.name === EMB ? { ...t, shape: [520, 64], data: Buffer.concat([t.data, Buffer.alloc(8 * 64 * 4)]) } : t)));
      await editConfig(d, (c) => void delete c["vocab_size"]);
    },
    code: "E_TOKENIZER", mentions: (d) => [d, "512 tokens", "520 rows", "set vocab_size to 520"],
  },
];

for (const [group, cases] of [["safetensors", SAFETENSORS_CASES], ["sharded index", INDEX_CASES], ["config vs weights", CONFIG_CASES], ["tokenizer", TOKENIZER_CASES]] as const) {
  describe(group, () => {
    for (const c of cases) {
      test(`${c.name} → ${c.code}`, async () => {
        const dir = await corrupt(c.setup);
        await expectError(dir, c.code, c.mentions(dir));
      });
    }
  });
}

test("more tokenizer tokens than embedding rows → E_TOKENIZER (validateVocab)", async () => {
  // The SentencePiece loader follows llama.cpp and drops pieces past vocab_size with a warning, and
  // the BPE loader refuses them itself; validateVocab is the backstop for any vocabulary handed over.
  const dir = await corrupt((d) => rewriteTensors(d, (ts) => ts.map((t) => (t.name === EMB ? { ...t, shape: [500, 64], data: t.data.slice(0, 500 * 64 * 4) } : t))));
  const src = await SourceCheckpoint.open(dir);
  try {
    const vocab: GGUFVocab = { model: "llama", tokens: Array.from({ length: 512 }, (_, i) => `t${i}`), tokenTypes: new Int32Array(512), special: {} };
    assert.throws(() => validateVocab(vocab, { src, configFile: cfg(dir), tokenizerDir: dir }), (e: unknown) => {
      assert.ok(e instanceof GgufyError && e.code === "E_TOKENIZER", String(e));
      assert.match(e.message, /512 tokens .* only 500 rows/);
      assert.ok(e.message.includes(dir));
      return true;
    });
    validateVocab({ ...vocab, tokens: vocab.tokens.slice(0, 500) }, { src, configFile: cfg(dir), tokenizerDir: dir });
  } finally {
    await src.close();
  }
});

test("a FIFO in place of the weights is refused, not waited on", async (t) => {
  const dir = await corrupt(async (d) => {
    await unlink(st(d));
    execFileSync("mkfifo", [st(d)]);
  }).catch(() => undefined);
  if (!dir) return t.skip("mkfifo unavailable");
  await expectError(dir, "E_IO", [st(dir), "not a regular file"]);
});

test("a Hugging Face cache snapshot (links into ../../blobs) converts", async () => {
  const repo = path.join(root, "hub", "models--tiny--stories");
  const snap = path.join(repo, "snapshots", "abc123");
  const src = await copyStories(root, "for-hub");
  await shard(src);
  await mkdir(path.join(repo, "blobs"), { recursive: true });
  await mkdir(snap, { recursive: true });
  for (const f of ["config.json", "tokenizer.model", "tokenizer_config.json", INDEX, SH1, SH2]) {
    await rename(path.join(src, f), path.join(repo, "blobs", `sha-${f}`));
    await symlink(`../../blobs/sha-${f}`, path.join(snap, f));
  }
  const out = path.join(root, "hub-out.gguf");
  const r = await convert({ input: snap, outfile: out, threads: 1 });
  assert.equal(r.files[0]!.path, out);
  await rm(out);
});

describe("non-finite values", () => {
  const plant = (value: number) => async (d: string) =>
    rewriteTensors(d, (ts) => {
      const t = ts.find((x) => x.name === "model.layers.2.mlp.up_proj.weight")!;
      f32View(t)[1234] = value;
      f32View(t)[5000] = -Infinity;
    });

  test("NaN → E_NONFINITE naming the tensor and the first flat index", async () => {
    const dir = await corrupt(plant(NaN));
    await expectError(dir, "E_NONFINITE", ["tensor 'blk.2.ffn_up.weight'", "NaN", "flat index 1234", "model.layers.2.mlp.up_proj.weight", "--allow-nonfinite"]);
  });

  test("Inf in a permuted Q tensor → E_NONFINITE", async () => {
    const dir = await corrupt((d) => rewriteTensors(d, (ts) => void (f32View(ts.find((x) => x.name === "model.layers.0.self_attn.q_proj.weight")!)[0] = Infinity)));
    await expectError(dir, "E_NONFINITE", ["tensor 'blk.0.attn_q.weight'", "Infinity", "model.layers.0.self_attn.q_proj.weight"]);
  });

  test("--allow-nonfinite passes them through with a warning count", async () => {
    const dir = await corrupt(plant(NaN));
    const warnings: string[] = [];
    const r = await convert({ input: dir, outfile: path.join(dir, "out.gguf"), threads: 1, outtype: "f32", allowNonfinite: true, onWarning: (m) => warnings.push(m) });
    assert.equal(r.nonFinite, 2);
    assert.deepEqual(warnings, ["2 non-finite value(s) were passed through (--allow-nonfinite)"]);
    assert.deepEqual((await leftovers(dir)).map((f) => path.basename(f)), ["out.gguf"]);
  });
});
