/**
 * Each MiniCPM-V release in llama.cpp's own multimodal runtime (libmtmd through test/support/mtmd.ts;
 * test/e2e/mtmd-minicpmv-family-*.test.ts, one file per release): the tiny bf16 and int4 checkpoints of the
 * release convert in one command to the pair; libmtmd loads it, encodes the fixed 448×448 test image (unsliced:
 * <image> [query_num embeddings] </image>, the same chunk layout in mtmd's 2.5 and 2.6 slice templates when there
 * are no slices) and its image embeddings equal the reference forward pass (test/support/reference-minicpmv-vision.ts)
 * within 1e-4 relative at an F32 mmproj; a q8_0 mmproj loads and stays close; llama-mtmd-cli generates tokens from
 * the bf16 pair.
 *
 * What differs between the releases in the vision path, and how the reference follows it: nothing in the graph
 * (clip.cpp builds clip_graph_minicpmv for every clip.minicpmv_version; its NaViT bucket positions and the
 * resampler's 2-D sin/cos are version-independent, tools/mtmd/clip.cpp PROJECTOR_TYPE_MINICPMV inputs); in HF,
 * 2.5's Idefics2VisionTransformer and 2.6+'s SigLIP NaViT copy compute the same function for one unpadded image
 * (vLLM minicpmv.py uses Idefics2VisionTransformer for all of 2.5/2.6/4.0/4.5), and Resampler2_5 / Resampler4_5
 * agree without temporal ids. The widths and query count (96 for 2.5) come from config.json, which the reference
 * reads (minicpmvVisionConfigFromHf); the tiny 2.5/o-2.6/4.0/4.5 resampler is 128 wide, one head of 128.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { convert, plan } from "../../src/convert/convert.js";
import { runPlan } from "../../src/convert/pipeline.js";
import { openCheckpoint } from "../../src/convert/dequantize.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4, RELEASE_CLIP_VERSION, type MinicpmvReleaseId } from "../../fixtures/minicpmv.js";
import { clipPixels, maxRelError, mtmdCli, mtmdEncode, testImage, writePpm, type MtmdEncodeResult } from "./mtmd.js";
import { EXACT_NUMERICS, GGML_CPU_NUMERICS, loadMinicpmvVisionWeights, minicpmvVisionConfigFromHf, minicpmvVisionForward, type MinicpmvVisionConfig, type WeightLoader } from "./reference-minicpmv-vision.js";
import { addedTokenId } from "./minicpmv-family.js";

const IMAGE = testImage(448, 448);
const TOL = 1e-4;

function storedVisionLayers(names: Iterable<string>): number {
  const ids = new Set<number>();
  for (const n of names) {
    const m = /^vpm\.encoder\.layers\.(\d+)\./.exec(n);
    if (m) ids.add(Number(m[1]));
  }
  return ids.size;
}

export function mtmdFamilyTests(release: MinicpmvReleaseId): void {
  let tmp = "";
  let imageFile = "";
  const pairs: Record<"bf16" | "int4", { dir: string; llm: string; mmproj: string; ref?: Float64Array; noTable?: Float64Array; exact?: Float64Array }> = {
    bf16: { dir: "", llm: "", mmproj: "" },
    int4: { dir: "", llm: "", mmproj: "" },
  };
  let cfg: MinicpmvVisionConfig;
  let imageStart = -1;
  let imageEnd = -1;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), `ggufy-e2e-mtmd-${release}-`));
    pairs.bf16.dir = path.join(tmp, "bf16");
    pairs.int4.dir = path.join(tmp, "int4");
    await writeTinyMinicpmv(pairs.bf16.dir, { release });
    await writeTinyMinicpmvInt4(pairs.bf16.dir, pairs.int4.dir);
    imageStart = await addedTokenId(pairs.bf16.dir, "<image>");
    imageEnd = await addedTokenId(pairs.bf16.dir, "</image>");
    imageFile = path.join(tmp, "test-448.ppm");
    await writePpm(imageFile, IMAGE);
    for (const which of ["bf16", "int4"] as const) {
      const p = pairs[which];
      p.llm = path.join(tmp, `${which}-llm.gguf`);
      p.mmproj = path.join(tmp, `${which}-mmproj.gguf`);
      // one command: the LLM (bf16 kept / int4 → q8_0) and an F32 mmproj
      const r = await convert({ input: p.dir, outtype: which === "bf16" ? "auto" : "q8_0", mmprojType: "f32", outfile: p.llm, mmprojOutfile: p.mmproj, threads: 2 });
      assert.deepEqual(r.files.map((f) => path.resolve(f.path)), [p.llm, p.mmproj]);
      const ck = await openCheckpoint(p.dir);
      try {
        const config = JSON.parse(await readFile(path.join(p.dir, "config.json"), "utf8")) as Record<string, unknown>;
        cfg = minicpmvVisionConfigFromHf(config, storedVisionLayers(ck.names()));
        const load: WeightLoader = async (name) => {
          const t = ck.get(name);
          if (!t) throw new Error(`${name} not in ${p.dir}`);
          return { data: await t.rows(0, t.rowCount), shape: t.shape };
        };
        const { metadata } = await gguf(p.mmproj, { allowLocalFile: true });
        const md = metadata as Record<string, unknown>;
        assert.equal(md["clip.minicpmv_version"], RELEASE_CLIP_VERSION[release]);
        const pixels = clipPixels(IMAGE, md["clip.vision.image_mean"] as number[], md["clip.vision.image_std"] as number[]);
        const w = await loadMinicpmvVisionWeights(load, cfg);
        p.ref = minicpmvVisionForward(w, cfg, pixels, 448, 448, { numerics: GGML_CPU_NUMERICS });
        if (which === "bf16") {
          // for the report: the F16 GELU table off (patch F16 kept), and the exact HF numerics
          p.noTable = minicpmvVisionForward(w, cfg, pixels, 448, 448, { numerics: { ...GGML_CPU_NUMERICS, geluF16Table: false } });
          p.exact = minicpmvVisionForward(w, cfg, pixels, 448, 448, { numerics: EXACT_NUMERICS });
        }
      } finally {
        await ck.close();
      }
    }
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const oneImageChunk = (r: MtmdEncodeResult): Float32Array => {
    assert.equal(r.nEmbd, cfg.embedDim);
    assert.deepEqual(
      r.chunks.map((c) => [c.type, c.nTokens, c.tokens ?? null]),
      [["text", 1, [imageStart]], ["image", cfg.queryNum, null], ["text", 1, [imageEnd]]],
    );
    const e = r.embeddings[0]!;
    assert.equal(e.length, cfg.queryNum * cfg.embedDim);
    return e;
  };

  for (const which of ["bf16", "int4"] as const) {
    test(`${release} ${which}: libmtmd loads the pair (clip.minicpmv_version ${RELEASE_CLIP_VERSION[release]}), encodes the 448x448 image; embeddings = reference (≤ ${TOL})`, async (t) => {
      const r = await mtmdEncode({ model: pairs[which].llm, mmproj: pairs[which].mmproj, image: IMAGE });
      const err = maxRelError(oneImageChunk(r), pairs[which].ref!);
      t.diagnostic(`${release} ${which}: max |llama.cpp − reference| / max |reference| = ${err.toExponential(3)}`);
      assert.ok(err <= TOL, `max relative error ${err} > ${TOL}`);
      if (which === "bf16") {
        const e = oneImageChunk(r);
        const noTable = maxRelError(e, pairs.bf16.noTable!);
        const exact = maxRelError(e, pairs.bf16.exact!);
        t.diagnostic(`${release} bf16: with the F16 GELU table emulation off ${noTable.toExponential(3)}, exact HF numerics ${exact.toExponential(3)}`);
        assert.ok(exact < 1e-2, `exact-numerics reference differs by ${exact}`);
      }
    });
  }

  test(`${release} int4 --mmproj-type q8_0: libmtmd loads and encodes it; embeddings close to the reference`, async (t) => {
    const mmproj = path.join(tmp, "int4-q8_0-mmproj.gguf");
    const p = await plan({ input: pairs.int4.dir, outtype: "q8_0", mmprojType: "q8_0", outfile: path.join(tmp, "unused.gguf"), mmprojOutfile: mmproj });
    try {
      await runPlan([p.files[1]!], {});
    } finally {
      await p.close();
    }
    const { tensorInfos } = await gguf(mmproj, { allowLocalFile: true });
    assert.ok(tensorInfos.some((x) => x.dtype === 8), "some Q8_0 tensors");
    const r = await mtmdEncode({ model: pairs.int4.llm, mmproj, image: IMAGE });
    const err = maxRelError(oneImageChunk(r), pairs.int4.ref!);
    t.diagnostic(`${release} q8_0 mmproj: ${err.toExponential(3)}`);
    assert.ok(err < 5e-2, `q8_0 embeddings differ by ${err}`);
  });

  test(`${release} bf16: llama-mtmd-cli encodes the image, decodes its ${release === "2.5" ? 96 : 64} embeddings and generates tokens`, async () => {
    const r = await mtmdCli({ model: pairs.bf16.llm, mmproj: pairs.bf16.mmproj, image: imageFile, prompt: "What is in the picture?", nPredict: 4 });
    assert.equal(r.code, 0, `llama-mtmd-cli exited ${r.signal ?? r.code}:\n${r.stderr.slice(-3000)}`);
    assert.match(r.stderr, new RegExp(`decoding image batch 1/1, n_tokens_batch = ${cfg.queryNum}\\b`));
    assert.ok(r.nEval !== undefined && r.nEval >= 1 && r.nEval <= 4, `eval runs: ${r.nEval}\n${r.stderr.slice(-2000)}`);
  });
}
