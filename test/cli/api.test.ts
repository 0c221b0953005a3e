/**
 * The documented library API — `import { convert, plan, inspect, verify } from "ggufy"` — used directly,
 * without the CLI: typed options, progress callbacks, results that describe what was written.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm, stat } from "node:fs/promises";
import path from "node:path";
import * as api from "../../src/index.js";
import { convert, plan, inspect, verify, GgufyError, type ConvertOptions, type ProgressEvent, type VerifyProgress } from "../../src/index.js";
import { testData } from "../../fixtures/paths.js";
import { scratchDir } from "../../fixtures/qwen2.js";

const STORIES = testData("tinyllamas-stories260K", "derived-hf-llama");
const tmp = await scratchDir("ggufy-api-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('the package entry point ("ggufy", package.json exports) is this API', async () => {
  const name = "ggufy"; // a variable: resolved by Node at run time (package self-reference), not by tsc
  const pkg = (await import(name)) as typeof api;
  for (const fn of ["convert", "plan", "inspect", "verify", "readGguf", "codecFor"] as const) assert.equal(typeof pkg[fn], "function", fn);
  assert.ok(Array.isArray(pkg.MODELS) && pkg.MODELS.length >= 3);
});

const outfile = path.join(tmp, "stories-{ftype}.gguf");
const written = path.join(tmp, "stories-q4_k_m.gguf");
const opts: ConvertOptions = { input: STORIES, outtype: "Q4_K_M", outfile, threads: 1 };

test("plan(): every output file, tensor types and sizes, general.* metadata — without reading weights", async () => {
  const p = await plan(opts);
  try {
    assert.equal(p.files.length, 1);
    const f = p.files[0]!;
    assert.equal(f.path, written);
    assert.equal(f.role, "model");
    assert.equal(f.fileType, 15);
    assert.equal(f.typeLabel, "Q4_K_M");
    assert.equal(f.tensors.length, 47);
    assert.equal(f.metadata?.name, "Derived Hf Llama");
    assert.ok(f.tensors.every((t) => t.bytes > 0 && t.out.sources.length > 0));
    assert.equal(f.header.fileSize, f.header.bytes.length + f.tensors.reduce((a, t) => a + Math.ceil(t.bytes / 32) * 32, 0));
    assert.equal(p.models[0]!.arch, "llama");
  } finally {
    await p.close();
  }
});

test("convert(): progress callbacks up to the total, results that match the files", async () => {
  const events: ProgressEvent[] = [];
  const warnings: string[] = [];
  const r = await convert({ ...opts, onProgress: (e) => events.push(e), onWarning: (m) => warnings.push(m) });
  assert.deepEqual(warnings, []);
  assert.equal(r.files.length, 1);
  assert.equal(r.files[0]!.path, written);
  assert.equal(r.files[0]!.tensors, 47);
  assert.equal((await stat(written)).size, r.files[0]!.bytes);
  assert.equal(r.plan[0]!.header.fileSize, r.files[0]!.bytes);
  assert.ok(events.length >= 47);
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i]!.bytesDone >= events[i - 1]!.bytesDone);
    assert.ok(events[i]!.tensorIndex >= events[i - 1]!.tensorIndex);
  }
  const last = events.at(-1)!;
  assert.equal(last.tensorIndex, 46);
  assert.equal(last.tensorCount, 47);
  assert.equal(last.file, written);
  // the last tensor's padding is not reported as written; everything before it is
  assert.ok(last.bytesTotal - last.bytesDone < 32 && last.bytesTotal === r.files[0]!.bytes);
});

test("inspect(): the written file's metadata and tensors", async () => {
  const r = await inspect(written);
  assert.equal(r.kind, "gguf");
  assert.equal(r.metadata["general.architecture"], "llama");
  assert.equal(r.metadata["general.file_type"], 15);
  assert.equal(r.metadata["general.size_label"], "260K");
  assert.equal(r.tensors.length, 47);
});

test("verify(): exact mode re-quantizes the source and finds every byte equal; progress reported", async () => {
  const progress: VerifyProgress[] = [];
  const r = await verify(written, STORIES, { exact: true, onProgress: (e) => progress.push(e) });
  assert.equal(r.ok, true, r.failures.join("\n"));
  assert.equal(r.outtype, "Q4_K_M");
  for (const t of r.tensors) assert.equal(t.bytesDiffering, 0, t.name);
  assert.equal(progress.length, 47);
  assert.equal(progress.at(-1)!.bytesDone, progress.at(-1)!.bytesTotal);
});

test("verify(): per-type bounds can be tightened; an abort signal stops it", async () => {
  const r = await verify(written, STORIES, { bounds: { q5_0: { relRmse: 1e-6 } } });
  assert.equal(r.ok, false);
  const failed = r.tensors.filter((t) => !t.ok);
  assert.ok(failed.length > 0 && failed.every((t) => t.type === "q5_0"), failed.map((t) => t.name).join(", "));
  assert.ok(r.summary.find((s) => s.type === "q5_0")!.failed === failed.length);
  assert.equal(api.verifyError(r).code, "E_VERIFY");
  assert.equal(api.verifyError(r).exitCode, 3);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(verify(written, STORIES, { signal: ac.signal }), (e: unknown) => e instanceof GgufyError && e.code === "E_INTERRUPTED");
});

test("verify(): convert's q8_0 and llama-quantize's Q8_0 share general.file_type 7; the tensor order tells them apart", async () => {
  for (const outtype of ["q8_0", "Q8_0"]) {
    const file = path.join(tmp, `order-${outtype}.gguf`);
    await convert({ input: STORIES, outtype, outfile: file, threads: 1 });
    const r = await verify(file, STORIES);
    assert.equal(r.ok, true, r.failures.join("\n"));
    assert.equal(r.fileType, 7);
    assert.equal(r.outtype, outtype);
  }
});
