/**
 * `convert --lora` (issue 16 item 2) on a plain bf16 Llama base (permuted Q/K): the merged F32 GGUF's
 * targeted tensors equal an independent float64 merge (test/lora/merge-support.ts, from PEFT's formulas;
 * rounded once, then llama.cpp's permutation for Q/K) within 1 ulp; every other tensor is byte-identical
 * to the plain conversion; two adapters (the second with --lora-scale, use_rslora, modules_to_save), an
 * embedding LoRA; `--dry-run` lists what is merged; `verify --lora` accepts the merged file and plain
 * verify rejects it.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, verify, plan } from "../../src/index.js";
import { main } from "../../src/cli/main.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { writePeftAdapter, baseShapesOf } from "../../fixtures/peft.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { asF32, captureIO, decodedBase, ggufNameOf, ggufTensors, independentMerge, maxUlp, permuteRows } from "./merge-support.js";

const tmp = await scratchDir("ggufy-lora-merge-");
after(() => rm(tmp, { recursive: true, force: true }));

const baseDir = path.join(tmp, "base");
const fam = await writeTinyFamily(baseDir, "llama3.1", { dtype: "BF16", seed: 161 });
const shapes = await baseShapesOf(baseDir);
const a1 = await writePeftAdapter(path.join(tmp, "a1"), {
  base: shapes, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens"], r: 8, loraAlpha: 16, seed: 1,
});
const a2 = await writePeftAdapter(path.join(tmp, "a2"), {
  base: shapes, targetModules: ["q_proj", "down_proj"], r: 4, loraAlpha: 8, useRslora: true, modulesToSave: ["lm_head"], seed: 2, keyStyle: "adapter-name", dtype: "BF16",
});
const plainF32 = path.join(tmp, "plain-f32.gguf");
const mergedF32 = path.join(tmp, "merged-f32.gguf");
await convert({ input: baseDir, outfile: plainF32, outtype: "f32", threads: 1 });
// the CLI path: --lora DIR, --lora DIR --lora-scale S
const run = captureIO();
const rc = await main(["convert", baseDir, "--outtype", "f32", "--outfile", mergedF32, "--lora", a1.dir, "--lora", a2.dir, "--lora-scale", "0.5", "--threads", "2", "--quiet"], run.io);
assert.equal(rc, 0, run.err());

test("merged F32: targeted tensors = independent float64 merge (rounded once, then permuted) within 1 ulp; untargeted byte-identical to the plain conversion", async () => {
  const base = await decodedBase(baseDir);
  const want = independentMerge(base, [{ adapter: a1 }, { adapter: a2, scale: 0.5 }]);
  // every linear of both layers, the embedding and lm_head (modules_to_save)
  assert.equal(want.size, 2 * 7 + 2);
  const merged = await ggufTensors(mergedF32);
  const plainT = await ggufTensors(plainF32);
  assert.deepEqual([...merged.bytes.keys()], [...plainT.bytes.keys()]);
  const changed = new Set<string>();
  let worst = 0;
  let differing = 0;
  for (const [hf, w] of want) {
    const s = base.get(hf)!.shape;
    const g = ggufNameOf(hf);
    changed.add(g);
    const nHead = /attn_q/.test(g) ? fam.sizes.heads : /attn_k/.test(g) ? fam.sizes.kvHeads : 0;
    const expect = nHead ? permuteRows(w, s[0]!, s[1]!, nHead) : w;
    const got = asF32(merged.bytes.get(g)!);
    const u = maxUlp(got, expect);
    assert.ok(u.max <= 1, `${g}: ${u.max} ulp at ${u.at} (got ${got[u.at]}, want ${expect[u.at]})`);
    worst = Math.max(worst, u.max);
    // the merge really changed it
    const p = asF32(plainT.bytes.get(g)!);
    for (let i = 0; i < p.length; i++) if (p[i] !== got[i]) differing++;
  }
  assert.ok(differing > 0.9 * [...want.values()].reduce((a, v) => a + v.length, 0), `most merged values differ from the base (${differing})`);
  for (const [name, b] of plainT.bytes) {
    if (changed.has(name)) continue;
    assert.deepEqual(merged.bytes.get(name), b, `${name} is byte-identical to the plain conversion`);
  }
  assert.ok(changed.has("token_embd.weight") && changed.has("output.weight"));
  // the check discriminates the merge's place: merging after the Q/K permutation (ΔW's rows not permuted,
  // permute(W) + ΔW) would be far from the file
  const q = "model.layers.0.self_attn.q_proj.weight";
  const w0 = base.get(q)!;
  const pw = permuteRows(w0.values, w0.shape[0]!, w0.shape[1]!, fam.sizes.heads);
  const m = want.get(q)!;
  const afterPerm = Float32Array.from(pw, (x, i) => x + (m[i]! - w0.values[i]!));
  assert.ok(maxUlp(asF32(merged.bytes.get("blk.0.attn_q.weight")!), afterPerm).max > 1000);
  assert.ok(worst <= 1);
});

test("--dry-run lists every merged tensor with its adapters; --json carries them", async () => {
  const c = captureIO();
  assert.equal(await main(["convert", baseDir, "--outtype", "f32", "--dry-run", "--lora", a1.dir, "--lora", a2.dir, "--lora-scale", "0.5"], c.io), 0, c.err());
  const o = c.out();
  assert.match(o, /lora: .*a1 \(scale 1\): 15 target\(s\), 0 modules_to_save/);
  assert.match(o, /lora: .*a2 \(scale 0\.5\): 4 target\(s\), 1 modules_to_save/);
  assert.match(o, /merged model\.layers\.0\.self_attn\.q_proj\.weight: \+ r8 ×2\.0 \(.*a1\), \+ r4 ×2\.0 \(.*a2\)/); // rsLoRA: 8/√4 = 4, × 0.5
  assert.match(o, /replaced lm_head\.weight: replaced by base_model\.model\.lm_head\.modules_to_save\.default\.weight/);
  assert.match(o, /merged model\.embed_tokens\.weight: \+ r8 ×2\.0/);
  assert.match(o, /lora: 16 base tensor\(s\) changed/);
  // the plan lines say it too
  assert.match(o, /blk\.0\.attn_q\.weight .*bf16 \+ lora r8\/4/);
  assert.doesNotMatch(o, /blk\.0\.attn_norm\.weight .*lora/);
  const j = captureIO();
  assert.equal(await main(["convert", baseDir, "--dry-run", "--json", "--lora", a1.dir], j.io), 0, j.err());
  const parsed = JSON.parse(j.out()) as { lora: { tensors: { tensor: string; kind: string }[] } };
  assert.equal(parsed.lora.tensors.length, 15);
  // the library's plan has the same summary
  const p = await plan({ input: baseDir, outtype: "f32", lora: [{ dir: a1.dir }, { dir: a2.dir, scale: 0.5 }] });
  await p.close();
  assert.equal(p.lora?.tensors.length, 16);
});

test("verify --lora: the merged file matches base + adapters; plain verify and a wrong scale reject it", async () => {
  const ok = await verify(mergedF32, baseDir, { lora: [{ dir: a1.dir }, { dir: a2.dir, scale: 0.5 }] });
  assert.ok(ok.ok, JSON.stringify(ok.failures.slice(0, 3)));
  const plainV = await verify(mergedF32, baseDir);
  assert.equal(plainV.ok, false);
  const wrong = await verify(mergedF32, baseDir, { lora: [{ dir: a1.dir }, { dir: a2.dir, scale: 0.25 }] });
  assert.equal(wrong.ok, false);
  const bad = wrong.tensors.filter((t) => !t.ok).map((t) => t.name).sort();
  // the tensors a2 touches: q_proj, down_proj of both layers and lm_head
  assert.deepEqual(bad, ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"].sort());
  const c = captureIO();
  assert.equal(await main(["verify", mergedF32, baseDir, "--quiet", "--lora", a1.dir, "--lora", a2.dir, "--lora-scale", "0.5"], c.io), 0, c.err());
});

test("--lora / --lora-scale usage errors", async () => {
  for (const [args, re] of [
    [["--lora-scale", "2", "--lora", a1.dir], /give it after the --lora/],
    [["--lora", a1.dir, "--lora-scale", "x"], /--lora-scale x: expected a finite number/],
    [["--lora", a1.dir, "--lora-scale", "1", "--lora-scale", "2"], /already has a scale/],
    [["--lora"], /--lora needs a value/],
  ] as [string[], RegExp][]) {
    const c = captureIO();
    assert.equal(await main(["convert", baseDir, "--dry-run", ...args], c.io), 64, args.join(" "));
    assert.match(c.err(), re);
  }
});
