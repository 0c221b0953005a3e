/**
 * Shared machinery of the IQ1/IQ2/IQ3 codecs: the lattices ggml's quantizer searches and the
 * dequantisation grids, all derived from the packed tables of iq-grids.ts.
 *
 * - Dequantisation grids (ggml-common.h iq2xxs_grid, iq2xs_grid, iq2s_grid, iq3xxs_grid, iq3s_grid,
 *   iq1s_grid): coordinate c of grid point k is LEVELS[(kgrid[k] >> bits·c) & mask]. The level sets are
 *   {8, 25, 43} (IQ2), {4, 12, …, 52, 62} (IQ3_XXS), {1, 3, …, 15} (IQ3_S), {−1, 0, 1} (IQ1) — the
 *   tests compare every grid point with what ggml's to_float gives for a crafted block.
 * - Quantiser lattice (ggml-quants.c iq2xs_init_impl / iq3xs_init_impl): the grid with coordinates
 *   2l + 1, the map from a packed level vector u to its grid index (−1 when u is off the grid), and for
 *   off-grid u the list of "neighbours": all grid points whose squared distance to (2l + 1)_c is one of
 *   the nwant smallest distinct distances, ordered by (distance, index) as ggml's qsort orders them.
 *   ggml builds every list at init; here a list is built the first time a u is looked up (same
 *   content, same order), which is what makes the first quantisation cheap.
 * - ksigns_iq2xs[i] = i | parity(i) << 7 (ggml-common.h), kmask_iq2xs[j] = 1 << j.
 */
import { KGRID_IQ1S, KGRID_IQ2S, KGRID_IQ2XS, KGRID_IQ2XXS, KGRID_IQ3S, KGRID_IQ3XXS } from "./iq-grids.js";
import { nearestInt } from "./kquant-common.js";

export const F = Math.fround;

/** ggml-common.h ksigns_iq2xs: 7 sign bits plus the parity bit that makes the count even. */
export const KSIGNS: Uint8Array = (() => {
  const t = new Uint8Array(128);
  for (let i = 0; i < 128; i++) {
    let p = 0;
    for (let b = 0; b < 7; b++) p ^= (i >> b) & 1;
    t[i] = i | (p << 7);
  }
  return t;
})();

/**
 * SIGN_MUL[8·s + j] = −1 when bit j of the sign byte s is set, else 1: the dequantisers multiply by it
 * instead of branching (x·(±1) is exact, so the one float32 rounding left is that of C's db·grid[j]).
 */
export const SIGN_MUL: Float64Array = (() => {
  const t = new Float64Array(256 * 8);
  for (let s = 0; s < 256; s++) for (let j = 0; j < 8; j++) t[8 * s + j] = s & (1 << j) ? -1 : 1;
  return t;
})();

function dequantGrid(kgrid: Uint16Array, dim: number, bits: number, levels: readonly number[]): Int16Array {
  const g = new Int16Array(kgrid.length * dim);
  const mask = (1 << bits) - 1;
  for (let k = 0; k < kgrid.length; k++) {
    for (let c = 0; c < dim; c++) g[k * dim + c] = levels[(kgrid[k]! >> (bits * c)) & mask]!;
  }
  return g;
}

/** iq2xxs_grid / iq2xs_grid / iq2s_grid (8 bytes per point), iq3xxs_grid / iq3s_grid (4), iq1s_grid (8, signed) */
export const IQ2XXS_GRID = dequantGrid(KGRID_IQ2XXS, 8, 2, [8, 25, 43, 62]);
export const IQ2XS_GRID = dequantGrid(KGRID_IQ2XS, 8, 2, [8, 25, 43, 62]);
export const IQ2S_GRID = dequantGrid(KGRID_IQ2S, 8, 2, [8, 25, 43, 62]);
export const IQ3XXS_GRID = dequantGrid(KGRID_IQ3XXS, 4, 3, [4, 12, 20, 28, 36, 44, 52, 62]);
export const IQ3S_GRID = dequantGrid(KGRID_IQ3S, 4, 3, [1, 3, 5, 7, 9, 11, 13, 15]);
export const IQ1S_GRID = dequantGrid(KGRID_IQ1S, 8, 2, [-1, 0, 1, 2]);

