/**
 * WebAssembly SIMD fast paths of the K-quant scale searches, the hot loops of Q4_K_M:
 *
 * - `make_qkx2_quants(32, nmax, x, w = av + |x|, rmin, 0.1, nstep, use_mad = false)` for the 8
 *   sub-blocks of a Q4_K / Q5_K super-block (ggml/src/ggml-quants.c: make_qkx2_quants, called from
 *   quantize_row_q4_K_ref / quantize_row_q5_K_ref);
 * - `make_qx_quants(16, 32, x, L, rmse_type = 1)` for the 16 sub-blocks of a Q6_K super-block
 *   (ggml-quants.c: make_qx_quants, called from quantize_row_q6_K_ref).
 *
 * How it stays bit-exact: wasm's f32 arithmetic is IEEE binary32 with round-to-nearest-even, so each
 * C float operation is one f32x4 operation, in the C order, never fused or reassociated. The lanes of a
 * vector are four *different sub-blocks* (the super-block is transposed first), so every sequential
 * sum of the reference stays sequential within its lane — no reordering of any sum. C's conditionals
 * become lane masks: `if (x < lo) lo = x` is f32x4.pmin (b < a ? b : a), an accepted search step is a
 * v128.bitselect of (best, scale, min, iscale) — the levels of the accepted step are recomputed once at
 * the end from its iscale and min, which gives the same integers as storing them at that step.
 * nearest_int is the same magic-number add and mantissa mask as ggml (so even its wrap beyond
 * ±4194303 is reproduced).
 *
 * The readable reference stays the TypeScript of kquant-common.ts (makeQkx2, makeQxQuants,
 * quantizeK45Block) and q6_k.ts: it runs when WebAssembly SIMD is unavailable and for any chunk that
 * holds a NaN or an infinity; tests compare both paths with ggml byte for byte. Only the searches run
 * here; the per-super-block tails (6-/8-bit scales, fp16 d, re-quantization, packing) are the same
 * TypeScript as the reference, applied to the searches' outputs.
 */
import { WasmCode, I32, V128 } from "./q4_0.js";
import { EPS, F, H2F, nearestInt, packScaleMinK4, putF16, toF16 } from "./kquant-common.js";

const QK = 256;
/** super-blocks per kernel call (64 KiB of input) */
export const KW_BLOCKS = 64;
const IN = 0;
const XT = KW_BLOCKS * QK * 4; // transposed x of the current super-block (1 KiB)
const WT = XT + 1024; // transposed weights (Q4_K/Q5_K: av+|x|; Q6_K: x²)
const AT = WT + 1024; // scratch: levels of the current step (Q4_K/Q5_K) or w·x (Q6_K)
const TBL = AT + 1024; // step numerators (f32)
const OUT_S = TBL + 256; // scales, f32 [KW_BLOCKS][16]
const OUT_M = OUT_S + KW_BLOCKS * 16 * 4; // the_min, f32 [KW_BLOCKS][8]
const OUT_L = OUT_M + KW_BLOCKS * 8 * 4; // search levels, u8 [KW_BLOCKS][256], transposed (element i of sub-block j at i·G + j)
const DD = OUT_L + KW_BLOCKS * QK; // re-quantization: per sub-block d·scale (f32 [KW_BLOCKS][16]) …
const DM = DD + KW_BLOCKS * 16 * 4; // … and dmin·min (Q4_K/Q5_K)
const LN = DM + KW_BLOCKS * 16 * 4; // final levels, u8 [KW_BLOCKS][256], natural order
const END = LN + KW_BLOCKS * QK;

/** SIMD opcodes (after 0xFD) used here. */
const S = {
  splatI32: 0x11, splatF32: 0x13, extractI32: 0x1b,
  f32eq: 0x41, f32ne: 0x42, f32lt: 0x43, f32gt: 0x44,
  and: 0x4e, andnot: 0x4f, bitselect: 0x52,
  narrowI16U: 0x66, narrowI32U: 0x86,
  i32add: 0xae, i32sub: 0xb1, i32minS: 0xb6, i32maxS: 0xb8,
  f32abs: 0xe0, f32neg: 0xe1, f32sqrt: 0xe3, f32add: 0xe4, f32sub: 0xe5, f32mul: 0xe6, f32div: 0xe7, f32pmin: 0xea, f32pmax: 0xeb,
  f32fromI32: 0xfa,
} as const;

