/**
 * verify: a correct Q4_K_M conversion of the tiny Qwen2 passes with per-type error figures where each type puts
 * them; a copy with one tensor's bytes altered and one tensor missing fails, naming both (library and CLI, exit 3).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { open, rm, stat } from "node:fs/promises";
import path from "node:path";
import { convert, plan, verify, readGguf, readGgufTensorBytes, GgufyError, type VerifyResult } from "../../src/index.js";
import { GGUFStreamWriter } from "../../src/formats/gguf/writer.js";
import type { GGUFKV } from "../../src/formats/gguf/types.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { cli } from "./helpers.js";

let tmp = "";
let dir = "";
let good = "";
let bad = "";
const CORRUPTED = "blk.0.ffn_up.weight";
const MISSING = "blk.1.attn_k.bias";

/** Copy a GGUF without one tensor and with a 4 KiB range of another tensor's bytes inverted. */
async function writeDamagedCopy(src: string, dst: string): Promise<void> {
  const g = await readGguf(src);
  const kvs: GGUFKV[] = g.keys.map((key) => ({ key, value: g.kvs.get(key)! }));
  const tensors = g.tensors.filter((t) => t.name !== MISSING);
  const fh = await open(dst, "w");
  try {
    const w = new GGUFStreamWriter({ write: async (b) => void (await fh.write(b)) }, kvs, tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type })));
    await w.start();
    for (const t of tensors) {
      const bytes = await readGgufTensorBytes(g, t);
      if (t.name === CORRUPTED) {
        const mid = Math.floor(bytes.length / 2);
        for (let i = mid; i < mid + 4096; i++) bytes[i] = bytes[i]! ^ 0xff;
      }
      await w.write(bytes);
    }
    w.finish();
  } finally {
    await fh.close();
  }
}

