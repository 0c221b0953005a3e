/**
 * The shared base of decoder-only text models (after llama.cpp's `conversion/base.py` TextModel):
 * typed hyper-parameters, the KVs TextModel.set_gguf_parameters writes in its order, RoPE scaling,
 * the HF → GGUF name map, norms kept F32 by the planner, tied embeddings (no `output.weight` when
 * the checkpoint has no lm_head), and the vocabulary. A family (llama.ts, qwen.ts, gemma.ts …) is a
 * `DecoderSpec`: only what differs. Models know nothing of bytes: tensors are read through the
 * SourceCheckpoint as float rows.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { LLM, TENSOR, archKey, tensorName, type LlmKey, type TensorTemplate } from "../formats/gguf/keys.js";
import type { SourceCheckpoint, SourceTensor } from "../convert/source.js";
import { HfConfig } from "./config.js";
import { llama3RopeFactors, readRope, ropeScalingKvs, type RopeParams } from "./rope.js";
import { COMMON_NAMES, compileNames, mapTensorName, type NameRow } from "./tensor-map.js";
import { constTensor, passThrough, permutedRows, SKIPPED } from "./tensors.js";
import type { ConvertContext, ModelConverter, ModelFile, OutputTensor } from "./types.js";
import { validateTextModel, validateVocab } from "./validate.js";

/** Typed hyper-parameters every text decoder has (config.json, `text_config` merged over the root). */
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
  rope: RopeParams;
  nExpert: number | undefined;
  nExpertUsed: number | undefined;
}

/** The config a text decoder reads: `text_config` (Gemma 3, multimodal wrappers) merged over the root. */
export function textConfig(config: Record<string, unknown>, file: string): HfConfig {
  const tc = config["text_config"];
  const merged = tc && typeof tc === "object" && !Array.isArray(tc) ? { ...config, ...(tc as Record<string, unknown>) } : config;
  return new HfConfig(merged, file);
}

