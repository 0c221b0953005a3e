/**
 * Finds bitsandbytes-quantized modules from the checkpoint's own keys, validates their quant state and
 * cross-checks config.json's `quantization_config` when it is given.
 */
import { GgufyError, brief } from "../../errors.js";
import type { BnbDtype, Bnb4bitType } from "./decode.js";
import { NF4_CODE, FP4_CODE, INT8_WEIGHT_FORMATS } from "./tables.js";
import type { BnbTensorInfo, BnbReadSmall, BnbModule, Bnb4bitModule, BnbInt8Module, BnbNestedState, DetectBnbOptions } from "./types.js";

const QS_MARK = ".quant_state";
const QS_PREFIX = ".quant_state.bitsandbytes__";
const AUX_4BIT = [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"] as const;
const JSON_FIELDS = new Set(["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"]);
const NESTED_FIELDS = ["nested_blocksize", "nested_dtype", "nested_offset"] as const;
const MAX_STATE_JSON = 1 << 16;

const ITEMSIZE: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };
const INT_DTYPES = new Set(["U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"]);

const TORCH_DTYPE: Record<string, BnbDtype> = { float32: "f32", float16: "f16", bfloat16: "bf16" };
const ST_FLOAT: Record<string, BnbDtype> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** What we take from config.json's quantization_config. */
interface QuantConfigView {
  bitsandbytes: boolean;
  load4?: boolean;
  load8?: boolean;
  quantType?: string;
  doubleQuant?: boolean;
  torchDtype?: BnbDtype;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function moduleOf(weight: string): string {
  return weight.endsWith(".weight") ? weight.slice(0, -".weight".length) : weight;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function isPosInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0;
}

/**
 * Accepts the `quantization_config` object, or the whole parsed config.json (recognised by a
 * `quantization_config`, `model_type`, `architectures` or `torch_dtype` key), or undefined.
 */
function readQuantConfig(q: unknown, file: string | undefined): QuantConfigView | undefined {
  if (q === undefined || q === null) return undefined;
  if (!isObject(q)) throw new GgufyError("E_CONFIG", "quantization_config is not a JSON object", file ? { file } : {});
  let qc: unknown = q;
  let torchDtype: BnbDtype | undefined;
  if ("quantization_config" in q || "model_type" in q || "architectures" in q || "torch_dtype" in q) {
    const td = q["torch_dtype"] ?? q["dtype"];
    if (typeof td === "string") torchDtype = TORCH_DTYPE[td];
    qc = q["quantization_config"];
    if (qc === undefined || qc === null) return { bitsandbytes: false, ...(torchDtype ? { torchDtype } : {}) };
    if (!isObject(qc)) throw new GgufyError("E_CONFIG", "config.json quantization_config is not a JSON object", file ? { file } : {});
  }
  const c = qc as Record<string, unknown>;
  let method = c["quant_method"];
  if (method === undefined && ("load_in_4bit" in c || "load_in_8bit" in c || "bnb_4bit_quant_type" in c)) method = "bitsandbytes"; // configs older than quant_method
  if (method !== undefined && method !== "bitsandbytes") {
    const name = typeof method === "string" ? method.slice(0, 60) : brief(method);
    throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.quant_method is '${name}': '${name}' checkpoints are not supported; ggufy converts full-precision and bitsandbytes (nf4, fp4, LLM.int8) checkpoints only`, file ? { file } : {});
  }
  const view: QuantConfigView = { bitsandbytes: method === "bitsandbytes" };
  if (torchDtype) view.torchDtype = torchDtype;
  if (typeof c["load_in_4bit"] === "boolean") view.load4 = c["load_in_4bit"];
  if (typeof c["load_in_8bit"] === "boolean") view.load8 = c["load_in_8bit"];
  if (typeof c["bnb_4bit_quant_type"] === "string") view.quantType = c["bnb_4bit_quant_type"];
  if (typeof c["bnb_4bit_use_double_quant"] === "boolean") view.doubleQuant = c["bnb_4bit_use_double_quant"];
  return view;
}

/** json.loads-compatible parse of the quant_state blob (Python writes NaN / Infinity bare). */
function parseStateJson(bytes: Uint8Array): unknown {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    const marked = text.replace(/(:\s*)(-?Infinity|NaN)(?=\s*[,}])/g, '$1"\u0000$2"');
    if (marked === text) throw e;
    return JSON.parse(marked, (_k, v: unknown) => (typeof v === "string" && v.startsWith("\u0000") ? Number(v.slice(1)) : v));
  }
}

function f32Values(bytes: Uint8Array): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 2);
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  return out;
}

function readIntScalar(bytes: Uint8Array, dtype: string): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "U8": return dv.getUint8(0);
    case "I8": return dv.getInt8(0);
    case "U16": return dv.getUint16(0, true);
    case "I16": return dv.getInt16(0, true);
    case "U32": return dv.getUint32(0, true);
    case "I32": return dv.getInt32(0, true);
    case "U64": return Number(dv.getBigUint64(0, true));
    default: return Number(dv.getBigInt64(0, true));
  }
}

/**
 * Detect every bitsandbytes module of a checkpoint.
 *
 * @param tensorInfos  every tensor of the checkpoint (all shards), e.g. `SafetensorsCheckpoint.tensors`
 * @param readSmall    reads a whole small tensor (quant_state JSON, weight_format, quant maps)
 * @param quantConfig  config.json's `quantization_config`, or the whole parsed config.json; optional
 * @param file         used in error messages when a tensor info carries no file
 * @returns modules keyed by weight name, in name order
 * @throws GgufyError E_BNB (inconsistent or incomplete quant state), E_UNSUPPORTED_QUANT (quant_method other
 *         than bitsandbytes), E_CONFIG (malformed quantization_config)
 */
export async function detectBnb(
  tensorInfos: ReadonlyMap<string, BnbTensorInfo>,
  readSmall: BnbReadSmall,
  quantConfig?: unknown,
  file?: string,
  options: DetectBnbOptions = {},
): Promise<Map<string, BnbModule>> {
  const cfg = readQuantConfig(quantConfig, file);
  const where = (tensor: string) => {
    const f = tensorInfos.get(tensor)?.file ?? file;
    return f !== undefined ? { file: f, tensor } : { tensor };
  };
  const fail = (module: string, tensor: string, detail: string): never => {
    throw new GgufyError("E_BNB", `bitsandbytes module '${module}': ${detail}`, where(tensor));
  };

  // ---- group keys -------------------------------------------------------------------------------------------
  const stateKeys = new Map<string, string[]>(); // weight -> quant_state keys
  const scbKeys = new Map<string, string>(); // module -> SCB key
  const formatKeys = new Map<string, string>(); // module -> weight_format key
  for (const name of tensorInfos.keys()) {
    const qi = name.lastIndexOf(QS_MARK);
    if (qi > 0 && (name.length === qi + QS_MARK.length || name[qi + QS_MARK.length] === ".")) {
      const w = name.slice(0, qi);
      if (!name.startsWith(QS_PREFIX, qi)) fail(moduleOf(w), name, `key '${name}' is not a packed quant state (expected '${w}${QS_PREFIX}nf4' or '…fp4'; pre-0.41.3 bitsandbytes 4-bit states are not serializable)`);
      const list = stateKeys.get(w) ?? [];
      list.push(name);
      stateKeys.set(w, list);
      continue;
    }
    if (name.endsWith(".SCB")) scbKeys.set(name.slice(0, -".SCB".length), name);
    else if (name.endsWith(".weight_format")) formatKeys.set(name.slice(0, -".weight_format".length), name);
  }
  // 4-bit auxiliaries without a quant_state
  for (const name of tensorInfos.keys()) {
    for (const suf of AUX_4BIT) {
      if (!name.endsWith(suf)) continue;
      const w = name.slice(0, -suf.length);
      if (stateKeys.has(w)) continue;
      fail(moduleOf(w), name, `has '${name}' but no '${w}${QS_PREFIX}nf4' or '…fp4' quant state key: the 4-bit quant state is incomplete`);
    }
  }

  const modules = new Map<string, BnbModule>();

  // ---- 4-bit ------------------------------------------------------------------------------------------------
  for (const [w, keys] of stateKeys) {
    const mod = moduleOf(w);
    if (keys.length !== 1) fail(mod, keys[0]!, `has ${keys.length} quant state keys (${keys.join(", ")}); exactly one is allowed`);
    const stateKey = keys[0]!;
    const suffix = stateKey.slice(stateKey.lastIndexOf(QS_PREFIX) + QS_PREFIX.length);
    if (suffix !== "nf4" && suffix !== "fp4") fail(mod, stateKey, `unknown quant_type '${suffix}' in key '${stateKey}' (bitsandbytes 4-bit is nf4 or fp4)`);
    const kind = suffix as Bnb4bitType;
    const stInfo = tensorInfos.get(stateKey)!;
    if (stInfo.dtype !== "U8") fail(mod, stateKey, `quant state '${stateKey}' is ${stInfo.dtype}, expected U8 (UTF-8 JSON bytes)`);
    if (stInfo.byteLength > MAX_STATE_JSON) fail(mod, stateKey, `quant state '${stateKey}' is ${stInfo.byteLength} bytes; bitsandbytes writes about 200 (limit ${MAX_STATE_JSON})`);
    let json: unknown;
    try {
      json = parseStateJson(await readSmall(stateKey));
    } catch (e) {
      fail(mod, stateKey, `quant state '${stateKey}' is not valid UTF-8 JSON (${(e as Error).message})`);
    }
    if (!isObject(json)) return fail(mod, stateKey, `quant state '${stateKey}' is not a JSON object`);
    for (const k of Object.keys(json)) if (!JSON_FIELDS.has(k)) fail(mod, stateKey, `quant state has unknown field ${brief(k)} (known: ${[...JSON_FIELDS].join(", ")})`);
    for (const k of ["quant_type", "blocksize", "dtype", "shape"]) if (!(k in json)) fail(mod, stateKey, `quant state JSON is missing '${k}'`);
    const qt = json["quant_type"];
    if (qt !== "nf4" && qt !== "fp4") fail(mod, stateKey, `unknown quant_type ${brief(qt)} (bitsandbytes 4-bit is nf4 or fp4)`);
    if (qt !== kind) fail(mod, stateKey, `quant_type '${String(qt)}' in the quant state JSON contradicts the key suffix '__${kind}'`);
    const blocksize = json["blocksize"];
    if (!isPosInt(blocksize)) return fail(mod, stateKey, `blocksize ${brief(blocksize)} is not a positive integer`);
    const dtypeName = json["dtype"];
    const dtype = typeof dtypeName === "string" ? TORCH_DTYPE[dtypeName] : undefined;
    if (!dtype) return fail(mod, stateKey, `dtype ${brief(dtypeName)} is not float32, float16 or bfloat16`);
    const shapeRaw = json["shape"];
    if (!Array.isArray(shapeRaw) || shapeRaw.length === 0 || !shapeRaw.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
      return fail(mod, stateKey, `shape ${brief(shapeRaw)} is not a list of non-negative integers`);
    }
    const shape = shapeRaw as number[];
    const numel = numelOf(shape);
    if (!Number.isSafeInteger(numel)) fail(mod, stateKey, `shape ${brief(shape)} has too many elements`);

    // packed weight: raw bytes, whatever its dtype says
    const wInfo = tensorInfos.get(w);
    if (!wInfo) return fail(mod, stateKey, `the packed weight '${w}' is missing`);
    if (scbKeys.has(mod)) fail(mod, scbKeys.get(mod)!, `has both a 4-bit quant state and an LLM.int8 SCB`);
    const need = Math.ceil(numel / 2);
    const item = ITEMSIZE[wInfo.dtype] ?? 1;
    if (wInfo.byteLength < need || wInfo.byteLength >= need + item) {
      fail(mod, w, `quant_state shape ${brief(shape)} (${numel} values) needs ${need} packed bytes but '${w}' holds ${wInfo.byteLength} (${wInfo.dtype} ${brief(wInfo.shape)})`);
    }

    const numBlocks = Math.ceil(numel / blocksize);
    const present = (k: string) => tensorInfos.has(k);
    const absmaxKey = `${w}.absmax`;
    const quantMapKey = `${w}.quant_map`;
    const nAbsKey = `${w}.nested_absmax`;
    const nMapKey = `${w}.nested_quant_map`;
    const nestedFieldsPresent = NESTED_FIELDS.filter((k) => k in json);
    const isNested = nestedFieldsPresent.length > 0 || present(nAbsKey) || present(nMapKey);
    if (isNested) {
      for (const k of NESTED_FIELDS) if (!(k in json)) fail(mod, stateKey, `double quantization is incomplete: the quant state JSON has no '${k}'`);
      if (!present(nAbsKey)) fail(mod, nAbsKey, `double quantization is incomplete: nested key '${nAbsKey}' is missing`);
      if (!present(nMapKey)) fail(mod, nMapKey, `double quantization is incomplete: nested key '${nMapKey}' is missing`);
    }

    // absmax
    const aInfo = tensorInfos.get(absmaxKey);
    if (!aInfo) return fail(mod, absmaxKey, `'${absmaxKey}' is missing`);
    const wantAbsDtype = isNested ? "U8" : "F32";
    if (aInfo.dtype !== wantAbsDtype) {
      fail(mod, absmaxKey, `'${absmaxKey}' is ${aInfo.dtype} ${brief(aInfo.shape)}, expected ${wantAbsDtype} (${isNested ? "8-bit codes of the double-quantized absmax" : "float32 block absmax"}); CPU-packed bitsandbytes layouts are not supported`);
    }
    const absCount = aInfo.byteLength / (ITEMSIZE[aInfo.dtype] ?? 1);
    if (absCount !== numBlocks) fail(mod, absmaxKey, `'${absmaxKey}' has ${absCount} values but shape ${brief(shape)} with blocksize ${blocksize} has ${numBlocks} blocks`);

    // quant_map: informational, but bitsandbytes requires it
    const warnings: string[] = [];
    const mInfo = tensorInfos.get(quantMapKey);
    if (!mInfo) return fail(mod, quantMapKey, `'${quantMapKey}' is missing`);
    if (mInfo.dtype !== "F32" || mInfo.byteLength !== 64) fail(mod, quantMapKey, `'${quantMapKey}' is ${mInfo.dtype} ${brief(mInfo.shape)}, expected F32 [16]`);
    {
      const stored = f32Values(await readSmall(quantMapKey));
      const table = kind === "nf4" ? NF4_CODE : FP4_CODE;
      const bad: number[] = [];
      for (let i = 0; i < 16; i++) if (stored[i] !== table[i]) bad.push(i); // ±0 compare equal
      if (bad.length) warnings.push(`stored ${kind} quant_map differs from bitsandbytes' table at index ${bad.join(", ")}; decoding uses the fixed table as bitsandbytes does`);
    }

    let nested: BnbNestedState | undefined;
    if (isNested) {
      const nbs = json["nested_blocksize"];
      if (!isPosInt(nbs)) return fail(mod, stateKey, `nested_blocksize ${brief(nbs)} is not a positive integer`);
      const ndName = json["nested_dtype"];
      const nd = typeof ndName === "string" ? TORCH_DTYPE[ndName] : undefined;
      if (!nd) return fail(mod, stateKey, `nested_dtype ${brief(ndName)} is not float32, float16 or bfloat16`);
      const off = json["nested_offset"];
      if (typeof off !== "number") return fail(mod, stateKey, `nested_offset ${brief(off)} is not a number`);
      const nbCount = Math.ceil(numBlocks / nbs);
      const naInfo = tensorInfos.get(nAbsKey)!;
      if (naInfo.dtype !== "F32") fail(mod, nAbsKey, `'${nAbsKey}' is ${naInfo.dtype}, expected F32`);
      if (naInfo.byteLength / 4 !== nbCount) fail(mod, nAbsKey, `'${nAbsKey}' has ${naInfo.byteLength / 4} values but ${numBlocks} absmax blocks in nested blocks of ${nbs} need ${nbCount}`);
      const nmInfo = tensorInfos.get(nMapKey)!;
      if (nmInfo.dtype !== "F32" || nmInfo.byteLength !== 1024) fail(mod, nMapKey, `'${nMapKey}' is ${nmInfo.dtype} ${brief(nmInfo.shape)}, expected F32 [256]`);
      const quantMap = f32Values(await readSmall(nMapKey));
      nested = { absmaxKey: nAbsKey, quantMapKey: nMapKey, blocksize: nbs, dtype: nd, offset: Math.fround(off), quantMap, numBlocks: nbCount };
    }

    const auxKeys = [absmaxKey, quantMapKey, ...(nested ? [nAbsKey, nMapKey] : []), stateKey];
    const m: Bnb4bitModule = {
      weight: w,
      module: mod,
      kind,
      shape,
      rows: shape.length === 0 ? 1 : numelOf(shape.slice(0, -1)),
      cols: shape.length === 0 ? 1 : shape[shape.length - 1]!,
      dtype,
      doubleQuant: nested !== undefined,
      storageDtype: wInfo.dtype,
      auxKeys,
      warnings,
      blocksize,
      stateKey,
      absmaxKey,
      quantMapKey,
      numel,
      numBlocks,
      ...(nested ? { nested } : {}),
    };
    modules.set(w, m);
  }

