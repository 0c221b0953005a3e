/**
 * llama-quantize's presets (LLAMA_FTYPE) and its per-tensor type choice, as data and small pure
 * functions: `tensor_allows_quantization`, `llama_tensor_get_type` + `llama_tensor_get_type_impl`
 * (the "mixture" rules), `tensor_type_fallback` and the (layer, name) tensor order.
 *
 * Written from llama.cpp v0.4.0 as bundled in node-llama-cpp 3.21.1 (`src/llama-quant.cpp`,
 * commit 80fb11ac; tools/quantize/quantize.cpp for the preset names). The rules are kept
 * complete for every ftype (including the imatrix-only ones ggufy refuses), so that they can be
 * checked wholesale against llama.cpp's own `llama_quant_compute_types`.
 */
import { GGMLType as G, typeInfo } from "./ggml/types.js";

export interface Preset {
  readonly name: string;
  /** general.file_type (llama_ftype) */
  readonly ftype: number;
  /** llama_ftype_get_default_type */
  readonly defaultType: G;
}

const P = (name: string, ftype: number, defaultType: G): Preset => ({ name, ftype, defaultType });

/** llama_ftype values (include/llama.h). */
export const FT = {
  ALL_F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9,
  Q2_K: 10, Q3_K_S: 11, Q3_K_M: 12, Q3_K_L: 13, Q4_K_S: 14, Q4_K_M: 15, Q5_K_S: 16, Q5_K_M: 17, Q6_K: 18,
  IQ2_XXS: 19, IQ2_XS: 20, Q2_K_S: 21, IQ3_XS: 22, IQ3_XXS: 23, IQ1_S: 24, IQ4_NL: 25, IQ3_S: 26, IQ3_M: 27,
  IQ2_S: 28, IQ2_M: 29, IQ4_XS: 30, IQ1_M: 31, BF16: 32, TQ1_0: 36, TQ2_0: 37, MXFP4_MOE: 38,
  NVFP4: 39, Q1_0: 40, Q2_0: 41,
} as const;

/**
 * Every ftype llama-quantize accepts by name, with llama_ftype_get_default_type. (NVFP4 has no
 * default type in v0.4.0: llama-quantize rejects it as "invalid output file type".)
 */
export const LLAMA_FTYPES: readonly Preset[] = [
  P("F32", FT.ALL_F32, G.F32),
  P("F16", FT.F16, G.F16),
  P("BF16", FT.BF16, G.BF16),
  P("Q4_0", FT.Q4_0, G.Q4_0),
  P("Q4_1", FT.Q4_1, G.Q4_1),
  P("Q8_0", FT.Q8_0, G.Q8_0),
  P("Q5_0", FT.Q5_0, G.Q5_0),
  P("Q5_1", FT.Q5_1, G.Q5_1),
  P("Q2_K", FT.Q2_K, G.Q2_K),
  P("Q3_K_S", FT.Q3_K_S, G.Q3_K),
  P("Q3_K_M", FT.Q3_K_M, G.Q3_K),
  P("Q3_K_L", FT.Q3_K_L, G.Q3_K),
  P("Q4_K_S", FT.Q4_K_S, G.Q4_K),
  P("Q4_K_M", FT.Q4_K_M, G.Q4_K),
  P("Q5_K_S", FT.Q5_K_S, G.Q5_K),
  P("Q5_K_M", FT.Q5_K_M, G.Q5_K),
  P("Q6_K", FT.Q6_K, G.Q6_K),
  P("IQ4_NL", FT.IQ4_NL, G.IQ4_NL),
  P("IQ4_XS", FT.IQ4_XS, G.IQ4_XS),
  P("TQ1_0", FT.TQ1_0, G.TQ1_0),
  P("TQ2_0", FT.TQ2_0, G.TQ2_0),
  P("IQ2_XXS", FT.IQ2_XXS, G.IQ2_XXS),
  P("IQ2_XS", FT.IQ2_XS, G.IQ2_XS),
  P("IQ2_S", FT.IQ2_S, G.IQ2_XS),
  P("IQ2_M", FT.IQ2_M, G.IQ2_S),
  P("IQ1_S", FT.IQ1_S, G.IQ1_S),
  P("IQ1_M", FT.IQ1_M, G.IQ1_M),
  P("Q2_K_S", FT.Q2_K_S, G.Q2_K),
  P("IQ3_XXS", FT.IQ3_XXS, G.IQ3_XXS),
  P("IQ3_XS", FT.IQ3_XS, G.IQ3_S),
  P("IQ3_S", FT.IQ3_S, G.IQ3_S),
  P("IQ3_M", FT.IQ3_M, G.IQ3_S),
  P("MXFP4_MOE", FT.MXFP4_MOE, G.MXFP4),
  P("Q1_0", FT.Q1_0, G.Q1_0),
  P("Q2_0", FT.Q2_0, G.Q2_0),
];

