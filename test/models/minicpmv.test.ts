/**
 * The MiniCPM-V 2.6 vision projector (mmproj) of the tiny bf16 checkpoint (fixtures/minicpmv.ts), written by
 * ggufy and read back with an independent reader (@huggingface/gguf for metadata and tensor infos, plain file
 * reads for the data; the source through a plain safetensors header parse). Checked against the
 * legacy image-encoder script and clip.cpp's loader (docs/minicpmv.md) scaled to the tiny dims: every key (name, GGUF value type, value), every
 * tensor (name, order, shape, type), and the data — copies equal the source rounded to F16, the resampler q/k/v
 * are the thirds of in_proj_*, proj.weight is proj transposed, pos_embed_k is the float32 sin/cos table.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf, GGUFValueType, type GGUFTypedMetadata } from "@huggingface/gguf";
import { plan, type Plan } from "../../src/convert/convert.js";
import { planFile, type PlannedFile } from "../../src/convert/plan.js";
import { runPlan, inlineEncoder } from "../../src/convert/pipeline.js";
import { SourceCheckpoint } from "../../src/convert/source.js";
import { f32BitsToF16, f16ToF32Bits } from "../../src/formats/half.js";
import { writeSafetensors } from "../../src/formats/safetensors/index.js";
import { buildMinicpmvMmproj, minicpmv } from "../../src/models/minicpmv.js";
import type { ConvertContext } from "../../src/models/types.js";
import {
  TINY_MINICPMV_DIMS,
  specMmprojKvs,
  specMmprojTensors,
  specMmprojType,
  specPosEmbedK,
  writeTinyMinicpmv,
  type MinicpmvDims,
  type SpecType,
} from "../../fixtures/minicpmv.js";

const D = TINY_MINICPMV_DIMS;
let tmp = "";
let dir = "";
let p: Plan;
const mmprojFiles = new Map<SpecType, string>();

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-minicpmv-"));
  dir = path.join(tmp, "tiny");
  await writeTinyMinicpmv(dir);
  p = await plan({ input: dir, outtype: "f16" });
  assert.equal(p.files.length, 2);
  for (const ty of ["f16", "f32", "q8_0"] as const) {
    const out = path.join(tmp, `mmproj-${ty}.gguf`);
    const f = planFile({ model: p.models[1]!, modelDir: dir, opts: { mmprojType: ty, mmprojOutfile: out }, baseName: "x" });
    await runPlan([f], { encoder: inlineEncoder });
    mmprojFiles.set(ty, out);
  }
});
after(async () => {
  await p?.source.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---- independent readers -------------------------------------------------------------------------------------

/** A safetensors folder's tensors as float32 (bf16 widened), through a plain header parse. */
async function readSource(d: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const index = JSON.parse(await readFile(path.join(d, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const file of new Set(Object.values(index.weight_map))) {
    const buf = await readFile(path.join(d, file));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [name, h] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      assert.equal(h.dtype, "BF16", name);
      const raw = buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
      const f = new Float32Array(raw.length / 2);
      const u = new Uint32Array(f.buffer);
      for (let i = 0; i < f.length; i++) u[i] = raw.readUInt16LE(2 * i) << 16;
      out.set(name, { shape: h.shape, data: f });
    }
  }
  return out;
}

interface ReadBack {
  meta: GGUFTypedMetadata;
  keys: string[];
  tensors: { name: string; ne: number[]; dtype: number; data: Uint8Array }[];
}

async function readBack(file: string): Promise<ReadBack> {
  const r = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const buf = await readFile(file);
  const keys = Object.keys(r.typedMetadata).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  const sizeOf = (dtype: number, ne: number[]): number => {
    const n = ne.reduce((a, b) => a * b, 1);
    if (dtype === 0) return 4 * n;
    if (dtype === 1) return 2 * n;
    if (dtype === 8) return (n / 32) * 34;
    throw new Error(`type ${dtype}`);
  };
  const tensors = r.tensorInfos.map((t) => {
    const ne = t.shape.map(Number);
    const off = Number(r.tensorDataOffset + t.offset);
    return { name: t.name, ne, dtype: t.dtype, data: buf.subarray(off, off + sizeOf(t.dtype, ne)) };
  });
  return { meta: r.typedMetadata, keys, tensors };
}

const GGML_ID: Record<SpecType, number> = { f32: 0, f16: 1, q8_0: 8 };

function asF32(t: { dtype: number; data: Uint8Array }): Float32Array {
  const { data } = t;
  if (t.dtype === 0) return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  assert.equal(t.dtype, 1);
  const h = new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const out = new Float32Array(h.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < h.length; i++) u[i] = f16ToF32Bits(h[i]!);
  return out;
}

/** The value a source float32 becomes in a tensor of this GGUF type (F16: RNE; F32: itself). */
function stored(x: number, dtype: number): number {
  if (dtype === 0) return x;
  const f = new Float32Array([x]);
  const b = f32BitsToF16(new Uint32Array(f.buffer)[0]!);
  return new Float32Array(new Uint32Array([f16ToF32Bits(b)]).buffer)[0]!;
}

type Source = Map<string, { shape: number[]; data: Float32Array }>;

/** The source values of a mapped mmproj tensor, in GGUF element order (before rounding to the output type). */
function sourceValues(s: ReturnType<typeof specMmprojTensors>[number], src: Source): Float32Array {
  const from = src.get(s.source!)!;
  if (s.how === "copy") return from.data;
  if (s.how === "transpose") {
    const [a, b] = from.shape as [number, number];
    // GGUF row j (ne[0] = a elements) = column j of the source [a, b]
    const out = new Float32Array(a * b);
    for (let j = 0; j < b; j++) for (let i = 0; i < a; i++) out[j * a + i] = from.data[i * b + j]!;
    return out;
  }
  const k = Number(s.how.slice(5));
  const n = from.data.length / 3;
  return from.data.slice(k * n, (k + 1) * n);
}

// ---- tests ---------------------------------------------------------------------------------------------------

test("both files are planned: qwen2 LLM (27 tensors) and clip mmproj (55 tensors)", () => {
  assert.deepEqual(p.files.map((f) => [f.role, f.tensors.length]), [["model", 27], ["mmproj", 55]]);
  assert.equal(specMmprojTensors(D).length, 55);
  const llmArch = p.files[0]!.kvs.find((k) => k.key === "general.architecture")!.value.value;
  assert.equal(llmArch, "qwen2");
  assert.match(path.basename(p.files[1]!.path), /^mmproj-.*-f16\.gguf$/);
});

for (const ty of ["f16", "f32", "q8_0"] as const) {
  test(`mmproj ${ty}: exactly the image-encoder script's keys (names, value types, values)`, async () => {
    const r = await readBack(mmprojFiles.get(ty)!);
    const spec = specMmprojKvs(D, { fileType: { f16: 1, f32: 0, q8_0: 7 }[ty] });
    assert.deepEqual([...r.keys].sort(), spec.map((s) => s.key).sort());
    const T: Record<string, number> = { bool: GGUFValueType.BOOL, u32: GGUFValueType.UINT32, i32: GGUFValueType.INT32, f32: GGUFValueType.FLOAT32, str: GGUFValueType.STRING, "f32[]": GGUFValueType.ARRAY };
    for (const s of spec) {
      const m = r.meta[s.key] as { type: number; value: unknown; subType?: number };
      assert.equal(m.type, T[s.type], `${s.key} type`);
      if (s.type === "f32[]") {
        assert.equal(m.subType, GGUFValueType.FLOAT32, `${s.key} element type`);
        assert.deepEqual(m.value, s.value, s.key);
      } else assert.equal(m.value, s.value, s.key);
    }
    // order: exactly the legacy script's (clip.cpp does not care, older tools might)
    assert.deepEqual(r.keys, spec.map((s) => s.key));
  });

  test(`mmproj ${ty}: the image-encoder script's tensors (names, order, shapes, types)`, async () => {
    const r = await readBack(mmprojFiles.get(ty)!);
    const spec = specMmprojTensors(D);
    assert.deepEqual(r.tensors.map((t) => t.name), spec.map((s) => s.name));
    for (let i = 0; i < spec.length; i++) {
      assert.deepEqual(r.tensors[i]!.ne, spec[i]!.ne, spec[i]!.name);
      assert.equal(r.tensors[i]!.dtype, GGML_ID[specMmprojType(spec[i]!, ty)], spec[i]!.name);
    }
    // the property that forces F16 under q8_0: the tiny fc2 row (176) is, like the real 4304, not a multiple of 32
    assert.notEqual(D.vision.ffn % 32, 0);
  });
}

for (const ty of ["f16", "f32"] as const) {
  test(`mmproj ${ty}: data — copies, q/k/v thirds of in_proj, proj transposed, pos_embed_k`, async () => {
    const r = await readBack(mmprojFiles.get(ty)!);
    const src = await readSource(dir);
    const spec = new Map(specMmprojTensors(D).map((s) => [s.name, s]));
    const E = D.llm.hidden;
    let checked = 0;
    for (const t of r.tensors) {
      const s = spec.get(t.name)!;
      const got = asF32(t);
      const n = got.length;
      if (s.how === "sincos") {
        let worst = 0;
        for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - specPosEmbedK(E, Math.floor(i / E), i % E)));
        assert.ok(worst <= 1e-6, `pos_embed_k differs from the sin/cos formula by ${worst}`);
        // spot values: row 0 is [0…0 | 1…1 | 0…0 | 1…1]; row 71 is (h = 1, w = 1)
        assert.equal(got[0], 0);
        assert.equal(got[E / 4], 1);
        assert.ok(Math.abs(got[71 * E]! - Math.sin(1)) < 1e-6 && Math.abs(got[71 * E + E / 2]! - Math.sin(1)) < 1e-6);
        checked++;
        continue;
      }
      const exact = sourceValues(s, src);
      assert.equal(exact.length, n, t.name);
      const want = exact.map((x) => stored(x, t.dtype));
      assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), t.name);
      checked++;
    }
    assert.equal(checked, 55);
    // the transpose is a real transpose (the tiny proj is not symmetric)
    const proj = src.get("resampler.proj")!.data;
    const pw = asF32(r.tensors.find((t) => t.name === "resampler.proj.weight")!);
    assert.equal(pw[1], stored(proj[E]!, r.tensors.find((t) => t.name === "resampler.proj.weight")!.dtype));
    assert.notEqual(pw[1], stored(proj[1]!, 1));
  });
}

