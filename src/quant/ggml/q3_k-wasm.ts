/**
 * WebAssembly SIMD search of Q3_K: make_q3_quants(16, 4, x, L, do_rmse = true) for the 16 sub-blocks
 * of each super-block (ggml/src/ggml-quants.c: make_q3_quants, called from quantize_row_q3_K_ref),
 * then the re-quantization with the fp16 scale (kquant16-wasm.ts).
 *
 * As in q2_k-wasm.ts the super-block is transposed, so the lanes of a vector are four different
 * sub-blocks and every float operation of the C search is one f32x4 operation on them, in the C
 * order. The search is a coordinate descent: up to 5 rounds over the 16 elements, each element's
 * update depending on the running sums left by the previous one — sequential per lane, as in C.
 * C's conditions (`slx > 0`, `new_l != L[i]`, `sl2 > 0 && slx·slx·suml2 > sumlx·sumlx·sl2`) become one
 * lane mask selecting the new level and sums. C stops a sub-block's descent after a round without a
 * change; here the rounds go on while any lane changed, which is the same: a round that changed
 * nothing leaves the state as it was, so the next round changes nothing either.
 *
 * q(nb) writes, per super-block, the 16 scales (OUT_S: suml2 > 0 ? sumlx/suml2 : 0; 0 for a group
 * with max |x| < GROUP_MAX_EPS), the levels + 4 (OUT_L, transposed; 0 for such a group) and a flag
 * for a super-block holding a NaN or an infinity (BAD; q returns their count); r(nb) re-quantizes
 * with DD into LN; p(nb) packs hmask and qs into the output blocks (runKQuant in kquant16-wasm.ts drives
 * them). The readable reference is kquant-common.ts's makeQ3Quants and q3_k.ts.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { EPS } from "./kquant-common.js";
import { QK, addPack16, addRequant, kquantKernel, loadAt, nearestClamp, nearestConsts, searchFrame, splatF, splatI, storeAt, storeBytes4 } from "./kquant16-wasm.js";
import type { KQuantLayout, V } from "./kquant16-wasm.js";

/** super-blocks per kernel call (64 KiB of input) */
export const Q3_BLOCKS = 64;
const IN = 0;
const XT = Q3_BLOCKS * QK * 4; // the current super-block, transposed (1 KiB)
const WT = XT + 1024; // w = x², transposed
const WXT = WT + 1024; // w·x, transposed
const LT = WXT + 1024; // the current levels L (f32, −4 … 3), transposed
const TINY = LT + 1024; // per vector g: the mask of its all-zero sub-blocks (4 × 16 bytes)
const OUT_S = TINY + 64; // scales, f32 [Q3_BLOCKS][16]
const OUT_L = OUT_S + Q3_BLOCKS * 64; // search levels + 4, u8 [Q3_BLOCKS][256], transposed
const DD = OUT_L + Q3_BLOCKS * QK; // d·(scale − 32), f32 [Q3_BLOCKS][16]
const LN = DD + Q3_BLOCKS * 64; // final levels + 4, u8 [Q3_BLOCKS][256]
const BAD = LN + Q3_BLOCKS * QK; // u8 [Q3_BLOCKS]: 1 for a super-block holding a NaN or an infinity
const OUT = BAD + Q3_BLOCKS; // the output blocks, [Q3_BLOCKS][110]
const SIZE = 110;
const END = OUT + Q3_BLOCKS * SIZE;

const NMAX = 4;

