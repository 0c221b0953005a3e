/**
 * Rotary-embedding parameters of an HF config, read as llama.cpp's converter reads them
 * (`conversion/base.py` TextModel.__init__ gathers `rope_parameters` / `rope_scaling` with the top-level
 * `rope_theta` and the sliding-window theta; TextModel.set_gguf_parameters writes the scaling KVs;
 * `conversion/llama.py` LlamaModel.generate_extra_tensors computes `rope_freqs` for `llama3`), typed.
 * A scaling type ggufy cannot represent is refused by name — never dropped.
 */
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { LLM, ROPE_SCALING, archKey } from "../formats/gguf/keys.js";
import type { HfConfig } from "./config.js";

export type RopeScaling =
  | { readonly type: "none" }
  | { readonly type: "linear"; readonly factor: number }
  | {
      readonly type: "yarn";
      readonly factor: number;
      readonly origCtx: number;
      readonly extFactor?: number;
      readonly attnFactor?: number;
      readonly betaFast?: number;
      readonly betaSlow?: number;
    }
  | { readonly type: "llama3"; readonly factor: number; readonly lowFreqFactor: number; readonly highFreqFactor: number; readonly origCtx: number }
  | { readonly type: "longrope"; readonly longFactor: readonly number[]; readonly shortFactor: readonly number[]; readonly origCtx?: number; readonly attnFactor?: number }
  /** dynamic NTK: llama.cpp has no such runtime scaling; its converter writes nothing for it (below) */
  | { readonly type: "dynamic"; readonly factor: number };

export interface RopeParams {
  /** rope.freq_base, when the config gives one */
  readonly theta?: number;
  /** rope.freq_base_swa (sliding-window layers' base) */
  readonly thetaSwa?: number;
  readonly scaling: RopeScaling;
  /** notes for the user (e.g. a scaling llama.cpp ignores) */
  readonly warnings: readonly string[];
}

const KNOWN = ["default", "linear", "yarn", "llama3", "longrope", "su", "dynamic"];