/** A tiny helper over WasmCode: named locals and one-line SIMD ops. */
class Emit {
  readonly c = new WasmCode();
  private nI32 = 1; // local 0 is the parameter
  private v128s: number[] = [];
  i32(): number {
    return this.nI32++;
  }
  v(): number {
    const id = 1000 + this.v128s.length; // renumbered in finish()
    this.v128s.push(id);
    return id;
  }
  private map(id: number): number {
    return id >= 1000 ? this.nI32 + (id - 1000) : id;
  }
  get(id: number): this {
    this.c.get(this.map(id));
    return this;
  }
  set(id: number): this {
    this.c.set(this.map(id));
    return this;
  }
  tee(id: number): this {
    this.c.tee(this.map(id));
    return this;
  }
  s(op: number, ...imm: number[]): this {
    this.c.simd(op, ...imm);
    return this;
  }
  op(...xs: number[]): this {
    this.c.op(...xs);
    return this;
  }
  /** local = splat(f32 constant) */
  constF(id: number, v: number): this {
    this.c.f32(v);
    return this.s(S.splatF32).set(id);
  }
  constI(id: number, v: number): this {
    this.c.i32(v);
    return this.s(S.splatI32).set(id);
  }
  /** push v128 from memory at (local base) + off */
  load(base: number, off: number): this {
    this.get(base);
    this.c.v128load(off);
    return this;
  }
  /** push v128 from the absolute address `addr` */
  loadAt(addr: number): this {
    this.c.i32(0);
    this.c.v128load(addr);
    return this;
  }
  /** the function body: local declarations and code */
  body(): number[] {
    const { uleb } = WasmCode;
    return [2, ...uleb(this.nI32 - 1), I32, ...uleb(this.v128s.length), V128, ...this.c.b, 0x0b];
  }
}

/** A module exporting memory "m" and two (i32) → () functions: "q" (the search) and "r" (the re-quantization). */
function kernelModule(search: Emit, requant: Emit): Uint8Array<ArrayBuffer> {
  const { uleb } = WasmCode;
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const str = (x: string): number[] => [...uleb(x.length), ...Array.from(x, (ch) => ch.charCodeAt(0))];
  const f0 = search.body();
  const f1 = requant.body();
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 0]),
    ...section(3, [2, 0, 0]),
    ...section(5, [1, 0x00, ...uleb(Math.ceil(END / 65536))]),
    ...section(7, [3, ...str("q"), 0x00, 0, ...str("r"), 0x00, 1, ...str("m"), 0x02, 0]),
    ...section(10, [2, ...uleb(f0.length), ...f0, ...uleb(f1.length), ...f1]),
  ]);
}

/**
 * Re-quantization kernel: r(nb) sets, for every sub-block j (of n values, G = 256/n per block) of
 * nb super-blocks, LN[…] = clamp(nearest_int(f(f(x + DM_j) / DD_j)), lo, hi) + add (Q4_K/Q5_K:
 * withMin, 0..nmax; Q6_K: nearest_int(f(x / DD_j)) in −32..31, + 32). A sub-block with DD_j = 0 gets
 * garbage here and is overwritten with the search's levels by the caller (C's `if (!d) continue`).
 */
function buildRequant(n: number, withMin: boolean, lo: number, hi: number, add: number): Emit {
  const e = new Emit();
  const nb = 0;
  const b = e.i32(), xb = e.i32(), pb = e.i32(), lb = e.i32();
  const K = { magic: e.v(), m23: e.v(), off: e.v(), lo: e.v(), hi: e.v() };
  const ADD = e.v(), dd = e.v(), dm = e.v(), v0 = e.v(), v1 = e.v(), v2 = e.v();
  const G = QK / n;
  e.constF(K.magic, 12582912).constI(K.m23, 0x7fffff).constI(K.off, 0x400000).constI(K.lo, lo).constI(K.hi, hi).constI(ADD, add);
  e.c.i32(0).set(b);
  e.op(0x02, 0x40, 0x03, 0x40);
  e.get(b).get(nb).op(0x4f).op(0x0d, 1);
  e.get(b).c.i32(QK * 4);
  e.op(0x6c).set(xb);
  e.get(b).c.i32(64);
  e.op(0x6c).set(pb);
  e.get(b).c.i32(QK);
  e.op(0x6c).set(lb);
  const level = (j: number, i: number): void => {
    e.load(xb, IN + 4 * (j * n + i));
    if (withMin) e.get(dm).s(S.f32add);
    e.get(dd).s(S.f32div);
    emitNearestClamp(e, K);
    if (add) e.get(ADD).s(S.i32add);
  };
  for (let j = 0; j < G; j++) {
    e.get(pb);
    e.c.f32load(DD + 4 * j);
    e.s(S.splatF32).set(dd);
    if (withMin) {
      e.get(pb);
      e.c.f32load(DM + 4 * j);
      e.s(S.splatF32).set(dm);
    }
    for (let i = 0; i < n; i += 16) {
      level(j, i);
      e.set(v0);
      level(j, i + 4);
      e.set(v1);
      level(j, i + 8);
      e.set(v2);
      e.get(lb);
      e.get(v0).get(v1).s(S.narrowI32U);
      e.get(v2);
      level(j, i + 12);
      e.s(S.narrowI32U).s(S.narrowI16U);
      e.c.v128store(LN + j * n + i);
    }
  }
  e.get(b).c.i32(1);
  e.op(0x6a).set(b);
  e.op(0x0c, 0, 0x0b, 0x0b);
  return e;
}

