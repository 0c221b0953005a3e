/**
 * A reference forward pass for the Hugging Face Mixture-of-Experts decoders, in plain TypeScript straight
 * from the safetensors checkpoint, reusing reference-qwen2.ts's helpers (matVec, rmsNorm, tensorToF32):
 *
 * - Qwen3MoeForCausalLM (transformers modeling_qwen3_moe.py): Qwen3 attention — q/k/v/o without bias,
 *   RMSNorm of each head of Q and K (`q_norm`/`k_norm`, weight [head_dim]) before RoPE (rotate_half, NEOX
 *   pairs i and i + d/2), explicit `head_dim`; Qwen3MoeSparseMoeBlock in every layer that is sparse
 *   (`layer not in mlp_only_layers and (layer + 1) % decoder_sparse_step == 0`, else a dense Qwen3MoeMLP of
 *   intermediate_size):
 *     router_logits = gate(x); p = softmax(router_logits); (w, idx) = topk(p, num_experts_per_tok);
 *     if norm_topk_prob: w /= sum(w);   y = Σ_k w_k · down_k(silu(gate_k(x)) · up_k(x))
 * - MixtralForCausalLM (modeling_mixtral.py): Llama attention (rotate_half RoPE on the HF weights),
 *   MixtralSparseMoeBlock: softmax → top-k → always renormalised (w /= sum(w)); experts w1 (gate),
 *   w3 (up), w2 (down): y = Σ_k w_k · w2_k(silu(w1_k(x)) · w3_k(x)).
 *
 * torch.topk order ties to the lower index here (ties do not happen with the fixtures' random routers).
 * Weights are widened to float32 exactly, sums are accumulated in float64.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { logSoftmax, matVec, rmsNorm, tensorToF32 } from "./reference-qwen2.js";

export interface MoeConfig {
  family: "qwen3moe" | "mixtral";
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** dense MLP width (Qwen3-MoE mlp_only layers) */
  denseFf: number;
  /** expert MLP width */
  expertFf: number;
  experts: number;
  used: number;
  normTopk: boolean;
  sparse: boolean[];
  vocab: number;
  rmsEps: number;
  ropeTheta: number;
  tied: boolean;
}

export function moeConfigFromHf(c: Record<string, unknown>): MoeConfig {
  const num = (k: string, dflt?: number): number => {
    const v = c[k];
    if (typeof v === "number") return v;
    if (dflt !== undefined) return dflt;
    throw new Error(`config.json: ${k} is missing`);
  };
  const arch = (c["architectures"] as string[] | undefined)?.[0];
  const family = arch === "Qwen3MoeForCausalLM" ? "qwen3moe" : arch === "MixtralForCausalLM" ? "mixtral" : undefined;
  if (!family) throw new Error(`reference MoE forward: architecture ${arch} is not a MoE family here`);
  if (c["rope_scaling"] !== undefined && c["rope_scaling"] !== null) throw new Error("reference MoE forward: rope_scaling is not supported");
  const hidden = num("hidden_size");
  const heads = num("num_attention_heads");
  const layers = num("num_hidden_layers");
  const experts = family === "qwen3moe" ? num("num_experts") : num("num_local_experts");
  const mlpOnly = (c["mlp_only_layers"] as number[] | undefined) ?? [];
  const step = num("decoder_sparse_step", 1);
  return {
    family, hidden, layers, heads,
    kvHeads: num("num_key_value_heads", heads),
    headDim: num("head_dim", hidden / heads),
    denseFf: num("intermediate_size"),
    expertFf: family === "qwen3moe" ? num("moe_intermediate_size") : num("intermediate_size"),
    experts,
    used: num("num_experts_per_tok"),
    // Qwen3MoeConfig's default is False; Mixtral always renormalises
    normTopk: family === "mixtral" ? true : c["norm_topk_prob"] === true,
    sparse: Array.from({ length: layers }, (_, i) => family === "mixtral" || (!mlpOnly.includes(i) && experts > 0 && (i + 1) % step === 0)),
    vocab: num("vocab_size"),
    rmsEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    tied: c["tie_word_embeddings"] === true,
  };
}

interface Expert {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

interface MoeLayer {
  inNorm: Float32Array;
  postNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  router?: Float32Array;
  experts?: Expert[];
  dense?: Expert;
}

export class ReferenceMoe {
  private constructor(
    readonly cfg: MoeConfig,
    private readonly embed: Float32Array,
    private readonly lmHead: Float32Array,
    private readonly finalNorm: Float32Array,
    private readonly lw: MoeLayer[],
    private readonly invFreq: Float64Array,
  ) {}

