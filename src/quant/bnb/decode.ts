/**
 * Pure bitsandbytes dequantization kernels, bit-exact with bitsandbytes' CUDA / CPU kernels:
 *
 *   4-bit:  out[i] = RNE_dtype( f32( CODE[nibble(i)] * absmax[i / blocksize] ) )
 *   nested: absmax[b] = f32( RNE_nd( f32( NQM[q[b]] * nested_absmax[b / nbs] ) ) + offset )   (nd = nested dtype)
 *   int8:   out[r,c] = RNE_dtype( f32( f32( CB[r,c] * SCB[r] ) * 0x3C010204 ) )
 *
 * JavaScript doubles hold the product (or sum) of two float32 values precisely enough (Figueroa: 53 ≥ 2·24+2 bits,
 * so rounding the double result to float32 is the correctly rounded float32 operation); storing into a
 * Float32Array performs that rounding. Nothing here clamps, takes abs or fuses operations.
 */
import { f32RowToF16, f16RowToF32 } from "../../formats/half.js";
import { NF4_CODE, FP4_CODE, INT8_DEQUANT_SCALE } from "./tables.js";

export type BnbDtype = "bf16" | "f16" | "f32";
export type Bnb4bitType = "nf4" | "fp4";

/** Round every element of a float32 array to `dtype` (IEEE round-to-nearest-even), keeping it widened to float32. */
export function roundToDtypeInPlace(a: Float32Array, dtype: BnbDtype): Float32Array {
  if (dtype === "f32" || a.length === 0) return a;
  if (dtype === "bf16") {
    // in place on the bit patterns: RNE on the low 16 bits; NaN keeps its sign and becomes quiet (as ggml)
    const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < u.length; i++) {
      const x = u[i]!;
      u[i] = (x & 0x7fffffff) > 0x7f800000 ? (x | 0x00400000) & 0xffff0000 : ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
    return a;
  }
  const CHUNK = 1 << 16;
  const tmp = new Uint16Array(Math.min(CHUNK, a.length));
  for (let s = 0; s < a.length; s += CHUNK) {
    const part = a.subarray(s, Math.min(a.length, s + CHUNK));
    const t = tmp.subarray(0, part.length);
    f32RowToF16(part, t);
    f16RowToF32(t, part);
  }
  return a;
}

/** Round one number to float32 and then to `dtype`. */
export function roundScalarToDtype(x: number, dtype: BnbDtype): number {
  const a = new Float32Array([x]);
  roundToDtypeInPlace(a, dtype);
  return a[0]!;
}

export function codeFor(quantType: Bnb4bitType): Float32Array {
  return quantType === "nf4" ? NF4_CODE : FP4_CODE;
}

/** the largest |code| of each 4-bit code (1 for both; computed, not assumed) */
const MAX_ABS_CODE = { nf4: Math.max(...Array.from(NF4_CODE, Math.abs)), fp4: Math.max(...Array.from(FP4_CODE, Math.abs)) };
/**
 * |scale| below which every f32(code · scale), rounded to the dtype, is finite: bf16's RNE reaches +inf
 * from 0x7f7f8000 (≈ 3.3961e38), f16's from 65520, f32 products stay ≤ FLT_MAX.
 */
const FINITE_SCALE = { bf16: 3.39e38, f16: 65504, f32: 3.4028234663852886e38 };

/**
 * Whether dequantize4bit of the same arguments certainly gives only finite values, judged from the
 * blocks' scales alone (every value is code · scale with |code| ≤ 1). False means "not known": a
 * non-finite or huge scale, whose values the caller then scans.
 */
export function scalesKeepFinite(elem0: number, count: number, absmax: Float32Array, block0: number, blocksize: number, quantType: Bnb4bitType, dtype: BnbDtype): boolean {
  if (count <= 0) return true;
  const lim = FINITE_SCALE[dtype] / MAX_ABS_CODE[quantType];
  const b1 = Math.floor((elem0 + count - 1) / blocksize) - block0;
  for (let b = Math.floor(elem0 / blocksize) - block0; b <= b1; b++) {
    const s = absmax[b];
    if (!(s !== undefined && Math.abs(s) <= lim)) return false;
  }
  return true;
}

/**
 * Dequantize `count` consecutive 4-bit elements of the flat (row-major) weight, starting at element `elem0`.
 *
 * @param packed  packed bytes starting at byte floor(elem0 / 2) (at least ceil((elem0 % 2 + count) / 2) bytes)
 * @param absmax  float32 scales of blocks `block0`, `block0 + 1`, … covering the range
 * @returns float32 values rounded to `dtype` (f32 products when dtype is "f32")
 */
