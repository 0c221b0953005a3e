/**
 * compressed-tensors checkpoints (`quant_method: "compressed-tensors"`, llm-compressor / vLLM):
 * `config_groups` each name `targets` ("Linear", a module name, or `re:<regex>` matched from the start
 * of the module name, as compressed-tensors' `is_match`) and `weights` quantization args; `ignore` lists
 * modules left unquantized (passed through as plain tensors). Several groups are accepted when no module
 * is targeted by two of them. Formats (the group's `format`, else the config's):
 *  - `pack-quantized` (int4/int8, strategy group or channel): `<m>.weight_packed` I32 [out, ⌈in/(32/bits)⌉]
 *    packed along dim 1 (value j in bits (j mod 32/bits)·bits of word ⌊j·bits/32⌋), `<m>.weight_shape`
 *    [out, in], `<m>.weight_scale` [out, ⌈in/group⌉], optional `<m>.weight_zero_point` I32
 *    [⌈out/(32/bits)⌉, ⌈in/group⌉] packed along dim 0. w = f32(scale · (q − zero)), zero = 2^(bits−1)
 *    without a zero point (llama.cpp conversion/base.py `dequant_packed`).
 *  - `float-quantized` (FP8 E4M3, strategy tensor / channel / block with `block_structure`):
 *    `<m>.weight` F8 with `<m>.weight_scale`: the FP8 scheme's decoder (fp8.ts), w = f32(fp8 · scale)
 *    (base.py `dequant_simple`).
 *  - `int-quantized` / `naive-quantized` (int8, strategy tensor / channel): `<m>.weight` I8 with
 *    `<m>.weight_scale` (and an optional `<m>.weight_zero_point` of the same shape): w = f32(scale · (q − zero)).
 * The integer products are exact in float32 (≤ 9 + 11 significant bits for float16/bfloat16 scales).
 * Activation quantization (input_activations, `input_scale` …) is dropped: only weights matter to a GGUF.
 */
import path from "node:path";
import { GgufyError, brief } from "../../errors.js";
import type { SafetensorsCheckpoint, StTensorInfo } from "../../formats/safetensors/index.js";
import type { DecoderFactory, EncodedRows, ModuleInfo, SchemeDecoder, SourceTensor, TensorDecoder } from "../types.js";
import { quantMethodOf } from "../checkpoint.js";
import { ConfigReader, FLOAT_STORED, int32View, isObject, moduleError, widenFloats, type Json } from "./common.js";
import { FP8_DTYPE, FP8_DECODER, readFp8Encoded, scaleLayout, describeFp8, ACTIVATION_SCALE_SUFFIXES, type Fp8Module } from "./fp8.js";

const S = "compressed-tensors";
export const CT_FORMATS = ["pack-quantized", "float-quantized", "int-quantized", "naive-quantized"] as const;
type CtFormat = (typeof CT_FORMATS)[number];

interface WeightArgs {
  group: string;
  format: CtFormat;
  bits: number;
  type: "int" | "float";
  strategy: string;
  groupSize?: number;
  block?: number[];
  symmetric: boolean;
}

interface PackMeta {
  bits: number;
  inFeatures: number;
  words: number;
  n: number;
  groupSize: number;
  groups: number;
  /** [n, groups] */
  scales: Float32Array;
  zeros: Int32Array;
}

export function decodePackRows(w: Int32Array, m: PackMeta, out: Float32Array = new Float32Array(m.n * m.inFeatures)): Float32Array {
  const { bits, inFeatures: K, words: W, n, groupSize, groups, scales, zeros } = m;
  const pf = 32 / bits;
  const mask = (1 << bits) - 1;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < K; k++) {
      const q = (w[r * W + Math.floor(k / pf)]! >>> ((k % pf) * bits)) & mask;
      const g = r * groups + Math.floor(k / groupSize);
      out[r * K + k] = Math.fround(scales[g]! * (q - zeros[g]!));
    }
  }
  return out;
}

interface Int8Meta {
  inFeatures: number;
  n: number;
  /** one per row (channel) or one (tensor) */
  scales: Float32Array;
  zeros: Int32Array;
}

export function decodeInt8Rows(q: Int8Array, m: Int8Meta, out: Float32Array = new Float32Array(q.length)): Float32Array {
  const K = m.inFeatures;
  for (let r = 0; r < m.n; r++) {
    const i = m.scales.length === 1 ? 0 : r;
    const s = m.scales[i]!;
    const z = m.zeros[i]!;
    for (let k = 0; k < K; k++) out[r * K + k] = Math.fround(s * (q[r * K + k]! - z));
  }
  return out;
}

