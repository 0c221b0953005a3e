/**
 * Q3_K: 256-value super-blocks of 16 × 16 with 3-bit signed levels (2 low bits in qs, the third in
 * hmask) and 6-bit signed scales, fp16 d (110 bytes: hmask[32], qs[64], scales[12], d). Bit-exact
 * with ggml's quantize_row_q3_K_ref and dequantize_row_q3_K.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, makeQ3Quants, nearestInt, pack2bit, putF16, toF16 } from "./kquant-common.js";

const QK = 256;
const SIZE = 110;
const L = new Int8Array(QK);
const SC = new Float64Array(16);
const V = new Int32Array(16); // stored 6-bit scales (0..63)
const SCL = new Int32Array(16); // unpacked scales, dequantize

export const q3_k: BlockCodec = {
  type: GGMLType.Q3_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("Q3_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const xo = b * QK;
      const o = b * SIZE;
      let maxScale = 0;
      let amax = 0;
      for (let j = 0; j < 16; ++j) {
        const s = makeQ3Quants(src, xo + 16 * j, 16, 4, L, 16 * j);
        SC[j] = s;
        const as = Math.abs(s);
        if (as > amax) {
          amax = as;
          maxScale = s;
        }
      }
      const so = o + 96;
      for (let k = 0; k < 12; ++k) dst[so + k] = 0;
      let dh = 0;
      if (maxScale !== 0) {
        const is = F(-32 / maxScale);
        for (let j = 0; j < 16; ++j) {
          let l = (nearestInt(F(is * SC[j]!)) << 24) >> 24; // int8_t
          l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
          V[j] = l;
          if (j < 8) dst[so + j] = l & 15;
          else dst[so + j - 8] |= (l & 15) << 4;
          dst[so + 8 + (j & 3)] |= (l >> 4) << (2 * (j >> 2));
        }
        dh = toF16(F(1 / is));
      } else {
        V.fill(0);
      }
      putF16(dst, o + 108, dh);
      const d = H2F[dh]!;
      for (let j = 0; j < 16; ++j) {
        const dd = F(d * (V[j]! - 32));
        if (dd === 0) continue; // keep the search's levels
        const go = xo + 16 * j;
        for (let ii = 0; ii < 16; ++ii) {
          let l = nearestInt(F(src[go + ii]! / dd));
          if (l < -4) l = -4;
          else if (l > 3) l = 3;
          L[16 * j + ii] = l + 4;
        }
      }
      for (let k = 0; k < 32; ++k) dst[o + k] = 0;
      for (let e = 0; e < QK; ++e) {
        if (L[e]! > 3) {
          dst[o + (e & 31)] |= 1 << (e >> 5);
          L[e] = L[e]! - 4;
        }
      }
      pack2bit(dst, o + 32, L);
    }
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q3_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * SIZE;
      const so = o + 96;
      const d = H2F[src[o + 108]! | (src[o + 109]! << 8)]!;
      for (let j = 0; j < 16; ++j) {
        const lo = j < 8 ? src[so + j]! & 15 : src[so + j - 8]! >> 4;
        SCL[j] = (lo | (((src[so + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
      }
      let y = b * QK;
      let is = 0;
      for (let h = 0; h < 2; ++h) {
        const q = o + 32 + 32 * h;
        for (let j = 0; j < 4; ++j) {
          const shift = 2 * j;
          const hb = 4 * h + j; // hmask bit of this quarter
          let dl = F(d * SCL[is++]!);
          for (let l = 0; l < 16; ++l) dst[y++] = dl * ((((src[q + l]! >> shift) & 3) | (((src[o + l]! >> hb) & 1) << 2)) - 4);
          dl = F(d * SCL[is++]!);
          for (let l = 0; l < 16; ++l) dst[y++] = dl * ((((src[q + 16 + l]! >> shift) & 3) | (((src[o + 16 + l]! >> hb) & 1) << 2)) - 4);
        }
      }
    }
  },
};
