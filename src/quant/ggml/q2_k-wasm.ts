/**
 * WebAssembly SIMD search of Q2_K: make_qkx2_quants(16, 3, x, weights = |x|, L, &the_min, Laux,
 * rmin = −0.5, rdelta = 0.1, nstep = 15, use_mad = true) for the 16 sub-blocks of each super-block
 * (ggml/src/ggml-quants.c: make_qkx2_quants, called from quantize_row_q2_K_ref), then the
 * re-quantization with the fp16 scales (kquant16-wasm.ts).
 *
 * The super-block is transposed (kquant16-wasm.ts), so a vector holds one element of four sub-blocks
 * and the four vectors g = 0..3 cover all 16; every float operation of the C search is the same
 * f32x4 operation on the four lanes, in the C order. C's `if`s become lane masks: `if (x < min)` is
 * f32x4.pmin (b < a ? b : a), `if (x > max)` pmax, `if (this_min > 0)` and the acceptance
 * `if (D > 0 && cur_error < best_error)` are bitselects. An accepted step's Laux is not copied: its
 * iscale and min are kept and the levels recomputed once at the end, the same integers.
 *
 * q(nb) writes, per super-block, the 16 scales (OUT_S), the 16 the_min values (OUT_M), the search's
 * levels (OUT_L, transposed: element i of sub-block j at 16i + j) and a flag for a super-block holding
 * a NaN or an infinity (BAD; q returns their count); r(nb) re-quantizes with DD / DM (set by the
 * caller from the fp16 d and dmin) into LN; p(nb) packs LN into the output blocks (kquant16-wasm.ts's
 * runKQuant drives the three). The readable reference is kquant-common.ts's makeQkx2 and q2_k.ts; both
 * use q2_k.ts's q2kTail.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import {
  QK, addPack16, addRequant, bindKQuant, loadAt, nearestClamp, nearestConsts, qkx2Accept, qkx2Fit, qkx2Outputs, searchFrame, splatF, storeAt, storeBytes4,
} from "./kquant16-wasm.js";
import type { KQuantKernel, KQuantLayout, V } from "./kquant16-wasm.js";

/** super-blocks per kernel call (64 KiB of input) */
export const Q2_BLOCKS = 64;
const IN = 0;
const XT = Q2_BLOCKS * QK * 4; // the current super-block, transposed (1 KiB)
const WT = XT + 1024; // its weights |x|, transposed
const AT = WT + 1024; // Laux of the current step (f32), transposed
const TBL = AT + 1024; // step numerators f(f(rmin + f(rdelta·is)) + nmax), f32
const OUT_S = TBL + 256; // scales, f32 [Q2_BLOCKS][16]
const OUT_M = OUT_S + Q2_BLOCKS * 64; // the_min, f32 [Q2_BLOCKS][16]
const OUT_L = OUT_M + Q2_BLOCKS * 64; // search levels, u8 [Q2_BLOCKS][256], transposed
const DD = OUT_L + Q2_BLOCKS * QK; // d·(scale & 15), f32 [Q2_BLOCKS][16]
const DM = DD + Q2_BLOCKS * 64; // dmin·(scale >> 4), f32 [Q2_BLOCKS][16]
const LN = DM + Q2_BLOCKS * 64; // final levels, u8 [Q2_BLOCKS][256]
const BAD = LN + Q2_BLOCKS * QK; // u8 [Q2_BLOCKS]: 1 for a super-block holding a NaN or an infinity
const OUT = BAD + Q2_BLOCKS; // the output blocks, [Q2_BLOCKS][84]
const SIZE = 84;
const END = OUT + Q2_BLOCKS * SIZE;

const NMAX = 3;

