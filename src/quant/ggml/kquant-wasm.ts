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
 * here and in the re-quantization; the per-super-block tails (6-/8-bit scales, fp16 d) are the same
 * functions as the reference's (kquant-common.ts k45Tail, q6kTail), applied to the searches' outputs.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import type { FuncBuilder, Local } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import { EPS, k45Tail, q6kTail } from "./kquant-common.js";

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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = FuncBuilder<any>;
type V = Local<"v128">;

/** the constants of nearest_int (magic add, mantissa mask, offset) and the clamp bounds */
interface NearestConsts {
  magic: V;
  m23: V;
  off: V;
  lo: V;
  hi: V;
}

function nearestConsts(f: Fn, lo: number, hi: number): NearestConsts {
  const K = { magic: f.v128("magic"), m23: f.v128("m23"), off: f.v128("off"), lo: f.v128("lo"), hi: f.v128("hi") };
  f.f32.const(12582912).f32x4.splat().set(K.magic);
  f.i32.const(0x7fffff).i32x4.splat().set(K.m23);
  f.i32.const(0x400000).i32x4.splat().set(K.off);
  f.i32.const(lo).i32x4.splat().set(K.lo);
  f.i32.const(hi).i32x4.splat().set(K.hi);
  return K;
}

/** Emit: nearest_int of the f32x4 on the stack (magic add, mantissa bits − 0x400000), clamped to [lo, hi]. */
function nearestClamp(f: Fn, K: NearestConsts): void {
  f.get(K.magic).f32x4.add().get(K.m23).v128.and().get(K.off).i32x4.sub();
  f.get(K.hi).i32x4.minS().get(K.lo).i32x4.maxS();
}

const splatF = (f: Fn, x: V, v: number): Fn => f.f32.const(v).f32x4.splat().set(x);
const splatI = (f: Fn, x: V, v: number): Fn => f.i32.const(v).i32x4.splat().set(x);

/**
 * The loop over the nb super-blocks of a kernel call: `body(b)` with b the super-block index
 * (for (b = 0; b < nb; b++) body(b)).
 */
function forBlocks(f: Fn, nb: Local<"i32">, body: (b: Local<"i32">) => void): void {
  const b = f.i32("b");
  f.i32.const(0).set(b);
  f.block((done) =>
    f.loop((next) => {
      f.get(b).get(nb).i32.geU().brIf(done);
      body(b);
      f.get(b).i32.const(1).i32.add().set(b).br(next);
    }),
  );
}

/**
 * Re-quantization kernel: r(nb) sets, for every sub-block j (of n values, G = 256/n per block) of
 * nb super-blocks, LN[…] = clamp(nearest_int(f(f(x + DM_j) / DD_j)), lo, hi) + add (Q4_K/Q5_K:
 * withMin, 0..nmax; Q6_K: nearest_int(f(x / DD_j)) in −32..31, + 32). A sub-block with DD_j = 0 gets
 * garbage here and is overwritten with the search's levels by the caller (C's `if (!d) continue`).
 */
function buildRequant(f: Fn, n: number, withMin: boolean, lo: number, hi: number, add: number): void {
  const nb = f.p["nb"] as Local<"i32">;
  const xb = f.i32("xb"), pb = f.i32("pb"), lb = f.i32("lb");
  const K = nearestConsts(f, lo, hi);
  const ADD = f.v128("add"), dd = f.v128("dd"), dm = f.v128("dm"), v0 = f.v128("v0"), v1 = f.v128("v1"), v2 = f.v128("v2");
  const G = QK / n;
  splatI(f, ADD, add);
  forBlocks(f, nb, (b) => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    f.get(b).i32.const(64).i32.mul().set(pb);
    f.get(b).i32.const(QK).i32.mul().set(lb);
    const level = (j: number, i: number): void => {
      f.get(xb).v128.load(IN + 4 * (j * n + i));
      if (withMin) f.get(dm).f32x4.add();
      f.get(dd).f32x4.div();
      nearestClamp(f, K);
      if (add) f.get(ADD).i32x4.add();
    };
    for (let j = 0; j < G; j++) {
      f.get(pb).f32.load(DD + 4 * j).f32x4.splat().set(dd);
      if (withMin) f.get(pb).f32.load(DM + 4 * j).f32x4.splat().set(dm);
      for (let i = 0; i < n; i += 16) {
        level(j, i);
        f.set(v0);
        level(j, i + 4);
        f.set(v1);
        level(j, i + 8);
        f.set(v2);
        f.get(lb);
        f.get(v0).get(v1).i16x8.narrowI32x4U();
        f.get(v2);
        level(j, i + 12);
        f.i16x8.narrowI32x4U().i8x16.narrowI16x8U();
        f.v128.store(LN + j * n + i);
      }
    }
  });
}