function buildModule(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  const f = mod.func("q", { nb: "i32" }, "i32");
  const round = f.i32("round"), ob = f.i32("ob");
  const K = nearestConsts(-NMAX, NMAX - 1);
  const ZERO = splatF(f, "zero", 0), EPSV = splatF(f, "eps", EPS), NEG_NMAX = splatF(f, "negNmax", -NMAX), OFFSET = splatI(f, "nmaxI", NMAX);
  const t = f.v128("t"), ax = f.v128("ax"), lf = f.v128("L"), nl = f.v128("newL"), slx = f.v128("slx"), sl2 = f.v128("sl2"), acc = f.v128("acc");
  const changed = f.v128("changed"), fin = f.v128("finite");
  const G = [0, 1, 2, 3].map((g) => {
    const l = (name: string): V => f.v128(`${name}${g}`);
    return { amax: l("amax"), max: l("max"), tiny: l("tiny"), is: l("iscale"), sumlx: l("sumlx"), suml2: l("suml2") };
  });
  const at = (base: number, i: number, g: number): number => base + 16 * (4 * i + g);
  // a NaN or an infinity in the super-block: flagged (the caller quantizes it with the TypeScript path)
  const flag = (): void => void f.get(fin).get(fin).f32x4.ne().v128.anyTrue();
  searchFrame(f, 16, { in: IN, xt: XT, bad: BAD }, (b) => {
    f.get(ZERO).set(fin);
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      // max = the signed first strictly largest |x|
      f.get(ZERO).tee(q.amax).set(q.max);
      for (let i = 0; i < 16; i++) {
        // x − x is 0 for a finite x, NaN otherwise
        f.get(fin);
        loadAt(f, at(XT, i, g));
        loadAt(f, at(XT, i, g)).f32x4.sub().f32x4.add().set(fin);
        loadAt(f, at(XT, i, g)).f32x4.abs().tee(ax).get(q.amax).f32x4.gt().set(t);
        f.get(ax).get(q.amax).get(t).v128.bitselect().set(q.amax);
        loadAt(f, at(XT, i, g)).get(q.max).get(t).v128.bitselect().set(q.max);
      }
      f.get(q.amax).get(EPSV).f32x4.lt().set(q.tiny); // amax < GROUP_MAX_EPS: all zero
      storeAt(f, TINY + 16 * g, () => f.get(q.tiny));
      // such a sub-block's x are set to 0 here: then w = w·x = 0, sumlx = 0 and slx = 0, so the descent
      // never takes a step there (its outputs are forced to 0 below)
      for (let i = 0; i < 16; i++) storeAt(f, at(XT, i, g), () => loadAt(f, at(XT, i, g)).get(q.tiny).v128.andnot());
      f.get(NEG_NMAX).get(q.max).f32x4.div().set(q.is); // iscale = −nmax / max
      f.get(ZERO).tee(q.sumlx).set(q.suml2);
      for (let i = 0; i < 16; i++) {
        // L = MAX(−nmax, MIN(nmax−1, nearest_int(iscale·x))); w = x²; sumlx += w·x·L; suml2 += w·L·L
        f.get(q.is);
        loadAt(f, at(XT, i, g)).f32x4.mul();
        nearestClamp(f, K);
        f.f32x4.convertI32x4S().set(lf);
        storeAt(f, at(LT, i, g), () => f.get(lf));
        storeAt(f, at(WT, i, g), () => {
          loadAt(f, at(XT, i, g));
          loadAt(f, at(XT, i, g)).f32x4.mul().tee(t);
        });
        storeAt(f, at(WXT, i, g), () => {
          f.get(t);
          loadAt(f, at(XT, i, g)).f32x4.mul().tee(ax);
        });
        f.get(q.sumlx).get(ax).get(lf).f32x4.mul().f32x4.add().set(q.sumlx);
        f.get(q.suml2).get(t).get(lf).f32x4.mul().get(lf).f32x4.mul().f32x4.add().set(q.suml2);
      }
    }
    // up to 5 rounds of the descent, while some lane changed
    f.i32.const(0).set(round);
    f.block((done) =>
      f.loop((again) => {
        f.get(ZERO).set(changed);
        for (let i = 0; i < 16; i++) {
          for (let g = 0; g < 4; g++) {
            const q = G[g]!;
            loadAt(f, at(LT, i, g)).set(lf);
            // slx = sumlx − w·x·L; sl2 = suml2 − w·L·L; new_l = MAX(−nmax, MIN(nmax−1, nearest_int(x·sl2/slx)))
            f.get(q.sumlx);
            loadAt(f, at(WXT, i, g)).get(lf).f32x4.mul().f32x4.sub().set(slx);
            f.get(q.suml2);
            loadAt(f, at(WT, i, g)).get(lf).f32x4.mul().get(lf).f32x4.mul().f32x4.sub().set(sl2);
            loadAt(f, at(XT, i, g)).get(sl2).f32x4.mul().get(slx).f32x4.div();
            nearestClamp(f, K);
            f.f32x4.convertI32x4S().set(nl);
            // taken when slx > 0, new_l ≠ L, and (after slx += w·x·new_l, sl2 += w·new_l·new_l)
            // sl2 > 0 && slx·slx·suml2 > sumlx·sumlx·sl2
            f.get(slx).get(ZERO).f32x4.gt().get(nl).get(lf).f32x4.ne().v128.and().set(acc);
            f.get(slx);
            loadAt(f, at(WXT, i, g)).get(nl).f32x4.mul().f32x4.add().set(slx);
            f.get(sl2);
            loadAt(f, at(WT, i, g)).get(nl).f32x4.mul().get(nl).f32x4.mul().f32x4.add().set(sl2);
            f.get(acc).get(sl2).get(ZERO).f32x4.gt().v128.and();
            f.get(slx).get(slx).f32x4.mul().get(q.suml2).f32x4.mul();
            f.get(q.sumlx).get(q.sumlx).f32x4.mul().get(sl2).f32x4.mul();
            f.f32x4.gt().v128.and().set(acc);
            storeAt(f, at(LT, i, g), () => f.get(nl).get(lf).get(acc).v128.bitselect());
            f.get(slx).get(q.sumlx).get(acc).v128.bitselect().set(q.sumlx);
            f.get(sl2).get(q.suml2).get(acc).v128.bitselect().set(q.suml2);
            f.get(changed).get(acc).v128.or().set(changed);
          }
        }
        f.get(changed).v128.anyTrue().i32.eqz().brIf(done);
        f.get(round).i32.const(1).i32.add().tee(round).i32.const(5).i32.ltU().brIf(again);
      }),
    );
    // outputs: scale = suml2 > 0 ? sumlx/suml2 : 0 (0 for an all-zero group); levels L + nmax (0 there)
    f.get(b).i32.const(64).i32.mul().set(ob);
    for (let g = 0; g < 4; g++) {
      const q = G[g]!;
      f.get(ob);
      f.get(q.sumlx).get(q.suml2).f32x4.div().get(ZERO);
      f.get(q.suml2).get(ZERO).f32x4.gt();
      loadAt(f, TINY + 16 * g).v128.andnot();
      f.v128.bitselect().v128.store(OUT_S + 16 * g);
    }
    f.get(b).i32.const(QK).i32.mul().set(ob);
    for (let i = 0; i < 16; i++) {
      for (let g = 0; g < 4; g++) {
        loadAt(f, at(LT, i, g)).i32x4.truncSatF32x4S().get(OFFSET).i32x4.add();
        loadAt(f, TINY + 16 * g).v128.andnot();
        storeBytes4(f, ob, OUT_L + 16 * i + 4 * g, t);
      }
    }
  }, flag);
  addRequant(mod, { in: IN, dd: DD, dm: DD, ln: LN }, 16, false, -NMAX, NMAX - 1, NMAX);
  addPack16(mod, { ln: LN, out: OUT, size: SIZE, qs: 32, hmask: 0 });
  return mod.bytes();
}

const LAYOUT: KQuantLayout = {
  blocks: Q3_BLOCKS, size: SIZE, n: 16, in: IN, scales: OUT_S, mins: -1, levels: OUT_L, dd: DD, dm: -1, ln: LN, bad: BAD, out: OUT, table: -1,
};

/** The Q3_K kernel (lazily instantiated: src/quant/wasm/instantiate.ts). */
export function q3Kernel() {
  return kquantKernel("q3_k", buildModule, LAYOUT);
}