export function dequantize4bit(
  packed: Uint8Array,
  elem0: number,
  count: number,
  absmax: Float32Array,
  block0: number,
  blocksize: number,
  quantType: Bnb4bitType,
  dtype: BnbDtype,
  out: Float32Array = new Float32Array(count),
): Float32Array {
  if (out.length < count) throw new RangeError(`dequantize4bit: output holds ${out.length} < ${count} values`);
  const code = codeFor(quantType);
  const parity = elem0 % 2;
  if (packed.length < Math.ceil((parity + count) / 2)) throw new RangeError(`dequantize4bit: ${packed.length} packed bytes for ${count} elements`);
  // Per block, the 16 possible outputs RNE_dtype(f32(CODE[q] * scale)) are tabulated once (the same
  // product, rounded by the same rule as roundToDtypeInPlace), then every element is a table lookup.
  const tb = TB;
  const tu = TBU;
  let k = 0;
  while (k < count) {
    const i = elem0 + k;
    const b = Math.floor(i / blocksize);
    const end = Math.min(count, (b + 1) * blocksize - elem0);
    const scale = absmax[b - block0];
    if (scale === undefined) throw new RangeError(`dequantize4bit: absmax for block ${b} not provided (have ${block0}..${block0 + absmax.length - 1})`);
    for (let q = 0; q < 16; q++) tb[q] = code[q]! * scale;
    if (dtype === "bf16") {
      for (let q = 0; q < 16; q++) {
        const x = tu[q]!;
        tu[q] = (x & 0x7fffffff) > 0x7f800000 ? (x | 0x00400000) & 0xffff0000 : ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
      }
    } else if (dtype === "f16") roundToDtypeInPlace(tb, "f16");
    // a leading odd element (low nibble), then whole bytes, then a trailing even element (high nibble)
    if (k < end && ((k + parity) & 1) === 1) {
      out[k] = tb[packed[(k + parity) >> 1]! & 0x0f]!;
      k++;
    }
    let p = (k + parity) >> 1;
    for (; k + 1 < end; k += 2, p++) {
      const byte = packed[p]!;
      out[k] = tb[byte >> 4]!;
      out[k + 1] = tb[byte & 0x0f]!;
    }
    if (k < end) {
      out[k] = tb[packed[p]! >> 4]!;
      k++;
    }
  }
  return out;
}

/** dequantize4bit's per-block table of the 16 decoded values */
const TB = new Float32Array(16);
const TBU = new Uint32Array(TB.buffer);

/**
 * Reconstruct float32 absmax values of 4-bit blocks `block0 … block0 + q.length - 1` from their 8-bit codes
 * (double quantization): `dequantize_blockwise(qabsmax, state2)` in `nestedDtype`, then `+= offset`, then
 * `.float()`.
 *
 * @param q             8-bit codes of those blocks
 * @param nestedAbsmax  float32 absmax of nested blocks `nestedBlock0 …` covering them
 * @param nestedCode    the stored `nested_quant_map` (256 float32)
 * @param offset        float32 `nested_offset`
 */
export function reconstructNestedAbsmax(
  q: Uint8Array,
  block0: number,
  nestedAbsmax: Float32Array,
  nestedBlock0: number,
  nestedBlocksize: number,
  nestedCode: Float32Array,
  offset: number,
  nestedDtype: BnbDtype = "f32",
): Float32Array {
  const out = new Float32Array(q.length);
  for (let j = 0; j < q.length; j++) {
    const nb = Math.floor((block0 + j) / nestedBlocksize) - nestedBlock0;
    const s = nestedAbsmax[nb];
    if (s === undefined) throw new RangeError(`reconstructNestedAbsmax: nested absmax ${nb + nestedBlock0} not provided`);
    out[j] = nestedCode[q[j]!]! * s;
  }
  if (nestedDtype === "f32") {
    const off = Math.fround(offset);
    for (let j = 0; j < out.length; j++) out[j] = out[j]! + off;
  } else {
    // the product is stored in nested_dtype; the in-place add casts the f32 offset to that dtype, adds in
    // float32 (opmath) and stores the sum in nested_dtype again.
    roundToDtypeInPlace(out, nestedDtype);
    const off = roundScalarToDtype(offset, nestedDtype);
    for (let j = 0; j < out.length; j++) out[j] = out[j]! + off;
    roundToDtypeInPlace(out, nestedDtype);
  }
  return out;
}

/**
 * LLM.int8 rows: `int8_vectorwise_dequant` = `CB * SCB.view(-1, 1) * 7.874015718698502e-3` in float32,
 * then cast to `dtype`.
 *
 * @param cb   int8 codes of `scb.length` rows of `cols` values
 * @param scb  float32 per-row absmax of those rows
 */
export function dequantizeInt8Rows(cb: Int8Array, scb: Float32Array, cols: number, dtype: BnbDtype, out: Float32Array = new Float32Array(scb.length * cols)): Float32Array {
  const n = scb.length * cols;
  if (cb.length < n) throw new RangeError(`dequantizeInt8Rows: ${cb.length} codes for ${scb.length} rows × ${cols}`);
  const tmp = new Float32Array(1);
  for (let r = 0; r < scb.length; r++) {
    const s = scb[r]!;
    const base = r * cols;
    for (let c = 0; c < cols; c++) {
      tmp[0] = cb[base + c]! * s;
      out[base + c] = tmp[0]! * INT8_DEQUANT_SCALE;
    }
  }
  roundToDtypeInPlace(n === out.length ? out : out.subarray(0, n), dtype);
  return out;
}