// ---- configuration handling (mmproj built directly on a small-vocabulary checkpoint; no tokenizer needed) ----

const SMALL: MinicpmvDims = { ...D, llm: { ...D.llm, vocab: 512 } };
let smallDir = "";
async function small(): Promise<string> {
  if (!smallDir) {
    smallDir = path.join(tmp, "small");
    await writeTinyMinicpmv(smallDir, { dims: SMALL });
  }
  return smallDir;
}

async function withCtx<T>(d: string, fn: (ctx: ConvertContext) => Promise<T> | T, config?: Record<string, unknown>): Promise<T> {
  const src = await SourceCheckpoint.open(d);
  try {
    const cfg = config ?? (JSON.parse(await readFile(path.join(d, "config.json"), "utf8")) as Record<string, unknown>);
    return await fn({ src, dir: d, config: cfg, loadVocab: async () => ({ model: "gpt2", tokens: Array.from({ length: SMALL.llm.vocab }, (_, i) => `t${i}`), tokenTypes: new Int32Array(SMALL.llm.vocab).fill(1), special: {} }) });
  } finally {
    await src.close();
  }
}

const kvValue = (kvs: { key: string; value: { value: unknown } }[], key: string): unknown => kvs.find((k) => k.key === key)?.value.value;

test("image mean/std come from preprocessor_config.json (image_mean, else norm_mean), else 0.5", async () => {
  const d = await small();
  const pp = path.join(d, "preprocessor_config.json");
  const orig = JSON.parse(await readFile(pp, "utf8")) as Record<string, unknown>;
  const clipMean = [0.48145466, 0.4578275, 0.40821073];
  const clipStd = [0.26862954, 0.26130258, 0.27577711];
  try {
    await writeFile(pp, JSON.stringify({ ...orig, norm_mean: clipMean, norm_std: clipStd }));
    let m = await withCtx(d, (ctx) => buildMinicpmvMmproj(ctx));
    assert.deepEqual(Array.from(kvValue(m.kvs, "clip.vision.image_mean") as number[]), clipMean);
    assert.deepEqual(Array.from(kvValue(m.kvs, "clip.vision.image_std") as number[]), clipStd);
    await writeFile(pp, JSON.stringify({ ...orig, image_mean: [0.1, 0.2, 0.3], image_std: [0.4, 0.5, 0.6] }));
    m = await withCtx(d, (ctx) => buildMinicpmvMmproj(ctx));
    assert.deepEqual(Array.from(kvValue(m.kvs, "clip.vision.image_mean") as number[]), [0.1, 0.2, 0.3]);
    await rm(pp);
    m = await withCtx(d, (ctx) => buildMinicpmvMmproj(ctx));
    assert.deepEqual(Array.from(kvValue(m.kvs, "clip.vision.image_std") as number[]), [0.5, 0.5, 0.5]);
  } finally {
    await writeFile(pp, JSON.stringify(orig));
  }
});

