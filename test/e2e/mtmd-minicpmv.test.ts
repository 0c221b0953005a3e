/**
 * MiniCPM-V 2.6 in llama.cpp's own multimodal runtime (libmtmd / llama-mtmd-cli, built from the bundled
 * source by test/support/llama-tools.ts; test/support/mtmd.ts):
 *
 * - the tiny bf16 checkpoint and its int4 (bitsandbytes NF4, openbmb's -int4 layout) variant
 *   (fixtures/minicpmv.ts) convert in one command to the LLM + mmproj pair;
 * - libmtmd loads the pair and encodes the fixed 448×448 test image (no slicing, no resize: one image chunk of
 *   query_num = 64 tokens between <image> and </image>); its embeddings equal the reference forward pass
 *   (test/support/reference-minicpmv-vision.ts, the HF SigLIP + resampler definitions on the checkpoint's own
 *   tensors) on the same preprocessed pixels: max |Δ| / max |ref| ≤ 1e-4 at an F32 mmproj;
 * - a 896×448 image is sliced in the 2.6 template (overview + two slices); a slice is an unresized 448×448 crop,
 *   and its embeddings equal the reference on that crop;
 * - a deliberately broken mmproj (resampler.proj.weight transposed; the 70×70 SigLIP position table transposed)
 *   is far from the reference: the comparison has teeth;
 * - `--mmproj-type q8_0` loads and runs (embeddings close to the reference, llama-mtmd-cli generates);
 * - llama-mtmd-cli runs both pairs on the image with a prompt and generates tokens (greedy, CPU).
 *
 * The int4 pair's tensors equal the bitsandbytes decoding bit for bit in test/models/minicpmv-int4.test.ts;
 * here the int4 pair is run, with the reference reading the same decoded weights (ggufy's decoder, the one that
 * test checks).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { convert, plan } from "../../src/convert/convert.js";
import { runPlan } from "../../src/convert/pipeline.js";
import { openCheckpoint } from "../../src/convert/dequantize.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4 } from "../../fixtures/minicpmv.js";
import { clipPixels, maxRelError, mtmdCli, mtmdEncode, testImage, writePpm, type MtmdEncodeResult } from "../support/mtmd.js";
import { tensorToF32 } from "../support/reference-qwen2.js";
import {
  EXACT_NUMERICS,
  GGML_CPU_NUMERICS,
  loadMinicpmvVisionWeights,
  minicpmvVisionConfigFromHf,
  minicpmvVisionForward,
  type MinicpmvVisionConfig,
  type MinicpmvVisionWeights,
  type WeightLoader,
} from "../support/reference-minicpmv-vision.js";

const IMAGE = testImage(448, 448);
const TOL = 1e-4;
const IMAGE_START = 151646; // <image>
const IMAGE_END = 151647; // </image>

let tmp = "";
let imageFile = "";
/** bf16: LLM auto (bf16) + F32 mmproj; int4: LLM q8_0 + F32 mmproj; int4q8: the int4 LLM + a q8_0 mmproj */
const pairs: Record<"bf16" | "int4" | "int4q8", { llm: string; mmproj: string }> = {
  bf16: { llm: "", mmproj: "" },
  int4: { llm: "", mmproj: "" },
  int4q8: { llm: "", mmproj: "" },
};
const refs: Partial<Record<"bf16" | "int4", Float64Array>> = {};
let cfg: MinicpmvVisionConfig;
let bf16Weights: MinicpmvVisionWeights;
let pixels: Float32Array;

async function convertPair(input: string, outtype: string, mmprojType: string, stem: string): Promise<{ llm: string; mmproj: string }> {
  const llm = path.join(tmp, `${stem}-llm.gguf`);
  const mmproj = path.join(tmp, `${stem}-mmproj.gguf`);
  const r = await convert({ input, outtype, mmprojType, outfile: llm, mmprojOutfile: mmproj, threads: 2 });
  assert.deepEqual(r.files.map((f) => path.resolve(f.path)), [llm, mmproj]);
  return { llm, mmproj };
}

