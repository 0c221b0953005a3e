/**
 * WebAssembly SIMD kernels of the ternary types, following ggml/src/ggml-quants.c's
 * quantize_row_tq1_0_ref and quantize_row_tq2_0_ref (written with src/quant/wasm/builder.ts):
 *
 *   amax = MAX-reduction of |x| over the 256 values; d = amax; id = d ? 1/d : 0; d stored as fp16;
 *   trit xi = lroundf(x·id) + 1 ∈ {0, 1, 2};
 *   TQ2_0: qs[32c + m] = Σ_n xi[128c + 32n + m] << 2n;
 *   TQ1_0: five trits per byte q = Σ xi·3^(4−n) (then ceil(q·256/243)), over x[m + 32n] for
 *          qs[0..32), x[160 + m + 16n] for qs[32..48), and four for qh[j] over x[240 + j + 4n] (·3).
 *
 * Exactness: for finite values the maximum does not depend on the order of the reduction (|x| ≥ 0, no
 * NaN), so it is taken four lanes at a time, on the bits of |x| (which order like the values). With a finite id, p = f(x·id) is one f32x4.mul and
 * |p| < 1.5, where lroundf only compares with ±0.5: xi = 1 + [p ≤ −0.5] − [p ≥ 0.5] (lane masks).
 * The ceiling division ((uint16_t)q·256 + 242)/243 runs in f32: q·256 + 242 < 2^16 is exact, and the
 * rounded quotient truncates to the exact one (a non-integer quotient is ≥ 1/243 from the next integer,
 * far more than the rounding error). A super-block whose amax or id is not finite (a NaN or an
 * infinity in it, or amax < 2^-128 so that 1/d overflows: lroundf(±inf/NaN) is then LONG_MIN) is
 * flagged and quantized by the TypeScript reference (tq.ts) instead.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { blockKernel, f16Emitter } from "../wasm/kernels.js";
import { loadAt, splatF, splatI } from "./kquant16-wasm.js";
import type { Fn, V } from "./kquant16-wasm.js";

const QK = 256;
/** super-blocks per kernel call (64 KiB of input) */
export const TQ_BLOCKS = 64;
const IN = 0;
const BAD = TQ_BLOCKS * QK * 4; // i32 [TQ_BLOCKS]: 1 for a super-block the TypeScript path quantizes
const OUT = BAD + 4 * TQ_BLOCKS; // the output blocks
const END = OUT + TQ_BLOCKS * 66;
const FLT_MAX = 3.4028234663852886e38;

/** The scratch locals and constants of one ternary kernel. */
interface Ctx {
  f: Fn;
  x: ReturnType<Fn["i32"]>;
  idv: V;
  HALF: V;
  NHALF: V;
  ONE8: V;
  ONE: V;
  t: V[];
}

/** Push the 16 trits of x[e … e+16) (element offset e within the block) as u8 lanes. */
function trits16(c: Ctx, e: number): void {
  const { f, x, idv, HALF, NHALF, ONE8, t } = c;
  // p = x·id; ge = p ≥ 0.5, le = p ≤ −0.5 (masks), narrowed to bytes (−1 / 0 survive the signed narrowing)
  for (let k = 0; k < 4; k++) f.get(x).v128.load(IN + 4 * (e + 4 * k)).get(idv).f32x4.mul().set(t[k]!);
  f.get(ONE8);
  f.get(t[0]!).get(NHALF).f32x4.le().get(t[1]!).get(NHALF).f32x4.le().i16x8.narrowI32x4S();
  f.get(t[2]!).get(NHALF).f32x4.le().get(t[3]!).get(NHALF).f32x4.le().i16x8.narrowI32x4S();
  f.i8x16.narrowI16x8S().i8x16.add();
  f.get(t[0]!).get(HALF).f32x4.ge().get(t[1]!).get(HALF).f32x4.ge().i16x8.narrowI32x4S();
  f.get(t[2]!).get(HALF).f32x4.ge().get(t[3]!).get(HALF).f32x4.ge().i16x8.narrowI32x4S();
  f.i8x16.narrowI16x8S().i8x16.sub();
}

