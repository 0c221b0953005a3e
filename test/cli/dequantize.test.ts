/**
 * `ggufy dequantize`: stories260K quantized by the fixture encoder in every bitsandbytes layout, written
 * back as a plain checkpoint, must convert to exactly the GGUF (every tensor's bytes) that the bnb
 * checkpoint converts to; the written files pass ggufy's validation and a minimal safetensors parser
 * written here (independent of src/); the index lists every tensor once; config.json loses only
 * quantization_config; side files are copied; bad input and interrupted runs leave nothing behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { convert, dequantize, openCheckpoint, readGguf, readGgufTensorBytes, GgufyError, SourceCheckpoint, DECODERS } from "../../src/index.js";
import { SafetensorsCheckpoint, writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { main } from "../../src/cli/main.js";
import type { FileOpener } from "../../src/convert/output.js";
import { testData } from "../../fixtures/paths.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { quantizeCheckpointToBnb, bnbModuleTensors, type QuantizeCheckpointOptions } from "../../fixtures/bnb.js";

const SRC = testData("tinyllamas-stories260K", "derived-hf-llama");
const PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
const LINEAR = Array.from({ length: 5 }, (_, l) => PROJ.map((p) => `model.layers.${l}.${p}.weight`)).flat().sort();

let tmp: string;
before(async () => {
  tmp = await scratchDir("ggufy-dequantize-");
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------------------
// an independent safetensors reader (nothing from src/)
// ------------------------------------------------------------------------------------------------------------

const SIZE: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };
/** the safetensors crate's Dtype order; files are written sorted by it (descending), then by name */
const RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"];

interface MiniTensor {
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** Parse a whole safetensors file; throws on anything the format forbids. */
function parseSafetensors(buf: Buffer, label: string): { metadata: unknown; tensors: Map<string, MiniTensor>; order: string[] } {
  assert.ok(buf.length >= 8, `${label}: shorter than the length prefix`);
  const n = Number(buf.readBigUInt64LE(0));
  assert.ok(8 + n <= buf.length, `${label}: header runs past the end`);
  assert.equal(n % 8, 0, `${label}: header length ${n} not a multiple of 8`);
  const text = buf.subarray(8, 8 + n).toString("utf8");
  assert.equal(text[0], "{", `${label}: header starts with '{'`);
  assert.match(text, /^[^]*\} *$/, `${label}: header padded with spaces only`);
  // key order as written (JSON.parse keeps insertion order for non-index keys)
  const json = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const keys = Object.keys(json);
  const dupCheck = new Set<string>();
  for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)":\{"dtype"/g)) {
    assert.ok(!dupCheck.has(m[1]!), `${label}: ${m[1]} twice`);
    dupCheck.add(m[1]!);
  }
  const dataLen = buf.length - 8 - n;
  const tensors = new Map<string, MiniTensor>();
  const order: string[] = [];
  let cursor = 0;
  for (const k of keys) {
    if (k === "__metadata__") continue;
    const e = json[k]!;
    assert.ok(e.dtype in SIZE, `${label}: ${k} dtype ${e.dtype}`);
    assert.ok(Array.isArray(e.shape) && e.shape.every((d) => Number.isInteger(d) && d >= 0), `${label}: ${k} shape`);
    const [b, end] = e.data_offsets;
    assert.equal(b, cursor, `${label}: ${k} starts where the previous tensor ended`);
    assert.equal(end - b, e.shape.reduce((x, y) => x * y, 1) * SIZE[e.dtype]!, `${label}: ${k} size`);
    cursor = end;
    tensors.set(k, { dtype: e.dtype, shape: e.shape, data: buf.subarray(8 + n + b, 8 + n + end) });
    order.push(k);
  }
  assert.equal(cursor, dataLen, `${label}: data section fully used`);
  assert.equal(dupCheck.size, order.length, `${label}: every key counted once`);
  return { metadata: json["__metadata__"], tensors, order };
}