/** only the mmproj of a conversion (the plan of both files, the mmproj written) */
async function convertMmprojOnly(input: string, mmprojType: string, stem: string): Promise<string> {
  const mmproj = path.join(tmp, `${stem}-mmproj.gguf`);
  const p = await plan({ input, outtype: "q8_0", mmprojType, outfile: path.join(tmp, `${stem}-unused.gguf`), mmprojOutfile: mmproj });
  try {
    assert.deepEqual(p.files.map((f) => f.role), ["model", "mmproj"]);
    await runPlan([p.files[1]!], {});
  } finally {
    await p.source.close();
  }
  return mmproj;
}

function storedVisionLayers(names: Iterable<string>): number {
  const ids = new Set<number>();
  for (const n of names) {
    const m = /^vpm\.encoder\.layers\.(\d+)\./.exec(n);
    if (m) ids.add(Number(m[1]));
  }
  return ids.size;
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-e2e-mtmd-minicpmv-"));
  const bf16 = path.join(tmp, "MiniCPM-V-2_6");
  const int4 = path.join(tmp, "MiniCPM-V-2_6-int4");
  await writeTinyMinicpmv(bf16);
  await writeTinyMinicpmvInt4(bf16, int4);
  pairs.bf16 = await convertPair(bf16, "auto", "f32", "bf16");
  pairs.int4 = await convertPair(int4, "q8_0", "f32", "int4");
  pairs.int4q8 = { llm: pairs.int4.llm, mmproj: await convertMmprojOnly(int4, "q8_0", "int4q8") };
  imageFile = path.join(tmp, "test-448.ppm");
  await writePpm(imageFile, IMAGE);

  const config = JSON.parse(await readFile(path.join(bf16, "config.json"), "utf8")) as Record<string, unknown>;
  // the image mean/std the mmproj carries are what clip.cpp normalises with
  const { metadata } = await gguf(pairs.bf16.mmproj, { allowLocalFile: true });
  const md = metadata as Record<string, unknown>;
  const mean = md["clip.vision.image_mean"] as number[];
  const std = md["clip.vision.image_std"] as number[];
  assert.deepEqual([mean, std], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]);
  assert.equal(md["clip.vision.image_size"], 448);
  pixels = clipPixels(IMAGE, mean, std);

  const st = await SafetensorsCheckpoint.open(bf16);
  try {
    cfg = minicpmvVisionConfigFromHf(config, storedVisionLayers(st.names()));
    const load: WeightLoader = async (name) => {
      const info = st.get(name);
      if (!info) throw new Error(`${name} not in the checkpoint`);
      return { data: tensorToF32(await st.read(name), info.dtype), shape: info.shape };
    };
    bf16Weights = await loadMinicpmvVisionWeights(load, cfg);
  } finally {
    await st.close();
  }
  refs.bf16 = minicpmvVisionForward(bf16Weights, cfg, pixels, 448, 448, { numerics: GGML_CPU_NUMERICS });

  const ck = await openCheckpoint(int4);
  try {
    const load: WeightLoader = async (name) => {
      const t = ck.get(name);
      if (!t) throw new Error(`${name} not in the int4 checkpoint`);
      return { data: await t.rows(0, t.rowCount), shape: t.shape };
    };
    const w = await loadMinicpmvVisionWeights(load, minicpmvVisionConfigFromHf(ck.config, storedVisionLayers(ck.names())));
    refs.int4 = minicpmvVisionForward(w, cfg, pixels, 448, 448, { numerics: GGML_CPU_NUMERICS });
  } finally {
    await ck.close();
  }
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** the chunk layout MiniCPM-V 2.6 (clip.minicpmv_version 3) gives an unsliced image: <image> [64 embeddings] </image> */
function assertOneImageChunk(r: MtmdEncodeResult): Float32Array {
  assert.equal(r.nEmbd, cfg.embedDim);
  assert.equal(r.useMrope, false);
  assert.deepEqual(
    r.chunks.map((c) => [c.type, c.nTokens, c.tokens ?? null]),
    [["text", 1, [IMAGE_START]], ["image", cfg.queryNum, null], ["text", 1, [IMAGE_END]]],
  );
  assert.equal(r.embeddings.length, 1);
  const e = r.embeddings[0]!;
  assert.equal(e.length, cfg.queryNum * cfg.embedDim);
  assert.ok(e.every(Number.isFinite), "finite embeddings");
  return e;
}