/** Push the 4 trits of x[e … e+4) as i32 lanes. */
function trits4(c: Ctx, e: number): void {
  const { f, x, idv, HALF, NHALF, ONE, t } = c;
  f.get(x).v128.load(IN + 4 * e).get(idv).f32x4.mul().set(t[0]!);
  f.get(ONE).get(t[0]!).get(NHALF).f32x4.le().i32x4.add().get(t[0]!).get(HALF).f32x4.ge().i32x4.sub();
}

/** u8 lanes q (≤ 255) → ((uint16_t)q·256 + 242) / 243 as u8 lanes. */
function ceil243x16(c: Ctx, q: V): void {
  const { f, t } = c;
  const parts: [(g: Fn) => void, (g: Fn) => void][] = [
    [(g) => g.i16x8.extendLowI8x16U(), (g) => g.i32x4.extendLowI16x8U()],
    [(g) => g.i16x8.extendLowI8x16U(), (g) => g.i32x4.extendHighI16x8U()],
    [(g) => g.i16x8.extendHighI8x16U(), (g) => g.i32x4.extendLowI16x8U()],
    [(g) => g.i16x8.extendHighI8x16U(), (g) => g.i32x4.extendHighI16x8U()],
  ];
  parts.forEach(([a, b], k) => {
    f.get(q);
    a(f);
    b(f);
    ceil243(c);
    f.set(t[k]!);
  });
  f.get(t[0]!).get(t[1]!).i16x8.narrowI32x4U().get(t[2]!).get(t[3]!).i16x8.narrowI32x4U().i8x16.narrowI16x8U();
}

/** i32 lanes q on the stack → (q·256 + 242) / 243, truncated (f32: exact, see the file comment). */
function ceil243(c: Ctx): void {
  c.f.f32x4.convertI32x4S().f32.const(256).f32x4.splat().f32x4.mul().f32.const(242).f32x4.splat().f32x4.add();
  c.f.f32.const(243).f32x4.splat().f32x4.div().i32x4.truncSatF32x4S();
}

/** q = q·3 + T (u8 lanes, no wrap: q ≤ 242) */
function times3(f: Fn, q: V): void {
  f.get(q).get(q).i8x16.add().get(q).i8x16.add();
}

