/**
 * A reference forward pass for Llama-family decoders in the Hugging Face layout (Qwen2ForCausalLM,
 * LlamaForCausalLM), in plain TypeScript, straight from the safetensors checkpoint. It follows
 * transformers' modeling_qwen2.py / modeling_llama.py:
 *
 *   h = embed_tokens[ids]
 *   per layer: h += o_proj(attn(rope(q_proj(rms(h))), rope(k_proj(rms(h))), v_proj(rms(h))))
 *              h += down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))
 *   logits = lm_head(rms(h))            (lm_head = embed_tokens when tie_word_embeddings)
 *
 * RMSNorm x·w/√(mean(x²)+eps); RoPE in the NEOX / rotate_half layout (pairs i and i + d/2, inv_freq θ^(−2j/d));
 * grouped-query causal attention with scale 1/√head_dim; q/k/v biases when the checkpoint has them (Qwen2).
 * Weights are widened to float32 exactly (F32, BF16, F16), every sum is accumulated in float64.
 *
 * Also (the llama3 helper's families):
 * - an explicit `head_dim` different from hidden/heads (Mistral-Nemo, Qwen3): q_proj has heads·head_dim rows;
 * - `rope_scaling {rope_type: "llama3"}` (Llama 3.1+): inv_freq rescaled as transformers'
 *   modeling_rope_utils.py `_compute_llama3_parameters` defines it — wavelength 2π/inv_freq; inv_freq/factor
 *   above original_max_position_embeddings/low_freq_factor, unchanged below …/high_freq_factor, and between
 *   them smooth·inv_freq + (1 − smooth)·inv_freq/factor with smooth = (orig/wavelen − low)/(high − low);
 *   attention factor 1. Computed here in float64 from the config, independently of src/models/rope.ts;
 * - `rope_scaling {type: "yarn"}` (Qwen2.5 long context): `_compute_yarn_parameters` with the explicit factor
 *   (current transformers; earlier 4.x releases substituted max_position_embeddings / original_max_position_embeddings), cos and
 *   sin multiplied by the attention factor 0.1·ln(factor) + 1 (yarnInvFreq);
 * - Qwen3's per-head RMSNorms `self_attn.q_norm` / `k_norm` (modeling_qwen3.py Qwen3Attention: applied to each
 *   head of q and k before RoPE), used when the checkpoint has them;
 * - `sliding_window` (Mistral v0.1, modeling_mistral.py): only as a variant (ForwardVariant.slidingWindow),
 *   since llama.cpp's `llama` architecture attends in full.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { f16Lut } from "../../src/formats/half.js";

export interface DecoderConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  rmsEps: number;
  ropeTheta: number;
  tied: boolean;
  /** rope_scaling, when the config has one the reference implements */
  ropeScaling?:
    | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; origCtx: number }
    | { type: "yarn"; factor: number; origCtx: number; attentionFactor: number; betaFast: number; betaSlow: number; truncate: boolean }
    | { type: "linear"; factor: number };
}

/** Read the fields the forward pass needs from an HF config.json object (Qwen2/Llama defaults). */
export function decoderConfigFromHf(c: Record<string, unknown>): DecoderConfig {
  const num = (k: string, dflt?: number): number => {
    const v = c[k];
    if (typeof v === "number") return v;
    if (dflt !== undefined) return dflt;
    throw new Error(`config.json: ${k} is missing`);
  };
  const hidden = num("hidden_size");
  const heads = num("num_attention_heads");
  let ropeScaling: DecoderConfig["ropeScaling"];
  const rs = c["rope_scaling"];
  if (rs !== undefined && rs !== null) {
    const r = rs as Record<string, unknown>;
    const type = r["rope_type"] ?? r["type"];
    const req = (k: string): number => {
      const v = r[k];
      if (typeof v !== "number") throw new Error(`reference forward: rope_scaling.${k} is missing`);
      return v;
    };
    if (type === "llama3") {
      // transformers requires all four (modeling_rope_utils.py _validate_llama3_parameters)
      ropeScaling = { type: "llama3", factor: req("factor"), lowFreqFactor: req("low_freq_factor"), highFreqFactor: req("high_freq_factor"), origCtx: req("original_max_position_embeddings") };
    } else if (type === "linear") {
      // _compute_linear_scaling_rope_parameters: inv_freq / factor
      ropeScaling = { type: "linear", factor: req("factor") };
    } else if (type === "yarn") {
      // current transformers (modeling_rope_utils.py _compute_yarn_parameters): the explicit factor is
      // used; earlier 4.x releases replaced it by max_position_embeddings / original_max_position_embeddings when both are set
      const factor = req("factor");
      const opt = (k: string): number | undefined => (typeof r[k] === "number" ? (r[k] as number) : undefined);
      const getMscale = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const mscale = opt("mscale");
      const mscaleAll = opt("mscale_all_dim");
      const attentionFactor = opt("attention_factor") ?? (mscale && mscaleAll ? getMscale(factor, mscale) / getMscale(factor, mscaleAll) : getMscale(factor));
      ropeScaling = {
        type: "yarn", factor, origCtx: opt("original_max_position_embeddings") ?? num("max_position_embeddings"), attentionFactor,
        betaFast: opt("beta_fast") || 32, betaSlow: opt("beta_slow") || 1, truncate: r["truncate"] !== false,
      };
    } else if (type !== "default") throw new Error(`reference forward: rope_scaling type ${JSON.stringify(type)} is not supported`);
  }
  return {
    ...(ropeScaling ? { ropeScaling } : {}),
    hidden,
    layers: num("num_hidden_layers"),
    heads,
    kvHeads: num("num_key_value_heads", heads),
    headDim: num("head_dim", hidden / heads),
    ffn: num("intermediate_size"),
    vocab: num("vocab_size"),
    rmsEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    tied: c["tie_word_embeddings"] === true,
  };
}

