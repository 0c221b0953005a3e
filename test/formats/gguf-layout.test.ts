/**
 * The header size a plan prints (writer.ts ggufHeaderLayout: the header counted, not encoded) against the
 * encoded header (encodeGgufHeader) and against the data offset @huggingface/gguf reads from a written file,
 * on the kinds of vocabulary and metadata ggufy writes: byte-level BPE (the full 151k Qwen2 vocabulary),
 * SentencePiece (Llama-style tok512, Gemma 2), a vision projector (MiniCPM-V 2.6), a split output, plus
 * hand-made KVs covering every scalar type, multi-byte UTF-8, a lone surrogate and a custom alignment.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm, stat } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { encodeGgufHeader, ggufHeaderLayout, plannedHeader, type GGUFTensorInfo } from "../../src/formats/gguf/writer.js";
import { GGUFValueType, kv, type GGUFKV } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { convert, plan } from "../../src/convert/convert.js";
import type { PlannedFile } from "../../src/convert/plan.js";
import { scratchDir, writeTinyQwen2 } from "../../fixtures/qwen2.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { writeTinyGemma } from "../../fixtures/gemma.js";
import { writeTinyMinicpmv } from "../../fixtures/minicpmv.js";

const infos = (f: PlannedFile): GGUFTensorInfo[] => f.tensors.map((t) => ({ name: t.out.name, ne: t.out.ne, type: t.type }));

/** layout and encoding agree field by field; the planned header's size is the encoded length */
function sameLayout(f: PlannedFile, what: string): number {
  const enc = encodeGgufHeader(f.kvs, infos(f));
  const lay = ggufHeaderLayout(f.kvs, infos(f));
  assert.equal(lay.size, enc.bytes.length, `${what}: header size`);
  assert.equal(enc.size, enc.bytes.length, `${what}: encoded size field`);
  assert.deepEqual(lay.offsets, enc.offsets, `${what}: offsets`);
  assert.deepEqual(lay.sizes, enc.sizes, `${what}: sizes`);
  assert.equal(lay.fileSize, enc.fileSize, `${what}: file size`);
  assert.equal(f.header.size, enc.bytes.length, `${what}: the plan's header size`);
  assert.equal(f.header.fileSize, enc.fileSize, `${what}: the plan's file size`);
  assert.deepEqual(Buffer.from(f.header.bytes), Buffer.from(enc.bytes), `${what}: the plan's lazily encoded bytes`);
  return lay.size;
}

test("header layout = encoded header: every scalar type, multi-byte UTF-8, a lone surrogate, empty strings, alignment 64", () => {
  const kvs: GGUFKV[] = [
    kv.str("general.architecture", "llama"),
    kv.u32("general.alignment", 64),
    kv.str("general.name", "béta ✓ 𝔘 \ud800 end"),
    kv.str("general.empty", ""),
    { key: "t.u8", value: { type: GGUFValueType.UINT8, value: 7 } },
    { key: "t.i8", value: { type: GGUFValueType.INT8, value: -7 } },
    { key: "t.u16", value: { type: GGUFValueType.UINT16, value: 700 } },
    { key: "t.i16", value: { type: GGUFValueType.INT16, value: -700 } },
    { key: "t.u64", value: { type: GGUFValueType.UINT64, value: 1n << 40n } },
    { key: "t.i64", value: { type: GGUFValueType.INT64, value: -5 } },
    { key: "t.f64", value: { type: GGUFValueType.FLOAT64, value: 0.1 } },
    kv.bool("t.bool", true),
    kv.f32("t.f32", 1.5),
    kv.i32("t.i32", -3),
    kv.strs("t.strs", ["", "a", "ĠĠ", "日本語", "😀x", "\udc00", "x\ud83d", "\ud83d\ude00"]),
    kv.i32s("t.i32s", [1, 2, 3]),
    kv.f32s("t.f32s", [0.5]),
    { key: "t.u8s", value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.UINT8, value: [1, 2, 3, 4, 5] } },
    { key: "t.empty", value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: [] } },
  ];
  const tensors: GGUFTensorInfo[] = [
    { name: "a.weight", ne: [32, 3], type: GGMLType.Q8_0 },
    { name: "b.bias", ne: [5], type: GGMLType.F32 },
    { name: "é.weight", ne: [256, 2, 1, 1], type: GGMLType.Q4_K },
  ];
  const enc = encodeGgufHeader(kvs, tensors);
  const lay = ggufHeaderLayout(kvs, tensors);
  assert.equal(enc.bytes.length % 64, 0);
  assert.deepEqual(lay, { size: enc.bytes.length, offsets: enc.offsets, sizes: enc.sizes, fileSize: enc.fileSize });
  // the strings' byte lengths are the UTF-8 ones: 2 + 3 + 4-byte characters, the surrogate as U+FFFD (3)
  const name = "béta ✓ 𝔘 \ud800 end";
  const at = Buffer.from(enc.bytes).indexOf(Buffer.from("general.name"));
  const len = Number(Buffer.from(enc.bytes).readBigUInt64LE(at + "general.name".length + 4));
  assert.equal(len, 1 + 2 + 2 + 1 + 3 + 1 + 4 + 1 + 3 + 4, `${name}: UTF-8 length`);
  // both refuse the same input
  for (const bad of [[...kvs, kv.str("general.name", "x")], [kv.str("general.architecture", "llama"), { key: "x", value: { type: GGUFValueType.STRING, value: 3 } } as unknown as GGUFKV]]) {
    assert.throws(() => encodeGgufHeader(bad, tensors));
    assert.throws(() => ggufHeaderLayout(bad, tensors));
    assert.throws(() => plannedHeader(bad, tensors), "a plan refuses it without encoding");
  }
  // random strings over ASCII, 2- and 3-byte characters, surrogate pairs and lone surrogates of both kinds:
  // each string's counted size against its encoding (one KV each, so a miscount shows which)
  const units = [0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xfffd, 0xffff, 0xd83d, 0xde00, 0xdbff, 0xdc00, 0xe000];
  let seed = 12345;
  const rnd = (k: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % k;
  };
  for (let r = 0; r < 300; r++) {
    const str = String.fromCharCode(...Array.from({ length: rnd(8) }, () => units[rnd(units.length)]!));
    const one = [kv.str("general.architecture", "x"), kv.str("s", str), kv.strs("a", [str, str + "\ud800"])];
    assert.equal(ggufHeaderLayout(one, []).size, encodeGgufHeader(one, []).bytes.length, `string ${JSON.stringify(str)}`);
  }
  const longName = [{ name: "x".repeat(64), ne: [4], type: GGMLType.F32 }];
  assert.throws(() => encodeGgufHeader(kvs, longName), /at most 63/);
  assert.throws(() => ggufHeaderLayout(kvs, longName), /at most 63/);
});