  static async load(dir: string): Promise<ReferenceMoe> {
    const cfg = moeConfigFromHf(JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>);
    const ck = await SafetensorsCheckpoint.open(dir);
    try {
      const get = async (name: string, shape: number[]): Promise<Float32Array> => {
        const t = ck.get(name);
        if (!t) throw new Error(`reference MoE forward: tensor ${name} is missing`);
        if (t.shape.join(",") !== shape.join(",")) throw new Error(`reference MoE forward: ${name} has shape [${t.shape}], expected [${shape}]`);
        return tensorToF32(await ck.read(name), t.dtype);
      };
      const { hidden: H, heads, kvHeads, headDim: D, vocab: V, expertFf: E, denseFf: F } = cfg;
      const embed = await get("model.embed_tokens.weight", [V, H]);
      const lmHead = cfg.tied || !ck.get("lm_head.weight") ? embed : await get("lm_head.weight", [V, H]);
      const finalNorm = await get("model.norm.weight", [H]);
      const lw: MoeLayer[] = [];
      for (let i = 0; i < cfg.layers; i++) {
        const p = `model.layers.${i}.`;
        const l: MoeLayer = {
          inNorm: await get(p + "input_layernorm.weight", [H]),
          postNorm: await get(p + "post_attention_layernorm.weight", [H]),
          q: await get(p + "self_attn.q_proj.weight", [heads * D, H]),
          k: await get(p + "self_attn.k_proj.weight", [kvHeads * D, H]),
          v: await get(p + "self_attn.v_proj.weight", [kvHeads * D, H]),
          o: await get(p + "self_attn.o_proj.weight", [H, heads * D]),
        };
        if (cfg.family === "qwen3moe") {
          l.qNorm = await get(p + "self_attn.q_norm.weight", [D]);
          l.kNorm = await get(p + "self_attn.k_norm.weight", [D]);
        }
        if (cfg.sparse[i]) {
          const moe = cfg.family === "qwen3moe" ? "mlp" : "block_sparse_moe";
          l.router = await get(`${p}${moe}.gate.weight`, [cfg.experts, H]);
          l.experts = [];
          for (let x = 0; x < cfg.experts; x++) {
            const e = `${p}${moe}.experts.${x}.`;
            l.experts.push(
              cfg.family === "qwen3moe"
                ? { gate: await get(e + "gate_proj.weight", [E, H]), up: await get(e + "up_proj.weight", [E, H]), down: await get(e + "down_proj.weight", [H, E]) }
                : { gate: await get(e + "w1.weight", [E, H]), up: await get(e + "w3.weight", [E, H]), down: await get(e + "w2.weight", [H, E]) },
            );
          }
        } else {
          l.dense = { gate: await get(p + "mlp.gate_proj.weight", [F, H]), up: await get(p + "mlp.up_proj.weight", [F, H]), down: await get(p + "mlp.down_proj.weight", [H, F]) };
        }
        lw.push(l);
      }
      const invFreq = new Float64Array(D / 2);
      for (let j = 0; j < D / 2; j++) invFreq[j] = 1 / Math.pow(cfg.ropeTheta, (2 * j) / D);
      return new ReferenceMoe(cfg, embed, lmHead, finalNorm, lw, invFreq);
    } finally {
      await ck.close();
    }
  }

  /** Logits after each position in `positions` (default: the last) for the sequence `ids` (no BOS added). */
  logits(ids: readonly number[], positions?: readonly number[]): Float64Array[] {
    const n = ids.length;
    if (n === 0) throw new Error("reference MoE forward: empty input");
    const want = positions ?? [n - 1];
    const kc: Float64Array[][] = Array.from({ length: this.cfg.layers }, () => []);
    const vc: Float64Array[][] = Array.from({ length: this.cfg.layers }, () => []);
    const out = new Map<number, Float64Array>();
    for (let t = 0; t < n; t++) {
      const h = this.step(ids[t]!, t, kc, vc);
      if (want.includes(t)) out.set(t, matVec(this.lmHead, rmsNorm(h, this.finalNorm, this.cfg.rmsEps), this.cfg.vocab, this.cfg.hidden));
    }
    return want.map((p) => out.get(p)!);
  }

  nextTokenLogProbs(ids: readonly number[]): Float64Array {
    return logSoftmax(this.logits(ids)[0]!);
  }