/** Read the config's RoPE parameters (top level, `rope_scaling` and `rope_parameters`). */
export function readRope(cfg: HfConfig): RopeParams {
  const warnings: string[] = [];
  const key = cfg.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  let rp = cfg.obj(key);
  // transformers ≥ 4.56 may split the parameters per attention kind (Gemma 3: full / sliding)
  const swaObj = rp?.obj("sliding_attention");
  if (rp?.has("full_attention")) rp = rp.obj("full_attention");
  const theta =
    rp?.num("rope_theta", { gt: 0 }) ??
    cfg.num(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"], { gt: 0 });
  const thetaSwa = swaObj?.num("rope_theta", { gt: 0 }) ?? cfg.num(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"], { gt: 0 });
  const typeKey = rp?.has("rope_type") ? "rope_type" : "type";
  const rawType = rp?.str(typeKey);
  let scaling: RopeScaling = { type: "none" };
  if (rp && rawType !== undefined) {
    const t = rawType.toLowerCase();
    if (!KNOWN.includes(t)) rp.refuse(typeKey, `is ${JSON.stringify(rawType)}; ggufy knows ${KNOWN.map((k) => JSON.stringify(k)).join(", ")}`);
    const factor = (): number => rp!.reqNum("factor", { gt: 0 });
    const origCtx = rp.int("original_max_position_embeddings") ?? cfg.int("original_max_position_embeddings");
    switch (t) {
      case "default":
        break;
      case "linear":
        scaling = { type: "linear", factor: factor() };
        break;
      case "yarn": {
        const f = factor();
        const oc = origCtx ?? rp.refuse("original_max_position_embeddings", "is missing; YaRN needs the original context length");
        const o = (k: string): number | undefined => rp!.num(k, { gt: 0 });
        const ext = rp.num("extrapolation_factor", { min: 0 });
        const attn = o("attention_factor") ?? o("attn_factor");
        const bf = o("beta_fast");
        const bs = o("beta_slow");
        scaling = {
          type: "yarn", factor: f, origCtx: oc,
          ...(ext !== undefined ? { extFactor: ext } : {}), ...(attn !== undefined ? { attnFactor: attn } : {}),
          ...(bf !== undefined ? { betaFast: bf } : {}), ...(bs !== undefined ? { betaSlow: bs } : {}),
        };
        break;
      }
      case "llama3": {
        // llama.py generate_extra_tensors defaults: factor 8, low 1, high 4, original context 8192
        const f = rp.num("factor", { gt: 0 }) ?? 8;
        const low = rp.num("low_freq_factor", { gt: 0 }) ?? 1;
        const high = rp.num("high_freq_factor", { gt: 0 }) ?? 4;
        if (!(high > low)) rp.refuse("high_freq_factor", `is ${high}; it must be above low_freq_factor ${low}`);
        scaling = { type: "llama3", factor: f, lowFreqFactor: low, highFreqFactor: high, origCtx: origCtx ?? 8192 };
        break;
      }
      case "su":
      case "longrope": {
        const long = rp.nums("long_factor") ?? rp.refuse("long_factor", "is missing; longrope needs long_factor and short_factor");
        const short = rp.nums("short_factor") ?? rp.refuse("short_factor", "is missing; longrope needs long_factor and short_factor");
        const attn = rp.num("attention_factor", { gt: 0 });
        scaling = { type: "longrope", longFactor: long, shortFactor: short, ...(origCtx !== undefined ? { origCtx } : {}), ...(attn !== undefined ? { attnFactor: attn } : {}) };
        break;
      }
      case "dynamic":
        scaling = { type: "dynamic", factor: factor() };
        warnings.push(
          `${key}.${typeKey} "dynamic": llama.cpp has no dynamic NTK scaling; written without scaling KVs, as llama.cpp's converter does (the model is exact up to its trained context)`,
        );
        break;
    }
  }
  return { ...(theta !== undefined ? { theta } : {}), ...(thetaSwa !== undefined ? { thetaSwa } : {}), scaling, warnings };
}

/** The rope.scaling.* KVs TextModel.set_gguf_parameters writes for this scaling (in its order). */
export function ropeScalingKvs(arch: string, s: RopeScaling): GGUFKV[] {
  const k = (t: Parameters<typeof archKey>[0]): string => archKey(t, arch);
  switch (s.type) {
    case "linear":
      return [kv.str(k(LLM.ROPE_SCALING_TYPE), ROPE_SCALING.LINEAR), kv.f32(k(LLM.ROPE_SCALING_FACTOR), s.factor)];
    case "yarn": {
      const out = [kv.str(k(LLM.ROPE_SCALING_TYPE), ROPE_SCALING.YARN), kv.f32(k(LLM.ROPE_SCALING_FACTOR), s.factor), kv.u32(k(LLM.ROPE_SCALING_ORIG_CTX_LEN), s.origCtx)];
      if (s.extFactor !== undefined) out.push(kv.f32(k(LLM.ROPE_SCALING_YARN_EXT_FACTOR), s.extFactor));
      if (s.attnFactor !== undefined) out.push(kv.f32(k(LLM.ROPE_SCALING_YARN_ATTN_FACTOR), s.attnFactor));
      if (s.betaFast !== undefined) out.push(kv.f32(k(LLM.ROPE_SCALING_YARN_BETA_FAST), s.betaFast));
      if (s.betaSlow !== undefined) out.push(kv.f32(k(LLM.ROPE_SCALING_YARN_BETA_SLOW), s.betaSlow));
      return out;
    }
    case "longrope":
      return [kv.str(k(LLM.ROPE_SCALING_TYPE), ROPE_SCALING.LONGROPE)];
    default:
      return [];
  }
}

const f = Math.fround;

/**
 * llama3 frequency factors, one per rotary pair (conversion/llama.py LlamaModel.generate_extra_tensors):
 * freqs = 1 / base^(arange(0, dim, 2) / dim) in float32 torch; per pair a wavelength 2π/freq, factor 1
 * below the high-frequency wavelength, `factor` above the low one, and the smooth blend between.
 * Each torch float32 operation is one Math.fround here, in torch's form: `scalar / tensor` is
 * Tensor.__rtruediv__ = reciprocal(tensor) · scalar; a Python float meeting a float32 tensor (the
 * comparisons, `- low_freq_factor`, `/ factor`) is rounded to float32 first; the wavelength thresholds
 * themselves are Python (float64) divisions. torch's powf may differ from a correctly rounded pow by
 * an ulp; llama.cpp only divides the angle by this factor, so that stays far inside the tests' bounds.
 */
export function llama3RopeFactors(s: Extract<RopeScaling, { type: "llama3" }>, base: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  const lowWavelen = f(s.origCtx / s.lowFreqFactor);
  const highWavelen = f(s.origCtx / s.highFreqFactor);
  const twoPi = f(2 * Math.PI);
  const low = f(s.lowFreqFactor);
  const span = f(s.highFreqFactor - s.lowFreqFactor);
  const factor = f(s.factor);
  const oc = f(s.origCtx);
  for (let i = 0; i < dim / 2; i++) {
    const e = f(f(2 * i) / f(dim));
    const freq = f(1 / f(Math.pow(f(base), e)));
    const wavelen = f(f(1 / freq) * twoPi);
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = f(f(f(f(1 / wavelen) * oc) - low) / span);
      out[i] = f(1 / f(f(f(1 - smooth) / factor) + smooth));
    }
  }
  return out;
}