function buildModule(tq1: boolean): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  const size = tq1 ? 54 : 66;
  const f = mod.func("q", { nb: "i32" }, "i32");
  const nb = f.p.nb;
  const x = f.i32("x"), o = f.i32("o"), b = f.i32("b"), nBad = f.i32("nBad"), bad = f.i32("bad"), bits = f.i32("bits"), half = f.i32("half");
  const amax = f.f32("amax"), id = f.f32("id");
  const acc = f.v128("acc"), q = f.v128("q"), q2 = f.v128("q2"), ABS = splatI(f, "absMask", 0x7fffffff);
  const c: Ctx = {
    f, x, idv: f.v128("id"), HALF: splatF(f, "half", 0.5), NHALF: splatF(f, "negHalf", -0.5), ONE8: splatI(f, "one8", 0x01010101), ONE: splatI(f, "one", 1),
    t: f.locals("v128", 4, "t"),
  };
  const toF16 = f16Emitter(f);
  f.i32.const(0).set(nBad).i32.const(0).set(b);
  f.block((done) =>
    f.loop((next) => {
      f.get(b).get(nb).i32.geU().brIf(done);
      f.get(b).i32.const(QK * 4).i32.mul().set(x);
      f.get(b).i32.const(size).i32.mul().set(o);
      // amax over the bits of |x| (non-negative floats order like their bits; four lanes, order-free
      // without a NaN), id = amax ? 1/amax : 0
      f.get(x).v128.load(IN).get(ABS).v128.and().set(acc);
      for (let k = 1; k < 64; k++) f.get(acc).get(x).v128.load(IN + 16 * k).get(ABS).v128.and().i32x4.maxU().set(acc);
      f.get(acc).get(acc).get(acc).i8x16.shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]).i32x4.maxU().set(acc);
      f.get(acc).get(acc).get(acc).i8x16.shuffle([4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11]).i32x4.maxU().i32x4.extractLane(0).tee(bits);
      f.f32.reinterpretI32().set(amax);
      f.f32.const(1).get(amax).f32.div().f32.const(0).get(amax).f32.const(0).f32.ne().select().set(id);
      // flagged unless amax and id are both finite (a NaN's bits exceed every finite |x|'s)
      f.get(bits).i32.const(0x7f7fffff).i32.leU().get(id).f32.const(FLT_MAX).f32.le().i32.and().i32.eqz().set(bad);
      f.get(b).i32.const(2).i32.shl().get(bad).i32.store(BAD);
      f.get(nBad).get(bad).i32.add().set(nBad);
      f.get(id).f32x4.splat().set(c.idv);
      toF16(bits, half);
      if (tq1) {
        f.get(o).get(half).i32.store16(OUT + 52);
        // qs[0..32): x[m + 32n]; qs[32..48): x[160 + m + 16n] — five trits, the first the most significant
        for (const [base, stride, m0, dstOff] of [[0, 32, 0, 0], [0, 32, 16, 16], [160, 16, 0, 32]] as const) {
          trits16(c, base + m0);
          f.set(q);
          for (let n = 1; n < 5; n++) {
            times3(f, q);
            trits16(c, base + m0 + stride * n);
            f.i8x16.add().set(q);
          }
          f.get(o);
          ceil243x16(c, q);
          f.v128.store(OUT + dstOff);
        }
        // qh[j]: x[240 + j + 4n], n = 0..3, then one more ·3
        trits4(c, 240);
        f.set(q2);
        for (let n = 1; n < 4; n++) {
          f.get(q2).i32.const(3).i32x4.splat().i32x4.mul();
          trits4(c, 240 + 4 * n);
          f.i32x4.add().set(q2);
        }
        f.get(q2).i32.const(3).i32x4.splat().i32x4.mul();
        ceil243(c);
        f.set(q2);
        f.get(o).get(q2).get(q2).i16x8.narrowI32x4U().tee(q2).get(q2).i8x16.narrowI16x8U().v128.store32Lane(OUT + 48, 0);
      } else {
        f.get(o).get(half).i32.store16(OUT + 64);
        // qs[32c + m] = Σ_n xi[128c + 32n + m] << 2n
        for (let cc = 0; cc < 2; cc++) {
          for (let h = 0; h < 2; h++) {
            f.get(o);
            trits16(c, 128 * cc + 16 * h);
            for (let n = 1; n < 4; n++) {
              trits16(c, 128 * cc + 32 * n + 16 * h);
              f.i32.const(2 * n).i8x16.shl().v128.or();
            }
            f.v128.store(OUT + 32 * cc + 16 * h);
          }
        }
      }
      f.get(b).i32.const(1).i32.add().set(b);
      f.br(next);
    }),
  );
  f.get(nBad);
  return mod.bytes();
}

/**
 * The quantize function of TQ1_0 (tq1) or TQ2_0 over its lazily instantiated kernel (blockKernel:
 * chunks of TQ_BLOCKS super-blocks, flagged ones redone by `scalar`), or `scalar` without it.
 */
export function tqQuantizer(tq1: boolean, scalar: (src: Float32Array, dst: Uint8Array) => void): ReturnType<typeof blockKernel> {
  const bytes = tq1 ? 54 : 66;
  return blockKernel(tq1 ? "tq1_0" : "tq2_0", { chunk: TQ_BLOCKS * QK, out: OUT, qk: QK, bytes, flags: BAD }, () => buildModule(tq1), scalar);
}