/** Check a written plain checkpoint folder with the independent reader; returns every tensor. */
async function checkFolder(dir: string): Promise<Map<string, MiniTensor & { shard: string }>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".safetensors")).sort();
  const all = new Map<string, MiniTensor & { shard: string }>();
  const n = files.length;
  if (n === 1) assert.deepEqual(files, ["model.safetensors"]);
  else files.forEach((f, i) => assert.equal(f, `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`));
  let total = 0;
  for (const f of files) {
    const st = parseSafetensors(await readFile(path.join(dir, f)), f);
    assert.deepEqual(st.metadata, { format: "pt" }, `${f}: __metadata__`);
    const sorted = [...st.order].sort((a, b) => RANK.indexOf(st.tensors.get(b)!.dtype) - RANK.indexOf(st.tensors.get(a)!.dtype) || (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(st.order, sorted, `${f}: safetensors' on-disk order`);
    for (const [k, t] of st.tensors) {
      assert.ok(!all.has(k), `${k} in two shards`);
      all.set(k, { ...t, shard: f });
      total += t.data.length;
    }
  }
  const indexPath = path.join(dir, "model.safetensors.index.json");
  if (n > 1) {
    const text = await readFile(indexPath, "utf8");
    const idx = JSON.parse(text) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    assert.equal(idx.metadata.total_size, total);
    const listed = [...text.matchAll(/^ {4}"((?:[^"\\]|\\.)*)": "/gm)].map((m) => JSON.parse(`"${m[1]}"`) as string);
    assert.equal(listed.length, all.size, "the index lists every tensor once");
    assert.equal(new Set(listed).size, listed.length, "no tensor twice in the index");
    assert.deepEqual(listed, [...listed].sort(), "weight_map sorted (sort_keys=True)");
    for (const [k, t] of all) assert.equal(idx.weight_map[k], t.shard, `${k} indexed in its shard`);
    assert.ok(text.endsWith("}\n") && text.startsWith('{\n  "metadata": {\n    "total_size": '), "json.dumps(indent=2, sort_keys=True) + newline");
  } else {
    await assert.rejects(stat(indexPath), "one shard: no index (save_pretrained)");
  }
  // ggufy's own validation
  const c = await SafetensorsCheckpoint.open(dir);
  try {
    assert.deepEqual([...c.tensors.keys()].sort(), [...all.keys()].sort());
  } finally {
    await c.close();
  }
  return all;
}

async function leftovers(parent: string): Promise<string[]> {
  return (await readdir(parent)).filter((n) => n.includes(".ggufy-"));
}

// ------------------------------------------------------------------------------------------------------------
// GGUF identity over every bnb layout
// ------------------------------------------------------------------------------------------------------------

async function ggufTensors(file: string): Promise<Map<string, { ne: number[]; type: number; bytes: Uint8Array }>> {
  const g = await readGguf(file);
  const out = new Map<string, { ne: number[]; type: number; bytes: Uint8Array }>();
  for (const t of g.tensors) out.set(t.name, { ne: t.ne, type: t.type, bytes: await readGgufTensorBytes(g, t) });
  return out;
}

interface Variant {
  label: string;
  opts: QuantizeCheckpointOptions;
  /** dtype of the restored weights and of the plain tensors */
  dtype: "F32" | "BF16";
  maxShardSize?: string;
}
const VARIANTS: Variant[] = [
  { label: "nf4", opts: { method: "nf4" }, dtype: "F32" },
  { label: "nf4-dq", opts: { method: "nf4", doubleQuant: true, computeDtype: "bfloat16" }, dtype: "F32", maxShardSize: "300KB" },
  { label: "fp4", opts: { method: "fp4" }, dtype: "F32" },
  { label: "fp4-dq", opts: { method: "fp4", doubleQuant: true }, dtype: "F32", maxShardSize: "100KB" },
  { label: "nf4-bf16-storage", opts: { method: "nf4", quantStorage: "bfloat16", torchDtype: "bfloat16", blocksize: 128 }, dtype: "BF16", maxShardSize: "200KB" },
  { label: "nf4-dq-bf16", opts: { method: "nf4", doubleQuant: true, torchDtype: "bfloat16" }, dtype: "BF16" },
  { label: "int8", opts: { method: "int8" }, dtype: "F32", maxShardSize: "250KB" },
  { label: "int8-no-weight-format", opts: { method: "int8", weightFormat: false }, dtype: "F32" },
];

