/**
 * Ternary types (BitNet b1.58 / TriLM): TQ1_0 (54 bytes: qs[48] with 5 trits per byte, qh[4] with
 * 4 trits per byte, fp16 d) and TQ2_0 (66 bytes: qs[64] with 4 × 2-bit codes per byte, fp16 d).
 * Bit-exact with ggml's quantize_row_tq1_0_ref / tq2_0_ref and their dequantizers.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, lroundInt, putF16, toF16 } from "./kquant-common.js";

const QK = 256;
const TQ1_SIZE = 54;
const TQ2_SIZE = 66;

/** amax as the MAX(amax, |x|) reduction (a NaN may become amax and is replaced by the next value). */
function blockAmax(x: Float32Array, xo: number): number {
  let amax = 0;
  for (let j = 0; j < QK; ++j) {
    const a = Math.abs(x[xo + j]!);
    amax = amax > a ? amax : a;
  }
  return amax;
}

/** C: `uint8_t q = 0; for n: q *= 3; q += xi;` then `q = ((uint16_t)q * 256 + 242) / 243`. */
function packTrits(x: Float32Array, p: number, stride: number, count: number, id: number): number {
  let q = 0;
  for (let n = 0; n < count; ++n) {
    const xi = lroundInt(F(x[p + n * stride]! * id)) + 1;
    q = (q * 3 + xi) & 0xff;
  }
  return q;
}

export const tq1_0: BlockCodec = {
  type: GGMLType.TQ1_0,
  blockSize: QK,
  typeSize: TQ1_SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("TQ1_0", src, dst, QK, TQ1_SIZE);
    for (let b = 0; b < nb; ++b) {
      const xo = b * QK;
      const o = b * TQ1_SIZE;
      const d = blockAmax(src, xo);
      const id = d !== 0 ? F(1 / d) : 0;
      putF16(dst, o + 52, toF16(d));
      for (let m = 0; m < 32; ++m) {
        const q = packTrits(src, xo + m, 32, 5, id);
        dst[o + m] = ((q * 256 + 242) / 243) | 0;
      }
      for (let m = 0; m < 16; ++m) {
        const q = packTrits(src, xo + 160 + m, 16, 5, id);
        dst[o + 32 + m] = ((q * 256 + 242) / 243) | 0;
      }
      for (let j = 0; j < 4; ++j) {
        const q = (packTrits(src, xo + 240 + j, 4, 4, id) * 3) & 0xff;
        dst[o + 48 + j] = ((q * 256 + 242) / 243) | 0;
      }
    }
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("TQ1_0", src, dst, QK, TQ1_SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * TQ1_SIZE;
      const d = H2F[src[o + 52]! | (src[o + 53]! << 8)]!;
      let y = b * QK;
      for (let p = 1, n = 0; n < 5; ++n, p *= 3) {
        for (let m = 0; m < 32; ++m) dst[y++] = ((((src[o + m]! * p) & 0xff) * 3 >> 8) - 1) * d;
      }
      for (let p = 1, n = 0; n < 5; ++n, p *= 3) {
        for (let m = 0; m < 16; ++m) dst[y++] = ((((src[o + 32 + m]! * p) & 0xff) * 3 >> 8) - 1) * d;
      }
      for (let p = 1, n = 0; n < 4; ++n, p *= 3) {
        for (let j = 0; j < 4; ++j) dst[y++] = ((((src[o + 48 + j]! * p) & 0xff) * 3 >> 8) - 1) * d;
      }
    }
  },
};

export const tq2_0: BlockCodec = {
  type: GGMLType.TQ2_0,
  blockSize: QK,
  typeSize: TQ2_SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("TQ2_0", src, dst, QK, TQ2_SIZE);
    for (let b = 0; b < nb; ++b) {
      const xo = b * QK;
      const o = b * TQ2_SIZE;
      const d = blockAmax(src, xo);
      const id = d !== 0 ? F(1 / d) : 0;
      putF16(dst, o + 64, toF16(d));
      for (let c = 0; c < 2; ++c) {
        for (let m = 0; m < 32; ++m) {
          let q = 0;
          for (let n = 0; n < 4; ++n) {
            const xi = lroundInt(F(src[xo + 128 * c + 32 * n + m]! * id)) + 1;
            q += (xi & 3) << (2 * n);
          }
          dst[o + 32 * c + m] = q & 0xff;
        }
      }
    }
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("TQ2_0", src, dst, QK, TQ2_SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * TQ2_SIZE;
      const d = H2F[src[o + 64]! | (src[o + 65]! << 8)]!;
      let y = b * QK;
      for (let c = 0; c < 2; ++c) {
        for (let n = 0; n < 4; ++n) {
          const sh = 2 * n;
          for (let m = 0; m < 32; ++m) dst[y++] = (((src[o + 32 * c + m]! >> sh) & 3) - 1) * d;
        }
      }
    }
  },
};
