/**
 * Qwen2-VL and Qwen2.5-VL in llama.cpp's own multimodal runtime (libmtmd / llama-mtmd-cli built from the bundled
 * source; test/support/mtmd.ts):
 *
 * - tiny bf16 checkpoints (fixtures/qwen2vl.ts) and the unsloth bnb-4bit layout of the 2.5 one convert in one
 *   command to the qwen2vl LLM + mmproj pair;
 * - libmtmd loads each pair and encodes the fixed 168×224 test image: sides multiples of 28 and 48 merged tokens
 *   (within clip.cpp's 8…4096), so mtmd's dyn-size preprocessing keeps it as it is (no resize); one image chunk of
 *   6·8 = 48 tokens between <|vision_start|> and <|vision_end|>, with M-RoPE decoder positions;
 * - its embeddings equal the reference forward pass (test/support/reference-qwen2vl-vision.ts: the HF ViT with
 *   2-D rotary, window attention for 2.5 — 4×4 merged-token windows, here 2 × 2 of them, two partial — and the
 *   merger) on the same preprocessed pixels: max |Δ| / max |ref| ≤ 1e-4 at an F32 mmproj — for Qwen2-VL against
 *   the ggml-activation reference with its F16-table ties settled by llama.cpp's own table inputs (see TOL_QWEN2VL),
 *   its free-running and HF-exact errors asserted within their measured bounds;
 * - teeth: the same reference with full attention everywhere (2.5) or on the mirrored image (2-VL) is far; the
 *   settled Qwen2-VL reference with the F16-table emulation switched off is above 1e-4;
 * - `--mmproj-type q8_0` loads and runs; llama-mtmd-cli generates tokens from a pair.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { convert } from "../../src/convert/convert.js";
import { openCheckpoint } from "../../src/convert/dequantize.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { TINY_QWEN25VL, TINY_QWEN2VL, writeTinyQwenVl, writeTinyQwenVlInt4, type QwenVlDims } from "../../fixtures/qwen2vl.js";
import { clipPixels, maxRelError, mtmdCli, mtmdEncode, testImage, writePpm, type MtmdEncodeResult } from "../support/mtmd.js";
import { tensorToF32 } from "../support/reference-qwen2.js";
import { loadQwenVisionWeights, qwenVisionConfigFromHf, qwenVisionForward, type QwenVisionConfig, type QwenVisionProbe, type QwenVisionTies, type QwenVisionWeights, type WeightLoader } from "../support/reference-qwen2vl-vision.js";
import { GELU_TABLE_TANHF_ENTRIES, ggmlGeluTable, ggmlQuickGeluTable } from "../support/ggml-f16-tables.js";
import { toF16 } from "../../src/formats/half.js";

const NX = 168;
const NY = 224;
const IMAGE = testImage(NX, NY);
const TOKENS = (NX / 28) * (NY / 28);
const TOL = 1e-4;
/**
 * Qwen2-VL (LayerNorm, quick-GELU MLP, full attention) against the free-running ggml-numerics reference is at
 * ~2.5e-4, and that is a floor of the comparison, not a conversion error: ggml-cpu evaluates quick GELU (and the
 * merger's GELU) through F16 tables (ggml/src/ggml-cpu/vec.h: `#define GGML_GELU_QUICK_FP16` unconditionally, so
 * ggml_vec_gelu_quick_f32 reads ggml_table_gelu_quick_f16[F16(x)]; the table is filled in ggml-cpu.c ggml_cpu_init;
 * ops.cpp ggml_compute_forward_gelu_quick_f32 → ggml_vec_gelu_quick_f32; clip.cpp build_ffn FFN_GELU_QUICK →
 * ggml_gelu_quick for PROJECTOR_TYPE_QWEN2VL). The reference emulates the tables exactly (test/models/
 * ggml-f16-tables.test.ts checks every entry), but an input that llama.cpp's float32 arithmetic puts one float32
 * ulp across an F16 rounding midpoint from the float64 reference reads the neighbouring entry, one F16 ulp away
 * (~200 of the 2 × 192 × 256 inputs here). So the ≤ 1e-4 assertion is made against the ggml-activation reference
 * with those ties settled by llama.cpp's own table inputs (captured from libmtmd's graph: "ffn_up_b-<il>" and the
 * merger's "ffn_up_b"); only elements whose two values are within TIE_TOL of each other (relative to the tensor's
 * max) are settled, and the test asserts every other input agrees to that too. The free-running reference keeps
 * its measured bound TOL_QWEN2VL, the HF-exact one TOL_QWEN2VL_EXACT. Qwen2.5-VL (SiLU, no table in the blocks)
 * and its int4 pair are at ~1e-5 free-running.
 */