test("header layout = encoded header = the written file's data offset, on Qwen2 (151k BPE), tok512 SentencePiece, Gemma 2, MiniCPM-V (+ mmproj) and a split", async () => {
  const root = await scratchDir("ggufy-layout-");
  try {
    const qwen = path.join(root, "qwen2");
    await writeTinyQwen2(qwen, { hidden: 64, heads: 2, kvHeads: 1, ffn: 128, layers: 1, dtype: "BF16" });
    const llama = path.join(root, "llama");
    await writeTinyFamily(llama, "mistral-v0.1");
    const gemma = path.join(root, "gemma");
    await writeTinyGemma(gemma, { family: "gemma2" });
    const mcpm = path.join(root, "minicpmv");
    await writeTinyMinicpmv(mcpm);
    const cases: [string, Parameters<typeof plan>[0]][] = [
      ["qwen2 151k f16", { input: qwen, outtype: "f16", outfile: path.join(root, "q.gguf") }],
      ["qwen2 151k Q4_K_M split", { input: qwen, outtype: "Q4_K_M", splitMaxTensors: 4, outfile: path.join(root, "qs.gguf") }],
      ["mistral tok512 SentencePiece", { input: llama, outtype: "q8_0", outfile: path.join(root, "l.gguf") }],
      ["gemma2", { input: gemma, outfile: path.join(root, "g.gguf") }],
      ["minicpmv + mmproj", { input: mcpm, outtype: "f16", outfile: path.join(root, "m.gguf") }],
    ];
    let bpeHeader = 0;
    for (const [what, opts] of cases) {
      const p = await plan(opts);
      try {
        assert.ok(p.files.length >= (what.includes("split") || what.includes("mmproj") ? 2 : 1), what);
        for (const f of p.files) {
          const size = sameLayout(f, `${what} ${path.basename(f.path)}`);
          if (what === "qwen2 151k f16") bpeHeader = size;
        }
      } finally {
        await p.close();
      }
    }
    assert.ok(bpeHeader > 5_000_000, `the 151k-token header is large (${bpeHeader} bytes)`);
    // the file a conversion writes: its size and the data offset an independent reader finds
    for (const [what, opts] of [cases[0]!, cases[2]!, cases[4]!]) {
      const p = await plan(opts);
      await p.close();
      const r = await convert({ ...opts, force: true, threads: 1 });
      for (const [i, f] of r.files.entries()) {
        const planned = p.files[i]!;
        assert.equal((await stat(f.path)).size, planned.header.fileSize, `${what}: file size`);
        const hf = await gguf(f.path, { allowLocalFile: true });
        assert.equal(hf.tensorDataOffset, BigInt(planned.header.size), `${what} ${path.basename(f.path)}: @huggingface/gguf's data offset`);
        assert.equal(hf.tensorInfos.length, planned.tensors.length);
        for (const [k, t] of hf.tensorInfos.entries()) assert.equal(t.offset, BigInt(planned.header.offsets[k]!), `${what}: offset of ${t.name}`);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