/** The quantiser's lattice for one grid (iq2_data[i] / iq3_data[i] of ggml-quants.c). */
export class Lattice {
  readonly size: number;
  /** grid point j's coordinates 2l + 1, dim per point (kgrid_q2xs / kgrid_q3xs) */
  readonly q: Int8Array;
  /** kmap_q2xs / kmap_q3xs: packed level vector → grid index, −1 when off the grid */
  readonly map: Int32Array;
  /** the neighbour lists, each built on first use and never changed after (a memo, not scratch) */
  private readonly nb: (Uint16Array | undefined)[];

  constructor(
    kgrid: Uint16Array,
    readonly dim: number,
    readonly bits: number,
    readonly nwant: number,
    kmapSize: number,
  ) {
    this.size = kgrid.length;
    const mask = (1 << bits) - 1;
    this.q = new Int8Array(this.size * dim);
    for (let k = 0; k < this.size; k++) for (let c = 0; c < dim; c++) this.q[k * dim + c] = 2 * ((kgrid[k]! >> (bits * c)) & mask) + 1;
    this.map = new Int32Array(kmapSize).fill(-1);
    for (let k = 0; k < this.size; k++) {
      let u = 0;
      for (let c = 0; c < dim; c++) u |= ((this.q[k * dim + c]! - 1) >> 1) << (bits * c);
      this.map[u] = k;
    }
    this.nb = new Array<Uint16Array | undefined>(kmapSize);
  }

  /** The neighbour list of an off-grid u (without ggml's leading count). */
  neighbours(u: number): Uint16Array {
    let l = this.nb[u];
    if (l) return l;
    if (this.map[u]! >= 0 || u < 0 || u >= this.map.length) throw new Error(`IQ lattice: no neighbour list for ${u}`);
    const { dim, bits, size, q } = this;
    const mask = (1 << bits) - 1;
    // working arrays of this build (once per list): squared distances, their histogram (largest: dim · (2·mask)²), u's coordinates
    const d2 = new Int32Array(size);
    const hist = new Int32Array(dim * 4 * mask * mask + 1);
    const pos = new Int32Array(dim);
    for (let c = 0; c < dim; c++) pos[c] = 2 * ((u >> (bits * c)) & mask) + 1;
    for (let j = 0; j < size; j++) {
      let s = 0;
      for (let c = 0; c < dim; c++) {
        const t = q[j * dim + c]! - pos[c]!;
        s += t * t;
      }
      d2[j] = s;
      hist[s]!++;
    }
    // the nwant smallest distinct distances (iq2xs_init_impl: stop when a new distance would be the nwant+1-th)
    const levels: number[] = [];
    let count = 0;
    for (let s = 0; s < hist.length && levels.length < this.nwant; s++) {
      if (hist[s]! > 0) {
        levels.push(s);
        count += hist[s]!;
      }
    }
    l = new Uint16Array(count);
    let n = 0;
    for (const s of levels) for (let j = 0; j < size; j++) if (d2[j] === s) l[n++] = j;
    this.nb[u] = l;
    return l;
  }
}

let lat2xxs: Lattice | undefined, lat2xs: Lattice | undefined, lat2s: Lattice | undefined, lat1s: Lattice | undefined;
let lat3xxs: Lattice | undefined, lat3s: Lattice | undefined;
const KMAP_2 = 43692; // iq2xs_init_impl kmap_size
const KMAP_3 = 4096; // iq3xs_init_impl kmap_size
/** iq2xs_init_impl: nwant = 3 for IQ1_S/IQ1_M, 1 for IQ2_S, 2 otherwise; iq3xs_init_impl: 2 for 256, 3 for 512 */
export const latticeIq2xxs = (): Lattice => (lat2xxs ??= new Lattice(KGRID_IQ2XXS, 8, 2, 2, KMAP_2));
export const latticeIq2xs = (): Lattice => (lat2xs ??= new Lattice(KGRID_IQ2XS, 8, 2, 2, KMAP_2));
export const latticeIq2s = (): Lattice => (lat2s ??= new Lattice(KGRID_IQ2S, 8, 2, 1, KMAP_2));
export const latticeIq1s = (): Lattice => (lat1s ??= new Lattice(KGRID_IQ1S, 8, 2, 3, KMAP_2));
export const latticeIq3xxs = (): Lattice => (lat3xxs ??= new Lattice(KGRID_IQ3XXS, 4, 3, 2, KMAP_3));
export const latticeIq3s = (): Lattice => (lat3s ??= new Lattice(KGRID_IQ3S, 4, 3, 3, KMAP_3));