for (const v of VARIANTS) {
  test(`${v.label}: dequantize, then convert --outtype f32 = convert of the bnb checkpoint (every tensor's bytes)`, async () => {
    const root = path.join(tmp, v.label);
    const bnb = path.join(root, "bnb");
    const plain = path.join(root, "plain");
    const quantized = await quantizeCheckpointToBnb(SRC, bnb, v.opts);
    assert.deepEqual([...quantized].sort(), LINEAR);

    const r = await dequantize({ input: bnb, outdir: plain, ...(v.maxShardSize ? { maxShardSize: v.maxShardSize } : {}) });
    assert.equal(r.restored, LINEAR.length);
    assert.deepEqual(r.restoredDtypes, [v.dtype]);
    assert.equal(r.outdir, path.resolve(plain));
    assert.deepEqual(await leftovers(root), []);
    if (v.maxShardSize) assert.ok(r.shards.length > 1, `${v.maxShardSize} gives several shards`);

    // the files: own parser, ggufy's validation, index
    const written = await checkFolder(plain);
    const src = await SafetensorsCheckpoint.open(SRC);
    const q = await SafetensorsCheckpoint.open(bnb);
    try {
      assert.deepEqual([...written.keys()].sort(), [...src.tensors.keys()].sort(), "the source's key set, no auxiliary key");
      for (const [name, t] of written) {
        assert.equal(t.dtype, v.dtype, name);
        assert.deepEqual(t.shape, src.get(name)!.shape, `${name} logical shape`);
        if (!LINEAR.includes(name)) assert.deepEqual(new Uint8Array(t.data), await q.read(name), `${name} copied byte for byte`);
      }
    } finally {
      await src.close();
      await q.close();
    }

    // config.json: the bnb text minus the quantization_config member, formatting kept
    const qText = await readFile(path.join(bnb, "config.json"), "utf8");
    const pText = await readFile(path.join(plain, "config.json"), "utf8");
    const expected = qText.replace(/,\n {2}"quantization_config": \{[^]*?\n {2}\}/, "");
    assert.notEqual(expected, qText);
    assert.equal(pText, expected);
    assert.match(pText, /"rope_theta": 10000\.0,/);
    for (const f of ["tokenizer.model", "tokenizer_config.json"]) assert.deepEqual(await readFile(path.join(plain, f)), await readFile(path.join(bnb, f)), f);
    assert.deepEqual((await readdir(plain)).filter((f) => !f.includes(".safetensors")).sort(), ["config.json", "tokenizer.model", "tokenizer_config.json"]);

    // the GGUFs
    const g1 = path.join(root, "from-bnb.gguf");
    const g2 = path.join(root, "from-plain.gguf");
    await convert({ input: bnb, outfile: g1, outtype: "f32", threads: 1 });
    await convert({ input: plain, outfile: g2, outtype: "f32", threads: 1 });
    const a = await ggufTensors(g1);
    const b = await ggufTensors(g2);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    assert.ok(a.size > LINEAR.length);
    for (const [name, ta] of a) {
      const tb = b.get(name)!;
      assert.deepEqual([tb.ne, tb.type], [ta.ne, ta.type], name);
      assert.ok(Buffer.from(ta.bytes).equals(Buffer.from(tb.bytes)), `${name}: bytes differ`);
    }
    await rm(root, { recursive: true, force: true });
  });
}

// ------------------------------------------------------------------------------------------------------------
// reader API
// ------------------------------------------------------------------------------------------------------------