/** TextModel's find_hparam lists, typed (base.py TextModel.__init__ / set_gguf_parameters). */
export function readTextHparams(cfg: HfConfig): TextHparams {
  const nHead = cfg.reqInt(["num_attention_heads", "n_head", "n_heads"]);
  const rope = readRope(cfg);
  return {
    nLayer: cfg.reqInt(["n_layers", "num_hidden_layers", "n_layer", "num_layers"]),
    nCtx: cfg.reqInt(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"]),
    nEmbd: cfg.reqInt(["hidden_size", "n_embd", "dim"]),
    nFf: cfg.reqInt(["intermediate_size", "n_inner", "hidden_dim"]),
    nHead,
    nHeadKv: cfg.int(["num_key_value_heads", "n_kv_heads", "n_head_kv"]) ?? nHead,
    ropeTheta: rope.theta,
    rmsEps: cfg.num(["rms_norm_eps", "norm_eps"], { gt: 0 }),
    headDim: cfg.int("head_dim"),
    vocabSize: cfg.int("vocab_size"),
    rope,
    nExpert: cfg.int(["num_local_experts", "num_experts", "n_routed_experts"]),
    nExpertUsed: cfg.int(["num_experts_per_tok", "num_experts_per_token", "top_k_experts"]),
  };
}

/** Builds an arch's KV list with typed keys. */
export class KvList {
  readonly list: GGUFKV[] = [];
  constructor(readonly arch: string) {}
  private k(t: LlmKey): string {
    return archKey(t, this.arch);
  }
  u32(t: LlmKey, v: number): this {
    this.list.push(kv.u32(this.k(t), v));
    return this;
  }
  f32(t: LlmKey, v: number): this {
    this.list.push(kv.f32(this.k(t), v));
    return this;
  }
  bool(t: LlmKey, v: boolean): this {
    this.list.push(kv.bool(this.k(t), v));
    return this;
  }
  str(t: LlmKey, v: string): this {
    this.list.push(kv.str(this.k(t), v));
    return this;
  }
  i32s(t: LlmKey, v: readonly number[]): this {
    this.list.push(kv.i32s(this.k(t), v));
    return this;
  }
  push(...kvs: GGUFKV[]): this {
    this.list.push(...kvs);
    return this;
  }
}

/** The KVs TextModel.set_gguf_parameters writes, in its order (general.file_type is the planner's). */
export function baseKvs(out: KvList, h: TextHparams, opts: { alwaysRopeBase?: number } = {}): void {
  out.u32(LLM.BLOCK_COUNT, h.nLayer).u32(LLM.CONTEXT_LENGTH, h.nCtx).u32(LLM.EMBEDDING_LENGTH, h.nEmbd).u32(LLM.FEED_FORWARD_LENGTH, h.nFf);
  out.u32(LLM.HEAD_COUNT, h.nHead).u32(LLM.HEAD_COUNT_KV, h.nHeadKv);
  out.push(...ropeScalingKvs(out.arch, h.rope.scaling));
  const theta = h.ropeTheta ?? opts.alwaysRopeBase;
  if (theta !== undefined) out.f32(LLM.ROPE_FREQ_BASE, theta);
  if (h.rope.thetaSwa !== undefined) out.f32(LLM.ROPE_FREQ_BASE_SWA, h.rope.thetaSwa);
  if (h.rmsEps !== undefined) out.f32(LLM.LAYERNORM_RMS_EPS, h.rmsEps);
  if (h.nExpert !== undefined) out.u32(LLM.EXPERT_COUNT, h.nExpert);
  if (h.nExpertUsed !== undefined) out.u32(LLM.EXPERT_USED_COUNT, h.nExpertUsed);
  if (h.headDim !== undefined) out.u32(LLM.KEY_LENGTH, h.headDim).u32(LLM.VALUE_LENGTH, h.headDim);
}

/** What a family states about itself; everything else is the base's. */
export interface DecoderSpec {
  /** short id (registry, --print-supported-models) */
  readonly id: string;
  /** config.json `architectures[0]` values */
  readonly hfArchitectures: readonly string[];
  /** general.architecture */
  readonly arch: string;
  /** the GGUF tensors this architecture has (gguf-py MODEL_TENSORS[arch]) */
  readonly tensors: readonly TensorTemplate[];
  /** HF → GGUF rows checked before the common ones */
  readonly names?: readonly NameRow[];
  /** llama.cpp's Q/K un-permutation (LlamaModel.undo_permute) */
  readonly permuteQK?: boolean;
  /** rope.freq_base written even when the config has none (Qwen2: llama.cpp would default to 10000 anyway) */
  readonly alwaysRopeBase?: number;
  /** per-layer HF weights (after `model.layers.N.`) llama.cpp loads as required, for pre-flight checks */
  readonly layerRequired?: readonly string[] | ((h: TextHparams) => readonly string[]);
  /** validate and read family hyper-parameters; returns KVs appended after the base ones (set_gguf_parameters after super()) */
  readonly kvs?: (cfg: HfConfig, h: TextHparams, out: KvList, info: { nVocab: number }) => void;
  /** a family's own tensor rewrite (norm + 1, fused splits …); undefined → the base's */
  readonly transform?: (c: TensorCtx) => OutputTensor | OutputTensor[] | null | undefined;
  /** tensors the converter generates (rope factors …), written first as llama.cpp's generate_extra_tensors does */
  readonly extraTensors?: (cfg: HfConfig, h: TextHparams) => OutputTensor[];
  /** HF tensors (after the prefix) this family drops on purpose */
  readonly skip?: readonly RegExp[];
  /** MoE experts stacked into 3-D tensors */
  readonly experts?: ExpertSpec;
  /** notes for the user about config values llama.cpp's runtime does not honour (Mistral's sliding_window …) */
  readonly warnings?: (cfg: HfConfig, h: TextHparams) => string[];
}

export interface TensorCtx {
  readonly src: SourceCheckpoint;
  readonly t: SourceTensor;
  /** the GGUF name the map gives */
  readonly gguf: string;
  readonly template: TensorTemplate;
  readonly bid: number | undefined;
  readonly h: TextHparams;
  readonly cfg: HfConfig;
}

/** MoE: `model.layers.{bid}.<path>.{xid}.<proj>.weight` → one 3-D tensor per (layer, proj). */
export interface ExpertSpec {
  /** after the prefix: captures bid, xid and the projection name */
  readonly pattern: RegExp;
  /** projection name → stacked GGUF template */
  readonly to: Readonly<Record<string, TensorTemplate>>;
  /**
   * The [rows, cols] every expert of `proj` must have, and the config key(s) that say so (a
   * config/weights mismatch is refused by name before anything is written).
   */
  readonly shape?: (proj: string, h: TextHparams, cfg: HfConfig) => { rows: number; cols: number; why: string };
  /** the router (after `model.layers.N.`, e.g. `mlp.gate.weight`; the first present of a list): required in every layer, [n_expert, hidden] */
  readonly router?: string | readonly string[];
  /**
   * transformers v5's fused layout: per layer two 3-D parameters (no `.weight` suffix), `gate_up_proj`
   * [n_expert, 2·ff, hidden] (each expert's gate rows, then its up rows) and `down_proj` [n_expert, hidden, ff].
   * `pattern` captures bid and the parameter name; gate_up_proj splits into the projections `gateUp`
   * (on dim −2, as llama.cpp's Qwen2MoeModel.modify_tensors does), down_proj is the projection `down`.
   */
  readonly fused?: { readonly pattern: RegExp; readonly gateUp: readonly [string, string]; readonly down: string };
  /**
   * per-layer weights (after `model.layers.N.`) required when the checkpoint is dense — a family with
   * optional experts (Llama vs Mixtral) cannot list its MLP in layerRequired
   */
  readonly denseRequired?: readonly string[];
}

export const DEFAULT_LAYER_REQUIRED = [
  "input_layernorm.weight", "post_attention_layernorm.weight",
  "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
  "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
];

/** Build the language-model file of a decoder family found under `prefix` of the checkpoint. */
export async function buildTextDecoder(ctx: ConvertContext, spec: DecoderSpec, prefix = "", tokenizerDir = ctx.dir): Promise<ModelFile> {
  const file = path.join(ctx.dir, "config.json");
  const cfg = textConfig(ctx.config, file);
  const h = readTextHparams(cfg);
  validateTextModel({
    src: ctx.src, h, configFile: file, prefix, vocabOnly: ctx.vocabOnly === true,
    evenHeadDim: spec.permuteQK === true, required: typeof spec.layerRequired === "function" ? spec.layerRequired(h) : (spec.layerRequired ?? DEFAULT_LAYER_REQUIRED),
  });
  const out = new KvList(spec.arch);
  baseKvs(out, h, spec.alwaysRopeBase !== undefined ? { alwaysRopeBase: spec.alwaysRopeBase } : {});
  const vocab = await ctx.loadVocab({ dir: tokenizerDir, arch: spec.arch, config: ctx.config, ...(h.vocabSize !== undefined ? { vocabSize: h.vocabSize } : {}) });
  validateVocab(vocab, { src: ctx.src, configFile: file, tokenizerDir, prefix, vocabOnly: ctx.vocabOnly === true });
  spec.kvs?.(cfg, h, out, { nVocab: vocab.tokenBytes?.length ?? vocab.tokens.length });
  const tensors = ctx.vocabOnly ? [] : [...(spec.extraTensors?.(cfg, h) ?? []), ...mapDecoderTensors(ctx.src, spec, h, cfg, prefix)];
  const warnings = [...h.rope.warnings, ...(spec.warnings?.(cfg, h) ?? [])];
  return {
    role: "model", arch: spec.arch, kvs: out.list, tensors, vocab,
    hparams: { nLayer: h.nLayer, nHead: h.nHead, nHeadKv: h.nHeadKv, nExpert: h.nExpert ?? 0 },
    ...(warnings.length ? { warnings } : {}),
  };
}

/** Llama-family base KVs (LlamaModel.set_gguf_parameters after super()): vocab size, rope dimension count. */
export function llamaKvs(h: TextHparams, out: KvList, nVocab: number): void {
  out.u32(LLM.VOCAB_SIZE, nVocab);
  out.u32(LLM.ROPE_DIMENSION_COUNT, h.headDim ?? h.nEmbd / h.nHead);
}

/** Every tensor of the checkpoint under `prefix`, through the family's name map (an unmapped one is an error). */
export function mapDecoderTensors(src: SourceCheckpoint, spec: DecoderSpec, h: TextHparams, cfg: HfConfig, prefix = ""): OutputTensor[] {
  const names = compileNames([...(spec.names ?? []), ...COMMON_NAMES], spec.tensors);
  const out: OutputTensor[] = [];
  const experts = new Map<string, ExpertGroup>();
  for (const full of src.names()) {
    if (!full.startsWith(prefix)) continue;
    const name = full.slice(prefix.length);
    if (SKIPPED.some((re) => re.test(name)) || spec.skip?.some((re) => re.test(name))) continue;
    const t = src.get(full)!;
    const fm = spec.experts?.fused?.pattern.exec(name);
    if (spec.experts?.fused && fm) {
      const [, bidS, param] = fm;
      const f = spec.experts.fused;
      const projs = param === "gate_up_proj" ? f.gateUp : param === "down_proj" ? [f.down] : undefined;
      if (!projs) throw new GgufyError("E_UNEXPECTED_TENSOR", `no GGUF name for fused expert parameter ${param}`, { file: src.dir, tensor: full });
      projs.forEach((proj, k) => {
        const key = `${bidS}/${proj}`;
        if (experts.has(key)) throw new GgufyError("E_DUPLICATE_TENSOR", `layer ${bidS} has ${proj} experts both fused (${full}) and per expert`, { file: src.dir, tensor: full });
        experts.set(key, { template: spec.experts!.to[proj]!, bid: Number(bidS), proj, parts: new Map(), fused: { t, half: projs.length === 2 ? k : undefined } });
        out.push(stackPlaceholder(key));
      });
      continue;
    }
    const em = spec.experts?.pattern.exec(name);
    if (spec.experts && em) {
      const [, bidS, xidS, proj] = em;
      const template = spec.experts.to[proj!];
      if (!template) throw new GgufyError("E_UNEXPECTED_TENSOR", `no GGUF name for expert projection ${proj}`, { file: src.dir, tensor: full });
      const key = `${bidS}/${proj}`;
      let g = experts.get(key);
      if (g?.fused) throw new GgufyError("E_DUPLICATE_TENSOR", `layer ${bidS} has ${proj} experts both fused (${g.fused.t.name}) and per expert`, { file: src.dir, tensor: full });
      if (!g) {
        g = { template, bid: Number(bidS), proj: proj!, parts: new Map() };
        experts.set(key, g);
        // the stacked tensor takes the place of the first expert met, as the converter emits it once complete
        out.push(stackPlaceholder(key));
      }
      const xid = Number(xidS);
      const dup = g.parts.get(xid);
      if (dup) throw new GgufyError("E_DUPLICATE_TENSOR", `expert ${xid} of layer ${bidS} (${proj}) appears twice, also as ${dup.name}`, { file: src.dir, tensor: full });
      g.parts.set(xid, t);
      continue;
    }
    const m = mapTensorName(names, name);
    if (!m) throw new GgufyError("E_UNEXPECTED_TENSOR", `no GGUF name for this tensor in the ${spec.arch} map`, { file: src.dir, tensor: full });
    const c: TensorCtx = { src, t, gguf: m.gguf, template: m.template, bid: m.bid, h, cfg };
    const r = spec.transform?.(c);
    if (r === null) continue;
    if (r !== undefined) {
      out.push(...(Array.isArray(r) ? r : [r]));
      continue;
    }
    out.push(baseTransform(c, spec));
  }
  if (spec.experts) checkExpertLayers(src, spec.experts, h, cfg, prefix, experts);
  // resolve the expert stacks: every expert 0..n-1 present, same shape
  return out.map((o) => {
    const key = placeholderKey(o);
    if (key === undefined) return o;
    const g = experts.get(key)!;
    if (g.fused) return fusedExperts(src, g.fused.t, g.fused.half, tensorName(g.template, g.bid), fusedRows(spec.experts!, h, cfg, g));
    return stackedExperts(src, expertParts(src, spec.experts!, h, cfg, prefix, g), tensorName(g.template, g.bid));
  });
}

interface ExpertGroup {
  template: TensorTemplate;
  bid: number;
  proj: string;
  parts: Map<number, SourceTensor>;
  /** transformers v5 layout: the 3-D parameter, and which half of gate_up_proj (0 gate, 1 up) */
  fused?: { t: SourceTensor; half: number | undefined };
}

/** Checks a fused 3-D expert parameter against config.json; returns the rows of one expert of this projection. */
function fusedRows(e: ExpertSpec, h: TextHparams, cfg: HfConfig, g: ExpertGroup): number {
  const { t, half } = g.fused!;
  const n = h.nExpert!;
  const want = e.shape?.(g.proj, h, cfg);
  const [nx, r, c] = t.shape as [number, number, number];
  const rows = half === undefined ? r : r / 2;
  if (t.shape.length !== 3 || nx !== n || !Number.isInteger(rows) || (want && (rows !== want.rows || c !== want.cols))) {
    const w = want ? (half === undefined ? `[${n}, ${want.rows}, ${want.cols}]` : `[${n}, ${2 * want.rows}, ${want.cols}]`) : `[${n}, …]`;
    throw new GgufyError("E_CONFIG", `shape is [${t.shape.join(", ")}] but config.json implies ${w} (expert count × ${want ? want.why : "…"}${half === undefined ? "" : ", gate and up rows"})`, { file: cfg.file, tensor: t.name });
  }
  return rows;
}

/**
 * A fused [n_expert, R, cols] parameter as one stacked GGUF tensor ne = [cols, rows, n_expert]: for the
 * down projection (half undefined) the parameter itself; for gate_up_proj, each expert's first (gate) or
 * second (up) `rows` rows. Streamed: a chunk stays within one expert, where the source rows are contiguous.
 */
export function fusedExperts(src: SourceCheckpoint, t: SourceTensor, half: number | undefined, ggufName: string, rows: number): OutputTensor {
  const [n, r, cols] = t.shape as [number, number, number];
  const srcRow = (row: number): number => Math.floor(row / rows) * r + (half ?? 0) * rows + (row % rows);
  return {
    name: ggufName, ne: [cols, rows, n], sources: [t.name], encoding: t.encoding, dtype: t.dtype, rowBoundary: rows,
    read: async (row0, nRows) => {
      const out = new Float32Array(nRows * cols);
      for (let done = 0; done < nRows; ) {
        const k = Math.min(nRows - done, rows - ((row0 + done) % rows));
        out.set(await src.readRows(t.name, srcRow(row0 + done), k), done * cols);
        done += k;
      }
      return out;
    },
    readRaw: async (row0, nRows, into) => {
      if ((row0 % rows) + nRows > rows) return undefined;
      return src.readRawRows(t.name, srcRow(row0), nRows, into);
    },
  };
}

/**
 * Every layer of a MoE family has its router and every projection's experts (llama.cpp loads
 * ffn_gate_inp and the three _exps tensors as required in every layer of these architectures).
 */
function checkExpertLayers(src: SourceCheckpoint, e: ExpertSpec, h: TextHparams, cfg: HfConfig, prefix: string, groups: ReadonlyMap<string, ExpertGroup>): void {
  const n = h.nExpert;
  if (n === undefined) {
    if (groups.size === 0) {
      // a dense checkpoint of a family that may have experts (Llama vs Mixtral): its MLP is required instead
      for (let bid = 0; bid < h.nLayer; bid++) {
        for (const part of e.denseRequired ?? []) {
          const name = `${prefix}model.layers.${bid}.${part}`;
          if (!src.get(name)) throw new GgufyError("E_MISSING_TENSOR", "absent from the checkpoint; llama.cpp needs it to load the model", { file: src.dir, tensor: name });
        }
      }
      return;
    }
    throw new GgufyError("E_CONFIG", "the checkpoint has expert weights but config.json names no expert count (num_local_experts / num_experts)", { file: cfg.file });
  }
  for (let bid = 0; bid < h.nLayer; bid++) {
    const l = `${prefix}model.layers.${bid}.`;
    if (e.router !== undefined) {
      const names = (typeof e.router === "string" ? [e.router] : e.router).map((x) => l + x);
      const r = names.map((x) => src.get(x)).find((x) => x !== undefined);
      if (!r) throw new GgufyError("E_MISSING_TENSOR", `absent from the checkpoint; config.json says ${n} experts, so llama.cpp needs the router of every layer`, { file: src.dir, tensor: names.join(" / ") });
      if (r.shape.length !== 2 || r.shape[0] !== n || r.shape[1] !== h.nEmbd) {
        throw new GgufyError("E_CONFIG", `router shape is [${r.shape.join(", ")}] but config.json implies [${n}, ${h.nEmbd}] (expert count × hidden_size)`, { file: cfg.file, tensor: r.name });
      }
    }
    for (const proj of Object.keys(e.to)) {
      if (!groups.has(`${bid}/${proj}`)) throw new GgufyError("E_MISSING_TENSOR", `layer ${bid} has no ${proj} experts (config.json says ${n} experts)`, { file: src.dir, tensor: `${l}…experts.0.${proj}.weight` });
    }
  }
}

/** The experts 0 … n−1 of one (layer, projection): all present, none beyond, all the same (config-given) shape. */
function expertParts(src: SourceCheckpoint, e: ExpertSpec, h: TextHparams, cfg: HfConfig, prefix: string, g: ExpertGroup): SourceTensor[] {
  const n = h.nExpert!;
  const beyond = [...g.parts.keys()].filter((x) => x >= n).sort((a, b) => a - b);
  if (beyond.length) {
    throw new GgufyError("E_CONFIG", `layer ${g.bid} has ${g.proj} experts up to ${beyond.at(-1)} but config.json says ${n} experts`, { file: cfg.file, tensor: g.parts.get(beyond.at(-1)!)!.name });
  }
  const want = e.shape?.(g.proj, h, cfg);
  const parts: SourceTensor[] = [];
  for (let x = 0; x < n; x++) {
    const p = g.parts.get(x);
    if (!p) throw new GgufyError("E_MISSING_TENSOR", `layer ${g.bid} has no expert ${x} for ${g.proj} (config.json says ${n} experts)`, { file: src.dir, tensor: `${prefix}model.layers.${g.bid}` });
    const first = parts[0];
    if (p.shape.length !== 2 || (first && (p.shape[0] !== first.shape[0] || p.shape[1] !== first.shape[1]))) {
      throw new GgufyError("E_CONFIG", `expert ${x} has shape [${p.shape.join(", ")}], unlike expert 0's [${(first ?? p).shape.join(", ")}]; experts stack into one tensor only when they are the same shape`, { file: src.dir, tensor: p.name });
    }
    if (want && (p.shape[0] !== want.rows || p.shape[1] !== want.cols)) {
      throw new GgufyError("E_CONFIG", `shape is [${p.shape.join(", ")}] but config.json implies [${want.rows}, ${want.cols}] (${want.why})`, { file: cfg.file, tensor: p.name });
    }
    parts.push(p);
  }
  return parts;
}

/** The base's rewrite: Q/K un-permutation for Llama-family models, else pass-through. */
export function baseTransform(c: TensorCtx, spec: DecoderSpec): OutputTensor {
  if (spec.permuteQK) {
    if (c.template === TENSOR.ATTN_Q) return permutedRows(c.src, c.t, c.gguf, c.h.nHead);
    if (c.template === TENSOR.ATTN_K) return permutedRows(c.src, c.t, c.gguf, c.h.nHeadKv);
  }
  return passThrough(c.src, c.t, c.gguf);
}

const PLACEHOLDER = Symbol("expert stack");
function stackPlaceholder(key: string): OutputTensor {
  return { [PLACEHOLDER]: key, name: "", ne: [], sources: [], encoding: "", dtype: "f32", read: () => Promise.reject(new Error("placeholder")) } as unknown as OutputTensor;
}
function placeholderKey(o: OutputTensor): string | undefined {
  return (o as unknown as Record<symbol, string | undefined>)[PLACEHOLDER];
}

/**
 * Experts [n][rows, cols] as one ggml tensor ne = [cols, rows, n] (torch.stack(dim=0)), streamed:
 * row r of the stack is row r mod rows of expert ⌊r / rows⌋. Chunks never cross an expert
 * (rowBoundary), so a chunk's raw rows are one source tensor's and decode in the workers.
 */
export function stackedExperts(src: SourceCheckpoint, parts: readonly SourceTensor[], ggufName: string): OutputTensor {
  const [rows, cols] = parts[0]!.shape as [number, number];
  const dtype = parts.every((p) => p.dtype === parts[0]!.dtype) ? parts[0]!.dtype : "f32";
  const split = (row0: number): [SourceTensor, number] => [parts[Math.floor(row0 / rows)]!, row0 % rows];
  return {
    name: ggufName, ne: [cols, rows, parts.length], sources: parts.map((p) => p.name),
    encoding: parts[0]!.encoding, dtype, rowBoundary: rows,
    read: async (row0, nRows) => {
      const out = new Float32Array(nRows * cols);
      for (let done = 0; done < nRows; ) {
        const [p, r] = split(row0 + done);
        const n = Math.min(nRows - done, rows - r);
        out.set(await src.readRows(p.name, r, n), done * cols);
        done += n;
      }
      return out;
    },
    readRaw: async (row0, nRows, into) => {
      const [p, r] = split(row0);
      if (r + nRows > rows) return undefined;
      return src.readRawRows(p.name, r, nRows, into);
    },
  };
}

/** A `ModelConverter` for a family. */
export function textDecoder(spec: DecoderSpec): ModelConverter & { spec: DecoderSpec } {
  return {
    id: spec.id,
    hfArchitectures: spec.hfArchitectures,
    spec,
    async build(ctx: ConvertContext): Promise<ModelFile[]> {
      return [await buildTextDecoder(ctx, spec)];
    },
  };
}

export { constTensor };
