/**
 * WebAssembly SIMD fast paths of the K-quant scale searches, the hot loops of Q4_K_M:
 *
 * - `make_qkx2_quants(32, nmax, x, w = av + |x|, rmin, 0.1, nstep, use_mad = false)` for the 8
 *   sub-blocks of a Q4_K / Q5_K super-block (ggml/src/ggml-quants.c: make_qkx2_quants, called from
 *   quantize_row_q4_K_ref / quantize_row_q5_K_ref);
 * - `make_qx_quants(16, 32, x, L, rmse_type = 1)` for the 16 sub-blocks of a Q6_K super-block
 *   (ggml-quants.c: make_qx_quants, called from quantize_row_q6_K_ref);
 * - then the re-quantization with the fp16-rounded scales and the packing of the levels, also in
 *   WebAssembly; the per-super-block tails (6-/8-bit scales, fp16 d) are the TypeScript path's own
 *   functions (kquant-common.ts k45Tail, q6kTail), applied to the searches' outputs.
 *
 * How it stays bit-exact: wasm's f32 arithmetic is IEEE binary32 with round-to-nearest-even, so each
 * C float operation is one f32x4 operation, in the C order, never fused or reassociated. The lanes of a
 * vector are four *different sub-blocks* (the super-block is transposed first), so every sequential
 * sum of the reference stays sequential within its lane — no reordering of any sum. C's conditionals
 * become lane masks: `if (x < lo) lo = x` is f32x4.pmin (b < a ? b : a), an accepted search step is a
 * v128.bitselect of (best, scale, min, iscale) — the levels of the accepted step are recomputed once at
 * the end from its iscale and min with ggml's own nearest_int formula (magic-number add and mantissa
 * mask), which gives the same integers as storing them at that step.
 *
 * Inside the searches nearest_int is f32x4.nearest and the clamp two pmin/pmax (kquant16-wasm.ts
 * nearestLevel), which equals ggml's formula for arguments within ±4194303:
 * - Q6_K: the argument iscale·x has |iscale·x| ≤ (nmax + 0.9)·(1 + 2^-23) since |x| ≤ |max| and
 *   iscale = num/max — always in range;
 * - Q4_K / Q5_K: the argument iscale·(x − min) is monotone in x, so over a sub-block it lies between
 *   its values at x = max and x = min(min_x, 0); both are computed for every step and lane, and a
 *   super-block where one of them is not within ±4194303 (or is NaN) is flagged (it can only happen
 *   for degenerate ranges once a step moved min) and quantized by the TypeScript path.
 * Super-blocks holding a NaN or an infinity are flagged as well.
 *
 * The element loops are real wasm loops over the 32 (16) elements, each iteration handling one element
 * of every sub-block of the group: fully unrolled, V8's scheduler computed all levels of a step first
 * and spilled them to the stack (twice the instructions).
 *
 * The readable reference stays the TypeScript of kquant-common.ts (makeQkx2, makeQxQuants,
 * k45Search / k45Finish) and q6_k.ts: it runs when WebAssembly SIMD is unavailable and for flagged
 * super-blocks; tests compare both paths with ggml byte for byte.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { EPS, k45Tail, q6kTail } from "./kquant-common.js";
import { addQkx2Search } from "./kquant-qkx2-wasm.js";
import {
  QK, addRequant, forBlocks, forBytes, nearestClamp, nearestConsts, nearestLevel, kquantKernel, runKQuant, searchFrame,
  splatF, splatI, storeBytes4,
} from "./kquant16-wasm.js";
import type { Fn, KQuantKernel, KQuantLayout, V } from "./kquant16-wasm.js";

/** super-blocks per kernel call (64 KiB of input) */
export const KW_BLOCKS = 64;
const IN = 0;
const XT = KW_BLOCKS * QK * 4; // transposed x of the current super-block (1 KiB)
const WT = XT + 1024; // transposed weights (Q4_K/Q5_K: av+|x|; Q6_K: x²)
const AT = WT + 1024; // Q4_K/Q5_K: levels of the current step (f32); Q6_K: w·x
const TBL = AT + 1024; // step numerators (f32)
const OUT_S = TBL + 256; // scales, f32 [KW_BLOCKS][16]
const OUT_M = OUT_S + KW_BLOCKS * 64; // the_min, f32 [KW_BLOCKS][16]
const OUT_L = OUT_M + KW_BLOCKS * 64; // search levels, u8 [KW_BLOCKS][256], transposed (element i of sub-block j at i·G + j)
const DD = OUT_L + KW_BLOCKS * QK; // re-quantization: per sub-block d·scale (f32 [KW_BLOCKS][16]) …
const DM = DD + KW_BLOCKS * 64; // … and dmin·min (Q4_K/Q5_K)
const LN = DM + KW_BLOCKS * 64; // final levels, u8 [KW_BLOCKS][256], natural order
const BAD = LN + KW_BLOCKS * QK; // u8 [KW_BLOCKS]: 1 for a super-block the TypeScript path redoes
const OUT = BAD + KW_BLOCKS; // the output blocks, [KW_BLOCKS][size ≤ 210]
const END = OUT + KW_BLOCKS * 210;

