import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16 } from "../../formats/half.js";
import { H2F } from "./kquant-common.js";
import {
  F, KSIGNS, SIGN_MUL, IQ3XXS_GRID, IQ3S_GRID, IqScratch, type IqGroups, signsAndMagnitudes, maxMagnitude, searchIqScale, gridIndexOfGroup,
  nearestInt, clampI, checkDeqArgs, latticeIq3xxs, latticeIq3s,
} from "./iq-common.js";
import { iqKernel, quantizeIqBlocks, type IqBlockResults, type IqKernel } from "./iq-wasm.js";
import type { LazyKernel } from "../wasm/instantiate.js";

/**
 * IQ3_XXS (3.0625 bpw) and IQ3_S (3.4375 bpw): 256-blocks of 4-vectors on the D4-lattice grids of
 * 256 / 512 points. Ports of ggml-quants.c quantize_row_iq3_xxs_impl(256, …) (quantize_iq3_xxs) and
 * quantize_row_iq3_s_impl(32, …) (quantize_iq3_s), dequantize_row_iq3_xxs / _s. Both take a NULL
 * importance vector (weight = x²). Every float32 operation is one Math.fround in the C order.
 */

const EPS_IQ3_XXS = F(1e-8); // GROUP_MAX_EPS_IQ3_XXS
const P2 = F(0.2);
const QK = 256;
const kMaxQ = 8;

/** weights of one 32-value sub-block (weight = qw·√(σ² + x²), or x² without an importance vector), then signs and |x| */
function prepare(s: IqScratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, sigma2: number, parity: boolean): void {
  const weight = s.weight;
  if (qw) {
    for (let i = 0; i < 32; i++) weight[i] = F(qw[qo + i]! * F(Math.sqrt(F(sigma2 + F(x[xo + i]! * x[xo + i]!)))));
  } else {
    for (let i = 0; i < 32; i++) weight[i] = F(x[xo + i]! * x[xo + i]!);
  }
  signsAndMagnitudes(s, x, xo, 32, parity);
}

function sigma2Of(x: Float32Array, xo: number): number {
  let sumx2 = 0;
  for (let i = 0; i < QK; i++) sumx2 = F(sumx2 + F(x[xo + i]! * x[xo + i]!));
  return F(F(2 * sumx2) / QK);
}

let groupsXxs: IqGroups | undefined, groupsS: IqGroups | undefined;
const iq3xxsGroups = (): IqGroups => (groupsXxs ??= { lat: latticeIq3xxs(), n: 32, kMaxQ, bits: 3, range: 15, step: P2, requant: "off-grid", initOnGrid: true });
const iq3sGroups = (): IqGroups => (groupsS ??= { lat: latticeIq3s(), n: 32, kMaxQ, bits: 3, range: 9, step: P2, requant: "all", initOnGrid: false });

/** quantize_row_iq3_xxs_impl(256, …)'s search for one 256-block: sub-block scales, grid indices and signs into r */
function searchIq3xxsBlock(s: IqScratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, r: IqBlockResults): void {
  const g = iq3xxsGroups();
  const { L, signs } = s;
  const sigma2 = sigma2Of(x, xo);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + 32 * ib;
    prepare(s, x, xb, qw, qo + 32 * ib, sigma2, true);
    const max = maxMagnitude(s, 32);
    L.fill(0);
    r.skip[ib] = 1;
    r.scales[ib] = 0;
    if (max < EPS_IQ3_XXS) continue;
    let scale = searchIqScale(s, g, max, F(max / (2 * kMaxQ - 1)));
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 4; k++) signs[k] = ~signs[k]! & 127;
    }
    for (let k = 0; k < 8; k++) r.gi[8 * ib + k] = gridIndexOfGroup(s, g, k);
    for (let k = 0; k < 4; k++) r.signs[4 * ib + k] = signs[k]!;
    r.skip[ib] = 0;
    r.scales[ib] = scale;
  }
}