export const CT_PACK_DECODER: SchemeDecoder = {
  id: "ct-pack",
  decode: (enc, out) => decodePackRows(int32View(enc.bytes), enc.meta as PackMeta, out ? out.subarray(0, enc.count) : undefined),
};
export const CT_INT8_DECODER: SchemeDecoder = {
  id: "ct-int8",
  decode: (enc, out) => decodeInt8Rows(new Int8Array(enc.bytes.buffer, enc.bytes.byteOffset, enc.bytes.byteLength), enc.meta as Int8Meta, out ? out.subarray(0, enc.count) : undefined),
};

type CtModule =
  | { kind: "pack"; module: string; weight: string; args: WeightArgs; packed: StTensorInfo; scale: StTensorInfo; zero?: StTensorInfo; shapeKey: string; rows: number; cols: number; words: number; groups: number; groupSize: number }
  | { kind: "fp8"; module: string; weight: string; args: WeightArgs; fp8: Fp8Module; rows: number; cols: number }
  | { kind: "int8"; module: string; weight: string; args: WeightArgs; q: StTensorInfo; scale: StTensorInfo; zero?: StTensorInfo; rows: number; cols: number };

/** compressed-tensors' is_match for a module we only know by name (every quantized module is a Linear). */
function matches(module: string, target: string): boolean {
  if (target.startsWith("re:")) {
    try {
      return new RegExp(`^(?:${target.slice(3)})`).test(module);
    } catch {
      return false;
    }
  }
  return target === "Linear" || target === module;
}

async function intScalars(st: SafetensorsCheckpoint, info: StTensorInfo): Promise<number[]> {
  const b = await st.read(info.name);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: number[] = [];
  const size = info.dtype === "I64" ? 8 : info.dtype === "I32" ? 4 : info.dtype === "I8" ? 1 : 0;
  if (!size) throw new GgufyError("E_QUANT", `${S}: '${info.name}' is ${info.dtype}: expected an integer tensor`, { file: info.file, tensor: info.name });
  for (let i = 0; i < b.byteLength / size; i++) out.push(size === 8 ? Number(dv.getBigInt64(i * 8, true)) : size === 4 ? dv.getInt32(i * 4, true) : dv.getInt8(i));
  return out;
}

function readArgs(name: string, g: Json, topFormat: string | undefined, file: string): WeightArgs {
  const what = `quantization_config.config_groups.${name}`;
  const gc = new ConfigReader(g, file, what);
  const fmt = gc.str("format") ?? topFormat;
  if (!fmt || !(CT_FORMATS as readonly string[]).includes(fmt)) throw new GgufyError("E_UNSUPPORTED_QUANT", `${what} format is ${brief(fmt)}: compressed-tensors formats ${CT_FORMATS.join(", ")} are supported`, { file });
  const w = gc.object("weights");
  if (!w) throw new GgufyError("E_CONFIG", `${what}.weights is missing`, { file });
  const c = new ConfigReader(w, file, `${what}.weights`);
  const bits = c.int("num_bits");
  const type = c.str("type", "int")!;
  const strategy = c.str("strategy", "tensor")!;
  if (type !== "int" && type !== "float") throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}.weights.type is ${brief(type)}: int or float`, { file });
  const actorder = w["actorder"];
  if (actorder !== undefined && actorder !== null && actorder !== false) throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}.weights.actorder is ${brief(actorder)}: activation-ordered compressed-tensors weights are not supported`, { file });
  const ok =
    fmt === "pack-quantized" ? type === "int" && (bits === 4 || bits === 8) && (strategy === "group" || strategy === "channel")
    : fmt === "float-quantized" ? type === "float" && bits === 8 && ["tensor", "channel", "block"].includes(strategy)
    : type === "int" && bits === 8 && (strategy === "tensor" || strategy === "channel");
  if (!ok) throw new GgufyError("E_UNSUPPORTED_QUANT", `${what}: ${fmt} with ${type} ${bits}-bit ${strategy} weights is not supported (pack-quantized: int 4/8-bit group/channel; float-quantized: float 8-bit tensor/channel/block; int-/naive-quantized: int 8-bit tensor/channel)`, { file });
  const block = c.ints("block_structure");
  if (strategy === "block" && (!block || block.length !== 2)) throw new GgufyError("E_CONFIG", `${what}.weights.block_structure is ${brief(w["block_structure"])}: expected [rows, columns] for the block strategy`, { file });
  const groupSize = strategy === "group" ? c.int("group_size") : undefined;
  if (groupSize !== undefined && groupSize <= 0) throw new GgufyError("E_CONFIG", `${what}.weights.group_size is ${groupSize}: expected a positive integer`, { file });
  return { group: name, format: fmt as CtFormat, bits, type, strategy, ...(groupSize !== undefined ? { groupSize } : {}), ...(block ? { block } : {}), symmetric: c.bool("symmetric", true) };
}