const TOL_QWEN2VL = 5e-4;
const TOL_QWEN2VL_EXACT = 1e-3;
const TIE_TOL = 1e-5;
const VISION_START = 151652;
const VISION_END = 151653;

let tmp = "";
let imageFile = "";
interface Case { dims: QwenVlDims; dir: string; llm: string; mmproj: string; cfg: QwenVisionConfig; w: QwenVisionWeights; pixels: Float32Array }
const cases: Record<string, Case> = {};

async function pair(input: string, stem: string, mmprojType = "f32", outtype = "auto"): Promise<{ llm: string; mmproj: string }> {
  const llm = path.join(tmp, `${stem}-llm.gguf`);
  const mmproj = path.join(tmp, `${stem}-mmproj.gguf`);
  const r = await convert({ input, outtype, mmprojType, outfile: llm, mmprojOutfile: mmproj, threads: 2 });
  assert.deepEqual(r.files.map((f) => path.resolve(f.path)), [llm, mmproj]);
  return { llm, mmproj };
}

async function setup(name: string, dims: QwenVlDims, dir: string, load: WeightLoader, outtype: string): Promise<void> {
  const { llm, mmproj } = await pair(dir, name, "f32", outtype);
  const md = (await gguf(mmproj, { allowLocalFile: true })).metadata as Record<string, unknown>;
  const pixels = clipPixels(IMAGE, md["clip.vision.image_mean"] as number[], md["clip.vision.image_std"] as number[]);
  const cfg = qwenVisionConfigFromHf(JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>);
  cases[name] = { dims, dir, llm, mmproj, cfg, w: await loadQwenVisionWeights(load, cfg), pixels };
}

before(async () => {
  tmp = await scratchDir("ggufy-mtmd-qwen2vl-");
  imageFile = path.join(tmp, `test-${NX}x${NY}.ppm`);
  await writePpm(imageFile, IMAGE);
  for (const dims of [TINY_QWEN2VL, TINY_QWEN25VL]) {
    const dir = path.join(tmp, dims.variant);
    await writeTinyQwenVl(dir, dims, 5);
    const st = await SafetensorsCheckpoint.open(dir);
    try {
      await setup(dims.variant, dims, dir, async (n) => ({ data: tensorToF32(await st.read(n), st.get(n)!.dtype), shape: st.get(n)!.shape }), "auto");
    } finally {
      await st.close();
    }
  }
  const int4 = path.join(tmp, "qwen25vl-bnb-4bit");
  await writeTinyQwenVlInt4(cases["qwen25vl"]!.dir, int4);
  const ck = await openCheckpoint(int4);
  try {
    await setup("int4", TINY_QWEN25VL, int4, async (n) => {
      const t = ck.get(n);
      if (!t) throw new Error(`${n} not in the int4 checkpoint`);
      return { data: await t.rows(0, t.rowCount), shape: t.shape };
    }, "q8_0");
  } finally {
    await ck.close();
  }
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function oneImageChunk(r: MtmdEncodeResult, c: Case): Float32Array {
  assert.equal(r.nEmbd, c.dims.llm.hidden);
  assert.equal(r.useMrope, true);
  assert.deepEqual(r.chunks.map((k) => [k.type, k.nTokens, k.tokens ?? null]), [["text", 1, [VISION_START]], ["image", TOKENS, null], ["text", 1, [VISION_END]]]);
  assert.equal(r.embeddings.length, 1);
  const e = r.embeddings[0]!;
  assert.equal(e.length, TOKENS * c.dims.llm.hidden);
  return e;
}

for (const name of ["qwen25vl", "int4"]) {
  test(`${name}: libmtmd loads the pair and encodes the ${NX}x${NY} image into ${TOKENS} tokens equal to the reference ViT + merger (≤ ${TOL})`, async (t) => {
    const c = cases[name]!;
    const r = await mtmdEncode({ model: c.llm, mmproj: c.mmproj, image: IMAGE });
    const e = oneImageChunk(r, c);
    const err = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml"));
    const exact = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "exact"));
    t.diagnostic(`${name}: max |llama.cpp − reference| / max |reference| = ${err.toExponential(3)} (ggml numerics), ${exact.toExponential(3)} (exact HF numerics)`);
    assert.ok(err <= TOL, `max relative error ${err} > ${TOL}`);
    if (name === "int4") return;
    // teeth: the reference without windows is far away
    const noWin = maxRelError(e, qwenVisionForward(c.w, { ...c.cfg, fullAtt: Array.from({ length: c.cfg.depth }, (_, i) => i) }, c.pixels, NX, NY, "ggml"));
    t.diagnostic(`full attention in every block instead of windows: ${noWin.toExponential(3)}`);
    assert.ok(noWin > 100 * TOL, `windows make no difference (${noWin})`);
  });
}