  // ---- LLM.int8 ---------------------------------------------------------------------------------------------
  for (const [mod, fk] of formatKeys) {
    if (!scbKeys.has(mod)) fail(mod, fk, `LLM.int8 module has '${fk}' but no '${mod}.SCB' (the per-row scales): cannot dequantize int8 without SCB`);
  }
  let int8Dtype: BnbDtype | undefined = options.int8Dtype ?? cfg?.torchDtype;
  if (!int8Dtype && scbKeys.size > 0) int8Dtype = dominantPlainDtype(tensorInfos, modules, scbKeys, formatKeys) ?? "f16";
  for (const [mod, scbKey] of scbKeys) {
    const w = `${mod}.weight`;
    const wInfo = tensorInfos.get(w);
    if (!wInfo) return fail(mod, scbKey, `has '${scbKey}' but the int8 weight '${w}' is missing`);
    if (wInfo.dtype !== "I8") fail(mod, w, `'${w}' is ${wInfo.dtype}, expected I8 next to '${scbKey}'`);
    if (wInfo.shape.length !== 2) fail(mod, w, `int8 weight shape ${brief(wInfo.shape)} is not 2-D [out, in]`);
    const [rows, cols] = wInfo.shape as [number, number];
    const sInfo = tensorInfos.get(scbKey)!;
    if (sInfo.dtype !== "F32") fail(mod, scbKey, `'${scbKey}' is ${sInfo.dtype}, expected F32`);
    const scbCount = sInfo.byteLength / 4;
    if (scbCount !== rows) fail(mod, scbKey, `'${scbKey}' has ${scbCount} values but '${w}' has ${rows} rows ${brief(wInfo.shape)} (a col_turing/col_ampere tile layout?)`);
    const fk = formatKeys.get(mod);
    if (fk !== undefined) {
      const fInfo = tensorInfos.get(fk)!;
      if (!INT_DTYPES.has(fInfo.dtype) || fInfo.byteLength !== ITEMSIZE[fInfo.dtype]) fail(mod, fk, `'${fk}' is ${fInfo.dtype} ${brief(fInfo.shape)}, expected one integer (0 = row)`);
      const v = readIntScalar(await readSmall(fk), fInfo.dtype);
      if (v !== 0) {
        const name = INT8_WEIGHT_FORMATS[v];
        fail(mod, fk, name !== undefined ? `weight_format is '${name}' (${v}): only the 'row' layout can be decoded (current bitsandbytes refuses these GPU tile layouts too)` : `weight_format ${v} is unknown (0 = row, 1 = col32, 2 = col_turing, 3 = col_ampere)`);
      }
    }
    const m: BnbInt8Module = {
      weight: w,
      module: mod,
      kind: "int8",
      shape: [rows, cols],
      rows,
      cols,
      dtype: int8Dtype!,
      doubleQuant: false,
      storageDtype: wInfo.dtype,
      auxKeys: fk !== undefined ? [scbKey, fk] : [scbKey],
      warnings: [],
      scbKey,
      ...(fk !== undefined ? { weightFormatKey: fk } : {}),
    };
    modules.set(w, m);
  }

