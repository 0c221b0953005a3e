/**
 * A reference forward pass of transformers' Phi-3 architecture (modeling_phi3.py, Phi3ForCausalLM), in
 * plain TypeScript, straight from the safetensors checkpoint:
 *
 *   h = embed_tokens[ids]
 *   per layer: q | k | v = qkv_proj(rms(h))                    (rows split q: heads·d, k and v: kv_heads·d)
 *              h += o_proj(attn(rope(q), rope(k), v))
 *              gate | up = gate_up_proj(rms(h))               (Phi3MLP: chunk(2) → up · silu(gate))
 *              h += down_proj(up · silu(gate))
 *   logits = lm_head(rms(h))                                   (lm_head = embed_tokens when tied)
 *
 * RoPE (Phi3RotaryEmbedding + modeling_rope_utils): NEOX / rotate_half on the first `rotary dims` =
 * int(head_dim · partial_rotary_factor) of each head, the rest passed through (apply_rotary_pos_emb's
 * q_rot / q_pass). inv_freq_j = 1 / (ext_j · θ^(2j/dim)); for longrope ext is `short_factor` or
 * `long_factor` (_compute_longrope_parameters), and cos/sin are multiplied by the attention factor
 * √(1 + ln(max/original) / ln(original)) (or rope_scaling.attention_factor). Which factors: transformers
 * switches by the current sequence length (longrope_frequency_update), llama.cpp by the context size
 * (llama_model::get_rope_factors: n_ctx_seq > original → long); the caller says which (`factors`), so
 * the comparison uses llama.cpp's choice for the context it runs with. transformers masks beyond
 * `sliding_window`; llama.cpp's phi3 ignores it (SWA disabled in load_arch_hparams), so the reference
 * applies it only when asked (`slidingWindow`) and the tests keep prompts shorter than the window.
 * Weights widened to float32 exactly, sums in float64 (helpers from reference-qwen2.ts).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { logSoftmax, matVec, rmsNorm, tensorToF32 } from "./reference-qwen2.js";

export interface Phi3RefConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeDims: number;
  ffn: number;
  vocab: number;
  rmsEps: number;
  ropeTheta: number;
  tied: boolean;
  maxCtx: number;
  origCtx: number;
  longFactor?: number[];
  shortFactor?: number[];
  attentionFactor?: number;
  slidingWindow?: number;
}

export function phi3ConfigFromHf(c: Record<string, unknown>): Phi3RefConfig {
  const num = (k: string, dflt?: number): number => {
    const v = c[k];
    if (typeof v === "number") return v;
    if (dflt !== undefined) return dflt;
    throw new Error(`config.json: ${k} is missing`);
  };
  const hidden = num("hidden_size");
  const heads = num("num_attention_heads");
  const headDim = hidden / heads;
  const rot = num("partial_rotary_factor", 1);
  const rs = c["rope_scaling"] as Record<string, unknown> | null | undefined;
  const cfg: Phi3RefConfig = {
    hidden, layers: num("num_hidden_layers"), heads, kvHeads: num("num_key_value_heads", heads), headDim,
    ropeDims: Math.floor(headDim * rot), ffn: num("intermediate_size"), vocab: num("vocab_size"),
    rmsEps: num("rms_norm_eps"), ropeTheta: num("rope_theta", 10000), tied: c["tie_word_embeddings"] === true,
    maxCtx: num("max_position_embeddings"), origCtx: num("original_max_position_embeddings", num("max_position_embeddings")),
  };
  if (typeof c["sliding_window"] === "number") cfg.slidingWindow = c["sliding_window"];
  if (rs) {
    const t = String(rs["type"] ?? rs["rope_type"]);
    if (t !== "longrope" && t !== "su") throw new Error(`reference phi3: rope_scaling type ${t} is not supported`);
    cfg.longFactor = rs["long_factor"] as number[];
    cfg.shortFactor = rs["short_factor"] as number[];
    const scale = cfg.maxCtx / cfg.origCtx;
    cfg.attentionFactor = typeof rs["attention_factor"] === "number" ? rs["attention_factor"] : scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(cfg.origCtx));
  }
  return cfg;
}

/** Which longrope factors: llama.cpp's rule for a context of `nCtx` tokens per sequence. */
export function llamaCppFactorChoice(cfg: Phi3RefConfig, nCtx: number): "long" | "short" {
  return nCtx > cfg.origCtx ? "long" : "short";
}

