import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16, f16Lut } from "../../formats/half.js";

/**
 * Q8_0: 32 values per block, fp16 scale + 32 int8 levels (34 bytes).
 * Bit-exact port of ggml's quantize_row_q8_0_ref / dequantize_row_q8_0 (spec §5.5):
 *   amax = MAX-reduction of |x|; d = amax/127; id = d ? 1/d : 0; q = (int8) roundf(x*id).
 * Every float32 operation is one Math.fround of the double result (exact emulation).
 *
 * Speed notes: the |x| maximum is taken on the float bit patterns (non-negative floats order like
 * their bits), falling back to the C loop when a NaN is present; roundf is done branch-free as
 * trunc(|v| + 0.5) with the input's sign bit reapplied (id ≥ 0, so sign(v) = sign(x)); the level
 * loop is unrolled by 4 (V8 does not unroll).
 */

const QK = 32;
const BYTES = 34;
const fr = Math.fround;

// scratch for float <-> bits; module-level so the hot loop never allocates
const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value: inline fast path for normal results, half.ts's toF16 otherwise. */
function f16(d: number): number {
  sF[0] = d;
  const u = sI[0]!;
  const a = u & 0x7fffffff;
  if (a >= 0x38800000 && a < 0x477ff000) {
    const r = a - 0x38000000;
    return ((u >>> 16) & 0x8000) | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  return toF16(d);
}

function quantize(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    let m = 0;
    for (let j = x0; j < x0 + QK; j++) m = Math.max(m, si[j]! & 0x7fffffff);
    let amax: number;
    if (m > 0x7f800000) {
      // a NaN is present: C's MAX(a, b) = a > b ? a : b lets a NaN through, the next element replaces it
      amax = 0;
      for (let j = x0; j < x0 + QK; j++) {
        const a = Math.abs(src[j]!);
        amax = amax > a ? amax : a;
      }
    } else {
      sI[0] = m;
      amax = sF[0]!;
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    // (int8) roundf(v): half away from zero. NaN → 0 (x86 cvttss2si gives INT_MIN, low byte 0; |0 gives 0).
    for (let j = x0, q = o + 2; j < x0 + QK; j += 4, q += 4) {
      const r0 = (fr(Math.abs(src[j]!) * id) + 0.5) | 0;
      const s0 = si[j]! >> 31;
      const r1 = (fr(Math.abs(src[j + 1]!) * id) + 0.5) | 0;
      const s1 = si[j + 1]! >> 31;
      const r2 = (fr(Math.abs(src[j + 2]!) * id) + 0.5) | 0;
      const s2 = si[j + 2]! >> 31;
      const r3 = (fr(Math.abs(src[j + 3]!) * id) + 0.5) | 0;
      const s3 = si[j + 3]! >> 31;
      dst[q] = (r0 ^ s0) - s0;
      dst[q + 1] = (r1 ^ s1) - s1;
      dst[q + 2] = (r2 ^ s2) - s2;
      dst[q + 3] = (r3 ^ s3) - s3;
    }
  }
}

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    // y = (float)q * d, one float32 rounding (done by the Float32Array store)
    for (let j = o + 2; j < o + 2 + QK; j++, y++) dst[y] = ((src[j]! << 24) >> 24) * d;
  }
}

export const q8_0: BlockCodec = {
  type: GGMLType.Q8_0,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
