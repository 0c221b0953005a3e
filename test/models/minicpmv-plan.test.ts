/**
 * MiniCPM-V 2.6 at full size, planned from headers only: the real 789 keys and shapes (fixtures/minicpmv.ts
 * writeMinicpmvHeaderOnly, sparse shards — nothing is read). Checks the plan (and `--dry-run --json`) against
 * the expectations of docs/minicpmv.md: 339 LLM tensors, 455 mmproj tensors (names, shapes, types), and
 * llama-quantize's Q4_K_M mixture (src/llama-quant.cpp: 29 q6_K, 169 q4_K, 141 f32).
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { plan, type Plan } from "../../src/convert/convert.js";
import { main } from "../../src/cli/main.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { planFile, type PlannedFile, type PlanOptions } from "../../src/convert/plan.js";
import { MINICPMV_26_DIMS, readRealMinicpmvIndex, specLlmTensors, specMmprojTensors, specMmprojType, writeMinicpmvHeaderOnly, type SpecType } from "../../fixtures/minicpmv.js";

let tmp = "";
let dir = "";
/** plan() once (Q4_K_M); other option sets re-plan its models with planFile (loading the 151k-token vocabulary takes seconds) */
let q4km: Plan;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-minicpmv-plan-"));
  dir = path.join(tmp, "MiniCPM-V-2_6");
  await writeMinicpmvHeaderOnly(dir);
  q4km = await plan({ input: dir, outtype: "Q4_K_M" });
});
after(async () => {
  await q4km?.source.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function planFiles(opts: PlanOptions): Promise<PlannedFile[]> {
  if (opts.outtype === "Q4_K_M" && opts.mmprojType === undefined) return q4km.files;
  const llm = planFile({ model: q4km.models[0]!, modelDir: dir, opts });
  const base = path.basename(llm.path).replace(/-[^-]+\.gguf$/, "");
  return [llm, planFile({ model: q4km.models[1]!, modelDir: dir, opts, baseName: base })];
}

function tally(f: PlannedFile): Record<string, number> {
  const c: Record<string, number> = {};
  for (const t of f.tensors) c[typeName(t.type)] = (c[typeName(t.type)] ?? 0) + 1;
  return c;
}

test("the fixture holds the real index: 789 keys, real shapes reproduce total_size", async () => {
  const real = await readRealMinicpmvIndex();
  assert.equal(Object.keys(real.weightMap).length, 789);
  const h = await writeMinicpmvHeaderOnly(path.join(tmp, "again"));
  assert.equal(h.keys.length, 789);
  assert.equal(h.totalSize, real.totalSize);
  assert.deepEqual(h.files, ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"]);
});

test("Q4_K_M: 339 LLM tensors (29 q6_K, 169 q4_K, 141 f32) and 455 mmproj tensors (f16 default)", async () => {
  const files = await planFiles({ outtype: "Q4_K_M" });
  assert.equal(files.length, 2);
  const [llm, mm] = files as [PlannedFile, PlannedFile];
  assert.equal(llm.role, "model");
  assert.equal(mm.role, "mmproj");
  assert.equal(llm.tensors.length, 339);
  assert.equal(mm.tensors.length, 455);
  assert.deepEqual(tally(llm), { q6_K: 29, q4_K: 169, f32: 141 });
  assert.deepEqual(tally(mm), { f32: 285, f16: 170 });
  assert.equal(llm.fileType, 15);
  assert.equal(mm.fileType, 1);
  // naming is plan.ts's (gguf-py convention); here only: size label 7.6B, preset suffix, mmproj beside it
  assert.match(path.basename(llm.path), /-7\.6B-(.*-)?Q4_K_M\.gguf$/);
  assert.equal(path.basename(mm.path), "mmproj-" + path.basename(llm.path).replace(/-Q4_K_M\.gguf$/, "-f16.gguf"));
  // q6_K exactly on attn_v / ffn_down of the use_more_bits layers, and output.weight
  const more = new Set([0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
  for (const t of llm.tensors) {
    const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(t.out.name);
    const want = t.out.name === "output.weight" || (m && more.has(Number(m[1]))) ? "q6_K" : t.out.ne.length === 1 ? "f32" : "q4_K";
    assert.equal(typeName(t.type), want, t.out.name);
  }
});

test("LLM: the 339 names and shapes of the Qwen2 conversion; F16 gives 141 f32 + 198 f16", async () => {
  const files = await planFiles({ outtype: "f16" });
  const llm = files[0]!;
  const spec = new Map(specLlmTensors(MINICPMV_26_DIMS).map((t) => [t.name, t]));
  assert.equal(spec.size, 339);
  assert.equal(llm.tensors.length, 339);
  for (const t of llm.tensors) {
    const s = spec.get(t.out.name);
    assert.ok(s, `unexpected ${t.out.name}`);
    assert.deepEqual([...t.out.ne], s.ne, t.out.name);
    assert.deepEqual([...t.out.sources], [s.source], t.out.name);
  }
  assert.deepEqual(tally(llm), { f32: 141, f16: 198 });
  const kv = new Map(llm.kvs.map((k) => [k.key, k.value]));
  assert.equal(kv.get("general.architecture")?.value, "qwen2");
  assert.equal(kv.get("qwen2.block_count")?.value, 28);
  assert.equal(kv.get("qwen2.embedding_length")?.value, 3584);
  assert.equal(kv.get("qwen2.attention.head_count_kv")?.value, 4);
  assert.equal(kv.get("qwen2.rope.freq_base")?.value, 1_000_000);
  assert.equal((kv.get("tokenizer.ggml.tokens")?.value as ArrayLike<string>).length, 151666);
});

for (const mmprojType of ["f16", "f32", "q8_0"] as const) {
  test(`mmproj ${mmprojType}: names, order, shapes and types of the image-encoder script`, async () => {
    const files = await planFiles({ outtype: "f16", mmprojType });
    const mm = files[1]!;
    const spec = specMmprojTensors(MINICPMV_26_DIMS);
    assert.equal(spec.length, 455);
    assert.deepEqual(mm.tensors.map((t) => t.out.name), spec.map((s) => s.name));
    for (let i = 0; i < spec.length; i++) {
      const t = mm.tensors[i]!;
      assert.deepEqual([...t.out.ne], spec[i]!.ne, t.out.name);
      assert.equal(typeName(t.type), specMmprojType(spec[i]!, mmprojType as SpecType), t.out.name);
    }
    const want: Record<string, Record<string, number>> = {
      f16: { f32: 285, f16: 170 },
      f32: { f16: 1, f32: 454 },
      q8_0: { f32: 285, q8_0: 141, f16: 29 },
    };
    assert.deepEqual(tally(mm), want[mmprojType]);
    assert.equal(mm.fileType, { f16: 1, f32: 0, q8_0: 7 }[mmprojType]);
    assert.ok(path.basename(mm.path).endsWith(`-${mmprojType}.gguf`), mm.path);
  });
}

test("--mmproj-type other than f16/f32/q8_0 is a usage error", async () => {
  await assert.rejects(planFiles({ outtype: "f16", mmprojType: "q4_0" }), (e: Error & { code?: string }) => e.code === "E_USAGE");
});

test("ggufy convert --dry-run --json lists both files without reading weights", async () => {
  let out = "";
  let err = "";
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
  const rc = await main(["convert", dir, "--outtype", "Q4_K_M", "--dry-run", "--json"], {
    stdout: sink((s) => (out += s)) as never,
    stderr: sink((s) => (err += s)) as never,
  });
  assert.equal(rc, 0, err);
  const j = JSON.parse(out) as { files: { role: string; tensors: { name: string; type: string; shape: number[] }[] }[] };
  assert.deepEqual(j.files.map((f) => [f.role, f.tensors.length]), [["model", 339], ["mmproj", 455]]);
  const count = (ts: { type: string }[], ty: string) => ts.filter((t) => t.type === ty).length;
  assert.deepEqual([count(j.files[0]!.tensors, "q6_K"), count(j.files[0]!.tensors, "q4_K"), count(j.files[0]!.tensors, "f32")], [29, 169, 141]);
  const pk = j.files[1]!.tensors.find((t) => t.name === "resampler.pos_embed_k")!;
  assert.deepEqual(pk, { ...pk, type: "f32", shape: [3584, 4900] });
  const fc2 = j.files[1]!.tensors.find((t) => t.name === "v.blk.26.ffn_up.weight")!;
  assert.deepEqual(fc2.shape, [4304, 1152]);
});