async function readPackEncoded(st: SafetensorsCheckpoint, m: Extract<CtModule, { kind: "pack" }>, r0: number, n: number): Promise<EncodedRows> {
  const bytes = await st.read(m.packed.name, r0 * m.words * 4, n * m.words * 4);
  const item = m.scale.dtype === "F32" ? 4 : 2;
  const scales = widenFloats(await st.read(m.scale.name, r0 * m.groups * item, n * m.groups * item), m.scale.dtype);
  const zeros = new Int32Array(n * m.groups);
  const bits = m.args.bits;
  if (m.zero) {
    // packed along dim 0: row r's zero in group g is value r mod pf of word row ⌊r / pf⌋
    const pf = 32 / bits;
    const z0 = Math.floor(r0 / pf);
    const z1 = Math.floor((r0 + n - 1) / pf) + 1;
    const zw = int32View(await st.read(m.zero.name, z0 * m.groups * 4, (z1 - z0) * m.groups * 4));
    for (let r = 0; r < n; r++) {
      const row = r0 + r;
      for (let g = 0; g < m.groups; g++) zeros[r * m.groups + g] = (zw[(Math.floor(row / pf) - z0) * m.groups + g]! >>> ((row % pf) * bits)) & ((1 << bits) - 1);
    }
  } else zeros.fill(1 << (bits - 1));
  const meta: PackMeta = { bits, inFeatures: m.cols, words: m.words, n, groupSize: m.groupSize, groups: m.groups, scales, zeros };
  return { scheme: CT_PACK_DECODER.id, count: n * m.cols, bytes, meta, transfer: [scales.buffer as ArrayBuffer, zeros.buffer as ArrayBuffer] };
}

async function readInt8Encoded(st: SafetensorsCheckpoint, m: Extract<CtModule, { kind: "int8" }>, r0: number, n: number): Promise<EncodedRows> {
  const bytes = await st.read(m.q.name, r0 * m.cols, n * m.cols);
  const perTensor = m.args.strategy === "tensor";
  const item = m.scale.dtype === "F32" ? 4 : 2;
  const scales = widenFloats(await st.read(m.scale.name, perTensor ? 0 : r0 * item, (perTensor ? 1 : n) * item), m.scale.dtype);
  let zeros = new Int32Array(scales.length);
  if (m.zero) {
    const all = await intScalars(st, m.zero);
    zeros = Int32Array.from(perTensor ? all.slice(0, 1) : all.slice(r0, r0 + n));
  }
  const meta: Int8Meta = { inFeatures: m.cols, n, scales, zeros };
  return { scheme: CT_INT8_DECODER.id, count: n * m.cols, bytes, meta, transfer: [scales.buffer as ArrayBuffer, zeros.buffer as ArrayBuffer] };
}

