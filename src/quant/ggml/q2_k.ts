/**
 * Q2_K: 256-value super-blocks of 16 × 16 with 2-bit levels, 4-bit scale + 4-bit min per group and
 * fp16 d/dmin (84 bytes: scales[16], qs[64], d, dmin). Bit-exact with ggml's quantize_row_q2_K_ref
 * (llama-quantize's path without an imatrix) and dequantize_row_q2_K.
 *
 * Two paths give the same bytes: the TypeScript reference below (quantizeQ2KScalar: makeQkx2 per
 * sub-block), which is also the fallback (no WebAssembly SIMD, GGUFY_NO_WASM, and any super-block
 * holding a NaN or an infinity), and the WebAssembly SIMD kernel of q2_k-wasm.ts (search,
 * re-quantization, packing). Both use the same super-block tail (q2kTail: 4-bit scales and mins,
 * fp16 d/dmin).
 */
import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { F, H2F, KQuantScratch, checkDequantizeArgs, checkQuantizeArgs, makeQkx2, nearestInt, putF16, qkx2StepNumerators, toF16 } from "./kquant-common.js";
import { Q2_BLOCKS, q2Kernel } from "./q2_k-wasm.js";
import { kquantQuantize } from "./kquant16-wasm.js";

const QK = 256;
const SIZE = 84;
const STEPS = qkx2StepNumerators(3, -0.5, 0.1, 15);

/**
 * quantize_row_q2_K_ref after the searches: the 4-bit scales and mins of the 16 sub-blocks
 * (sc[so..so+16), mn[so..so+16)) into dst[o..o+16), fp16 d and dmin at o+80 / o+82, and the
 * re-quantization factors d·(scale & 15) into dd[so + j] and dmin·(scale >> 4) into dm[so + j].
 */
export function q2kTail(sc: ArrayLike<number>, mn: ArrayLike<number>, so: number, dst: Uint8Array, o: number, dd: { [i: number]: number }, dm: { [i: number]: number }): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; ++j) {
    const s = sc[so + j]!;
    const m = mn[so + j]!;
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  let dh = 0;
  if (maxScale > 0) {
    const is = F(15 / maxScale);
    for (let j = 0; j < 16; ++j) dst[o + j] = nearestInt(F(is * sc[so + j]!)) & 0xff;
    dh = toF16(F(maxScale / 15));
  } else {
    for (let j = 0; j < 16; ++j) dst[o + j] = 0;
  }
  let mh = 0;
  if (maxMin > 0) {
    const im = F(15 / maxMin);
    for (let j = 0; j < 16; ++j) dst[o + j] = (dst[o + j]! | (nearestInt(F(im * mn[so + j]!)) << 4)) & 0xff;
    mh = toF16(F(maxMin / 15));
  }
  putF16(dst, o + 80, dh);
  putF16(dst, o + 82, mh);
  const d = H2F[dh]!;
  const dmin = H2F[mh]!;
  for (let j = 0; j < 16; ++j) {
    const s = dst[o + j]!;
    dd[so + j] = F(d * (s & 15));
    dm[so + j] = F(dmin * (s >> 4));
  }
}

/** 2-bit packing of the 256 levels L[lo..lo+256) into qs at dst[q..q+64) (quantize_row_q2_K_ref / _q3_K_ref). */
export function pack2bitAt(dst: Uint8Array, q: number, L: Uint8Array | Int8Array, lo: number): void {
  for (let h = 0; h < 2; ++h) {
    const b = lo + 128 * h;
    const d = q + 32 * h;
    for (let l = 0; l < 32; ++l) dst[d + l] = (L[b + l]! | (L[b + l + 32]! << 2) | (L[b + l + 64]! << 4) | (L[b + l + 96]! << 6)) & 0xff;
  }
}

/** quantize_row_q2_K_ref's sixteen searches for the super-block at src[xo..]: levels into s.L, scales and mins into s.sc, s.mn. */
export function q2kSearch(s: KQuantScratch, src: Float32Array, xo: number): void {
  const { w: W, L, sc: SC, mn: MN } = s;
  const kx = s.min;
  for (let j = 0; j < 16; ++j) {
    const go = xo + 16 * j;
    for (let l = 0; l < 16; ++l) W[l] = Math.abs(src[go + l]!);
    SC[j] = makeQkx2(src, go, 16, 3, W, L, 16 * j, STEPS, true, kx);
    MN[j] = kx.theMin;
  }
}

/** The rest of quantize_row_q2_K_ref after q2kSearch: tail, re-quantization and packing into dst[o..o+84). */
export function q2kFinish(s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number): void {
  const { L, dd: DDs, dm: DMs } = s;
  q2kTail(s.sc, s.mn, 0, dst, o, DDs, DMs);
  for (let j = 0; j < 16; ++j) {
    const dd = DDs[j]!;
    if (dd === 0) continue; // keep the search's levels
    const dm = DMs[j]!;
    const go = xo + 16 * j;
    for (let ii = 0; ii < 16; ++ii) {
      let l = nearestInt(F(F(src[go + ii]! + dm) / dd));
      if (l < 0) l = 0;
      else if (l > 3) l = 3;
      L[16 * j + ii] = l;
    }
  }
  pack2bitAt(dst, o + 16, L, 0);
}

/**
 * The TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input).
 * `s`: working memory, made per call unless the caller passes one to reuse.
 */
export function quantizeQ2KScalar(src: Float32Array, dst: Uint8Array, s: KQuantScratch = new KQuantScratch()): void {
  const nb = checkQuantizeArgs("Q2_K", src, dst, QK, SIZE);
  for (let b = 0; b < nb; ++b) {
    q2kSearch(s, src, b * QK);
    q2kFinish(s, src, b * QK, dst, b * SIZE);
  }
}

const kernel = q2Kernel(STEPS);
/** Whether the WebAssembly SIMD search (q2_k-wasm.ts) is in use (instantiates it). */
export const Q2_K_WASM = (): boolean => kernel.available();

export const q2_k: BlockCodec = {
  type: GGMLType.Q2_K,
  blockSize: QK,
  typeSize: SIZE,
  quantize: kquantQuantize("Q2_K", SIZE, kernel, Q2_BLOCKS, (k, bi, out, o) => q2kTail(k.scales, k.mins, bi * 16, out, o, k.dd, k.dm), quantizeQ2KScalar),
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