/**
 * Emit: the transposition of the super-block at IN + xb into XT: element i of sub-block j (of n
 * values) goes to XT + 4·(i·G + j), G = 256 / n sub-blocks.
 */
function transpose(f: Fn, xb: Local<"i32">, n: number): void {
  const G = QK / n;
  for (let j = 0; j < G; j++) {
    for (let i = 0; i < n; i++) f.i32.const(0).get(xb).f32.load(IN + 4 * (n * j + i)).f32.store(XT + 4 * (i * G + j));
  }
}

/**
 * Q4_K / Q5_K search kernel: q(nb) runs make_qkx2_quants on the 8 sub-blocks of each of nb
 * super-blocks at IN and writes scale (OUT_S, 8 per block), the_min (OUT_M) and the search's levels
 * (OUT_L, transposed). The step numerators f(f(rmin + f(0.1·k)) + nmax), k = 0..nstep, are read from TBL.
 */
function buildQkx2Kernel(f: Fn, nmax: number, nstep: number): void {
  const nb = f.p["nb"] as Local<"i32">;
  const xb = f.i32("xb"), k = f.i32("k"), ob = f.i32("ob");
  const K = nearestConsts(f, 0, nmax);
  const ZERO = f.v128("zero"), NMAXF = f.v128("nmax"), ONE = f.v128("one"), N32 = f.v128("n32"), num = f.v128("num");
  const t = f.v128("t"), d = f.v128("d"), A = f.v128("A"), wA = f.v128("wA");
  const G = [0, 1].map((g) => {
    const l = (name: string): V => f.v128(`${name}${g}`);
    return {
      lo: l("lo"), hi: l("hi"), sw: l("sw"), sx: l("sx"), lo0: l("lo0"), eq: l("eq"), is: l("is"), scale: l("scale"), best: l("best"),
      bestIs: l("bestIs"), bestLo: l("bestLo"), sl: l("sl"), sl2: l("sl2"), sxl: l("sxl"), s: l("s"), m: l("m"), D: l("D"), err: l("err"), acc: l("acc"),
    };
  });
  const xAt = (i: number, g: number): number => XT + 4 * (i * 8 + 4 * g);
  const wAt = (i: number, g: number): number => WT + 4 * (i * 8 + 4 * g);
  const aAt = (i: number, g: number): number => AT + 4 * (i * 8 + 4 * g);
  splatF(f, ZERO, 0);
  splatF(f, NMAXF, nmax);
  splatF(f, ONE, 1);
  splatF(f, N32, 32);
  forBlocks(f, nb, (b) => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    transpose(f, xb, 32);
    for (let g = 0; g < 2; g++) {
      const q = G[g]!;
      // w_i = av + |x_i|, av = sqrt(Σx²/32) (sequential float sum)
      f.get(ZERO).set(t);
      for (let i = 0; i < 32; i++) f.get(t).v128At(xAt(i, g)).v128At(xAt(i, g)).f32x4.mul().f32x4.add().set(t);
      f.get(t).get(N32).f32x4.div().f32x4.sqrt().set(d);
      for (let i = 0; i < 32; i++) f.i32.const(0).get(d).v128At(xAt(i, g)).f32x4.abs().f32x4.add().v128.store(wAt(i, g));
      // min/max (strict comparisons in order), Σw, Σw·x
      f.v128At(xAt(0, g)).tee(q.lo).set(q.hi);
      f.v128At(wAt(0, g)).tee(q.sw).v128At(xAt(0, g)).f32x4.mul().set(q.sx);
      for (let i = 1; i < 32; i++) {
        f.get(q.lo).v128At(xAt(i, g)).f32x4.pmin().set(q.lo);
        f.get(q.hi).v128At(xAt(i, g)).f32x4.pmax().set(q.hi);
        f.get(q.sw).v128At(wAt(i, g)).f32x4.add().set(q.sw);
        f.get(q.sx).v128At(wAt(i, g)).v128At(xAt(i, g)).f32x4.mul().f32x4.add().set(q.sx);
      }
      f.get(q.lo).get(ZERO).f32x4.pmin().tee(q.lo).set(q.lo0); // if (min > 0) min = 0
      f.get(q.hi).get(q.lo).f32x4.eq().set(q.eq);
      // initial levels: iscale = nmax/(max − min), scale = 1/iscale
      f.get(NMAXF).get(q.hi).get(q.lo).f32x4.sub().f32x4.div().tee(q.is).tee(q.bestIs).set(q.is);
      f.get(ONE).get(q.is).f32x4.div().set(q.scale);
      f.get(q.lo).set(q.bestLo);
      f.get(ZERO).set(q.best);
      for (let i = 0; i < 32; i++) {
        f.get(q.is).v128At(xAt(i, g)).get(q.lo).f32x4.sub().f32x4.mul();
        nearestClamp(f, K);
        f.f32x4.convertI32x4S().set(A);
        // d = scale·L + min − x; best += w·d²
        f.get(q.scale).get(A).f32x4.mul().get(q.lo).f32x4.add().v128At(xAt(i, g)).f32x4.sub().set(d);
        f.get(q.best).v128At(wAt(i, g)).get(d).get(d).f32x4.mul().f32x4.mul().f32x4.add().set(q.best);
      }
    }
    // the steps
    f.i32.const(0).set(k);
    f.loop((nextStep) => {
      f.i32.const(0).get(k).i32.const(2).i32.shl().i32.add().f32.load(TBL).f32x4.splat().set(num);
      for (let g = 0; g < 2; g++) {
        const q = G[g]!;
        f.get(num).get(q.hi).get(q.lo).f32x4.sub().f32x4.div().set(q.is);
        f.get(ZERO).tee(q.sl).tee(q.sl2).set(q.sxl);
      }
      for (let i = 0; i < 32; i++) {
        for (let g = 0; g < 2; g++) {
          const q = G[g]!;
          f.get(q.is).v128At(xAt(i, g)).get(q.lo).f32x4.sub().f32x4.mul();
          nearestClamp(f, K);
          f.f32x4.convertI32x4S().set(A);
          f.i32.const(0).get(A).v128.store(aAt(i, g));
          f.v128At(wAt(i, g)).get(A).f32x4.mul().set(wA);
          f.get(q.sl).get(wA).f32x4.add().set(q.sl);
          f.get(q.sl2).get(wA).get(A).f32x4.mul().f32x4.add().set(q.sl2);
          f.get(q.sxl).get(wA).v128At(xAt(i, g)).f32x4.mul().f32x4.add().set(q.sxl);
        }
      }
      for (let g = 0; g < 2; g++) {
        const q = G[g]!;
        // D = sw·sl2 − sl·sl; s = (sw·sxl − sx·sl)/D; m = (sl2·sx − sl·sxl)/D; m > 0 → m = 0, s = sxl/sl2
        f.get(q.sw).get(q.sl2).f32x4.mul().get(q.sl).get(q.sl).f32x4.mul().f32x4.sub().set(q.D);
        f.get(q.sw).get(q.sxl).f32x4.mul().get(q.sx).get(q.sl).f32x4.mul().f32x4.sub().get(q.D).f32x4.div().set(q.s);
        f.get(q.sl2).get(q.sx).f32x4.mul().get(q.sl).get(q.sxl).f32x4.mul().f32x4.sub().get(q.D).f32x4.div().set(q.m);
        f.get(q.m).get(ZERO).f32x4.gt().set(t);
        f.get(q.sxl).get(q.sl2).f32x4.div().get(q.s).get(t).v128.bitselect().set(q.s);
        f.get(ZERO).get(q.m).get(t).v128.bitselect().set(q.m);
        f.get(ZERO).set(q.err);
      }
      for (let i = 0; i < 32; i++) {
        for (let g = 0; g < 2; g++) {
          const q = G[g]!;
          f.get(q.s).v128At(aAt(i, g)).f32x4.mul().get(q.m).f32x4.add().v128At(xAt(i, g)).f32x4.sub().set(d);
          f.get(q.err).v128At(wAt(i, g)).get(d).get(d).f32x4.mul().f32x4.mul().f32x4.add().set(q.err);
        }
      }
      for (let g = 0; g < 2; g++) {
        const q = G[g]!;
        // accepted: D > 0 and err < best
        f.get(q.D).get(ZERO).f32x4.gt().get(q.err).get(q.best).f32x4.lt().v128.and().set(q.acc);
        f.get(q.err).get(q.best).get(q.acc).v128.bitselect().set(q.best);
        f.get(q.s).get(q.scale).get(q.acc).v128.bitselect().set(q.scale);
        f.get(q.is).get(q.bestIs).get(q.acc).v128.bitselect().set(q.bestIs);
        f.get(q.lo).get(q.bestLo).get(q.acc).v128.bitselect().set(q.bestLo);
        f.get(q.m).get(q.lo).get(q.acc).v128.bitselect().set(q.lo);
      }
      f.get(k).i32.const(1).i32.add().tee(k).i32.const(nstep + 1).i32.ltU().brIf(nextStep);
    });
    // outputs: 8 f32 per block
    f.get(b).i32.const(32).i32.mul().set(ob);
    for (let g = 0; g < 2; g++) {
      const q = G[g]!;
      f.get(ob).get(ZERO).get(q.scale).get(q.eq).v128.bitselect().v128.store(OUT_S + 16 * g);
      f.get(ob).get(q.lo0).f32x4.neg().get(q.lo).f32x4.neg().get(q.eq).v128.bitselect().v128.store(OUT_M + 16 * g);
    }
    // levels of the accepted step (0 for an empty range), as bytes, transposed
    f.get(b).i32.const(QK).i32.mul().set(ob);
    for (let i = 0; i < 32; i++) {
      for (let g = 0; g < 2; g++) {
        const q = G[g]!;
        f.get(ob);
        f.get(q.bestIs).v128At(xAt(i, g)).get(q.bestLo).f32x4.sub().f32x4.mul();
        nearestClamp(f, K);
        f.get(q.eq).v128.andnot().tee(t).get(t).i16x8.narrowI32x4U().tee(t).get(t).i8x16.narrowI16x8U().i32x4.extractLane(0);
        f.i32.store(OUT_L + i * 8 + 4 * g);
      }
    }
  });
}