/**
 * Emit: the transposition of the super-block at IN + xb into XT: element i of sub-block j (of n
 * values) goes to XT + 4·(i·G + j), G = 256 / n sub-blocks.
 */
function emitTranspose(e: Emit, xb: number, n: number): void {
  const G = QK / n;
  for (let j = 0; j < G; j++) {
    for (let i = 0; i < n; i++) {
      e.c.i32(0);
      e.get(xb);
      e.c.f32load(IN + 4 * (n * j + i));
      e.c.f32store(XT + 4 * (i * G + j));
    }
  }
}

/** Emit: nearest_int of the f32x4 on the stack (magic add, mantissa bits − 0x400000), clamped to [lo, hi]. */
function emitNearestClamp(e: Emit, K: { magic: number; m23: number; off: number; lo: number; hi: number }): void {
  e.get(K.magic).s(S.f32add).get(K.m23).s(S.and).get(K.off).s(S.i32sub);
  e.get(K.hi).s(S.i32minS).get(K.lo).s(S.i32maxS);
}

/**
 * Q4_K / Q5_K search kernel: q(nb) runs make_qkx2_quants on the 8 sub-blocks of each of nb
 * super-blocks at IN and writes scale (OUT_S, 8 per block), the_min (OUT_M) and the search's levels
 * (OUT_L, transposed). The step numerators f(f(rmin + f(0.1·k)) + nmax), k = 0..nstep, are read from TBL.
 */
