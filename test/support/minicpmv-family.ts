/**
 * The checks every MiniCPM-V release gets (test/models/minicpmv-family-*.test.ts, one file per release so each
 * stays well under a minute): a tiny checkpoint of the release (fixtures/minicpmv.ts, its real key names,
 * config field set and tokenizer), in bf16 and in the int4 release's bitsandbytes layout, converts in one
 * `convert()` call to the LLM + mmproj pair;
 * - the mmproj has exactly the legacy image-encoder script's KVs for that release (clip.minicpmv_version,
 *   clip.minicpmv_query_num, widths) and its tensors in its order (specMmprojKvs / specMmprojTensors, written
 *   from tools/mtmd/legacy-models/minicpmv-convert-image-encoder-to-gguf.py, independently of src/models);
 * - the LLM has the architecture and tensors convert_hf_to_gguf.py writes for the release's LLM class;
 * - the int4 pair at F32 equals bitsandbytes' decoding bit for bit (both files; the 4-D patch kernel is F16 by
 *   the script's rule: the decoded value rounded to F16), the bf16 pair equals the bf16 values widened.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf, GGUFValueType } from "@huggingface/gguf";
import { convert } from "../../src/convert/convert.js";
import { f32BitsToF16 } from "../../src/formats/half.js";
import { bitsOf, decodedTensor, ggufTensors, openDecodedCheckpoint, sameBits, type DecodedCheckpoint } from "./int4-bitexact.js";
import {
  MINICPMO_EXTRA_KEYS, RELEASE_CLIP_VERSION, releaseLlm, specLlmTensors, specMmprojKvs, specMmprojTensors, specPosEmbedK, tinyMinicpmvDims,
  writeTinyMinicpmv, writeTinyMinicpmvInt4, type MinicpmvDims, type MinicpmvReleaseId,
} from "../../fixtures/minicpmv.js";

/** A converted checkpoint: its folder, the F32 pair, the warnings, and the decoder's view of its tensors. */
export interface Converted extends DecodedCheckpoint {
  llm: string;
  mmproj: string;
  warnings: string[];
}

export { decodedTensor, ggufTensors };

/**
 * convert_hf_to_gguf.py LlamaModel.permute: reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2): output row
 * h·hd + 2i + j is input row h·hd + j·hd/2 + i.
 */
function unpermute(w: Float32Array, cols: number, nHead: number): Float32Array {
  const rows = w.length / cols;
  const hd = rows / nHead;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++) for (let i = 0; i < hd / 2; i++) for (let j = 0; j < 2; j++) {
    out.set(w.subarray((h * hd + j * (hd / 2) + i) * cols, (h * hd + j * (hd / 2) + i + 1) * cols), (h * hd + 2 * i + j) * cols);
  }
  return out;
}


/** Convert `dir` to the F32 pair in one convert() call (outtype f32, mmproj-type f32). */
export async function convertPair(dir: string, outDir: string, tag: string, extra: { minicpmvVersion?: number } = {}): Promise<Converted> {
  const llm = path.join(outDir, `${tag}-llm-f32.gguf`);
  const mmproj = path.join(outDir, `${tag}-mmproj-f32.gguf`);
  const warnings: string[] = [];
  const r = await convert({ input: dir, outtype: "f32", mmprojType: "f32", outfile: llm, mmprojOutfile: mmproj, threads: 2, onWarning: (m) => warnings.push(m), ...extra });
  assert.deepEqual(r.files.map((f) => path.resolve(f.path)), [llm, mmproj]);
  return { ...(await openDecodedCheckpoint(dir)), llm, mmproj, warnings };
}