before(async () => {
  tmp = await scratchDir("ggufy-verify-");
  dir = path.join(tmp, "tiny-qwen2");
  await writeTinyQwen2(dir, { layers: 2, hidden: 256, tied: true, dtype: "F32", seed: 11 });
  good = path.join(tmp, "good-Q4_K_M.gguf");
  await convert({ input: dir, outtype: "Q4_K_M", outfile: good });
  bad = path.join(tmp, "bad.gguf");
  await writeDamagedCopy(good, bad);
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

let goodResult: VerifyResult | undefined;

test("a correct Q4_K_M conversion passes, with per-type errors in their expected ranges", async () => {
  const events: number[] = [];
  const r = await verify(good, dir, { onProgress: (e) => events.push(e.bytesDone / e.bytesTotal) });
  goodResult = r;
  assert.equal(r.ok, true, r.failures.join("\n"));
  assert.equal(r.outtype, "Q4_K_M");
  assert.equal(r.fileType, 15);
  assert.deepEqual([r.missing, r.unexpected, r.kvDifferences, r.failures], [[], [], [], []]);
  assert.equal(r.tensors.length, 26);
  // progress is monotonic and ends at 100%
  for (let i = 1; i < events.length; i++) assert.ok(events[i]! >= events[i - 1]!);
  assert.equal(events.at(-1), 1);
  const s = new Map(r.summary.map((x) => [x.type, x]));
  assert.deepEqual([...s.keys()].sort(), ["f32", "q4_K", "q6_K"]);
  // F32 copies are exact
  assert.equal(s.get("f32")!.maxRelRmse, 0);
  assert.equal(s.get("f32")!.minCosine, 1);
  for (const t of r.tensors.filter((x) => x.type === "f32")) assert.equal(t.exact, true, t.name);
  // Gaussian weights: q4_K ≈ 0.07 relative RMSE, q6_K ≈ 0.018
  const q4 = s.get("q4_K")!;
  const q6 = s.get("q6_K")!;
  assert.ok(q4.tensors >= 10 && q6.tensors >= 3, JSON.stringify(r.summary));
  assert.ok(q4.meanRelRmse > 0.05 && q4.maxRelRmse < 0.1, `q4_K ${q4.meanRelRmse} … ${q4.maxRelRmse}`);
  assert.ok(q6.meanRelRmse > 0.01 && q6.maxRelRmse < 0.03, `q6_K ${q6.meanRelRmse} … ${q6.maxRelRmse}`);
  assert.ok(q4.minCosine > 0.995 && q6.minCosine > 0.9995);
  for (const t of r.tensors) {
    assert.ok(t.relRmse <= t.bound.relRmse && t.relMaxAbs <= t.bound.relMaxAbs, t.name);
    assert.ok(Number.isFinite(t.rmse) && Number.isFinite(t.maxAbsErr) && Number.isFinite(t.cosine), t.name);
    assert.equal(t.type, t.plannedType, t.name);
    assert.deepEqual(t.shape, t.plannedShape, t.name);
  }
  // the tied model's embedding is the output: llama-quantize gives it q6_K
  assert.equal(r.tensors.find((t) => t.name === "token_embd.weight")!.type, "q6_K");
});

test("the dry run announced the file's size", async () => {
  const p = await plan({ input: dir, outtype: "Q4_K_M", outfile: good });
  try {
    assert.equal(p.files[0]!.header.fileSize, (await stat(good)).size);
  } finally {
    await p.close();
  }
});

test("one tensor's bytes altered and one tensor missing: fails and names both", async () => {
  const r = await verify(bad, dir);
  assert.equal(r.ok, false);
  assert.deepEqual(r.missing, [MISSING]);
  assert.deepEqual(r.unexpected, []);
  const failed = r.tensors.filter((t) => !t.ok).map((t) => t.name);
  assert.deepEqual(failed, [CORRUPTED]);
  const c = r.tensors.find((t) => t.name === CORRUPTED)!;
  assert.ok(c.relRmse > 10 * c.bound.relRmse || c.nonFinite > 0, JSON.stringify(c));
  assert.ok(r.failures.some((f) => f.startsWith(`${CORRUPTED}: `)));
  assert.ok(r.failures.includes(`${MISSING}: missing from the file`));
  // every other tensor still measures like the good file
  for (const t of r.tensors.filter((x) => x.name !== CORRUPTED)) {
    const g = goodResult?.tensors.find((x) => x.name === t.name);
    if (g) assert.equal(t.relRmse, g.relRmse, t.name);
  }
});

test("CLI: exit 0 and a per-tensor table for the good file; exit 3 naming the tensors for the damaged one", async () => {
  const ok = await cli(["verify", good, dir]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ {2}blk\.0\.ffn_up\.weight +q4_K +\S+ +\S+ +0\.99\d+ +ok$/m);
  assert.match(ok.stdout, /^ {2}output_norm\.weight +f32 +0 +0 +1\.0000000 +ok \(exact\)$/m);
  assert.match(ok.stdout, /^OK: 26 tensors match the plan/m);

  const r = await cli(["verify", bad, dir]);
  assert.equal(r.code, 3, r.stderr);
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(lines[0]!.startsWith(`ggufy: error: E_VERIFY: ${bad}: 2 tensor(s) failed verification: `), lines[0]);
  assert.ok(lines[0]!.includes(CORRUPTED) && lines[0]!.includes(MISSING), lines[0]);
  assert.match(r.stdout, new RegExp(`^ {2}${CORRUPTED.replace(/\./g, "\\.")} .* FAIL: relative RMSE`, "m"));
  assert.match(r.stdout, new RegExp(`^ {2}${MISSING.replace(/\./g, "\\.")}: MISSING from the file$`, "m"));

  const j = await cli(["verify", bad, dir, "--json"]);
  assert.equal(j.code, 3);
  const parsed = JSON.parse(j.stdout) as VerifyResult;
  assert.deepEqual(parsed.missing, [MISSING]);
});

test("re-planned for another type, the file's types do not match: exit 3", async () => {
  const r = await cli(["verify", good, dir, "--outtype", "Q5_K_M", "--quiet"]);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /type q4_K, planned q5_K/);
  const lib = await verify(good, dir, { outtype: "Q5_K_M" });
  assert.equal(lib.ok, false);
  assert.equal(lib.outtype, "Q5_K_M");
});

test("bad invocations are usage errors", async () => {
  assert.equal((await cli(["verify", good])).code, 64);
  assert.equal((await cli(["verify", good, dir, "extra"])).code, 64);
  await assert.rejects(verify(path.join(tmp, "nope.gguf"), dir), (e: unknown) => e instanceof GgufyError && e.code === "E_IO");
});
