/**
 * Split outputs (--split-max-size / --split-max-tensors, llama.cpp's split format) of the tiny Qwen2: llama.cpp
 * (node-llama-cpp 3.21.1) loads them from the first part and gives exactly the unsplit file's next-token
 * distribution; the parts carry llama.cpp's split keys and the unsplit file's tensor bytes; they appear
 * together or not at all; verify reads them.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { open, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { convert, verify, GgufyError } from "../../src/index.js";
import { readGguf, readGgufTensorBytes } from "../../src/formats/gguf/reader.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { cli } from "../cli/helpers.js";
import { withModel, nextTokenLogProbs, tokenize, disposeTestLlama } from "../support/llama.js";

let tmp = "";
let dir = "";
let unsplit = "";
const PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time";

before(async () => {
  tmp = await scratchDir("ggufy-e2e-split-");
  dir = path.join(tmp, "tiny-qwen2");
  await writeTinyQwen2(dir, { layers: 2, hidden: 256, dtype: "F32", seed: 1 });
  unsplit = path.join(tmp, "whole.gguf");
  await convert({ input: dir, outtype: "f16", outfile: unsplit });
});
after(async () => {
  await disposeTestLlama();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function distribution(gguf: string): Promise<{ ids: number[]; lp: Float64Array }> {
  return withModel(gguf, async (model) => {
    const ids = tokenize(model, PROMPT);
    return { ids, lp: await nextTokenLogProbs(model, ids) };
  });
}

let reference: { ids: number[]; lp: Float64Array } | undefined;
async function unsplitDistribution(): Promise<{ ids: number[]; lp: Float64Array }> {
  reference ??= await distribution(unsplit);
  return reference;
}

/** The parts are the unsplit file cut up: same tensors, same order, same bytes; llama.cpp's split keys. */
async function assertSplitOf(parts: string[]): Promise<void> {
  const whole = await readGguf(unsplit);
  const gs = await Promise.all(parts.map((p) => readGguf(p)));
  const n = gs.length;
  gs.forEach((g, i) => {
    const split = g.keys.filter((k) => k.startsWith("split."));
    assert.deepEqual(split, ["split.no", "split.count", "split.tensors.count"], parts[i]);
    assert.deepEqual(g.kvs.get("split.no"), { type: GGUFValueType.UINT16, value: i });
    assert.deepEqual(g.kvs.get("split.count"), { type: GGUFValueType.UINT16, value: n });
    assert.deepEqual(g.kvs.get("split.tensors.count"), { type: GGUFValueType.INT32, value: whole.tensors.length });
    // every other key only in the first part, where the split keys come last (gguf-py add_shard_kv_data)
    assert.deepEqual(g.keys, i === 0 ? [...whole.keys, ...split] : split);
  });
  const names = gs.flatMap((g) => g.tensors.map((t) => t.name));
  assert.deepEqual(names, whole.tensors.map((t) => t.name));
  for (const g of gs) {
    for (const t of g.tensors) {
      const w = whole.tensors.find((x) => x.name === t.name)!;
      assert.deepEqual([t.type, t.ne], [w.type, w.ne], t.name);
      assert.deepEqual(await readGgufTensorBytes(g, t), await readGgufTensorBytes(whole, w), t.name);
    }
  }
}

test("--split-max-size 60M: three parts that llama.cpp loads with the unsplit file's next-token distribution", async () => {
  const outfile = path.join(tmp, "cli", "tiny.gguf");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(path.dirname(outfile));
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", outfile, "--split-max-size", "60M", "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  const parts = (await readdir(path.dirname(outfile))).sort();
  assert.deepEqual(parts, ["tiny-00001-of-00003.gguf", "tiny-00002-of-00003.gguf", "tiny-00003-of-00003.gguf"]);
  const full = parts.map((p) => path.join(path.dirname(outfile), p));
  await assertSplitOf(full);
  // size rule: a part's tensor data stays under the limit unless a single tensor is bigger
  for (const p of full) {
    const g = await readGguf(p);
    const data = g.tensors.reduce((a, t) => a + t.bytes, 0);
    assert.ok(data <= 60e6 || g.tensors.length === 1, `${p}: ${data} bytes in ${g.tensors.length} tensors`);
  }
  const ref = await unsplitDistribution();
  const got = await distribution(full[0]!);
  assert.deepEqual(got.ids, ref.ids);
  assert.equal(got.lp.length, ref.lp.length);
  let maxDiff = 0;
  for (let i = 0; i < ref.lp.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got.lp[i]! - ref.lp[i]!));
  assert.ok(maxDiff <= 1e-6, `max |Δ log p| = ${maxDiff}`);
  // and verify reads the split output from its first part
  const v = await verify(full[0]!, dir);
  assert.equal(v.ok, true, v.failures.join("\n"));
  assert.equal(v.parts.length, 3);
});

test("library: --split-max-tensors with a metadata-only first part loads the same", async () => {
  const outfile = path.join(tmp, "lib.gguf");
  const r = await convert({ input: dir, outtype: "f16", outfile, splitMaxTensors: 8, noTensorFirstSplit: true });
  const names = r.files.map((f) => path.basename(f.path));
  assert.deepEqual(names, [1, 2, 3, 4, 5].map((i) => `lib-0000${i}-of-00005.gguf`));
  assert.deepEqual(r.files.map((f) => f.tensors), [0, 8, 8, 8, 3]);
  const full = r.files.map((f) => f.path);
  await assertSplitOf(full);
  for (const f of r.files) assert.equal((await stat(f.path)).size, f.bytes);
  const ref = await unsplitDistribution();
  const got = await distribution(full[0]!);
  assert.deepEqual(Array.from(got.lp), Array.from(ref.lp));
});

test("the parts are committed together: a failure while writing the third leaves no part behind", async () => {
  const outDir = path.join(tmp, "fail");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(outDir);
  // the third part's disk is full
  const opener = async (p: string): Promise<Pick<Awaited<ReturnType<typeof open>>, "write" | "close" | "sync">> => {
    const fh = await open(p, "w");
    if (!p.includes("-00003-of-00003")) return fh;
    return {
      write: async () => {
        throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      },
      close: () => fh.close(),
      sync: () => fh.sync(),
    } as unknown as Pick<Awaited<ReturnType<typeof open>>, "write" | "close" | "sync">;
  };
  await assert.rejects(
    convert({ input: dir, outtype: "f16", outfile: path.join(outDir, "x.gguf"), splitMaxTensors: 10, chunkElements: 1 << 16, threads: 1, opener }),
    (e: unknown) => e instanceof GgufyError && e.code === "E_WRITE",
  );
  assert.deepEqual(await readdir(outDir), []);
});

test("verify refuses a later part (llama.cpp too loads a split model from its first part)", async () => {
  const outfile = path.join(tmp, "lib.gguf");
  const second = outfile.replace(/\.gguf$/, "-00002-of-00005.gguf");
  await assert.rejects(verify(second, dir), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE" && /give the first part/.test(e.message));
});
