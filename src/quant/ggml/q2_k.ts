/**
 * Q2_K: 256-value super-blocks of 16 × 16 with 2-bit levels, 4-bit scale + 4-bit min per group and
 * fp16 d/dmin (84 bytes: scales[16], qs[64], d, dmin). Bit-exact with ggml's quantize_row_q2_K_ref
 * (llama-quantize's path without an imatrix) and dequantize_row_q2_K.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, makeQkx2, nearestInt, pack2bit, putF16, qkx2StepNumerators, qkxTheMin, toF16 } from "./kquant-common.js";

const QK = 256;
const SIZE = 84;
const STEPS = qkx2StepNumerators(3, -0.5, 0.1, 15);
const L = new Uint8Array(QK);
const W = new Float64Array(16);
const SC = new Float64Array(16);
const MN = new Float64Array(16);

export const q2_k: BlockCodec = {
  type: GGMLType.Q2_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("Q2_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const xo = b * QK;
      const o = b * SIZE;
      let maxScale = 0;
      let maxMin = 0;
      for (let j = 0; j < 16; ++j) {
        const go = xo + 16 * j;
        for (let l = 0; l < 16; ++l) W[l] = Math.abs(src[go + l]!);
        const s = makeQkx2(src, go, 16, 3, W, L, 16 * j, STEPS, true);
        const m = qkxTheMin;
        SC[j] = s;
        MN[j] = m;
        if (s > maxScale) maxScale = s;
        if (m > maxMin) maxMin = m;
      }
      let dh = 0;
      if (maxScale > 0) {
        const is = F(15 / maxScale);
        for (let j = 0; j < 16; ++j) dst[o + j] = nearestInt(F(is * SC[j]!)) & 0xff;
        dh = toF16(F(maxScale / 15));
      } else {
        for (let j = 0; j < 16; ++j) dst[o + j] = 0;
      }
      let mh = 0;
      if (maxMin > 0) {
        const im = F(15 / maxMin);
        for (let j = 0; j < 16; ++j) dst[o + j] = (dst[o + j]! | (nearestInt(F(im * MN[j]!)) << 4)) & 0xff;
        mh = toF16(F(maxMin / 15));
      }
      putF16(dst, o + 80, dh);
      putF16(dst, o + 82, mh);
      const d = H2F[dh]!;
      const dmin = H2F[mh]!;
      for (let j = 0; j < 16; ++j) {
        const sc = dst[o + j]!;
        const dd = F(d * (sc & 15));
        if (dd === 0) continue; // keep the search's levels
        const dm = F(dmin * (sc >> 4));
        const go = xo + 16 * j;
        for (let ii = 0; ii < 16; ++ii) {
          let l = nearestInt(F(F(src[go + ii]! + dm) / dd));
          if (l < 0) l = 0;
          else if (l > 3) l = 3;
          L[16 * j + ii] = l;
        }
      }
      pack2bit(dst, o + 16, L);
    }
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q2_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * SIZE;
      const d = H2F[src[o + 80]! | (src[o + 81]! << 8)]!;
      const min = H2F[src[o + 82]! | (src[o + 83]! << 8)]!;
      let y = b * QK;
      let is = 0;
      for (let h = 0; h < 2; ++h) {
        const q = o + 16 + 32 * h;
        for (let shift = 0; shift < 8; shift += 2) {
          let sc = src[o + is++]!;
          let dl = F(d * (sc & 15));
          let ml = F(min * (sc >> 4));
          for (let l = 0; l < 16; ++l) dst[y++] = F(dl * ((src[q + l]! >> shift) & 3)) - ml;
          sc = src[o + is++]!;
          dl = F(d * (sc & 15));
          ml = F(min * (sc >> 4));
          for (let l = 0; l < 16; ++l) dst[y++] = F(dl * ((src[q + 16 + l]! >> shift) & 3)) - ml;
        }
      }
    }
  },
};