for (const which of ["bf16", "int4"] as const) {
  test(`${which}: libmtmd loads the pair, encodes the 448x448 image into 64 tokens equal to the reference forward pass (≤ ${TOL})`, async (t) => {
    const r = await mtmdEncode({ model: pairs[which].llm, mmproj: pairs[which].mmproj, image: IMAGE });
    const e = assertOneImageChunk(r);
    const err = maxRelError(e, refs[which]!);
    t.diagnostic(`${which}: max |llama.cpp − reference| / max |reference| = ${err.toExponential(3)}`);
    assert.ok(err <= TOL, `max relative error ${err} > ${TOL}`);
    if (which === "bf16") {
      // the real-number definition (no F16 roundings of ggml's conv / GELU) is close but not within 1e-4 necessarily
      const exact = minicpmvVisionForward(bf16Weights, cfg, pixels, 448, 448, { numerics: EXACT_NUMERICS });
      const errExact = maxRelError(e, exact);
      const noTable = maxRelError(e, minicpmvVisionForward(bf16Weights, cfg, pixels, 448, 448, { numerics: { ...GGML_CPU_NUMERICS, geluF16Table: false } }));
      t.diagnostic(`bf16: against the exact-numerics reference: ${errExact.toExponential(3)}; with only the F16 GELU table emulation off: ${noTable.toExponential(3)}`);
      assert.ok(errExact < 1e-2, `exact-numerics reference differs by ${errExact}`);
    }
  });
}

test("a 896x448 image is sliced as MiniCPM-V 2.6 does: <image> overview </image><slice> left </slice><slice> right </slice>; a slice equals the reference", async (t) => {
  const wide = testImage(896, 448);
  const r = await mtmdEncode({ model: pairs.bf16.llm, mmproj: pairs.bf16.mmproj, image: wide });
  const SLICE_START = 151656; // <slice>
  const SLICE_END = 151657; // </slice>
  assert.deepEqual(
    r.chunks.map((c) => [c.type, c.nTokens, c.tokens ?? null]),
    [
      ["text", 1, [IMAGE_START]], ["image", 64, null], ["text", 2, [IMAGE_END, SLICE_START]],
      ["image", 64, null], ["text", 2, [SLICE_END, SLICE_START]], ["image", 64, null], ["text", 1, [SLICE_END]],
    ],
  );
  // llava-uhd slicing (mtmd-image.cpp): grid 2×1, refined size = 896×448 = the image, so each slice is a plain
  // 448×448 crop (no resize); the right one is checked against the reference
  const right = new Uint8Array(448 * 448 * 3);
  for (let y = 0; y < 448; y++) right.set(wide.rgb.subarray((y * 896 + 448) * 3, (y * 896 + 896) * 3), y * 448 * 3);
  const ref = minicpmvVisionForward(bf16Weights, cfg, clipPixels({ nx: 448, ny: 448, rgb: right }, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]), 448, 448);
  const err = maxRelError(r.embeddings[2]!, ref);
  t.diagnostic(`right slice: ${err.toExponential(3)}`);
  assert.ok(err <= TOL, `right slice: max relative error ${err} > ${TOL}`);
  // and it is not the left slice
  assert.ok(maxRelError(r.embeddings[1]!, ref) > 10 * TOL);
});

/** Copy an F32 mmproj and rewrite one F32 tensor's data in place (same size). */
async function brokenMmproj(src: string, dst: string, tensor: string, rewrite: (data: Float32Array, ne: number[]) => Float32Array): Promise<void> {
  await copyFile(src, dst);
  const r = await gguf(dst, { allowLocalFile: true });
  const ti = r.tensorInfos.find((x) => x.name === tensor);
  assert.ok(ti, `${tensor} in ${src}`);
  assert.equal(ti.dtype, 0, `${tensor} is F32`);
  const ne = ti.shape.map(Number);
  const n = ne.reduce((a, b) => a * b, 1);
  const fh = await open(dst, "r+");
  try {
    const buf = new Float32Array(n);
    const at = Number(r.tensorDataOffset + ti.offset);
    await fh.read(new Uint8Array(buf.buffer), 0, 4 * n, at);
    const out = rewrite(buf, ne);
    assert.equal(out.length, n);
    await fh.write(new Uint8Array(out.buffer), 0, 4 * n, at);
  } finally {
    await fh.close();
  }
}

