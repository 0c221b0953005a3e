/**
 * ggml itself, as a test oracle: the shared libraries that node-llama-cpp@3.21.1 ships, called
 * through koffi. Test-only (dev dependencies). ggml-base is built for baseline x86-64, so its
 * quantizer output does not depend on the CPU.
 */
import koffi from "koffi";
import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";

const require = createRequire(import.meta.url);

export function llamaBinDir(): string {
  // the platform package has an exports map, so locate it through node-llama-cpp's own folder
  const nlc = path.dirname(require.resolve("node-llama-cpp"));
  let dir = nlc;
  while (!fs.existsSync(path.join(dir, "node_modules", "@node-llama-cpp", "linux-x64")) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const bins = path.join(dir, "node_modules", "@node-llama-cpp", "linux-x64", "bins");
  const sub = fs.readdirSync(bins).find((d) => fs.existsSync(path.join(bins, d, "libggml-base.so")));
  if (!sub) throw new Error(`no libggml-base.so under ${bins}`);
  return path.join(bins, sub);
}

export interface GgmlOracle {
  /** ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix ?? NULL) → bytes (imatrix: n_per_row floats) */
  quantizeChunk(type: number, src: Float32Array, nPerRow: number, imatrix?: Float32Array | null): Uint8Array;
  /** ggml type_traits to_float for a whole buffer of n values */
  dequantize(type: number, src: Uint8Array, n: number): Float32Array;
  fp32ToFp16Row(src: Float32Array): Uint16Array;
  fp32ToBf16RowRef(src: Float32Array): Uint16Array;
  rowSize(type: number, n: number): number;
  requiresImatrix(type: number): boolean;
  lib: ReturnType<typeof koffi.load>;
}

let cached: GgmlOracle | undefined;

export function ggmlOracle(): GgmlOracle {
  if (cached) return cached;
  const lib = koffi.load(path.join(llamaBinDir(), "libggml-base.so"));
  const quantize_chunk = lib.func("size_t ggml_quantize_chunk(int type, const float *src, _Out_ uint8_t *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)");
  const row_size = lib.func("size_t ggml_row_size(int type, int64_t ne)");
  const fp16_row = lib.func("void ggml_fp32_to_fp16_row(const float *x, _Out_ uint16_t *y, int64_t n)");
  const bf16_row = lib.func("void ggml_fp32_to_bf16_row_ref(const float *x, _Out_ uint16_t *y, int64_t n)");
  const req_imatrix = lib.func("bool ggml_quantize_requires_imatrix(int type)");
  const init = lib.func("void ggml_quantize_init(int type)");
  // type_traits: struct ggml_type_traits { const char* type_name; int64_t blck_size; int64_t blck_size_interleave; size_t type_size; bool is_quantized; to_float_t to_float; from_float_ref_t from_float_ref; }
  const ToFloat = koffi.proto("void ggml_to_float_cb(const uint8_t *x, _Out_ float *y, int64_t k)");
  const Traits = koffi.struct("ggml_type_traits_s", {
    type_name: "const char *",
    blck_size: "int64_t",
    blck_size_interleave: "int64_t",
    type_size: "size_t",
    is_quantized: "bool",
    to_float: "void *",
    from_float_ref: "void *",
  });
  const get_traits = lib.func("const ggml_type_traits_s *ggml_get_type_traits(int type)");
  cached = {
    lib,
    rowSize: (type, n) => Number(row_size(type, n)),
    requiresImatrix: (type) => Boolean(req_imatrix(type)),
    quantizeChunk(type, src, nPerRow, imatrix) {
      if (imatrix && imatrix.length !== nPerRow) throw new Error(`imatrix of ${imatrix.length} floats for rows of ${nPerRow}`);
      init(type);
      const nrows = src.length / nPerRow;
      const size = Number(row_size(type, nPerRow)) * nrows;
      const dst = new Uint8Array(size);
      const written = Number(quantize_chunk(type, src, dst, 0, nrows, nPerRow, imatrix ?? null));
      if (written !== size) throw new Error(`ggml_quantize_chunk wrote ${written}, expected ${size}`);
      return dst;
    },
    dequantize(type, src, n) {
      const p = get_traits(type);
      const traits = koffi.decode(p, Traits) as { to_float: unknown };
      const fn = koffi.decode(traits.to_float, ToFloat) as (x: Uint8Array, y: Float32Array, k: number) => void;
      const out = new Float32Array(n);
      fn(src, out, n);
      return out;
    },
    fp32ToFp16Row(src) {
      const out = new Uint16Array(src.length);
      fp16_row(src, out, src.length);
      return out;
    },
    fp32ToBf16RowRef(src) {
      const out = new Uint16Array(src.length);
      bf16_row(src, out, src.length);
      return out;
    },
  };
  return cached;
}