const open = async (st: SafetensorsCheckpoint, config: Json, dir: string): Promise<TensorDecoder | undefined> => {
  if (quantMethodOf(config) !== "compressed-tensors") return undefined;
  const file = path.join(dir, "config.json");
  const qc = config["quantization_config"] as Json;
  const c = new ConfigReader(qc, file, "quantization_config");
  const top = c.str("format");
  const status = c.str("quantization_status");
  if (status !== undefined && status !== "compressed" && status !== "frozen") throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.quantization_status is ${brief(status)}: only compressed checkpoints are stored quantized`, { file });
  const groupsCfg = c.object("config_groups");
  if (!groupsCfg || Object.keys(groupsCfg).length === 0) throw new GgufyError("E_CONFIG", "quantization_config.config_groups is missing or empty", { file });
  const groups: { name: string; targets: string[]; args: WeightArgs }[] = [];
  for (const [name, g] of Object.entries(groupsCfg)) {
    if (!isObject(g)) throw new GgufyError("E_CONFIG", `quantization_config.config_groups.${name} is not an object`, { file });
    const targets = new ConfigReader(g, file, `quantization_config.config_groups.${name}`).strings("targets");
    groups.push({ name, targets, args: readArgs(name, g, top, file) });
  }
  const ignore = c.strings("ignore");
  // the quantized modules, by their keys
  const candidates = new Map<string, StTensorInfo>();
  for (const [name, info] of st.tensors) {
    if (name.endsWith(".weight_packed")) candidates.set(name.slice(0, -".weight_packed".length), info);
    else if (name.endsWith(".weight") && (FP8_DTYPE[info.dtype] || info.dtype === "I8")) candidates.set(name.slice(0, -".weight".length), info);
  }
  const mods = new Map<string, CtModule>();
  for (const mod of [...candidates.keys()].sort()) {
    const info = candidates.get(mod)!;
    const fail = (d: string, t = info.name): never => {
      throw moduleError(S, mod, d, info.file, t);
    };
    if (ignore.some((t) => matches(mod, t) && t !== "Linear")) fail(`listed in ignore but stored quantized ('${info.name}')`);
    const hit = groups.filter((g) => g.targets.some((t) => matches(mod, t)));
    if (hit.length === 0) fail(`stored quantized ('${info.name}') but no config_groups target covers it`);
    if (hit.length > 1) fail(`targeted by config_groups ${hit.map((g) => `'${g.name}'`).join(" and ")}: their targets overlap`);
    const args = hit[0]!.args;
    const weight = `${mod}.weight`;
    const scaleKey = `${mod}.weight_scale`;
    const scale = st.get(scaleKey);
    if (!scale) return fail(`the scale '${scaleKey}' is missing`, scaleKey);
    if (!FLOAT_STORED.has(scale.dtype)) fail(`'${scaleKey}' is ${scale.dtype}: expected F32, BF16 or F16`, scaleKey);
    const zero = st.get(`${mod}.weight_zero_point`);
    if (args.format === "pack-quantized") {
      if (!info.name.endsWith("_packed")) fail(`group '${args.group}' is pack-quantized but the weight is '${info.name}' (${info.dtype})`);
      const shapeKey = `${mod}.weight_shape`;
      const si = st.get(shapeKey);
      if (!si) return fail(`'${shapeKey}' is missing`, shapeKey);
      const shape = await intScalars(st, si);
      if (shape.length !== 2 || !shape.every((d) => d > 0)) fail(`'${shapeKey}' is ${brief(shape)}: expected [out, in]`, shapeKey);
      const [rows, cols] = shape as [number, number];
      const pf = 32 / args.bits;
      const words = Math.ceil(cols / pf);
      if (info.dtype !== "I32" || info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== words) fail(`'${info.name}' is ${info.dtype} ${brief(info.shape)} but weight_shape [${rows}, ${cols}] at ${args.bits} bits needs I32 [${rows}, ${words}]`);
      const groupSize = args.strategy === "group" ? args.groupSize! : cols;
      const ng = Math.ceil(cols / groupSize);
      if (scale.shape.length !== 2 || scale.shape[0] !== rows || scale.shape[1] !== ng) fail(`'${scaleKey}' has shape ${brief(scale.shape)} but [${rows}, ${cols}] with ${args.strategy === "group" ? `group_size ${groupSize}` : "channel strategy"} needs [${rows}, ${ng}]`, scaleKey);
      if (zero) {
        const zr = Math.ceil(rows / pf);
        if (zero.dtype !== "I32" || zero.shape.length !== 2 || zero.shape[0] !== zr || zero.shape[1] !== ng) fail(`'${zero.name}' is ${zero.dtype} ${brief(zero.shape)}: expected I32 [${zr}, ${ng}] (packed along the output dim)`, zero.name);
      } else if (!args.symmetric) fail(`group '${args.group}' is asymmetric but '${mod}.weight_zero_point' is missing`, `${mod}.weight_zero_point`);
      mods.set(weight, { kind: "pack", module: mod, weight, args, packed: info, scale, ...(zero ? { zero } : {}), shapeKey, rows, cols, words, groups: ng, groupSize });
      continue;
    }
    if (info.shape.length !== 2) fail(`'${info.name}' is ${info.dtype} ${brief(info.shape)}: expected [out, in]`);
    const [rows, cols] = info.shape as [number, number];
    const layout = scaleLayout(scale.shape, rows, cols, args.block);
    if (!layout || layout.kind !== args.strategy) fail(`'${scaleKey}' has shape ${brief(scale.shape)}, which does not match the ${args.strategy} strategy${args.block ? ` ${brief(args.block)}` : ""} for [${rows}, ${cols}]`, scaleKey);
    if (args.format === "float-quantized") {
      if (!FP8_DTYPE[info.dtype]) fail(`group '${args.group}' is float-quantized but '${info.name}' is ${info.dtype}`);
      if (zero) fail(`float-quantized weights with a zero point ('${zero.name}') are not supported`, zero.name);
      mods.set(weight, { kind: "fp8", module: mod, weight, args, fp8: { module: mod, weight: info, scale, fmt: FP8_DTYPE[info.dtype]!, rows, cols, layout: layout! }, rows, cols });
    } else {
      if (info.dtype !== "I8") fail(`group '${args.group}' is ${args.format} but '${info.name}' is ${info.dtype}, expected I8`);
      if (zero && (zero.shape.reduce((a, b) => a * b, 1) !== (args.strategy === "tensor" ? 1 : rows))) fail(`'${zero.name}' has shape ${brief(zero.shape)}, not that of the scale`, zero.name);
      mods.set(weight, { kind: "int8", module: mod, weight, args, q: info, scale, ...(zero ? { zero } : {}), rows, cols });
    }
  }
  if (mods.size === 0) throw new GgufyError("E_UNSUPPORTED_QUANT", `quant_method is 'compressed-tensors' but no module is stored quantized ('<module>.weight_packed', or an F8/I8 '<module>.weight' with '.weight_scale')`, { file });
  const describe = (m: CtModule): string => {
    const a = m.args;
    if (m.kind === "fp8") return `compressed-tensors ${describeFp8(m.fp8)}`;
    const gs = m.kind === "pack" && a.strategy === "group" ? ` g${a.groupSize}` : ` per-${a.strategy}`;
    return `compressed-tensors ${a.format} int${a.bits}${gs} ${m.zero ? "asym" : "sym"} (${m.scale.dtype.toLowerCase()} scales)`;
  };
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight, shape: [m.rows, m.cols], dtype: "f32", encoding: describe(m), rowLength: m.cols, rows: m.rows }));
  const consumed = new Set<string>();
  for (const m of mods.values()) {
    if (m.kind === "pack") for (const k of [m.packed.name, m.scale.name, m.shapeKey, ...(m.zero ? [m.zero.name] : [])]) consumed.add(k);
    else if (m.kind === "fp8") consumed.add(m.fp8.scale.name);
    else for (const k of [m.scale.name, ...(m.zero ? [m.zero.name] : [])]) consumed.add(k);
  }
  for (const name of st.tensors.keys()) if (ACTIVATION_SCALE_SUFFIXES.some((s) => name.endsWith(s))) consumed.add(name);
  const read = (name: string, r0: number, n: number): Promise<EncodedRows> => {
    const m = mods.get(name);
    if (!m) throw new Error(`${S}: ${name} is not a quantized module`);
    return m.kind === "pack" ? readPackEncoded(st, m, r0, n) : m.kind === "fp8" ? readFp8Encoded(st, m.fp8, r0, n, S) : readInt8Encoded(st, m, r0, n);
  };
  const dec = (e: EncodedRows): Float32Array => (e.scheme === CT_PACK_DECODER.id ? CT_PACK_DECODER : e.scheme === CT_INT8_DECODER.id ? CT_INT8_DECODER : FP8_DECODER).decode(e);
  return {
    scheme: S,
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readEncoded: read,
    readRows: async (name, r0, n) => dec(await read(name, r0, n)),
    modules: function* (): Iterable<ModuleInfo> {
      for (const m of mods.values()) {
        const a = m.args;
        yield { tensor: m.weight, scheme: S, bits: a.bits, ...(a.groupSize !== undefined ? { groupSize: a.groupSize } : {}), ...(a.block ? { block: a.block } : {}), actOrder: false, zeroPoints: "zero" in m && m.zero ? "stored (asym)" : "symmetric", detail: `${a.format} ${a.strategy} (config group '${a.group}')` };
      }
    },
  };
};

export const compressedTensorsDecoder: DecoderFactory = Object.assign(open, { methods: ["compressed-tensors"] as const });
