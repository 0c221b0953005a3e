/**
 * AWQ checkpoints (`quant_method: "awq"`, `version: "gemm"`, AutoAWQ's WQLinear_GEMM — the common
 * layout): per Linear `<m>.qweight` I32 [in, out/8], `<m>.qzeros` I32 [in/group, out/8], `<m>.scales`
 * F16 [in/group, out] become the logical `<m>.weight` [out, in].
 *
 * Packing (AutoAWQ awq/modules/linear/gemm.py `from_linear`, awq/utils/packing_utils.py): along the
 * output dim, 8 four-bit values per int32 in AWQ's order: nibble p (bits 4p … 4p+3) of word j holds
 * output column 8j + [0, 2, 4, 6, 1, 3, 5, 7][p]; so column 8j + i is nibble [0, 4, 1, 5, 2, 6, 3, 7][i]
 * (`AWQ_REVERSE_ORDER`). qzeros are packed the same way.
 *
 * Value (packing_utils.py `dequantize_gemm`: `(iweight − izeros) · scales`):
 *   w[o][k] = float32(scales[k / group][o] · (q[k][o] − zeros[k / group][o]))
 * We match the float32 product, not AutoAWQ's float16-rounded one: the product of a float16 scale and a
 * 5-bit integer needs at most 16 significant bits, so the float32 value is the exact product, and
 * AutoAWQ's float16 result is exactly that value rounded to nearest even — which is what `--outtype f16`
 * (or dequantize --dtype f16) then writes. Keeping the exact value loses nothing and lets every other
 * output type (Q4_K, Q8_0 …) start from the model's true weights, as for GPTQ.
 * `zero_point: false` and the GEMV / Marlin / IPEX layouts are refused by name.
 */
import path from "node:path";
import { GgufyError, brief } from "../../errors.js";
import type { SafetensorsCheckpoint, StTensorInfo } from "../../formats/safetensors/index.js";
import type { DecoderFactory, EncodedRows, ModuleInfo, SchemeDecoder, SourceTensor, TensorDecoder } from "../types.js";
import { quantMethodOf } from "../checkpoint.js";
import { ConfigReader, FLOAT_STORED, int32View, isSkipped, moduleError, readColumns, widenFloats, type Json } from "./common.js";

/** column 8j + i is nibble AWQ_REVERSE[i] of word j */
export const AWQ_REVERSE = [0, 4, 1, 5, 2, 6, 3, 7] as const;

interface AwqMeta {
  r0: number;
  /** first word column of the chunk and word columns per row */
  j0: number;
  nw: number;
  n: number;
  inFeatures: number;
  groupSize: number;
  /** [groups, n] */
  scales: Float32Array;
  zeros: Int32Array;
}

/** qweight word block `qw` [in, nw] → rows [n, in] of the logical weight. */
export function decodeAwqColumns(qw: Int32Array, m: AwqMeta, out: Float32Array = new Float32Array(m.n * m.inFeatures)): Float32Array {
  const { r0, j0, nw, n, inFeatures: K, groupSize, scales, zeros } = m;
  for (let c = 0; c < n; c++) {
    const o = r0 + c;
    const j = (o >> 3) - j0;
    const sh = 4 * AWQ_REVERSE[o & 7]!;
    const base = c * K;
    for (let k = 0; k < K; k++) {
      const q = (qw[k * nw + j]! >>> sh) & 15;
      const g = Math.floor(k / groupSize) * n + c;
      out[base + k] = Math.fround(scales[g]! * (q - zeros[g]!));
    }
  }
  return out;
}

export const AWQ_DECODER: SchemeDecoder = {
  id: "awq",
  decode(enc, out) {
    return decodeAwqColumns(int32View(enc.bytes), enc.meta as AwqMeta, out ? out.subarray(0, enc.count) : undefined);
  },
};

interface AwqModule {
  module: string;
  weight: string;
  qweight: StTensorInfo;
  qzeros: StTensorInfo;
  scales: StTensorInfo;
  inFeatures: number;
  outFeatures: number;
  groups: number;
}

async function readAwqEncoded(st: SafetensorsCheckpoint, m: AwqModule, gs: number, r0: number, n: number): Promise<EncodedRows> {
  const j0 = r0 >> 3;
  const j1 = (r0 + n + 7) >> 3;
  const nw = j1 - j0;
  const qw = await readColumns(st, m.qweight, 4, j0, nw);
  const item = m.scales.dtype === "F32" ? 4 : 2;
  const scales = widenFloats(await readColumns(st, m.scales, item, r0, n), m.scales.dtype);
  const zw = int32View(await readColumns(st, m.qzeros, 4, j0, nw));
  const zeros = new Int32Array(m.groups * n);
  for (let g = 0; g < m.groups; g++) {
    for (let c = 0; c < n; c++) {
      const o = r0 + c;
      zeros[g * n + c] = (zw[g * nw + (o >> 3) - j0]! >>> (4 * AWQ_REVERSE[o & 7]!)) & 15;
    }
  }
  const meta: AwqMeta = { r0, j0, nw, n, inFeatures: m.inFeatures, groupSize: gs, scales, zeros };
  return { scheme: AWQ_DECODER.id, count: n * m.inFeatures, bytes: qw, meta, transfer: [scales.buffer as ArrayBuffer, zeros.buffer as ArrayBuffer] };
}

