import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { toF16 } from "../../formats/half.js";
import { H2F } from "./kquant-common.js";
import {
  F, KSIGNS, IQ2XXS_GRID, IQ2XS_GRID, IQ2S_GRID, bestNeighbour, nearestInt, clampI, checkArgs, checkDeqArgs,
  latticeIq2xxs, latticeIq2xs, latticeIq2s, type Lattice,
} from "./iq-common.js";

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

const weight = new Float64Array(32);
const waux = new Float64Array(32);
const xval = new Float64Array(32);
const L = new Int8Array(32);
const Laux = new Int8Array(32);
const scales = new Float64Array(16);
const signs = new Uint8Array(4);
const onGrid = [true, true];
const onGridAux = [true, true];
const LV = new Int32Array(32);
const Q2XXS = new Uint32Array(16);
const Q2XS = new Uint16Array(32);

/** make_qp_quants(n, nmax, x, L, quant_weights) over xval/weight (ggml-quants.c); only the scale is used. */
function makeQpQuants(n: number, nmax: number): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = max > xval[i]! ? max : xval[i]!;
  if (max < EPS) return 0;
  const Lq = Laux; // scratch (the caller recomputes its levels)
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
  const Lv = LV;
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

/** weights, |x| with the sign bits (even count forced for IQ2_XXS/XS by flipping the least important) */
function prepare(x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, n: number, sigma2: number, parity: boolean): void {
  if (qw) {
    for (let i = 0; i < n; i++) weight[i] = F(qw[qo + i]! * F(Math.sqrt(F(sigma2 + F(x[xo + i]! * x[xo + i]!)))));
  } else {
    // only IQ2_S gets here: weight = 0.25f*sigma2 + x²
    const s4 = F(0.25 * sigma2);
    for (let i = 0; i < n; i++) weight[i] = F(s4 + F(x[xo + i]! * x[xo + i]!));
  }
  for (let i = 0; i < n; i++) waux[i] = F(Math.sqrt(weight[i]!));
  for (let k = 0; k < n / 8; k++) {
    let nflip = 0;
    let s = 0;
    for (let i = 0; i < 8; i++) {
      const v = x[xo + 8 * k + i]!;
      if (v >= 0) xval[8 * k + i] = v;
      else {
        xval[8 * k + i] = -v;
        nflip++;
        s |= 1 << i;
      }
    }
    if (parity && nflip % 2) {
      let imin = 0;
      let v0 = x[xo + 8 * k]!;
      let min = F(F(weight[8 * k]! * v0) * v0);
      for (let i = 1; i < 8; i++) {
        const v = x[xo + 8 * k + i]!;
        const ax = F(F(weight[8 * k + i]! * v) * v);
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      v0 = xval[8 * k + imin]!;
      xval[8 * k + imin] = -v0;
      s ^= 1 << imin;
    }
    signs[k] = parity ? s & 127 : s;
  }
}

/** levels for one 8-group at inverse scale id; returns the packed u, writes La */
function levels8(k: number, id: number, La: Int8Array): number {
  let u = 0;
  for (let i = 0; i < 8; i++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * xval[8 * k + i]!) - 1))), 0, 2);
    La[8 * k + i] = l;
    u |= l << (2 * i);
  }
  return u;
}

/** [Σ w·x·q, Σ w·q²] of the last sums() (a typed array: module-level number variables would box every double) */
const SUMS = new Float64Array(2);
/** Σ w·x·q and Σ w·q² with q = 2L + 1 (into sumqx / sumq2) */
function sums(n: number, La: Int8Array): void {
  let a = 0;
  let b = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i]!;
    const q = 2 * La[i]! + 1;
    a = F(a + F(F(w * xval[i]!) * q));
    b = F(b + F(F(w * q) * q));
  }
  SUMS[0] = a;
  SUMS[1] = b;
}

function packedU(k: number): number {
  let u = 0;
  for (let i = 0; i < 8; i++) u |= L[8 * k + i]! << (2 * i);
  return u;
}

function onGridIndex(lat: Lattice, u: number): number {
  const gi = lat.map[u]!;
  if (gi < 0) throw new Error(`IQ2 quantizer: point ${u} not on the grid`); // ggml: GGML_ABORT "Oops: found point … not on grid"
  return gi;
}

function sigma2Of(x: Float32Array, xo: number, two: boolean): number {
  let sumx2 = 0;
  for (let i = 0; i < QK; i++) sumx2 = F(sumx2 + F(x[xo + i]! * x[xo + i]!));
  return two ? F(F(2 * sumx2) / QK) : F(sumx2 / QK);
}

