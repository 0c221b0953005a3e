/**
 * One error type for every user-facing failure: a stable code, the file, the tensor (when there
 * is one) and what is wrong. The CLI prints `message` as one line and exits with `exitCode`.
 */

export const ERROR_CODES = {
  // input files
  E_IO: "cannot read a file",
  E_ST_HEADER_TOO_LARGE: "safetensors header larger than the 100 MB cap",
  E_ST_HEADER_LENGTH: "safetensors header length runs past the end of the file",
  E_ST_HEADER_JSON: "safetensors header is not valid JSON",
  E_ST_HEADER_START: "safetensors header does not start with '{'",
  E_ST_DTYPE: "unknown safetensors dtype",
  E_ST_SHAPE: "invalid tensor shape",
  E_ST_OFFSETS: "tensor offsets out of bounds, overlapping or leaving a gap",
  E_ST_SIZE_MISMATCH: "tensor byte range does not match shape × dtype",
  E_ST_TRUNCATED: "file is shorter than its header says",
  E_INDEX: "model.safetensors.index.json is invalid",
  E_SHARD_MISSING: "a shard named by the index is missing",
  E_SHARD_PATH: "a shard path escapes the model folder",
  E_INDEX_MISMATCH: "index and shards disagree",
  E_DUPLICATE_TENSOR: "the same tensor name appears twice",
  E_CONFIG: "config.json is missing, invalid or contradicts the weights",
  E_TOKENIZER: "tokenizer files are missing or inconsistent",
  E_UNSUPPORTED_ARCH: "architecture not supported",
  E_UNSUPPORTED_QUANT: "quantization method not supported",
  E_BNB: "bitsandbytes quant state is inconsistent",
  E_MISSING_TENSOR: "an expected tensor is missing",
  E_UNEXPECTED_TENSOR: "a tensor that no rule maps",
  E_NONFINITE: "tensor holds NaN or Inf",
  E_TYPE: "requested output type is not possible",
  E_IMATRIX_REQUIRED: "type needs an importance matrix",
  // GGUF input (inspect / verify)
  E_GGUF_FORMAT: "GGUF file is malformed",
  // output
  E_OUTPUT_EXISTS: "output file exists (use --force)",
  E_DISK_SPACE: "not enough free disk space",
  E_WRITE: "writing the output failed",
  E_INTERRUPTED: "interrupted",
  E_USAGE: "bad command-line usage",
  E_VERIFY: "verification failed",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorContext {
  file?: string;
  tensor?: string;
  cause?: unknown;
}

export class GgufyError extends Error {
  readonly code: ErrorCode;
  readonly file?: string;
  readonly tensor?: string;
  /** the problem alone, without file/tensor decoration */
  readonly detail: string;

  constructor(code: ErrorCode, detail: string, ctx: ErrorContext = {}) {
    const where = [ctx.file ? `${ctx.file}` : "", ctx.tensor ? `tensor '${ctx.tensor}'` : ""].filter(Boolean).join(": ");
    super(`${code}: ${where ? where + ": " : ""}${detail}`, ctx.cause !== undefined ? { cause: ctx.cause } : undefined);
    this.name = "GgufyError";
    this.code = code;
    this.detail = detail;
    if (ctx.file !== undefined) this.file = ctx.file;
    if (ctx.tensor !== undefined) this.tensor = ctx.tensor;
  }

  get exitCode(): number {
    if (this.code === "E_INTERRUPTED") return 130;
    if (this.code === "E_USAGE") return 64;
    if (this.code === "E_VERIFY") return 3;
    return 2;
  }
}

export function isGgufyError(e: unknown): e is GgufyError {
  return e instanceof GgufyError;
}
