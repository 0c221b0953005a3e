/**
 * Shared by e2e-gptq.test.ts and e2e-fp8-awq-ct.test.ts: every scheme end to end on the real stories260K (ffn cut to 160 so that GPTQ words fill; see
 * fixtures/quantized-stories.ts), each Linear encoded by the fixture encoders:
 *  - convert --outtype f32 (2 worker threads: decoding runs there): every GGUF tensor equals, bit for bit,
 *    the encoder's reference values (Q/K rows permuted as llama.cpp's converter does, recomputed here),
 *    and every plain tensor its stored value;
 *  - it loads in llama.cpp (node-llama-cpp) and generates;
 *  - Q4_K_M is byte-identical, tensor by tensor, to llama_model_quantize run on that F32 GGUF;
 *  - dequantize (--dtype f32) writes a plain checkpoint (no scheme keys, no quantization_config; its header
 *    parsed here independently) and dequantize → convert f32 equals converting directly;
 *  - a mixed GPTQ checkpoint (lm_head and one MLP module left in bf16 by modules_to_not_convert);
 *  - inspect shows each module's scheme, bits, group size, act-order and zero points.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { open, readFile, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { convert, dequantize, readGguf, readGgufTensorBytes, GGMLType } from "../../src/index.js";
import { openSource } from "../../src/source/registry.js";
import { findPreset } from "../../src/quant/presets.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";
import { writeQuantizedStories } from "../../fixtures/quantized-stories.js";
import { gptqEncode, gptqModuleTensors, gptqQuantizationConfig, type GptqEncodeOptions } from "../../fixtures/gptq.js";
import { awqEncode, awqModuleTensors, awqQuantizationConfig } from "../../fixtures/awq.js";
import { ctPackEncode, ctConfig } from "../../fixtures/compressed-tensors.js";
import { fp8EncodeWeight, fp8ModuleTensors, type Fp8Fmt } from "../../fixtures/fp8.js";
import { withModel, greedyTokens, disposeTestLlama } from "../support/llama.js";
import { llamaQuantize } from "../support/llama-quantize.js";
import { main } from "../../src/cli/main.js";
import { inspect, verify } from "../../src/index.js";
import { permuteRows, llamaGgufName } from "../support/hf-llama.js";

export const tmp = await scratchDir("ggufy-schemes-e2e-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

export interface Variant {
  id: string;
  build(dir: string, expected: Map<string, Float32Array>): Promise<unknown>;
  /** also: llama.cpp generation, Q4_K_M vs llama_model_quantize, dequantize round trip */
  full: boolean;
  inspect: RegExp;
}

export function gptqVariant(id: string, o: Omit<GptqEncodeOptions, "rng">, full: boolean, inspect: RegExp): Variant {
  return {
    id, full, inspect,
    build: (dir, expected) => {
      const opts = { ...o, rng: new Rng(id.length * 7919) };
      return writeQuantizedStories(dir, {
        quantizationConfig: gptqQuantizationConfig(o),
        quantize: (m, w, r, c) => {
          const e = gptqEncode(w, r, c, opts);
          expected.set(`${m}.weight`, e.expected);
          return gptqModuleTensors(m, e, r, c, o.bits);
        },
      });
    },
  };
}

export function fp8Variant(id: string, fmt: Fp8Fmt, layout: { block: [number, number] } | "channel", full: boolean, inspect: RegExp): Variant {
  return {
    id, full, inspect,
    build: (dir, expected) =>
      writeQuantizedStories(dir, {
        torchDtype: "BF16",
        quantizationConfig: { quant_method: "fp8", fmt, activation_scheme: "dynamic", ...(layout === "channel" ? {} : { weight_block_size: layout.block }) },
        quantize: (m, w, r, c) => {
          const e = fp8EncodeWeight(w, r, c, fmt, layout);
          expected.set(`${m}.weight`, e.expected);
          return fp8ModuleTensors(m, e, r, c, fmt, layout === "channel" ? "weight_scale" : "weight_scale_inv");
        },
      }),
  };
}

