/**
 * Shared machinery of the llama-quantize --imatrix end-to-end tests (test/e2e/imatrix-presets.test.ts,
 * test/e2e/iq-presets-imatrix.test.ts): a generated Qwen2 checkpoint converted by ggufy to F32, an
 * importance matrix computed on that file by llama.cpp's own `llama-imatrix` (built from node-llama-cpp's
 * bundled source, test/support/llama-tools.ts) in both formats it writes (GGUF and the legacy .dat), and
 * the comparison of `ggufy convert --outtype P --imatrix F` with `llama-quantize --imatrix F f32.gguf
 * out.gguf P`: tensor names, order, shapes, types and bytes, and every KV
 * (quantize.imatrix.file/dataset/entries_count/chunks_count included).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { convert, type ConvertOptions } from "../../src/index.js";
import { readGguf, type GGUFFile } from "../../src/formats/gguf/reader.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { findLlamaFtype } from "../../src/quant/presets.js";
import { writeSmallQwen2, type SmallQwen2 } from "../../fixtures/qwen2-small.js";
import { llamaTool } from "./llama-tools.js";

export const IMATRIX_TEXT = `The importance matrix records, for every weight matrix of the model, how strongly each input column is
used while the model reads a sample of text. Quantizers then spend their precision where it matters: a column
that carries large activations is kept close to its true value, one that is nearly silent may be rounded more
coarsely. The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. Numbers such as
3.14159, 2.71828 and 1.41421 appear in text too, as do names, places, and the occasional line of code:
for (let i = 0; i < n; i++) sum += x[i] * w[i]. `.repeat(6);

/** Run one of llama.cpp's tools; throw with the tail of its output when it fails. */
export function runTool(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${path.basename(tool)} ${args.join(" ")} failed (${r.status}):\n${(r.stderr + r.stdout).split("\n").slice(-30).join("\n")}`);
  return r.stderr + r.stdout;
}

export interface ImatrixSetup {
  modelDir: string;
  f32: string;
  /** the GGUF imatrix */
  imGguf: string;
  /** the legacy .dat imatrix */
  imDat: string;
}

/** Write the checkpoint under tmp, convert it to F32 with ggufy, run llama-imatrix on it (both formats). */
export async function setupImatrixModel(tmp: string, model: SmallQwen2): Promise<ImatrixSetup> {
  const modelDir = path.join(tmp, "qwen2");
  await writeSmallQwen2(modelDir, model);
  const f32 = path.join(tmp, "qwen2-f32.gguf");
  await convert({ input: modelDir, outtype: "f32", outfile: f32, force: true });
  const textFile = path.join(tmp, "sample.txt");
  await writeFile(textFile, IMATRIX_TEXT);
  const imatrix = llamaTool("llama-imatrix");
  const imGguf = path.join(tmp, "imatrix.gguf");
  const imDat = path.join(tmp, "imatrix.dat");
  const common = ["-m", f32, "-f", textFile, "-c", "64", "-b", "64", "-ub", "64", "--chunks", "6", "-t", "2", "--no-ppl"];
  runTool(imatrix, [...common, "-o", imGguf, "--output-format", "gguf"]);
  runTool(imatrix, [...common, "-o", imDat, "--output-format", "dat"]);
  return { modelDir, f32, imGguf, imDat };
}

function kvText(f: GGUFFile, key: string): string {
  return JSON.stringify(f.kvs.get(key), (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v));
}

export interface CompareExtra {
  include?: string[];
  exclude?: string[];
}

/**
 * ggufy --imatrix vs llama-quantize --imatrix on ggufy's F32 file; asserts byte identity and returns
 * the type tally of llama-quantize's file.
 */
export async function compareWithLlamaQuantize(s: ImatrixSetup, tmp: string, preset: string, imatrix: string, extra: CompareExtra = {}): Promise<Record<string, number>> {
  const p = findLlamaFtype(preset);
  assert.ok(p, preset);
  const tag = `${preset}-${path.extname(imatrix).slice(1)}-${extra.include ? "inc" : extra.exclude ? "exc" : "all"}`;
  const ours = path.join(tmp, `${tag}.gguf`);
  const ref = path.join(tmp, `${tag}-llama.gguf`);
  const opts: ConvertOptions = {
    input: s.modelDir, outtype: preset, outfile: ours, force: true, imatrix, threads: 1,
    ...(extra.include ? { includeWeights: extra.include } : {}), ...(extra.exclude ? { excludeWeights: extra.exclude } : {}),
  };
  await convert(opts);
  const flags = [...(extra.include ?? []).flatMap((x) => ["--include-weights", x]), ...(extra.exclude ?? []).flatMap((x) => ["--exclude-weights", x])];
  runTool(llamaTool("llama-quantize"), ["--imatrix", imatrix, ...flags, s.f32, ref, preset, "2"]);
  const [a, b] = await Promise.all([readGguf(ours), readGguf(ref)]);
  const [ab, bb] = await Promise.all([readFile(ours), readFile(ref)]);
  try {
    assert.deepEqual(a.tensors.map((t) => t.name), b.tensors.map((t) => t.name), `${tag}: tensor names/order`);
    const diffs: string[] = [];
    const tally: Record<string, number> = {};
    for (let i = 0; i < b.tensors.length; i++) {
      const x = a.tensors[i]!;
      const y = b.tensors[i]!;
      tally[typeName(y.type)] = (tally[typeName(y.type)] ?? 0) + 1;
      assert.deepEqual(x.ne, y.ne, x.name);
      if (x.type !== y.type) diffs.push(`${x.name}: ggufy ${typeName(x.type)}, llama.cpp ${typeName(y.type)}`);
      else if (!ab.subarray(x.fileOffset, x.fileOffset + x.bytes).equals(bb.subarray(y.fileOffset, y.fileOffset + y.bytes))) diffs.push(`${x.name} (${typeName(x.type)}): bytes differ`);
    }
    assert.deepEqual(diffs, [], tag);
    assert.deepEqual([...a.keys].sort(), [...b.keys].sort(), `${tag}: KV keys`);
    for (const k of b.keys) assert.equal(kvText(a, k), kvText(b, k), `${tag}: ${k}`);
    return tally;
  } finally {
    await Promise.all([rm(ours, { force: true }), rm(ref, { force: true })]);
  }
}
