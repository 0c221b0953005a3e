/**
 * Q6_K: 256-value super-blocks of 16 × 16 with 6-bit levels (4 low bits in ql, 2 high in qh) and
 * int8 scales, fp16 d (210 bytes: ql[128], qh[64], scales[16], d). Bit-exact with ggml's
 * quantize_row_q6_K_ref and dequantize_row_q6_K.
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { q6kWasmQuantizer } from "./kquant-wasm.js";
import { F, H2F, KQuantScratch, checkDequantizeArgs, checkQuantizeArgs, makeQxQuants, nearestInt, q6kTail, qxTrialNumerators } from "./kquant-common.js";

const QK = 256;
const SIZE = 210;
const TRIALS = qxTrialNumerators(32);

/** quantize_row_q6_K_ref's sixteen searches for the super-block at src[xo..]: levels into s.L, scales into s.sc. */
export function q6kSearch(s: KQuantScratch, src: Float32Array, xo: number): void {
  const { L, sc: SC } = s;
  for (let j = 0; j < 16; ++j) SC[j] = makeQxQuants(src, xo + 16 * j, 16, 32, L, 16 * j, TRIALS);
}

/** The rest of quantize_row_q6_K_ref after q6kSearch: tail, re-quantization and packing into dst[o..o+210). */
export function q6kFinish(s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  const { L, dd: DD } = s;
  if (!q6kTail(s.sc, 0, dst, o, DD, 0)) return; // all zero
  for (let j = 0; j < 16; ++j) {
    const dd = DD[j]!;
    if (dd === 0) continue; // keep the search's levels
    const go = xo + 16 * j;
    for (let ii = 0; ii < 16; ++ii) {
      let l = nearestInt(F(src[go + ii]! / dd));
      if (l < -32) l = -32;
      else if (l > 31) l = 31;
      L[16 * j + ii] = l + 32;
    }
  }
  pack(L, 0, dst, o);
}

/**
 * The TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input).
 * `s`: working memory, made per call unless the caller passes one to reuse.
 */
export function quantizeQ6KScalar(src: Float32Array, dst: Uint8Array, s: KQuantScratch = new KQuantScratch()): void {
  const nb = checkQuantizeArgs("Q6_K", src, dst, QK, SIZE);
  for (let b = 0; b < nb; ++b) {
    q6kSearch(s, src, b * QK);
    q6kFinish(s, src, b * QK, dst, b * SIZE);
  }
}

function pack(L: Uint8Array, lo: number, dst: Uint8Array, o: number): void {
  for (let h = 0; h < 2; ++h) {
    const bl = 128 * h;
    const ql = o + 64 * h;
    const qh = o + 128 + 32 * h;
    for (let l = 0; l < 32; ++l) {
      const a = L[lo + bl + l]!;
      const c = L[lo + bl + 32 + l]!;
      const e = L[lo + bl + 64 + l]!;
      const g = L[lo + bl + 96 + l]!;
      dst[ql + l] = (a & 15) | ((e & 15) << 4);
      dst[ql + 32 + l] = (c & 15) | ((g & 15) << 4);
      dst[qh + l] = (a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6);
    }
  }
}

const fast = q6kWasmQuantizer(TRIALS, quantizeQ6KScalar);
/** Whether the WebAssembly SIMD search (kquant-wasm.ts) is in use (instantiates it). */
export const Q6_K_WASM = fast.available;
/** The kernel itself, instantiated (tests: its flags). */
export const Q6_K_KERNEL = fast.kernel;

export const q6_k: BlockCodec = {
  type: GGMLType.Q6_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize(src, dst) {
    const nb = checkQuantizeArgs("Q6_K", src, dst, QK, SIZE);
    if (fast.quantize(src.subarray(0, nb * QK), dst)) return;
    quantizeQ6KScalar(src, dst);
  },
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q6_K", src, dst, QK, SIZE);
    for (let b = 0; b < nb; ++b) {
      const o = b * SIZE;
      const d = H2F[src[o + 208]! | (src[o + 209]! << 8)]!;
      for (let h = 0; h < 2; ++h) {
        const ql = o + 64 * h;
        const qh = o + 128 + 32 * h;
        const sc = o + 192 + 8 * h;
        const y = b * QK + 128 * h;
        for (let l = 0; l < 32; ++l) {
          const is = l >> 4;
          const hb = src[qh + l]!;
          const q1 = ((src[ql + l]! & 15) | ((hb & 3) << 4)) - 32;
          const q2 = ((src[ql + 32 + l]! & 15) | (((hb >> 2) & 3) << 4)) - 32;
          const q3 = ((src[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
          const q4 = ((src[ql + 32 + l]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
          dst[y + l] = F(d * ((src[sc + is]! << 24) >> 24)) * q1;
          dst[y + 32 + l] = F(d * ((src[sc + is + 2]! << 24) >> 24)) * q2;
          dst[y + 64 + l] = F(d * ((src[sc + is + 4]! << 24) >> 24)) * q3;
          dst[y + 96 + l] = F(d * ((src[sc + is + 6]! << 24) >> 24)) * q4;
        }
      }
    }
  },
};
