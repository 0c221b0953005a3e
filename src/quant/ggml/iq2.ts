import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16 } from "../../formats/half.js";
import { H2F } from "./kquant-common.js";
import {
  F, KSIGNS, SIGN_MUL, IQ2XXS_GRID, IQ2XS_GRID, IQ2S_GRID, IqScratch, type IqGroups, signsAndMagnitudes, maxMagnitude, searchIqScale,
  gridIndexOfGroup, nearestInt, clampI, checkDeqArgs, latticeIq2xxs, latticeIq2xs, latticeIq2s,
} from "./iq-common.js";
import { iqKernel, quantizeIqBlocks, type IqBlockResults, type IqKernel } from "./iq-wasm.js";
import type { LazyKernel } from "../wasm/instantiate.js";

/**
 * IQ2_XXS (2.0625 bpw), IQ2_XS (2.3125 bpw), IQ2_S (2.5625 bpw): 256-blocks of 8-vectors on the E8
 * lattice grids. Ports of ggml-quants.c quantize_row_iq2_xxs_impl / quantize_row_iq2_xs_impl /
 * quantize_row_iq2_s_impl (with make_qp_quants for IQ2_XXS) and dequantize_row_iq2_xxs / _xs / _s.
 * Every float32 operation is one Math.fround in the C order. IQ2_XXS and IQ2_XS need an importance
 * vector (ggml asserts quant_weights); IQ2_S without one uses weight = sigma2/4 + x² as ggml does.
 */

const EPS = F(1e-15); // GROUP_MAX_EPS
const EPS_IQ2_S = F(1e-8); // GROUP_MAX_EPS_IQ2_S
const P1 = F(0.1);
const QK = 256;

/** The per-call working set: the shared IQ scratch plus make_qp_quants' levels. */
class Iq2Scratch extends IqScratch {
  readonly LV = new Int32Array(32);
}