/**
 * Presets that need an importance matrix: llama-quantize aborts without one ("this quantization
 * requires an imatrix!") because some tensor's target is IQ1_S/IQ1_M/IQ2_XXS/IQ2_XS/IQ2_S/IQ3_XXS, or
 * q2_K inside Q2_K_S (tensor_requires_imatrix). IQ3_XS needs one through attn_q/attn_k → iq3_xxs.
 * IQ3_S and IQ3_M do NOT need one (their targets are iq3_s/q4_K and friends, none of which
 * tensor_requires_imatrix names), so they are ordinary presets.
 */
export const IMATRIX_PRESETS: readonly string[] = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"];

/** Presets llama-quantize accepts without an imatrix but whose codecs ggufy does not implement. */
export const UNSUPPORTED_PRESETS: readonly string[] = ["MXFP4_MOE", "Q1_0", "Q2_0"];

/** Presets ggufy can produce (the codecs of every type they can choose exist). */
export const PRESETS: readonly Preset[] = LLAMA_FTYPES.filter((p) => !IMATRIX_PRESETS.includes(p.name) && !UNSUPPORTED_PRESETS.includes(p.name));

/** llama-quantize's aliases (tools/quantize/quantize.cpp QUANT_OPTIONS). */
const ALIASES: Record<string, string> = { Q4_K: "Q4_K_M", Q5_K: "Q5_K_M", Q3_K: "Q3_K_M" };

/** A preset ggufy supports, by name (case-insensitive, with llama-quantize's aliases). */
export function findPreset(name: string): Preset | undefined {
  const u = name.toUpperCase();
  const n = ALIASES[u] ?? u;
  return PRESETS.find((p) => p.name === n);
}

/** Any llama_ftype by name, supported by ggufy or not. */
export function findLlamaFtype(name: string): Preset | undefined {
  const u = name.toUpperCase();
  const n = ALIASES[u] ?? u;
  return LLAMA_FTYPES.find((p) => p.name === n);
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
      else throw new Error(`no tensor type fallback is defined for type ${typeInfo(t).name}`);
  }
  return ne0 % typeInfo(f).blockSize === 0 ? f : G.F16;
}

export interface QuantTensor {
  readonly name: string;
  readonly ne: readonly number[];
}

export interface PresetOptions {
  /** --pure: no mixture rules (the default type everywhere, still with the fallback) */
  pure?: boolean;
  /** --output-tensor-type */
  outputTensorType?: G;
  /** --token-embedding-type */
  tokenEmbeddingType?: G;
  /** --tensor-type REGEX=TYPE, first match (a regex search, like std::regex_search) wins */
  tensorTypes?: readonly (readonly [RegExp, G])[];
  /** --leave-output-tensor (quantize_output_tensor = false) */
  leaveOutputTensor?: boolean;
  /** hparams for the mixture rules: {arch}.block_count (n_layer_all) */
  nLayer: number;
  /** {arch}.attention.head_count of layer 0 */
  nHead: number;
  /** {arch}.attention.head_count_kv of layer 0 */
  nHeadKv: number;
  /** {arch}.expert_count (0 or absent for dense models) */
  nExpert?: number;
  /** general.architecture: decides llama.cpp's LLM_TYPE_70B (attn_v bump) and the Falcon rules */
  arch?: string;
  /** an importance matrix is given (quantize_state_impl has_imatrix): changes the IQ3_XXS, IQ4_NL/IQ4_XS and Q4_0/Q5_0 rules */
  imatrix?: boolean;
}

/** ggml_n_dims: 1 + the index of the last dimension larger than 1 (at least 1). */
function nDims(ne: readonly number[]): number {
  for (let i = ne.length - 1; i >= 1; i--) if (ne[i]! > 1) return i + 1;
  return 1;
}

/** Substrings that exclude a tensor from quantization (tensor_allows_quantization, all archs). */
const NO_QUANT_SUBSTRINGS = [
  "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
  "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
  "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight",
  "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
  "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
  "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
  ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
];