/** the rest of quantize_row_iq3_xxs_impl: block b of r → 98 bytes at dst[o] (C's q3 buffer is dst[o+2..o+98), written in place) */
function packIq3xxs(r: IqBlockResults, b: number, dst: Uint8Array, o: number): void {
  let maxScale = 0;
  for (let ib = 0; ib < 8; ib++) {
    if (r.skip[16 * b + ib]) continue;
    const scale = r.scales[16 * b + ib]!;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  dst.fill(0, o, o + 98);
  if (!maxScale) return;
  const q3 = o + 2;
  for (let ib = 0; ib < 8; ib++) {
    if (r.skip[16 * b + ib]) continue;
    for (let k = 0; k < 8; k++) dst[q3 + 8 * ib + k] = r.gi[64 * b + 8 * ib + k]!;
    const sg = r.signs;
    const j = 32 * b + 4 * ib;
    const ss = (sg[j]! | (sg[j + 1]! << 7) | (sg[j + 2]! << 14) | (sg[j + 3]! << 21)) >>> 0;
    const p = q3 + 64 + 4 * ib;
    dst[p] = ss & 255;
    dst[p + 1] = (ss >>> 8) & 255;
    dst[p + 2] = (ss >>> 16) & 255;
    dst[p + 3] = ss >>> 24;
  }
  const d = F(maxScale / 31);
  const h = toF16(F(d * F(1.0125)));
  dst[o] = h & 255;
  dst[o + 1] = h >> 8;
  const id = F(1 / d);
  for (let ib = 0; ib < 8; ib++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * r.scales[16 * b + ib]!) - 1))), 0, 15);
    dst[q3 + 64 + 4 * ib + 3]! |= l << 4;
  }
}

/** quantize_row_iq3_s_impl(32, …)'s search for one 256-block */
function searchIq3sBlock(s: IqScratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, r: IqBlockResults): void {
  const g = iq3sGroups();
  const { L, signs } = s;
  const sigma2 = sigma2Of(x, xo);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + 32 * ib;
    prepare(s, x, xb, qw, qo + 32 * ib, sigma2, false);
    const max = maxMagnitude(s, 32);
    L.fill(0);
    r.skip[ib] = 1;
    r.scales[ib] = 0;
    if (!max) continue;
    let scale = searchIqScale(s, g, max, F(max / (2 * kMaxQ - 1)));
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 4; k++) signs[k] = ~signs[k]! & 255;
    }
    for (let k = 0; k < 8; k++) r.gi[8 * ib + k] = gridIndexOfGroup(s, g, k);
    for (let k = 0; k < 4; k++) r.signs[4 * ib + k] = signs[k]!;
    r.skip[ib] = 0;
    r.scales[ib] = scale;
  }
}

/** the rest of quantize_row_iq3_s_impl: block b of r → 110 bytes at dst[o] */
function packIq3s(r: IqBlockResults, b: number, dst: Uint8Array, o: number): void {
  dst.fill(0, o, o + 110);
  let maxScale = 0;
  // ggml advances its qs and signs pointers at the end of the sub-block loop body, so an all-zero
  // sub-block (the `continue`) does not advance them: later sub-blocks' bytes move down (qh does not)
  let qsOff = o + 2;
  let signsOff = o + 74;
  for (let ib = 0; ib < 8; ib++) {
    if (r.skip[16 * b + ib]) continue;
    for (let k = 0; k < 8; k++) {
      const gi = r.gi[64 * b + 8 * ib + k]!;
      dst[qsOff + k] = gi & 255;
      dst[o + 66 + ib]! |= (gi >> 8) << k;
    }
    qsOff += 8;
    for (let k = 0; k < 4; k++) dst[signsOff + k] = r.signs[32 * b + 4 * ib + k]!;
    signsOff += 4;
    const scale = r.scales[16 * b + ib]!;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) return;
  const d = F(maxScale / 31);
  const h = toF16(F(d * F(1.033)));
  dst[o] = h & 255;
  dst[o + 1] = h >> 8;
  const id = F(1 / d);
  for (let ib = 0; ib < 8; ib += 2) {
    const l1 = clampI(nearestInt(F(0.5 * F(F(id * r.scales[16 * b + ib]!) - 1))), 0, 15);
    const l2 = clampI(nearestInt(F(0.5 * F(F(id * r.scales[16 * b + ib + 1]!) - 1))), 0, 15);
    dst[o + 106 + (ib >> 1)] = l1 | (l2 << 4);
  }
}