/**
 * Q6_K search kernel: q(nb) runs make_qx_quants(16, 32, …, rmse_type 1) on the 16 sub-blocks of each
 * of nb super-blocks: scales to OUT_S (16 per block), levels 0..63 (0 for a group with max |x| < EPS)
 * to OUT_L, transposed (element i of sub-block j at i·16 + j). Trial numerators from TBL (18).
 */
function buildQxKernel(f: Fn): void {
  const nb = f.p["nb"] as Local<"i32">;
  const xb = f.i32("xb"), k = f.i32("k"), ob = f.i32("ob");
  const K = nearestConsts(f, -32, 31);
  const ZERO = f.v128("zero"), EPSV = f.v128("eps"), NMIN = f.v128("nmin"), N32I = f.v128("n32"), num = f.v128("num");
  const t = f.v128("t"), l = f.v128("l"), ax = f.v128("ax");
  const G = [0, 1, 2, 3].map((g) => {
    const v = (name: string): V => f.v128(`${name}${g}`);
    return { amax: v("amax"), max: v("max"), zero: v("zero"), is: v("is"), scale: v("scale"), best: v("best"), bestIs: v("bestIs"), sumlx: v("sumlx"), suml2: v("suml2"), acc: v("acc") };
  });
  const xAt = (i: number, g: number): number => XT + 4 * (i * 16 + 4 * g);
  const wAt = (i: number, g: number): number => WT + 4 * (i * 16 + 4 * g);
  const wxAt = (i: number, g: number): number => AT + 4 * (i * 16 + 4 * g);
  splatF(f, ZERO, 0);
  splatF(f, EPSV, EPS);
  splatF(f, NMIN, -32);
  splatI(f, N32I, 32);
  // one pass of sums for iscale `is` into sumlx/suml2 of each group
  const pass = (): void => {
    for (const q of G) f.get(ZERO).tee(q.sumlx).set(q.suml2);
    for (let i = 0; i < 16; i++) {
      for (let g = 0; g < 4; g++) {
        const q = G[g]!;
        f.get(q.is).v128At(xAt(i, g)).f32x4.mul();
        nearestClamp(f, K);
        f.f32x4.convertI32x4S().set(l);
        f.get(q.sumlx).v128At(wxAt(i, g)).get(l).f32x4.mul().f32x4.add().set(q.sumlx);
        f.get(q.suml2).v128At(wAt(i, g)).get(l).f32x4.mul().get(l).f32x4.mul().f32x4.add().set(q.suml2);
      }
    }
  };
  forBlocks(f, nb, (b) => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    transpose(f, xb, 16);
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      f.get(ZERO).tee(q.amax).set(q.max);
      for (let i = 0; i < 16; i++) {
        // w = x², w·x; first strictly largest |x|
        f.i32.const(0).v128At(xAt(i, g)).v128At(xAt(i, g)).f32x4.mul().tee(t).v128.store(wAt(i, g));
        f.i32.const(0).get(t).v128At(xAt(i, g)).f32x4.mul().v128.store(wxAt(i, g));
        f.v128At(xAt(i, g)).f32x4.abs().tee(ax).get(q.amax).f32x4.gt().set(t);
        f.get(ax).get(q.amax).get(t).v128.bitselect().set(q.amax);
        f.v128At(xAt(i, g)).get(q.max).get(t).v128.bitselect().set(q.max);
      }
      f.get(q.amax).get(EPSV).f32x4.lt().set(q.zero);
      f.get(NMIN).get(q.max).f32x4.div().tee(q.is).set(q.bestIs);
    }
    pass();
    for (const q of G) {
      // scale = suml2 ? sumlx/suml2 : 0; best = scale·sumlx
      f.get(q.sumlx).get(q.suml2).f32x4.div().get(ZERO).get(q.suml2).get(ZERO).f32x4.ne().v128.bitselect().tee(q.scale);
      f.get(q.sumlx).f32x4.mul().set(q.best);
    }
    f.i32.const(0).set(k);
    f.loop((nextTrial) => {
      f.i32.const(0).get(k).i32.const(2).i32.shl().i32.add().f32.load(TBL).f32x4.splat().set(num);
      for (const q of G) f.get(num).get(q.max).f32x4.div().set(q.is);
      pass();
      for (const q of G) {
        // suml2 > 0 && sumlx² > best·suml2 → scale = sumlx/suml2, best = scale·sumlx
        f.get(q.suml2).get(ZERO).f32x4.gt().get(q.sumlx).get(q.sumlx).f32x4.mul().get(q.best).get(q.suml2).f32x4.mul().f32x4.gt().v128.and().set(q.acc);
        f.get(q.sumlx).get(q.suml2).f32x4.div().tee(t).get(q.scale).get(q.acc).v128.bitselect().set(q.scale);
        f.get(t).get(q.sumlx).f32x4.mul().get(q.best).get(q.acc).v128.bitselect().set(q.best);
        f.get(q.is).get(q.bestIs).get(q.acc).v128.bitselect().set(q.bestIs);
      }
      f.get(k).i32.const(1).i32.add().tee(k).i32.const(18).i32.ltU().brIf(nextTrial);
    });
    f.get(b).i32.const(64).i32.mul().set(ob);
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      f.get(ob).get(ZERO).get(q.scale).get(q.zero).v128.bitselect().v128.store(OUT_S + 16 * g);
    }
    f.get(b).i32.const(QK).i32.mul().set(ob);
    for (let i = 0; i < 16; i++) {
      for (let g = 0; g < 4; g++) {
        const q = G[g]!;
        f.get(ob);
        f.get(q.bestIs).v128At(xAt(i, g)).f32x4.mul();
        nearestClamp(f, K);
        f.get(N32I).i32x4.add().get(q.zero).v128.andnot().tee(t).get(t).i16x8.narrowI32x4U().tee(t).get(t).i8x16.narrowI16x8U().i32x4.extractLane(0);
        f.i32.store(OUT_L + i * 16 + 4 * g);
      }
    }
  });
}