/** make_qp_quants(n, nmax, x, L, quant_weights) over xval/weight (ggml-quants.c); only the scale is used. */
function makeQpQuants(s: Iq2Scratch, n: number, nmax: number): number {
  const { xval, weight } = s;
  let max = 0;
  for (let i = 0; i < n; i++) max = max > xval[i]! ? max : xval[i]!;
  if (max < EPS) return 0;
  const Lq = s.Laux; // scratch (the caller recomputes its levels)
  let iscale = F(nmax / max);
  for (let i = 0; i < n; i++) Lq[i] = nearestInt(F(iscale * xval[i]!)) & 255; // uint8_t L
  const sc = F(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const l = Lq[i]! & 255;
    const diff = F(xval[i]! - F(sc * l));
    bestMse = F(bestMse + F(F(weight[i]! * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = F(F(F(P1 * is) + nmax) / max);
    const scaleIs = F(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      let l = nearestInt(F(iscaleIs * xval[i]!));
      l = nmax < l ? nmax : l;
      const diff = F(xval[i]! - F(scaleIs * l));
      mse = F(mse + F(F(weight[i]! * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  const Lv = s.LV;
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    let l = nearestInt(F(iscale * xval[i]!));
    l = nmax < l ? nmax : l;
    Lv[i] = l & 255; // uint8_t L[i]; the sums below use the int l
    const w = weight[i]!;
    sumlx = F(sumlx + F(F(w * xval[i]!) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = weight[i]!;
      const li = Lv[i]!;
      let slx = F(sumlx - F(F(w * xval[i]!) * li));
      let sl2 = F(suml2 - F(F(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        let nl = nearestInt(F(F(xval[i]! * sl2) / slx));
        nl = nmax < nl ? nmax : nl;
        if (nl !== li) {
          slx = F(slx + F(F(w * xval[i]!) * nl));
          sl2 = F(sl2 + F(F(w * nl) * nl));
          if (F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
            Lv[i] = nl & 255;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? F(sumlx / suml2) : 0;
}

/** weights of one sub-block (qw·√(σ² + x²), or for IQ2_S without an importance vector σ²/4 + x²), then signs and |x| */
function prepare(s: Iq2Scratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, n: number, sigma2: number, parity: boolean): void {
  const weight = s.weight;
  if (qw) {
    for (let i = 0; i < n; i++) weight[i] = F(qw[qo + i]! * F(Math.sqrt(F(sigma2 + F(x[xo + i]! * x[xo + i]!)))));
  } else {
    // only IQ2_S gets here: weight = 0.25f*sigma2 + x²
    const s4 = F(0.25 * sigma2);
    for (let i = 0; i < n; i++) weight[i] = F(s4 + F(x[xo + i]! * x[xo + i]!));
  }
  signsAndMagnitudes(s, x, xo, n, parity);
}

let groupsXxs: IqGroups | undefined, groupsXs: IqGroups | undefined, groupsS: IqGroups | undefined;
const iq2xxsGroups = (): IqGroups => (groupsXxs ??= { lat: latticeIq2xxs(), n: 32, kMaxQ: 3, bits: 2, range: 6, step: P1, requant: "always", initOnGrid: true });
const iq2xsGroups = (isS: boolean): IqGroups =>
  isS
    ? (groupsS ??= { lat: latticeIq2s(), n: 16, kMaxQ: 3, bits: 2, range: 9, step: P1, requant: "off-grid", initOnGrid: true })
    : (groupsXs ??= { lat: latticeIq2xs(), n: 16, kMaxQ: 3, bits: 2, range: 9, step: P1, requant: "off-grid", initOnGrid: true });

function sigma2Of(x: Float32Array, xo: number, two: boolean): number {
  let sumx2 = 0;
  for (let i = 0; i < QK; i++) sumx2 = F(sumx2 + F(x[xo + i]! * x[xo + i]!));
  return two ? F(F(2 * sumx2) / QK) : F(sumx2 / QK);
}

/** quantize_row_iq2_xxs_impl's search for one 256-block: sub-block scales, grid indices and signs into r */
function searchIq2xxsBlock(s: Iq2Scratch, x: Float32Array, xo: number, qw: Float32Array, qo: number, r: IqBlockResults): void {
  const g = iq2xxsGroups();
  const kMaxQ = 3;
  const { signs } = s;
  const sigma2 = sigma2Of(x, xo, false);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + 32 * ib;
    prepare(s, x, xb, qw, qo + 32 * ib, 32, sigma2, true);
    r.skip[ib] = 1;
    r.scales[ib] = 0;
    const max = maxMagnitude(s, 32);
    if (max < EPS) continue;
    const scale0 = makeQpQuants(s, 32, kMaxQ + 1);
    const effMax = F(scale0 * kMaxQ);
    if (effMax <= 0) continue;
    let scale = searchIqScale(s, g, effMax, scale0);
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 4; k++) signs[k] = ~signs[k]! & 127;
    }
    for (let k = 0; k < 4; k++) {
      r.gi[4 * ib + k] = gridIndexOfGroup(s, g, k);
      r.signs[4 * ib + k] = signs[k]!;
    }
    r.skip[ib] = 0;
    r.scales[ib] = scale;
  }
}

/** the rest of quantize_row_iq2_xxs_impl: block b of r → 66 bytes at dst[o] (q2[2ib], q2[2ib+1] as two words, written as made) */
function packIq2xxs(r: IqBlockResults, b: number, dst: Uint8Array, o: number): void {
  let maxScale = 0;
  for (let ib = 0; ib < 8; ib++) {
    if (r.skip[16 * b + ib]) continue;
    const scale = r.scales[16 * b + ib]!;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  dst.fill(0, o, o + 66);
  if (!maxScale) return;
  const d = F(maxScale / 31);
  const h = toF16(d);
  dst[o] = h & 255;
  dst[o + 1] = h >> 8;
  const id = F(1 / d);
  for (let ib = 0; ib < 8; ib++) {
    let g = 0; // grid indices, 8 bits each
    let sg = 0; // signs, 7 bits each, then the 4-bit scale
    if (!r.skip[16 * b + ib]) {
      for (let k = 0; k < 4; k++) {
        g = (g | (r.gi[64 * b + 4 * ib + k]! << (8 * k))) >>> 0;
        sg = (sg | (r.signs[32 * b + 4 * ib + k]! << (7 * k))) >>> 0;
      }
    }
    const l = clampI(nearestInt(F(0.5 * F(F(id * r.scales[16 * b + ib]!) - 1))), 0, 15);
    sg = (sg | (l << 28)) >>> 0;
    const p = o + 2 + 8 * ib;
    dst[p] = g & 255;
    dst[p + 1] = (g >>> 8) & 255;
    dst[p + 2] = (g >>> 16) & 255;
    dst[p + 3] = g >>> 24;
    dst[p + 4] = sg & 255;
    dst[p + 5] = (sg >>> 8) & 255;
    dst[p + 6] = (sg >>> 16) & 255;
    dst[p + 7] = sg >>> 24;
  }
}

/** quantize_row_iq2_xs_impl (isS = false) and quantize_row_iq2_s_impl (isS = true) search: 16-sub-blocks */
function searchIq2xsBlock(s: Iq2Scratch, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, r: IqBlockResults, isS: boolean): void {
  const g = iq2xsGroups(isS);
  const kMaxQ = 3;
  const { L, signs } = s;
  const sigma2 = sigma2Of(x, xo, isS);
  for (let ib = 0; ib < 16; ib++) {
    const xb = xo + 16 * ib;
    prepare(s, x, xb, qw, qo + 16 * ib, 16, sigma2, !isS);
    const max = maxMagnitude(s, 16);
    L.fill(0, 0, 16);
    r.skip[ib] = 1;
    r.scales[ib] = 0;
    if (max < (isS ? EPS_IQ2_S : EPS)) continue;
    let scale = searchIqScale(s, g, max, F(max / (2 * kMaxQ - 1)));
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 2; k++) signs[k] = isS ? ~signs[k]! & 255 : ~signs[k]! & 127;
    }
    for (let k = 0; k < 2; k++) {
      r.gi[2 * ib + k] = gridIndexOfGroup(s, g, k);
      r.signs[2 * ib + k] = signs[k]!;
    }
    r.skip[ib] = 0;
    r.scales[ib] = scale;
  }
}

/** the rest of quantize_row_iq2_xs_impl / quantize_row_iq2_s_impl: block b of r → 74 / 82 bytes at dst[o] */
function packIq2xs(r: IqBlockResults, b: number, dst: Uint8Array, o: number, isS: boolean): void {
  const size = isS ? 82 : 74;
  dst.fill(0, o, o + size);
  let maxScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    if (r.skip[16 * b + ib]) continue;
    for (let k = 0; k < 2; k++) {
      const gi = r.gi[64 * b + 2 * ib + k]!;
      const sg = r.signs[32 * b + 2 * ib + k]!;
      const i8 = 2 * ib + k;
      if (isS) {
        dst[o + 2 + i8] = gi & 255;
        dst[o + 66 + (i8 >> 2)]! |= (gi >> 8) << (2 * (i8 % 4));
        dst[o + 2 + 32 + i8] = sg;
      } else {
        // q2 = grid | signs << 9
        const v = gi | (sg << 9);
        dst[o + 2 + 2 * i8] = v & 255;
        dst[o + 3 + 2 * i8] = v >> 8;
      }
    }
    const scale = r.scales[16 * b + ib]!;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) {
    // ggml writes IQ2_XS's qs words only after this test (IQ2_S's bytes are already in place)
    if (!isS) dst.fill(0, o, o + size);
    return;
  }
  const d = F(maxScale / 31);
  const h = toF16(isS ? F(d * F(0.9875)) : d);
  dst[o] = h & 255;
  dst[o + 1] = h >> 8;
  const id = F(1 / d);
  const so = o + (isS ? 74 : 66);
  for (let ib = 0; ib < 16; ib++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * r.scales[16 * b + ib]!) - 1))), 0, 15);
    if (ib % 2 === 0) dst[so + (ib >> 1)] = l;
    else dst[so + (ib >> 1)]! |= l << 4;
  }
}

/** The kernels' per-type data (iq-wasm.ts) */
const kXxs = iqKernel("iq2_xxs", () => ({ name: "iq2_xxs", g: iq2xxsGroups(), parity: true, eps: EPS, noQw: "none", sigma2Two: false, qp: true, qpEps: EPS, qpStep: P1 }));
const kXs = iqKernel("iq2_xs", () => ({ name: "iq2_xs", g: iq2xsGroups(false), parity: true, eps: EPS, noQw: "none", sigma2Two: false, qp: false }));
const kS = iqKernel("iq2_s", () => ({ name: "iq2_s", g: iq2xsGroups(true), parity: false, eps: EPS_IQ2_S, noQw: "s4x2", sigma2Two: true, qp: false }));

// ------------------------------------------------------------------------------------------------
// dequantisation (dequantize_row_iq2_xxs / _xs / _s)

function dequantIq2xxs(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ2_XXS", src, dst, 66);
  for (let i = 0; i < nb; i++) {
    const o = i * 66;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const p = o + 2 + 8 * ib;
      const aux1 = (src[p + 4]! | (src[p + 5]! << 8) | (src[p + 6]! << 16) | (src[p + 7]! << 24)) >>> 0;
      const db = F(F(d * (0.5 + (aux1 >>> 28))) * 0.25);
      for (let l = 0; l < 4; l++) {
        const g = src[p + l]! * 8;
        const s = KSIGNS[(aux1 >>> (7 * l)) & 127]!;
        const y = 256 * i + 32 * ib + 8 * l;
        for (let j = 0; j < 8; j++) {
          dst[y + j] = db * IQ2XXS_GRID[g + j]! * SIGN_MUL[8 * s + j]!;
        }
      }
    }
  }
}

function dequantIq2xs(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ2_XS", src, dst, 74);
  for (let i = 0; i < nb; i++) {
    const o = i * 74;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[o + 66 + ib]!;
      const db0 = F(F(d * (0.5 + (sc & 15))) * 0.25);
      const db1 = F(F(d * (0.5 + (sc >> 4))) * 0.25);
      for (let l = 0; l < 4; l++) {
        const p = o + 2 + 2 * (4 * ib + l);
        const qs = src[p]! | (src[p + 1]! << 8);
        const g = (qs & 511) * 8;
        const s = KSIGNS[qs >> 9]!;
        const db = l < 2 ? db0 : db1;
        const y = 256 * i + 32 * ib + 8 * l;
        for (let j = 0; j < 8; j++) {
          dst[y + j] = db * IQ2XS_GRID[g + j]! * SIGN_MUL[8 * s + j]!;
        }
      }
    }
  }
}

function dequantIq2s(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDeqArgs("IQ2_S", src, dst, 82);
  for (let i = 0; i < nb; i++) {
    const o = i * 82;
    const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
    for (let ib = 0; ib < 8; ib++) {
      const sc = src[o + 74 + ib]!;
      const db0 = F(F(d * (0.5 + (sc & 15))) * 0.25);
      const db1 = F(F(d * (0.5 + (sc >> 4))) * 0.25);
      const qh = src[o + 66 + ib]!;
      for (let l = 0; l < 4; l++) {
        const g = (src[o + 2 + 4 * ib + l]! | ((qh << (8 - 2 * l)) & 0x300)) * 8;
        const s = src[o + 34 + 4 * ib + l]!;
        const db = l < 2 ? db0 : db1;
        const y = 256 * i + 32 * ib + 8 * l;
        for (let j = 0; j < 8; j++) {
          dst[y + j] = db * IQ2S_GRID[g + j]! * SIGN_MUL[8 * s + j]!;
        }
      }
    }
  }
}

const qXxs = (k: LazyKernel<IqKernel> | null) => (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void =>
  quantizeIqBlocks("IQ2_XXS", 66, src, dst, qw, true, k, () => new Iq2Scratch(), (s, x, xo, w, qo, r) => searchIq2xxsBlock(s, x, xo, w!, qo, r), packIq2xxs);
const qXs = (k: LazyKernel<IqKernel> | null) => (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void =>
  quantizeIqBlocks("IQ2_XS", 74, src, dst, qw, true, k, () => new Iq2Scratch(), (s, x, xo, w, qo, r) => searchIq2xsBlock(s, x, xo, w, qo, r, false), (r, b, d, o) => packIq2xs(r, b, d, o, false));
const qS = (k: LazyKernel<IqKernel> | null) => (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null): void =>
  quantizeIqBlocks("IQ2_S", 82, src, dst, qw, false, k, () => new Iq2Scratch(), (s, x, xo, w, qo, r) => searchIq2xsBlock(s, x, xo, w, qo, r, true), (r, b, d, o) => packIq2xs(r, b, d, o, true));

export const iq2_xxs: BlockCodec = {
  type: GGMLType.IQ2_XXS,
  blockSize: 256,
  typeSize: 66,
  requiresImatrix: true,
  quantize: qXxs(kXxs),
  dequantize: dequantIq2xxs,
};

export const iq2_xs: BlockCodec = {
  type: GGMLType.IQ2_XS,
  blockSize: 256,
  typeSize: 74,
  requiresImatrix: true,
  quantize: qXs(kXs),
  dequantize: dequantIq2xs,
};

export const iq2_s: BlockCodec = {
  type: GGMLType.IQ2_S,
  blockSize: 256,
  typeSize: 82,
  quantize: qS(kS),
  dequantize: dequantIq2s,
};

/** the wasm kernels (tests: whether they are in use) and the TypeScript-only quantizers (tests: same bytes) */
export const iq2Kernels = { iq2_xxs: kXxs, iq2_xs: kXs, iq2_s: kS };
export const iq2Reference = { iq2_xxs: qXxs(null), iq2_xs: qXs(null), iq2_s: qS(null) };
