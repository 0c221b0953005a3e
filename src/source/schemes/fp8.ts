/**
 * FP8 checkpoints (`quant_method: "fp8"`: DeepSeek-V3, Qwen3-FP8 and transformers' FineGrainedFP8):
 * `<m>.weight` F8_E4M3 (or F8_E5M2) [out, in] with `<m>.weight_scale_inv` F32/BF16 per block of
 * `weight_block_size` [b0, b1] (shape [⌈out/b0⌉, ⌈in/b1⌉], the last block row/column partial), or a
 * per-tensor ([] / [1]) or per-channel ([out] / [out, 1]) `weight_scale_inv` / `weight_scale`.
 * Activation scales (`input_scale`, `activation_scale`, `k_scale`, `v_scale`) are dropped.
 *
 * Value (llama.cpp conversion/base.py `dequant_simple`: `weight.float() * scale` after
 * `repeat_interleave` of the block scales and trimming to the weight's shape):
 *   w[r][c] = float32(fp8(q[r][c]) · float32(scale[⌊r/b0⌋][⌊c/b1⌋]))
 * one float32 multiplication (Math.fround of the exact double product: an FP8 value has 4 significant
 * bits, so the double product is exact and rounding it once is float32 multiplication).
 *
 * FP8 decode (OCP 8-bit floating point spec, as torch.float8_e4m3fn / float8_e5m2):
 *   E4M3FN: sign·2^(e−7)·(1 + m/8), subnormals (e = 0) sign·2^−6·m/8, no infinities, S.1111.111 = NaN;
 *   E5M2:   sign·2^(e−15)·(1 + m/4), subnormals sign·2^−14·m/4, e = 31: m = 0 ±Inf, otherwise NaN
 *           (the upper byte of an IEEE float16).
 * A NaN or Inf code is refused, naming the module and the code.
 */
import { GgufyError, brief } from "../../errors.js";
import type { SafetensorsCheckpoint, StTensorInfo } from "../../formats/safetensors/index.js";
import type { DecoderFactory, EncodedRows, ModuleInfo, SchemeDecoder, SourceTensor, TensorDecoder } from "../types.js";
import { quantMethodOf } from "../checkpoint.js";
import { ConfigReader, FLOAT_STORED, isSkipped, moduleError, widenFloats, type Json } from "./common.js";
import path from "node:path";

export type Fp8Format = "e4m3" | "e5m2";

/** The 256 values of an FP8 format (NaN / ±Inf codes included, as such). */
export function fp8Table(fmt: Fp8Format): Float32Array {
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    if (fmt === "e4m3") {
      const e = (b >> 3) & 15;
      const m = b & 7;
      t[b] = e === 15 && m === 7 ? NaN : e === 0 ? sign * m * 2 ** -9 : sign * (8 + m) * 2 ** (e - 10);
    } else {
      const e = (b >> 2) & 31;
      const m = b & 3;
      t[b] = e === 31 ? (m === 0 ? sign * Infinity : NaN) : e === 0 ? sign * m * 2 ** -16 : sign * (4 + m) * 2 ** (e - 17);
    }
  }
  return t;
}

const TABLES: Record<Fp8Format, Float32Array> = { e4m3: fp8Table("e4m3"), e5m2: fp8Table("e5m2") };
export const FP8_DTYPE: Record<string, Fp8Format> = { F8_E4M3: "e4m3", F8_E5M2: "e5m2" };

export type ScaleLayout = { kind: "tensor" } | { kind: "channel" } | { kind: "block"; b0: number; b1: number; cols: number };

/** What the worker needs for rows [r0, r0 + n) of an FP8 weight (the FP8 bytes travel as `bytes`). */
export interface Fp8Meta {
  tensor: string;
  fmt: Fp8Format;
  rowLength: number;
  row0: number;
  /** tensor: [1]; channel: one per row of the chunk; block: the chunk's block rows, [⌊(r0+n−1)/b0⌋ − ⌊r0/b0⌋ + 1, cols] */
  scales: Float32Array;
  layout: ScaleLayout;
  /** the scheme's name in messages */
  scheme: string;
}

