/**
 * A checkpoint seen as logical float tensors: plain F32/F16/BF16 safetensors and (through
 * src/quant/bnb) bitsandbytes modules, read in row ranges so that no tensor has to be whole in
 * memory. This is what model mappings and the pipeline consume; it knows nothing of GGUF.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { MissingFile, readSmallFile, SMALL_FILE_CAPS } from "../formats/files.js";
import { SafetensorsCheckpoint, type StTensorInfo } from "../formats/safetensors/index.js";
import { f16Lut } from "../formats/half.js";
import type { Bnb4Encoded } from "../quant/bnb/rows.js";

export type FloatDtype = "f32" | "f16" | "bf16";

export interface SourceTensor {
  readonly name: string;
  /** logical (torch) shape */
  readonly shape: readonly number[];
  /** the dtype a decoded element is exactly representable in (bnb: its quant-state dtype) */
  readonly dtype: FloatDtype;
  /** how it is stored, for plans and inspect: "bf16", "f32", "nf4-dq bs64 …" */
  readonly encoding: string;
  /** elements per row (last dim; 1-D: the whole tensor) */
  readonly rowLength: number;
  readonly rows: number;
}

/** Decodes some tensors of a checkpoint that are not plain floats (bitsandbytes modules). */
export interface TensorDecoder {
  /** logical tensors this decoder provides */
  tensors(): Iterable<SourceTensor>;
  /** raw checkpoint keys it consumes (packed weights, absmax, quant_state …) */
  consumedKeys(): Iterable<string>;
  readRows(name: string, row0: number, nRows: number): Promise<Float32Array>;
  /** optional: the rows still encoded (4-bit bitsandbytes: packed bytes + absmax), to be decoded elsewhere */
  readEncoded?(name: string, row0: number, nRows: number): Promise<Bnb4Encoded | undefined>;
}

/**
 * Rows as stored: plain float bytes (`bytes`), or for a 4-bit bitsandbytes tensor its packed bytes
 * with what dequantize4bit needs (`bnb4`; `dtype` is then the decoded values' dtype).
 */
export interface RawRows {
  dtype: FloatDtype;
  bytes: Uint8Array;
  bnb4?: Omit<Bnb4Encoded, "packed">;
}

export type DecoderFactory = (st: SafetensorsCheckpoint, config: Record<string, unknown>, dir: string) => Promise<TensorDecoder | undefined>;

const PLAIN: Record<string, FloatDtype> = { F32: "f32", F16: "f16", BF16: "bf16" };

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

export class SourceCheckpoint {
  private constructor(
    readonly dir: string,
    readonly st: SafetensorsCheckpoint,
    readonly config: Record<string, unknown>,
    readonly tensors: ReadonlyMap<string, SourceTensor>,
    private readonly decoder: TensorDecoder | undefined,
    private readonly order: readonly string[],
  ) {}

  static async open(dir: string, decoders: readonly DecoderFactory[] = []): Promise<SourceCheckpoint> {
    const config = await readConfig(dir);
    const st = await SafetensorsCheckpoint.open(dir);
    try {
      let decoder: TensorDecoder | undefined;
      for (const f of decoders) {
        decoder = await f(st, config, st.dir);
        if (decoder) break;
      }
      const consumed = new Set(decoder ? decoder.consumedKeys() : []);
      const tensors = new Map<string, SourceTensor>();
      const decoded = new Map<string, SourceTensor>();
      if (decoder) for (const t of decoder.tensors()) decoded.set(t.name, t);
      const order: string[] = [];
      for (const name of st.names()) {
        const d = decoded.get(name);
        if (d) {
          tensors.set(name, d);
          order.push(name);
          continue;
        }
        if (consumed.has(name)) continue;
        const info = st.get(name)!;
        const dtype = PLAIN[info.dtype];
        if (!dtype) {
          throw new GgufyError("E_UNSUPPORTED_QUANT", `stored as ${info.dtype}, which is not a float type and no quantization scheme claims it`, { file: info.file, tensor: name });
        }
        const g = rowGeometry(info.shape);
        tensors.set(name, { name, shape: info.shape, dtype, encoding: dtype, ...g });
        order.push(name);
      }
      for (const [name, t] of decoded) if (!tensors.has(name)) { tensors.set(name, t); order.push(name); }
      return new SourceCheckpoint(st.dir, st, config, tensors, decoder, order);
    } catch (e) {
      await st.close();
      throw e;
    }
  }

