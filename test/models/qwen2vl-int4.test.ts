/**
 * Qwen2.5-VL in unsloth's bnb-4bit layout (fixtures/qwen2vl.ts writeTinyQwenVlInt4: NF4, double quant, blocksize 64,
 * bf16; the merger skipped, the ViT blocks' qkv / proj / MLP and every LLM linear quantized). Converted to F32
 * (LLM --outtype f32, --mmproj-type f32: the patch kernels are F32 too), both files must equal the bitsandbytes
 * decoding bit for bit, tensor by tensor, through the converter's mapping (written here from qwenvl.py): qkv thirds,
 * the Conv3d kernel's two temporal frames, renames.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/convert/convert.js";
import type { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import type { BnbModule } from "../../src/quant/bnb/index.js";
import { decodedTensor, ggufTensors, openDecodedCheckpoint, sameBits } from "../support/int4-bitexact.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { TINY_QWEN25VL as D, writeTinyQwenVl, writeTinyQwenVlInt4 } from "../../fixtures/qwen2vl.js";

let tmp = "";
let int4 = "";
let llmFile = "";
let mmFile = "";
let quantized: string[] = [];
let st: SafetensorsCheckpoint;
let mods: Map<string, BnbModule>;

before(async () => {
  tmp = await scratchDir("ggufy-qwen2vl-int4-");
  const bf16 = path.join(tmp, "Qwen2.5-VL");
  int4 = path.join(tmp, "Qwen2.5-VL-bnb-4bit");
  await writeTinyQwenVl(bf16, D, 3);
  quantized = await writeTinyQwenVlInt4(bf16, int4);
  await rm(bf16, { recursive: true, force: true });
  llmFile = path.join(tmp, "llm-f32.gguf");
  mmFile = path.join(tmp, "mmproj-f32.gguf");
  await convert({ input: int4, outtype: "f32", mmprojType: "f32", outfile: llmFile, mmprojOutfile: mmFile, threads: 2 });
  ({ st, mods } = await openDecodedCheckpoint(int4));
});
after(async () => {
  await st?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const decoded = (name: string): Promise<Float32Array> => decodedTensor({ dir: int4, st, mods }, name);

/** The GGUF's tensors, every one F32, as float32 values. */
async function* ggufF32(file: string): AsyncGenerator<{ name: string; ne: number[]; dtype: number; data: Float32Array }> {
  for await (const t of ggufTensors(file)) {
    assert.equal(t.dtype, 0, `${t.name} is F32`);
    yield { name: t.name, ne: t.ne, dtype: t.dtype, data: new Float32Array(t.bits.buffer, t.bits.byteOffset, t.bits.length) };
  }
}

const same = sameBits;

test("the int4 fixture is NF4 + double quant where unsloth's Qwen2.5-VL bnb-4bit is (ViT blocks and LLM linears, not the merger)", () => {
  const want = [
    ...Array.from({ length: D.llm.layers }, (_, i) => ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map((m) => `model.layers.${i}.${m}.weight`)).flat(),
    ...Array.from({ length: D.vision.depth }, (_, i) => ["attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map((m) => `visual.blocks.${i}.${m}.weight`)).flat(),
  ].sort();
  assert.deepEqual([...quantized].sort(), want);
  assert.deepEqual([...mods.keys()].sort(), want);
  for (const m of mods.values()) {
    assert.equal(m.kind, "nf4");
    if (m.kind === "nf4") assert.ok(m.nested && m.blocksize === 64, m.weight);
  }
  for (const plain of ["visual.merger.mlp.0.weight", "visual.merger.mlp.2.weight", "visual.patch_embed.proj.weight", "model.embed_tokens.weight"]) assert.equal(st.get(plain)?.dtype, "BF16", plain);
});

/** qwenvl.py / TextModel names, source and how the values are taken */
function source(name: string): { src: string; how: "copy" | "third0" | "third1" | "third2" | "frame0" | "frame1" } {
  let m: RegExpExecArray | null;
  if (name === "v.patch_embd.weight") return { src: "visual.patch_embed.proj.weight", how: "frame0" };
  if (name === "v.patch_embd.weight.1") return { src: "visual.patch_embed.proj.weight", how: "frame1" };
  if ((m = /^v\.blk\.(\d+)\.attn_([qkv])\.(weight|bias)$/.exec(name))) return { src: `visual.blocks.${m[1]}.attn.qkv.${m[3]}`, how: `third${"qkv".indexOf(m[2]!)}` as "third0" };
  if ((m = /^v\.blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(name))) {
    const map: Record<string, string> = { ln1: "norm1", ln2: "norm2", attn_out: "attn.proj", ffn_up: "mlp.up_proj", ffn_gate: "mlp.gate_proj", ffn_down: "mlp.down_proj" };
    return { src: `visual.blocks.${m[1]}.${map[m[2]!]}.${m[3]}`, how: "copy" };
  }
  if ((m = /^mm\.(0|2)\.(weight|bias)$/.exec(name))) return { src: `visual.merger.mlp.${m[1]}.${m[2]}`, how: "copy" };
  if (name === "v.post_ln.weight") return { src: "visual.merger.ln_q.weight", how: "copy" };
  if (name === "token_embd.weight") return { src: "model.embed_tokens.weight", how: "copy" };
  if (name === "output_norm.weight") return { src: "model.norm.weight", how: "copy" };
  if ((m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(name))) {
    const map: Record<string, string> = {
      attn_norm: "input_layernorm", ffn_norm: "post_attention_layernorm", attn_q: "self_attn.q_proj", attn_k: "self_attn.k_proj", attn_v: "self_attn.v_proj",
      attn_output: "self_attn.o_proj", ffn_gate: "mlp.gate_proj", ffn_up: "mlp.up_proj", ffn_down: "mlp.down_proj",
    };
    return { src: `model.layers.${m[1]}.${map[m[2]!]}.${m[3]}`, how: "copy" };
  }
  throw new Error(`unexpected GGUF tensor ${name}`);
}

for (const which of ["LLM", "mmproj"] as const) {
  test(`${which} F32 GGUF = bitsandbytes decoding through qwenvl.py's mapping, bit for bit, every tensor`, async () => {
    let n = 0;
    for await (const t of ggufF32(which === "LLM" ? llmFile : mmFile)) {
      const s = source(t.name);
      const src = await decoded(s.src);
      let want: Float32Array;
      if (s.how === "copy") want = src;
      else if (s.how.startsWith("third")) {
        const k = Number(s.how.slice(5));
        want = src.slice((k * src.length) / 3, ((k + 1) * src.length) / 3);
      } else {
        // [E, 3, 2, p, p] → frame t: [E, 3, p, p]
        const t0 = Number(s.how.slice(5));
        const pp = D.vision.patch * D.vision.patch;
        const planes = src.length / (2 * pp);
        want = new Float32Array(planes * pp);
        for (let c = 0; c < planes; c++) want.set(src.subarray((c * 2 + t0) * pp, (c * 2 + t0 + 1) * pp), c * pp);
      }
      assert.equal(t.data.length, want.length, t.name);
      assert.ok(same(t.data, want), `${t.name} differs from the decoded ${s.src}`);
      n++;
    }
    // LLM: 2 + 12 per layer (tied); mmproj: 2 + 16 per block + post_ln + mm.0/mm.2
    assert.equal(n, which === "LLM" ? 2 + 12 * D.llm.layers : 2 + 16 * D.vision.depth + 1 + 4);
  });
}