test("unknown MiniCPM-V generations are refused (a tower ggufy does not know, version 2.0 / 3.0; the family tests cover 2.5 … 4.5)", async () => {
  const d = await small();
  const cfg = JSON.parse(await readFile(path.join(d, "config.json"), "utf8")) as Record<string, unknown>;
  const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;
  await assert.rejects(withCtx(d, (ctx) => minicpmv.build(ctx), { ...cfg, vision_config: { ...(cfg["vision_config"] as object), model_type: "clip_vision_model" } }), code("E_UNSUPPORTED_ARCH"));
  await assert.rejects(withCtx(d, (ctx) => minicpmv.build(ctx), { ...cfg, version: 3.0 }), code("E_UNSUPPORTED_ARCH"));
  await assert.rejects(withCtx(d, (ctx) => minicpmv.build(ctx), { ...cfg, version: 2.0 }), code("E_UNSUPPORTED_ARCH"));
  await assert.rejects(withCtx(d, (ctx) => minicpmv.build(ctx), { ...cfg, vision_config: { ...(cfg["vision_config"] as object), num_hidden_layers: 3 } }), code("E_CONFIG"));
  await assert.rejects(withCtx(d, (ctx) => minicpmv.build(ctx), { ...cfg, query_num: 32 }), code("E_CONFIG"));
});