  /** Logical tensor names in the converter's order (shards sorted, names sorted within a shard). */
  names(): string[] {
    return [...this.order];
  }

  get(name: string): SourceTensor | undefined {
    return this.tensors.get(name);
  }

  require(name: string): SourceTensor {
    const t = this.tensors.get(name);
    if (!t) throw new GgufyError("E_MISSING_TENSOR", "expected by the architecture but absent from the checkpoint", { file: this.dir, tensor: name });
    return t;
  }

  /** Rows [row0, row0+nRows) of a tensor as float32 (exact widening of the stored values). */
  async readRows(name: string, row0: number, nRows: number): Promise<Float32Array> {
    const t = this.require(name);
    if (row0 < 0 || nRows < 0 || row0 + nRows > t.rows) throw new RangeError(`${name}: rows [${row0}, ${row0 + nRows}) outside ${t.rows}`);
    const info = this.st.get(name);
    if (!info || PLAIN[info.dtype] === undefined || this.decoder && !this.isPlain(name)) {
      if (!this.decoder) throw new Error(`no decoder for ${name}`);
      return this.decoder.readRows(name, row0, nRows);
    }
    return decodePlainRows(this.st, info, t.rowLength, row0, nRows);
  }

  /**
   * The stored bytes of rows [row0, row0+nRows) of a plain F32/F16/BF16 tensor (read into `into` when
   * it is large enough), the encoded form of a 4-bit bitsandbytes tensor, or undefined (LLM.int8).
   * For the pipeline, which widens / decodes them in its workers.
   */
  async readRawRows(name: string, row0: number, nRows: number, into?: Uint8Array): Promise<RawRows | undefined> {
    const t = this.require(name);
    if (row0 < 0 || nRows < 0 || row0 + nRows > t.rows) throw new RangeError(`${name}: rows [${row0}, ${row0 + nRows}) outside ${t.rows}`);
    const info = this.st.get(name);
    const dtype = info ? PLAIN[info.dtype] : undefined;
    if (!info || dtype === undefined || (this.decoder && !this.isPlain(name))) {
      const enc = this.decoder?.readEncoded ? await this.decoder.readEncoded(name, row0, nRows) : undefined;
      if (!enc) return undefined;
      const { packed, ...bnb4 } = enc;
      return { dtype: t.dtype, bytes: packed, bnb4 };
    }
    const size = dtype === "f32" ? 4 : 2;
    const len = t.rowLength * nRows * size;
    const buf = into && into.length >= len ? into.subarray(0, len) : undefined;
    return { dtype, bytes: await this.st.read(info.name, row0 * t.rowLength * size, len, buf) };
  }

  private isPlain(name: string): boolean {
    const t = this.tensors.get(name)!;
    return t.encoding === t.dtype;
  }

  async readAll(name: string): Promise<Float32Array> {
    const t = this.require(name);
    return this.readRows(name, 0, t.rows);
  }

  async close(): Promise<void> {
    await this.st.close();
  }
}

async function decodePlainRows(st: SafetensorsCheckpoint, info: StTensorInfo, rowLength: number, row0: number, nRows: number): Promise<Float32Array> {
  const n = rowLength * nRows;
  const out = new Float32Array(n);
  if (n === 0) return out;
  switch (info.dtype) {
    case "F32": {
      await st.read(info.name, row0 * rowLength * 4, n * 4, new Uint8Array(out.buffer));
      return out;
    }
    case "F16": {
      const raw = await st.read(info.name, row0 * rowLength * 2, n * 2);
      const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
      const lut = f16Lut();
      for (let i = 0; i < n; i++) out[i] = lut[h[i]!]!;
      return out;
    }
    case "BF16": {
      const raw = await st.read(info.name, row0 * rowLength * 2, n * 2);
      const h = new Uint16Array(raw.buffer, raw.byteOffset, n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = h[i]! << 16;
      return out;
    }
    default:
      throw new GgufyError("E_UNSUPPORTED_QUANT", `dtype ${info.dtype} cannot be read as floats`, { file: info.file, tensor: info.name });
  }
}