function buildQkx2Kernel(nmax: number, nstep: number): Emit {
  const e = new Emit();
  const nb = 0;
  const b = e.i32(), xb = e.i32(), k = e.i32(), ob = e.i32();
  const K = { magic: e.v(), m23: e.v(), off: e.v(), lo: e.v(), hi: e.v() };
  const ZERO = e.v(), NMAXF = e.v(), ONE = e.v(), N32 = e.v(), num = e.v(), t = e.v(), d = e.v(), A = e.v(), wA = e.v();
  const G = [0, 1].map(() => ({
    lo: e.v(), hi: e.v(), sw: e.v(), sx: e.v(), lo0: e.v(), eq: e.v(), is: e.v(), scale: e.v(), best: e.v(), bestIs: e.v(), bestLo: e.v(),
    sl: e.v(), sl2: e.v(), sxl: e.v(), s: e.v(), m: e.v(), D: e.v(), err: e.v(), acc: e.v(),
  }));
  const xAt = (i: number, g: number): number => XT + 4 * (i * 8 + 4 * g);
  const wAt = (i: number, g: number): number => WT + 4 * (i * 8 + 4 * g);
  const aAt = (i: number, g: number): number => AT + 4 * (i * 8 + 4 * g);
  e.constF(K.magic, 12582912).constI(K.m23, 0x7fffff).constI(K.off, 0x400000).constI(K.lo, 0).constI(K.hi, nmax);
  e.constF(ZERO, 0).constF(NMAXF, nmax).constF(ONE, 1).constF(N32, 32);
  e.c.i32(0).set(b);
  e.op(0x02, 0x40, 0x03, 0x40); // block, loop
  e.get(b).get(nb).op(0x4f /* i32.ge_u */).op(0x0d, 1); // br_if out
  e.get(b).c.i32(QK * 4).op(0x6c /* i32.mul */);
  e.set(xb);
  emitTranspose(e, xb, 32);
  for (let g = 0; g < 2; g++) {
    const q = G[g]!;
    // w_i = av + |x_i|, av = sqrt(Σx²/32) (sequential float sum)
    e.get(ZERO).set(t);
    for (let i = 0; i < 32; i++) e.get(t).loadAt(xAt(i, g)).loadAt(xAt(i, g)).s(S.f32mul).s(S.f32add).set(t);
    e.get(t).get(N32).s(S.f32div).s(S.f32sqrt).set(d);
    for (let i = 0; i < 32; i++) {
      e.c.i32(0);
      e.get(d).loadAt(xAt(i, g)).s(S.f32abs).s(S.f32add);
      e.c.v128store(wAt(i, g));
    }
    // min/max (strict comparisons in order), Σw, Σw·x
    e.loadAt(xAt(0, g)).tee(q.lo).set(q.hi);
    e.loadAt(wAt(0, g)).tee(q.sw).loadAt(xAt(0, g)).s(S.f32mul).set(q.sx);
    for (let i = 1; i < 32; i++) {
      e.get(q.lo).loadAt(xAt(i, g)).s(S.f32pmin).set(q.lo);
      e.get(q.hi).loadAt(xAt(i, g)).s(S.f32pmax).set(q.hi);
      e.get(q.sw).loadAt(wAt(i, g)).s(S.f32add).set(q.sw);
      e.get(q.sx).loadAt(wAt(i, g)).loadAt(xAt(i, g)).s(S.f32mul).s(S.f32add).set(q.sx);
    }
    e.get(q.lo).get(ZERO).s(S.f32pmin).tee(q.lo).set(q.lo0); // if (min > 0) min = 0
    e.get(q.hi).get(q.lo).s(S.f32eq).set(q.eq);
    // initial levels: iscale = nmax/(max − min), scale = 1/iscale
    e.get(NMAXF).get(q.hi).get(q.lo).s(S.f32sub).s(S.f32div).tee(q.is).tee(q.bestIs).set(q.is);
    e.get(ONE).get(q.is).s(S.f32div).set(q.scale);
    e.get(q.lo).set(q.bestLo);
    e.get(ZERO).set(q.best);
    for (let i = 0; i < 32; i++) {
      e.get(q.is).loadAt(xAt(i, g)).get(q.lo).s(S.f32sub).s(S.f32mul);
      emitNearestClamp(e, K);
      e.s(S.f32fromI32).set(A);
      // d = scale·L + min − x; best += w·d²
      e.get(q.scale).get(A).s(S.f32mul).get(q.lo).s(S.f32add).loadAt(xAt(i, g)).s(S.f32sub).set(d);
      e.get(q.best).loadAt(wAt(i, g)).get(d).get(d).s(S.f32mul).s(S.f32mul).s(S.f32add).set(q.best);
    }
  }
  // the steps
  e.c.i32(0).set(k);
  e.op(0x03, 0x40); // loop
  e.c.i32(0);
  e.get(k).c.i32(2);
  e.op(0x74 /* i32.shl */, 0x6a /* i32.add */);
  e.c.f32load(TBL);
  e.s(S.splatF32).set(num);
  for (let g = 0; g < 2; g++) {
    const q = G[g]!;
    e.get(num).get(q.hi).get(q.lo).s(S.f32sub).s(S.f32div).set(q.is);
    e.get(ZERO).tee(q.sl).tee(q.sl2).set(q.sxl);
  }
  for (let i = 0; i < 32; i++) {
    for (let g = 0; g < 2; g++) {
      const q = G[g]!;
      e.get(q.is).loadAt(xAt(i, g)).get(q.lo).s(S.f32sub).s(S.f32mul);
      emitNearestClamp(e, K);
      e.s(S.f32fromI32).set(A);
      e.c.i32(0);
      e.get(A);
      e.c.v128store(aAt(i, g));
      e.loadAt(wAt(i, g)).get(A).s(S.f32mul).set(wA);
      e.get(q.sl).get(wA).s(S.f32add).set(q.sl);
      e.get(q.sl2).get(wA).get(A).s(S.f32mul).s(S.f32add).set(q.sl2);
      e.get(q.sxl).get(wA).loadAt(xAt(i, g)).s(S.f32mul).s(S.f32add).set(q.sxl);
    }
  }
  for (let g = 0; g < 2; g++) {
    const q = G[g]!;
    // D = sw·sl2 − sl·sl; s = (sw·sxl − sx·sl)/D; m = (sl2·sx − sl·sxl)/D; m > 0 → m = 0, s = sxl/sl2
    e.get(q.sw).get(q.sl2).s(S.f32mul).get(q.sl).get(q.sl).s(S.f32mul).s(S.f32sub).set(q.D);
    e.get(q.sw).get(q.sxl).s(S.f32mul).get(q.sx).get(q.sl).s(S.f32mul).s(S.f32sub).get(q.D).s(S.f32div).set(q.s);
    e.get(q.sl2).get(q.sx).s(S.f32mul).get(q.sl).get(q.sxl).s(S.f32mul).s(S.f32sub).get(q.D).s(S.f32div).set(q.m);
    e.get(q.m).get(ZERO).s(S.f32gt).set(t);
    e.get(q.sxl).get(q.sl2).s(S.f32div).get(q.s).get(t).s(S.bitselect).set(q.s);
    e.get(ZERO).get(q.m).get(t).s(S.bitselect).set(q.m);
    e.get(ZERO).set(q.err);
  }
  for (let i = 0; i < 32; i++) {
    for (let g = 0; g < 2; g++) {
      const q = G[g]!;
      e.get(q.s).loadAt(aAt(i, g)).s(S.f32mul).get(q.m).s(S.f32add).loadAt(xAt(i, g)).s(S.f32sub).set(d);
      e.get(q.err).loadAt(wAt(i, g)).get(d).get(d).s(S.f32mul).s(S.f32mul).s(S.f32add).set(q.err);
    }
  }
  for (let g = 0; g < 2; g++) {
    const q = G[g]!;
    // accepted: D > 0 and err < best
    e.get(q.D).get(ZERO).s(S.f32gt).get(q.err).get(q.best).s(S.f32lt).s(S.and).set(q.acc);
    e.get(q.err).get(q.best).get(q.acc).s(S.bitselect).set(q.best);
    e.get(q.s).get(q.scale).get(q.acc).s(S.bitselect).set(q.scale);
    e.get(q.is).get(q.bestIs).get(q.acc).s(S.bitselect).set(q.bestIs);
    e.get(q.lo).get(q.bestLo).get(q.acc).s(S.bitselect).set(q.bestLo);
    e.get(q.m).get(q.lo).get(q.acc).s(S.bitselect).set(q.lo);
  }
  e.get(k).c.i32(1);
  e.op(0x6a).tee(k).c.i32(nstep + 1);
  e.op(0x49 /* i32.lt_u */, 0x0d, 0); // br_if loop
  e.op(0x0b); // end loop
  // outputs
  e.get(b).c.i32(32);
  e.op(0x6c).set(ob); // 8 f32 per block
  for (let g = 0; g < 2; g++) {
    const q = G[g]!;
    e.get(ob);
    e.get(ZERO).get(q.scale).get(q.eq).s(S.bitselect);
    e.c.v128store(OUT_S + 16 * g);
    e.get(ob);
    e.get(q.lo0).s(S.f32neg).get(q.lo).s(S.f32neg).get(q.eq).s(S.bitselect);
    e.c.v128store(OUT_M + 16 * g);
  }
  // levels of the accepted step (0 for an empty range), as bytes, transposed
  e.get(b).c.i32(QK);
  e.op(0x6c).set(ob);
  for (let i = 0; i < 32; i++) {
    for (let g = 0; g < 2; g++) {
      const q = G[g]!;
      e.get(ob);
      e.get(q.bestIs).loadAt(xAt(i, g)).get(q.bestLo).s(S.f32sub).s(S.f32mul);
      emitNearestClamp(e, K);
      e.get(q.eq).s(S.andnot).tee(t).get(t).s(S.narrowI32U).tee(t).get(t).s(S.narrowI16U).s(S.extractI32, 0);
      e.c.store32(OUT_L + i * 8 + 4 * g);
    }
  }
  e.get(b).c.i32(1);
  e.op(0x6a).set(b);
  e.op(0x0c, 0, 0x0b, 0x0b); // br loop, end loop, end block
  return e;
}

