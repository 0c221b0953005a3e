/**
 * A checkpoint seen as logical float tensors: plain F32/F16/BF16 safetensors and, through one
 * quantization scheme (src/source/schemes, chosen by src/source/registry.ts), its quantized modules,
 * read in row ranges so that no tensor has to be whole in memory. This is what model mappings, the
 * pipeline, verify, inspect and dequantize (`openCheckpoint`) consume; it knows nothing of GGUF and
 * nothing of any particular scheme.
 */
import path from "node:path";
import { GgufyError, brief } from "../errors.js";
import { MissingFile, readSmallFile, SMALL_FILE_CAPS } from "../formats/files.js";
import { SafetensorsCheckpoint, type StTensorInfo } from "../formats/safetensors/index.js";
import { f16Lut } from "../formats/half.js";
import type { DecoderFactory, FloatDtype, ModuleInfo, RawRows, SourceTensor, TensorDecoder } from "./types.js";

export type { DecoderFactory, EncodedRows, FloatDtype, ModuleInfo, RawRows, SchemeDecoder, SourceTensor, TensorDecoder } from "./types.js";

export const PLAIN_DTYPES: Readonly<Record<string, FloatDtype>> = { F32: "f32", F16: "f16", BF16: "bf16" };

export function rowGeometry(shape: readonly number[]): { rowLength: number; rows: number } {
  if (shape.length === 0) return { rowLength: 1, rows: 1 };
  const rowLength = shape[shape.length - 1]!;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { rowLength, rows };
}

export async function readConfig(dir: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, "config.json");
  let text: string;
  try {
    // a regular file of bounded size: a FIFO, a device or a huge file is refused before it is read
    text = (await readSmallFile(file, { code: "E_CONFIG", cap: SMALL_FILE_CAPS.config, what: "config.json", confine: true })).toString("utf8");
  } catch (e) {
    if (e instanceof MissingFile) throw new GgufyError("E_CONFIG", "config.json is missing", { file });
    throw e;
  }
  try {
    const j = JSON.parse(text);
    if (j === null || typeof j !== "object" || Array.isArray(j)) throw new Error("not an object");
    return j as Record<string, unknown>;
  } catch (e) {
    throw new GgufyError("E_CONFIG", `config.json is not a valid JSON object (${(e as Error).message})`, { file });
  }
}

/** config.json's `quantization_config.quant_method` (lower case), or undefined. */
export function quantMethodOf(config: Record<string, unknown>): string | undefined {
  const q = config["quantization_config"];
  if (q === null || typeof q !== "object" || Array.isArray(q)) return undefined;
  const m = (q as Record<string, unknown>)["quant_method"];
  return typeof m === "string" ? m.toLowerCase() : m === undefined ? undefined : brief(m);
}

export interface OpenOptions {
  /**
   * keep tensors that are neither plain floats nor claimed by the scheme (integer buffers …) as
   * byte-only entries (`others()`), instead of refusing them (dequantize copies them)
   */
  keepNonFloat?: boolean;
}

export class SourceCheckpoint {
  private constructor(
    readonly dir: string,
    readonly st: SafetensorsCheckpoint,
    readonly config: Record<string, unknown>,
    readonly tensors: ReadonlyMap<string, SourceTensor>,
    private readonly decoder: TensorDecoder | undefined,
    private readonly order: readonly string[],
    private readonly decodedNames: ReadonlySet<string>,
    private readonly nonFloat: ReadonlyMap<string, StTensorInfo>,
    /** every raw key the scheme consumed (aux keys and packed weights) */
    readonly consumed: ReadonlySet<string>,
  ) {}

