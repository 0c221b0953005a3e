/**
 * A converted file read back by an independent reader (@huggingface/gguf): every tensor has the name,
 * shape and type expected for Qwen2, and its bytes are ggml's own conversion of the same float input
 * (ggml_fp32_to_fp16_row, ggml_fp32_to_bf16_row_ref, ggml_quantize_chunk(Q8_0), through koffi).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { open, rm } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { convert, GGMLType } from "../../src/index.js";
import { SourceCheckpoint } from "../../src/convert/source.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { ggmlOracle } from "../support/ggml-oracle.js";

const tmp = await scratchDir("ggufy-e2e-readback-");
after(() => rm(tmp, { recursive: true, force: true }));

/** HF → GGUF names for Qwen2, written out here independently of src/models. */
function ggufName(hf: string): string {
  const m = /^model\.layers\.(\d+)\.(.*)$/.exec(hf);
  if (!m) return { "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight" }[hf]!;
  const sub: Record<string, string> = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
  };
  return `blk.${m[1]}.${sub[m[2]!]!}`;
}

const model = path.join(tmp, "qwen2");
await writeTinyQwen2(model, { dtype: "BF16", layers: 2, vocabSize: 151_680 });

for (const [outtype, type] of [["f16", GGMLType.F16], ["bf16", GGMLType.BF16], ["q8_0", GGMLType.Q8_0]] as const) {
  test(`tiny Qwen2 → ${outtype}: @huggingface/gguf reads every tensor with the expected name, shape, type and ggml's bytes`, async () => {
    const outfile = path.join(tmp, `q-${outtype}.gguf`);
    await convert({ input: model, outfile, outtype, threads: 2 });
    const parsed = await gguf(outfile, { allowLocalFile: true });
    const infos = new Map(parsed.tensorInfos.map((t) => [t.name, t]));
    const src = await SourceCheckpoint.open(model);
    const fh = await open(outfile, "r");
    const o = ggmlOracle();
    try {
      const names = src.names();
      assert.equal(parsed.tensorInfos.length, names.length, "one GGUF tensor per checkpoint tensor");
      for (const hf of names) {
        const s = src.get(hf)!;
        const name = ggufName(hf);
        const info = infos.get(name);
        assert.ok(info, `${name} present`);
        assert.deepEqual(info.shape.map(Number), [...s.shape].reverse(), `${name} shape`);
        const is1d = s.shape.length === 1;
        const want = is1d ? GGMLType.F32 : type;
        assert.equal(info.dtype, want, `${name} type`);
        const x = await src.readAll(hf);
        let ref: Uint8Array;
        if (want === GGMLType.F32) ref = new Uint8Array(x.buffer);
        else if (want === GGMLType.F16) ref = new Uint8Array(o.fp32ToFp16Row(x).buffer);
        else if (want === GGMLType.BF16) ref = new Uint8Array(o.fp32ToBf16RowRef(x).buffer);
        else ref = o.quantizeChunk(want, x, s.shape[s.shape.length - 1]!);
        const got = new Uint8Array(ref.length);
        await fh.read(got, 0, got.length, Number(parsed.tensorDataOffset + info.offset));
        assert.ok(Buffer.compare(got, ref) === 0, `${name}: bytes differ from ggml's conversion`);
      }
    } finally {
      await fh.close();
      await src.close();
    }
  });
}