/**
 * Q6_K search kernel: q(nb) runs make_qx_quants(16, 32, …, rmse_type 1) on the 16 sub-blocks of each
 * of nb super-blocks: scales to OUT_S (16 per block), levels 0..63 (0 for a group with max |x| < EPS)
 * to OUT_L, transposed (element i of sub-block j at i·16 + j). Trial numerators from TBL (18).
 */
function buildQxKernel(): Emit {
  const e = new Emit();
  const nb = 0;
  const b = e.i32(), xb = e.i32(), k = e.i32(), ob = e.i32();
  const K = { magic: e.v(), m23: e.v(), off: e.v(), lo: e.v(), hi: e.v() };
  const ZERO = e.v(), EPSV = e.v(), NMIN = e.v(), N32I = e.v(), num = e.v(), t = e.v(), l = e.v(), ax = e.v();
  const G = [0, 1, 2, 3].map(() => ({
    amax: e.v(), max: e.v(), zero: e.v(), is: e.v(), scale: e.v(), best: e.v(), bestIs: e.v(), sumlx: e.v(), suml2: e.v(), acc: e.v(),
  }));
  const xAt = (i: number, g: number): number => XT + 4 * (i * 16 + 4 * g);
  const wAt = (i: number, g: number): number => WT + 4 * (i * 16 + 4 * g);
  const wxAt = (i: number, g: number): number => AT + 4 * (i * 16 + 4 * g);
  e.constF(K.magic, 12582912).constI(K.m23, 0x7fffff).constI(K.off, 0x400000).constI(K.lo, -32).constI(K.hi, 31);
  e.constF(ZERO, 0).constF(EPSV, EPS).constF(NMIN, -32).constI(N32I, 32);
  e.c.i32(0).set(b);
  e.op(0x02, 0x40, 0x03, 0x40);
  e.get(b).get(nb).op(0x4f).op(0x0d, 1);
  e.get(b).c.i32(QK * 4);
  e.op(0x6c).set(xb);
  emitTranspose(e, xb, 16);
  // one pass of sums for iscale `is` into sumlx/suml2 of each group
  const pass = (): void => {
    for (const q of G) e.get(ZERO).tee(q.sumlx).set(q.suml2);
    for (let i = 0; i < 16; i++) {
      for (let g = 0; g < 4; g++) {
        const q = G[g]!;
        e.get(q.is).loadAt(xAt(i, g)).s(S.f32mul);
        emitNearestClamp(e, K);
        e.s(S.f32fromI32).set(l);
        e.get(q.sumlx).loadAt(wxAt(i, g)).get(l).s(S.f32mul).s(S.f32add).set(q.sumlx);
        e.get(q.suml2).loadAt(wAt(i, g)).get(l).s(S.f32mul).get(l).s(S.f32mul).s(S.f32add).set(q.suml2);
      }
    }
  };
  for (let g = 0; g < 4; g++) {
    const q = G[g]!;
    e.get(ZERO).tee(q.amax).set(q.max);
    for (let i = 0; i < 16; i++) {
      // w = x², w·x; first strictly largest |x|
      e.c.i32(0);
      e.loadAt(xAt(i, g)).loadAt(xAt(i, g)).s(S.f32mul).tee(t);
      e.c.v128store(wAt(i, g));
      e.c.i32(0);
      e.get(t).loadAt(xAt(i, g)).s(S.f32mul);
      e.c.v128store(wxAt(i, g));
      e.loadAt(xAt(i, g)).s(S.f32abs).tee(ax).get(q.amax).s(S.f32gt).set(t);
      e.get(ax).get(q.amax).get(t).s(S.bitselect).set(q.amax);
      e.loadAt(xAt(i, g)).get(q.max).get(t).s(S.bitselect).set(q.max);
    }
    e.get(q.amax).get(EPSV).s(S.f32lt).set(q.zero);
    e.get(NMIN).get(q.max).s(S.f32div).tee(q.is).set(q.bestIs);
  }
  pass();
  for (const q of G) {
    // scale = suml2 ? sumlx/suml2 : 0; best = scale·sumlx
    e.get(q.sumlx).get(q.suml2).s(S.f32div).get(ZERO).get(q.suml2).get(ZERO).s(S.f32ne).s(S.bitselect).tee(q.scale);
    e.get(q.sumlx).s(S.f32mul).set(q.best);
  }
  e.c.i32(0).set(k);
  e.op(0x03, 0x40);
  e.c.i32(0);
  e.get(k).c.i32(2);
  e.op(0x74, 0x6a);
  e.c.f32load(TBL);
  e.s(S.splatF32).set(num);
  for (const q of G) e.get(num).get(q.max).s(S.f32div).set(q.is);
  pass();
  for (const q of G) {
    // suml2 > 0 && sumlx² > best·suml2 → scale = sumlx/suml2, best = scale·sumlx
    e.get(q.suml2).get(ZERO).s(S.f32gt).get(q.sumlx).get(q.sumlx).s(S.f32mul).get(q.best).get(q.suml2).s(S.f32mul).s(S.f32gt).s(S.and).set(q.acc);
    e.get(q.sumlx).get(q.suml2).s(S.f32div).tee(t).get(q.scale).get(q.acc).s(S.bitselect).set(q.scale);
    e.get(t).get(q.sumlx).s(S.f32mul).get(q.best).get(q.acc).s(S.bitselect).set(q.best);
    e.get(q.is).get(q.bestIs).get(q.acc).s(S.bitselect).set(q.bestIs);
  }
  e.get(k).c.i32(1);
  e.op(0x6a).tee(k).c.i32(18);
  e.op(0x49, 0x0d, 0);
  e.op(0x0b);
  e.get(b).c.i32(64);
  e.op(0x6c).set(ob);
  for (let g = 0; g < 4; g++) {
    const q = G[g]!;
    e.get(ob);
    e.get(ZERO).get(q.scale).get(q.zero).s(S.bitselect);
    e.c.v128store(OUT_S + 16 * g);
  }
  e.get(b).c.i32(QK);
  e.op(0x6c).set(ob);
  for (let i = 0; i < 16; i++) {
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      e.get(ob);
      e.get(q.bestIs).loadAt(xAt(i, g)).s(S.f32mul);
      emitNearestClamp(e, K);
      e.get(N32I).s(S.i32add).get(q.zero).s(S.andnot).tee(t).get(t).s(S.narrowI32U).tee(t).get(t).s(S.narrowI16U).s(S.extractI32, 0);
      e.c.store32(OUT_L + i * 16 + 4 * g);
    }
  }
  e.get(b).c.i32(1);
  e.op(0x6a).set(b);
  e.op(0x0c, 0, 0x0b, 0x0b);
  return e;
}

