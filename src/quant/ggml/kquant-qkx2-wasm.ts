/**
 * The one WebAssembly SIMD emitter of ggml's make_qkx2_quants search (ggml/src/ggml-quants.c), for
 * every K-quant that uses it:
 *
 * - Q4_K / Q5_K (quantize_row_q4_K_ref / _q5_K_ref): n = 32, weights av + |x| with
 *   av = sqrtf(Σx²/32), squared error, nmax 15 / 31, 21 / 16 steps;
 * - Q2_K (quantize_row_q2_K_ref): n = 16, weights |x|, absolute error (use_mad), nmax 3, 16 steps.
 *
 * The super-block is transposed (kquant16-wasm.ts transpose), so a vector holds one element of four
 * sub-blocks and each C float operation is one f32x4 operation on four sub-blocks, in the C order;
 * C's `if`s are lane masks (`if (x < min)` is f32x4.pmin, the fit and acceptance are qkx2Fit /
 * qkx2Accept). The sub-blocks are searched two vectors (8 sub-blocks) at a time, in real loops over
 * the elements (fully unrolled, V8's scheduler computed every level first and spilled them).
 *
 * nearest_int inside the search is f32x4.nearest (kquant16-wasm.ts nearestLevel), equal to ggml's
 * formula for arguments within ±4194303. The argument iscale·(x − min) is monotone in x, so over a
 * sub-block it lies between its values at x = max and x = min(min_x, 0): both are checked for every
 * step and lane, and a super-block where one is out of range (or NaN — an iscale that overflowed) is
 * flagged, as is one holding a NaN or an infinity; the caller quantizes flagged super-blocks with the
 * TypeScript path. The accepted step's levels are recomputed at the end from its iscale and min with
 * ggml's own nearest_int formula (nearestClamp).
 */
import type { ModuleBuilder } from "../wasm/builder.js";
import { forBytes, nearestClamp, nearestConsts, nearestLevel, qkx2Accept, qkx2Fit, qkx2Outputs, searchFrame, splatF, storeBytes4 } from "./kquant16-wasm.js";
import type { Fn, Qkx2Lanes, V } from "./kquant16-wasm.js";

/** The argument range of nearest_int where f32x4.nearest gives ggml's integer. */
const NEAREST_RANGE = 4194303;

export interface Qkx2Search {
  /** values per sub-block (16 or 32) */
  n: 16 | 32;
  nmax: number;
  /** steps 0..nstep; their numerators f(f(rmin + f(rdelta·k)) + nmax) are f32 at `table` */
  nstep: number;
  /** use_mad: the error sums w·|d| (Q2_K) instead of w·d² */
  mad: boolean;
  /** the weights: av + |x|, av = sqrtf(Σx²/32) (Q4_K, Q5_K), or |x| (Q2_K) */
  avWeights: boolean;
  /** byte addresses: input, transposed x / weights / step levels (1 KiB each), step numerators, outputs */
  in: number;
  xt: number;
  wt: number;
  at: number;
  table: number;
  /** scales and the_min values, f32 [nb][16] */
  scales: number;
  mins: number;
  /** the accepted levels, u8 [nb][256], transposed (element i of sub-block j at 256·b + (256/n)·i + j) */
  levels: number;
  /** u8 [nb]: 1 for a flagged super-block */
  bad: number;
}

/**
 * Adds q(nb) → flagged count to the module: make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux,
 * rmin, rdelta, nstep, use_mad) on every sub-block of nb super-blocks; writes scale, the_min and the
 * levels (0 for an empty range, max == min), and flags super-blocks for the TypeScript path.
 */
