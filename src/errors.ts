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
  E_QUANT: "a quantized module (GPTQ, AWQ, FP8, compressed-tensors) is inconsistent",
  E_MISSING_TENSOR: "an expected tensor is missing",
  E_UNEXPECTED_TENSOR: "a tensor that no rule maps",
  E_NONFINITE: "tensor holds NaN or Inf",
  E_TYPE: "requested output type is not possible",
  E_IMATRIX_REQUIRED: "type needs an importance matrix",
  E_LORA: "a LoRA adapter is invalid, unsupported, or does not fit the base model",
  E_IMATRIX: "importance matrix file is invalid or does not fit the model",
  // GGUF input (inspect / verify)
  E_GGUF_FORMAT: "GGUF file is malformed",
  // output
  E_OUTPUT_EXISTS: "output file exists (use --force)",
  E_DISK_SPACE: "not enough free disk space",
  E_WRITE: "writing the output failed",
  E_INTERRUPTED: "interrupted",
  E_USAGE: "bad command-line usage",
  E_VERIFY: "verification failed",
  // model references (hf:owner/name)
  E_HUB: "the Hugging Face Hub refused or failed a request",
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
    // names and details come from untrusted files: the message stays one printable line
    const where = [ctx.file ? `${oneLine(ctx.file)}` : "", ctx.tensor ? `tensor '${oneLine(ctx.tensor)}'` : ""].filter(Boolean).join(": ");
    super(`${code}: ${where ? where + ": " : ""}${oneLine(detail)}`, ctx.cause !== undefined ? { cause: ctx.cause } : undefined);
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

/** Control characters (newlines, escapes, C1) written as \n, \u001b …; long strings cut in the middle. */
export function oneLine(s: string, max = 2000): string {
  // eslint-disable-next-line no-control-regex
  let out = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  if (out.length > max) out = `${out.slice(0, max - 40)} … (${out.length - max + 40} more characters)`;
  return out;
}

/** A short, safe rendering of an untrusted JSON value for a message (no deep recursion, bounded length). */
export function brief(v: unknown, max = 80): string {
  let out = "";
  const walk = (x: unknown, depth: number): void => {
    if (out.length > max) return;
    if (Array.isArray(x)) {
      if (depth > 3) { out += "[…]"; return; }
      out += "[";
      for (let i = 0; i < x.length && out.length <= max; i++) {
        if (i) out += ",";
        walk(x[i], depth + 1);
      }
      out += "]";
    } else if (x !== null && typeof x === "object") {
      out += depth > 3 ? "{…}" : `{${Object.keys(x).slice(0, 4).map((k) => JSON.stringify(k.slice(0, 40))).join(",")}${Object.keys(x).length > 4 ? ",…" : ""}}`;
    } else if (x === undefined) {
      out += "(missing)";
    } else if (typeof x === "string") {
      out += JSON.stringify(x.length > max ? x.slice(0, max) + "…" : x);
    } else out += String(x);
  };
  walk(v, 0);
  return out.length > max ? out.slice(0, max) + "…" : out;
}

/**
 * Where JSON.parse failed, as "line L, column C (character N)". V8 does not always say (for
 * "Unexpected token" it quotes the text instead), so a small iterative scanner finds the first
 * offending character. Returns undefined if the scanner sees no error.
 */
export function jsonErrorPosition(text: string): string | undefined {
  const n = text.length;
  let i = 0;
  const ws = (): void => {
    while (i < n && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  };
  const fail = (): string => {
    const before = text.slice(0, i);
    const line = before.split("\n").length;
    const col = i - before.lastIndexOf("\n");
    return `line ${line}, column ${col} (character ${i})`;
  };
  const str = (): boolean => {
    i++; // opening quote
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) { i++; return true; }
      if (c < 0x20) return false;
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) { i++; return false; }
          i += 6;
        } else if (e !== undefined && "\"\\/bfnrt".includes(e)) i += 2;
        else { i++; return false; }
      } else i++;
    }
    return false;
  };
  const num = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const stack: ("[" | "{")[] = [];
  // states: value expected, or after a value inside a container
  let wantValue = true;
  for (;;) {
    ws();
    if (wantValue) {
      const c = text[i];
      if (c === "{" || c === "[") {
        stack.push(c);
        i++;
        ws();
        if (text[i] === (c === "{" ? "}" : "]")) { stack.pop(); i++; wantValue = false; continue; }
        if (c === "{") {
          if (text[i] !== '"' || !str()) return fail();
          ws();
          if (text[i] !== ":") return fail();
          i++;
        }
        continue;
      }
      if (c === '"') { if (!str()) return fail(); }
      else if (text.startsWith("true", i)) i += 4;
      else if (text.startsWith("false", i)) i += 5;
      else if (text.startsWith("null", i)) i += 4;
      else {
        num.lastIndex = i;
        if (!num.test(text)) return fail();
        i = num.lastIndex;
      }
      wantValue = false;
      continue;
    }
    const top = stack[stack.length - 1];
    if (top === undefined) return i < n ? fail() : undefined;
    const c = text[i];
    if (c === ",") {
      i++;
      if (top === "{") {
        ws();
        if (text[i] !== '"' || !str()) return fail();
        ws();
        if (text[i] !== ":") return fail();
        i++;
      }
      wantValue = true;
    } else if (c === (top === "{" ? "}" : "]")) {
      stack.pop();
      i++;
    } else return fail();
  }
}

/** JSON.parse's complaint plus where it happened, one line. */
export function jsonErrorDetail(text: string, e: unknown): string {
  const pos = jsonErrorPosition(text);
  const msg = oneLine(String((e as Error)?.message ?? e), 160);
  if (!pos) return msg;
  return /at position \d+/.test(msg) ? `${msg} (${pos.replace(/ \(character \d+\)$/, "")})` : `${msg} at ${pos}`;
}
