/**
 * MiniCPM-V-2_6-int4 style input: the tiny bf16 checkpoint passed through the bitsandbytes fixture encoder with
 * openbmb's settings (NF4, double quant, blocksize 64, bf16, skip out_proj / kv_proj / lm_head). Converted to F32
 * (LLM --outtype f32, mmproj --mmproj-type f32), both files must equal the bitsandbytes decoder's output bit for
 * bit, tensor by tensor, through the model's mapping (prefix strip, q/k/v thirds, proj transpose); the 4-D
 * patch kernel is F16 by rule and must be the decoder's value rounded to F16; pos_embed_k is computed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { convert, DECODERS } from "../../src/convert/convert.js";
import type { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { f32BitsToF16 } from "../../src/formats/half.js";
import { bnbDecoder, type BnbModule } from "../../src/quant/bnb/index.js";
import { bitsOf, decodedTensor, ggufTensors, openDecodedCheckpoint } from "../support/int4-bitexact.js";
import { TINY_MINICPMV_DIMS, specLlmTensors, specMmprojTensors, specPosEmbedK, writeTinyMinicpmv, writeTinyMinicpmvInt4 } from "../../fixtures/minicpmv.js";

// bitsandbytes checkpoints are read through the decoder registered in src/convert/convert.ts
assert.ok(DECODERS.includes(bnbDecoder), "bnbDecoder is registered in DECODERS");

const D = TINY_MINICPMV_DIMS;
let tmp = "";
let int4 = "";
let llmFile = "";
let mmFile = "";
let quantized: string[] = [];
let st: SafetensorsCheckpoint;
let mods: Map<string, BnbModule>;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-minicpmv-int4-"));
  const bf16 = path.join(tmp, "MiniCPM-V-2_6");
  int4 = path.join(tmp, "MiniCPM-V-2_6-int4");
  await writeTinyMinicpmv(bf16);
  quantized = await writeTinyMinicpmvInt4(bf16, int4);
  await rm(bf16, { recursive: true, force: true });
  llmFile = path.join(tmp, "llm-f32.gguf");
  mmFile = path.join(tmp, "mmproj-f32.gguf");
  const r = await convert({ input: int4, outtype: "f32", mmprojType: "f32", outfile: llmFile, mmprojOutfile: mmFile, threads: 2 });
  assert.deepEqual(r.files.map((f) => path.resolve(f.path)), [llmFile, mmFile]);
  ({ st, mods } = await openDecodedCheckpoint(int4));
});
after(async () => {
  await st?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const decoded = (name: string): Promise<Float32Array> => decodedTensor({ dir: int4, st, mods }, name);

test("the int4 fixture is NF4 + double quant exactly where MiniCPM-V-2_6-int4 is", () => {
  const want = [
    ...Array.from({ length: D.llm.layers }, (_, i) => ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map((m) => `llm.model.layers.${i}.${m}.weight`)).flat(),
    ...Array.from({ length: D.vision.layers }, (_, i) => ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1", "mlp.fc2"].map((m) => `vpm.encoder.layers.${i}.${m}.weight`)).flat(),
  ].sort();
  assert.deepEqual([...quantized].sort(), want);
  assert.deepEqual([...mods.keys()].sort(), want);
  for (const m of mods.values()) {
    assert.equal(m.kind, "nf4");
    if (m.kind === "nf4") {
      assert.equal(m.blocksize, 64);
      assert.equal(m.dtype, "bf16");
      assert.ok(m.nested, `${m.weight} is double-quantized`);
    }
  }
  for (const plain of ["llm.lm_head.weight", "resampler.kv_proj.weight", "resampler.attn.out_proj.weight", "vpm.encoder.layers.0.self_attn.out_proj.weight", "llm.model.embed_tokens.weight", "resampler.proj"]) {
    assert.equal(st.get(plain)?.dtype, "BF16", plain);
  }
  assert.equal(st.get("llm.model.layers.0.self_attn.q_proj.weight")?.dtype, "U8");
});

test("LLM F32 GGUF = bnb decoder output, bit for bit, every tensor", async () => {
  const spec = new Map(specLlmTensors(D).map((t) => [t.name, t]));
  let n = 0;
  for await (const t of ggufTensors(llmFile)) {
    const s = spec.get(t.name);
    assert.ok(s, `unexpected ${t.name}`);
    assert.deepEqual(t.ne, s.ne, t.name);
    assert.equal(t.dtype, 0, `${t.name} is F32`);
    const want = await decoded(s.source);
    assert.ok(Buffer.from(t.bits.buffer).equals(Buffer.from(bitsOf(want).buffer, bitsOf(want).byteOffset, want.byteLength)), `${t.name} differs from ${s.source}`);
    n++;
  }
  assert.equal(n, spec.size);
});

test("mmproj F32 GGUF = bnb decoder output through the mapping, bit for bit, every tensor", async () => {
  const spec = new Map(specMmprojTensors(D).map((t) => [t.name, t]));
  const E = D.llm.hidden;
  let n = 0;
  for await (const t of ggufTensors(mmFile)) {
    const s = spec.get(t.name);
    assert.ok(s, `unexpected ${t.name}`);
    assert.deepEqual(t.ne, s.ne, t.name);
    n++;
    if (s.how === "sincos") {
      assert.equal(t.dtype, 0);
      const f = new Float32Array(t.bits.buffer);
      for (let i = 0; i < f.length; i++) assert.ok(Math.abs(f[i]! - specPosEmbedK(E, Math.floor(i / E), i % E)) <= 1e-6, `pos_embed_k[${i}]`);
      continue;
    }
    const src = await decoded(s.source!);
    let want: Float32Array;
    if (s.how === "copy") want = src;
    else if (s.how === "transpose") {
      const [a, b] = [s.ne[0]!, s.ne[1]!];
      want = new Float32Array(a * b);
      for (let j = 0; j < b; j++) for (let i = 0; i < a; i++) want[j * a + i] = src[i * b + j]!;
    } else {
      const k = Number(s.how.slice(5));
      const len = src.length / 3;
      want = src.slice(k * len, (k + 1) * len);
    }
    if (t.ne.length === 4) {
      // the conv kernel is always F16: the decoder's value rounded to F16 (RNE)
      assert.equal(t.dtype, 1, t.name);
      const w = bitsOf(want);
      const h = new Uint16Array(w.length);
      for (let i = 0; i < w.length; i++) h[i] = f32BitsToF16(w[i]!);
      assert.deepEqual(t.bits, h, t.name);
    } else {
      assert.equal(t.dtype, 0, `${t.name} is F32`);
      assert.ok(Buffer.from(t.bits.buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), `${t.name} differs from the decoded ${s.source}`);
    }
  }
  assert.equal(n, spec.size);
});