interface Kernel {
  /** copy super-blocks [b0, b0 + nb) of src in and run the search */
  run(src: Float32Array, b0: number, nb: number): void;
  /** re-quantize the nb super-blocks in memory with dd / dm into final */
  requant(nb: number): void;
  scales: Float32Array;
  mins: Float32Array;
  /** search levels, transposed */
  levels: Uint8Array;
  dd: Float32Array;
  dm: Float32Array;
  /** final levels, natural order */
  final: Uint8Array;
}

function instantiate(bytes: Uint8Array<ArrayBuffer>, table: Float64Array): Kernel | undefined {
  try {
    if (process.env["GGUFY_NO_WASM"]) return undefined;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    const mem = inst.exports["m"] as WebAssembly.Memory;
    const q = inst.exports["q"] as (nb: number) => void;
    const r = inst.exports["r"] as (nb: number) => void;
    const buf = mem.buffer;
    const input = new Float32Array(buf, IN, KW_BLOCKS * QK);
    new Float32Array(buf, TBL, table.length).set(table);
    return {
      run(src, b0, nb) {
        input.set(src.subarray(b0 * QK, (b0 + nb) * QK));
        q(nb);
      },
      scales: new Float32Array(buf, OUT_S, KW_BLOCKS * 16),
      mins: new Float32Array(buf, OUT_M, KW_BLOCKS * 8),
      requant: r,
      levels: new Uint8Array(buf, OUT_L, KW_BLOCKS * QK),
      dd: new Float32Array(buf, DD, KW_BLOCKS * 16),
      dm: new Float32Array(buf, DM, KW_BLOCKS * 16),
      final: new Uint8Array(buf, LN, KW_BLOCKS * QK),
    };
  } catch {
    return undefined;
  }
}