function layout(size: number, n: number, withMin: boolean): KQuantLayout {
  return {
    blocks: KW_BLOCKS, size, n, in: IN, scales: OUT_S, mins: withMin ? OUT_M : -1, levels: OUT_L, dd: DD, dm: withMin ? DM : -1, ln: LN, bad: BAD, out: OUT,
    table: TBL,
  };
}

/**
 * Q6_K search: q(nb) runs make_qx_quants(16, 32, …, rmse_type 1) on the 16 sub-blocks of each of nb
 * super-blocks: scales to OUT_S (16 per block), levels 0..63 (0 for a group with max |x| < EPS) to
 * OUT_L, transposed (element i of sub-block j at i·16 + j); returns how many super-blocks hold a NaN or
 * an infinity (flagged in BAD). Trial numerators from TBL (18). The sub-blocks are searched two
 * vectors (8 sub-blocks) at a time.
 */
function addQxSearch(mod: ModuleBuilder): void {
  const f = mod.func("q", { nb: "i32" }, "i32");
  const k = f.i32("k"), o = f.i32("o"), p = f.i32("p");
  const K = nearestConsts(-32, 31);
  const ZERO = splatF(f, "zero", 0), EPSV = splatF(f, "eps", EPS), NMIN = splatF(f, "nmin", -32), NTOP = splatF(f, "ntop", 31);
  const N32I = splatI(f, "n32", 32);
  const num = f.v128("num"), t = f.v128("t"), l = f.v128("l"), x = f.v128("x"), ax = f.v128("ax"), fin = f.v128("finite");
  const G = [0, 1, 2, 3].map((g) => {
    const v = (name: string): V => f.v128(`${name}${g}`);
    return { g, amax: v("amax"), max: v("max"), zero: v("zero"), is: v("is"), scale: v("scale"), best: v("best"), bestIs: v("bestIs"), sumlx: v("sumlx"), suml2: v("suml2") };
  });
  type Q = (typeof G)[number];
  // the vector of element i (byte offset p = 64·i) of group g in XT / WT / AT (w·x)
  const ld = (base: number, g: number): Fn => f.get(p).v128.load(base + 16 * g);
  // one pass of sums for the iscale `is` of each group of the pair into sumlx / suml2
  const pass = (pair: readonly Q[]): void => {
    for (const q of pair) f.get(ZERO).tee(q.sumlx).set(q.suml2);
    forBytes(f, p, 0, 1024, 64, () => {
      for (const q of pair) {
        // l = MAX(−32, MIN(31, nearest_int(iscale·x))); sumlx += w·x·l; suml2 += w·l·l
        nearestLevel(f, NMIN, NTOP, () => {
          f.get(q.is);
          ld(XT, q.g).f32x4.mul();
        });
        f.set(l);
        f.get(q.sumlx);
        ld(AT, q.g).get(l).f32x4.mul().f32x4.add().set(q.sumlx);
        f.get(q.suml2);
        ld(WT, q.g).get(l).f32x4.mul().get(l).f32x4.mul().f32x4.add().set(q.suml2);
      }
    });
  };
  // a NaN or an infinity in the super-block: flagged (the caller quantizes it with the TypeScript path)
  const flag = (): void => void f.get(fin).get(fin).f32x4.ne().v128.anyTrue();
  searchFrame(f, 16, { in: IN, xt: XT, bad: BAD }, (b) => {
    f.get(ZERO).set(fin);
    for (const q of G) f.get(ZERO).tee(q.amax).set(q.max);
    forBytes(f, p, 0, 1024, 64, () => {
      for (const q of G) {
        // w = x², w·x; the first strictly largest |x|; x − x is NaN for a NaN or an infinity
        ld(XT, q.g).set(x);
        f.get(p).get(x).get(x).f32x4.mul().tee(t).v128.store(WT + 16 * q.g);
        f.get(p).get(t).get(x).f32x4.mul().v128.store(AT + 16 * q.g);
        f.get(fin).get(x).get(x).f32x4.sub().f32x4.add().set(fin);
        f.get(x).f32x4.abs().tee(ax).get(q.amax).f32x4.gt().set(t);
        f.get(ax).get(q.amax).get(t).v128.bitselect().set(q.amax);
        f.get(x).get(q.max).get(t).v128.bitselect().set(q.max);
      }
    });
    f.get(b).i32.const(QK).i32.mul().set(o);
    for (const pair of [G.slice(0, 2), G.slice(2, 4)]) {
      for (const q of pair) {
        f.get(q.amax).get(EPSV).f32x4.lt().set(q.zero);
        f.get(NMIN).get(q.max).f32x4.div().tee(q.is).set(q.bestIs); // iscale = −nmax/max
      }
      pass(pair);
      for (const q of pair) {
        // scale = suml2 ? sumlx/suml2 : 0; best = scale·sumlx
        f.get(q.sumlx).get(q.suml2).f32x4.div().get(ZERO).get(q.suml2).get(ZERO).f32x4.ne().v128.bitselect().tee(q.scale);
        f.get(q.sumlx).f32x4.mul().set(q.best);
      }
      f.i32.const(0).set(k);
      f.loop((nextTrial) => {
        f.get(k).i32.const(2).i32.shl().f32.load(TBL).f32x4.splat().set(num);
        for (const q of pair) f.get(num).get(q.max).f32x4.div().set(q.is);
        pass(pair);
        for (const q of pair) {
          // suml2 > 0 && sumlx² > best·suml2 → scale = sumlx/suml2, best = scale·sumlx
          f.get(q.suml2).get(ZERO).f32x4.gt().get(q.sumlx).get(q.sumlx).f32x4.mul().get(q.best).get(q.suml2).f32x4.mul().f32x4.gt().v128.and().set(t);
          f.get(q.sumlx).get(q.suml2).f32x4.div().tee(l).get(q.scale).get(t).v128.bitselect().set(q.scale);
          f.get(l).get(q.sumlx).f32x4.mul().get(q.best).get(t).v128.bitselect().set(q.best);
          f.get(q.is).get(q.bestIs).get(t).v128.bitselect().set(q.bestIs);
        }
        f.get(k).i32.const(1).i32.add().tee(k).i32.const(18).i32.ltU().brIf(nextTrial);
      });
      for (const q of pair) f.get(b).i32.const(64).i32.mul().get(ZERO).get(q.scale).get(q.zero).v128.bitselect().v128.store(OUT_S + 16 * q.g);
    }
    // the accepted levels + 32 (0 for an all-zero group), as bytes, transposed, by ggml's nearest_int
    forBytes(f, p, 0, 1024, 64, () => {
      for (const q of G) {
        f.get(q.bestIs);
        ld(XT, q.g).f32x4.mul();
        nearestClamp(f, K);
        f.get(N32I).i32x4.add().get(q.zero).v128.andnot();
        storeBytes4(f, o, OUT_L + 4 * q.g, t);
      }
      f.get(o).i32.const(16).i32.add().set(o);
    });
  }, flag);
}