export interface Phi3Variant {
  /** longrope factors to use (required when the config has longrope); "none": plain θ frequencies */
  factors?: "long" | "short" | "none";
  /** leave cos/sin unscaled (a converter that forgot rope.scaling.attn_factor) */
  noAttentionFactor?: boolean;
  /** rotate the whole head even with partial_rotary_factor < 1 */
  fullRotary?: boolean;
  /** transformers' sliding-window mask (llama.cpp's phi3 does not apply it) */
  slidingWindow?: boolean;
  /** read gate_up_proj as up | gate (a converter that split the fused MLP the wrong way round) */
  swapGateUp?: boolean;
  /** read qkv_proj as q | v | k */
  swapKV?: boolean;
}

interface Layer {
  inNorm: Float32Array;
  postNorm: Float32Array;
  qkv: Float32Array;
  o: Float32Array;
  gateUp: Float32Array;
  down: Float32Array;
}

export class Phi3Reference {
  private constructor(
    readonly cfg: Phi3RefConfig,
    private readonly embed: Float32Array,
    private readonly lmHead: Float32Array,
    private readonly finalNorm: Float32Array,
    private readonly lw: Layer[],
  ) {}

  static async load(dir: string): Promise<Phi3Reference> {
    const cfg = phi3ConfigFromHf(JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>);
    const ck = await SafetensorsCheckpoint.open(dir);
    try {
      const get = async (name: string, shape: number[]): Promise<Float32Array> => {
        const t = ck.get(name);
        if (!t) throw new Error(`reference phi3: tensor ${name} is missing`);
        if (t.shape.join(",") !== shape.join(",")) throw new Error(`reference phi3: ${name} has shape [${t.shape}], expected [${shape}]`);
        return tensorToF32(await ck.read(name), t.dtype);
      };
      const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V } = cfg;
      const embed = await get("model.embed_tokens.weight", [V, H]);
      const lmHead = cfg.tied ? embed : await get("lm_head.weight", [V, H]);
      const finalNorm = await get("model.norm.weight", [H]);
      const lw: Layer[] = [];
      for (let i = 0; i < cfg.layers; i++) {
        const p = `model.layers.${i}.`;
        lw.push({
          inNorm: await get(p + "input_layernorm.weight", [H]),
          postNorm: await get(p + "post_attention_layernorm.weight", [H]),
          qkv: await get(p + "self_attn.qkv_proj.weight", [(heads + 2 * kvHeads) * D, H]),
          o: await get(p + "self_attn.o_proj.weight", [H, heads * D]),
          gateUp: await get(p + "mlp.gate_up_proj.weight", [2 * F, H]),
          down: await get(p + "mlp.down_proj.weight", [H, F]),
        });
      }
      return new Phi3Reference(cfg, embed, lmHead, finalNorm, lw);
    } finally {
      await ck.close();
    }
  }

  /** Logits after each of `positions` (default: the last) for `ids` at positions 0…n−1. */
  logits(ids: readonly number[], positions: readonly number[] | undefined, variant: Phi3Variant): Float64Array[] {
    const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V, rmsEps } = this.cfg;
    const want = positions ?? [ids.length - 1];
    const rot = variant.fullRotary ? D : this.cfg.ropeDims;
    const half = rot / 2;
    // inverse frequencies and the cos/sin scale
    const ext = new Float64Array(half).fill(1);
    let mscale = 1;
    const factors = variant.factors ?? (this.cfg.longFactor ? undefined : "none");
    if (factors === undefined) throw new Error("reference phi3: the config has longrope factors; say which (long / short / none)");
    if (factors !== "none") {
      const f = factors === "long" ? this.cfg.longFactor : this.cfg.shortFactor;
      if (!f || f.length !== half) throw new Error(`reference phi3: ${factors} factors have ${f?.length} values for ${half} pairs`);
      for (let j = 0; j < half; j++) ext[j] = f[j]!;
      if (!variant.noAttentionFactor) mscale = this.cfg.attentionFactor ?? 1;
    }
    const invFreq = new Float64Array(half);
    for (let j = 0; j < half; j++) invFreq[j] = 1 / (ext[j]! * Math.pow(this.cfg.ropeTheta, (2 * j) / rot));
    const rope = (x: Float64Array, nh: number, pos: number): void => {
      for (let h = 0; h < nh; h++) {
        const b = h * D;
        for (let j = 0; j < half; j++) {
          const a = pos * invFreq[j]!;
          const c = Math.cos(a) * mscale;
          const s = Math.sin(a) * mscale;
          const x0 = x[b + j]!;
          const x1 = x[b + j + half]!;
          x[b + j] = x0 * c - x1 * s;
          x[b + j + half] = x1 * c + x0 * s;
        }
      }
    };
    const window = variant.slidingWindow ? this.cfg.slidingWindow : undefined;
    const kc: Float64Array[][] = this.lw.map(() => []);
    const vc: Float64Array[][] = this.lw.map(() => []);
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(D);
    const out = new Map<number, Float64Array>();
    for (let pos = 0; pos < ids.length; pos++) {
      const id = ids[pos]!;
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token ${id} outside the vocabulary`);
      const h = Float64Array.from(this.embed.subarray(id * H, (id + 1) * H));
      for (let li = 0; li < this.lw.length; li++) {
        const l = this.lw[li]!;
        const x = rmsNorm(h, l.inNorm, rmsEps);
        const qkv = matVec(l.qkv, x, (heads + 2 * kvHeads) * D, H);
        const q = qkv.slice(0, heads * D);
        let k = qkv.slice(heads * D, (heads + kvHeads) * D);
        let v = qkv.slice((heads + kvHeads) * D);
        if (variant.swapKV) [k, v] = [v, k];
        rope(q, heads, pos);
        rope(k, kvHeads, pos);
        kc[li]!.push(k);
        vc[li]!.push(v);
        const ks = kc[li]!;
        const vs = vc[li]!;
        const n = ks.length;
        // transformers' sliding window: key s is visible from query pos when pos - s < window
        const first = window !== undefined ? Math.max(0, pos - window + 1) : 0;
        const att = new Float64Array(heads * D);
        const sc = new Float64Array(n);
        for (let hd = 0; hd < heads; hd++) {
          const kvh = Math.floor(hd / group);
          let mx = -Infinity;
          for (let s = first; s < n; s++) {
            const kk = ks[s]!;
            let d = 0;
            for (let i = 0; i < D; i++) d += q[hd * D + i]! * kk[kvh * D + i]!;
            sc[s] = d * scale;
            if (sc[s]! > mx) mx = sc[s]!;
          }
          let sum = 0;
          for (let s = first; s < n; s++) {
            sc[s] = Math.exp(sc[s]! - mx);
            sum += sc[s]!;
          }
          for (let s = first; s < n; s++) {
            const w = sc[s]! / sum;
            const vv = vs[s]!;
            for (let i = 0; i < D; i++) att[hd * D + i] += w * vv[kvh * D + i]!;
          }
        }
        const o = matVec(l.o, att, H, heads * D);
        for (let i = 0; i < H; i++) h[i] += o[i]!;
        const x2 = rmsNorm(h, l.postNorm, rmsEps);
        const gu = matVec(l.gateUp, x2, 2 * F, H);
        const act = new Float64Array(F);
        for (let i = 0; i < F; i++) {
          const g = variant.swapGateUp ? gu[F + i]! : gu[i]!;
          const u = variant.swapGateUp ? gu[i]! : gu[F + i]!;
          act[i] = u * (g / (1 + Math.exp(-g)));
        }
        const dn = matVec(l.down, act, H, F);
        for (let i = 0; i < H; i++) h[i] += dn[i]!;
      }
      if (want.includes(pos)) out.set(pos, matVec(this.lmHead, rmsNorm(h, this.finalNorm, rmsEps), V, H));
    }
    return want.map((p) => out.get(p)!);
  }

  logProbs(ids: readonly number[], positions: readonly number[] | undefined, variant: Phi3Variant): Float64Array[] {
    return this.logits(ids, positions, variant).map(logSoftmax);
  }
}