/** The LLM file: exactly specLlmTensors (names, shapes, F32) with the decoder's values, and the architecture. */
export async function checkLlm(c: Converted, d: MinicpmvDims): Promise<void> {
  const meta = await gguf(c.llm, { allowLocalFile: true });
  assert.equal(meta.metadata["general.architecture"], releaseLlm(d.release ?? "2.6"));
  const spec = new Map(specLlmTensors(d).map((t) => [t.name, t]));
  let n = 0;
  for await (const t of ggufTensors(c.llm)) {
    const s = spec.get(t.name);
    assert.ok(s, `unexpected ${t.name}`);
    assert.deepEqual(t.ne, s.ne, t.name);
    assert.equal(t.dtype, 0, `${t.name} is F32`);
    let want = await decodedTensor(c, s.source);
    if (s.permuteHeads !== undefined) want = unpermute(want, s.ne[0]!, s.permuteHeads);
    assert.ok(sameBits(t.bits, bitsOf(want)), `${t.name} differs from the decoded ${s.source}`);
    n++;
  }
  assert.equal(n, spec.size);
}

/** The mmproj file: exactly the legacy script's KVs (types, values, order) and tensors (order, shapes), values through the mapping. */
export async function checkMmproj(c: Converted, d: MinicpmvDims): Promise<void> {
  const r = await gguf(c.mmproj, { allowLocalFile: true, typedMetadata: true });
  const keys = Object.keys(r.typedMetadata).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  const spec = specMmprojKvs(d, { fileType: 0 });
  const T: Record<string, number> = { bool: GGUFValueType.BOOL, u32: GGUFValueType.UINT32, i32: GGUFValueType.INT32, f32: GGUFValueType.FLOAT32, str: GGUFValueType.STRING, "f32[]": GGUFValueType.ARRAY };
  assert.deepEqual(keys, spec.map((s) => s.key));
  for (const s of spec) {
    const m = r.typedMetadata[s.key] as { type: number; value: unknown };
    assert.equal(m.type, T[s.type], `${s.key} type`);
    assert.deepEqual(m.value, s.value, s.key);
  }
  const ts = specMmprojTensors(d);
  assert.deepEqual(r.tensorInfos.map((t) => t.name), ts.map((t) => t.name));
  const byName = new Map(ts.map((t) => [t.name, t]));
  const E = d.llm.hidden;
  for await (const t of ggufTensors(c.mmproj)) {
    const s = byName.get(t.name)!;
    assert.deepEqual(t.ne, s.ne, t.name);
    if (s.how === "sincos") {
      const f = new Float32Array(t.bits.buffer);
      for (let i = 0; i < f.length; i += 97) assert.ok(Math.abs(f[i]! - specPosEmbedK(E, Math.floor(i / E), i % E)) <= 1e-6, `pos_embed_k[${i}]`);
      continue;
    }
    const src = await decodedTensor(c, s.source!);
    let want: Float32Array;
    if (s.how === "copy") want = src;
    else if (s.how === "transpose") {
      const [a, b] = [s.ne[0]!, s.ne[1]!];
      want = new Float32Array(a * b);
      for (let j = 0; j < b; j++) for (let i = 0; i < a; i++) want[j * a + i] = src[i * b + j]!;
    } else {
      const k = Number(s.how.slice(5));
      const len = src.length / 3;
      want = src.slice(k * len, (k + 1) * len);
    }
    if (t.ne.length === 4) {
      assert.equal(t.dtype, 1, t.name);
      const w = bitsOf(want);
      const h = new Uint16Array(w.length);
      for (let i = 0; i < w.length; i++) h[i] = f32BitsToF16(w[i]!);
      assert.ok(sameBits(t.bits, h), t.name);
    } else {
      assert.equal(t.dtype, 0, `${t.name} is F32`);
      assert.ok(sameBits(t.bits, bitsOf(want)), `${t.name} differs from the decoded ${s.source}`);
    }
  }
}