export function awqVariant(id: string, gs: number, full: boolean, inspect: RegExp): Variant {
  return {
    id, full, inspect,
    build: (dir, expected) =>
      writeQuantizedStories(dir, {
        quantizationConfig: awqQuantizationConfig(gs),
        quantize: (m, w, r, c) => {
          const e = awqEncode(w, r, c, gs);
          expected.set(`${m}.weight`, e.expected);
          return awqModuleTensors(m, e, r, c);
        },
      }),
  };
}

export function ctVariant(id: string, full: boolean, inspect: RegExp): Variant {
  return {
    id, full, inspect,
    build: (dir, expected) =>
      writeQuantizedStories(dir, {
        torchDtype: "BF16",
        quantizationConfig: ctConfig({ group_0: { targets: ["Linear"], weights: { num_bits: 4, type: "int", strategy: "group", group_size: 32, symmetric: false, dynamic: false } } }, "pack-quantized"),
        quantize: (m, w, r, c) => {
          const e = ctPackEncode(m, w, r, c, 4, 32, false);
          expected.set(`${m}.weight`, e.expected);
          return e.tensors;
        },
      }),
  };
}

/** Every GGUF tensor = the decoded source (encoder's reference for quantized ones), Q/K permuted. */
export async function checkF32(dir: string, gguf: string, expected: Map<string, Float32Array>): Promise<void> {
  const g = await readGguf(gguf);
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const src = await openSource(dir);
  try {
    let quantized = 0;
    for (const name of src.names()) {
      const s = src.get(name)!;
      const t = byName.get(llamaGgufName(name))!;
      assert.ok(t, `${name} in the GGUF`);
      assert.equal(t.type, GGMLType.F32);
      let want = expected.get(name);
      if (want) {
        quantized++;
        assert.ok(src.isDecoded(name));
        assert.deepEqual(await src.readAll(name), want, `${name}: decoder = encoder reference`);
      } else want = await src.readAll(name);
      const [rows, cols] = [s.rows, s.rowLength];
      if (/q_proj/.test(name)) want = permuteRows(want, rows, cols, 8);
      if (/k_proj/.test(name)) want = permuteRows(want, rows, cols, 4);
      assert.deepEqual(await readGgufTensorBytes(g, t), new Uint8Array(want.buffer, want.byteOffset, want.byteLength), `${t.name} bytes`);
    }
    assert.equal(quantized, expected.size);
    assert.equal(g.tensors.length, src.names().length);
  } finally {
    await src.close();
  }
}

/**
 * Same tensors (names, types, shapes, bytes); `byName`: in any order — a GPTQ module's logical weight is
 * not a stored key, so like llama.cpp's dequant_model (new_tensors appended) it comes after the stored ones,
 * while the dequantized checkpoint stores it under its name.
 */
async function sameTensors(a: string, b: string, label: string, byName = false): Promise<void> {
  const [ga, gb] = await Promise.all([readGguf(a), readGguf(b)]);
  const key = (f: typeof ga): string[][] => {
    const k = f.tensors.map((t) => [t.name, String(t.type), t.ne.join("x")]);
    return byName ? k.sort((x, y) => (x[0]! < y[0]! ? -1 : 1)) : k;
  };
  assert.deepEqual(key(ga), key(gb), `${label}: names, types, shapes`);
  const other = new Map(gb.tensors.map((t) => [t.name, t]));
  for (const t of ga.tensors) {
    assert.ok(Buffer.from(await readGgufTensorBytes(ga, t)).equals(Buffer.from(await readGgufTensorBytes(gb, other.get(t.name)!))), `${label}: ${t.name} bytes`);
  }
}