/** A module exporting memory "m" and two (i32 nb) → () functions: "q" (the search) and "r" (the re-quantization). */
function kernelModule(search: (f: Fn) => void, requant: (f: Fn) => void): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  search(mod.func("q", { nb: "i32" }));
  requant(mod.func("r", { nb: "i32" }));
  return mod.bytes();
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

function kernel(name: string, build: () => Uint8Array<ArrayBuffer>, table: Float64Array) {
  return lazyKernel(name, build, (e, mem): Kernel => {
    const q = e["q"] as (nb: number) => void;
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
      requant: e["r"] as (nb: number) => void,
      levels: new Uint8Array(buf, OUT_L, KW_BLOCKS * QK),
      dd: new Float32Array(buf, DD, KW_BLOCKS * 16),
      dm: new Float32Array(buf, DM, KW_BLOCKS * 16),
      final: new Uint8Array(buf, LN, KW_BLOCKS * QK),
    };
  });
}

/** A K-quant fast path: quantize() returns false when it did not run (no kernel, or non-finite input). */
export interface KQuantFastPath {
  quantize(src: Float32Array, dst: Uint8Array): boolean;
  /** whether the WebAssembly kernel is in use (instantiates it) */
  available(): boolean;
}

/** true when every value is finite (the kernels are only used then) */
function allFinite(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return false;
  }
  return true;
}