test(`qwen2vl: libmtmd encodes the ${NX}x${NY} image into ${TOKENS} tokens equal to the ggml-activation reference, F16-table ties settled (≤ ${TOL}); free-running ≤ ${TOL_QWEN2VL}, HF-exact ≤ ${TOL_QWEN2VL_EXACT}`, async (t) => {
  const c = cases["qwen2vl"]!;
  const { depth, ffn: F, embd: E } = c.cfg;
  const blocks = Array.from({ length: depth }, (_, l) => l);
  const names = [...blocks.flatMap((l) => [`ffn_up_b-${l}`, `ffn_gelu_quick-${l}`]), "ffn_up_b", "ffn_gelu"];
  const r = await mtmdEncode({ model: c.llm, mmproj: c.mmproj, image: IMAGE, capture: names });
  const e = oneImageChunk(r, c);
  const cap = (n: string, ne: number[]): Float32Array => {
    assert.deepEqual(r.captured[n]!.ne, ne, n);
    return r.captured[n]!.data;
  };
  const qIn = blocks.map((l) => cap(`ffn_up_b-${l}`, [F, TOKENS * 4, 1, 1]));
  const gIn = cap("ffn_up_b", [4 * E, TOKENS, 1, 1]);
  // llama.cpp's activations are the emulated tables at its own inputs, bit for bit (GELU: but for the one entry
  // where glibc's tanhf differs, ggml-f16-tables.ts)
  for (const l of blocks) {
    const out = cap(`ffn_gelu_quick-${l}`, [F, TOKENS * 4, 1, 1]);
    for (let i = 0; i < out.length; i++) if (out[i] !== ggmlQuickGeluTable(qIn[l]![i]!)) assert.fail(`block ${l} quick GELU at ${i}: ggml ${out[i]} ≠ table(${qIn[l]![i]}) = ${ggmlQuickGeluTable(qIn[l]![i]!)}`);
  }
  const gOut = cap("ffn_gelu", [4 * E, TOKENS, 1, 1]);
  for (let i = 0; i < gOut.length; i++) if (gOut[i] !== ggmlGeluTable(gIn[i]!) && !GELU_TABLE_TANHF_ENTRIES.includes(toF16(Math.fround(gIn[i]!)))) assert.fail(`merger GELU at ${i}: ggml ${gOut[i]} ≠ table(${gIn[i]}) = ${ggmlGeluTable(gIn[i]!)}`);

  // the reference's own table inputs agree with llama.cpp's to TIE_TOL when the ties are settled
  const seen = blocks.map(() => 0);
  const inputs = (ties: QwenVisionTies): QwenVisionProbe => ({
    f16Ties: ties,
    quickGeluInput: (l, n, u) => {
      const g = qIn[l]!;
      let m = 0;
      for (let i = 0; i < F; i++) m = Math.max(m, Math.abs(u[i]! - g[n * F + i]!));
      seen[l] = Math.max(seen[l]!, m);
    },
  });
  const ties: QwenVisionTies = { quickGelu: qIn, gelu: gIn, tol: TIE_TOL, ties: 0, far: 0 };
  const settled = qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml", inputs(ties));
  const err = maxRelError(e, settled);
  const inputErr = blocks.map((l) => seen[l]! / qIn[l]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
  t.diagnostic(`ggml-activation reference, ${ties.ties} F16 ties of ${depth * TOKENS * 4 * F + TOKENS * 4 * E} table inputs settled: ${err.toExponential(3)}; quick-GELU inputs per block within ${inputErr.map((x) => x.toExponential(2)).join(", ")} of llama.cpp's`);
  assert.equal(ties.far, 0, `${ties.far} table inputs round to another F16 and are farther than ${TIE_TOL} from llama.cpp's`);
  for (const x of inputErr) assert.ok(x <= TIE_TOL, `quick-GELU inputs ${x} from llama.cpp's`);
  assert.ok(ties.ties <= 0.01 * (depth * TOKENS * 4 * F), `${ties.ties} ties: more than 1% of the inputs`);
  assert.ok(err <= TOL, `max relative error ${err} > ${TOL}`);

  // teeth: the same settled reference with the table emulation switched off (exact quick GELU / GELU)
  const noTable = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml", { activations: "exact", f16Ties: { ...ties, ties: 0, far: 0 } }));
  t.diagnostic(`the same with the F16 tables off (exact activations): ${noTable.toExponential(3)}`);
  assert.ok(noTable > TOL, `the F16-table emulation makes no difference (${noTable})`);

  // free-running (no ties settled) and HF-exact: the measured bounds
  const free = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml"));
  const exact = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "exact"));
  t.diagnostic(`free-running ggml-activation reference: ${free.toExponential(3)}; exact HF numerics: ${exact.toExponential(3)}`);
  assert.ok(free <= TOL_QWEN2VL, `free-running: ${free} > ${TOL_QWEN2VL}`);
  assert.ok(exact <= TOL_QWEN2VL_EXACT, `HF-exact: ${exact} > ${TOL_QWEN2VL_EXACT}`);
  // why the free-running one has its own bound: one float32 ulp on every quick-GELU input moves the reference this far
  const floor = maxRelError(settled, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml", { quickGeluInputUlps: 1 }));
  t.diagnostic(`reference vs itself with every quick-GELU input 1 float32 ulp off: ${floor.toExponential(3)}`);
  assert.ok(floor > TOL, `the F16 quick-GELU flip floor (${floor}) is under ${TOL}: TOL_QWEN2VL can be tightened to it`);
  // teeth: the mirrored image (2-D positions)
  const flipped = maxRelError(e, qwenVisionForward(c.w, c.cfg, flipPixels(c.pixels), NX, NY, "ggml"));
  t.diagnostic(`the image flipped left-right: ${flipped.toExponential(3)}`);
  assert.ok(flipped > 100 * TOL, `a flipped image gives the same embeddings (${flipped})`);
});