/**
 * Adds p(nb): the packing of nb blocks of final levels LN into OUT (quantize_row_q4_K_ref /
 * _q5_K_ref / _q6_K_ref's last loops), 16 levels per vector; the tails have written the other bytes.
 * - Q4_K (144 bytes): qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4 at 16;
 * - Q5_K (176 bytes): qs at 48 as Q4_K's of the low 4 bits, qh[l] (at 16) bit 2c = L[64c + l] > 15,
 *   bit 2c+1 = L[64c + 32 + l] > 15;
 * - Q6_K (210 bytes): for h = 0, 1: ql[64h + l] = (L[128h + l] & 15) | (L[128h + 64 + l] & 15) << 4,
 *   ql[64h + 32 + l] = (L[128h + 32 + l] & 15) | (L[128h + 96 + l] & 15) << 4, qh[32h + l] (at 128) =
 *   Σ_k (L[128h + 32k + l] >> 4) << 2k.
 */
function addPack(mod: ModuleBuilder, type: "q4_k" | "q5_k" | "q6_k", size: number): void {
  const f = mod.func("p", { nb: "i32" });
  const b = f.i32("b"), lb = f.i32("lb"), ob = f.i32("ob");
  const M15 = splatI(f, "m15", 0x0f0f0f0f), acc = f.v128("acc");
  const L = (off: number): Fn => f.get(lb).v128.load(LN + off);
  const low = (off: number): Fn => L(off).get(M15).v128.and();
  const high = (off: number, shift: number): Fn => {
    L(off).i32.const(4).i8x16.shrU();
    if (shift) f.i32.const(shift).i8x16.shl();
    return f;
  };
  forBlocks(f, f.p.nb, b, () => {
    f.get(b).i32.const(QK).i32.mul().set(lb);
    f.get(b).i32.const(size).i32.mul().set(ob);
    for (let h = 0; h < 32; h += 16) {
      if (type === "q6_k") {
        for (let c = 0; c < 2; c++) {
          const bl = 128 * c;
          f.get(ob);
          low(bl + h);
          low(bl + 64 + h).i32.const(4).i8x16.shl().v128.or();
          f.v128.store(OUT + 64 * c + h);
          f.get(ob);
          low(bl + 32 + h);
          low(bl + 96 + h).i32.const(4).i8x16.shl().v128.or();
          f.v128.store(OUT + 64 * c + 32 + h);
          high(bl + h, 0).set(acc);
          for (let kk = 1; kk < 4; kk++) f.get(acc).with(() => high(bl + 32 * kk + h, 2 * kk)).v128.or().set(acc);
          f.get(ob).get(acc).v128.store(OUT + 128 + 32 * c + h);
        }
        continue;
      }
      const qs = type === "q4_k" ? 16 : 48;
      for (let c = 0; c < 4; c++) {
        f.get(ob);
        if (type === "q4_k") L(64 * c + h);
        else low(64 * c + h);
        (type === "q4_k" ? L(64 * c + 32 + h) : low(64 * c + 32 + h)).i32.const(4).i8x16.shl().v128.or();
        f.v128.store(OUT + qs + 32 * c + h);
      }
      if (type === "q5_k") {
        high(h, 0).set(acc);
        f.get(acc).with(() => high(32 + h, 1)).v128.or().set(acc);
        for (let c = 1; c < 4; c++) {
          f.get(acc).with(() => high(64 * c + h, 2 * c)).v128.or().set(acc);
          f.get(acc).with(() => high(64 * c + 32 + h, 2 * c + 1)).v128.or().set(acc);
        }
        f.get(ob).get(acc).v128.store(OUT + 16 + h);
      }
    }
  });
}

