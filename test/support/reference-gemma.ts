/**
 * A reference forward pass for Gemma 2 (Gemma2ForCausalLM) and Gemma 3 text (Gemma3ForCausalLM, the
 * language model of Gemma3ForConditionalGeneration) in plain TypeScript, straight from the safetensors
 * checkpoint, following transformers' modeling_gemma2.py / modeling_gemma3.py:
 *
 *   h = embed_tokens[id] · √hidden_size            (the normalizer, held in the weights' dtype: float32 here)
 *   per layer:
 *     x = rms(h)·(1 + w_in)
 *     q, k, v = q_proj x, k_proj x, v_proj x;  Gemma 3: q, k per head rms(·)·(1 + w_qnorm / w_knorm)
 *     q, k rotated (rotate_half, inv_freq θ^(−2j/d)); Gemma 3: sliding layers θ = rope_local_base_freq,
 *       global layers θ = rope_theta with linear rope_scaling (inv_freq / factor)
 *     scores = q·k · query_pre_attn_scalar^(−½); Gemma 2: cap·tanh(scores / cap) (attn_logit_softcapping)
 *     causal mask; sliding layers also mask keys with q_pos − k_pos ≥ sliding_window
 *     h += rms(o_proj(softmax(scores) v))·(1 + w_post_attn)
 *     h += rms(down_proj(gelu_tanh(gate_proj x2) ⊙ up_proj x2))·(1 + w_post_ffw),  x2 = rms(h)·(1 + w_pre_ffw)
 *   logits = embed_tokens · rms(h)·(1 + w_norm)   (tied; lm_head when the checkpoint has one, Gemma 3)
 *   final_logit_softcapping: cap·tanh(logits / cap)
 *
 * Sliding layers: `layer_types` when config.json has it, else Gemma 2's even layers and Gemma 3's layers i
 * with (i + 1) % sliding_window_pattern ≠ 0. Missing config keys take transformers' Gemma2Config /
 * Gemma3TextConfig defaults (listed here independently of src/models/gemma.ts). The (1 + w) factor is
 * float32 (`1.0 + self.weight.float()`); every sum is accumulated in float64.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { fromF16, toF16 } from "../../src/formats/half.js";
import { matVec, tensorToF32 } from "./reference-qwen2.js";

export interface GemmaRefConfig {
  family: "gemma2" | "gemma3";
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  rmsEps: number;
  ropeTheta: number;
  /** Gemma 3 sliding layers' base */
  ropeLocalTheta: number;
  /** Gemma 3 global layers' linear factor (1 = none) */
  ropeLinearFactor: number;
  queryPreAttnScalar: number;
  slidingWindow: number;
  sliding: boolean[];
  attnSoftcap: number | null;
  finalSoftcap: number | null;
}

/** Variants that show a comparison has teeth: each is a wrong model that must be far from llama.cpp. */
export interface GemmaVariant {
  /** use the stored norm weights w instead of 1 + w (what forgetting the converter's + 1 computes) */
  noPlusOne?: boolean;
  /** attend to the whole prefix in every layer */
  noSlidingWindow?: boolean;
  /** skip attention and final softcapping */
  noSoftcap?: boolean;
  /** Gemma 3: one RoPE (global θ, with scaling) for every layer */
  oneRope?: boolean;
  /**
   * Diagnostic, not HF: GELU the way llama.cpp's CPU backend computes it (ggml-cpu vec.h, GGML_GELU_FP16:
   * the input rounded to float16, looked up in a float16 table of ggml_gelu_f32) — to tell that rounding
   * apart from a conversion error.
   */
  ggmlGelu?: boolean;
  /** another query_pre_attn_scalar (e.g. head_dim where llama.cpp's 27B rule uses hidden/heads) */
  queryPreAttnScalar?: number;
  /** another choice of sliding layers (e.g. the period llama.cpp assumes without a pattern KV) */
  slidingLayers?: readonly boolean[];
}