  /**
   * Open a model folder. `decoders`: the schemes to try, in order (the converter passes the registry's
   * DECODERS; none: plain floats only). With decoders, a `quant_method` that none of them handles is
   * refused, naming the ones that are known.
   */
  static async open(dir: string, decoders: readonly DecoderFactory[] = [], opts: OpenOptions = {}): Promise<SourceCheckpoint> {
    const config = await readConfig(dir);
    const st = await SafetensorsCheckpoint.open(dir);
    try {
      let decoder: TensorDecoder | undefined;
      for (const f of decoders) {
        decoder = await f(st, config, st.dir);
        if (decoder) break;
      }
      const method = quantMethodOf(config);
      const known = [...new Set(decoders.flatMap((d) => d.methods ?? []))];
      if (!decoder && method !== undefined && known.length > 0 && !known.includes(method)) {
        const name = method.slice(0, 60);
        throw new GgufyError("E_UNSUPPORTED_QUANT", `quantization_config.quant_method is '${name}': '${name}' checkpoints are not supported; ggufy knows ${known.join(", ")} (and full-precision checkpoints)`, { file: path.join(st.dir, "config.json") });
      }
      const consumed = new Set(decoder ? decoder.consumedKeys() : []);
      const tensors = new Map<string, SourceTensor>();
      const decoded = new Map<string, SourceTensor>();
      if (decoder) for (const t of decoder.tensors()) decoded.set(t.name, t);
      const order: string[] = [];
      const nonFloat = new Map<string, StTensorInfo>();
      for (const name of st.names()) {
        const d = decoded.get(name);
        if (d) {
          tensors.set(name, d);
          order.push(name);
          continue;
        }
        if (consumed.has(name)) continue;
        const info = st.get(name)!;
        const dtype = PLAIN_DTYPES[info.dtype];
        if (!dtype) {
          if (opts.keepNonFloat) {
            nonFloat.set(name, info);
            order.push(name);
            continue;
          }
          throw new GgufyError("E_UNSUPPORTED_QUANT", `stored as ${info.dtype}, which is not a float type and no quantization scheme claims it`, { file: info.file, tensor: name });
        }
        const g = rowGeometry(info.shape);
        tensors.set(name, { name, shape: info.shape, dtype, encoding: dtype, ...g });
        order.push(name);
      }
      for (const [name, t] of decoded) if (!tensors.has(name)) { tensors.set(name, t); order.push(name); }
      return new SourceCheckpoint(st.dir, st, config, tensors, decoder, order, new Set(decoded.keys()), nonFloat, consumed);
    } catch (e) {
      await st.close();
      throw e;
    }
  }

  /** the scheme of the quantized modules ("bitsandbytes", "gptq" …), or undefined */
  get scheme(): string | undefined {
    return this.decodedNames.size > 0 ? (this.decoder?.scheme ?? "quantized") : undefined;
  }

  /**
   * Logical tensor names in the converter's order (shards sorted, names sorted within a shard); with
   * keepNonFloat, the kept non-float tensors too (see isFloat).
   */
  names(): string[] {
    return [...this.order];
  }

  get(name: string): SourceTensor | undefined {
    return this.tensors.get(name);
  }

  /** a tensor the scheme decodes (not stored as plain floats) */
  isDecoded(name: string): boolean {
    return this.decodedNames.has(name);
  }

  /** names of the decoded tensors, in names() order */
  decodedTensors(): string[] {
    return this.order.filter((n) => this.decodedNames.has(n));
  }

  /** a kept non-float tensor (keepNonFloat) */
  nonFloatInfo(name: string): StTensorInfo | undefined {
    return this.nonFloat.get(name);
  }

  /** per-module description from the scheme (inspect) */
  modules(): ModuleInfo[] {
    return this.decoder?.modules ? [...this.decoder.modules()] : [];
  }

  require(name: string): SourceTensor {
    const t = this.tensors.get(name);
    if (!t) throw new GgufyError("E_MISSING_TENSOR", "expected by the architecture but absent from the checkpoint", { file: this.dir, tensor: name });
    return t;
  }