test("openCheckpoint: decoded tensors in the converter's order, row ranges equal the converter's source", async () => {
  const bnb = path.join(tmp, "reader-bnb");
  await quantizeCheckpointToBnb(SRC, bnb, { method: "nf4", doubleQuant: true, torchDtype: "bfloat16" });
  const ckpt = await openCheckpoint(bnb);
  const sc = await SourceCheckpoint.open(bnb, DECODERS);
  try {
    assert.deepEqual(ckpt.names(), sc.names());
    assert.deepEqual(ckpt.quantized, LINEAR);
    assert.ok(ckpt.auxKeys.every((k) => /\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\.bitsandbytes__nf4)$/.test(k)));
    assert.equal(ckpt.auxKeys.length, LINEAR.length * 5);
    const seen: string[] = [];
    for await (const t of ckpt) {
      seen.push(t.name);
      const s = sc.get(t.name)!;
      assert.deepEqual([t.shape, t.dtype, t.rowLength, t.rowCount, t.encoding, t.float], [s.shape, s.dtype, s.rowLength, s.rows, s.encoding, true], t.name);
      assert.equal(t.quantized, LINEAR.includes(t.name));
      const r0 = Math.min(3, t.rowCount - 1);
      const n = Math.min(5, t.rowCount - r0);
      assert.deepEqual(await t.rows(r0, n), await sc.readRows(t.name, r0, n), t.name);
      assert.deepEqual(await t.rows(0, t.rowCount), await sc.readAll(t.name), t.name);
      if (t.quantized) await assert.rejects(t.bytes(), (e: unknown) => e instanceof GgufyError && e.code === "E_TYPE");
      await assert.rejects(t.rows(t.rowCount, 1), RangeError);
    }
    assert.deepEqual(seen, ckpt.names());
    const down = ckpt.get("model.layers.0.mlp.down_proj.weight")!;
    assert.deepEqual([down.shape, down.dtype, down.rowCount, down.rowLength, down.quantized], [[64, 172], "bf16", 64, 172, true]);
  } finally {
    await ckpt.close();
    await sc.close();
  }
});

// ------------------------------------------------------------------------------------------------------------
// dtypes, non-float tensors, chunking
// ------------------------------------------------------------------------------------------------------------

/** f32 → bf16 bits, round to nearest even (NaN quieted), written here independently of src/formats/half.ts */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  const lower = u & 0xffff;
  let hi = u >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && hi & 1)) hi++;
  return hi & 0xffff;
}

