/**
 * The tiny MiniCPM-V 2.6 int4 checkpoint (openbmb/MiniCPM-V-2_6-int4's bitsandbytes settings over the real
 * key names) dequantized by `ggufy dequantize` looks exactly like the bf16 release it was made from
 * (openbmb/MiniCPM-V-2_6 scaled down): the same key set — the real index's keys cut to the tiny layer
 * counts — with the same shapes, all bf16, the unquantized tensors byte for byte, the same config and
 * tokenizer / processor files; sharded with an index that lists every key once.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { dequantize, openCheckpoint } from "../../src/index.js";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { readRealMinicpmvIndex, scaledKeys, writeTinyMinicpmv, writeTinyMinicpmvInt4, type TinyMinicpmv } from "../../fixtures/minicpmv.js";

let root: string;
let tiny: TinyMinicpmv;
let int4: string;
let quantized: string[];
before(async () => {
  root = await scratchDir("ggufy-dq-minicpmv-");
  tiny = await writeTinyMinicpmv(path.join(root, "bf16"));
  int4 = path.join(root, "int4");
  quantized = await writeTinyMinicpmvInt4(tiny.dir, int4);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The header JSON of a safetensors file, read directly (no src/ code). */
async function headerOf(file: string): Promise<Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>> {
  const b = await readFile(file);
  const n = Number(b.readBigUInt64LE(0));
  const j = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  let end = 0;
  for (const [k, e] of Object.entries(j)) if (k !== "__metadata__") end = Math.max(end, e.data_offsets[1]);
  assert.equal(8 + n + end, b.length, `${file}: data section ends at the end of the file`);
  return j;
}

test("tiny MiniCPM-V int4 → a checkpoint with the bf16 release's keys, shapes, dtype, bytes and files", async () => {
  const out = path.join(root, "out");
  const r = await dequantize({ input: int4, outdir: out, maxShardSize: "100MB" });

  // the expected key set: the real openbmb/MiniCPM-V-2_6 index, scaled to the tiny layer counts
  const real = await readRealMinicpmvIndex();
  const expected = scaledKeys(Object.keys(real.weightMap), tiny.dims.llm.layers, tiny.dims.vision.layers);
  assert.deepEqual(expected, tiny.keys);
  assert.ok(expected.some((k) => k.startsWith("vpm.")) && expected.some((k) => k.startsWith("resampler.")) && expected.some((k) => k.startsWith("llm.")));

  // the int4 checkpoint has the bnb auxiliary keys; the dequantized one has exactly the release's keys
  const q = await SafetensorsCheckpoint.open(int4);
  const qKeys = [...q.tensors.keys()];
  await q.close();
  assert.ok(qKeys.length > expected.length);
  assert.equal(r.restored, quantized.length);
  assert.equal(r.dropped, qKeys.length - expected.length);
  assert.ok(quantized.some((k) => /^vpm\.encoder\.layers\.0\.self_attn\.q_proj\.weight$/.test(k)));
  assert.ok(quantized.some((k) => /^llm\.model\.layers\.1\.mlp\.down_proj\.weight$/.test(k)));
  assert.ok(!quantized.some((k) => /out_proj|kv_proj|lm_head/.test(k)), "int4's skip modules stay bf16");

  // shards (own header reads) and index
  const files = (await readdir(out)).sort();
  const shards = files.filter((f) => f.endsWith(".safetensors"));
  assert.ok(shards.length >= 2, `several shards at 100MB: ${shards.join(", ")}`);
  shards.forEach((f, i) => assert.equal(f, `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`));
  const where = new Map<string, string>();
  for (const f of shards) {
    const h = await headerOf(path.join(out, f));
    assert.deepEqual(h["__metadata__"], { format: "pt" });
    for (const [k, e] of Object.entries(h)) {
      if (k === "__metadata__") continue;
      assert.ok(!where.has(k), `${k} in two shards`);
      where.set(k, f);
      assert.equal(e.dtype, "BF16", k);
      assert.deepEqual(e.shape, tiny.shapes[k], `${k}: the release's shape`);
    }
  }
  assert.deepEqual([...where.keys()].sort(), expected, "exactly the bf16 release's key set");
  const indexText = await readFile(path.join(out, "model.safetensors.index.json"), "utf8");
  const index = JSON.parse(indexText) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const listed = [...indexText.matchAll(/^ {4}"([^"]+)": "/gm)].map((m) => m[1]!);
  assert.deepEqual(listed, expected, "the index lists every key once, sorted");
  for (const [k, f] of where) assert.equal(index.weight_map[k], f);
  const bf16Index = JSON.parse(await readFile(path.join(tiny.dir, "model.safetensors.index.json"), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  assert.equal(index.metadata.total_size, bf16Index.metadata.total_size, "the release's total_size");
  assert.deepEqual(Object.keys(index.weight_map).sort(), Object.keys(bf16Index.weight_map).sort());

  // values: unquantized tensors byte for byte as the release; restored ones are the decoder's values, close to it
  const o = await SafetensorsCheckpoint.open(out);
  const b = await SafetensorsCheckpoint.open(tiny.dir);
  const dec = await openCheckpoint(int4);
  try {
    for (const k of expected) {
      const got = await o.read(k);
      if (!quantized.includes(k)) {
        assert.ok(Buffer.from(got).equals(Buffer.from(await b.read(k))), `${k} byte for byte`);
        continue;
      }
      const t = dec.get(k)!;
      assert.equal(t.dtype, "bf16");
      const want = await t.rows(0, t.rowCount);
      const h = new Uint16Array(got.buffer, got.byteOffset, got.byteLength / 2);
      const ref = await b.read(k);
      const hr = new Uint16Array(ref.buffer, ref.byteOffset, ref.byteLength / 2);
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      let err = 0;
      let norm = 0;
      for (let i = 0; i < h.length; i++) {
        u[0] = h[i]! << 16;
        assert.equal(f[0], want[i], `${k}[${i}]: the decoder's value`);
        const x = f[0]!;
        u[0] = hr[i]! << 16;
        err += (x - f[0]!) ** 2;
        norm += f[0]! ** 2;
      }
      assert.ok(Math.sqrt(err / norm) < 0.15, `${k}: relative RMS error vs the bf16 release ${Math.sqrt(err / norm)}`);
    }
  } finally {
    await o.close();
    await b.close();
    await dec.close();
  }

  // config.json: the int4 text without quantization_config, i.e. the release's config
  const qText = await readFile(path.join(int4, "config.json"), "utf8");
  const oText = await readFile(path.join(out, "config.json"), "utf8");
  assert.match(qText, /"quantization_config"/);
  assert.equal(oText, qText.replace(/,\n {2}"quantization_config": \{[^]*?\n {2}\}/, ""));
  assert.deepEqual(JSON.parse(oText), JSON.parse(await readFile(path.join(tiny.dir, "config.json"), "utf8")));

  // every other file of the release, unchanged
  const side = (fs: string[]): string[] => fs.filter((f) => !f.includes(".safetensors") && f !== "config.json").sort();
  const bf16Files = await readdir(tiny.dir);
  assert.deepEqual(side(files), side(bf16Files));
  assert.ok(side(files).includes("preprocessor_config.json") && side(files).includes("tokenizer_config.json") && side(files).includes("generation_config.json"));
  for (const f of side(files)) assert.deepEqual(await readFile(path.join(out, f)), await readFile(path.join(tiny.dir, f)), f);
});
