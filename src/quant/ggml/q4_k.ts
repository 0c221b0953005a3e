/**
 * Q4_K: 256-value super-blocks of 8 × 32 with 4-bit levels, 6-bit scales and mins, fp16 d/dmin
 * (144 bytes: d, dmin, scales[12], qs[128]). Bit-exact with ggml's quantize_row_q4_K_ref (the path
 * llama-quantize takes without an imatrix) and dequantize_row_q4_K. The codec is k45.ts's, shared with Q5_K.
 */
import { GGMLType } from "./types.js";
import { F, qkx2StepNumerators } from "./kquant-common.js";
import { k45Family } from "./k45.js";

/** qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4 */
function pack(L: Uint8Array, dst: Uint8Array, o: number): void {
  const q = o + 16;
  for (let c = 0; c < 4; ++c) {
    for (let l = 0; l < 32; ++l) dst[q + 32 * c + l] = L[64 * c + l]! | (L[64 * c + 32 + l]! << 4);
  }
}

function chunk(src: Uint8Array, o: number, c: number, dst: Float32Array, y: number, d1: number, m1: number, d2: number, m2: number): void {
  const q = o + 16 + 32 * c;
  for (let l = 0; l < 32; ++l) dst[y + l] = F(d1 * (src[q + l]! & 15)) - m1;
  for (let l = 0; l < 32; ++l) dst[y + 32 + l] = F(d2 * (src[q + l]! >> 4)) - m2;
}

/** make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1.f, 0.1f, 20, false) */
export const Q4_K_FAMILY = k45Family({ type: GGMLType.Q4_K, name: "Q4_K", nmax: 15, steps: qkx2StepNumerators(15, -1, 0.1, 20), size: 144, pack, chunk });
export const { scalar: quantizeQ4KScalar, available: Q4_K_WASM, kernel: Q4_K_KERNEL, codec: q4_k } = Q4_K_FAMILY;