  // ---- cross-check config.json ------------------------------------------------------------------------------
  if (cfg?.bitsandbytes) {
    for (const m of modules.values()) {
      if (m.kind === "int8") {
        if (cfg.load4 === true) fail(m.module, m.scbKey, `config.json says load_in_4bit but this module is LLM.int8 (has '${m.scbKey}')`);
      } else {
        if (cfg.load8 === true) fail(m.module, m.stateKey, `config.json says load_in_8bit but this module is 4-bit ${m.kind} (has '${m.stateKey}')`);
        if (cfg.load4 === true && cfg.quantType !== undefined && cfg.quantType !== m.kind) {
          fail(m.module, m.stateKey, `quant state is ${m.kind} but config.json bnb_4bit_quant_type is '${cfg.quantType.slice(0, 20)}'`);
        }
        if (cfg.load4 === true && cfg.doubleQuant === true && !m.doubleQuant) {
          fail(m.module, `${m.weight}.nested_absmax`, `config.json says bnb_4bit_use_double_quant but the nested keys '${m.weight}.nested_absmax' / '${m.weight}.nested_quant_map' are missing`);
        }
      }
    }
    for (const [name, info] of tensorInfos) {
      if (modules.has(name) || !name.endsWith(".weight")) continue;
      const mod = moduleOf(name);
      if (cfg.load8 === true && info.dtype === "I8") fail(mod, name, `'${name}' is an I8 (LLM.int8) weight but '${mod}.SCB' is missing: cannot dequantize int8 without SCB`);
      if (cfg.load4 === true && info.dtype === "U8" && info.shape.length === 2 && (info.shape[1] === 1 || info.shape[0] === 1)) {
        fail(mod, name, `'${name}' looks like packed 4-bit data (U8 ${brief(info.shape)}) but '${name}${QS_PREFIX}${cfg.quantType === "fp4" ? "fp4" : "nf4"}' is missing`);
      }
    }
  }

