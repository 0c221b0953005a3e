/**
 * The checkpoint abstraction's generic types. A checkpoint is a set of logical float tensors; plain
 * F32/F16/BF16 tensors are read as stored, every other one is provided by a quantization *scheme*
 * (bitsandbytes, GPTQ, AWQ, FP8, compressed-tensors — src/source/schemes/*): a module that claims its
 * checkpoint keys, states each logical tensor (name, shape, dtype, encoding), reads the rows still
 * encoded on the main thread (`readEncoded`) and decodes them wherever it runs — in the converter's
 * worker threads, which find the scheme's decoder by its id (src/source/registry.ts).
 * Nothing here knows any scheme.
 */
import type { SafetensorsCheckpoint } from "../formats/safetensors/index.js";

export type FloatDtype = "f32" | "f16" | "bf16";

export interface SourceTensor {
  readonly name: string;
  /** logical (torch) shape */
  readonly shape: readonly number[];
  /** the dtype a decoded element is exactly representable in (bnb: its quant-state dtype; GPTQ/FP8 products: f32) */
  readonly dtype: FloatDtype;
  /** how it is stored, for plans and inspect: "bf16", "f32", "nf4-dq bs64 …", "gptq 4-bit g128 …" */
  readonly encoding: string;
  /** elements per row (last dim; 1-D: the whole tensor) */
  readonly rowLength: number;
  readonly rows: number;
}

/**
 * Rows still encoded, as a scheme reads them on the main thread: `bytes` (the packed payload) and
 * `meta` (scales, zeros, indices … — structured-cloneable) are everything the scheme's worker decoder
 * needs. The ArrayBuffers in `transfer` (besides bytes.buffer) move to the worker with the job; they
 * must belong to this chunk alone.
 */
export interface EncodedRows {
  /** the id of the worker decoder (SchemeDecoder.id) */
  readonly scheme: string;
  /** decoded values */
  readonly count: number;
  readonly bytes: Uint8Array;
  readonly meta: unknown;
  readonly transfer?: readonly ArrayBuffer[];
}

/** A pure decoder, importable in a worker: EncodedRows → float32 values in row-major order. */
export interface SchemeDecoder {
  readonly id: string;
  /** decode into `out` (length ≥ enc.count) when given; returns the `count` values */
  decode(enc: EncodedRows, out?: Float32Array): Float32Array;
  /**
   * Values [v0, v0 + m) of what decode gives, into `out` (length ≥ m), for schemes that can decode part
   * of a chunk: the pipeline then decodes and quantizes a few rows at a time, in the core's cache.
   */
  decodeRange?(enc: EncodedRows, v0: number, m: number, out: Float32Array): Float32Array;
  /** true when decodeRange's values [v0, v0 + m) are certainly finite (known from the scales); false: scan them */
  rangeFinite?(enc: EncodedRows, v0: number, m: number): boolean;
}

/** Per module, for inspect: what the scheme says about it. */
export interface ModuleInfo {
  /** the logical tensor */
  readonly tensor: string;
  readonly scheme: string;
  readonly bits?: number;
  /** elements sharing one scale along the input dim (-1: the whole row; undefined: not grouped) */
  readonly groupSize?: number;
  /** 2-D blocks (FP8 weight_block_size) */
  readonly block?: readonly number[];
  readonly actOrder?: boolean;
  /** "asymmetric (stored)", "symmetric", "none" … */
  readonly zeroPoints?: string;
  /** what else the scheme wants to say ("e4m3", "checkpoint_format gptq_v2" …) */
  readonly detail?: string;
}

/** Decodes the tensors of a checkpoint that are not plain floats: one scheme's view of it. */
export interface TensorDecoder {
  /** scheme name ("bitsandbytes", "gptq" …), for messages and inspect */
  readonly scheme?: string;
  /** logical tensors this decoder provides */
  tensors(): Iterable<SourceTensor>;
  /** raw checkpoint keys it consumes (packed weights, scales, quant_state …) */
  consumedKeys(): Iterable<string>;
  /** decoded rows on this thread */
  readRows(name: string, row0: number, nRows: number): Promise<Float32Array>;
  /**
   * optional: the rows still encoded, to be decoded in a worker by the scheme decoder `scheme`; undefined:
   * not possible. `into`: a reusable chunk buffer the scheme may read its bulk bytes into (bytes then
   * views it), so that a chunk does not allocate fresh memory
   */
  readEncoded?(name: string, row0: number, nRows: number, into?: Uint8Array): Promise<EncodedRows | undefined>;
  /** optional: per-module description for inspect */
  modules?(): Iterable<ModuleInfo>;
}

/**
 * Looks at a checkpoint and returns its decoder, or undefined when the checkpoint is not of its
 * scheme. `methods`: the `quantization_config.quant_method` values it handles (the registry uses them
 * to refuse an unknown method naming the known ones).
 */
export interface DecoderFactory {
  (st: SafetensorsCheckpoint, config: Record<string, unknown>, dir: string): Promise<TensorDecoder | undefined>;
  readonly methods?: readonly string[];
}

/**
 * Rows as stored: plain float bytes (`bytes`, in `dtype`), or rows still encoded by a scheme
 * (`encoded`: the bytes are then its payload and `dtype` the decoded values' dtype).
 */
export interface RawRows {
  dtype: FloatDtype;
  bytes: Uint8Array;
  encoded?: Omit<EncodedRows, "bytes">;
}
