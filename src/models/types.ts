/**
 * What an architecture module produces: for each output GGUF, its architecture KVs and the list
 * of output tensors, each able to produce its rows (ggml order) as float32. Models know nothing
 * of bytes: reading and decoding is the SourceCheckpoint's job, quantizing the pipeline's.
 */
import type { GGUFKV } from "../formats/gguf/types.js";
import type { GGMLType } from "../quant/ggml/types.js";
import type { GGUFVocab } from "../tokenizer/types.js";
import type { FloatDtype, RawRows, SourceCheckpoint } from "../convert/source.js";

export interface OutputTensor {
  /** GGUF tensor name */
  readonly name: string;
  /** ggml order (ne[0] = row length) */
  readonly ne: readonly number[];
  /** checkpoint keys it is made from */
  readonly sources: readonly string[];
  /** how the source is stored ("bf16", "nf4-dq bs64 bf16" …) */
  readonly encoding: string;
  /** narrowest float type that holds every value exactly (drives --outtype auto) */
  readonly dtype: FloatDtype;
  /** rows [row0, row0+nRows) as float32; a row is ne[0] elements, there are ne[1]·ne[2]·ne[3] rows */
  read(row0: number, nRows: number): Promise<Float32Array>;
  /**
   * Optional: the same rows as stored when they pass through unchanged — plain f32/f16/bf16 bytes
   * (read into `into` when it is large enough) or 4-bit bitsandbytes packed bytes + absmax — or
   * undefined. Lets the pipeline widen / decode and check them in its worker threads.
   */
  readRaw?(row0: number, nRows: number, into?: Uint8Array): Promise<RawRows | undefined>;
  /** reads should start at multiples of this many rows (e.g. one attention head); default 1 */
  readonly rowAlign?: number;
  /** reads should not cross multiples of this many rows (one expert of a stacked MoE tensor) */
  readonly rowBoundary?: number;
  /** a type the architecture requires regardless of --outtype (e.g. F16 for a conv kernel) */
  readonly forceType?: GGMLType;
}

export interface ModelFile {
  /** "model" for the language model, "mmproj" for a vision projector */
  readonly role: "model" | "mmproj";
  /** general.architecture */
  readonly arch: string;
  /** architecture hyper-parameters, in write order (no general.* keys) */
  readonly kvs: GGUFKV[];
  /** extra general.* keys the architecture wants (e.g. mmproj description) */
  readonly generalKvs?: GGUFKV[];
  readonly tensors: OutputTensor[];
  readonly vocab?: GGUFVocab;
  /**
   * Per-tensor type choice for files that do not follow llama.cpp's text-model rules (mmproj).
   * Receives the requested type name ("f16", "q8_0" …) and returns the type for this tensor.
   */
  readonly chooseType?: (t: OutputTensor, requested: string) => GGMLType;
  /** number of parameters, for size labels */
  readonly paramCount?: number;
  /** typed hyper-parameters the planner needs (llama-quantize's rules depend on them) */
  readonly hparams?: PlanHparams;
  /** notes for the user about this file (a RoPE scaling llama.cpp ignores …) */
  readonly warnings?: readonly string[];
}

export interface PlanHparams {
  readonly nLayer: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly nExpert: number;
}

export interface ConvertContext {
  readonly src: SourceCheckpoint;
  readonly dir: string;
  readonly config: Record<string, unknown>;
  /** only the vocabulary is wanted (no tensors need to be readable) */
  readonly vocabOnly?: boolean;
  /** --minicpmv-version: the clip.minicpmv_version to convert a MiniCPM-V checkpoint as (src/models/minicpmv/versions.ts) */
  readonly minicpmvVersion?: number;
  /** the tokenizer loader (src/tokenizer), injected so models stay free of file formats */
  readonly loadVocab: (opts: VocabRequest) => Promise<GGUFVocab>;
}

export interface VocabRequest {
  /** folder holding the tokenizer files */
  dir: string;
  /** GGUF architecture, for pre-tokenizer choice */
  arch: string;
  /** config.vocab_size: pad with [PAD{i}] up to it */
  vocabSize?: number;
  config: Record<string, unknown>;
}

export interface ModelConverter {
  /** short id ("llama", "qwen2", "minicpmv") */
  readonly id: string;
  /** config.json `architectures[0]` values handled */
  readonly hfArchitectures: readonly string[];
  build(ctx: ConvertContext): Promise<ModelFile[]>;
}