const GEMMA2: Record<string, unknown> = {
  num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 10000,
  query_pre_attn_scalar: 256, sliding_window: 4096, attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0, vocab_size: 256000,
};
const GEMMA3: Record<string, unknown> = {
  num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, rms_norm_eps: 1e-6, rope_theta: 1_000_000, rope_local_base_freq: 10000,
  query_pre_attn_scalar: 256, sliding_window: 4096, sliding_window_pattern: 6, attn_logit_softcapping: null, final_logit_softcapping: null,
  rope_scaling: null, vocab_size: 262208,
};

export function gemmaConfigFromHf(root: Record<string, unknown>): GemmaRefConfig {
  const arch = (root["architectures"] as string[] | undefined)?.[0] ?? "";
  const family = arch.startsWith("Gemma2") ? "gemma2" : arch.startsWith("Gemma3") ? "gemma3" : undefined;
  if (!family) throw new Error(`reference-gemma: architecture ${arch}`);
  const tc = root["text_config"];
  const c: Record<string, unknown> = { ...(family === "gemma2" ? GEMMA2 : GEMMA3), ...(tc && typeof tc === "object" ? (tc as Record<string, unknown>) : root) };
  const num = (k: string): number => {
    const v = c[k];
    if (typeof v !== "number") throw new Error(`reference-gemma: ${k} is ${JSON.stringify(v)}`);
    return v;
  };
  const opt = (k: string): number | null => (typeof c[k] === "number" ? (c[k] as number) : null);
  const layers = num("num_hidden_layers");
  let sliding: boolean[];
  const lt = c["layer_types"];
  if (Array.isArray(lt)) sliding = lt.map((t) => t === "sliding_attention");
  else if (family === "gemma2") sliding = Array.from({ length: layers }, (_, i) => i % 2 === 0);
  else sliding = Array.from({ length: layers }, (_, i) => (i + 1) % num("sliding_window_pattern") !== 0);
  const rs = c["rope_scaling"] as { rope_type?: string; type?: string; factor?: number } | null | undefined;
  let factor = 1;
  if (rs) {
    const t = rs.rope_type ?? rs.type;
    if (t === "linear" && typeof rs.factor === "number") factor = rs.factor;
    else if (t !== "default") throw new Error(`reference-gemma: rope_scaling ${JSON.stringify(rs)}`);
  }
  return {
    family, hidden: num("hidden_size"), layers, heads: num("num_attention_heads"), kvHeads: num("num_key_value_heads"),
    headDim: num("head_dim"), ffn: num("intermediate_size"), vocab: num("vocab_size"), rmsEps: num("rms_norm_eps"),
    ropeTheta: num("rope_theta"), ropeLocalTheta: family === "gemma3" ? num("rope_local_base_freq") : num("rope_theta"),
    ropeLinearFactor: family === "gemma3" ? factor : 1, queryPreAttnScalar: num("query_pre_attn_scalar"),
    slidingWindow: num("sliding_window"), sliding,
    attnSoftcap: family === "gemma2" ? opt("attn_logit_softcapping") : null, finalSoftcap: opt("final_logit_softcapping"),
  };
}

interface Norm {
  /** stored w */
  w: Float32Array;
  /** float32(1 + w) */
  w1: Float32Array;
}

interface Layer {
  inNorm: Norm;
  postAttn: Norm;
  preFfw: Norm;
  postFfw: Norm;
  qNorm?: Norm;
  kNorm?: Norm;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

function norm(w: Float32Array): Norm {
  const w1 = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) w1[i] = 1 + w[i]!;
  return { w, w1 };
}

/** Gemma RMSNorm of x (or of each `dim`-long slice of x) with factor (1 + w), or w for the noPlusOne variant. */
function gemmaRms(x: Float64Array, n: Norm, eps: number, variant: GemmaVariant, dim = x.length): Float64Array {
  const g = variant.noPlusOne ? n.w : n.w1;
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += dim) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[b + i]! * x[b + i]!;
    const r = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[b + i] = x[b + i]! * r * g[i]!;
  }
  return y;
}

/** transformers' gelu_pytorch_tanh */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** ggml_vec_geglu_f32's GELU with GGML_GELU_FP16: fp16 input → ggml_table_gelu_f16 (fp16 of ggml_gelu_f32) */
export function ggmlGeluF16(x: number): number {
  const f = Math.fround;
  const xf = f(x);
  if (xf <= -10) return 0;
  if (xf >= 10) return xf;
  const h = fromF16(toF16(xf));
  const g = f(f(0.5 * h) * f(1 + f(Math.tanh(f(f(0.7978845608028654 * h) * f(1 + f(f(0.044715 * h) * h)))))));
  return fromF16(toF16(g));
}