/** A module exporting memory "m" and q (the search), r (the re-quantization) and p (the packing). */
function kernelModule(search: (mod: ModuleBuilder) => void, requant: (mod: ModuleBuilder) => void, pack: (mod: ModuleBuilder) => void): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  search(mod);
  requant(mod);
  pack(mod);
  return mod.bytes();
}

/** A K-quant fast path: quantize() returns false when it did not run (no kernel). */
export interface KQuantFastPath {
  quantize(src: Float32Array, dst: Uint8Array): boolean;
  /** whether the WebAssembly kernel is in use (instantiates it) */
  available(): boolean;
  /** the kernel itself (tests) */
  kernel(): KQuantKernel | undefined;
}

/**
 * Q4_K / Q5_K quantizer: the wasm search, then k45Tail (the TypeScript path's tail, the same
 * function), the wasm re-quantization and packing; `scalar` (the TypeScript path) for flagged
 * super-blocks. The kernel is instantiated on first use (instantiate.ts).
 */
export function k45WasmQuantizer(
  type: "q4_k" | "q5_k",
  nmax: number,
  steps: Float64Array,
  size: number,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): KQuantFastPath {
  const L = layout(size, 32, true);
  const lazy = kquantKernel(
    type,
    () =>
      kernelModule(
        (m) =>
          addQkx2Search(m, {
            n: 32, nmax, nstep: steps.length - 1, mad: false, avWeights: true, in: IN, xt: XT, wt: WT, at: AT, table: TBL, scales: OUT_S, mins: OUT_M,
            levels: OUT_L, bad: BAD,
          }),
        (m) => addRequant(m, { in: IN, dd: DD, dm: DM, ln: LN }, 32, true, 0, nmax, 0),
        (m) => addPack(m, type, size),
      ),
    L,
    steps,
  );
  const quantize = (src: Float32Array, dst: Uint8Array): boolean => {
    const k = lazy.get();
    if (!k) return false;
    const { scales, mins, dd, dm } = k;
    runKQuant(k, KW_BLOCKS, size, src, dst, src.length / QK, (bi, out, o) => k45Tail(scales, mins, bi * 16, out, o, dd, dm, bi * 16), scalar);
    return true;
  };
  return { quantize, available: () => lazy.available(), kernel: () => lazy.get() };
}

/**
 * Q6_K quantizer: the wasm search, then q6kTail (the function q6_k.ts uses), the wasm re-quantization
 * and packing; `scalar` for flagged super-blocks. The kernel is instantiated on first use.
 */
export function q6kWasmQuantizer(trials: Float64Array, scalar: (src: Float32Array, dst: Uint8Array) => void): KQuantFastPath {
  const SIZE = 210;
  const L = layout(SIZE, 16, false);
  const lazy = kquantKernel(
    "q6_k",
    () =>
      kernelModule(
        addQxSearch,
        (m) => addRequant(m, { in: IN, dd: DD, dm: DD, ln: LN }, 16, false, -32, 31, 32),
        (m) => addPack(m, "q6_k", SIZE),
      ),
    L,
    trials,
  );
  const quantize = (src: Float32Array, dst: Uint8Array): boolean => {
    const k = lazy.get();
    if (!k) return false;
    const { scales, dd } = k;
    runKQuant(k, KW_BLOCKS, SIZE, src, dst, src.length / QK, (bi, out, o) => q6kTail(scales, bi * 16, out, o, dd, bi * 16), scalar);
    return true;
  };
  return { quantize, available: () => lazy.available(), kernel: () => lazy.get() };
}
