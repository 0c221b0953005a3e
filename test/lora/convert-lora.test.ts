/**
 * `convertLora`: the LoRA GGUF loads in llama.cpp (node-llama-cpp's `lora` context option) on the base F32
 * GGUF, and the next-token distribution with the adapter applied at run time equals that of an F32 GGUF of
 * the merged model — merged independently here (W + scale·B·A in float64, rounded once, written as a plain
 * f32 checkpoint and converted by ggufy's plain path) — for a Llama base (Q/K permuted) and a Qwen2 base,
 * use_rslora off and on (with rank/alpha patterns). A LoRA GGUF whose lora_b Q/K rows are left unpermuted
 * is shown to miss the bound. Plus the file's keys, tensor names, shapes and types as convert_lora_to_gguf.py
 * writes them, and refusals that leave nothing behind.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gguf as hfGguf } from "@huggingface/gguf";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyFamily, type Family } from "../../fixtures/llama3.js";
import { writePeftAdapter, type PeftAdapter } from "../../fixtures/peft.js";
import { SafetensorsCheckpoint, writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { convert } from "../../src/convert/convert.js";
import { convertLora, planLora } from "../../src/convert/lora/gguf.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { permutedSourceRow } from "../../src/models/tensors.js";
import { GgufyError } from "../../src/errors.js";
import { disposeTestLlama, logProbsAt, withModel } from "../support/llama.js";

after(disposeTestLlama);

const ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens", "lm_head"];
const IDS = [1, 300, 45, 120, 77, 400, 9, 256, 33, 500, 18, 212];
const POSITIONS = IDS.map((_, i) => i);

/** A plain f32 copy of `baseDir` with every targeted weight replaced by the float64 merge, rounded once. */
async function writeMerged(baseDir: string, dst: string, ad: PeftAdapter): Promise<void> {
  for (const f of await readdir(baseDir)) if (!f.endsWith(".safetensors")) await copyFile(path.join(baseDir, f), path.join(dst, f));
  const st = await SafetensorsCheckpoint.open(baseDir);
  try {
    const tensors: StTensor[] = [];
    for (const name of st.names()) {
      const info = st.get(name)!;
      assert.equal(info.dtype, "F32");
      const bytes = await st.read(name);
      const w = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      const t = ad.targets.find((x) => x.baseName === name);
      if (t) {
        const [rows, cols] = info.shape as [number, number];
        const r = t.rank;
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < cols; j++) {
            let acc = 0;
            // Linear: ΔW[i,j] = Σ_k B[i,k]·A[k,j]; Embedding (PEFT: (B·A)ᵀ): ΔW[v,h] = Σ_k B[h,k]·A[k,v]
            if (t.embedding) for (let k = 0; k < r; k++) acc += t.b[j * r + k]! * t.a[k * rows + i]!;
            else for (let k = 0; k < r; k++) acc += t.b[i * r + k]! * t.a[k * cols + j]!;
            w[i * cols + j] = Math.fround(w[i * cols + j]! + t.scale * acc);
          }
        }
      }
      tensors.push({ name, dtype: "F32", shape: [...info.shape], data: new Uint8Array(w.buffer) });
    }
    await writeSafetensors(path.join(dst, "model.safetensors"), tensors, { format: "pt" });
  } finally {
    await st.close();
  }
}

/** A copy of a LoRA GGUF with the Q/K lora_b rows put back in HF order (the permutation skipped). */
async function unpermuteQk(src: string, dst: string, heads: { q: number; k: number }): Promise<void> {
  const g = await readGguf(src);
  const buf = Buffer.from(await readFile(src));
  for (const t of g.tensors) {
    const m = /^blk\.\d+\.attn_(q|k)\.weight\.lora_b$/.exec(t.name);
    if (!m) continue;
    assert.equal(t.type, GGMLType.F32);
    const [r, out] = t.ne as [number, number];
    const v = new Float32Array(buf.buffer.slice(buf.byteOffset + t.fileOffset, buf.byteOffset + t.fileOffset + t.bytes));
    const orig = new Float32Array(v.length);
    const headRows = out / (m[1] === "q" ? heads.q : heads.k);
    for (let i = 0; i < out; i++) orig.set(v.subarray(i * r, (i + 1) * r), permutedSourceRow(i, headRows) * r);
    Buffer.from(orig.buffer).copy(buf, t.fileOffset);
  }
  await writeFile(dst, buf);
}