test("--dtype bf16 casts restored and plain floats (RNE), keeps integer tensors; config torch_dtype follows", async () => {
  const root = path.join(tmp, "mixed");
  const bnb = path.join(root, "bnb");
  await mkdir(bnb, { recursive: true });
  const w = new Float32Array(48 * 64).map((_, i) => Math.sin(i * 0.37) * 0.05);
  const norm = new Float32Array(64).map((_, i) => 1 + i / 1000 + 1e-7);
  const pos = new BigInt64Array(100).map((_, i) => BigInt(i));
  const tensors: StTensor[] = [
    ...bnbModuleTensors("model.layers.0.mlp.up_proj.weight", w, [48, 64], { method: "nf4", doubleQuant: true, dtype: "float32" }),
    { name: "model.norm.weight", dtype: "F32", shape: [64], data: new Uint8Array(norm.buffer) },
    { name: "model.position_ids", dtype: "I64", shape: [1, 100], data: new Uint8Array(pos.buffer) },
    { name: "model.scalar", dtype: "F32", shape: [], data: new Uint8Array(new Float32Array([0.1]).buffer) },
  ];
  await writeSafetensors(path.join(bnb, "model.safetensors"), tensors);
  const cfgText = '{\n  "architectures": ["LlamaForCausalLM"],\n  "model_type": "llama",\n  "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true},\n  "rms_norm_eps": 1e-05,\n  "torch_dtype": "float32"\n}\n';
  await writeFile(path.join(bnb, "config.json"), cfgText);
  await writeFile(path.join(bnb, "generation_config.json"), '{"do_sample": false}\n');
  await writeFile(path.join(bnb, "pytorch_model.bin"), "stale weights");
  await writeFile(path.join(bnb, ".hidden"), "x");
  await mkdir(path.join(bnb, "original"));

  // auto: restored as f32 (torch_dtype), plain tensors untouched
  const auto = path.join(root, "auto");
  await dequantize({ input: bnb, outdir: auto });
  const a = await checkFolder(auto);
  assert.deepEqual([...a.keys()].sort(), ["model.layers.0.mlp.up_proj.weight", "model.norm.weight", "model.position_ids", "model.scalar"]);
  assert.equal(a.get("model.layers.0.mlp.up_proj.weight")!.dtype, "F32");
  assert.deepEqual(a.get("model.position_ids")!, { dtype: "I64", shape: [1, 100], data: a.get("model.position_ids")!.data, shard: "model.safetensors" });
  assert.ok(a.get("model.position_ids")!.data.equals(Buffer.from(pos.buffer)));
  assert.deepEqual(a.get("model.scalar")!.shape, []);
  assert.deepEqual((await readdir(auto)).sort(), ["config.json", "generation_config.json", "model.safetensors"]);
  assert.equal(await readFile(path.join(auto, "config.json"), "utf8"), '{\n  "architectures": ["LlamaForCausalLM"],\n  "model_type": "llama",\n  "rms_norm_eps": 1e-05,\n  "torch_dtype": "float32"\n}\n');

  // bf16: every float cast with round-to-nearest-even; I64 untouched
  const b16 = path.join(root, "bf16");
  await dequantize({ input: bnb, outdir: b16, dtype: "bf16", chunkElements: 100 });
  const b = await checkFolder(b16);
  const restored = new Float32Array(new Uint8Array(a.get("model.layers.0.mlp.up_proj.weight")!.data).slice().buffer);
  const check = (name: string, src: Float32Array): void => {
    const t = b.get(name)!;
    assert.equal(t.dtype, "BF16", name);
    const got = new Uint16Array(new Uint8Array(t.data).slice().buffer);
    assert.deepEqual([...got], [...src].map(bf16Bits), name);
  };
  check("model.layers.0.mlp.up_proj.weight", restored);
  check("model.norm.weight", norm);
  check("model.scalar", new Float32Array([0.1]));
  assert.ok(b.get("model.position_ids")!.data.equals(Buffer.from(pos.buffer)));
  assert.equal(b.get("model.position_ids")!.dtype, "I64");
  assert.equal(await readFile(path.join(b16, "config.json"), "utf8"), '{\n  "architectures": ["LlamaForCausalLM"],\n  "model_type": "llama",\n  "rms_norm_eps": 1e-05,\n  "torch_dtype": "bfloat16"\n}\n');

  // f16 from the bf16 checkpoint (a plain one): the bf16 values widened then rounded to f16
  const f16 = path.join(root, "f16");
  const warnings: string[] = [];
  await dequantize({ input: b16, outdir: f16, dtype: "f16", onWarning: (m) => warnings.push(m) });
  assert.equal(warnings.length, 1, "a plain checkpoint is only copied (with a warning)");
  const c = await checkFolder(f16);
  assert.equal(c.get("model.norm.weight")!.dtype, "F16");
  assert.equal(c.get("model.position_ids")!.dtype, "I64");
});