/** The kernels' per-type data (iq-wasm.ts) */
const kXxs = iqKernel("iq3_xxs", () => ({ name: "iq3_xxs", g: iq3xxsGroups(), parity: true, eps: EPS_IQ3_XXS, noQw: "x2", sigma2Two: true, qp: false }));
const kS = iqKernel("iq3_s", () => ({ name: "iq3_s", g: iq3sGroups(), parity: false, eps: 0, noQw: "x2", sigma2Two: true, qp: false }));

function dequantIq3xxs(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ3_XXS", src, dst, 98);
  for (let i = 0; i < nb; i++) {
    const o = i * 98;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const p = o + 66 + 4 * ib;
      const aux = (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;
      const db = F(F(d * (0.5 + (aux >>> 28))) * 0.5);
      for (let l = 0; l < 4; l++) {
        const s = KSIGNS[(aux >>> (7 * l)) & 127]!;
        const g1 = src[o + 2 + 8 * ib + 2 * l]! * 4;
        const g2 = src[o + 2 + 8 * ib + 2 * l + 1]! * 4;
        const y = 256 * i + 32 * ib + 8 * l;
        for (let j = 0; j < 4; j++) {
          dst[y + j] = db * IQ3XXS_GRID[g1 + j]! * SIGN_MUL[8 * s + j]!;
          dst[y + j + 4] = db * IQ3XXS_GRID[g2 + j]! * SIGN_MUL[8 * s + j + 4]!;
        }
      }
    }
  }
}

function dequantIq3s(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ3_S", src, dst, 110);
  for (let i = 0; i < nb; i++) {
    const o = i * 110;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[o + 106 + (ib >> 1)]!;
      const db = F(d * (1 + 2 * (ib & 1 ? sc >> 4 : sc & 15)));
      const qh = src[o + 66 + ib]!;
      for (let l = 0; l < 4; l++) {
        const g1 = (src[o + 2 + 8 * ib + 2 * l]! | ((qh << (8 - 2 * l)) & 256)) * 4;
        const g2 = (src[o + 2 + 8 * ib + 2 * l + 1]! | ((qh << (7 - 2 * l)) & 256)) * 4;
        const s = src[o + 74 + 4 * ib + l]!;
        const y = 256 * i + 32 * ib + 8 * l;
        for (let j = 0; j < 4; j++) {
          dst[y + j] = db * IQ3S_GRID[g1 + j]! * SIGN_MUL[8 * s + j]!;
          dst[y + j + 4] = db * IQ3S_GRID[g2 + j]! * SIGN_MUL[8 * s + j + 4]!;
        }
      }
    }
  }
}

const qXxs = (k: LazyKernel<IqKernel> | null) => (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void =>
  quantizeIqBlocks("IQ3_XXS", 98, src, dst, qw, false, k, () => new IqScratch(), searchIq3xxsBlock, packIq3xxs);
const qS = (k: LazyKernel<IqKernel> | null) => (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void =>
  quantizeIqBlocks("IQ3_S", 110, src, dst, qw, false, k, () => new IqScratch(), searchIq3sBlock, packIq3s);

export const iq3_xxs: BlockCodec = {
  type: GGMLType.IQ3_XXS,
  blockSize: 256,
  typeSize: 98,
  quantize: qXxs(kXxs),
  dequantize: dequantIq3xxs,
};

export const iq3_s: BlockCodec = {
  type: GGMLType.IQ3_S,
  blockSize: 256,
  typeSize: 110,
  quantize: qS(kS),
  dequantize: dequantIq3s,
};

/** the wasm kernels (tests: whether they are in use) */
export const iq3Kernels = { iq3_xxs: kXxs, iq3_s: kS };
/** the TypeScript-only quantizers (tests: same bytes as the kernels) */
export const iq3Reference = { iq3_xxs: qXxs(null), iq3_s: qS(null) };