  /** The experts chosen (in top-k order) and their weights for a normalised hidden state `x` of layer `li`. */
  route(li: number, x: Float64Array): { idx: number[]; w: number[] } {
    const { experts: N, used: K, hidden: H, normTopk } = this.cfg;
    const logits = matVec(this.lw[li]!.router!, x, N, H);
    let mx = -Infinity;
    for (let i = 0; i < N; i++) mx = Math.max(mx, logits[i]!);
    const p = new Float64Array(N);
    let s = 0;
    for (let i = 0; i < N; i++) s += p[i] = Math.exp(logits[i]! - mx);
    for (let i = 0; i < N; i++) p[i]! /= s;
    const order = Array.from({ length: N }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    const idx = order.slice(0, K);
    let w = idx.map((i) => p[i]!);
    if (normTopk) {
      const t = w.reduce((a, b) => a + b, 0);
      w = w.map((v) => v / t);
    }
    return { idx, w };
  }

  private mlp(e: Expert, x: Float64Array, ff: number): Float64Array {
    const H = this.cfg.hidden;
    const g = matVec(e.gate, x, ff, H);
    const u = matVec(e.up, x, ff, H);
    for (let i = 0; i < ff; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
    return matVec(e.down, g, H, ff);
  }

  private step(id: number, pos: number, kCache: Float64Array[][], vCache: Float64Array[][]): Float64Array {
    const { hidden: H, heads, kvHeads, headDim: D, vocab: V, rmsEps } = this.cfg;
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token ${id} outside the vocabulary`);
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(D);
    const h = Float64Array.from(this.embed.subarray(id * H, (id + 1) * H));
    for (let li = 0; li < this.lw.length; li++) {
      const l = this.lw[li]!;
      const x = rmsNorm(h, l.inNorm, rmsEps);
      const q = matVec(l.q, x, heads * D, H);
      const k = matVec(l.k, x, kvHeads * D, H);
      const v = matVec(l.v, x, kvHeads * D, H);
      if (l.qNorm && l.kNorm) {
        headNorm(q, heads, D, l.qNorm, rmsEps);
        headNorm(k, kvHeads, D, l.kNorm, rmsEps);
      }
      this.rope(q, heads, pos);
      this.rope(k, kvHeads, pos);
      kCache[li]!.push(k);
      vCache[li]!.push(v);
      const ks = kCache[li]!;
      const vs = vCache[li]!;
      const n = ks.length;
      const att = new Float64Array(heads * D);
      const sc = new Float64Array(n);
      for (let hd = 0; hd < heads; hd++) {
        const kvh = Math.floor(hd / group);
        let mx = -Infinity;
        for (let s = 0; s < n; s++) {
          let d = 0;
          for (let i = 0; i < D; i++) d += q[hd * D + i]! * ks[s]![kvh * D + i]!;
          sc[s] = d * scale;
          if (sc[s]! > mx) mx = sc[s]!;
        }
        let sum = 0;
        for (let s = 0; s < n; s++) sum += sc[s] = Math.exp(sc[s]! - mx);
        for (let s = 0; s < n; s++) {
          const w = sc[s]! / sum;
          for (let i = 0; i < D; i++) att[hd * D + i] += w * vs[s]![kvh * D + i]!;
        }
      }
      const o = matVec(l.o, att, H, heads * D);
      for (let i = 0; i < H; i++) h[i] += o[i]!;
      const x2 = rmsNorm(h, l.postNorm, rmsEps);
      if (l.experts) {
        const { idx, w } = this.route(li, x2);
        for (let k2 = 0; k2 < idx.length; k2++) {
          const y = this.mlp(l.experts[idx[k2]!]!, x2, this.cfg.expertFf);
          for (let i = 0; i < H; i++) h[i] += w[k2]! * y[i]!;
        }
      } else {
        const y = this.mlp(l.dense!, x2, this.cfg.denseFf);
        for (let i = 0; i < H; i++) h[i] += y[i]!;
      }
    }
    return h;
  }

  private rope(x: Float64Array, nHeads: number, pos: number): void {
    const D = this.cfg.headDim;
    const half = D / 2;
    for (let hh = 0; hh < nHeads; hh++) {
      const b = hh * D;
      for (let j = 0; j < half; j++) {
        const a = pos * this.invFreq[j]!;
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x0 = x[b + j]!;
        const x1 = x[b + j + half]!;
        x[b + j] = x0 * c - x1 * s;
        x[b + j + half] = x1 * c + x0 * s;
      }
    }
  }
}

/** Qwen3's q_norm / k_norm: RMSNorm over each head's `d` values, in place. */
function headNorm(x: Float64Array, nHeads: number, d: number, w: Float32Array, eps: number): void {
  for (let hh = 0; hh < nHeads; hh++) {
    const y = rmsNorm(x.subarray(hh * d, (hh + 1) * d), w, eps);
    x.set(y, hh * d);
  }
}