function buildModule(nstep: number): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  const f = mod.func("q", { nb: "i32" }, "i32");
  const k = f.i32("k"), ob = f.i32("ob");
  const K = nearestConsts(0, NMAX);
  const ZERO = splatF(f, "zero", 0), NMAXF = splatF(f, "nmax", NMAX), ONE = splatF(f, "one", 1);
  const fin = f.v128("finite");
  const num = f.v128("num"), t = f.v128("t"), d = f.v128("d"), A = f.v128("A"), wA = f.v128("wA");
  // per vector g (sub-blocks 4g … 4g+3): the search's state
  const G = [0, 1, 2, 3].map((g) => {
    const l = (name: string): V => f.v128(`${name}${g}`);
    return {
      min: l("min"), max: l("max"), sw: l("sumW"), sx: l("sumX"), min0: l("min0"), flat: l("flat"), is: l("iscale"), scale: l("scale"),
      best: l("best"), bestIs: l("bestIscale"), bestMin: l("bestMin"), sl: l("sumL"), sl2: l("sumL2"), sxl: l("sumXL"),
      s: l("thisScale"), m: l("thisMin"), D: l("D"), err: l("err"),
    };
  });
  const xAt = (i: number, g: number): number => XT + 16 * (4 * i + g);
  const wAt = (i: number, g: number): number => WT + 16 * (4 * i + g);
  const aAt = (i: number, g: number): number => AT + 16 * (4 * i + g);
  /** push MAX(0, MIN(nmax, nearest_int(iscale·(x − min)))) as i32x4 */
  const level = (is: V, min: V, i: number, g: number): void => {
    f.get(is);
    loadAt(f, xAt(i, g)).get(min).f32x4.sub().f32x4.mul();
    nearestClamp(f, K);
  };
  // a NaN or an infinity in the super-block: flagged (the caller quantizes it with the TypeScript path)
  const flag = (): void => void f.get(fin).get(fin).f32x4.ne().v128.anyTrue();
  searchFrame(f, 16, { in: IN, xt: XT, bad: BAD }, (b) => {
    f.get(ZERO).set(fin);
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      for (let i = 0; i < 16; i++) {
        storeAt(f, wAt(i, g), () => loadAt(f, xAt(i, g)).f32x4.abs());
        // x − x is 0 for a finite x, NaN otherwise
        f.get(fin);
        loadAt(f, xAt(i, g));
        loadAt(f, xAt(i, g)).f32x4.sub().f32x4.add().set(fin);
      }
      // min, max (strict comparisons in order), sum_w = Σw, sum_x = Σw·x
      loadAt(f, xAt(0, g)).tee(q.min).set(q.max);
      loadAt(f, wAt(0, g)).tee(q.sw);
      loadAt(f, xAt(0, g)).f32x4.mul().set(q.sx);
      for (let i = 1; i < 16; i++) {
        f.get(q.min);
        loadAt(f, xAt(i, g)).f32x4.pmin().set(q.min);
        f.get(q.max);
        loadAt(f, xAt(i, g)).f32x4.pmax().set(q.max);
        f.get(q.sw);
        loadAt(f, wAt(i, g)).f32x4.add().set(q.sw);
        f.get(q.sx);
        loadAt(f, wAt(i, g));
        loadAt(f, xAt(i, g)).f32x4.mul().f32x4.add().set(q.sx);
      }
      f.get(q.min).get(ZERO).f32x4.pmin().tee(q.min).set(q.min0); // if (min > 0) min = 0
      f.get(q.max).get(q.min).f32x4.eq().set(q.flat); // max == min: L = 0, scale 0
      // iscale = nmax/(max − min), scale = 1/iscale, best_error = Σ w·|scale·L + min − x|
      f.get(NMAXF).get(q.max).get(q.min).f32x4.sub().f32x4.div().tee(q.is).set(q.bestIs);
      f.get(ONE).get(q.is).f32x4.div().set(q.scale);
      f.get(q.min).set(q.bestMin);
      f.get(ZERO).set(q.best);
      for (let i = 0; i < 16; i++) {
        level(q.is, q.min, i, g);
        f.f32x4.convertI32x4S().set(A);
        f.get(q.scale).get(A).f32x4.mul().get(q.min).f32x4.add();
        loadAt(f, xAt(i, g)).f32x4.sub().f32x4.abs().set(d);
        f.get(q.best);
        loadAt(f, wAt(i, g)).get(d).f32x4.mul().f32x4.add().set(q.best);
      }
    }
    // the steps is = 0 … nstep
    f.i32.const(0).set(k);
    f.loop((step) => {
      f.get(k).i32.const(2).i32.shl().f32.load(TBL).f32x4.splat().set(num);
      for (const q of G) {
        f.get(num).get(q.max).get(q.min).f32x4.sub().f32x4.div().set(q.is);
        f.get(ZERO).tee(q.sl).tee(q.sl2).set(q.sxl);
      }
      for (let i = 0; i < 16; i++) {
        for (let g = 0; g < 4; g++) {
          const q = G[g]!;
          level(q.is, q.min, i, g);
          f.f32x4.convertI32x4S().set(A);
          storeAt(f, aAt(i, g), () => f.get(A));
          loadAt(f, wAt(i, g)).get(A).f32x4.mul().set(wA);
          f.get(q.sl).get(wA).f32x4.add().set(q.sl);
          f.get(q.sl2).get(wA).get(A).f32x4.mul().f32x4.add().set(q.sl2);
          f.get(q.sxl).get(wA);
          loadAt(f, xAt(i, g)).f32x4.mul().f32x4.add().set(q.sxl);
        }
      }
      for (const q of G) {
        qkx2Fit(f, q, ZERO, t);
        f.get(ZERO).set(q.err);
      }
      for (let i = 0; i < 16; i++) {
        for (let g = 0; g < 4; g++) {
          const q = G[g]!;
          // cur_error += w·|this_scale·Laux + this_min − x|
          f.get(q.s);
          loadAt(f, aAt(i, g)).f32x4.mul().get(q.m).f32x4.add();
          loadAt(f, xAt(i, g)).f32x4.sub().f32x4.abs().set(d);
          f.get(q.err);
          loadAt(f, wAt(i, g)).get(d).f32x4.mul().f32x4.add().set(q.err);
        }
      }
      for (const q of G) qkx2Accept(f, q, ZERO, t);
      f.get(k).i32.const(1).i32.add().tee(k).i32.const(nstep + 1).i32.ltU().brIf(step);
    });
    // outputs: scale (0 for a flat sub-block), the_min = −min, the accepted step's levels (0 if flat)
    f.get(b).i32.const(64).i32.mul().set(ob);
    for (let g = 0; g < 4; g++) qkx2Outputs(f, G[g]!, ZERO, ob, OUT_S, OUT_M, g);
    f.get(b).i32.const(QK).i32.mul().set(ob);
    for (let i = 0; i < 16; i++) {
      for (let g = 0; g < 4; g++) {
        const q = G[g]!;
        level(q.bestIs, q.bestMin, i, g);
        f.get(q.flat).v128.andnot();
        storeBytes4(f, ob, OUT_L + 16 * i + 4 * g, t);
      }
    }
  }, flag);
  addRequant(mod, { in: IN, dd: DD, dm: DM, ln: LN }, 16, true, 0, NMAX, 0);
  addPack16(mod, { ln: LN, out: OUT, size: SIZE, qs: 16, hmask: -1 });
  return mod.bytes();
}

const LAYOUT: KQuantLayout = {
  blocks: Q2_BLOCKS, size: SIZE, n: 16, in: IN, scales: OUT_S, mins: OUT_M, levels: OUT_L, dd: DD, dm: DM, ln: LN, bad: BAD, out: OUT, table: TBL,
};

/** The Q2_K kernel (lazily instantiated: src/quant/wasm/instantiate.ts); `steps` = qkx2StepNumerators(3, −0.5, 0.1, 15). */
export function q2Kernel(steps: Float64Array) {
  return lazyKernel("q2_k", () => buildModule(steps.length - 1), (e, mem): KQuantKernel => bindKQuant(e, mem, LAYOUT, steps));
}