function quantizeIq2xxsBlock(x: Float32Array, xo: number, qw: Float32Array, qo: number, dst: Uint8Array, o: number): void {
  const lat = latticeIq2xxs();
  const kMaxQ = 3;
  const q2 = Q2XXS.fill(0);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo, false);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + 32 * ib;
    prepare(x, xb, qw, qo + 32 * ib, 32, sigma2, true);
    let max = xval[0]!;
    for (let i = 1; i < 32; i++) max = max > xval[i]! ? max : xval[i]!;
    if (max < EPS) {
      scales[ib] = 0;
      continue;
    }
    let scale = makeQpQuants(32, kMaxQ + 1);
    const effMax = F(scale * kMaxQ);
    if (effMax <= 0) {
      scales[ib] = 0;
      continue;
    }
    let best = 0;
    for (let is = -6; is <= 6; is++) {
      const id = F(F(2 * kMaxQ - 1 + F(is * P1)) / effMax);
      const thisScale = F(1 / id);
      for (let k = 0; k < 4; k++) {
        const u = levels8(k, id, Laux);
        if (lat.map[u]! < 0) bestNeighbour(lat, u, xval, 8 * k, waux, thisScale, Laux);
      }
      sums(32, Laux);
      const sumqx = SUMS[0]!, sumq2 = SUMS[1]!;
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        scale = F(sumqx / sumq2);
        best = F(scale * sumqx);
        L.set(Laux);
      }
    }
    if (scale > 0) {
      const id = F(1 / scale);
      for (let k = 0; k < 4; k++) {
        const u = levels8(k, id, L);
        if (lat.map[u]! < 0) bestNeighbour(lat, u, xval, 8 * k, waux, scale, L);
      }
      sums(32, L);
      if (SUMS[1]! > 0) scale = F(SUMS[0]! / SUMS[1]!);
    }
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 4; k++) signs[k] = ~signs[k]! & 127;
    }
    for (let k = 0; k < 4; k++) {
      const gi = onGridIndex(lat, packedU(k));
      q2[2 * ib] = (q2[2 * ib]! | (gi << (8 * k))) >>> 0;
      q2[2 * ib + 1] = (q2[2 * ib + 1]! | (signs[k]! << (7 * k))) >>> 0;
    }
    scales[ib] = scale;
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
    const l = clampI(nearestInt(F(0.5 * F(F(id * scales[ib]!) - 1))), 0, 15);
    q2[2 * ib + 1] = (q2[2 * ib + 1]! | (l << 28)) >>> 0;
  }
  for (let i = 0; i < 16; i++) {
    const v = q2[i]!;
    const p = o + 2 + 4 * i;
    dst[p] = v & 255;
    dst[p + 1] = (v >>> 8) & 255;
    dst[p + 2] = (v >>> 16) & 255;
    dst[p + 3] = v >>> 24;
  }
}