/** Register the family checks of one release. */
export function familyTests(release: MinicpmvReleaseId): void {
  const d = tinyMinicpmvDims(release);
  let tmp = "";
  let bf16: Converted;
  let int4: Converted;
  let quantized: string[] = [];
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), `ggufy-minicpmv-${release}-`));
    const src = path.join(tmp, "bf16");
    const q = path.join(tmp, "int4");
    await writeTinyMinicpmv(src, { release });
    quantized = await writeTinyMinicpmvInt4(src, q);
    bf16 = await convertPair(src, tmp, "bf16");
    int4 = await convertPair(q, tmp, "int4");
  });
  after(async () => {
    await bf16?.st.close();
    await int4?.st.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test(`${release}: the int4 fixture is bitsandbytes NF4 where the int4 releases quantize (LLM and vision Linear layers${release === "o-2.6" ? ", audio and TTS" : ""})`, () => {
    assert.ok(quantized.some((n) => n.startsWith("llm.model.layers.0.mlp.")), "LLM MLP quantized");
    assert.ok(quantized.some((n) => /^vpm\.encoder\.layers\.0\.mlp\.fc1/.test(n)), "vision fc1 quantized");
    assert.ok(!quantized.some((n) => /out_proj|kv_proj|lm_head/.test(n)), "skip modules stay bf16");
    if (release === "o-2.6") assert.ok(quantized.includes("apm.layers.0.fc1.weight"), "the audio encoder is quantized too");
    assert.equal(int4.mods.size, quantized.length);
  });

  for (const kind of ["bf16", "int4"] as const) {
    test(`${release} ${kind}: mmproj = the legacy script's KVs (clip.minicpmv_version ${RELEASE_CLIP_VERSION[release]}, query_num ${d.queryNum}) and tensors, values exact`, async () => {
      await checkMmproj(kind === "bf16" ? bf16 : int4, d);
    });
    test(`${release} ${kind}: LLM = the ${releaseLlm(release)} tensors convert_hf_to_gguf.py writes, values exact`, async () => {
      await checkLlm(kind === "bf16" ? bf16 : int4, d);
    });
  }

  if (release === "o-2.6") {
    test("o-2.6: the audio encoder, audio projection and TTS are skipped, named in one warning with their tensor counts", () => {
      for (const c of [bf16, int4]) {
        const w = c.warnings.filter((m) => m.includes("not converted"));
        assert.equal(w.length, 1, c.warnings.join("\n"));
        const count = (p: string) => MINICPMO_EXTRA_KEYS.filter((k) => k.startsWith(p + ".")).length;
        for (const m of ["apm", "audio_projection_layer", "tts"]) assert.ok(w[0]!.includes(`${m} (${count(m)} tensors)`), `${m} in: ${w[0]}`);
      }
    });
  } else {
    test(`${release}: no warning about the release (it is read from config.json version)`, () => {
      for (const c of [bf16, int4]) assert.ok(!c.warnings.some((m) => /minicpmv_version|not converted/.test(m)), c.warnings.join("\n"));
    });
  }
}

// ------------------------------------------------------------------------------------------------------------
// llama.cpp's multimodal runtime (test/support/mtmd.ts) on each release's pair

/** The id of an added token in a fixture folder's tokenizer files (tokenizer.json added_tokens, tokenizer_config added_tokens_decoder, added_tokens.json). */
export async function addedTokenId(dir: string, content: string): Promise<number> {
  const read = async (f: string): Promise<unknown> => JSON.parse(await readFile(path.join(dir, f), "utf8").catch(() => "null"));
  const tj = (await read("tokenizer.json")) as { added_tokens?: { id: number; content: string }[] } | null;
  const hit = tj?.added_tokens?.find((t) => t.content === content);
  if (hit) return hit.id;
  const tc = (await read("tokenizer_config.json")) as { added_tokens_decoder?: Record<string, { content: string }> } | null;
  for (const [id, t] of Object.entries(tc?.added_tokens_decoder ?? {})) if (t.content === content) return Number(id);
  const at = (await read("added_tokens.json")) as Record<string, number> | null;
  if (at && typeof at[content] === "number") return at[content]!;
  throw new Error(`${content} is not an added token in ${dir}`);
}