/**
 * Q4_K / Q5_K quantizer: the wasm search, then k45Tail (the TypeScript path's tail, the same function), the wasm re-quantization and the
 * type's `pack(L, dst, o)`. The kernel is instantiated on first use (instantiate.ts).
 */
export function k45WasmQuantizer(
  name: string,
  nmax: number,
  steps: Float64Array,
  size: number,
  pack: (L: Uint8Array, lo: number, dst: Uint8Array, o: number) => void,
): KQuantFastPath {
  const lazy = kernel(
    name,
    () => kernelModule((f) => buildQkx2Kernel(f, nmax, steps.length - 1), (f) => buildRequant(f, 32, true, 0, nmax, 0)),
    steps,
  );
  const quantize = (src: Float32Array, dst: Uint8Array): boolean => {
    const kern = lazy.get();
    if (!kern || !allFinite(src)) return false;
    const { scales, mins, levels, dd: DDv, dm: DMv, final } = kern;
    const nb = src.length / QK;
    for (let b0 = 0; b0 < nb; b0 += KW_BLOCKS) {
      const n = Math.min(KW_BLOCKS, nb - b0);
      kern.run(src, b0, n);
      for (let bi = 0; bi < n; bi++) {
        k45Tail(scales, mins, bi * 8, dst, (b0 + bi) * size, DDv, DMv, bi * 16);
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
  return { quantize, available: () => lazy.available() };
}

/**
 * Q6_K quantizer: the wasm search, then q6kTail (the function q6_k.ts uses), the wasm re-quantization and `pack`.
 * The kernel is instantiated on first use (instantiate.ts).
 */
export function q6kWasmQuantizer(trials: Float64Array, pack: (L: Uint8Array, lo: number, dst: Uint8Array, o: number) => void): KQuantFastPath {
  const lazy = kernel("q6_k", () => kernelModule(buildQxKernel, (f) => buildRequant(f, 16, false, -32, 31, 32)), trials);
  const SIZE = 210;
  const zero = new Uint8Array(KW_BLOCKS);
  const quantize = (src: Float32Array, dst: Uint8Array): boolean => {
    const kern = lazy.get();
    if (!kern || !allFinite(src)) return false;
    const { scales, levels, dd: DDv, final } = kern;
    const nb = src.length / QK;
    for (let b0 = 0; b0 < nb; b0 += KW_BLOCKS) {
      const n = Math.min(KW_BLOCKS, nb - b0);
      kern.run(src, b0, n);
      for (let bi = 0; bi < n; bi++) {
        const ok = q6kTail(scales, bi * 16, dst, (b0 + bi) * SIZE, DDv, bi * 16);
        zero[bi] = ok ? 0 : 1;
        if (!ok) for (let j = 0; j < 16; ++j) DDv[bi * 16 + j] = 1; // any value: the block is not packed
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
  return { quantize, available: () => lazy.available() };
}