/** quantize_row_iq2_xs_impl (isS = false) and quantize_row_iq2_s_impl (isS = true): 16-sub-blocks */
function quantizeIq2xsBlock(x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, dst: Uint8Array, o: number, isS: boolean): void {
  const lat = isS ? latticeIq2s() : latticeIq2xs();
  const kMaxQ = 3;
  const q2 = Q2XS.fill(0); // IQ2_XS: grid | signs << 9
  const size = isS ? 82 : 74;
  dst.fill(0, o, o + size);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo, isS);
  for (let ib = 0; ib < 16; ib++) {
    const xb = xo + 16 * ib;
    prepare(x, xb, qw, qo + 16 * ib, 16, sigma2, !isS);
    let max = xval[0]!;
    for (let i = 1; i < 16; i++) max = max > xval[i]! ? max : xval[i]!;
    L.fill(0, 0, 16);
    if (max < (isS ? EPS_IQ2_S : EPS)) {
      scales[ib] = 0;
      continue;
    }
    let best = 0;
    let scale = F(max / (2 * kMaxQ - 1));
    onGrid[0] = onGrid[1] = true;
    for (let is = -9; is <= 9; is++) {
      const id = F(F(2 * kMaxQ - 1 + F(is * P1)) / max);
      const thisScale = F(1 / id);
      for (let k = 0; k < 2; k++) {
        const u = levels8(k, id, Laux);
        onGridAux[k] = true;
        if (lat.map[u]! < 0) {
          onGridAux[k] = false;
          bestNeighbour(lat, u, xval, 8 * k, waux, thisScale, Laux);
        }
      }
      sums(16, Laux);
      const sumqx = SUMS[0]!, sumq2 = SUMS[1]!;
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        scale = F(sumqx / sumq2);
        best = F(scale * sumqx);
        for (let i = 0; i < 16; i++) L[i] = Laux[i]!;
        onGrid[0] = onGridAux[0]!;
        onGrid[1] = onGridAux[1]!;
      }
    }
    const notOn = (onGrid[0] ? 0 : 1) + (onGrid[1] ? 0 : 1);
    if (notOn > 0 && scale > 0) {
      const id = F(1 / scale);
      for (let k = 0; k < 2; k++) {
        if (onGrid[k]) continue;
        const u = levels8(k, id, L);
        if (lat.map[u]! < 0) bestNeighbour(lat, u, xval, 8 * k, waux, scale, L);
      }
      sums(16, L);
      if (SUMS[1]! > 0) scale = F(SUMS[0]! / SUMS[1]!);
    }
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 2; k++) signs[k] = isS ? ~signs[k]! & 255 : ~signs[k]! & 127;
    }
    for (let k = 0; k < 2; k++) {
      const gi = onGridIndex(lat, packedU(k));
      const i8 = 2 * ib + k;
      if (isS) {
        dst[o + 2 + i8] = gi & 255;
        dst[o + 66 + (i8 >> 2)]! |= (gi >> 8) << (2 * (i8 % 4));
        dst[o + 2 + 32 + i8] = signs[k]!;
      } else {
        q2[i8] = gi | (signs[k]! << 9);
      }
    }
    scales[ib] = scale;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) return;
  const d = F(maxScale / 31);
  const h = toF16(isS ? F(d * F(0.9875)) : d);
  dst[o] = h & 255;
  dst[o + 1] = h >> 8;
  const id = F(1 / d);
  const so = o + (isS ? 74 : 66);
  for (let ib = 0; ib < 16; ib++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * scales[ib]!) - 1))), 0, 15);
    if (ib % 2 === 0) dst[so + (ib >> 1)] = l;
    else dst[so + (ib >> 1)]! |= l << 4;
  }
  if (!isS) {
    for (let i = 0; i < 32; i++) {
      dst[o + 2 + 2 * i] = q2[i]! & 255;
      dst[o + 3 + 2 * i] = q2[i]! >> 8;
    }
  }
}

function quantizeRows(
  name: string, typeSize: number, src: Float32Array, dst: Uint8Array, qw: Float32Array | null | undefined, needQw: boolean,
  block: (x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, dst: Uint8Array, o: number) => void,
): void {
  const nb = checkArgs(name, src, dst, typeSize, qw);
  if (needQw && !qw) throw new Error(`${name} needs an importance matrix (ggml_quantize_requires_imatrix)`);
  const n = qw ? qw.length : 0;
  for (let b = 0; b < nb; b++) block(src, 256 * b, qw, n ? (256 * b) % n : 0, dst, b * typeSize);
}

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
          const v = db * IQ2XXS_GRID[g + j]!;
          dst[y + j] = s & (1 << j) ? -v : v;
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
          const v = db * IQ2XS_GRID[g + j]!;
          dst[y + j] = s & (1 << j) ? -v : v;
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
          const v = db * IQ2S_GRID[g + j]!;
          dst[y + j] = s & (1 << j) ? -v : v;
        }
      }
    }
  }
}

export const iq2_xxs: BlockCodec = {
  type: GGMLType.IQ2_XXS,
  blockSize: 256,
  typeSize: 66,
  requiresImatrix: true,
  quantize: (src, dst, qw) => quantizeRows("IQ2_XXS", 66, src, dst, qw, true, (x, xo, w, qo, d, o) => quantizeIq2xxsBlock(x, xo, w!, qo, d, o)),
  dequantize: dequantIq2xxs,
};

export const iq2_xs: BlockCodec = {
  type: GGMLType.IQ2_XS,
  blockSize: 256,
  typeSize: 74,
  requiresImatrix: true,
  quantize: (src, dst, qw) => quantizeRows("IQ2_XS", 74, src, dst, qw, true, (x, xo, w, qo, d, o) => quantizeIq2xsBlock(x, xo, w, qo, d, o, false)),
  dequantize: dequantIq2xs,
};

export const iq2_s: BlockCodec = {
  type: GGMLType.IQ2_S,
  blockSize: 256,
  typeSize: 82,
  quantize: (src, dst, qw) => quantizeRows("IQ2_S", 82, src, dst, qw, false, (x, xo, w, qo, d, o) => quantizeIq2xsBlock(x, xo, w, qo, d, o, true)),
  dequantize: dequantIq2s,
};