/** safetensors header read independently: 8-byte little-endian length, then JSON. */
async function stHeader(file: string): Promise<Record<string, { dtype: string; shape: number[] }>> {
  const fh = await open(file, "r");
  try {
    const len = Buffer.alloc(8);
    await fh.read(len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const h = Buffer.alloc(n);
    await fh.read(h, 0, n, 8);
    const j = JSON.parse(h.toString("utf8")) as Record<string, { dtype: string; shape: number[] }>;
    delete j["__metadata__"];
    return j;
  } finally {
    await fh.close();
  }
}

export function runVariants(VARIANTS: Variant[]): void {
for (const v of VARIANTS) {
  test(`${v.id}: convert f32 = decoder bit for bit${v.full ? "; llama.cpp generates; Q4_K_M = llama_model_quantize; dequantize round trip" : ""}; inspect`, async () => {
    const dir = path.join(tmp, v.id);
    const expected = new Map<string, Float32Array>();
    await v.build(dir, expected);
    assert.equal(expected.size, 35, "every Linear of the 5 blocks is quantized");
    const f32 = path.join(tmp, `${v.id}-f32.gguf`);
    await convert({ input: dir, outfile: f32, outtype: "f32", threads: 2 });
    await checkF32(dir, f32, expected);

    let text = "";
    const io = { stdout: { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream, stderr: process.stderr };
    assert.equal(await main(["inspect", dir], io), 0);
    assert.match(text, v.inspect);
    const info = await inspect(dir);
    assert.equal(info.modules?.length, 35, "inspect lists every quantized module");
    assert.ok(info.modules!.every((m) => typeof m.scheme === "string" && m.bits !== undefined && m.zeroPoints !== undefined), JSON.stringify(info.modules![0]));
    // verify: the F32 GGUF against the quantized checkpoint, exact
    const vr = await verify(f32, dir);
    assert.ok(vr.ok, JSON.stringify(vr.failures));
    if (!v.full) return;

    await withModel(f32, async (model) => {
      const r = await greedyTokens(model, "Once upon a time", 24);
      assert.ok(r.tokens.length > 0 && r.text.trim().length > 0, `${v.id} generates text: ${JSON.stringify(r.text)}`);
    });

    const ours = path.join(tmp, `${v.id}-Q4_K_M.gguf`);
    const ref = path.join(tmp, `${v.id}-Q4_K_M-llama.gguf`);
    await Promise.all([convert({ input: dir, outfile: ours, outtype: "Q4_K_M", threads: 2 }), llamaQuantize(f32, ref, { ftype: findPreset("Q4_K_M")!.ftype })]);
    await sameTensors(ours, ref, `${v.id} Q4_K_M`);

    const plain = path.join(tmp, `${v.id}-dequantized`);
    const r = await dequantize({ input: dir, outdir: plain, dtype: "f32" });
    assert.equal(r.restored, 35);
    const cfg = JSON.parse(await readFile(path.join(plain, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(cfg["quantization_config"], undefined);
    const files = await readdir(plain);
    const header = await stHeader(path.join(plain, "model.safetensors"));
    for (const [k, t] of Object.entries(header)) {
      assert.doesNotMatch(k, /\.(qweight|qzeros|scales|g_idx|weight_scale_inv|weight_scale|input_scale|weight_packed|weight_shape|weight_zero_point)$/, `no scheme key: ${k}`);
      assert.equal(t.dtype, "F32", k);
    }
    assert.equal(Object.keys(header).length, 2 + 5 * 9 + 1 - 1, "embed, norm, 5 × (7 linear + 2 norms)");
    assert.ok(files.includes("tokenizer.model"));
    const viaPlain = path.join(tmp, `${v.id}-via-plain-f32.gguf`);
    await convert({ input: plain, outfile: viaPlain, outtype: "f32", threads: 2 });
    await sameTensors(viaPlain, f32, `${v.id} dequantize → convert f32 vs direct`, true);
  });
}
}
