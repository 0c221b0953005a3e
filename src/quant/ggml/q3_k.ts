/**
 * Q3_K: 256-value super-blocks of 16 × 16 with 3-bit signed levels (2 low bits in qs, the third in
 * hmask) and 6-bit signed scales, fp16 d (110 bytes: hmask[32], qs[64], scales[12], d). Bit-exact
 * with ggml's quantize_row_q3_K_ref and dequantize_row_q3_K.
 *
 * Two paths give the same bytes: the TypeScript reference below (quantizeQ3KScalar: makeQ3Quants per
 * sub-block), which is also the fallback (no WebAssembly SIMD, GGUFY_NO_WASM, and any super-block
 * holding a NaN or an infinity), and the WebAssembly SIMD kernel of q3_k-wasm.ts (search,
 * re-quantization, hmask and 2-bit packing). Both use the same super-block tail (q3kTail: 6-bit
 * scales, fp16 d).
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, KQuantScratch, checkDequantizeArgs, checkQuantizeArgs, makeQ3Quants, nearestInt, putF16, toF16 } from "./kquant-common.js";
import { Q3_BLOCKS, q3Kernel } from "./q3_k-wasm.js";
import { kquantQuantize } from "./kquant16-wasm.js";

const QK = 256;
const SIZE = 110;

/**
 * quantize_row_q3_K_ref after the searches: the 6-bit scales of the 16 sub-blocks (sc[so..so+16))
 * into dst[o+96..o+108), fp16 d at o+108, and the re-quantization factors d·(scale − 32) into dd[so + j].
 */
export function q3kTail(sc: ArrayLike<number>, so: number, dst: Uint8Array, o: number, dd: { [i: number]: number }): void {
  let maxScale = 0;
  let amax = 0;
  for (let j = 0; j < 16; ++j) {
    const s = sc[so + j]!;
    const as = Math.abs(s);
    if (as > amax) {
      amax = as;
      maxScale = s;
    }
  }
  const q = o + 96;
  for (let k = 0; k < 12; ++k) dst[q + k] = 0;
  if (maxScale === 0) {
    putF16(dst, o + 108, 0);
    for (let j = 0; j < 16; ++j) dd[so + j] = 0; // d = 0 · (0 − 32)
    return;
  }
  const is = F(-32 / maxScale);
  for (let j = 0; j < 16; ++j) {
    let l = (nearestInt(F(is * sc[so + j]!)) << 24) >> 24; // int8_t
    l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
    if (j < 8) dst[q + j] = l & 15;
    else dst[q + j - 8] |= (l & 15) << 4;
    dst[q + 8 + (j & 3)] |= (l >> 4) << (2 * (j >> 2));
  }
  const dh = toF16(F(1 / is));
  putF16(dst, o + 108, dh);
  const d = H2F[dh]!;
  for (let j = 0; j < 16; ++j) {
    const lo = j < 8 ? dst[q + j]! & 15 : dst[q + j - 8]! >> 4;
    const sc6 = lo | (((dst[q + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3) << 4);
    dd[so + j] = F(d * (sc6 - 32));
  }
}

/** hmask (bit k of byte m: level 32k + m > 3) and the 2-bit qs of the 256 levels L[lo..lo+256) in 0..7. */
export function q3kPack(dst: Uint8Array, o: number, L: Uint8Array | Int8Array, lo: number): void {
  for (let m = 0; m < 32; ++m) {
    let h = 0;
    for (let k = 0; k < 8; ++k) h |= (L[lo + 32 * k + m]! >> 2) << k;
    dst[o + m] = h;
  }
  for (let c = 0; c < 2; ++c) {
    const b = lo + 128 * c;
    const d = o + 32 + 32 * c;
    for (let l = 0; l < 32; ++l) dst[d + l] = (L[b + l]! & 3) | ((L[b + l + 32]! & 3) << 2) | ((L[b + l + 64]! & 3) << 4) | ((L[b + l + 96]! & 3) << 6);
  }
}

/** quantize_row_q3_K_ref's sixteen searches for the super-block at src[xo..]: levels into s.L8, scales into s.sc. */
export function q3kSearch(s: KQuantScratch, src: Float32Array, xo: number): void {
  const { L8: L, sc: SC } = s;
  for (let j = 0; j < 16; ++j) SC[j] = makeQ3Quants(src, xo + 16 * j, 16, 4, L, 16 * j);
}

/** The rest of quantize_row_q3_K_ref after q3kSearch: tail, re-quantization and packing into dst[o..o+110). */
export function q3kFinish(s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  const { L8: L, dd: DDs } = s;
  q3kTail(s.sc, 0, dst, o, DDs);
  for (let j = 0; j < 16; ++j) {
    const dd = DDs[j]!;
    if (dd === 0) continue; // keep the search's levels
    const go = xo + 16 * j;
    for (let ii = 0; ii < 16; ++ii) {
      let l = nearestInt(F(src[go + ii]! / dd));
      if (l < -4) l = -4;
      else if (l > 3) l = 3;
      L[16 * j + ii] = l + 4;
    }
  }
  q3kPack(dst, o, L, 0);
}

/**
 * The TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input).
 * `s`: working memory, made per call unless the caller passes one to reuse.
 */
export function quantizeQ3KScalar(src: Float32Array, dst: Uint8Array, s: KQuantScratch = new KQuantScratch()): void {
  const nb = checkQuantizeArgs("Q3_K", src, dst, QK, SIZE);
  for (let b = 0; b < nb; ++b) {
    q3kSearch(s, src, b * QK);
    q3kFinish(s, src, b * QK, dst, b * SIZE);
  }
}

const kernel = q3Kernel();
/** Whether the WebAssembly SIMD search (q3_k-wasm.ts) is in use (instantiates it). */
export const Q3_K_WASM = (): boolean => kernel.available();

export const q3_k: BlockCodec = {
  type: GGMLType.Q3_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize: kquantQuantize("Q3_K", SIZE, kernel, Q3_BLOCKS, (k, bi, out, o) => q3kTail(k.scales, bi * 16, out, o, k.dd), quantizeQ3KScalar),
  dequantize(src, dst) {
    const nb = checkDequantizeArgs("Q3_K", src, dst, QK, SIZE);
    const SCL = new Int32Array(16); // unpacked scales of the current super-block
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