/** A copy of a LoRA GGUF with adapter.lora.alpha set to `alpha` (the f32 after the key and its type). */
async function withAlpha(src: string, dst: string, alpha: number): Promise<void> {
  const buf = Buffer.from(await readFile(src));
  const at = buf.indexOf("adapter.lora.alpha") + "adapter.lora.alpha".length;
  assert.equal(buf.readUInt32LE(at), GGUFValueType.FLOAT32);
  buf.writeFloatLE(alpha, at + 4);
  await writeFile(dst, buf);
}

function maxAbsDiff(a: readonly Float64Array[], b: readonly Float64Array[]): number {
  let m = 0;
  for (let p = 0; p < a.length; p++) for (let i = 0; i < a[p]!.length; i++) m = Math.max(m, Math.abs(a[p]![i]! - b[p]![i]!));
  return m;
}

interface Case {
  family: Family;
  rslora: boolean;
  patterns?: boolean;
}

async function runCase(c: Case, check: (r: { withLora: Float64Array[]; merged: Float64Array[]; base: Float64Array[]; dir: string; loraFile: string; baseGguf: string }) => Promise<void>): Promise<void> {
  const dir = await scratchDir("ggufy-lora-e2e-");
  try {
    const baseDir = path.join(dir, "base");
    const adDir = path.join(dir, "adapter");
    const mergedDir = path.join(dir, "merged");
    const fam = await writeTinyFamily(baseDir, c.family, { seed: 7 });
    const shapes = new Map(fam.tensors.map((t) => [t.name, t.shape]));
    const ad = await writePeftAdapter(adDir, {
      base: shapes, targetModules: ALL, r: 8, loraAlpha: 16, useRslora: c.rslora, seed: 11, bStd: 0.08,
      ...(c.patterns ? { rankPattern: { down_proj: 4, "layers\\.1\\.self_attn\\.q_proj": 2 }, alphaPattern: { o_proj: 24, k_proj: 5 } } : {}),
    });
    await (await import("node:fs/promises")).mkdir(mergedDir);
    await writeMerged(baseDir, mergedDir, ad);
    const baseGguf = path.join(dir, "base-f32.gguf");
    const mergedGguf = path.join(dir, "merged-f32.gguf");
    const loraFile = path.join(dir, "lora-f32.gguf");
    await convert({ input: baseDir, outtype: "f32", outfile: baseGguf, threads: 1 });
    await convert({ input: mergedDir, outtype: "f32", outfile: mergedGguf, threads: 1 });
    await convertLora({ adapter: adDir, base: baseDir, outtype: "f32", outfile: loraFile });
    const withLora = await withModel(baseGguf, (m) => logProbsAt(m, IDS, POSITIONS, { lora: [{ filePath: loraFile, scale: 1 }] }));
    const base = await withModel(baseGguf, (m) => logProbsAt(m, IDS, POSITIONS));
    const merged = await withModel(mergedGguf, (m) => logProbsAt(m, IDS, POSITIONS));
    await check({ withLora, merged, base, dir, loraFile, baseGguf });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const c of [
  { family: "llama3.1", rslora: false },
  { family: "llama3.1", rslora: true, patterns: true },
  { family: "qwen2.5-yarn", rslora: false, patterns: true },
  { family: "qwen2.5-yarn", rslora: true },
] as Case[]) {
  test(`llama.cpp with the LoRA GGUF = the merged F32 GGUF: ${c.family}, use_rslora ${c.rslora}${c.patterns ? ", rank/alpha patterns" : ""}`, async () => {
    await runCase(c, async ({ withLora, merged, base, dir, loraFile, baseGguf }) => {
      const d = maxAbsDiff(withLora, merged);
      const moved = maxAbsDiff(base, merged);
      assert.ok(moved > 0.05, `the adapter must matter: base vs merged differ by only ${moved}`);
      assert.ok(d <= 1e-3, `max |Δ log p| = ${d} (base vs merged: ${moved})`);
      if (process.env["GGUFY_LORA_DEBUG"]) console.log(`${c.family} rslora=${c.rslora}: lora vs merged ${d}, base vs merged ${moved}`);
      if (c.family === "llama3.1" && !c.rslora) {
        // the guard: lora_b of attn_q / attn_k without the Q/K permutation misses the bound
        const broken = path.join(dir, "lora-unpermuted.gguf");
        await unpermuteQk(loraFile, broken, { q: 4, k: 2 });
        const wrong = await withModel(baseGguf, (m) => logProbsAt(m, IDS, POSITIONS, { lora: [{ filePath: broken, scale: 1 }] }));
        const dw = maxAbsDiff(wrong, merged);
        assert.ok(dw > 1e-2, `unpermuted Q/K lora_b should differ, max |Δ log p| = ${dw}`);
        if (process.env["GGUFY_LORA_DEBUG"]) console.log(`unpermuted: ${dw}`);
        // f16 and q8_0 files (lora_b rows of r = 8 fall back to F16) load too, close to the merged model
        for (const outtype of ["f16", "q8_0"] as const) {
          const f = path.join(dir, `lora-${outtype}.gguf`);
          await convertLora({ adapter: path.join(dir, "adapter"), base: path.join(dir, "base"), outtype, outfile: f });
          const lp = await withModel(baseGguf, (m) => logProbsAt(m, IDS, POSITIONS, { lora: [{ filePath: f, scale: 1 }] }));
          const dq = maxAbsDiff(lp, merged);
          // only that llama.cpp loads them and is near: the rounding of A and B to f16 / q8_0 moves the strong update
          // (base vs merged: 4.9) by ~1e-2 / ~1e-1; exactness is the F32 file's bound above
          assert.ok(dq < (outtype === "f16" ? 0.05 : 0.5), `${outtype}: max |Δ log p| = ${dq}`);
          if (process.env["GGUFY_LORA_DEBUG"]) console.log(`${outtype}: ${dq}`);
        }
      }
      if (c.family === "llama3.1" && c.rslora) {
        // the guard: lora_alpha written as convert_lora_to_gguf.py does (use_rslora ignored) misses the bound
        const pyStyle = path.join(dir, "lora-python-alpha.gguf");
        await withAlpha(loraFile, pyStyle, 16);
        const wrong = await withModel(baseGguf, (m) => logProbsAt(m, IDS, POSITIONS, { lora: [{ filePath: pyStyle, scale: 1 }] }));
        const dw = maxAbsDiff(wrong, merged);
        assert.ok(dw > 1e-2, `alpha without rsLoRA should differ, max |Δ log p| = ${dw}`);
        if (process.env["GGUFY_LORA_DEBUG"]) console.log(`python-style alpha: ${dw}`);
      }
    });
  });
}

test("the file convert_lora_to_gguf.py writes: KVs in its order, names, shapes, types (read with @huggingface/gguf)", async () => {
  const dir = await scratchDir("ggufy-lora-keys-");
  try {
    const baseDir = path.join(dir, "base");
    const adDir = path.join(dir, "my-adapter");
    const fam = await writeTinyFamily(baseDir, "llama3.1", { seed: 3 });
    const ad = await writePeftAdapter(adDir, { base: new Map(fam.tensors.map((t) => [t.name, t.shape])), targetModules: ["q_proj", "v_proj", "embed_tokens"], r: 8, loraAlpha: 32, dtype: "BF16" });
    for (const [outtype, want] of [["f32", GGMLType.F32], ["f16", GGMLType.F16], ["bf16", GGMLType.BF16], ["q8_0", GGMLType.Q8_0]] as const) {
      const r = await convertLora({ adapter: adDir, base: baseDir, outtype });
      // default name: gguf-py naming_convention(..., output_type, model_type="LoRA") in the adapter folder
      assert.equal(path.dirname(r.path), adDir);
      assert.match(path.basename(r.path), new RegExp(`-${outtype.toUpperCase()}-LoRA\\.gguf$`));
      const { metadata: md, tensorInfos } = await hfGguf(r.path, { allowLocalFile: true });
      const metadata = md as unknown as Record<string, unknown>;
      const keys = Object.keys(metadata).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
      assert.deepEqual([keys[0], keys[1], keys[2]], ["general.architecture", "general.type", "adapter.type"]);
      assert.deepEqual(keys.slice(-2), ["adapter.lora.alpha", "general.quantization_version"]);
      assert.ok(!keys.includes("general.file_type") && !keys.includes("general.size_label"), keys.join(","));
      assert.equal(metadata["general.architecture"], "llama");
      assert.equal(metadata["general.type"], "adapter");
      assert.equal(metadata["adapter.type"], "lora");
      assert.equal(metadata["adapter.lora.alpha"], 32);
      assert.equal(metadata["general.quantization_version"], 2);
      // sorted adapter keys: model.embed_tokens < model.layers.0.self_attn.q_proj < …v_proj < layers.1 …
      const names = tensorInfos.map((t) => t.name);
      assert.deepEqual(names, [
        "token_embd.weight.lora_a", "token_embd.weight.lora_b",
        "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b",
        "blk.1.attn_q.weight.lora_a", "blk.1.attn_q.weight.lora_b", "blk.1.attn_v.weight.lora_a", "blk.1.attn_v.weight.lora_b",
      ]);
      const ne = Object.fromEntries(tensorInfos.map((t) => [t.name, t.shape.map(Number)]));
      // HF A [r, in] → ne [in, r]; B [out, r] → ne [r, out]; token_embd: Aᵀ [vocab, r] → ne [r, vocab], B [hidden, r] → ne [r, hidden]
      assert.deepEqual(ne["blk.0.attn_q.weight.lora_a"], [64, 8]);
      assert.deepEqual(ne["blk.0.attn_q.weight.lora_b"], [8, 64]);
      assert.deepEqual(ne["blk.0.attn_v.weight.lora_b"], [8, 32]);
      assert.deepEqual(ne["token_embd.weight.lora_a"], [8, 512]);
      assert.deepEqual(ne["token_embd.weight.lora_b"], [8, 64]);
      for (const t of tensorInfos) {
        // q8_0: a row of r = 8 is not a whole 32-block → F16, as gguf-py's QuantError fallback
        const expect = want === GGMLType.Q8_0 && Number(t.shape[0]) % 32 !== 0 ? GGMLType.F16 : want;
        assert.equal(t.dtype, expect, `${t.name} ${outtype}`);
      }
      await rm(r.path);
    }
    // auto: the adapter is bf16 → BF16 (the script's GUESSED heuristics), named -BF16-LoRA
    const auto = await convertLora({ adapter: adDir, base: baseDir, outtype: "auto" });
    assert.match(path.basename(auto.path), /-BF16-LoRA\.gguf$/);
    assert.ok((await readGguf(auto.path)).tensors.every((t) => t.type === GGMLType.BF16));
    await rm(auto.path);
    // activated LoRA: alora_invocation_tokens → adapter.alora.invocation_tokens (u32[]) after the alpha; llama.cpp loads it
    const alDir = path.join(dir, "alora");
    await writePeftAdapter(alDir, { base: new Map(fam.tensors.map((t) => [t.name, t.shape])), r: 4, extraConfig: { alora_invocation_tokens: [300, 45] } });
    const al = await convertLora({ adapter: alDir, base: baseDir });
    const ag = await readGguf(al.path);
    assert.deepEqual(ag.keys.slice(-3), ["adapter.lora.alpha", "adapter.alora.invocation_tokens", "general.quantization_version"]);
    const tok = ag.kvs.get("adapter.alora.invocation_tokens")!;
    assert.ok(tok.type === GGUFValueType.ARRAY && tok.itemType === GGUFValueType.UINT32 && Array.from(tok.value as ArrayLike<number>).join() === "300,45");
    const baseGguf = path.join(dir, "base.gguf");
    await convert({ input: baseDir, outtype: "f32", outfile: baseGguf, threads: 1 });
    const lp = await withModel(baseGguf, (m) => logProbsAt(m, IDS, [IDS.length - 1], { lora: [{ filePath: al.path, scale: 1 }] }));
    assert.equal(lp[0]!.length, 512);
    await writePeftAdapter(alDir, { base: new Map(fam.tensors.map((t) => [t.name, t.shape])), r: 4, extraConfig: { alora_invocation_tokens: [300, 9999] } });
    await assert.rejects(convertLora({ adapter: alDir, base: baseDir, outfile: path.join(dir, "al2.gguf") }), /alora_invocation_tokens holds 9999, beyond the base's vocab_size 512/);
    // values: lora_a of v_proj is A as stored (bf16 → f32 exactly)
    const r = await convertLora({ adapter: adDir, base: baseDir, outfile: path.join(dir, "x-{ftype}.gguf") });
    assert.equal(path.basename(r.path), "x-f32.gguf");
    const g = await readGguf(r.path);
    const va = g.tensors.find((t) => t.name === "blk.1.attn_v.weight.lora_a")!;
    const bytes = (await readFile(r.path)).subarray(va.fileOffset, va.fileOffset + va.bytes);
    assert.deepEqual(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), ad.targets.find((t) => t.baseName === "model.layers.1.self_attn.v_proj.weight")!.a);
    assert.equal(g.kvs.get("adapter.lora.alpha")!.type, GGUFValueType.FLOAT32);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("refused with one line naming the tensor, nothing left behind: DoRA, a rank mismatch, another architecture, modules_to_save", async () => {
  const dir = await scratchDir("ggufy-lora-refuse-");
  try {
    const baseDir = path.join(dir, "base");
    const fam = await writeTinyFamily(baseDir, "llama3.1", { seed: 3 });
    const shapes = new Map(fam.tensors.map((t) => [t.name, t.shape]));
    const other = path.join(dir, "other");
    const otherFam = await writeTinyFamily(other, "llama3.1", { seed: 3, sizes: { hidden: 32, heads: 2, kvHeads: 1, headDim: 16 } });
    const cases: [string, Parameters<typeof writePeftAdapter>[1], RegExp, string | undefined][] = [
      ["dora", { base: shapes, useDora: true }, /use_dora is true/, "base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector"],
      ["rank", { base: shapes, r: 8, extraConfig: { r: 16 } }, /rank mismatch/, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"],
      ["size", { base: new Map(otherFam.tensors.map((t) => [t.name, t.shape])) }, /does not fit the base/, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"],
      ["arch", { base: new Map([["transformer.h.0.attn.c_attn.weight", [96, 32]]]), targetModules: ["c_attn"] }, /base model does not have/, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"],
      ["saved", { base: shapes, modulesToSave: ["lm_head"] }, /modules_to_save replacement of 'lm_head\.weight'/, "base_model.model.lm_head.weight"],
    ];
    for (const [name, o, re, tensor] of cases) {
      const ad = path.join(dir, `ad-${name}`);
      await writePeftAdapter(ad, o);
      const before = (await readdir(ad)).sort();
      const e = await convertLora({ adapter: ad, base: baseDir, outfile: path.join(dir, `out-${name}.gguf`) }).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof GgufyError && e.code === "E_LORA", `${name}: ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"));
      if (tensor) assert.equal(e.tensor, tensor, e.message);
      assert.deepEqual((await readdir(ad)).sort(), before, `${name}: nothing written into the adapter folder`);
      assert.ok(!(await readdir(dir)).some((f) => f.startsWith(`out-${name}`) || f.includes("ggufy-tmp")), `${name}: no output or temp file`);
    }
    // a tied base has no lm_head; a NaN in lora_B stops the write (E_NONFINITE), no output or temp file
    const tied = path.join(dir, "tied");
    const tiedFam = await writeTinyFamily(tied, "llama3.2", { seed: 3 });
    const adTied = path.join(dir, "ad-tied");
    await writePeftAdapter(adTied, { base: shapes, targetModules: ["lm_head"] });
    assert.ok(tiedFam.tied);
    await assert.rejects(convertLora({ adapter: adTied, base: tied, outfile: path.join(dir, "out-tied.gguf") }), (e: unknown) => e instanceof GgufyError && e.tensor === "base_model.model.lm_head.lora_A.weight" && /the base has no lm_head \(its output layer is tied/.test(e.message));
    const adNan = path.join(dir, "ad-nan");
    await writePeftAdapter(adNan, { base: shapes, targetModules: ["v_proj"], bStd: Number.NaN });
    await assert.rejects(convertLora({ adapter: adNan, base: baseDir, outfile: path.join(dir, "out-nan.gguf") }), (e: unknown) => e instanceof GgufyError && e.code === "E_NONFINITE" && /lora_B\.weight/.test(e.message));
    assert.ok(!(await readdir(dir)).some((f) => f.startsWith("out-") || f.includes("ggufy-tmp")), (await readdir(dir)).join(","));
    // the plan alone names every target and what was done to it
    const ad = path.join(dir, "ad-plan");
    await writePeftAdapter(ad, { base: shapes, r: 4, loraAlpha: 8, useRslora: true, rankPattern: { v_proj: 2 } });
    const p = await planLora({ adapter: ad, base: baseDir });
    try {
      assert.equal(p.alpha, 8 * 2);
      const q = p.targets.find((t) => t.gguf === "blk.0.attn_q.weight")!;
      assert.equal(q.permuteHeads, 4);
      assert.equal(q.bFactor, 1);
      const k = p.targets.find((t) => t.gguf === "blk.0.attn_k.weight")!;
      assert.equal(k.permuteHeads, 2);
      const v = p.targets.find((t) => t.gguf === "blk.0.attn_v.weight")!;
      // PEFT: 8/√2; llama.cpp: 16/2 → lora_b × (8/√2)/8
      assert.equal(v.permuteHeads, undefined);
      assert.ok(Math.abs(v.bFactor - 1 / Math.SQRT2) < 1e-6, String(v.bFactor));
    } finally {
      await p.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