const open = async (st: SafetensorsCheckpoint, config: Json, dir: string): Promise<TensorDecoder | undefined> => {
  if (quantMethodOf(config) !== "awq") return undefined;
  const file = path.join(dir, "config.json");
  const c = new ConfigReader(config["quantization_config"] as Json, file, "quantization_config");
  const bits = c.has("bits") ? c.int("bits") : c.int("w_bit", 4);
  if (bits !== 4) throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.bits is ${bits}: AWQ GEMM checkpoints are 4-bit`, { file });
  const gs = c.has("group_size") ? c.int("group_size") : c.int("q_group_size", 128);
  if (gs <= 0) throw new GgufyError("E_CONFIG", `quantization_config.group_size is ${gs}: expected a positive integer`, { file });
  const version = (c.str("version") ?? "gemm").toLowerCase();
  if (version !== "gemm") throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.version is '${version.slice(0, 30)}': the AWQ GEMM layout is supported (gemv, marlin, exllama, ipex are not)`, { file });
  if (!c.bool("zero_point", true)) throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.zero_point is false: AWQ GEMM checkpoints without zero points are not supported`, { file });
  const skip = c.strings("modules_to_not_convert");
  const mods = new Map<string, AwqModule>();
  const bases = new Set<string>();
  for (const name of st.tensors.keys()) for (const s of [".qweight", ".qzeros"]) if (name.endsWith(s)) bases.add(name.slice(0, -s.length));
  for (const mod of [...bases].sort()) {
    const qw = st.get(`${mod}.qweight`);
    const qz = st.get(`${mod}.qzeros`);
    const sc = st.get(`${mod}.scales`);
    const f = (qw ?? qz)!.file;
    const fail = (d: string, t?: string): never => {
      throw moduleError("AWQ", mod, d, f, t);
    };
    if (!qw) return fail(`'${mod}.qweight' is missing`, `${mod}.qweight`);
    if (!qz) return fail(`'${mod}.qzeros' is missing`, `${mod}.qzeros`);
    if (!sc) return fail(`the scale '${mod}.scales' is missing`, `${mod}.scales`);
    if (isSkipped(mod, skip)) fail(`listed in modules_to_not_convert but stored quantized ('${mod}.qweight')`, qw.name);
    if (qw.dtype !== "I32" || qw.shape.length !== 2) fail(`'${qw.name}' is ${qw.dtype} ${brief(qw.shape)}: expected I32 [in, out/8]`, qw.name);
    const [K, W] = qw.shape as [number, number];
    const out = W * 8;
    if (K % gs !== 0) fail(`in_features ${K} is not a multiple of group_size ${gs}`, qw.name);
    const groups = K / gs;
    if (!FLOAT_STORED.has(sc.dtype) || sc.shape.length !== 2 || sc.shape[0] !== groups || sc.shape[1] !== out) fail(`'${sc.name}' is ${sc.dtype} ${brief(sc.shape)} but qweight ${brief(qw.shape)} with group_size ${gs} needs a float [${groups}, ${out}]`, sc.name);
    if (qz.dtype !== "I32" || qz.shape.length !== 2 || qz.shape[0] !== groups || qz.shape[1] !== W) fail(`'${qz.name}' is ${qz.dtype} ${brief(qz.shape)} but needs I32 [${groups}, ${W}]`, qz.name);
    const weight = `${mod}.weight`;
    if (st.get(weight)) fail(`has both '${weight}' and '${mod}.qweight'`, weight);
    mods.set(weight, { module: mod, weight, qweight: qw, qzeros: qz, scales: sc, inFeatures: K, outFeatures: out, groups });
  }
  if (mods.size === 0) throw new GgufyError("E_UNSUPPORTED_QUANT", `quant_method is 'awq' but no module has AWQ keys ('<module>.qweight', '.qzeros', '.scales')`, { file });
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight, shape: [m.outFeatures, m.inFeatures], dtype: "f32", encoding: `awq 4-bit g${gs} gemm asym (${m.scales.dtype.toLowerCase()} scales)`, rowLength: m.inFeatures, rows: m.outFeatures }));
  const consumed = new Set<string>();
  for (const m of mods.values()) for (const k of [m.qweight.name, m.qzeros.name, m.scales.name]) consumed.add(k);
  const get = (name: string): AwqModule => mods.get(name) ?? (() => { throw new Error(`awq: ${name} is not an AWQ module`); })();
  return {
    scheme: "awq",
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readEncoded: (name, r0, n) => readAwqEncoded(st, get(name), gs, r0, n),
    readRows: async (name, r0, n) => AWQ_DECODER.decode(await readAwqEncoded(st, get(name), gs, r0, n)),
    modules: function* (): Iterable<ModuleInfo> {
      for (const m of mods.values()) yield { tensor: m.weight, scheme: "awq", bits: 4, groupSize: gs, actOrder: false, zeroPoints: "stored (asym)", detail: "gemm" };
    },
  };
};

export const awqDecoder: DecoderFactory = Object.assign(open, { methods: ["awq"] as const });