/** Whether llama-quantize quantizes this tensor at all (tensor_allows_quantization). */
export function allowsQuantization(t: QuantTensor, opts: { leaveOutputTensor?: boolean }): boolean {
  if (nDims(t.ne) < 2) return false;
  const n = t.name;
  // `name.rfind("weight") == name.size() - 6`: "ends with weight" (the size_t wrap-around also lets
  // any name shorter than 6 characters without "weight" through, as in C++)
  const at = n.lastIndexOf("weight");
  const endsWeight = n.length >= 6 ? at >= 0 && at === n.length - 6 : at < 0;
  if (!endsWeight) return false;
  if (opts.leaveOutputTensor && n === "output.weight") return false;
  // LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight") — the same names for every arch
  if (n === "position_embd.weight" || n === "token_types.weight") return false;
  for (const s of NO_QUANT_SUBSTRINGS) if (n.includes(s)) return false;
  return true;
}

/** The layer number llama.cpp's weight_name_comparer reads with sscanf("blk.%d."), or -1. */
function blkLayer(n: string): number {
  const m = /^blk\.([+-]?\d+)/.exec(n);
  return m ? Number(m[1]) : -1;
}

/** llama-quantize's order of tensors (ml.weights_map): layer number or -1, then plain string compare. */
export function quantizeOrder<T extends { name: string }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => blkLayer(a.name) - blkLayer(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

type Category = "output" | "token_embd" | "attn_qkv" | "attn_kv_b" | "attn_v" | "attn_k" | "attn_q" | "attn_output" | "ffn_up" | "ffn_gate" | "ffn_down" | "other";

/** tensor_get_category: exact names first, then substrings in this order. */
function category(n: string): Category {
  if (n === "output.weight") return "output";
  if (n === "token_embd.weight" || n === "per_layer_token_embd.weight") return "token_embd";
  const subs: [string, Category][] = [
    ["attn_qkv.weight", "attn_qkv"], ["attn_kv_b.weight", "attn_kv_b"], ["attn_v.weight", "attn_v"], ["attn_k.weight", "attn_k"],
    ["attn_q.weight", "attn_q"], ["attn_output.weight", "attn_output"], ["ffn_up", "ffn_up"], ["ffn_gate", "ffn_gate"], ["ffn_down", "ffn_down"],
  ];
  for (const [s, c] of subs) if (n.includes(s)) return c;
  return "other";
}

const isAttnV = (c: Category): boolean => c === "attn_v" || c === "attn_qkv" || c === "attn_kv_b";

/** ggml type_traits is_quantized, for the types a preset can default to */
const isQuantized = (t: G): boolean => ![G.F32, G.F16, G.BF16, G.F64, G.I8, G.I16, G.I32, G.I64].includes(t);

/** use_more_bits(i, n) of llama_tensor_get_type_impl (C integer division). */
export function useMoreBits(i: number, n: number): boolean {
  const n8 = Math.trunc(n / 8);
  return i < n8 || i >= Math.trunc((7 * n) / 8) || (i - n8) % 3 === 2;
}

/** llama.cpp's model type is LLM_TYPE_70B (load_arch_hparams of the archs that have it). */
export function isType70B(arch: string | undefined, o: { nLayer: number; nHead: number; nHeadKv: number; nExpert?: number }): boolean {
  switch (arch) {
    case "llama": return (o.nExpert ?? 0) !== 8 && o.nLayer === 80 && o.nHead !== o.nHeadKv;
    case "qwen2": case "deci": case "olmo": return o.nLayer === 80;
    case "jais2": return o.nLayer === 68;
    default: return false;
  }
}

/** tensor_requires_imatrix (src/llama-quant.cpp): the target type needs an importance matrix. */
export function tensorRequiresImatrix(name: string, type: G, preset: Preset): boolean {
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight" || name === "output.weight") return false;
  switch (type) {
    case G.IQ3_XXS: case G.IQ2_XXS: case G.IQ2_XS: case G.IQ2_S: case G.IQ1_M: case G.IQ1_S:
      return true;
    case G.Q2_K:
      return preset.ftype === FT.Q2_K_S;
    default:
      return false;
  }
}

/** One tensor's choice: the type llama-quantize asks for and whether tensor_type_fallback follows. */
export interface PresetChoice {
  readonly type: G;
  /** false for --output-tensor-type / --token-embedding-type hits and non-quantized presets (F16, BF16, F32) */
  readonly fallback: boolean;
}

/**
 * llama_tensor_get_type for every tensor of a text model, in the order given (which must be
 * quantizeOrder: the attn_v / ffn_down counters advance with it). undefined = not quantized
 * (copied unchanged). The type is the one asked for before tensor_type_fallback; apply
 * `fallbackType` where `fallback` is set (or use `finalPresetTypes`).
 */
export function presetChoices(tensors: readonly QuantTensor[], preset: Preset, opts: PresetOptions): (PresetChoice | undefined)[] {
  const ftype = preset.ftype;
  const nExpertRaw = opts.nExpert ?? 0;
  const nExpert = Math.max(1, nExpertRaw);
  const nGqa = opts.nHeadKv === 0 ? 0 : Math.trunc(opts.nHead / opts.nHeadKv);
  const falcon = opts.arch === "falcon";
  const is70B = isType70B(opts.arch, opts);
  const cats = tensors.map((t) => category(t.name));
  const nAttnWv = cats.filter(isAttnV).length;
  const tied = !cats.includes("output");
  const nFfn = opts.nLayer;
  let iAttnWv = 0;
  let iFfnDown = 0;
  let iFfnGate = 0;
  let iFfnUp = 0;
  const is = (...f: number[]): boolean => f.includes(ftype);

  const layerInfo = (counter: number, name: string): [number, number] => {
    if (nExpert > 1) {
      const m = /^blk\.([+-]?\d+)/.exec(name);
      if (!m) throw new Error(`Failed to determine layer for tensor ${name}`);
      const i = Number(m[1]);
      if (i < 0 || i >= nFfn) throw new Error(`Bad layer ${i} for tensor ${name}. Must be in [0, ${nFfn})`);
      return [i, nFfn];
    }
    return [counter, nFfn];
  };

  /** llama_tensor_get_type_impl: the mixture */
  const impl = (t: QuantTensor, cat: Category, newType: G): G => {
    if (cat === "output" || (tied && cat === "token_embd")) {
      if (opts.outputTensorType !== undefined) return opts.outputTensorType;
      if (ftype === FT.MXFP4_MOE) return G.Q8_0;
      if (falcon || t.ne[0]! % typeInfo(newType).blockSize !== 0) return G.Q8_0;
      if (is(FT.IQ2_XXS, FT.IQ2_XS, FT.IQ3_XXS, FT.IQ1_S, FT.IQ2_S, FT.IQ2_M, FT.IQ1_M)) return G.Q5_K;
      return newType !== G.Q8_0 ? G.Q6_K : newType;
    }
    if (ftype === FT.MXFP4_MOE) {
      const bailingExpert = opts.arch === "bailingmoe3" && (cat === "ffn_up" || cat === "ffn_gate" || cat === "ffn_down");
      return (t.ne[2] ?? 1) > 1 && (opts.arch !== "bailingmoe3" || bailingExpert) ? G.MXFP4 : G.Q8_0;
    }
    if (cat === "token_embd") {
      if (opts.tokenEmbeddingType !== undefined) return opts.tokenEmbeddingType;
      if (is(FT.IQ2_XXS, FT.IQ2_XS, FT.IQ1_S, FT.IQ1_M)) return G.Q2_K;
      if (is(FT.IQ2_S, FT.IQ2_M, FT.IQ3_XXS)) return G.IQ3_S;
      if (is(FT.TQ1_0, FT.TQ2_0, FT.Q2_0)) return G.Q4_K;
      return newType;
    }
    if (is(FT.IQ2_XXS, FT.IQ2_XS, FT.IQ1_S, FT.IQ2_S, FT.IQ2_M, FT.IQ1_M)) {
      const s = is(FT.IQ2_S, FT.IQ2_M);
      if (isAttnV(cat)) {
        newType = nGqa >= 4 || nExpertRaw >= 4 ? G.Q4_K : s ? G.IQ3_S : G.Q2_K;
        iAttnWv++;
      } else if (nExpertRaw === 8 && cat === "attn_k") {
        newType = G.Q4_K;
      } else if (cat === "ffn_down") {
        if (iFfnDown < Math.trunc(nFfn / 8)) newType = s ? G.IQ3_S : G.Q2_K;
        iFfnDown++;
      } else if (cat === "attn_output") {
        if (nExpertRaw === 8) newType = G.Q5_K;
        else if (is(FT.IQ1_S, FT.IQ1_M)) newType = G.IQ2_XXS;
        else if (s) newType = G.IQ3_S;
      }
      return newType;
    }
    if (isAttnV(cat)) {
      // note: attn_qkv is attn_v-like, so it takes this branch (llama.cpp's separate ATTENTION_QKV branch is never reached)
      if (ftype === FT.Q2_K) newType = nGqa >= 4 ? G.Q4_K : G.Q3_K;
      else if (ftype === FT.Q2_K_S && nGqa >= 4) newType = G.Q4_K;
      else if (ftype === FT.IQ3_XXS) newType = nGqa >= 4 ? G.Q4_K : !opts.imatrix ? G.IQ3_S : G.IQ3_XXS;
      else if (is(FT.IQ3_XS, FT.IQ3_S) && nGqa >= 4) newType = G.Q4_K;
      else if (ftype === FT.IQ3_M) newType = G.Q4_K;
      else if (ftype === FT.Q3_K_M) newType = iAttnWv < 2 ? G.Q5_K : G.Q4_K;
      else if (ftype === FT.Q3_K_L) newType = G.Q5_K;
      else if (is(FT.IQ4_NL, FT.IQ4_XS) && nGqa >= 4) newType = G.Q5_K;
      else if (is(FT.Q4_K_M, FT.Q5_K_M) && useMoreBits(iAttnWv, nAttnWv)) newType = G.Q6_K;
      else if (ftype === FT.Q4_K_S && iAttnWv < 4) newType = G.Q5_K;
      if (is70B && (newType === G.Q3_K || newType === G.Q4_K)) newType = G.Q5_K;
      if (nExpertRaw === 8) newType = G.Q8_0;
      iAttnWv++;
      return newType;
    }
    if (cat === "attn_k") {
      if (nExpertRaw === 8) return G.Q8_0;
      if (ftype === FT.IQ3_XS) return G.IQ3_XXS;
      if (ftype === FT.IQ3_XXS) return G.IQ2_S;
      return newType;
    }
    if (cat === "attn_q") {
      if (ftype === FT.IQ3_XS) return G.IQ3_XXS;
      if (ftype === FT.IQ3_XXS) return G.IQ2_S;
      return newType;
    }
    if (cat === "ffn_down") {
      const [i, n] = layerInfo(iFfnDown, t.name);
      const n8 = Math.trunc(n / 8);
      const n16 = Math.trunc(n / 16);
      if (ftype === FT.Q2_K) newType = G.Q3_K;
      else if (ftype === FT.Q2_K_S) { if (i < n8) newType = G.Q4_K; }
      else if (ftype === FT.IQ3_XXS && !opts.imatrix) newType = i < n8 ? G.Q4_K : G.Q3_K;
      else if (ftype === FT.Q3_K_M) newType = i < n16 ? G.Q5_K : !falcon || useMoreBits(i, n) ? G.Q4_K : G.Q3_K;
      else if (ftype === FT.IQ3_M && (i < n8 || (nExpertRaw === 8 && useMoreBits(i, n)))) newType = G.Q4_K;
      else if (ftype === FT.Q3_K_L) newType = falcon ? G.Q4_K : G.Q5_K;
      else if (ftype === FT.Q4_K_M) {
        if (falcon) newType = i < n16 ? G.Q6_K : useMoreBits(i, n) ? G.Q5_K : G.Q4_K;
        else if (useMoreBits(i, n)) newType = G.Q6_K;
      } else if (i < n8 && is(FT.IQ4_NL, FT.IQ4_XS) && !opts.imatrix) newType = G.Q5_K;
      else if (ftype === FT.Q5_K_M && useMoreBits(i, n)) newType = G.Q6_K;
      else if (ftype === FT.Q4_K_S && !falcon && i < n8) newType = G.Q5_K;
      // "Guard against craziness in the first few ffn_down layers": only with an imatrix
      else if (is(FT.Q4_0, FT.Q5_0) && opts.imatrix && i < n8) newType = ftype === FT.Q4_0 ? G.Q4_1 : G.Q5_1;
      iFfnDown++;
      return newType;
    }
    if (cat === "attn_output") {
      if (!falcon) {
        if (nExpertRaw === 8) {
          if (is(FT.Q2_K, FT.IQ3_XS, FT.IQ3_XXS, FT.Q3_K_S, FT.Q3_K_M, FT.IQ4_NL, FT.Q4_K_S, FT.Q4_K_M, FT.IQ3_S, FT.IQ3_M, FT.IQ4_XS)) newType = G.Q5_K;
        } else if (ftype === FT.Q2_K) newType = G.Q3_K;
        else if (ftype === FT.IQ3_XXS) newType = G.IQ3_S;
        else if (ftype === FT.Q3_K_M) newType = G.Q4_K;
        else if (ftype === FT.Q3_K_L) newType = G.Q5_K;
        else if (ftype === FT.IQ3_M) newType = G.Q4_K;
      } else if (ftype === FT.Q3_K_L) newType = G.Q4_K;
      return newType;
    }
    if (cat === "ffn_gate" || cat === "ffn_up") {
      const [i, n] = layerInfo(cat === "ffn_gate" ? iFfnGate : iFfnUp, t.name);
      if (ftype === FT.IQ3_XS && i >= Math.trunc(n / 8) && i < Math.trunc((7 * n) / 8)) newType = G.IQ3_XXS;
      if (cat === "ffn_gate") iFfnGate++;
      else iFfnUp++;
      return newType;
    }
    return newType;
  };

  return tensors.map((t, k) => {
    if (!allowsQuantization(t, opts)) return undefined;
    const cat = cats[k]!;
    if (opts.tokenEmbeddingType !== undefined && cat === "token_embd") {
      // per_layer_token_embd follows --token-embedding-type unless a --tensor-type names it
      const named = t.name === "per_layer_token_embd.weight" && (opts.tensorTypes ?? []).some(([re]) => t.name.search(re) >= 0);
      if (!named) return { type: opts.tokenEmbeddingType, fallback: false };
    }
    if (opts.outputTensorType !== undefined && cat === "output") return { type: opts.outputTensorType, fallback: false };
    let type = preset.defaultType;
    if (!isQuantized(type)) return { type, fallback: false };
    let manual = false;
    for (const [re, qt] of opts.tensorTypes ?? []) {
      if (t.name.search(re) >= 0) {
        type = qt;
        manual = true;
        break;
      }
    }
    if (!manual && !opts.pure) type = impl(t, cat, type);
    return { type, fallback: true };
  });
}

/**
 * The type llama-quantize asks for, per tensor (see presetChoices), before tensor_type_fallback.
 * The caller applies `fallbackType` (a no-op where llama-quantize skips it, except for an
 * --output-tensor-type / --token-embedding-type that does not fit the row length, where
 * llama-quantize aborts instead).
 */
export function presetTypes(tensors: readonly QuantTensor[], preset: Preset, opts: PresetOptions): (G | undefined)[] {
  return presetChoices(tensors, preset, opts).map((c) => c?.type);
}

/** The final types llama-quantize writes (fallback applied where it applies it); undefined = copied unchanged. */
export function finalPresetTypes(tensors: readonly QuantTensor[], preset: Preset, opts: PresetOptions): (G | undefined)[] {
  return presetChoices(tensors, preset, opts).map((c, i) => (c === undefined ? undefined : c.fallback ? fallbackType(c.type, tensors[i]!.ne[0]!) : c.type));
}

/**
 * The first tensor whose chosen type cannot be quantized without an importance matrix, as
 * llama-quantize decides it (src/llama-quant.cpp tensor_requires_imatrix: IQ3_XXS, IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ1_M, IQ1_S except on token_embd / output), plus the types ggml itself refuses to quantize
 * without one anywhere (ggml_quantize_requires_imatrix: IQ2_XXS, IQ2_XS, IQ1_S — reachable through
 * --tensor-type / --output-tensor-type / --token-embedding-type). Q2_K inside Q2_K_S is refused by
 * preset (IMATRIX_PRESETS).
 */
export function imatrixRequiredBy(order: readonly { name: string }[], types: readonly G[]): { name: string; type: G } | undefined {
  const anywhere = [G.IQ2_XXS, G.IQ2_XS, G.IQ1_S];
  const mixture = [G.IQ3_XXS, G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ1_M, G.IQ1_S];
  for (let i = 0; i < order.length; i++) {
    const name = order[i]!.name;
    const t = types[i]!;
    const embdOrOutput = name === "token_embd.weight" || name === "output.weight";
    if (anywhere.includes(t) || (!embdOrOutput && mixture.includes(t))) return { name, type: t };
  }
  return undefined;
}