/** planar [3][NY][NX] pixels mirrored left-right */
function flipPixels(px: Float32Array): Float32Array {
  const out = new Float32Array(px.length);
  for (let ch = 0; ch < 3; ch++) for (let y = 0; y < NY; y++) for (let x = 0; x < NX; x++) out[ch * NX * NY + y * NX + x] = px[ch * NX * NY + y * NX + (NX - 1 - x)]!;
  return out;
}

test("--mmproj-type q8_0 (2.5): libmtmd loads and runs it, embeddings near the reference", async (t) => {
  const c = cases["qwen25vl"]!;
  const { llm, mmproj } = await pair(c.dir, "qwen25vl-q8", "q8_0", "q8_0");
  const md = (await gguf(mmproj, { allowLocalFile: true })).metadata as Record<string, unknown>;
  assert.equal(md["general.file_type"], 7);
  const r = await mtmdEncode({ model: llm, mmproj, image: IMAGE });
  const e = oneImageChunk(r, c);
  const err = maxRelError(e, qwenVisionForward(c.w, c.cfg, c.pixels, NX, NY, "ggml"));
  t.diagnostic(`q8_0 mmproj: ${err.toExponential(3)}`);
  assert.ok(err < 5e-2, `q8_0 embeddings off by ${err}`);
});

for (const name of ["qwen2vl", "int4"]) {
  test(`${name}: llama-mtmd-cli runs the pair on the image and generates tokens`, async () => {
    const c = cases[name]!;
    const r = await mtmdCli({ model: c.llm, mmproj: c.mmproj, image: imageFile, prompt: "What is in the picture?", nPredict: 4 });
    assert.equal(r.code, 0, `llama-mtmd-cli exited ${r.signal ?? r.code}:\n${r.stderr.slice(-3000)}`);
    assert.match(r.stderr, new RegExp(`n_tokens_batch = ${TOKENS}\\b`));
    assert.match(r.stderr, /image decoded/);
    assert.ok(r.nPromptEval !== undefined && r.nPromptEval > 0, `prompt eval tokens: ${r.nPromptEval}`);
    assert.ok(r.nEval !== undefined && r.nEval >= 1 && r.nEval <= 4, `eval runs: ${r.nEval}\n${r.stderr.slice(-2000)}`);
    assert.ok(r.text.length > 0, "generated text on stdout");
  });
}