/** true when every value is finite (the kernels are only used then) */
function allFinite(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return false;
  }
  return true;
}

const k45LS = new Uint8Array(8);
const k45LM = new Uint8Array(8);

/**
 * Q4_K / Q5_K quantizer: the wasm search, then quantizeK45Block's tail (same operations) and the
 * type's `pack(L, dst, o)`. Returns undefined when WebAssembly SIMD is unavailable.
 */
export function k45WasmQuantizer(
  nmax: number,
  steps: Float64Array,
  size: number,
  pack: (L: Uint8Array, lo: number, dst: Uint8Array, o: number) => void,
): ((src: Float32Array, dst: Uint8Array) => boolean) | undefined {
  const kern = instantiate(kernelModule(buildQkx2Kernel(nmax, steps.length - 1), buildRequant(32, true, 0, nmax, 0)), steps);
  if (!kern) return undefined;
  const { scales, mins, levels, dd: DDv, dm: DMv, final } = kern;
  return (src, dst) => {
    if (!allFinite(src)) return false;
    const nb = src.length / QK;
    for (let b0 = 0; b0 < nb; b0 += KW_BLOCKS) {
      const n = Math.min(KW_BLOCKS, nb - b0);
      kern.run(src, b0, n);
      for (let bi = 0; bi < n; bi++) {
        const o = (b0 + bi) * size;
        const so = bi * 8;
        let maxScale = 0;
        let maxMin = 0;
        for (let j = 0; j < 8; ++j) {
          const s = scales[so + j]!;
          const m = mins[so + j]!;
          if (s > maxScale) maxScale = s;
          if (m > maxMin) maxMin = m;
        }
        const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
        const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
        for (let j = 0; j < 8; ++j) {
          const ls = nearestInt(F(invScale * scales[so + j]!)) & 0xff;
          const lm = nearestInt(F(invMin * mins[so + j]!)) & 0xff;
          k45LS[j] = ls < 63 ? ls : 63;
          k45LM[j] = lm < 63 ? lm : 63;
        }
        for (let q = 0; q < 12; ++q) dst[o + 4 + q] = 0;
        packScaleMinK4(dst, o + 4, k45LS, k45LM);
        const dh = toF16(F(maxScale / 63));
        const mh = toF16(F(maxMin / 63));
        putF16(dst, o, dh);
        putF16(dst, o + 2, mh);
        const d = H2F[dh]!;
        const dmin = H2F[mh]!;
        for (let j = 0; j < 8; ++j) {
          DDv[bi * 16 + j] = F(d * k45LS[j]!);
          DMv[bi * 16 + j] = F(dmin * k45LM[j]!);
        }
      }
      kern.requant(n);
      for (let bi = 0; bi < n; bi++) {
        for (let j = 0; j < 8; ++j) {
          // C: if (!dd) continue — keep the search's levels (transposed in the kernel's output)
          if (DDv[bi * 16 + j] === 0) for (let ii = 0; ii < 32; ++ii) final[bi * QK + 32 * j + ii] = levels[bi * QK + ii * 8 + j]!;
        }
        pack(final, bi * QK, dst, (b0 + bi) * size);
      }
    }
    return true;
  };
}