test("an unknown vpm.* / resampler.* tensor is an error, not silently dropped", async () => {
  const d = await small();
  const d2 = path.join(tmp, "extra");
  await rm(d2, { recursive: true, force: true });
  await mkdir(d2);
  for (const f of ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]) await copyFile(path.join(d, f), path.join(d2, f));
  const index = JSON.parse(await readFile(path.join(d, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
  index.weight_map["resampler.pos_embed"] = "model-00003-of-00003.safetensors";
  await writeSafetensors(path.join(d2, "model-00003-of-00003.safetensors"), [{ name: "resampler.pos_embed", dtype: "BF16", shape: [2, 2], data: new Uint8Array(8) }]);
  await writeFile(path.join(d2, "model.safetensors.index.json"), JSON.stringify(index));
  await assert.rejects(withCtx(d2, (ctx) => minicpmv.build(ctx)), (e: unknown) => (e as { code?: string; tensor?: string }).code === "E_UNEXPECTED_TENSOR" && (e as { tensor?: string }).tensor === "resampler.pos_embed");
});

test("planned mmproj files follow --mmproj-type, and PlannedFile reports the file type", () => {
  for (const [ty, ft] of [["f16", 1], ["f32", 0], ["q8_0", 7]] as const) {
    const f: PlannedFile = planFile({ model: p.models[1]!, modelDir: dir, opts: { mmprojType: ty }, baseName: "Tiny" });
    assert.equal(f.fileType, ft);
    assert.equal(path.basename(f.path), `mmproj-Tiny-${ty}.gguf`);
  }
});

test("--vocab-only writes the language model's tokenizer only (no vision projector)", async () => {
  const d = await small();
  const files = await withCtx(d, (ctx) => minicpmv.build({ ...ctx, vocabOnly: true }));
  assert.deepEqual(files.map((f) => [f.role, f.arch, f.tensors.length]), [["model", "qwen2", 0]]);
});

test("mmproj q8_0: Q8_0 tensors dequantize to their sources (per-block error ≤ 0.6·d)", async () => {
  const r = await readBack(mmprojFiles.get("q8_0")!);
  const src = await readSource(dir);
  const spec = new Map(specMmprojTensors(D).map((s) => [s.name, s]));
  let nq = 0;
  for (const t of r.tensors) {
    if (t.dtype !== 8) continue;
    const x = sourceValues(spec.get(t.name)!, src);
    const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let b = 0; b < x.length / 32; b++) {
      const d = new Float32Array(new Uint32Array([f16ToF32Bits(dv.getUint16(b * 34, true))]).buffer)[0]!;
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
      assert.ok(Math.abs(d - amax / 127) <= (amax / 127) * 2 ** -10, `${t.name} block ${b}: scale ${d} for amax ${amax}`);
      for (let i = 0; i < 32; i++) {
        const q = dv.getInt8(b * 34 + 2 + i);
        assert.ok(Math.abs(q * d - x[b * 32 + i]!) <= 0.6 * d, `${t.name}[${b * 32 + i}]`);
      }
    }
    nq++;
  }
  assert.equal(nq, 6 + 5 * D.vision.layers);
});