  return new Map([...modules].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function dominantPlainDtype(
  infos: ReadonlyMap<string, BnbTensorInfo>,
  modules: ReadonlyMap<string, BnbModule>,
  scbKeys: ReadonlyMap<string, string>,
  formatKeys: ReadonlyMap<string, string>,
): BnbDtype | undefined {
  const consumed = new Set<string>();
  for (const m of modules.values()) for (const k of [m.weight, ...m.auxKeys]) consumed.add(k);
  for (const [mod, k] of scbKeys) consumed.add(k).add(`${mod}.weight`);
  for (const k of formatKeys.values()) consumed.add(k);
  const count = new Map<BnbDtype, number>();
  for (const [name, info] of infos) {
    const d = ST_FLOAT[info.dtype];
    if (d && !consumed.has(name)) count.set(d, (count.get(d) ?? 0) + 1);
  }
  let best: BnbDtype | undefined;
  let n = 0;
  for (const [d, c] of count) if (c > n) [best, n] = [d, c];
  return best;
}

/** One-line description for inspect/plan, e.g. "nf4-dq bs64 bf16 (u8 storage)" or "int8 row f16 (SCB)". */
export function describeBnb(m: BnbModule): string {
  if (m.kind === "int8") return `int8 row ${m.dtype} (SCB${m.weightFormatKey ? ", weight_format" : ""})`;
  return `${m.kind}${m.doubleQuant ? "-dq" : ""} bs${m.blocksize} ${m.dtype} (${m.storageDtype.toLowerCase()} storage)`;
}
