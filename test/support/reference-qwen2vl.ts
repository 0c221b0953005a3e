/**
 * Reference forward pass of Qwen2-VL's / Qwen2.5-VL's language model in float64, from transformers'
 * modeling_qwen2_vl.py (Qwen2VLTextModel / Qwen2VLDecoderLayer, the same blocks in modeling_qwen2_5_vl.py):
 * a Qwen2 decoder (RMSNorm, q/k/v biases, GQA, SwiGLU MLP, tied embeddings) whose rotary embedding is
 * M-RoPE — `apply_multimodal_rotary_pos_emb`: the rotary half-dimensions j = 0 … D/2−1 are cut into
 * `mrope_section` consecutive sections; section 0 takes its angle from the temporal position id, 1 from the
 * height id, 2 from the width id (angle = pos · θ^(−2j/D)); dimension j rotates with j + D/2 (rotate_half).
 *
 * Positions are given per token as (t, h, w). For text, get_rope_index gives t = h = w = the 1-D position,
 * and M-RoPE then equals plain 1-D RoPE — what llama.cpp's qwen2vl graph does for text tokens
 * (llm_graph_input_pos::set_input copies a text token's position into the first three of its four ids).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { matVec, rmsNorm, tensorToF32 } from "./reference-qwen2.js";

interface Layer {
  inNorm: Float32Array;
  postNorm: Float32Array;
  q: Float32Array;
  qb: Float32Array;
  k: Float32Array;
  kb: Float32Array;
  v: Float32Array;
  vb: Float32Array;
  o: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

export type MropePositions = readonly (readonly [number, number, number])[];

/** get_rope_index for a text-only sequence: every stream is 0, 1, 2 … */
export function textPositions(n: number): [number, number, number][] {
  return Array.from({ length: n }, (_, i) => [i, i, i] as [number, number, number]);
}

export class ReferenceQwen2VlText {
  private constructor(
    readonly hidden: number,
    readonly heads: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly ffn: number,
    readonly vocab: number,
    readonly eps: number,
    readonly sections: readonly number[],
    private readonly invFreq: Float64Array,
    private readonly embed: Float32Array,
    private readonly finalNorm: Float32Array,
    private readonly layers: Layer[],
  ) {}

  static async load(dir: string): Promise<ReferenceQwen2VlText> {
    const c = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const n = (k: string): number => {
      if (typeof c[k] !== "number") throw new Error(`reference: config.json ${k} is missing`);
      return c[k] as number;
    };
    const H = n("hidden_size");
    const heads = n("num_attention_heads");
    const kvHeads = n("num_key_value_heads");
    const D = H / heads;
    const F = n("intermediate_size");
    const V = n("vocab_size");
    if (c["tie_word_embeddings"] !== true) throw new Error("reference: only tied embeddings are implemented");
    const sections = ((c["rope_scaling"] as Record<string, unknown>)["mrope_section"] as number[]).slice();
    const theta = n("rope_theta");
    const inv = new Float64Array(D / 2);
    for (let j = 0; j < D / 2; j++) inv[j] = 1 / Math.pow(theta, (2 * j) / D);
    const ck = await SafetensorsCheckpoint.open(dir);
    try {
      const get = async (name: string, shape: number[]): Promise<Float32Array> => {
        const t = ck.get(name);
        if (!t) throw new Error(`reference: ${name} is missing`);
        if (t.shape.join(",") !== shape.join(",")) throw new Error(`reference: ${name} has shape [${t.shape}], expected [${shape}]`);
        return tensorToF32(await ck.read(name), t.dtype);
      };
      const layers: Layer[] = [];
      for (let i = 0; i < n("num_hidden_layers"); i++) {
        const p = `model.layers.${i}.`;
        layers.push({
          inNorm: await get(p + "input_layernorm.weight", [H]),
          postNorm: await get(p + "post_attention_layernorm.weight", [H]),
          q: await get(p + "self_attn.q_proj.weight", [H, H]),
          qb: await get(p + "self_attn.q_proj.bias", [H]),
          k: await get(p + "self_attn.k_proj.weight", [kvHeads * D, H]),
          kb: await get(p + "self_attn.k_proj.bias", [kvHeads * D]),
          v: await get(p + "self_attn.v_proj.weight", [kvHeads * D, H]),
          vb: await get(p + "self_attn.v_proj.bias", [kvHeads * D]),
          o: await get(p + "self_attn.o_proj.weight", [H, H]),
          gate: await get(p + "mlp.gate_proj.weight", [F, H]),
          up: await get(p + "mlp.up_proj.weight", [F, H]),
          down: await get(p + "mlp.down_proj.weight", [H, F]),
        });
      }
      const embed = await get("model.embed_tokens.weight", [V, H]);
      const finalNorm = await get("model.norm.weight", [H]);
      return new ReferenceQwen2VlText(H, heads, kvHeads, D, F, V, typeof c["rms_norm_eps"] === "number" ? (c["rms_norm_eps"] as number) : 1e-6, sections, inv, embed, finalNorm, layers);
    } finally {
      await ck.close();
    }
  }