  /** Rows [row0, row0+nRows) of a tensor as float32 (exact widening of the stored or decoded values). */
  async readRows(name: string, row0: number, nRows: number): Promise<Float32Array> {
    const t = this.require(name);
    if (row0 < 0 || nRows < 0 || row0 + nRows > t.rows) throw new RangeError(`${name}: rows [${row0}, ${row0 + nRows}) outside ${t.rows}`);
    if (this.decodedNames.has(name)) {
      const v = await this.decoder!.readRows(name, row0, nRows);
      if (v.length !== nRows * t.rowLength) throw new Error(`${name}: decoder returned ${v.length} values for ${nRows} rows of ${t.rowLength}`);
      return v;
    }
    return readPlainFloats(this.st, this.st.get(name)!, row0 * t.rowLength, nRows * t.rowLength);
  }

  /** Elements [e0, e0 + n) of a plain float tensor as float32 (a long 1-D tensor can be chunked). */
  async readPlainElements(name: string, e0: number, n: number): Promise<Float32Array> {
    const info = this.st.get(name);
    if (!info || this.decodedNames.has(name) || PLAIN_DTYPES[info.dtype] === undefined) throw new GgufyError("E_TYPE", `not a plain float tensor`, { file: this.dir, tensor: name });
    return readPlainFloats(this.st, info, e0, n);
  }

  /**
   * The stored bytes of rows [row0, row0+nRows) of a plain F32/F16/BF16 tensor (read into `into` when
   * it is large enough), the rows still encoded for a decoded tensor whose scheme can decode them
   * elsewhere, or undefined. For the pipeline, which widens / decodes them in its workers.
   */
  async readRawRows(name: string, row0: number, nRows: number, into?: Uint8Array): Promise<RawRows | undefined> {
    const t = this.require(name);
    if (row0 < 0 || nRows < 0 || row0 + nRows > t.rows) throw new RangeError(`${name}: rows [${row0}, ${row0 + nRows}) outside ${t.rows}`);
    if (this.decodedNames.has(name)) {
      if (nRows === 0 || !this.decoder!.readEncoded) return undefined;
      const enc = await this.decoder!.readEncoded(name, row0, nRows, into);
      if (!enc) return undefined;
      const { bytes, ...rest } = enc;
      return { dtype: t.dtype, bytes, encoded: rest };
    }
    const info = this.st.get(name)!;
    const dtype = PLAIN_DTYPES[info.dtype]!;
    const size = dtype === "f32" ? 4 : 2;
    const len = t.rowLength * nRows * size;
    const buf = into && into.length >= len ? into.subarray(0, len) : undefined;
    return { dtype, bytes: await this.st.read(info.name, row0 * t.rowLength * size, len, buf) };
  }

  async readAll(name: string): Promise<Float32Array> {
    const t = this.require(name);
    return this.readRows(name, 0, t.rows);
  }

  async close(): Promise<void> {
    await this.st.close();
  }
}

/** Elements [e0, e0 + n) of a plain F32/F16/BF16 tensor as float32. */
export async function readPlainFloats(st: SafetensorsCheckpoint, info: StTensorInfo, e0: number, n: number): Promise<Float32Array> {
  const out = new Float32Array(n);
  if (n === 0) return out;
  switch (info.dtype) {
    case "F32": {
      await st.read(info.name, e0 * 4, n * 4, new Uint8Array(out.buffer));
      return out;
    }
    case "F16": {
      const raw = await st.read(info.name, e0 * 2, n * 2);
      const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
      const lut = f16Lut();
      for (let i = 0; i < n; i++) out[i] = lut[h[i]!]!;
      return out;
    }
    case "BF16": {
      const raw = await st.read(info.name, e0 * 2, n * 2);
      const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = h[i]! << 16;
      return out;
    }
    default:
      throw new GgufyError("E_TYPE", `stored as ${info.dtype}, not a float tensor`, { file: info.file, tensor: info.name });
  }
}