test("the comparison has teeth: a transposed projector or a transposed position table is far from the reference", async (t) => {
  const cases: [string, string, (d: Float32Array, ne: number[]) => Float32Array][] = [
    ["resampler.proj.weight", "proj-transposed", (d, ne) => {
      const [a, b] = [ne[0]!, ne[1]!];
      const o = new Float32Array(d.length);
      for (let i = 0; i < b; i++) for (let j = 0; j < a; j++) o[j * b + i] = d[i * a + j]!;
      return o;
    }],
    ["v.position_embd.weight", "pos-transposed", (d, ne) => {
      const V = ne[0]!;
      const S = Math.round(Math.sqrt(ne[1]!));
      const o = new Float32Array(d.length);
      for (let h = 0; h < S; h++) for (let w = 0; w < S; w++) o.set(d.subarray((w * S + h) * V, (w * S + h + 1) * V), (h * S + w) * V);
      return o;
    }],
  ];
  for (const [tensor, stem, rewrite] of cases) {
    const file = path.join(tmp, `broken-${stem}.gguf`);
    await brokenMmproj(pairs.bf16.mmproj, file, tensor, rewrite);
    const r = await mtmdEncode({ model: pairs.bf16.llm, mmproj: file, image: IMAGE });
    const err = maxRelError(assertOneImageChunk(r), refs.bf16!);
    t.diagnostic(`${stem}: ${err.toExponential(3)}`);
    assert.ok(err > 10 * TOL, `${stem}: error ${err} should be far above ${TOL}`);
  }
});

test("llama.cpp refuses an mmproj whose clip.minicpmv_version it does not know, and the child reports it", async () => {
  const bytes = await readFile(pairs.bf16.mmproj);
  const key = Buffer.from("clip.minicpmv_version");
  const at = bytes.indexOf(key) + key.length;
  assert.ok(at > key.length, "key present");
  assert.deepEqual([bytes.readUInt32LE(at), bytes.readInt32LE(at + 4)], [5, 3]); // GGUF INT32, version 3 (2.6)
  bytes.writeInt32LE(7, at + 4);
  const file = path.join(tmp, "mmproj-version7.gguf");
  await writeFile(file, bytes);
  await assert.rejects(mtmdEncode({ model: pairs.bf16.llm, mmproj: file, image: IMAGE }), /unsupported minicpmv version: 7/);
});

test("--mmproj-type q8_0 (int4 checkpoint): libmtmd loads and encodes it; the embeddings stay close to the reference", async (t) => {
  const { metadata, tensorInfos } = await gguf(pairs.int4q8.mmproj, { allowLocalFile: true });
  assert.equal((metadata as Record<string, unknown>)["clip.projector_type"], "resampler");
  assert.ok(tensorInfos.some((x) => x.dtype === 8), "some Q8_0 tensors");
  const r = await mtmdEncode({ model: pairs.int4q8.llm, mmproj: pairs.int4q8.mmproj, image: IMAGE });
  const err = maxRelError(assertOneImageChunk(r), refs.int4!);
  t.diagnostic(`q8_0 mmproj: ${err.toExponential(3)}`);
  assert.ok(err < 5e-2, `q8_0 embeddings differ by ${err}`);
});

// the bf16 pair (F32 mmproj) and the int4 pair with the q8_0 mmproj (the int4 F32 mmproj is run through libmtmd above)
for (const which of ["bf16", "int4q8"] as const) {
  test(`${which}: llama-mtmd-cli encodes the image, decodes its 64 embeddings and generates tokens (greedy, CPU)`, async () => {
    const r = await mtmdCli({ model: pairs[which].llm, mmproj: pairs[which].mmproj, image: imageFile, prompt: "What is in the picture?", nPredict: 4 });
    assert.equal(r.code, 0, `llama-mtmd-cli exited ${r.signal ?? r.code}:\n${r.stderr.slice(-3000)}`);
    assert.match(r.stderr, /decoding image batch 1\/1, n_tokens_batch = 64\b/);
    assert.match(r.stderr, /image decoded \(batch 1\/1\)/);
    // the prompt (chat template + the image's 64 embeddings) was evaluated, then tokens were generated one by one
    assert.ok(r.nPromptEval !== undefined && r.nPromptEval > 64, `prompt eval tokens: ${r.nPromptEval}`);
    assert.ok(r.nEval !== undefined && r.nEval >= 1 && r.nEval <= 4, `eval runs: ${r.nEval}\n${r.stderr.slice(-2000)}`);
    assert.ok(r.text.length > 0, "generated text on stdout");
  });
}
