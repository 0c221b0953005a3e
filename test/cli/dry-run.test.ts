/**
 * `convert --dry-run`: the whole plan without reading weights — and the sizes it announces are the sizes
 * written, byte for byte (three presets, and a split output); disk needed/free; --print-supported-models.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { MODELS } from "../../src/index.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { testData } from "../../fixtures/paths.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { cli } from "./helpers.js";

const STORIES = testData("tinyllamas-stories260K", "derived-hf-llama");
const tmp = await scratchDir("ggufy-dryrun-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface JsonPlan {
  files: { path: string; role: string; type: string; fileType: number; bytes: number; headerBytes: number; keys: number; split?: { no: number; count: number; tensorsTotal: number }; metadata?: Record<string, unknown>; tensors: { name: string; shape: number[]; type: string; bytes: number; sources: string[]; sourceShapes: (number[] | null)[]; encoding: string; fallbackFrom?: string }[] }[];
  totalBytes: number;
  disk: { dir: string; needed: number; free: number | null }[];
}

async function dryRun(args: string[]): Promise<JsonPlan> {
  const r = await cli(["convert", STORIES, ...args, "--dry-run", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as JsonPlan;
}

/** The plan's every number equals the written file's. */
async function assertMatches(p: JsonPlan): Promise<void> {
  for (const f of p.files) {
    const st = await stat(f.path);
    assert.equal(st.size, f.bytes, `${path.basename(f.path)}: planned ${f.bytes} bytes, wrote ${st.size}`);
    const g = await readGguf(f.path);
    assert.equal(g.dataStart, f.headerBytes, "header size");
    assert.equal(g.keys.length, f.keys, "key count");
    assert.deepEqual(
      g.tensors.map((t) => ({ name: t.name, shape: t.ne, type: typeName(t.type), bytes: t.bytes })),
      f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: t.type, bytes: t.bytes })),
    );
  }
  assert.equal(p.totalBytes, p.files.reduce((a, f) => a + f.bytes, 0));
}

for (const outtype of ["Q4_K_M", "Q5_K_S", "f16"]) {
  test(`--dry-run ${outtype}: every size equals the written file's, byte for byte`, async () => {
    const outfile = path.join(tmp, `stories-${outtype}.gguf`);
    const p = await dryRun(["--outtype", outtype, "--outfile", outfile]);
    assert.equal(p.files.length, 1);
    assert.equal(p.files[0]!.path, outfile);
    assert.deepEqual(await readdir(tmp).then((l) => l.filter((n) => n.startsWith(`stories-${outtype}`))), [], "a dry run writes nothing");
    // every tensor says where it comes from
    for (const t of p.files[0]!.tensors) {
      assert.ok(t.sources.length >= 1, t.name);
      assert.equal(t.sourceShapes.length, t.sources.length);
      for (const s of t.sourceShapes) assert.ok(Array.isArray(s) && s.length >= 1, t.name);
      assert.equal(t.encoding, "f32");
    }
    if (outtype !== "f16") assert.ok(p.files[0]!.tensors.some((t) => t.fallbackFrom !== undefined), "stories260K's 64-wide rows force llama-quantize fallbacks");
    const r = await cli(["convert", STORIES, "--outtype", outtype, "--outfile", outfile, "--quiet", "--threads", "1"]);
    assert.equal(r.code, 0, r.stderr);
    await assertMatches(p);
  });
}

test("--dry-run of a split output: every part's size equals the written part's", async () => {
  const outfile = path.join(tmp, "split", "stories.gguf");
  const p = await dryRun(["--outtype", "q8_0", "--outfile", outfile, "--split-max-tensors", "20"]);
  assert.equal(p.files.length, 3);
  assert.deepEqual(p.files.map((f) => f.split), [0, 1, 2].map((no) => ({ no, count: 3, tensorsTotal: 47 })));
  assert.deepEqual(p.files.map((f) => path.basename(f.path)), ["stories-00001-of-00003.gguf", "stories-00002-of-00003.gguf", "stories-00003-of-00003.gguf"]);
  assert.deepEqual(p.files.map((f) => f.keys), [p.files[0]!.keys, 3, 3]);
  const { mkdir } = await import("node:fs/promises");
  await mkdir(path.dirname(outfile), { recursive: true });
  const r = await cli(["convert", STORIES, "--outtype", "q8_0", "--outfile", outfile, "--split-max-tensors", "20", "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  await assertMatches(p);
});

test("--dry-run text: tensors with their sources, totals, disk needed and free", async () => {
  const outfile = path.join(tmp, "text.gguf");
  const r = await cli(["convert", STORIES, "--outtype", "Q4_K_M", "--outfile", outfile, "--dry-run"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(lines[0]!, new RegExp(`^model: ${outfile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}  \\(Q4_K_M, 47 tensors, \\d+ keys, `));
  assert.ok(lines.some((l) => /^ {2}blk\.0\.attn_q\.weight +q5_0 +\[64, 64\] +\d+ B +← model\.layers\.0\.self_attn\.q_proj\.weight \[64, 64\] \(f32\) \(fallback from q4_K\)$/.test(l)), r.stdout);
  const total = /^total: 1 file\(s\), 47 tensors, (\d+) bytes/m.exec(r.stdout);
  assert.ok(total, r.stdout);
  const disk = /^disk: (.+): needs (\d+) bytes \([^)]*\), (\d+) bytes \([^)]*\) free$/m.exec(r.stdout);
  assert.ok(disk, r.stdout);
  assert.equal(disk[1], tmp);
  assert.equal(disk[2], total[1]);
  assert.ok(Number(disk[3]) > 0);
  const j = await dryRun(["--outtype", "Q4_K_M", "--outfile", outfile]);
  assert.equal(j.disk.length, 1);
  assert.equal(j.disk[0]!.needed, j.totalBytes);
  assert.ok(typeof j.disk[0]!.free === "number" && j.disk[0]!.free > 0);
});

test("--print-supported-models lists every registered architecture", async () => {
  const r = await cli(["convert", "--print-supported-models"]);
  assert.equal(r.code, 0, r.stderr);
  for (const m of MODELS) for (const a of m.hfArchitectures) assert.ok(r.stdout.includes(`  - ${a}  (${m.id})`), a);
});

test("--vocab-only writes a tensor-free file named <name>-vocab.gguf that the plan announced", async () => {
  const outDir = path.join(tmp, "vocab");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(outDir);
  const p = await dryRun(["--vocab-only", "--outfile", outDir]);
  assert.equal(p.files.length, 1);
  assert.equal(path.basename(p.files[0]!.path), "Derived-Hf-Llama-vocab.gguf");
  assert.equal(p.files[0]!.tensors.length, 0);
  const r = await cli(["convert", STORIES, "--vocab-only", "--outfile", outDir, "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  await assertMatches(p);
  const g = await readGguf(p.files[0]!.path);
  assert.ok(g.kvs.has("tokenizer.ggml.tokens"));
  assert.equal(g.kvs.get("general.name")?.value, "Derived Hf Llama");
});