  /** In-place M-RoPE of one head vector (offset `o`, D values) at position (t, h, w). */
  private rope(x: Float64Array, o: number, pos: readonly [number, number, number]): void {
    const half = this.headDim / 2;
    let s = 0;
    let end = this.sections[0]!;
    for (let j = 0; j < half; j++) {
      while (j >= end && s < this.sections.length - 1) end += this.sections[++s]!;
      const a = pos[Math.min(s, 2)]! * this.invFreq[j]!;
      const cos = Math.cos(a);
      const sin = Math.sin(a);
      const x1 = x[o + j]!;
      const x2 = x[o + j + half]!;
      x[o + j] = x1 * cos - x2 * sin;
      x[o + j + half] = x2 * cos + x1 * sin;
    }
  }

  /** Logits after each of `at` (indexes into ids), with per-token M-RoPE positions (default: text positions). */
  logits(ids: readonly number[], at: readonly number[], positions: MropePositions = textPositions(ids.length)): Float64Array[] {
    const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V } = this;
    const T = ids.length;
    const group = heads / kvHeads;
    let xs: Float64Array[] = ids.map((id) => Float64Array.from(this.embed.subarray(id * H, (id + 1) * H)));
    for (const l of this.layers) {
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(xs[t]!, l.inNorm, this.eps);
        const q = matVec(l.q, h, H, H, l.qb);
        const k = matVec(l.k, h, kvHeads * D, H, l.kb);
        for (let hh = 0; hh < heads; hh++) this.rope(q, hh * D, positions[t]!);
        for (let hh = 0; hh < kvHeads; hh++) this.rope(k, hh * D, positions[t]!);
        qs.push(q);
        ks.push(k);
        vs.push(matVec(l.v, h, kvHeads * D, H, l.vb));
      }
      const next: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const attn = new Float64Array(H);
        for (let hh = 0; hh < heads; hh++) {
          const kh = Math.floor(hh / group);
          const sc = new Float64Array(t + 1);
          let mx = -Infinity;
          for (let s = 0; s <= t; s++) {
            let d = 0;
            for (let i = 0; i < D; i++) d += qs[t]![hh * D + i]! * ks[s]![kh * D + i]!;
            sc[s] = d / Math.sqrt(D);
            mx = Math.max(mx, sc[s]!);
          }
          let sum = 0;
          for (let s = 0; s <= t; s++) sum += sc[s] = Math.exp(sc[s]! - mx);
          for (let s = 0; s <= t; s++) for (let i = 0; i < D; i++) attn[hh * D + i] += (sc[s]! / sum) * vs[s]![kh * D + i]!;
        }
        const x = xs[t]!.slice();
        const o = matVec(l.o, attn, H, H);
        for (let i = 0; i < H; i++) x[i] += o[i]!;
        const h2 = rmsNorm(x, l.postNorm, this.eps);
        const g = matVec(l.gate, h2, F, H);
        const u = matVec(l.up, h2, F, H);
        for (let i = 0; i < F; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
        const dn = matVec(l.down, g, H, F);
        for (let i = 0; i < H; i++) x[i] += dn[i]!;
        next.push(x);
      }
      xs = next;
    }
    return at.map((p) => {
      const h = rmsNorm(xs[p]!, this.finalNorm, this.eps);
      return matVec(this.embed, h, V, H);
    });
  }
}
