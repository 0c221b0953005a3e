import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { GGUFStreamWriter, encodeGgufHeader, type ByteWriter } from "../../src/formats/gguf/writer.js";
import { readGguf, readGgufTensorBytes } from "../../src/formats/gguf/reader.js";
import { kv, GGUFValueType } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";

class Collect implements ByteWriter {
  chunks: Uint8Array[] = [];
  async write(c: Uint8Array): Promise<void> {
    this.chunks.push(c.slice());
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

const kvs = [
  kv.str("general.architecture", "llama"),
  kv.u32("llama.block_count", 2),
  kv.f32("llama.rope.freq_base", 10000),
  kv.bool("tokenizer.ggml.add_bos_token", true),
  kv.strs("tokenizer.ggml.tokens", ["<unk>", "a", "béta"]),
  kv.i32s("tokenizer.ggml.token_type", [2, 1, 1]),
  kv.f32s("tokenizer.ggml.scores", [0, -1.5, -2]),
];
const tensors = [
  { name: "a.weight", ne: [32, 3], type: GGMLType.Q8_0 },
  { name: "b.bias", ne: [5], type: GGMLType.F32 },
  { name: "c.weight", ne: [4, 2], type: GGMLType.F16 },
];

test("GGUF writer: header, offsets and data read back by @huggingface/gguf and our reader", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ggufy-gguf-"));
  try {
    const sink = new Collect();
    const w = new GGUFStreamWriter(sink, kvs, tensors);
    await w.start();
    const data = [new Uint8Array(3 * 34).map((_, i) => i & 0xff), new Uint8Array(20).map((_, i) => 200 - i), new Uint8Array(16).fill(7)];
    // tensor 0 in two chunks, others whole
    await w.write(data[0]!.subarray(0, 34));
    await w.write(data[0]!.subarray(34));
    await w.write(data[1]!);
    await w.write(data[2]!);
    w.finish();
    const bytes = sink.bytes();
    assert.equal(bytes.length, w.header.fileSize);
    assert.equal(bytes.length % 32, 0, "the last tensor is padded too");
    const file = path.join(dir, "t.gguf");
    await writeFile(file, bytes);

    const hf = await gguf(file, { allowLocalFile: true });
    const md = hf.metadata as unknown as Record<string, unknown>;
    assert.equal(md["general.architecture"], "llama");
    assert.equal(md["llama.block_count"], 2);
    assert.deepEqual(md["tokenizer.ggml.tokens"], ["<unk>", "a", "béta"]);
    assert.equal(hf.tensorInfos.length, 3);
    assert.deepEqual(hf.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)]), [
      ["a.weight", [32, 3], GGMLType.Q8_0, 0],
      ["b.bias", [5], GGMLType.F32, 128],
      ["c.weight", [4, 2], GGMLType.F16, 160],
    ]);

    const ours = await readGguf(file);
    assert.equal(ours.version, 3);
    assert.deepEqual(ours.keys, kvs.map((k) => k.key));
    assert.equal(ours.kvs.get("tokenizer.ggml.token_type")!.type, GGUFValueType.ARRAY);
    for (let i = 0; i < 3; i++) assert.deepEqual(await readGgufTensorBytes(ours, ours.tensors[i]!), data[i]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("GGUF writer refuses what llama.cpp would reject", async () => {
  assert.throws(() => encodeGgufHeader([kv.u32("x", 1), kv.u32("x", 2)], []), /duplicate key/);
  assert.throws(() => encodeGgufHeader([], [{ name: "x".repeat(64), ne: [4], type: GGMLType.F32 }]), /at most 63/);
  assert.throws(() => encodeGgufHeader([], [{ name: "q", ne: [33, 2], type: GGMLType.Q8_0 }]), /multiple/);
  const w = new GGUFStreamWriter(new Collect(), [], [{ name: "t", ne: [4], type: GGMLType.F32 }]);
  await w.start();
  await assert.rejects(w.write(new Uint8Array(20)), /expected 16/);
  assert.throws(() => w.finish(), /finished after 0 of 1/);
});