export function decodeFp8Rows(codes: Uint8Array, m: Fp8Meta, out: Float32Array = new Float32Array(codes.length)): Float32Array {
  const T = TABLES[m.fmt];
  const L = m.rowLength;
  const n = codes.length / L;
  const s = m.scales;
  const lay = m.layout;
  const br0 = lay.kind === "block" ? Math.floor(m.row0 / lay.b0) : 0;
  for (let r = 0; r < n; r++) {
    const o = r * L;
    if (lay.kind === "block") {
      const sb = (Math.floor((m.row0 + r) / lay.b0) - br0) * lay.cols;
      for (let c = 0; c < L; c++) out[o + c] = Math.fround(T[codes[o + c]!]! * s[sb + Math.floor(c / lay.b1)]!);
    } else {
      const sc = s[lay.kind === "channel" ? r : 0]!;
      for (let c = 0; c < L; c++) out[o + c] = Math.fround(T[codes[o + c]!]! * sc);
    }
  }
  // refuse NaN / Inf codes (checked after the loop: the table holds them as such)
  for (let i = 0; i < n * L; i++) {
    const v = T[codes[i]!]!;
    if (v - v !== 0) {
      const code = codes[i]!;
      throw new GgufyError("E_QUANT", `${m.scheme} module '${m.tensor.replace(/\.weight$/, "")}': FP8 code 0x${code.toString(16).padStart(2, "0")} at flat index ${(m.row0 + Math.floor(i / L)) * L + (i % L)} is ${Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"} in F8_${m.fmt.toUpperCase()}`, { tensor: m.tensor });
    }
  }
  return out;
}

export const FP8_DECODER: SchemeDecoder = {
  id: "fp8",
  decode(enc, out) {
    return decodeFp8Rows(enc.bytes, enc.meta as Fp8Meta, out ? out.subarray(0, enc.count) : undefined);
  },
};

export interface Fp8Module {
  readonly module: string;
  readonly weight: StTensorInfo;
  readonly scale: StTensorInfo;
  readonly fmt: Fp8Format;
  readonly rows: number;
  readonly cols: number;
  readonly layout: ScaleLayout;
}

/** The layout a scale tensor of `shape` gives a weight [rows, cols] (with the configured block, if any). */
export function scaleLayout(shape: readonly number[], rows: number, cols: number, block: readonly number[] | undefined): ScaleLayout | undefined {
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel === 1 && shape.length <= 2) return { kind: "tensor" };
  if (block) {
    const [b0, b1] = block as [number, number];
    const nr = Math.ceil(rows / b0);
    const nc = Math.ceil(cols / b1);
    if (shape.length === 2 && shape[0] === nr && shape[1] === nc) return { kind: "block", b0, b1, cols: nc };
  }
  if ((shape.length === 1 && shape[0] === rows) || (shape.length === 2 && shape[0] === rows && shape[1] === 1)) return { kind: "channel" };
  return undefined;
}

export const ACTIVATION_SCALE_SUFFIXES = [".input_scale", ".activation_scale", ".k_scale", ".v_scale", ".input_zero_point", ".output_scale"];

/**
 * FP8 weights of a checkpoint: every F8 `.weight` with its scale. `scheme` names the scheme in messages.
 * `accept(module)`: whether the scheme's config covers it.
 */
export function detectFp8(st: SafetensorsCheckpoint, block: readonly number[] | undefined, skip: readonly string[], scheme: string, scaleKeys: readonly string[] = ["weight_scale_inv", "weight_scale"]): Map<string, Fp8Module> {
  const mods = new Map<string, Fp8Module>();
  for (const [name, info] of st.tensors) {
    const fmt = FP8_DTYPE[info.dtype];
    if (!fmt || !name.endsWith(".weight")) continue;
    const mod = name.slice(0, -".weight".length);
    const fail = (detail: string, tensor = name): never => {
      throw moduleError(scheme, mod, detail, info.file, tensor);
    };
    if (isSkipped(mod, skip)) fail(`listed in modules_to_not_convert / ignore but stored as ${info.dtype}`);
    if (info.shape.length !== 2) fail(`'${name}' is ${info.dtype} ${brief(info.shape)}: expected a 2-D [out, in] weight`);
    const [rows, cols] = info.shape as [number, number];
    const key = scaleKeys.map((k) => `${mod}.${k}`).find((k) => st.get(k));
    if (!key) return fail(`the scale is missing: '${name}' is ${info.dtype} but there is no '${mod}.${scaleKeys.join("' or '" + mod + ".")}'`, `${mod}.${scaleKeys[0]}`);
    const sc = st.get(key)!;
    if (!FLOAT_STORED.has(sc.dtype)) fail(`'${key}' is ${sc.dtype}: expected F32, BF16 or F16`, key);
    const layout = scaleLayout(sc.shape, rows, cols, block);
    if (!layout) {
      fail(`'${key}' has shape ${brief(sc.shape)}, which is neither per tensor ([] / [1]), per channel ([${rows}] / [${rows}, 1]) nor ${block ? `per block ${brief(block)} of [${rows}, ${cols}] ([${Math.ceil(rows / block[0]!)}, ${Math.ceil(cols / block[1]!)}])` : "per block (no weight_block_size in the config)"}`, key);
    }
    mods.set(name, { module: mod, weight: info, scale: sc, fmt, rows, cols, layout: layout! });
  }
  return mods;
}

