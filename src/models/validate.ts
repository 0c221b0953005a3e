/**
 * Pre-flight checks of a decoder-only text model: config.json against itself and against the
 * weights' shapes, and the tokenizer against the embedding. They run on headers only, before any
 * weight is read or any output is created, and turn what llama.cpp would report at load time
 * ("tensor 'token_embd.weight' has wrong shape", "wrong number of tensors") — or what would convert
 * into a silently broken file — into one clear error naming config.json and the tensor.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import type { SourceCheckpoint } from "../convert/source.js";
import type { GGUFVocab } from "../tokenizer/types.js";
import type { TextHparams } from "./text-decoder.js";

const U32_MAX = 0xffffffff;

/** per-layer weights every llama.cpp decoder of this family loads as required (biases are optional here) */
const LAYER_REQUIRED = [
  "input_layernorm.weight", "post_attention_layernorm.weight",
  "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
  "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
];

function shapeStr(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/** config.json values that must be positive integers (they become u32 KVs and tensor dimensions). */
function checkHparams(h: TextHparams, file: string): void {
  const need: [string, number | undefined, boolean][] = [
    ["num_hidden_layers", h.nLayer, true],
    ["hidden_size", h.nEmbd, true],
    ["intermediate_size", h.nFf, true],
    ["num_attention_heads", h.nHead, true],
    ["num_key_value_heads", h.nHeadKv, true],
    ["max_position_embeddings", h.nCtx, true],
    ["head_dim", h.headDim, false],
    ["vocab_size", h.vocabSize, false],
  ];
  for (const [key, v, required] of need) {
    if (v === undefined && !required) continue;
    if (v === undefined || !Number.isInteger(v) || v < 1 || v > U32_MAX) throw new GgufyError("E_CONFIG", `${key} is ${v}; expected a positive integer`, { file });
  }
  if (h.nHead % h.nHeadKv !== 0) throw new GgufyError("E_CONFIG", `num_attention_heads ${h.nHead} is not a multiple of num_key_value_heads ${h.nHeadKv}`, { file });
  if (h.headDim === undefined && h.nEmbd % h.nHead !== 0) throw new GgufyError("E_CONFIG", `hidden_size ${h.nEmbd} is not divisible by num_attention_heads ${h.nHead} (and there is no head_dim)`, { file });
  if (h.rmsEps !== undefined && !(h.rmsEps > 0)) throw new GgufyError("E_CONFIG", `rms_norm_eps is ${h.rmsEps}; expected a positive number`, { file });
  if (h.ropeTheta !== undefined && !(h.ropeTheta > 0)) throw new GgufyError("E_CONFIG", `rope_theta is ${h.ropeTheta}; expected a positive number`, { file });
}

export interface TextModelCheck {
  src: SourceCheckpoint;
  h: TextHparams;
  /** config.json */
  configFile: string;
  /** where the language model's tensors live in the checkpoint ("" or "llm.") */
  prefix?: string;
  /** only the vocabulary is converted: check config.json alone */
  vocabOnly?: boolean;
  /** head_dim must be even (Llama's Q/K un-permutation splits each head in two halves) */
  evenHeadDim?: boolean;
  /** per-layer weights (after `model.layers.N.`) llama.cpp loads as required; default: the Llama set */
  required?: readonly string[];
}

/** Check config.json against itself and against the shapes of the weights. Throws E_CONFIG / E_MISSING_TENSOR. */
export function validateTextModel(c: TextModelCheck): void {
  const { src, h, configFile: file } = c;
  const prefix = c.prefix ?? "";
  checkHparams(h, file);
  const hd = h.headDim ?? h.nEmbd / h.nHead;
  if (c.evenHeadDim && hd % 2 !== 0) throw new GgufyError("E_CONFIG", `head size ${hd} is odd; rotary embeddings need an even head size`, { file });
  if (c.vocabOnly) return;

  const embName = `${prefix}model.embed_tokens.weight`;
  const emb = src.get(embName);
  if (!emb) throw new GgufyError("E_MISSING_TENSOR", "the token embedding is absent from the checkpoint", { file: src.dir, tensor: embName });
  if (emb.shape.length !== 2) throw new GgufyError("E_CONFIG", `token embedding has shape ${shapeStr(emb.shape)}; expected [vocab_size, hidden_size]`, { file, tensor: embName });
  const [rows, width] = emb.shape as [number, number];
  if (width !== h.nEmbd) throw new GgufyError("E_CONFIG", `hidden_size is ${h.nEmbd} but the token embedding is ${shapeStr(emb.shape)} (${width} wide)`, { file, tensor: embName });
  if (h.vocabSize !== undefined && h.vocabSize !== rows) {
    throw new GgufyError("E_CONFIG", `vocab_size is ${h.vocabSize} but the token embedding has ${rows} rows; llama.cpp would refuse the file (set vocab_size to ${rows})`, { file, tensor: embName });
  }
  const expect = (name: string, want: readonly number[], why: string): void => {
    const t = src.get(prefix + name);
    if (!t) return;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new GgufyError("E_CONFIG", `shape is ${shapeStr(t.shape)} but config.json implies ${shapeStr(want)} (${why})`, { file, tensor: prefix + name });
    }
  };
  if (!src.get(`${prefix}model.norm.weight`)) throw new GgufyError("E_MISSING_TENSOR", "the final norm is absent from the checkpoint; llama.cpp needs it to load the model", { file: src.dir, tensor: `${prefix}model.norm.weight` });
  expect("lm_head.weight", [rows, h.nEmbd], "token embedding rows × hidden_size");
  expect("model.norm.weight", [h.nEmbd], "hidden_size");

  // layers: every one the config names must be there, and none beyond
  const layerRe = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}model\\.layers\\.(\\d+)\\.`);
  let maxLayer = -1;
  let maxName = "";
  for (const name of src.names()) {
    const m = layerRe.exec(name);
    if (m && Number(m[1]) > maxLayer) {
      maxLayer = Number(m[1]);
      maxName = name;
    }
  }
  if (maxLayer >= h.nLayer) throw new GgufyError("E_CONFIG", `the checkpoint has layer ${maxLayer} but num_hidden_layers is ${h.nLayer}`, { file, tensor: maxName });
  const q = h.nHead * hd;
  const kv = h.nHeadKv * hd;
  const heads = `num_attention_heads ${h.nHead} × head size ${hd}`;
  const kvHeads = `num_key_value_heads ${h.nHeadKv} × head size ${hd}`;
  for (let i = 0; i < h.nLayer; i++) {
    const l = `model.layers.${i}.`;
    if (!src.get(`${prefix}${l}self_attn.q_proj.weight`) && !src.get(`${prefix}${l}self_attn.qkv_proj.weight`)) {
      throw new GgufyError("E_MISSING_TENSOR", `num_hidden_layers is ${h.nLayer} but layer ${i} has no attention weights`, { file: src.dir, tensor: `${prefix}${l}self_attn.q_proj.weight` });
    }
    for (const part of c.required ?? LAYER_REQUIRED) {
      if (!src.get(`${prefix}${l}${part}`)) throw new GgufyError("E_MISSING_TENSOR", "absent from the checkpoint; llama.cpp needs it to load the model", { file: src.dir, tensor: `${prefix}${l}${part}` });
    }
    expect(`${l}self_attn.q_proj.weight`, [q, h.nEmbd], `${heads} rows, hidden_size columns`);
    expect(`${l}self_attn.k_proj.weight`, [kv, h.nEmbd], `${kvHeads} rows, hidden_size columns`);
    expect(`${l}self_attn.v_proj.weight`, [kv, h.nEmbd], `${kvHeads} rows, hidden_size columns`);
    expect(`${l}self_attn.o_proj.weight`, [h.nEmbd, q], `hidden_size rows, ${heads} columns`);
    expect(`${l}self_attn.q_proj.bias`, [q], heads);
    expect(`${l}self_attn.k_proj.bias`, [kv], kvHeads);
    expect(`${l}self_attn.v_proj.bias`, [kv], kvHeads);
    expect(`${l}mlp.gate_proj.weight`, [h.nFf, h.nEmbd], "intermediate_size × hidden_size");
    expect(`${l}mlp.up_proj.weight`, [h.nFf, h.nEmbd], "intermediate_size × hidden_size");
    expect(`${l}mlp.down_proj.weight`, [h.nEmbd, h.nFf], "hidden_size × intermediate_size");
    expect(`${l}input_layernorm.weight`, [h.nEmbd], "hidden_size");
    expect(`${l}post_attention_layernorm.weight`, [h.nEmbd], "hidden_size");
  }
}

/**
 * The vocabulary (after padding to config.vocab_size) must have exactly one token per embedding
 * row: more tokens than rows cannot be fixed by padding; fewer means vocab_size should say so.
 */
export function validateVocab(vocab: GGUFVocab, c: { src: SourceCheckpoint; configFile: string; tokenizerDir: string; prefix?: string; vocabOnly?: boolean }): void {
  if (c.vocabOnly) return;
  const embName = `${c.prefix ?? ""}model.embed_tokens.weight`;
  const rows = c.src.get(embName)?.shape[0];
  if (rows === undefined) return;
  const n = vocab.tokenBytes?.length ?? vocab.tokens.length; // (tokenBytes: counted without decoding them)
  if (n > rows) {
    throw new GgufyError("E_TOKENIZER", `the tokenizer has ${n} tokens but the token embedding (${embName}) has only ${rows} rows`, { file: c.tokenizerDir });
  }
  if (n < rows) {
    throw new GgufyError("E_TOKENIZER", `the tokenizer has ${n} tokens but the token embedding (${embName}) has ${rows} rows; set vocab_size to ${rows} in ${path.basename(c.configFile)} to pad with [PAD] tokens`, { file: c.tokenizerDir });
  }
}