/**
 * Q6_K quantizer: the wasm search, then quantize_row_q6_K_ref's tail as in q6_k.ts and `pack`.
 * Returns undefined when WebAssembly SIMD is unavailable.
 */
export function q6kWasmQuantizer(trials: Float64Array, pack: (L: Uint8Array, lo: number, dst: Uint8Array, o: number) => void): ((src: Float32Array, dst: Uint8Array) => boolean) | undefined {
  const kern = instantiate(kernelModule(buildQxKernel(), buildRequant(16, false, -32, 31, 32)), trials);
  if (!kern) return undefined;
  const { scales, levels, dd: DDv, final } = kern;
  const SIZE = 210;
  const zero = new Uint8Array(KW_BLOCKS);
  return (src, dst) => {
    if (!allFinite(src)) return false;
    const nb = src.length / QK;
    for (let b0 = 0; b0 < nb; b0 += KW_BLOCKS) {
      const n = Math.min(KW_BLOCKS, nb - b0);
      kern.run(src, b0, n);
      for (let bi = 0; bi < n; bi++) {
        const o = (b0 + bi) * SIZE;
        const so = bi * 16;
        let maxScale = 0;
        let maxAbs = 0;
        for (let j = 0; j < 16; ++j) {
          const s = scales[so + j]!;
          const as = Math.abs(s);
          if (as > maxAbs) {
            maxAbs = as;
            maxScale = s;
          }
        }
        zero[bi] = maxAbs < EPS ? 1 : 0;
        if (zero[bi]) {
          dst.fill(0, o, o + SIZE);
          for (let j = 0; j < 16; ++j) DDv[so + j] = 1; // any value: the block is not packed
          continue;
        }
        const is = F(-128 / maxScale);
        const dh = toF16(F(1 / is));
        putF16(dst, o + 208, dh);
        const d = H2F[dh]!;
        for (let j = 0; j < 16; ++j) {
          const v = nearestInt(F(is * scales[so + j]!));
          dst[o + 192 + j] = (v < 127 ? v : 127) & 0xff;
          DDv[so + j] = F(d * ((dst[o + 192 + j]! << 24) >> 24));
        }
      }
      kern.requant(n);
      for (let bi = 0; bi < n; bi++) {
        if (zero[bi]) continue;
        for (let j = 0; j < 16; ++j) {
          // C: if (!d) continue — keep the search's levels (transposed in the kernel's output)
          if (DDv[bi * 16 + j] === 0) for (let ii = 0; ii < 16; ++ii) final[bi * QK + 16 * j + ii] = levels[bi * QK + ii * 16 + j]!;
        }
        pack(final, bi * QK, dst, (b0 + bi) * SIZE);
      }
    }
    return true;
  };
}