export async function readFp8Encoded(st: SafetensorsCheckpoint, m: Fp8Module, r0: number, n: number, scheme: string): Promise<EncodedRows> {
  const codes = await st.read(m.weight.name, r0 * m.cols, n * m.cols);
  const item = m.scale.dtype === "F32" ? 4 : 2;
  let scales: Float32Array;
  const lay = m.layout;
  if (lay.kind === "tensor") scales = widenFloats(await st.read(m.scale.name, 0, item), m.scale.dtype);
  else if (lay.kind === "channel") scales = widenFloats(await st.read(m.scale.name, r0 * item, n * item), m.scale.dtype);
  else {
    const b0 = Math.floor(r0 / lay.b0);
    const b1 = Math.floor((r0 + n - 1) / lay.b0) + 1;
    scales = widenFloats(await st.read(m.scale.name, b0 * lay.cols * item, (b1 - b0) * lay.cols * item), m.scale.dtype);
  }
  const meta: Fp8Meta = { tensor: m.weight.name, fmt: m.fmt, rowLength: m.cols, row0: r0, scales, layout: lay, scheme };
  return { scheme: FP8_DECODER.id, count: n * m.cols, bytes: codes, meta, transfer: [scales.buffer as ArrayBuffer] };
}

export function describeFp8(m: Fp8Module, scaleDtype = m.scale.dtype): string {
  const l = m.layout;
  return `fp8 ${m.fmt} ${l.kind === "block" ? `block ${l.b0}x${l.b1}` : `per-${l.kind}`} (${scaleDtype.toLowerCase()} ${m.scale.name.slice(m.module.length + 1)})`;
}

/** A TensorDecoder over FP8 modules (shared with compressed-tensors' float-quantized format). */
export function fp8TensorDecoder(st: SafetensorsCheckpoint, mods: Map<string, Fp8Module>, scheme: string, extraConsumed: Iterable<string>): TensorDecoder {
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight.name, shape: [m.rows, m.cols], dtype: "f32", encoding: describeFp8(m), rowLength: m.cols, rows: m.rows }));
  const consumed = new Set<string>(extraConsumed);
  for (const m of mods.values()) consumed.add(m.scale.name);
  const get = (name: string): Fp8Module => {
    const m = mods.get(name);
    if (!m) throw new Error(`${scheme}: ${name} is not an FP8 module`);
    return m;
  };
  return {
    scheme,
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readEncoded: (name, r0, n) => readFp8Encoded(st, get(name), r0, n, scheme),
    readRows: async (name, r0, n) => FP8_DECODER.decode(await readFp8Encoded(st, get(name), r0, n, scheme)),
    modules: function* (): Iterable<ModuleInfo> {
      for (const m of mods.values()) {
        const l = m.layout;
        yield { tensor: m.weight.name, scheme, bits: 8, ...(l.kind === "block" ? { block: [l.b0, l.b1] } : {}), zeroPoints: "none", detail: `${m.fmt} per-${l.kind} scale` };
      }
    },
  };
}

const open = async (st: SafetensorsCheckpoint, config: Json, dir: string): Promise<TensorDecoder | undefined> => {
  if (quantMethodOf(config) !== "fp8") return undefined;
  const file = path.join(dir, "config.json");
  const c = new ConfigReader(config["quantization_config"] as Json, file, "quantization_config");
  const block = c.ints("weight_block_size");
  if (block && block.length !== 2) throw new GgufyError("E_CONFIG", `quantization_config.weight_block_size is ${brief(block)}: expected [rows, columns]`, { file });
  const fmt = c.str("fmt");
  if (fmt !== undefined && fmt !== "e4m3" && fmt !== "e5m2" && fmt !== "float8_e4m3fn") throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.fmt is ${brief(fmt)}: FP8 formats e4m3 and e5m2 are supported`, { file });
  const act = c.str("activation_scheme");
  if (act !== undefined && act !== "dynamic" && act !== "static") throw new GgufyError("E_CONFIG", `quantization_config.activation_scheme is ${brief(act)}: expected dynamic or static`, { file });
  const mods = detectFp8(st, block, c.strings("modules_to_not_convert"), "FP8");
  if (mods.size === 0) throw new GgufyError("E_UNSUPPORTED_QUANT", `quant_method is 'fp8' but no weight is stored as F8_E4M3 or F8_E5M2`, { file });
  const weights = new Set([...mods.values()].map((m) => m.module));
  const extra: string[] = [];
  for (const name of st.tensors.keys()) {
    if (ACTIVATION_SCALE_SUFFIXES.some((s) => name.endsWith(s))) extra.push(name);
    // a scale whose weight is not FP8
    for (const k of [".weight_scale_inv", ".weight_scale"]) {
      if (name.endsWith(k) && !weights.has(name.slice(0, -k.length))) {
        throw moduleError("FP8", name.slice(0, -k.length), `has the scale '${name}' but its weight is not stored as FP8`, st.get(name)!.file, name);
      }
    }
  }
  return fp8TensorDecoder(st, mods, "fp8", extra);
};

export const fp8Decoder: DecoderFactory = Object.assign(open, { methods: ["fp8"] as const });