/** Widen a tensor's raw bytes to float32 (exact for F32, BF16, F16). */
export function tensorToF32(bytes: Uint8Array, dtype: string): Float32Array {
  switch (dtype) {
    case "F32": {
      const out = new Float32Array(bytes.length / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case "BF16": {
      const n = bytes.length / 2;
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >>> 0;
      return out;
    }
    case "F16": {
      const n = bytes.length / 2;
      const out = new Float32Array(n);
      const lut = f16Lut();
      for (let i = 0; i < n; i++) out[i] = lut[bytes[2 * i]! | (bytes[2 * i + 1]! << 8)]!;
      return out;
    }
    default:
      throw new Error(`reference forward: unsupported dtype ${dtype}`);
  }
}

interface LayerWeights {
  inNorm: Float32Array;
  postNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qb?: Float32Array;
  kb?: Float32Array;
  vb?: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  /** Qwen3: per-head RMSNorm weights [head_dim] of q and k */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
}

/** Options for variants used to show that a comparison has teeth (a wrong model must be far away). */
export interface ForwardVariant {
  /** rotate adjacent pairs (2i, 2i+1) instead of (i, i + d/2) */
  interleavedRope?: boolean;
  /** skip the rotary embedding */
  noRope?: boolean;
  /** ignore q/k/v biases */
  noBias?: boolean;
  /** ignore rope_scaling (plain θ^(−2j/d) frequencies) */
  noRopeScaling?: boolean;
  /** skip Qwen3's q/k norms */
  noQkNorm?: boolean;
  /** attend only to the last `slidingWindow` positions (pos − s < window), as transformers' Mistral with sliding_window */
  slidingWindow?: number;
}

export class ReferenceDecoder {
  private constructor(
    readonly cfg: DecoderConfig,
    private readonly embed: Float32Array,
    private readonly lmHead: Float32Array,
    private readonly finalNorm: Float32Array,
    private readonly lw: LayerWeights[],
    private readonly invFreq: Float64Array,
    private readonly plainInvFreq: Float64Array,
    /** YaRN's attention factor: cos and sin are multiplied by it (so q·k by its square) */
    private readonly ropeAttnFactor: number,
  ) {}

  /** the rotary inverse frequencies in use (after rope_scaling) */
  get inverseFrequencies(): Float64Array {
    return this.invFreq.slice();
  }

  /** Load a model folder (config.json + safetensors, sharded or not). */
  static async load(dir: string): Promise<ReferenceDecoder> {
    const cfg = decoderConfigFromHf(JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>);
    const ck = await SafetensorsCheckpoint.open(dir);
    try {
      const get = async (name: string, shape: number[]): Promise<Float32Array> => {
        const t = ck.get(name);
        if (!t) throw new Error(`reference forward: tensor ${name} is missing`);
        if (t.shape.join(",") !== shape.join(",")) throw new Error(`reference forward: ${name} has shape [${t.shape}], expected [${shape}]`);
        return tensorToF32(await ck.read(name), t.dtype);
      };
      const opt = async (name: string, shape: number[]): Promise<Float32Array | undefined> => (ck.get(name) ? get(name, shape) : undefined);
      const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V } = cfg;
      const embed = await get("model.embed_tokens.weight", [V, H]);
      const lmHead = cfg.tied || !ck.get("lm_head.weight") ? embed : await get("lm_head.weight", [V, H]);
      const finalNorm = await get("model.norm.weight", [H]);
      const lw: LayerWeights[] = [];
      for (let i = 0; i < cfg.layers; i++) {
        const p = `model.layers.${i}.`;
        const l: LayerWeights = {
          inNorm: await get(p + "input_layernorm.weight", [H]),
          postNorm: await get(p + "post_attention_layernorm.weight", [H]),
          q: await get(p + "self_attn.q_proj.weight", [heads * D, H]),
          k: await get(p + "self_attn.k_proj.weight", [kvHeads * D, H]),
          v: await get(p + "self_attn.v_proj.weight", [kvHeads * D, H]),
          o: await get(p + "self_attn.o_proj.weight", [H, heads * D]),
          gate: await get(p + "mlp.gate_proj.weight", [F, H]),
          up: await get(p + "mlp.up_proj.weight", [F, H]),
          down: await get(p + "mlp.down_proj.weight", [H, F]),
        };
        const qb = await opt(p + "self_attn.q_proj.bias", [heads * D]);
        const kb = await opt(p + "self_attn.k_proj.bias", [kvHeads * D]);
        const vb = await opt(p + "self_attn.v_proj.bias", [kvHeads * D]);
        if (qb) l.qb = qb;
        if (kb) l.kb = kb;
        if (vb) l.vb = vb;
        const qn = await opt(p + "self_attn.q_norm.weight", [D]);
        const kn = await opt(p + "self_attn.k_norm.weight", [D]);
        if (qn) l.qNorm = qn;
        if (kn) l.kNorm = kn;
        lw.push(l);
      }
      const plain = new Float64Array(D / 2);
      for (let j = 0; j < D / 2; j++) plain[j] = 1 / Math.pow(cfg.ropeTheta, (2 * j) / D);
      const rs = cfg.ropeScaling;
      const invFreq =
        rs?.type === "llama3" ? llama3InvFreq(plain, rs) : rs?.type === "yarn" ? yarnInvFreq(cfg.ropeTheta, D, rs) : rs?.type === "linear" ? plain.map((v) => v / rs.factor) : plain;
      return new ReferenceDecoder(cfg, embed, lmHead, finalNorm, lw, invFreq, plain, rs?.type === "yarn" ? rs.attentionFactor : 1);
    } finally {
      await ck.close();
    }
  }

  /** A decoding session: feed tokens one at a time (keys/values are cached), read logits when needed. */
  session(variant: ForwardVariant = {}): ReferenceSession {
    return new ReferenceSession(this, variant);
  }

  /**
   * Logits after each position in `positions` (default: the last one) for the token sequence `ids`
   * (positions 0…n−1, no BOS added). Returns one Float64Array of vocab_size per requested position.
   */
  logits(ids: readonly number[], positions?: readonly number[], variant: ForwardVariant = {}): Float64Array[] {
    const n = ids.length;
    if (n === 0) throw new Error("reference forward: empty input");
    const want = positions ?? [n - 1];
    for (const p of want) if (!(p >= 0 && p < n)) throw new RangeError(`position ${p} outside 0…${n - 1}`);
    const s = this.session(variant);
    const out = new Map<number, Float64Array>();
    for (let t = 0; t < n; t++) {
      s.push(ids[t]!);
      if (want.includes(t)) out.set(t, s.logits());
    }
    return want.map((p) => out.get(p)!);
  }

  /** log-softmax of the logits after the last position: log P(next token | ids) over the whole vocabulary. */
  nextTokenLogProbs(ids: readonly number[], variant: ForwardVariant = {}): Float64Array {
    return logSoftmax(this.logits(ids, undefined, variant)[0]!);
  }

  /** Greedy decoding (argmax, lowest id on ties): up to `nTokens` ids that follow `ids`, stopping before any of `stopAt`. */
  greedy(ids: readonly number[], nTokens: number, stopAt: readonly number[] = []): number[] {
    const s = this.session();
    for (const id of ids) s.push(id);
    const out: number[] = [];
    for (let i = 0; i < nTokens; i++) {
      const l = s.logits();
      let best = 0;
      for (let j = 1; j < l.length; j++) if (l[j]! > l[best]!) best = j;
      if (stopAt.includes(best)) break;
      out.push(best);
      if (i + 1 < nTokens) s.push(best);
    }
    return out;
  }

  /** @internal one token at position `pos` through every layer; appends to the caches, returns the last hidden state */
  step(id: number, pos: number, kCache: Float64Array[][], vCache: Float64Array[][], variant: ForwardVariant): Float64Array {
    const { hidden: H, heads, kvHeads, headDim: D, ffn: F, vocab: V, rmsEps } = this.cfg;
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token ${id} outside the vocabulary`);
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(D);
    const h = Float64Array.from(this.embed.subarray(id * H, (id + 1) * H));
    for (let li = 0; li < this.lw.length; li++) {
      const l = this.lw[li]!;
      const ks = kCache[li]!;
      const vs = vCache[li]!;
      const x = rmsNorm(h, l.inNorm, rmsEps);
      const q = matVec(l.q, x, heads * D, H, variant.noBias ? undefined : l.qb);
      const k = matVec(l.k, x, kvHeads * D, H, variant.noBias ? undefined : l.kb);
      const v = matVec(l.v, x, kvHeads * D, H, variant.noBias ? undefined : l.vb);
      if (!variant.noQkNorm) {
        if (l.qNorm) headRmsNorm(q, heads, D, l.qNorm, rmsEps);
        if (l.kNorm) headRmsNorm(k, kvHeads, D, l.kNorm, rmsEps);
      }
      if (!variant.noRope) {
        const inv = variant.noRopeScaling ? this.plainInvFreq : this.invFreq;
        const m = variant.noRopeScaling ? 1 : this.ropeAttnFactor;
        this.rope(q, heads, pos, variant.interleavedRope ?? false, inv, m);
        this.rope(k, kvHeads, pos, variant.interleavedRope ?? false, inv, m);
      }
      ks.push(k);
      vs.push(v);
      const n = ks.length;
      // keys attended: all (causal), or the last `slidingWindow` ones
      const s0 = variant.slidingWindow !== undefined ? Math.max(0, n - variant.slidingWindow) : 0;
      const att = new Float64Array(heads * D);
      const sc = new Float64Array(n).fill(-Infinity);
      for (let hd = 0; hd < heads; hd++) {
        const kvh = Math.floor(hd / group);
        let mx = -Infinity;
        for (let s = s0; s < n; s++) {
          const kk = ks[s]!;
          let d = 0;
          for (let i = 0; i < D; i++) d += q[hd * D + i]! * kk[kvh * D + i]!;
          sc[s] = d * scale;
          if (sc[s]! > mx) mx = sc[s]!;
        }
        let sum = 0;
        for (let s = s0; s < n; s++) {
          sc[s] = Math.exp(sc[s]! - mx);
          sum += sc[s]!;
        }
        for (let s = s0; s < n; s++) {
          const w = sc[s]! / sum;
          const vv = vs[s]!;
          for (let i = 0; i < D; i++) att[hd * D + i] += w * vv[kvh * D + i]!;
        }
      }
      const o = matVec(l.o, att, H, heads * D);
      for (let i = 0; i < H; i++) h[i] += o[i]!;
      const x2 = rmsNorm(h, l.postNorm, rmsEps);
      const g = matVec(l.gate, x2, F, H);
      const u = matVec(l.up, x2, F, H);
      for (let i = 0; i < F; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      const dn = matVec(l.down, g, H, F);
      for (let i = 0; i < H; i++) h[i] += dn[i]!;
    }
    return h;
  }

  /** @internal logits of a last hidden state */
  head(h: Float64Array): Float64Array {
    return matVec(this.lmHead, rmsNorm(h, this.finalNorm, this.cfg.rmsEps), this.cfg.vocab, this.cfg.hidden);
  }

  private rope(x: Float64Array, nHeads: number, pos: number, interleaved: boolean, invFreq: Float64Array, mscale = 1): void {
    const D = this.cfg.headDim;
    const half = D / 2;
    for (let h = 0; h < nHeads; h++) {
      const b = h * D;
      for (let j = 0; j < half; j++) {
        const a = pos * invFreq[j]!;
        const c = Math.cos(a) * mscale;
        const s = Math.sin(a) * mscale;
        const i0 = interleaved ? b + 2 * j : b + j;
        const i1 = interleaved ? b + 2 * j + 1 : b + j + half;
        const x0 = x[i0]!;
        const x1 = x[i1]!;
        x[i0] = x0 * c - x1 * s;
        x[i1] = x1 * c + x0 * s;
      }
    }
  }
}

export class ReferenceSession {
  private readonly k: Float64Array[][];
  private readonly v: Float64Array[][];
  private last: Float64Array | undefined;
  private pos = 0;

  constructor(
    private readonly model: ReferenceDecoder,
    private readonly variant: ForwardVariant,
  ) {
    this.k = Array.from({ length: model.cfg.layers }, () => []);
    this.v = Array.from({ length: model.cfg.layers }, () => []);
  }

  /** tokens fed so far */
  get length(): number {
    return this.pos;
  }

  push(id: number): void {
    this.last = this.model.step(id, this.pos++, this.k, this.v, this.variant);
  }

  /** logits after the last token pushed */
  logits(): Float64Array {
    if (!this.last) throw new Error("no token pushed yet");
    return this.model.head(this.last);
  }

  logProbs(): Float64Array {
    return logSoftmax(this.logits());
  }
}

/** y = W x (+ b), W row-major [rows, cols]. */
export function matVec(w: Float32Array, x: Float64Array, rows: number, cols: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[o + c]! * x[c]!;
    y[r] = bias ? s + bias[r]! : s;
  }
  return y;
}

export function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * r * w[i]!;
  return y;
}

/** RMSNorm of each of `nHeads` consecutive head vectors of length `d`, in place (Qwen3's q_norm / k_norm). */
export function headRmsNorm(x: Float64Array, nHeads: number, d: number, w: Float32Array, eps: number): void {
  for (let h = 0; h < nHeads; h++) {
    const y = rmsNorm(x.subarray(h * d, (h + 1) * d), w, eps);
    x.set(y, h * d);
  }
}

/**
 * transformers modeling_rope_utils.py `_compute_llama3_parameters`, elementwise on the default inverse
 * frequencies (float64 here; torch computes in float32).
 */
export function llama3InvFreq(inv: Float64Array, s: { factor: number; lowFreqFactor: number; highFreqFactor: number; origCtx: number }): Float64Array {
  const lowWavelen = s.origCtx / s.lowFreqFactor;
  const highWavelen = s.origCtx / s.highFreqFactor;
  const out = new Float64Array(inv.length);
  for (let j = 0; j < inv.length; j++) {
    const f = inv[j]!;
    const wavelen = (2 * Math.PI) / f;
    let v = wavelen > lowWavelen ? f / s.factor : f; // inv_freq_llama
    const smooth = (s.origCtx / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    if (medium) v = ((1 - smooth) * v) / s.factor + smooth * v;
    out[j] = v;
  }
  return out;
}

/**
 * transformers modeling_rope_utils.py `_compute_yarn_parameters` (float64): per pair j, the interpolated
 * frequency 1/(factor·base^(2j/d)) and the extrapolated 1/base^(2j/d) blended by a linear ramp between the
 * correction dimensions of beta_fast and beta_slow rotations over the original context (floored / ceiled
 * when `truncate`, clamped to [0, d−1]).
 */
export function yarnInvFreq(base: number, dim: number, s: { factor: number; origCtx: number; betaFast: number; betaSlow: number; truncate: boolean }): Float64Array {
  const corrDim = (rot: number): number => (dim * Math.log(s.origCtx / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  let low = corrDim(s.betaFast);
  let high = corrDim(s.betaSlow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const out = new Float64Array(dim / 2);
  for (let j = 0; j < dim / 2; j++) {
    const pos = Math.pow(base, (2 * j) / dim);
    const ramp = Math.min(1, Math.max(0, (j - low) / (high - low)));
    const extrapFactor = 1 - ramp;
    out[j] = (1 / (s.factor * pos)) * (1 - extrapFactor) + (1 / pos) * extrapFactor;
  }
  return out;
}

export function logSoftmax(x: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > mx) mx = x[i]!;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i]! - mx);
  const lse = mx + Math.log(s);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! - lse;
  return y;
}

/** Convenience: load a Qwen2 folder and return log P(next | ids) over the vocabulary. */
export async function qwen2NextTokenLogProbs(dir: string, ids: readonly number[]): Promise<Float64Array> {
  return (await ReferenceDecoder.load(dir)).nextTokenLogProbs(ids);
}

/** Max |a_i − b_i| over two equally long vectors, and where it happens. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; index: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  let index = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return { max: NaN, index: i };
    if (d > max) {
      max = d;
      index = i;
    }
  }
  return { max, index };
}
