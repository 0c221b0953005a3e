/**
 * Q4_K: 256-value super-blocks of 8 × 32 with 4-bit levels, 6-bit scales and mins, fp16 d/dmin
 * (144 bytes: d, dmin, scales[12], qs[128]). Bit-exact with ggml's quantize_row_q4_K_ref (the path
 * llama-quantize takes without an imatrix) and dequantize_row_q4_K.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { k45WasmQuantizer } from "./kquant-wasm.js";
import { F, H2F, checkDequantizeArgs, checkQuantizeArgs, minK4, qkx2StepNumerators, quantizeK45Block, scaleK4 } from "./kquant-common.js";

const QK = 256;
const SIZE = 144;
const STEPS = qkx2StepNumerators(15, -1, 0.1, 20);
const L = new Uint8Array(QK);

/** The TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input). */
export function quantizeQ4KScalar(src: Float32Array, dst: Uint8Array): void {
  const nb = checkQuantizeArgs("Q4_K", src, dst, QK, SIZE);
  for (let b = 0; b < nb; ++b) {
    const o = b * SIZE;
    quantizeK45Block(src, b * QK, 15, STEPS, L, dst, o);
    pack(L, 0, dst, o);
  }
}

function pack(L: Uint8Array, lo: number, dst: Uint8Array, o: number): void {
  const q = o + 16;
  for (let c = 0; c < 4; ++c) {
    for (let l = 0; l < 32; ++l) dst[q + 32 * c + l] = L[lo + 64 * c + l]! | (L[lo + 64 * c + 32 + l]! << 4);
  }
}

const fast = k45WasmQuantizer("q4_k", 15, STEPS, SIZE, quantizeQ4KScalar);
/** Whether the WebAssembly SIMD search (kquant-wasm.ts) is in use (instantiates it). */
export const Q4_K_WASM = fast.available;
/** The kernel itself, instantiated (tests: its flags). */
export const Q4_K_KERNEL = fast.kernel;

export const q4_k: BlockCodec = {
  type: GGMLType.Q4_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("Q4_K", src, dst, QK, SIZE);
    if (fast.quantize(src.subarray(0, nb * QK), dst)) return;
    quantizeQ4KScalar(src, dst);
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q4_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * SIZE;
      const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
      const min = H2F[src[o + 2]! | (src[o + 3]! << 8)]!;
      let y = b * QK;
      for (let c = 0; c < 4; ++c) {
        const d1 = F(d * scaleK4(src, o + 4, 2 * c));
        const m1 = F(min * minK4(src, o + 4, 2 * c));
        const d2 = F(d * scaleK4(src, o + 4, 2 * c + 1));
        const m2 = F(min * minK4(src, o + 4, 2 * c + 1));
        const q = o + 16 + 32 * c;
        for (let l = 0; l < 32; ++l) dst[y + l] = F(d1 * (src[q + l]! & 15)) - m1;
        for (let l = 0; l < 32; ++l) dst[y + 32 + l] = F(d2 * (src[q + l]! >> 4)) - m2;
        y += 64;
      }
    }
  },
};
