/**
 * Shared pieces of HF decoder-only text models: hyper-parameters as llama.cpp's TextModel writes
 * them, the tensor-name table, and output tensors that pass source rows through.
 */
import { GgufyError } from "../errors.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import type { OutputTensor } from "./types.js";

export function cfgNumber(config: Record<string, unknown>, keys: readonly string[], file: string, required = true): number | undefined {
  for (const k of keys) {
    const v = config[k];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  if (required) throw new GgufyError("E_CONFIG", `needs one of ${keys.join(" / ")}`, { file });
  return undefined;
}

export interface TextHparams {
  nLayer: number;
  nCtx: number;
  nEmbd: number;
  nFf: number;
  nHead: number;
  nHeadKv: number;
  ropeTheta: number | undefined;
  rmsEps: number | undefined;
  headDim: number | undefined;
  vocabSize: number | undefined;
}

export function textHparams(config: Record<string, unknown>, file: string): TextHparams {
  const nHead = cfgNumber(config, ["num_attention_heads", "n_head", "n_heads"], file)!;
  return {
    nLayer: cfgNumber(config, ["n_layers", "num_hidden_layers", "n_layer", "num_layers"], file)!,
    nCtx: cfgNumber(config, ["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"], file)!,
    nEmbd: cfgNumber(config, ["hidden_size", "n_embd", "dim"], file)!,
    nFf: cfgNumber(config, ["intermediate_size", "n_inner", "hidden_dim"], file)!,
    nHead,
    nHeadKv: cfgNumber(config, ["num_key_value_heads", "n_head_kv"], file, false) ?? nHead,
    ropeTheta: cfgNumber(config, ["rope_theta"], file, false) ?? ropeThetaFromParameters(config),
    rmsEps: cfgNumber(config, ["rms_norm_eps", "norm_eps", "layer_norm_epsilon"], file, false),
    headDim: cfgNumber(config, ["head_dim"], file, false),
    vocabSize: cfgNumber(config, ["vocab_size"], file, false),
  };
}

function ropeThetaFromParameters(config: Record<string, unknown>): number | undefined {
  const rp = config["rope_parameters"];
  if (rp && typeof rp === "object" && typeof (rp as Record<string, unknown>)["rope_theta"] === "number") return (rp as Record<string, number>)["rope_theta"];
  return undefined;
}

/** The KVs TextModel.set_gguf_parameters writes, in its order (general.file_type is added later). */
export function textKvs(arch: string, h: TextHparams, opts: { alwaysRopeBase?: number } = {}): GGUFKV[] {
  const out: GGUFKV[] = [
    kv.u32(`${arch}.block_count`, h.nLayer),
    kv.u32(`${arch}.context_length`, h.nCtx),
    kv.u32(`${arch}.embedding_length`, h.nEmbd),
    kv.u32(`${arch}.feed_forward_length`, h.nFf),
    kv.u32(`${arch}.attention.head_count`, h.nHead),
    kv.u32(`${arch}.attention.head_count_kv`, h.nHeadKv),
  ];
  const theta = h.ropeTheta ?? opts.alwaysRopeBase;
  if (theta !== undefined) out.push(kv.f32(`${arch}.rope.freq_base`, theta));
  if (h.rmsEps !== undefined) out.push(kv.f32(`${arch}.attention.layer_norm_rms_epsilon`, h.rmsEps));
  if (h.headDim !== undefined) {
    out.push(kv.u32(`${arch}.attention.key_length`, h.headDim));
    out.push(kv.u32(`${arch}.attention.value_length`, h.headDim));
  }
  return out;
}

/** HF → GGUF names shared by Llama-family decoders (gguf-py tensor_mapping, as data). */
export const LLAMA_LIKE_NAMES: readonly (readonly [RegExp, string])[] = [
  [/^model\.embed_tokens\.(weight)$/, "token_embd.$1"],
  [/^model\.norm\.(weight)$/, "output_norm.$1"],
  [/^lm_head\.(weight)$/, "output.$1"],
  [/^model\.layers\.(\d+)\.input_layernorm\.(weight)$/, "blk.$1.attn_norm.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/, "blk.$1.attn_q.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$/, "blk.$1.attn_k.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$/, "blk.$1.attn_v.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, "blk.$1.attn_output.$2"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.(weight)$/, "blk.$1.ffn_norm.$2"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)$/, "blk.$1.ffn_gate.$2"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)$/, "blk.$1.ffn_up.$2"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)$/, "blk.$1.ffn_down.$2"],
];

/** Names the converter drops on purpose (buffers, not weights). */
export const SKIPPED = [/\.rotary_emb\.inv_freq$/, /\.attention\.masked_bias$/, /\.attention\.bias$/];

export function mapName(table: readonly (readonly [RegExp, string])[], name: string): string | undefined {
  for (const [re, to] of table) if (re.test(name)) return name.replace(re, to);
  return undefined;
}

/** numpy shape → ggml ne */
export function toNe(shape: readonly number[]): number[] {
  return shape.length === 0 ? [1] : [...shape].reverse();
}

/** An output tensor that is the source tensor unchanged (rows pass straight through). */
export function passThrough(src: SourceCheckpoint, t: SourceTensor, ggufName: string): OutputTensor {
  return {
    name: ggufName,
    ne: toNe(t.shape),
    sources: [t.name],
    encoding: t.encoding,
    dtype: t.dtype,
    read: (row0, nRows) => src.readRows(t.name, row0, nRows),
    readRaw: (row0, nRows, into) => src.readRawRows(t.name, row0, nRows, into),
  };
}

/** Map every tensor of `src` (optionally under a prefix) through a name table; unmapped names are an error. */
export function mapAll(
  src: SourceCheckpoint,
  table: readonly (readonly [RegExp, string])[],
  opts: { prefix?: string; transform?: (t: SourceTensor, ggufName: string) => OutputTensor | undefined } = {},
): OutputTensor[] {
  const prefix = opts.prefix ?? "";
  const out: OutputTensor[] = [];
  for (const full of src.names()) {
    if (!full.startsWith(prefix)) continue;
    const name = full.slice(prefix.length);
    if (SKIPPED.some((re) => re.test(name))) continue;
    const g = mapName(table, name);
    if (!g) throw new GgufyError("E_UNEXPECTED_TENSOR", "no GGUF name for this tensor in the architecture's map", { file: src.dir, tensor: full });
    const t = src.get(full)!;
    out.push(opts.transform?.(t, g) ?? passThrough(src, t, g));
  }
  return out;
}
