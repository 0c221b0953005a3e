/**
 * llama-quantize's presets (LLAMA_FTYPE) and its per-tensor type choice
 * (llama_tensor_get_type_impl, tensor_type_fallback), as data and small pure functions.
 * Source: llama.cpp src/llama-quant.cpp (see shared/specs/llamacpp-conversion.md §4).
 */
import { GGMLType as G, typeInfo } from "./ggml/types.js";

export interface Preset {
  readonly name: string;
  /** general.file_type (llama_ftype) */
  readonly ftype: number;
  readonly defaultType: G;
}

const P = (name: string, ftype: number, defaultType: G): Preset => ({ name, ftype, defaultType });

export const PRESETS: readonly Preset[] = [
  P("F32", 0, G.F32),
  P("F16", 1, G.F16),
  P("BF16", 32, G.BF16),
  P("Q4_0", 2, G.Q4_0),
  P("Q4_1", 3, G.Q4_1),
  P("Q8_0", 7, G.Q8_0),
  P("Q5_0", 8, G.Q5_0),
  P("Q5_1", 9, G.Q5_1),
  P("Q2_K", 10, G.Q2_K),
  P("Q3_K_S", 11, G.Q3_K),
  P("Q3_K_M", 12, G.Q3_K),
  P("Q3_K_L", 13, G.Q3_K),
  P("Q4_K_S", 14, G.Q4_K),
  P("Q4_K_M", 15, G.Q4_K),
  P("Q5_K_S", 16, G.Q5_K),
  P("Q5_K_M", 17, G.Q5_K),
  P("Q6_K", 18, G.Q6_K),
  P("IQ4_NL", 25, G.IQ4_NL),
  P("IQ4_XS", 30, G.IQ4_XS),
  P("TQ1_0", 36, G.TQ1_0),
  P("TQ2_0", 37, G.TQ2_0),
];

/** Presets that need an importance matrix; refused with that reason. */
export const IMATRIX_PRESETS: readonly string[] = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "Q2_K_S"];

const ALIASES: Record<string, string> = { Q4_K: "Q4_K_M", Q5_K: "Q5_K_M", Q3_K: "Q3_K_M" };

export function findPreset(name: string): Preset | undefined {
  const u = name.toUpperCase();
  const n = ALIASES[u] ?? u;
  return PRESETS.find((p) => p.name === n);
}

/** tensor_type_fallback: the type used when ne0 is not a multiple of the requested type's block. */
export function fallbackType(t: G, ne0: number): G {
  if (ne0 % typeInfo(t).blockSize === 0) return t;
  let f: G;
  switch (t) {
    case G.IQ1_S: case G.IQ1_M: case G.IQ2_XXS: case G.IQ2_XS: case G.IQ2_S: case G.IQ3_XXS: case G.IQ3_S: case G.IQ4_XS:
      f = G.IQ4_NL; break;
    case G.Q2_0: case G.Q2_K: case G.Q3_K: case G.TQ1_0: case G.TQ2_0:
      f = G.Q4_0; break;
    case G.Q4_K: f = G.Q5_0; break;
    case G.Q5_K: f = G.Q5_1; break;
    case G.Q6_K: f = G.Q8_0; break;
    default:
      if (typeInfo(t).blockSize <= 32) f = t;
      else throw new Error(`no tensor type fallback for ${typeInfo(t).name}`);
  }
  return ne0 % typeInfo(f).blockSize === 0 ? f : G.F16;
}

export interface QuantTensor {
  readonly name: string;
  readonly ne: readonly number[];
}

export interface PresetOptions {
  pure?: boolean;
  outputTensorType?: G;
  tokenEmbeddingType?: G;
  /** --tensor-type REGEX=TYPE, first match wins */
  tensorTypes?: readonly (readonly [RegExp, G])[];
  leaveOutputTensor?: boolean;
  /** hparams for the mixture rules */
  nLayer: number;
  nHead: number;
  nHeadKv: number;
}

/** Whether llama-quantize quantizes this tensor at all (tensor_allows_quantization, text models). */
export function allowsQuantization(t: QuantTensor, opts: { leaveOutputTensor?: boolean }): boolean {
  const n = t.name;
  if (!n.endsWith("weight")) return false;
  if (t.ne.filter((d, i) => i === 0 || d !== 1).length < 2 && t.ne.length < 2) return false;
  if (t.ne.length < 2) return false;
  if (n.endsWith("_norm.weight")) return false;
  if (opts.leaveOutputTensor && n === "output.weight") return false;
  if (/ffn_gate_inp\.weight$|ffn_gate_tid2eid\.weight$|altup|laurel|per_layer_model_proj|ssm_conv1d|shortconv\.conv\.weight|attn_rel_b\.weight/.test(n)) return false;
  if (/position_embd|\.rel_pos|\.patch_embd|\.patch_merger|^sam\./.test(n)) return false;
  return true;
}

/** llama-quantize's order of tensors: (layer number or -1, then plain string compare). */
export function quantizeOrder<T extends { name: string }>(tensors: readonly T[]): T[] {
  const layer = (n: string): number => {
    const m = /^blk\.(\d+)\./.exec(n);
    return m ? Number(m[1]) : -1;
  };
  return [...tensors].sort((a, b) => layer(a.name) - layer(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The type llama-quantize picks for each tensor of a text model under a preset, in the order
 * given (which must be quantizeOrder, because the attn_v / ffn_down counters advance with it).
 * Returns undefined for tensors that are copied unchanged (kept F32 by ggufy).
 */
export function presetTypes(tensors: readonly QuantTensor[], preset: Preset, opts: PresetOptions): (G | undefined)[] {
  // PLACEHOLDER mixture: default type with fallback. The full rules land with the presets work.
  return tensors.map((t) => {
    if (!allowsQuantization(t, opts)) return undefined;
    return fallbackType(preset.defaultType, t.ne[0]!);
  });
}