export class GemmaReference {
  private constructor(
    readonly cfg: GemmaRefConfig,
    private readonly embed: Float32Array,
    private readonly lmHead: Float32Array,
    private readonly finalNorm: Norm,
    private readonly lw: Layer[],
  ) {}

  static async load(dir: string): Promise<GemmaReference> {
    const root = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const cfg = gemmaConfigFromHf(root);
    const ck = await SafetensorsCheckpoint.open(dir);
    try {
      // Gemma3ForConditionalGeneration: transformers 4.50 saves language_model.model.*, ≥ 4.52 model.language_model.*
      const hf = ck.get("language_model.model.embed_tokens.weight")
        ? (n: string): string => `language_model.${n}`
        : ck.get("model.language_model.embed_tokens.weight")
          ? (n: string): string => n.replace(/^model\./, "model.language_model.")
          : (n: string): string => n;
      const get = async (name: string, shape: number[]): Promise<Float32Array> => {
        const t = ck.get(hf(name));
        if (!t) throw new Error(`reference-gemma: tensor ${hf(name)} is missing`);
        if (t.shape.join(",") !== shape.join(",")) throw new Error(`reference-gemma: ${name} has shape [${t.shape}], expected [${shape}]`);
        return tensorToF32(await ck.read(hf(name)), t.dtype);
      };
      const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V } = cfg;
      const embed = await get("model.embed_tokens.weight", [V, H]);
      const lmHead = cfg.family === "gemma3" && ck.get(hf("lm_head.weight")) ? await get("lm_head.weight", [V, H]) : embed;
      const finalNorm = norm(await get("model.norm.weight", [H]));
      const lw: Layer[] = [];
      for (let i = 0; i < cfg.layers; i++) {
        const p = `model.layers.${i}.`;
        const l: Layer = {
          inNorm: norm(await get(p + "input_layernorm.weight", [H])),
          postAttn: norm(await get(p + "post_attention_layernorm.weight", [H])),
          preFfw: norm(await get(p + "pre_feedforward_layernorm.weight", [H])),
          postFfw: norm(await get(p + "post_feedforward_layernorm.weight", [H])),
          q: await get(p + "self_attn.q_proj.weight", [heads * D, H]),
          k: await get(p + "self_attn.k_proj.weight", [kvHeads * D, H]),
          v: await get(p + "self_attn.v_proj.weight", [kvHeads * D, H]),
          o: await get(p + "self_attn.o_proj.weight", [H, heads * D]),
          gate: await get(p + "mlp.gate_proj.weight", [F, H]),
          up: await get(p + "mlp.up_proj.weight", [F, H]),
          down: await get(p + "mlp.down_proj.weight", [H, F]),
        };
        if (cfg.family === "gemma3") {
          l.qNorm = norm(await get(p + "self_attn.q_norm.weight", [D]));
          l.kNorm = norm(await get(p + "self_attn.k_norm.weight", [D]));
        }
        lw.push(l);
      }
      return new GemmaReference(cfg, embed, lmHead, finalNorm, lw);
    } finally {
      await ck.close();
    }
  }

  /** Logits after each position in `positions` (default: the last) of `ids` (positions 0…n−1). */
  logits(ids: readonly number[], positions?: readonly number[], variant: GemmaVariant = {}): Float64Array[] {
    const want = positions ?? [ids.length - 1];
    const L = this.cfg.layers;
    const ks: Float64Array[][] = Array.from({ length: L }, () => []);
    const vs: Float64Array[][] = Array.from({ length: L }, () => []);
    const out = new Map<number, Float64Array>();
    for (let t = 0; t < ids.length; t++) {
      const h = this.step(ids[t]!, t, ks, vs, variant);
      if (want.includes(t)) out.set(t, this.head(h, variant));
    }
    return want.map((p) => out.get(p)!);
  }

  private rope(x: Float64Array, nHeads: number, pos: number, theta: number, factor: number): void {
    const D = this.cfg.headDim;
    const half = D / 2;
    for (let j = 0; j < half; j++) {
      const invFreq = 1 / Math.pow(theta, (2 * j) / D) / factor;
      const a = pos * invFreq;
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < nHeads; h++) {
        const i0 = h * D + j;
        const i1 = i0 + half;
        const x0 = x[i0]!;
        const x1 = x[i1]!;
        x[i0] = x0 * c - x1 * s;
        x[i1] = x1 * c + x0 * s;
      }
    }
  }

  private step(id: number, pos: number, kCache: Float64Array[][], vCache: Float64Array[][], variant: GemmaVariant): Float64Array {
    const c = this.cfg;
    const { hidden: H, heads, kvHeads, headDim: D, ffn: F, rmsEps: eps } = c;
    const group = heads / kvHeads;
    const scale = Math.pow(variant.queryPreAttnScalar ?? c.queryPreAttnScalar, -0.5);
    const normalizer = Math.fround(Math.sqrt(H));
    const h = new Float64Array(H);
    for (let i = 0; i < H; i++) h[i] = this.embed[id * H + i]! * normalizer;
    for (let li = 0; li < this.lw.length; li++) {
      const l = this.lw[li]!;
      const isSliding = (variant.slidingLayers ?? c.sliding)[li]!;
      const sliding = isSliding && !variant.noSlidingWindow;
      const x = gemmaRms(h, l.inNorm, eps, variant);
      let q = matVec(l.q, x, heads * D, H);
      let k = matVec(l.k, x, kvHeads * D, H);
      const v = matVec(l.v, x, kvHeads * D, H);
      if (l.qNorm && l.kNorm) {
        q = gemmaRms(q, l.qNorm, eps, variant, D);
        k = gemmaRms(k, l.kNorm, eps, variant, D);
      }
      const local = c.family === "gemma3" && isSliding && !variant.oneRope;
      const theta = local ? c.ropeLocalTheta : c.ropeTheta;
      const factor = local ? 1 : c.ropeLinearFactor;
      this.rope(q, heads, pos, theta, factor);
      this.rope(k, kvHeads, pos, theta, factor);
      kCache[li]!.push(k);
      vCache[li]!.push(v);
      const ks = kCache[li]!;
      const vs = vCache[li]!;
      const n = ks.length;
      const first = sliding ? Math.max(0, pos - c.slidingWindow + 1) : 0;
      const att = new Float64Array(heads * D);
      const sc = new Float64Array(n);
      const cap = variant.noSoftcap ? null : c.attnSoftcap;
      for (let hd = 0; hd < heads; hd++) {
        const kvh = Math.floor(hd / group);
        let mx = -Infinity;
        for (let s = first; s < n; s++) {
          const kk = ks[s]!;
          let d = 0;
          for (let i = 0; i < D; i++) d += q[hd * D + i]! * kk[kvh * D + i]!;
          d *= scale;
          if (cap !== null) d = cap * Math.tanh(d / cap);
          sc[s] = d;
          if (d > mx) mx = d;
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
      const o = gemmaRms(matVec(l.o, att, H, heads * D), l.postAttn, eps, variant);
      for (let i = 0; i < H; i++) h[i] += o[i]!;
      const x2 = gemmaRms(h, l.preFfw, eps, variant);
      const g = matVec(l.gate, x2, F, H);
      const u = matVec(l.up, x2, F, H);
      for (let i = 0; i < F; i++) g[i] = (variant.ggmlGelu ? ggmlGeluF16(g[i]!) : geluTanh(g[i]!)) * u[i]!;
      const dn = gemmaRms(matVec(l.down, g, H, F), l.postFfw, eps, variant);
      for (let i = 0; i < H; i++) h[i] += dn[i]!;
    }
    return h;
  }

  private head(h: Float64Array, variant: GemmaVariant): Float64Array {
    const logits = matVec(this.lmHead, gemmaRms(h, this.finalNorm, this.cfg.rmsEps, variant), this.cfg.vocab, this.cfg.hidden);
    const cap = variant.noSoftcap ? null : this.cfg.finalSoftcap;
    if (cap) for (let i = 0; i < logits.length; i++) logits[i] = cap * Math.tanh(logits[i]! / cap);
    return logits;
  }
}
