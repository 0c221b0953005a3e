import type { BnbDtype, Bnb4bitType } from "./decode.js";

/** What detection needs to know about a tensor (a subset of the safetensors reader's StTensorInfo). */
export interface BnbTensorInfo {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly byteLength: number;
  /** file holding it, used in error messages when present */
  readonly file?: string;
}

/** Reads a whole (small) tensor's raw bytes. */
export type BnbReadSmall = (name: string) => Promise<Uint8Array>;
/** Reads `byteLength` raw bytes of a tensor starting at `byteOffset` within it. */
/** Reads bytes of a checkpoint tensor; into `into` (exactly byteLength bytes) when given. */
export type BnbReadRange = (name: string, byteOffset: number, byteLength: number, into?: Uint8Array) => Promise<Uint8Array>;

interface BnbModuleBase {
  /** the weight tensor's name, e.g. "model.layers.0.mlp.up_proj.weight" (the map key) */
  readonly weight: string;
  /** module name: `weight` without its ".weight" suffix */
  readonly module: string;
  /** logical shape, [out, in] for a Linear (from the quant_state JSON for 4-bit, from the I8 tensor for int8) */
  readonly shape: readonly number[];
  /** product of all dimensions but the last (1 for a 1-D shape) */
  readonly rows: number;
  /** the last dimension (row length) */
  readonly cols: number;
  /** dtype of the decoded values (returned widened to float32) */
  readonly dtype: BnbDtype;
  readonly doubleQuant: boolean;
  /** safetensors dtype of the stored weight tensor (U8, BF16, … for 4-bit: raw bytes are what counts; I8 for int8) */
  readonly storageDtype: string;
  /** every other tensor of the checkpoint this module consumes (the caller must not convert them) */
  readonly auxKeys: readonly string[];
  /** non-fatal oddities (e.g. a stored quant_map that differs from bitsandbytes' table) */
  readonly warnings: readonly string[];
}

export interface BnbNestedState {
  readonly absmaxKey: string;
  readonly quantMapKey: string;
  /** nested_blocksize (always 256 from bitsandbytes) */
  readonly blocksize: number;
  /** nested_dtype (float32 in every normal path) */
  readonly dtype: BnbDtype;
  /** nested_offset rounded to float32 */
  readonly offset: number;
  /** the stored nested_quant_map (256 float32), used for decoding */
  readonly quantMap: Float32Array;
  /** number of nested blocks = ceil(numBlocks / blocksize) */
  readonly numBlocks: number;
}

export interface Bnb4bitModule extends BnbModuleBase {
  readonly kind: Bnb4bitType;
  readonly blocksize: number;
  /** the `<weight>.quant_state.bitsandbytes__<kind>` key */
  readonly stateKey: string;
  readonly absmaxKey: string;
  readonly quantMapKey: string;
  /** prod(shape) */
  readonly numel: number;
  /** ceil(numel / blocksize) */
  readonly numBlocks: number;
  /** present iff doubleQuant */
  readonly nested?: BnbNestedState;
}

export interface BnbInt8Module extends BnbModuleBase {
  readonly kind: "int8";
  readonly blocksize?: undefined;
  /** `<module>.SCB` (F32, one value per row) */
  readonly scbKey: string;
  /** `<module>.weight_format` when present (its value was checked to be 0 = "row") */
  readonly weightFormatKey?: string;
}

export type BnbModule = Bnb4bitModule | BnbInt8Module;

export interface DetectBnbOptions {
  /**
   * Output dtype for LLM.int8 modules (bitsandbytes dequantizes to float32 and transformers then casts to the
   * model dtype). Default: config.json `torch_dtype` (when the whole config was given), else the most common
   * floating dtype of the checkpoint's plain tensors, else f16 (what transformers forces when quantizing).
   */
  readonly int8Dtype?: BnbDtype;
}
