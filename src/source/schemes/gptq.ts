/**
 * GPTQ checkpoints (`quant_method: "gptq"` in config.json's quantization_config, or AutoGPTQ's
 * quantize_config.json): per Linear `<m>.qweight`, `<m>.qzeros`, `<m>.scales`, `<m>.g_idx` become the
 * logical `<m>.weight` [out, in].
 *
 * Layout (AutoGPTQ `qlinear_cuda_old.QuantLinear.pack`, GPTQModel `nn_modules/qlinear/__init__.py`):
 *  - `qweight` I32 [in·bits/32, out]: along the input dim, value k of column o is bits [k·bits, (k+1)·bits) of
 *    the little-endian bit stream of that column's 32-bit words. For 2/4/8 bits that is word k·bits/32 shifted
 *    by (k·bits) mod 32; 3-bit packs 32 values in 3 words, values 10 and 21 straddling word boundaries (the
 *    pack loop's `intweight[i] << 30` / `(intweight[i] >> 2) & 1` steps).
 *  - `qzeros` I32 [groups, out·bits/32]: the same stream along the output dim.
 *  - `scales` F16 (or BF16/F32) [groups, out]; `g_idx` I32 [in], the group of each input (a permutation of
 *    the groups with `desc_act`; without it ⌊k / group_size⌋). groups = 1 for group_size −1, else ⌈in / group_size⌉.
 *  - `checkpoint_format` (or GPTQModel's `format`) "gptq": the stored zero is z − 1 (AutoGPTQ's historic
 *    off-by-one), so zero = stored + 1; "gptq_v2": zero = stored.
 *
 * Value (llama.cpp conversion/base.py `dequant_gptq`, after GPTQModel `dequantize_weight`):
 *   w[o][k] = float32(scales[g_idx[k]][o]) · float32(q[k][o] − zero[g_idx[k]][o])
 * computed in float32. The integer difference (|·| ≤ 2^8) times a float16/bfloat16 scale needs at most
 * 9 + 11 significant bits, so the float32 product is exact and the order of operations cannot matter;
 * the decoded dtype is therefore f32 (the exact values need it).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { GgufyError, brief } from "../../errors.js";
import type { SafetensorsCheckpoint, StTensorInfo } from "../../formats/safetensors/index.js";
import type { DecoderFactory, EncodedRows, ModuleInfo, SchemeDecoder, SourceTensor, TensorDecoder } from "../types.js";
import { quantMethodOf } from "../checkpoint.js";
import { ConfigReader, FLOAT_STORED, int32View, isObject, isSkipped, moduleError, readColumns, unpackStream, widenFloats, type Json } from "./common.js";

export const GPTQ_BITS = [2, 3, 4, 8] as const;
export const GPTQ_FORMATS = ["gptq", "gptq_v2"] as const;

export interface GptqConfig {
  bits: number;
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  format: "gptq" | "gptq_v2";
  skip: string[];
  file: string;
}

/** Read and validate a GPTQ quantization config (quantization_config or quantize_config.json). */
export function readGptqConfig(obj: Json, file: string, what = "quantization_config"): GptqConfig {
  const c = new ConfigReader(obj, file, what);
  const bits = c.int("bits");
  if (!(GPTQ_BITS as readonly number[]).includes(bits)) throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}.bits is ${bits}: GPTQ bits ${GPTQ_BITS.join(", ")} are supported`, { file });
  const groupSize = c.int("group_size", -1);
  if (groupSize !== -1 && groupSize <= 0) throw new GgufyError("E_CONFIG", `${what}.group_size is ${groupSize}: expected -1 or a positive integer`, { file });
  const fmt = (c.str("checkpoint_format") ?? c.str("format") ?? "gptq").toLowerCase();
  if (!(GPTQ_FORMATS as readonly string[]).includes(fmt)) throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}.checkpoint_format is '${fmt.slice(0, 40)}': GPTQ formats ${GPTQ_FORMATS.join(", ")} are supported`, { file });
  const pack = c.str("pack_dtype");
  if (pack !== undefined && pack !== "int32" && pack !== "torch.int32") throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}.pack_dtype is ${brief(pack)}: only int32 packing is supported`, { file });
  return { bits, groupSize, descAct: c.bool("desc_act", false), sym: c.bool("sym", true), format: fmt as GptqConfig["format"], skip: c.strings("modules_to_not_convert"), file };
}

export interface GptqModule {
  readonly module: string;
  readonly weight: string;
  readonly qweight: StTensorInfo;
  readonly qzeros: StTensorInfo;
  readonly scales: StTensorInfo;
  readonly gIdxKey?: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly groups: number;
  readonly bits: number;
  /** 1 for checkpoint_format gptq (stored zero = z − 1), 0 for gptq_v2 */
  readonly zeroOffset: number;
  readonly gIdx: Int32Array;
  /** g_idx is not ⌊k / group_size⌋ */
  readonly actOrder: boolean;
}

/** What the worker needs to decode output rows [r0, r0 + n): qweight columns [P, n] travel as bytes. */
interface GptqMeta {
  bits: number;
  inFeatures: number;
  n: number;
  /** [groups, n] float32 (exact widening) */
  scales: Float32Array;
  /** [groups, n] effective zeros (offset applied) */
  zeros: Int32Array;
  gIdx: Int32Array;
}

/**
 * Decode: qweight column block `qw` [P, n] (int32 words), scales/zeros [groups, n], g_idx [in] →
 * rows [n, in] of the logical weight, w = f32(scale · (q − zero)).
 */
export function decodeGptqColumns(qw: Int32Array, m: GptqMeta, out: Float32Array = new Float32Array(m.n * m.inFeatures)): Float32Array {
  const { bits, inFeatures: K, n, scales, zeros, gIdx } = m;
  const mask = (1 << bits) - 1;
  const G = scales.length / n;
  // this output row's scales and zeros, contiguous (act-order visits the groups in g_idx order)
  const sc = new Float32Array(G);
  const zr = new Int32Array(G);
  for (let c = 0; c < n; c++) {
    const o = c * K;
    for (let g = 0; g < G; g++) {
      sc[g] = scales[g * n + c]!;
      zr[g] = zeros[g * n + c]!;
    }
    if (32 % bits === 0) {
      // 2/4/8 bits: whole values per word
      const per = 32 / bits;
      for (let w = 0, k = 0; k < K; w++) {
        const v = qw[w * n + c]!;
        for (let j = 0; j < per && k < K; j++, k++) {
          const g = gIdx[k]!;
          out[o + k] = Math.fround(sc[g]! * (((v >>> (j * bits)) & mask) - zr[g]!));
        }
      }
      continue;
    }
    for (let k = 0; k < K; k++) {
      const bit = k * bits;
      const w = bit >>> 5;
      const s = bit & 31;
      let q = qw[w * n + c]! >>> s;
      if (s + bits > 32) q |= qw[(w + 1) * n + c]! << (32 - s);
      q &= mask;
      const g = gIdx[k]!;
      out[o + k] = Math.fround(sc[g]! * (q - zr[g]!));
    }
  }
  return out;
}

export const GPTQ_DECODER: SchemeDecoder = {
  id: "gptq",
  decode(enc, out) {
    const m = enc.meta as GptqMeta;
    return decodeGptqColumns(int32View(enc.bytes), m, out ? out.subarray(0, enc.count) : undefined);
  },
};

/** The GPTQ config of a checkpoint, validated once the checkpoint is known to hold GPTQ keys. */
async function loadConfig(st: SafetensorsCheckpoint, config: Json, dir: string): Promise<GptqConfig | undefined> {
  const method = quantMethodOf(config);
  const cfgFile = path.join(dir, "config.json");
  if (method === "gptq") {
    // keys first: a checkpoint of another kind under a gptq config is refused as such, not for a missing field
    if (![...st.tensors.keys()].some((k) => k.endsWith(".qweight") || k.endsWith(".qzeros"))) {
      throw new GgufyError("E_UNSUPPORTED_QUANT", `quant_method is 'gptq' but no module has GPTQ keys ('<module>.qweight', '.qzeros', '.scales'); this checkpoint is not a GPTQ one`, { file: cfgFile });
    }
    return readGptqConfig(config["quantization_config"] as Json, cfgFile);
  }
  if (method !== undefined || config["quantization_config"] !== undefined) return undefined;
  // AutoGPTQ checkpoints without quantization_config carry quantize_config.json
  const qf = path.join(dir, "quantize_config.json");
  let text: string;
  try {
    text = await readFile(qf, "utf8");
  } catch {
    return undefined;
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new GgufyError("E_CONFIG", `not valid JSON (${(e as Error).message})`, { file: qf });
  }
  if (!isObject(j)) throw new GgufyError("E_CONFIG", "is not a JSON object", { file: qf });
  const qm = j["quant_method"];
  if (qm !== undefined && qm !== "gptq") return undefined;
  return readGptqConfig(j, qf, "quantize_config");
}

/** Find, validate and describe every GPTQ module of a checkpoint (throws on any inconsistency). */
export async function detectGptq(st: SafetensorsCheckpoint, cfg: GptqConfig): Promise<Map<string, GptqModule>> {
  const S = "GPTQ";
  const bases = new Set<string>();
  for (const name of st.tensors.keys()) {
    for (const suf of [".qweight", ".qzeros", ".scales", ".g_idx"]) if (name.endsWith(suf)) bases.add(name.slice(0, -suf.length));
  }
  const mods = new Map<string, GptqModule>();
  const { bits } = cfg;
  for (const mod of [...bases].sort()) {
    const qwI = st.get(`${mod}.qweight`);
    const qzI = st.get(`${mod}.qzeros`);
    const scI = st.get(`${mod}.scales`);
    const giI = st.get(`${mod}.g_idx`);
    const fileOf = (qwI ?? qzI ?? scI ?? giI)!.file;
    const fail = (detail: string, tensor?: string): never => {
      throw moduleError(S, mod, detail, fileOf, tensor);
    };
    if (!qwI) {
      // a `.scales` alone may belong to something else (no qzeros/g_idx): only a GPTQ-looking group is refused
      if (qzI || giI) fail(`'${mod}.qweight' is missing`, `${mod}.qweight`);
      continue;
    }
    if (!scI) fail(`the scale '${mod}.scales' is missing`, `${mod}.scales`);
    if (!qzI) fail(`'${mod}.qzeros' is missing`, `${mod}.qzeros`);
    if (isSkipped(mod, cfg.skip)) fail(`listed in modules_to_not_convert but stored quantized ('${mod}.qweight')`, `${mod}.qweight`);
    if (qwI.dtype !== "I32" || qwI.shape.length !== 2) fail(`'${mod}.qweight' is ${qwI.dtype} ${brief(qwI.shape)}: expected I32 [in·bits/32, out]`, qwI.name);
    const [P, out] = qwI.shape as [number, number];
    if ((P * 32) % bits !== 0) fail(`'${mod}.qweight' has ${P} packed rows: ${P}·32 is not a multiple of ${bits} bits`, qwI.name);
    const K = (P * 32) / bits;
    const groups = cfg.groupSize === -1 ? 1 : Math.ceil(K / cfg.groupSize);
    const sc = scI!;
    if (!FLOAT_STORED.has(sc.dtype) || sc.shape.length !== 2 || sc.shape[0] !== groups || sc.shape[1] !== out) {
      fail(`'${mod}.scales' is ${sc.dtype} ${brief(sc.shape)} but qweight ${brief(qwI.shape)} (${bits}-bit: [out ${out}, in ${K}]) with group_size ${cfg.groupSize} needs a float [${groups}, ${out}]`, sc.name);
    }
    const qz = qzI!;
    const zWords = (out * bits) / 32;
    if (qz.dtype !== "I32" || qz.shape.length !== 2 || qz.shape[0] !== groups || qz.shape[1] !== zWords) {
      fail(`'${mod}.qzeros' is ${qz.dtype} ${brief(qz.shape)} but [out ${out}, in ${K}] at ${bits} bits with group_size ${cfg.groupSize} needs I32 [${groups}, ${Number.isInteger(zWords) ? zWords : `${out}·${bits}/32`}]`, qz.name);
    }
    let gIdx: Int32Array;
    let actOrder = false;
    if (giI) {
      if (giI.dtype !== "I32" || giI.shape.length !== 1 || giI.shape[0] !== K) fail(`'${mod}.g_idx' is ${giI.dtype} ${brief(giI.shape)}: expected I32 [${K}]`, giI.name);
      gIdx = int32View((await st.read(giI.name)).slice());
      for (let k = 0; k < K; k++) {
        const g = gIdx[k]!;
        if (g < 0 || g >= groups) fail(`g_idx[${k}] = ${g} is outside the ${groups} groups`, giI.name);
        if (cfg.groupSize !== -1 && g !== Math.floor(k / cfg.groupSize)) actOrder = true;
      }
    } else {
      if (cfg.descAct) fail(`desc_act is set but '${mod}.g_idx' is missing`, `${mod}.g_idx`);
      gIdx = new Int32Array(K);
      if (cfg.groupSize !== -1) for (let k = 0; k < K; k++) gIdx[k] = Math.floor(k / cfg.groupSize);
    }
    const weight = `${mod}.weight`;
    if (st.get(weight)) fail(`has both '${weight}' and '${mod}.qweight'`, weight);
    mods.set(weight, { module: mod, weight, qweight: qwI, qzeros: qz, scales: sc, ...(giI ? { gIdxKey: giI.name } : {}), inFeatures: K, outFeatures: out, groups, bits, zeroOffset: cfg.format === "gptq" ? 1 : 0, gIdx, actOrder });
  }
  return mods;
}

/** Read output rows [r0, r0 + n) of a module still packed (what the worker decodes). */
export async function readGptqEncoded(st: SafetensorsCheckpoint, m: GptqModule, r0: number, n: number): Promise<EncodedRows> {
  const qw = await readColumns(st, m.qweight, 4, r0, n);
  const scItem = m.scales.dtype === "F32" ? 4 : 2;
  const scales = widenFloats(await readColumns(st, m.scales, scItem, r0, n), m.scales.dtype);
  // zeros: the words of qzeros holding values [r0, r0 + n) of each group row
  const bit0 = r0 * m.bits;
  const w0 = bit0 >>> 5;
  const w1 = Math.ceil(((r0 + n) * m.bits) / 32);
  const zw = int32View(await readColumns(st, m.qzeros, 4, w0, w1 - w0));
  const zeros = new Int32Array(m.groups * n);
  const nw = w1 - w0;
  for (let g = 0; g < m.groups; g++) {
    unpackStream(zw, 1, g * nw, bit0 - w0 * 32, n, m.bits, zeros, g * n);
    if (m.zeroOffset) for (let c = 0; c < n; c++) zeros[g * n + c]! += m.zeroOffset;
  }
  const meta: GptqMeta = { bits: m.bits, inFeatures: m.inFeatures, n, scales, zeros, gIdx: m.gIdx };
  return { scheme: GPTQ_DECODER.id, count: n * m.inFeatures, bytes: qw, meta, transfer: [scales.buffer as ArrayBuffer, zeros.buffer as ArrayBuffer] };
}

export function describeGptq(m: GptqModule, cfg: GptqConfig): string {
  return `gptq ${m.bits}-bit ${cfg.groupSize === -1 ? "per-channel" : `g${cfg.groupSize}`}${m.actOrder ? " act-order" : ""} ${cfg.sym ? "sym" : "asym"} (${cfg.format}, ${m.scales.dtype.toLowerCase()} scales)`;
}

const open = async (st: SafetensorsCheckpoint, config: Json, dir: string): Promise<TensorDecoder | undefined> => {
  const cfg = await loadConfig(st, config, dir);
  if (!cfg) return undefined;
  const mods = await detectGptq(st, cfg);
  if (mods.size === 0) throw new GgufyError("E_UNSUPPORTED_QUANT", `quant_method is 'gptq' but no module has GPTQ keys ('<module>.qweight', '.qzeros', '.scales'); this checkpoint is not a GPTQ one`, { file: cfg.file });
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight, shape: [m.outFeatures, m.inFeatures], dtype: "f32", encoding: describeGptq(m, cfg), rowLength: m.inFeatures, rows: m.outFeatures }));
  const consumed = new Set<string>();
  for (const m of mods.values()) for (const k of [m.qweight.name, m.qzeros.name, m.scales.name, ...(m.gIdxKey ? [m.gIdxKey] : [])]) consumed.add(k);
  const get = (name: string): GptqModule => {
    const m = mods.get(name);
    if (!m) throw new Error(`gptq: ${name} is not a GPTQ module`);
    return m;
  };
  return {
    scheme: "gptq",
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readEncoded: (name, r0, n) => readGptqEncoded(st, get(name), r0, n),
    readRows: async (name, r0, n) => GPTQ_DECODER.decode(await readGptqEncoded(st, get(name), r0, n)),
    modules: function* (): Iterable<ModuleInfo> {
      for (const m of mods.values()) yield { tensor: m.weight, scheme: "gptq", bits: m.bits, groupSize: cfg.groupSize, actOrder: m.actOrder, zeroPoints: `stored (${cfg.sym ? "sym" : "asym"}, ${cfg.format === "gptq" ? "v1: stored + 1" : "v2"})`, detail: `${m.scales.dtype.toLowerCase()} scales` };
    },
  };
};

export const gptqDecoder: DecoderFactory = Object.assign(open, { methods: ["gptq"] as const });