test("memory: a tensor is read and written in chunks of chunkElements, never whole", async () => {
  const bnb = path.join(tmp, "chunks-bnb");
  await quantizeCheckpointToBnb(SRC, bnb, { method: "int8" });
  const out = path.join(tmp, "chunks-out");
  const steps = new Map<string, number[]>();
  let last = 0;
  await dequantize({
    input: bnb,
    outdir: out,
    dtype: "f32",
    chunkElements: 1000,
    onProgress: (e) => {
      const s = steps.get(e.tensor) ?? [];
      s.push(e.bytesDone - last);
      steps.set(e.tensor, s);
      last = e.bytesDone;
    },
  });
  // down_proj [64, 172]: 5 rows (860 floats) per chunk → 13 chunks; embed_tokens (copied bytes) at most 16 MiB per read
  const down = steps.get("model.layers.0.mlp.down_proj.weight")!;
  assert.equal(down.length, Math.ceil(64 / 5));
  assert.ok(down.every((n) => n <= 1000 * 4));
  for (const [name, s] of steps) assert.ok(s.every((n) => n <= 16 << 20), name);
  await rm(out, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------------------
// CLI, errors, nothing left behind
// ------------------------------------------------------------------------------------------------------------

function sink(tty = false): NodeJS.WriteStream & { text: () => string } {
  let buf = "";
  const w = new Writable({
    write(chunk, _enc, cb) {
      buf += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  (w as { isTTY?: boolean }).isTTY = tty;
  (w as { columns?: number }).columns = 200;
  w.text = () => buf;
  return w;
}

async function cli(args: string[], tty = false): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = sink();
  const stderr = sink(tty);
  const code = await main(args, { stdout, stderr });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

function oneErrorLine(stderr: string, code: string): void {
  const lines = stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0]!, new RegExp(`^ggufy: error: ${code}: `));
}

test("CLI: usage errors, existing output, --force, empty folder, same folder, bad input", async () => {
  const root = path.join(tmp, "cli");
  const bnb = path.join(root, "bnb");
  await quantizeCheckpointToBnb(SRC, bnb, { method: "fp4", doubleQuant: true });
  const out = path.join(root, "out");

  let r = await cli(["dequantize", bnb]);
  assert.equal(r.code, 64);
  oneErrorLine(r.stderr, "E_USAGE");
  r = await cli(["dequantize", bnb, "--outdir", out, "--dtype", "q4_0"]);
  assert.equal(r.code, 64);
  oneErrorLine(r.stderr, "E_USAGE");
  r = await cli(["dequantize", bnb, "--outdir", out, "--max-shard-size", "lots"]);
  assert.equal(r.code, 64);
  r = await cli(["dequantize", path.join(root, "nope"), "--outdir", out]);
  assert.equal(r.code, 2);
  oneErrorLine(r.stderr, "E_IO");
  r = await cli(["dequantize", bnb, "--outdir", bnb, "--force"]);
  assert.equal(r.code, 64, "never over the input");
  r = await cli(["dequantize", bnb, "--outdir", root, "--force"]);
  assert.equal(r.code, 64, "never over a folder holding the input");
  assert.ok((await readdir(bnb)).includes("model.safetensors"));
  assert.match((await cli(["--help"])).stdout, /ggufy dequantize <bnb-model-dir> --outdir DIR/);

  // dry run: nothing written
  r = await cli(["dequantize", bnb, "--outdir", out, "--dry-run", "--json", "--max-shard-size", "0.5MB"]);
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { shards: { file: string; tensors: { name: string; mode: string }[] }[]; restored: string[]; index: boolean };
  assert.equal(plan.restored.length, LINEAR.length);
  assert.ok(plan.shards.length > 1 && plan.index);
  await assert.rejects(stat(out));

  // a real run on a "TTY": progress drawn and cleared, summary
  r = await cli(["dequantize", bnb, "--outdir", out], true);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*out \(47 tensors in 1 shard\(s\)/);
  assert.match(r.stderr, /\r.*%.*\r\x1b\[K/s);
  assert.match(r.stderr, /35 bitsandbytes module\(s\) restored as F32, 175 auxiliary key\(s\) dropped/);
  await checkFolder(out);

  // exists → refused, untouched; --force replaces
  await writeFile(path.join(out, "marker"), "old");
  r = await cli(["dequantize", bnb, "--outdir", out, "--quiet"]);
  assert.equal(r.code, 2);
  oneErrorLine(r.stderr, "E_OUTPUT_EXISTS");
  assert.ok((await readdir(out)).includes("marker"));
  r = await cli(["dequantize", bnb, "--outdir", out, "--force", "--quiet", "--dtype", "bf16"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, "");
  assert.ok(!(await readdir(out)).includes("marker"));
  assert.equal((await checkFolder(out)).get(LINEAR[0]!)!.dtype, "BF16");

  // an empty existing folder is fine; a missing parent is created
  const empty = path.join(root, "empty");
  await mkdir(empty);
  assert.equal((await cli(["dequantize", bnb, "--outdir", empty, "--quiet"])).code, 0);
  assert.equal((await cli(["dequantize", bnb, "--outdir", path.join(root, "a", "b"), "--quiet"])).code, 0);
  await checkFolder(path.join(root, "a", "b"));

  // bad input: the converter's errors, one line, nothing left behind
  const bad = path.join(root, "bad");
  await mkdir(bad);
  for (const f of await readdir(bnb)) await copyFile(path.join(bnb, f), path.join(bad, f));
  const cfg = JSON.parse(await readFile(path.join(bnb, "config.json"), "utf8")) as Record<string, unknown>;
  await writeFile(path.join(bad, "config.json"), JSON.stringify({ ...cfg, quantization_config: { quant_method: "gptq" } }));
  r = await cli(["dequantize", bad, "--outdir", path.join(root, "bad-out")]);
  assert.equal(r.code, 2);
  oneErrorLine(r.stderr, "E_UNSUPPORTED_QUANT");
  await rm(path.join(bad, "config.json"));
  r = await cli(["dequantize", bad, "--outdir", path.join(root, "bad-out")]);
  oneErrorLine(r.stderr, "E_CONFIG");
  await writeFile(path.join(bad, "config.json"), JSON.stringify(cfg));
  const st = await readFile(path.join(bad, "model.safetensors"));
  await writeFile(path.join(bad, "model.safetensors"), st.subarray(0, st.length - 100));
  r = await cli(["dequantize", bad, "--outdir", path.join(root, "bad-out")]);
  assert.equal(r.code, 2);
  oneErrorLine(r.stderr, "E_ST_TRUNCATED");
  await assert.rejects(stat(path.join(root, "bad-out")));
  assert.deepEqual(await leftovers(root), []);
});

test("abort, full disk, no space: the output folder never appears and no temp folder is left", async () => {
  const root = path.join(tmp, "abort");
  const bnb = path.join(root, "bnb");
  await quantizeCheckpointToBnb(SRC, bnb, { method: "nf4", doubleQuant: true });
  const out = path.join(root, "out");

  // SIGINT-like abort in the middle of a tensor
  const ac = new AbortController();
  let events = 0;
  await assert.rejects(
    dequantize({
      input: bnb,
      outdir: out,
      maxShardSize: "300KB",
      chunkElements: 500,
      signal: ac.signal,
      onProgress: () => {
        if (++events === 40) ac.abort();
      },
    }),
    (e: unknown) => e instanceof GgufyError && e.code === "E_INTERRUPTED" && e.exitCode === 130,
  );
  assert.ok(events >= 40);
  await assert.rejects(stat(out));
  assert.deepEqual(await leftovers(root), []);

  // the disk fills up after 200 kB of the second shard
  let calls = 0;
  const opener: FileOpener = async (p) => {
    const { open } = await import("node:fs/promises");
    const fh = await open(p, "w");
    const nth = ++calls;
    let n = 0;
    return {
      write: (async (buf: Uint8Array, off = 0, len = buf.length - off) => {
        if (nth === 2 && n + len > 200_000) throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
        n += len;
        return fh.write(buf, off, len);
      }) as never,
      close: () => fh.close(),
      sync: () => fh.sync(),
    };
  };
  await assert.rejects(
    dequantize({ input: bnb, outdir: out, maxShardSize: "300KB", opener, chunkElements: 2000 }),
    (e: unknown) => e instanceof GgufyError && e.code === "E_WRITE" && /disk is full/.test(e.message),
  );
  assert.equal(calls, 2);
  await assert.rejects(stat(out));
  assert.deepEqual(await leftovers(root), []);

  // not enough free space: refused before writing
  await assert.rejects(
    dequantize({ input: bnb, outdir: out, freeSpace: async () => 500_000 }),
    (e: unknown) => e instanceof GgufyError && e.code === "E_DISK_SPACE",
  );
  await assert.rejects(stat(out));
  assert.deepEqual(await leftovers(root), []);

  // with --force over an existing folder: an aborted run keeps the old folder as it was
  await mkdir(out);
  await writeFile(path.join(out, "keep"), "me");
  const ac2 = new AbortController();
  await assert.rejects(dequantize({ input: bnb, outdir: out, force: true, chunkElements: 500, signal: ac2.signal, onProgress: () => ac2.abort() }), (e: unknown) => e instanceof GgufyError && e.code === "E_INTERRUPTED");
  assert.deepEqual(await readdir(out), ["keep"]);
  assert.deepEqual(await leftovers(root), []);
});
