/**
 * Q5_K: as Q4_K with 5-bit levels, the fifth bit in qh[32] (176 bytes: d, dmin, scales[12], qh[32],
 * qs[128]). Bit-exact with ggml's quantize_row_q5_K_ref and dequantize_row_q5_K. The codec is k45.ts's.
 */
import { GGMLType } from "./types.js";
import { F, qkx2StepNumerators } from "./kquant-common.js";
import { k45Family } from "./k45.js";

/** level bit 4 into qh (bit 2c for L[64c + l], 2c + 1 for L[64c + 32 + l]), the low nibbles into qs as Q4_K */
function pack(L: Uint8Array, dst: Uint8Array, o: number): void {
  const qh = o + 16;
  const ql = o + 48;
  dst.fill(0, qh, qh + 32);
  for (let c = 0; c < 4; ++c) {
    const m1 = 1 << (2 * c);
    const m2 = m1 << 1;
    for (let l = 0; l < 32; ++l) {
      let a = L[64 * c + l]!;
      if (a > 15) {
        a -= 16;
        dst[qh + l] |= m1;
      }
      let b2 = L[64 * c + 32 + l]!;
      if (b2 > 15) {
        b2 -= 16;
        dst[qh + l] |= m2;
      }
      dst[ql + 32 * c + l] = a | (b2 << 4);
    }
  }
}

function chunk(src: Uint8Array, o: number, c: number, dst: Float32Array, y: number, d1: number, m1: number, d2: number, m2: number): void {
  const qh = o + 16;
  const q = o + 48 + 32 * c;
  const sh1 = 2 * c;
  const sh2 = sh1 + 1;
  for (let l = 0; l < 32; ++l) dst[y + l] = F(d1 * ((src[q + l]! & 15) | (((src[qh + l]! >> sh1) & 1) << 4))) - m1;
  for (let l = 0; l < 32; ++l) dst[y + 32 + l] = F(d2 * ((src[q + l]! >> 4) | (((src[qh + l]! >> sh2) & 1) << 4))) - m2;
}

/** make_qkx2_quants(32, 31, x, weights, L, &min, Laux, -0.5f, 0.1f, 15, false) */
export const Q5_K_FAMILY = k45Family({ type: GGMLType.Q5_K, name: "Q5_K", nmax: 31, steps: qkx2StepNumerators(31, -0.5, 0.1, 15), size: 176, pack, chunk });
export const { scalar: quantizeQ5KScalar, available: Q5_K_WASM, kernel: Q5_K_KERNEL, codec: q5_k } = Q5_K_FAMILY;