export function addQkx2Search(mod: ModuleBuilder, S: Qkx2Search): void {
  const { n, nmax, nstep } = S;
  const V4 = 256 / n / 4; // vectors per element row
  const ROW = 16 * V4; // bytes per element row of XT / WT / AT
  const END = n * ROW; // 1024
  const f = mod.func("q", { nb: "i32" }, "i32");
  const k = f.i32("k"), ob = f.i32("ob"), p = f.i32("p"), o = f.i32("o");
  const K = nearestConsts(0, nmax);
  const ZERO = splatF(f, "zero", 0), NMAXF = splatF(f, "nmax", nmax), ONE = splatF(f, "one", 1), N32 = splatF(f, "n32", 32);
  const RANGE = splatF(f, "range", NEAREST_RANGE);
  const num = f.v128("num"), t = f.v128("t"), d = f.v128("d"), A = f.v128("A"), wA = f.v128("wA"), x = f.v128("x");
  const good = f.v128("good"), fin = f.v128("finite");
  // the search's state of vector g (sub-blocks 4g … 4g+3); two vectors are searched together
  const state = (g: number) => {
    const l = (name: string): V => f.v128(`${name}${g}`);
    const q: Qkx2Lanes & { g: number; max: V; min0: V; flat: V; sx2: V; av: V } = {
      g,
      sw: l("sumW"), sx: l("sumX"), sl: l("sumL"), sl2: l("sumL2"), sxl: l("sumXL"), D: l("D"), s: l("thisScale"), m: l("thisMin"), err: l("err"),
      best: l("best"), scale: l("scale"), is: l("iscale"), min: l("min"), bestIs: l("bestIscale"), bestMin: l("bestMin"),
      max: l("max"), min0: l("min0"), flat: l("flat"), sx2: l("sumX2"), av: l("av"),
    };
    return q;
  };
  type Q = ReturnType<typeof state>;
  const pairs: Q[][] = [];
  for (let g = 0; g < V4; g += 2) pairs.push([state(g), state(g + 1)]);
  // the vector of element i (p = ROW·i) of vector g in XT / WT / AT
  const ld = (base: number, g: number): Fn => f.get(p).v128.load(base + 16 * g);
  /** push the level MAX(0, MIN(nmax, nearest_int(is·(x − min)))) (f32x4) of the element at p */
  const level = (q: Q): void =>
    nearestLevel(f, ZERO, NMAXF, () => {
      f.get(q.is);
      ld(S.xt, q.g).get(q.min).f32x4.sub().f32x4.mul();
    });
  /** good &= flat | (|is·(max − min)| < RANGE & |is·(min0 − min)| < RANGE): the ends of this step's arguments of nearest_int */
  const guard = (q: Q): void => {
    f.get(good);
    f.get(q.is).get(q.max).get(q.min).f32x4.sub().f32x4.mul().f32x4.abs().get(RANGE).f32x4.lt();
    f.get(q.is).get(q.min0).get(q.min).f32x4.sub().f32x4.mul().f32x4.abs().get(RANGE).f32x4.lt();
    f.v128.and().get(q.flat).v128.or().v128.and().set(good);
  };
  /** push w·d² or w·|d| for the residual d on the stack (the weight of the element at p) */
  const errTerm = (q: Q): void => {
    f.set(d);
    ld(S.wt, q.g).get(d);
    if (S.mad) f.f32x4.abs();
    else f.get(d).f32x4.mul();
    f.f32x4.mul();
  };
  /** push |x| + av (or |x|) of vector g at p */
  const weight = (q: Q): void => {
    if (S.avWeights) f.get(q.av);
    f.get(x).f32x4.abs();
    if (S.avWeights) f.f32x4.add();
  };
  // flagged: a NaN or an infinity, or a step whose levels the guard could not vouch for
  const flag = (): void => void f.get(good).get(fin).get(fin).f32x4.eq().v128.and().i32x4.allTrue().i32.eqz();
  searchFrame(f, n, { in: S.in, xt: S.xt, bad: S.bad }, (b) => {
    f.i32.const(-1).i32x4.splat().set(good);
    f.get(ZERO).set(fin);
    // x − x is 0 for a finite x, NaN otherwise
    forBytes(f, p, 0, END, ROW, () => {
      for (let g = 0; g < V4; g++) {
        ld(S.xt, g).set(x);
        f.get(fin).get(x).get(x).f32x4.sub().f32x4.add().set(fin);
      }
    });
    f.get(b).i32.const(64).i32.mul().set(ob);
    f.get(b).i32.const(256).i32.mul().set(o);
    for (const G of pairs) {
      if (S.avWeights) {
        // av = sqrtf(sum_x2/32), sum_x2 = Σx² (sequential per lane)
        for (const q of G) f.get(ZERO).set(q.sx2);
        forBytes(f, p, 0, END, ROW, () => {
          for (const q of G) {
            ld(S.xt, q.g).set(x);
            f.get(q.sx2).get(x).get(x).f32x4.mul().f32x4.add().set(q.sx2);
          }
        });
        for (const q of G) f.get(q.sx2).get(N32).f32x4.div().f32x4.sqrt().set(q.av);
      }
      // weights stored; min/max (strict comparisons in order), sum_w = Σw, sum_x = Σw·x
      for (const q of G) {
        f.i32.const(0).v128.load(S.xt + 16 * q.g).tee(x).tee(q.min).set(q.max);
        f.i32.const(0).with(() => weight(q)).tee(q.sw).v128.store(S.wt + 16 * q.g);
        f.get(q.sw).get(x).f32x4.mul().set(q.sx);
      }
      forBytes(f, p, ROW, END, ROW, () => {
        for (const q of G) {
          ld(S.xt, q.g).set(x);
          f.get(p).with(() => weight(q)).tee(d).v128.store(S.wt + 16 * q.g);
          f.get(q.min).get(x).f32x4.pmin().set(q.min);
          f.get(q.max).get(x).f32x4.pmax().set(q.max);
          f.get(q.sw).get(d).f32x4.add().set(q.sw);
          f.get(q.sx).get(d).get(x).f32x4.mul().f32x4.add().set(q.sx);
        }
      });
      for (const q of G) {
        f.get(q.min).get(ZERO).f32x4.pmin().tee(q.min).tee(q.min0).set(q.bestMin); // if (min > 0) min = 0
        f.get(q.max).get(q.min).f32x4.eq().set(q.flat); // max == min: L = 0, scale 0
        // iscale = nmax/(max − min), scale = 1/iscale, best_error = Σ w·err(scale·L + min − x)
        f.get(NMAXF).get(q.max).get(q.min).f32x4.sub().f32x4.div().tee(q.is).set(q.bestIs);
        f.get(ONE).get(q.is).f32x4.div().set(q.scale);
        f.get(ZERO).set(q.best);
        guard(q);
      }
      forBytes(f, p, 0, END, ROW, () => {
        for (const q of G) {
          f.get(q.best);
          level(q);
          f.set(A);
          f.get(q.scale).get(A).f32x4.mul().get(q.min).f32x4.add();
          ld(S.xt, q.g).f32x4.sub();
          errTerm(q);
          f.f32x4.add().set(q.best);
        }
      });
      // the steps is = 0 … nstep
      f.i32.const(0).set(k);
      f.loop((nextStep) => {
        f.get(k).i32.const(2).i32.shl().f32.load(S.table).f32x4.splat().set(num);
        for (const q of G) {
          f.get(num).get(q.max).get(q.min).f32x4.sub().f32x4.div().set(q.is);
          guard(q);
          f.get(ZERO).tee(q.sl).tee(q.sl2).set(q.sxl);
        }
        // Laux = levels; sum_l += w·l; sum_l2 += w·l·l; sum_xl += w·l·x
        forBytes(f, p, 0, END, ROW, () => {
          for (const q of G) {
            level(q);
            f.set(A);
            f.get(p).get(A).v128.store(S.at + 16 * q.g);
            ld(S.wt, q.g).get(A).f32x4.mul().set(wA);
            f.get(q.sl).get(wA).f32x4.add().set(q.sl);
            f.get(q.sl2).get(wA).get(A).f32x4.mul().f32x4.add().set(q.sl2);
            f.get(q.sxl).get(wA);
            ld(S.xt, q.g).f32x4.mul().f32x4.add().set(q.sxl);
          }
        });
        for (const q of G) {
          qkx2Fit(f, q, ZERO, t);
          f.get(ZERO).set(q.err);
        }
        // cur_error += w·err(this_scale·Laux + this_min − x)
        forBytes(f, p, 0, END, ROW, () => {
          for (const q of G) {
            f.get(q.err).get(q.s);
            ld(S.at, q.g).f32x4.mul().get(q.m).f32x4.add();
            ld(S.xt, q.g).f32x4.sub();
            errTerm(q);
            f.f32x4.add().set(q.err);
          }
        });
        for (const q of G) qkx2Accept(f, q, ZERO, t);
        f.get(k).i32.const(1).i32.add().tee(k).i32.const(nstep + 1).i32.ltU().brIf(nextStep);
      });
      // outputs: scales (0 for an empty range), the_min = −min
      for (const q of G) qkx2Outputs(f, q, ZERO, ob, S.scales, S.mins, q.g);
      // levels of the accepted step (0 for an empty range), as bytes, transposed, by ggml's nearest_int
      forBytes(f, p, 0, END, ROW, () => {
        for (const q of G) {
          f.get(q.bestIs);
          ld(S.xt, q.g).get(q.bestMin).f32x4.sub().f32x4.mul();
          nearestClamp(f, K);
          f.get(q.flat).v128.andnot();
          storeBytes4(f, o, S.levels + 4 * q.g, t);
        }
        f.get(o).i32.const(4 * V4).i32.add().set(o);
      });
      f.get(o).i32.const(-4 * V4 * n).i32.add().set(o);
    }
  }, flag);
}
