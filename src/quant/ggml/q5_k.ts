/**
 * Q5_K: as Q4_K with 5-bit levels, the fifth bit in qh[32] (176 bytes: d, dmin, scales[12], qh[32],
 * qs[128]). Bit-exact with ggml's quantize_row_q5_K_ref and dequantize_row_q5_K.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { k45WasmQuantizer } from "./kquant-wasm.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, minK4, qkx2StepNumerators, quantizeK45Block, scaleK4 } from "./kquant-common.js";

const QK = 256;
const SIZE = 176;
const STEPS = qkx2StepNumerators(31, -0.5, 0.1, 15);
const L = new Uint8Array(QK);

/** The TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input). */
export function quantizeQ5KScalar(src: Float32Array, dst: Uint8Array): void {
  const nb = checkQuantizeArgs("Q5_K", src, dst, QK, SIZE);
  for (let b = 0; b < nb; ++b) {
    const o = b * SIZE;
    quantizeK45Block(src, b * QK, 31, STEPS, L, dst, o);
    pack(L, 0, dst, o);
  }
}

function pack(L: Uint8Array, lo: number, dst: Uint8Array, o: number): void {
  const qh = o + 16;
  const ql = o + 48;
  for (let l = 0; l < 32; ++l) dst[qh + l] = 0;
  for (let c = 0; c < 4; ++c) {
    const m1 = 1 << (2 * c);
    const m2 = m1 << 1;
    for (let l = 0; l < 32; ++l) {
      let a = L[lo + 64 * c + l]!;
      if (a > 15) {
        a -= 16;
        dst[qh + l] |= m1;
      }
      let b2 = L[lo + 64 * c + 32 + l]!;
      if (b2 > 15) {
        b2 -= 16;
        dst[qh + l] |= m2;
      }
      dst[ql + 32 * c + l] = a | (b2 << 4);
    }
  }
}

const fast = k45WasmQuantizer("q5_k", 31, STEPS, SIZE, quantizeQ5KScalar);
/** Whether the WebAssembly SIMD search (kquant-wasm.ts) is in use (instantiates it). */
export const Q5_K_WASM = fast.available;
/** The kernel itself, instantiated (tests: its flags). */
export const Q5_K_KERNEL = fast.kernel;

export const q5_k: BlockCodec = {
  type: GGMLType.Q5_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("Q5_K", src, dst, QK, SIZE);
    if (fast.quantize(src.subarray(0, nb * QK), dst)) return;
    quantizeQ5KScalar(src, dst);
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q5_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * SIZE;
      const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
      const min = H2F[src[o + 2]! | (src[o + 3]! << 8)]!;
      const qh = o + 16;
      let y = b * QK;
      for (let c = 0; c < 4; ++c) {
        const d1 = F(d * scaleK4(src, o + 4, 2 * c));
        const m1 = F(min * minK4(src, o + 4, 2 * c));
        const d2 = F(d * scaleK4(src, o + 4, 2 * c + 1));
        const m2 = F(min * minK4(src, o + 4, 2 * c + 1));
        const sh1 = 2 * c;
        const sh2 = sh1 + 1;
        const q = o + 48 + 32 * c;
        for (let l = 0; l < 32; ++l) dst[y + l] = F(d1 * ((src[q + l]! & 15) | (((src[qh + l]! >> sh1) & 1) << 4))) - m1;
        for (let l = 0; l < 32; ++l) dst[y + 32 + l] = F(d2 * ((src[q + l]! >> 4) | (((src[qh + l]! >> sh2) & 1) << 4))) - m2;
        y += 64;
      }
    }
  },
};