const FLT_MAX = 3.4028234663852886e38;

/**
 * iq2_find_best_neighbour / iq3_find_best_neighbour (ggml-quants.c): the neighbour of u minimising
 * Σ w·(scale·q − x)² in float32; writes L = (q − 1)/2 and returns the grid index.
 */
export function bestNeighbour(lat: Lattice, u: number, x: Float64Array, xo: number, w: Float64Array, scale: number, L: Int8Array, SQ: Float64Array): number {
  const nb = lat.neighbours(u);
  const dim = lat.dim;
  const q = lat.q;
  let best = FLT_MAX;
  let gi = -1;
  // scale·q for the odd coordinates q = 1 … 15 (the same float32 product the C loop forms each time)
  for (let v = 1; v < 16; v += 2) SQ[v] = F(scale * v);
  for (let j = 0; j < nb.length; j++) {
    const g = nb[j]! * dim;
    let d2 = 0;
    for (let i = 0; i < dim; i++) {
      const diff = F(SQ[q[g + i]!]! - x[xo + i]!);
      d2 = F(d2 + F(F(w[xo + i]! * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      gi = nb[j]!;
    }
  }
  if (gi < 0) throw new Error("IQ quantizer: no grid point found (non-finite input?)");
  const g = gi * dim;
  for (let i = 0; i < dim; i++) L[xo + i] = (q[g + i]! - 1) >> 1;
  return gi;
}

// nearest_int (ggml-quants.c): kquant-common.ts's (no module-level bit-cast view)
export { nearestInt };

/** MAX(lo, MIN(hi, l)) with ggml's macro argument order (ints) */
export const clampI = (l: number, lo: number, hi: number): number => {
  const m = hi < l ? hi : l;
  return lo > m ? lo : m;
};

export function checkArgs(name: string, src: Float32Array, dst: Uint8Array, typeSize: number, qw?: Float32Array | null): number {
  if (src.length % 256 !== 0) throw new Error(`${name}: ${src.length} values is not a multiple of 256`);
  const nb = src.length / 256;
  if (dst.length < nb * typeSize) throw new Error(`${name}: destination holds ${dst.length} bytes, need ${nb * typeSize}`);
  if (qw) {
    if (qw.length === 0 || qw.length % 256 !== 0) throw new Error(`${name}: importance vector of ${qw.length} values is not a multiple of 256`);
    if (src.length % qw.length !== 0) throw new Error(`${name}: ${src.length} values is not a whole number of ${qw.length}-rows`);
  }
  return nb;
}

export function checkDeqArgs(name: string, src: Uint8Array, dst: Float32Array, typeSize: number): number {
  if (dst.length % 256 !== 0) throw new Error(`${name}: ${dst.length} values is not a multiple of 256`);
  const nb = dst.length / 256;
  if (src.length < nb * typeSize) throw new Error(`${name}: source holds ${src.length} bytes, need ${nb * typeSize}`);
  return nb;
}

// ------------------------------------------------------------------------------------------------
// The sub-block search shared by IQ2_XXS / IQ2_XS / IQ2_S / IQ3_XXS / IQ3_S (the inner loops of
// ggml-quants.c quantize_row_iq2_xxs_impl, _iq2_xs_impl, _iq2_s_impl, _iq3_xxs_impl, _iq3_s_impl):
// weights, sign bits and magnitudes of one sub-block, then the scan of trial scales, each trial
// rounding the magnitudes to levels group by group and moving off-grid groups to their best
// neighbour, then one re-quantisation at the chosen scale. The variants differ only in the data below.

/** The working arrays of one quantize call (one per call: no state shared between calls or workers). */
export class IqScratch {
  readonly weight = new Float64Array(32);
  readonly waux = new Float64Array(32);
  readonly xval = new Float64Array(32);
  readonly L = new Int8Array(32);
  readonly Laux = new Int8Array(32);
  readonly signs = new Uint8Array(4);
  readonly onGrid = new Uint8Array(8);
  readonly onGridAux = new Uint8Array(8);
  /** scale·q for odd q (bestNeighbour) */
  readonly sq = new Float64Array(16);
  /** [Σ w·x·q, Σ w·q²] of the last groupSums (a typed array keeps the doubles unboxed) */
  readonly sums = new Float64Array(2);
}

/**
 * After the caller filled s.weight[0..n): waux = √weight, xval = |x|, and per 8-group the sign bits;
 * with `parity` (IQ2_XXS, IQ2_XS, IQ3_XXS) an odd count of negatives is made even by flipping the
 * element of least w·x² (its magnitude negated), and the stored signs keep 7 bits.
 */
export function signsAndMagnitudes(s: IqScratch, x: Float32Array, xo: number, n: number, parity: boolean): void {
  const { weight, waux, xval, signs } = s;
  for (let i = 0; i < n; i++) waux[i] = F(Math.sqrt(weight[i]!));
  for (let k = 0; k < n / 8; k++) {
    let nflip = 0;
    let sb = 0;
    for (let i = 0; i < 8; i++) {
      const v = x[xo + 8 * k + i]!;
      if (v >= 0) xval[8 * k + i] = v;
      else {
        xval[8 * k + i] = -v;
        nflip++;
        sb |= 1 << i;
      }
    }
    if (parity && nflip % 2) {
      let imin = 0;
      const v0 = x[xo + 8 * k]!;
      let min = F(F(weight[8 * k]! * v0) * v0);
      for (let i = 1; i < 8; i++) {
        const v = x[xo + 8 * k + i]!;
        const ax = F(F(weight[8 * k + i]! * v) * v);
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      xval[8 * k + imin] = -xval[8 * k + imin]!;
      sb ^= 1 << imin;
    }
    signs[k] = parity ? sb & 127 : sb;
  }
}

/** Largest of xval[0..n) (C: max = xval[i] > max ? xval[i] : max, in that order). */
export function maxMagnitude(s: IqScratch, n: number): number {
  const xval = s.xval;
  let max = xval[0]!;
  for (let i = 1; i < n; i++) max = max > xval[i]! ? max : xval[i]!;
  return max;
}

/** How one IQ type groups and searches a sub-block. */
export interface IqGroups {
  readonly lat: Lattice;
  /** values per sub-block (32, or 16 for IQ2_XS / IQ2_S) */
  readonly n: number;
  /** levels 0 … kMaxQ − 1 (IQ2: 3, IQ3: 8) */
  readonly kMaxQ: number;
  /** bits per level in the packed group index u (IQ2: 2, IQ3: 3) */
  readonly bits: number;
  /** trial scales id = (2·kMaxQ − 1 + is·step) / denom for is = −range … range */
  readonly range: number;
  readonly step: number;
  /**
   * The re-quantisation at the chosen scale: "always" (IQ2_XXS: every group, whenever scale > 0),
   * "off-grid" (IQ2_XS, IQ2_S, IQ3_XXS: only the groups the winning trial left off the grid) or
   * "all" (IQ3_S: every group, when the winning trial left any off the grid).
   */
  readonly requant: "always" | "off-grid" | "all";
  /** the onGrid flags before the first accepted trial (IQ3_S starts with every group off the grid) */
  readonly initOnGrid: boolean;
}

/** levels of group k at inverse scale id into La; returns the packed index u */
function groupLevels(s: IqScratch, g: IqGroups, k: number, id: number, La: Int8Array): number {
  const dim = g.lat.dim;
  const xval = s.xval;
  let u = 0;
  for (let i = 0; i < dim; i++) {
    const l = clampI(nearestInt(F(0.5 * F(F(id * xval[dim * k + i]!) - 1))), 0, g.kMaxQ - 1);
    La[dim * k + i] = l;
    u |= l << (g.bits * i);
  }
  return u;
}

/** Σ w·x·q and Σ w·q² over the sub-block with q = 2L + 1, into s.sums */
function groupSums(s: IqScratch, n: number, La: Int8Array): void {
  const { weight, xval } = s;
  let a = 0;
  let b = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i]!;
    const q = 2 * La[i]! + 1;
    a = F(a + F(F(w * xval[i]!) * q));
    b = F(b + F(F(w * q) * q));
  }
  s.sums[0] = a;
  s.sums[1] = b;
}

/**
 * The trial-scale scan and the re-quantisation of one sub-block whose magnitudes, weights and signs
 * are in s; `denom` is the divisor of the trial scales, `scale` the scale kept when no trial is
 * accepted. Leaves the chosen levels in s.L and returns the scale (possibly negative: the caller
 * flips the signs).
 */
export function searchIqScale(s: IqScratch, g: IqGroups, denom: number, scale: number): number {
  const { lat, n } = g;
  const { xval, waux, L, Laux, onGrid, onGridAux, sq, sums } = s;
  const dim = lat.dim;
  const groups = n / dim;
  const track = g.requant !== "always";
  let best = 0;
  if (track) onGrid.fill(g.initOnGrid ? 1 : 0, 0, groups);
  for (let is = -g.range; is <= g.range; is++) {
    const id = F(F(2 * g.kMaxQ - 1 + F(is * g.step)) / denom);
    const thisScale = F(1 / id);
    for (let k = 0; k < groups; k++) {
      const u = groupLevels(s, g, k, id, Laux);
      if (track) onGridAux[k] = 1;
      if (lat.map[u]! < 0) {
        if (track) onGridAux[k] = 0;
        bestNeighbour(lat, u, xval, dim * k, waux, thisScale, Laux, sq);
      }
    }
    groupSums(s, n, Laux);
    const sumqx = sums[0]!, sumq2 = sums[1]!;
    if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
      scale = F(sumqx / sumq2);
      best = F(scale * sumqx);
      for (let i = 0; i < n; i++) L[i] = Laux[i]!;
      if (track) for (let k = 0; k < groups; k++) onGrid[k] = onGridAux[k]!;
    }
  }
  let redo = scale > 0;
  if (track && redo) {
    let notOn = 0;
    for (let k = 0; k < groups; k++) if (!onGrid[k]) notOn++;
    redo = notOn > 0;
  }
  if (redo) {
    const id = F(1 / scale);
    for (let k = 0; k < groups; k++) {
      if (g.requant === "off-grid" && onGrid[k]) continue;
      const u = groupLevels(s, g, k, id, L);
      if (lat.map[u]! < 0) bestNeighbour(lat, u, xval, dim * k, waux, scale, L, sq);
    }
    groupSums(s, n, L);
    if (sums[1]! > 0) scale = F(sums[0]! / sums[1]!);
  }
  return scale;
}

/** The packed index of group k of s.L and its grid index (ggml aborts "found point … not on grid"). */
export function gridIndexOfGroup(s: IqScratch, g: IqGroups, k: number): number {
  const dim = g.lat.dim;
  let u = 0;
  for (let i = 0; i < dim; i++) u |= s.L[dim * k + i]! << (g.bits * i);
  const gi = g.lat.map[u]!;
  if (gi < 0) throw new Error(`IQ quantizer: point ${u} not on the grid`);
  return gi;
}

/**
 * quantize_iq* (ggml-quants.c): the rows of src block by block, the importance vector (one row's
 * worth, repeating) aligned to each block; one scratch object for the call.
 */
export function quantizeIqRows<S>(
  name: string, typeSize: number, src: Float32Array, dst: Uint8Array, qw: Float32Array | null | undefined, needQw: boolean,
  scratch: S, block: (s: S, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, dst: Uint8Array, o: number) => void,
): void {
  const nb = checkArgs(name, src, dst, typeSize, qw);
  if (needQw && !qw) throw new Error(`${name} needs an importance matrix (ggml_quantize_requires_imatrix)`);
  const n = qw ? qw.length : 0;
  for (let b = 0; b < nb; b++) block(scratch, src, 256 * b, qw, n ? (256 * b) % n : 0, dst, b * typeSize);
}
