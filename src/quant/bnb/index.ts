/**
 * bitsandbytes (bnb) checkpoints: detection, validation and bit-exact dequantization.
 *
 * Formats (bitsandbytes functional.py: QuantState.from_dict / as_dict, dequantize_4bit, dequantize_blockwise,
 * get_4bit_type, create_dynamic_map; csrc/kernels.cu kDequantizeBlockwise, dDequantizeNF4; nn/modules.py
 * Linear4bit / Linear8bitLt; transformers integrations/bitsandbytes.py; summary in docs/bitsandbytes.md):
 *  - 4-bit NF4 / FP4 (`Linear4bit`): `<w>` packed nibbles (high nibble = even element; raw bytes, whatever
 *    the stored dtype — `quant_storage`), `<w>.absmax` (F32, or U8 codes with double quantization),
 *    `<w>.quant_map`, [`<w>.nested_absmax`, `<w>.nested_quant_map`], `<w>.quant_state.bitsandbytes__nf4|fp4`
 *    (JSON: quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]).
 *    Decoded as `RNE_dtype(f32(CODE[nibble] * absmax[i / blocksize]))`, dtype from the JSON.
 *  - LLM.int8 (`Linear8bitLt`): `<m>.weight` I8 [out, in], `<m>.SCB` F32 [out], optional `<m>.weight_format`
 *    (0 = row; other layouts are refused). Decoded as `f32(f32(CB * SCB) * f32(1/127))`, then cast to the
 *    model dtype (see DetectBnbOptions.int8Dtype).
 *
 * Typical use:
 * ```ts
 * const ckpt = await SafetensorsCheckpoint.open(dir);
 * const mods = await detectBnb(ckpt.tensors, (n) => ckpt.read(n), configJson, dir);
 * const skip = bnbAuxKeys(mods);                      // tensors not to convert on their own
 * for (const m of mods.values()) {
 *   for (let r = 0; r < m.rows; r += 256)            // stream in row chunks
 *     use(await decodeBnbRows(m, (n, o, l) => ckpt.read(n, o, l), r, Math.min(256, m.rows - r)));
 * }
 * ```
 *
 * Public API:
 *  - `detectBnb(tensorInfos, readSmall, quantConfig?, file?, options?) → Promise<Map<weightName, BnbModule>>`
 *  - `decodeBnbRows(module, read, row0, nRows) → Promise<Float32Array>` (row-major, values exact in module.dtype)
 *  - `decodeBnb(module, read)` — all rows
 *  - `describeBnb(module) → string`, e.g. "nf4-dq bs64 bf16 (u8 storage)"
 *  - `bnbAuxKeys(modules) → Set<string>`
 *  - `bnbDecoder`: the checkpoint scheme (src/source/schemes/bnb.ts, registered in src/source/registry.ts)
 *  - pure kernels: `dequantize4bit`, `reconstructNestedAbsmax`, `dequantizeInt8Rows`, `roundToDtypeInPlace`
 *  - tables: `NF4_CODE`, `FP4_CODE` (nibble 8 = -0.0), `INT8_DEQUANT_SCALE`, `INT8_WEIGHT_FORMATS`
 *
 * Errors are GgufyError: E_BNB (incomplete or inconsistent quant state; the message names the module and the
 * missing / inconsistent key or field), E_UNSUPPORTED_QUANT (quant_method other than bitsandbytes).
 */
export type { BnbDtype, Bnb4bitType } from "./decode.js";
export { dequantize4bit, reconstructNestedAbsmax, dequantizeInt8Rows, roundToDtypeInPlace, roundScalarToDtype, codeFor } from "./decode.js";
export { NF4_CODE, FP4_CODE, INT8_DEQUANT_SCALE, INT8_WEIGHT_FORMATS } from "./tables.js";
export type { BnbTensorInfo, BnbReadSmall, BnbReadRange, BnbModule, Bnb4bitModule, BnbInt8Module, BnbNestedState, DetectBnbOptions } from "./types.js";
export { detectBnb, describeBnb } from "./detect.js";
export { decodeBnbRows, decodeBnb } from "./rows.js";
export { bnbDecoder } from "../../source/schemes/bnb.js";

import type { BnbModule } from "./types.js";

/** Every auxiliary tensor name the modules consume (absmax, quant maps, quant_state, SCB, weight_format). */
export function bnbAuxKeys(modules: ReadonlyMap<string, BnbModule>): Set<string> {
  const s = new Set<string>();
  for (const m of modules.values()) for (const k of m.auxKeys) s.add(k);
  return s;
}
