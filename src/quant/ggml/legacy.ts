/**
 * The legacy 32-block quantizers (Q4_0, Q4_1, Q5_0, Q5_1) as one WebAssembly SIMD kernel
 * parameterised by the block family (`LegacySpec`), following ggml-quants.c's quantize_row_q4_0_ref,
 * _q4_1_ref, _q5_0_ref and _q5_1_ref. Wasm's f32 arithmetic is IEEE binary32 with round-to-nearest-
 * even, so the kernel performs the C float operations one for one. quantizeLegacyScalar below is the
 * readable reference of all four and the fallback (instantiate.ts's policy), tested on its own: every
 * float32 operation is one Math.fround of the double result.
 */
import { f16Lut, toF16Fast } from "../../formats/half.js";
import type { BlockCodec } from "./codec.js";
import type { GGMLType } from "./types.js";
import { ModuleBuilder } from "../wasm/builder.js";
import type { FuncBuilder, Local } from "../wasm/builder.js";
import { absMaxBitsEmitter, blockKernel, blockLoop, f16Emitter, f16x4Emitter } from "../wasm/kernels.js";

const QK = 32;
const CHUNK = 16384; // floats per call (64 KiB in, at most 12 KiB out)
const OUT = 65536;
const FLAGS = OUT + 16384; // asymmetric kernel: one i32 per block, non-zero = redo in TypeScript
const FLT_MAX = 3.4028234663852886e38;

/** How one legacy 32-block type quantizes (ggml-quants.c quantize_row_q4_0_ref, _q4_1_ref, _q5_0_ref, _q5_1_ref). */
export interface LegacySpec {
  /** symmetric: d = max / div with max the signed first-largest |x|; asymmetric: d = (max - min) / div */
  readonly asym: boolean;
  readonly div: number;
  /** added before the truncation: 8.5, 16.5 (symmetric) or 0.5 (asymmetric) */
  readonly bias: number;
  /** MIN(clamp, (int8_t)t) in C, or 0 for Q5_1's plain (uint8_t)t */
  readonly clamp: number;
  /** 5-bit levels: a u32 of high bits before qs */
  readonly bits5: boolean;
  readonly bytes: number;
}

/**
 * The symmetric types (Q4_0, Q5_0), one block at a time: q(nb) quantizes nb blocks from memory[0..]
 * into memory[OUT..]. max = the signed first-largest |x| (C: if (amax < fabsf(v)) {…}), d = max / div.
 */
function buildSymKernel(spec: LegacySpec): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: 2 });
  const f = mod.func("q", { nb: "i32" });
  const nb = f.p.nb;
  const x = f.i32("x"), o = f.i32("o"), m = f.i32("m"), mask = f.i32("mask"), j = f.i32("j"), qh = f.i32("qh");
  const bits = f.i32("bits"), half = f.i32("half");
  const max = f.f32("max"), amax = f.f32("amax"), d = f.f32("d"), id = f.f32("id"), v = f.f32("v");
  const idv = f.v128("idv"), MASK = f.v128("MASK"), CB = f.v128("CB"), CC = f.v128("CC");
  const CC1 = f.v128("CC1"), ZERO = f.v128("ZERO"), mv = f.v128("mv"), vt = f.v128("vt");
  const w = f.locals("v128", 4, "w");
  const toF16 = f16Emitter(f);
  const absMaxBits = absMaxBitsEmitter(f);
  const qsOff = spec.bits5 ? 6 : 2;
  const qhOff = 2;

  f.i32.const(0x7fffffff).i32x4.splat().set(MASK);
  f.f32.const(spec.bias).f32x4.splat().set(CB);
  f.i32.const(spec.clamp).i32x4.splat().set(CC);
  f.i32.const(spec.clamp + 1).i32x4.splat().set(CC1);
  f.i32.const(0).i32x4.splat().set(ZERO);
  blockLoop(f, nb, x, o, { out: OUT, inStride: 4 * QK, outStride: spec.bytes }, () => {
      absMaxBits(x, m); // m = max over the block of (bits & 0x7fffffff)
      // max = signed value of the first strictly largest |x|
      f.get(m).i32.const(0x7f800000).i32.gtU().if(
        () => {
          // a NaN is present: the literal C loop (NaN never wins a strict comparison)
          f.f32.const(0).set(amax).f32.const(0).set(max).i32.const(0).set(j);
          f.loop((next) => {
            f.get(x).get(j).i32.const(2).i32.shl().i32.add().f32.load(0).set(v);
            f.get(amax).get(v).f32.abs().f32.lt().if(() => f.get(v).f32.abs().set(amax).get(v).set(max));
            f.get(j).i32.const(1).i32.add().tee(j).i32.const(32).i32.ltU().brIf(next);
          });
        },
        () =>
          f.get(m).i32.eqz().if(
            () => f.f32.const(0).set(max),
            () => {
              // the first element whose |x| bits equal m: a 32-bit mask of the matches, count trailing zeros
              f.get(m).i32x4.splat().set(mv);
              f.i32.const(0).set(mask);
              for (let k = 0; k < 8; k++) {
                f.get(mask).get(x).v128.load(16 * k).get(MASK).v128.and().get(mv).i32x4.eq().i32x4.bitmask();
                if (k > 0) f.i32.const(4 * k).i32.shl();
                f.i32.or().set(mask);
              }
              f.get(x).get(mask).i32.ctz().i32.const(2).i32.shl().i32.add().f32.load(0).set(max);
            },
          ),
      );
      f.get(max).f32.const(spec.div).f32.div().set(d);
      // id = d ? 1/d : 0
      f.f32.const(1).get(d).f32.div().f32.const(0).get(d).f32.const(0).f32.ne().select().set(id);
      f.get(d).i32.reinterpretF32().set(bits);
      toF16(bits, half);
      f.get(o).get(half).i32.store16(0);
      // levels. t = x*id + bias is in (0, clamp + 2) for every input without non-finite values in play
      // (|x*id| stays within the scale up to rounding, also for subnormal d, where 1/d is either accurate
      // or inf), else ±inf or NaN. trunc_sat equals gcc's cvttss2si there except +inf → INT_MAX (C:
      // INT_MIN, low byte 0): lanes > clamp + 1 are zeroed, -inf/INT_MIN → max 0.
      f.get(id).f32x4.splat().set(idv);
      const level = (off: number): void => {
        f.get(x).v128.load(off);
        f.get(idv).f32x4.mul().get(CB).f32x4.add().i32x4.truncSatF32x4S().tee(vt);
        f.get(CC).i32x4.minS();
        f.get(vt).get(CC1).i32x4.gtS().v128.andnot().get(ZERO).i32x4.maxS();
      };
      /** qh |= bit 4 of the four levels on the stack << shift; leaves the levels & 15 */
      const highBits = (shift: number): void => {
        f.tee(vt).i32.const(27).i32x4.shl().i32x4.bitmask().i32.const(shift).i32.shl().get(qh).i32.or().set(qh);
        f.get(vt).i32.const(15).i32x4.splat().v128.and();
      };
      if (spec.bits5) f.i32.const(0).set(qh);
      for (let k = 0; k < 4; k++) {
        level(16 * k);
        if (spec.bits5) highBits(4 * k);
        level(64 + 16 * k);
        if (spec.bits5) highBits(16 + 4 * k);
        f.i32.const(4).i32x4.shl().v128.or().set(w[k]!);
      }
      if (spec.bits5) f.get(o).get(qh).i32.store(qhOff);
      f.get(o);
      f.get(w[0]!).get(w[1]!).i16x8.narrowI32x4U().get(w[2]!).get(w[3]!).i16x8.narrowI32x4U().i8x16.narrowI16x8U();
      f.v128.store(qsOff);
  });
  return mod.bytes();
}

// ---- the scalar path (TypeScript), one for the four types ----------------------------------------

const fr = Math.fround;

/** The four legacy types' parameters (ggml-quants.c quantize_row_q4_0_ref … _q5_1_ref). */
export const LEGACY = {
  q4_0: { asym: false, div: -8, bias: 8.5, clamp: 15, bits5: false, bytes: 18 },
  q4_1: { asym: true, div: 15, bias: 0.5, clamp: 15, bits5: false, bytes: 20 },
  q5_0: { asym: false, div: -16, bias: 16.5, clamp: 31, bits5: true, bytes: 22 },
  q5_1: { asym: true, div: 31, bias: 0.5, clamp: 0, bits5: true, bytes: 24 },
} as const satisfies Record<string, LegacySpec>;

/**
 * Signed value of the first element with the strictly largest |x| (C: if (amax < fabsf(v)) {…}),
 * 0 when every |x| is 0. The maximum of |x| is taken on the bit patterns (non-negative floats order
 * like their bits) with a branch-free integer max (two independent chains); a NaN (bits > 0x7f800000,
 * never wins in C) sends the block to the C loop.
 */
export function signedAbsMax(src: Float32Array, si: Int32Array, x0: number): number {
  let m0 = 0;
  let m1 = 0;
  for (let j = x0; j < x0 + QK; j += 2) {
    const a = si[j]! & 0x7fffffff;
    const da = a - m0;
    m0 = a - (da & (da >> 31));
    const b = si[j + 1]! & 0x7fffffff;
    const db = b - m1;
    m1 = b - (db & (db >> 31));
  }
  const dm = m0 - m1;
  const m = m0 - (dm & (dm >> 31));
  if (m === 0) return 0;
  if (m <= 0x7f800000) {
    for (let j = x0; ; j++) if ((si[j]! & 0x7fffffff) === m) return src[j]!;
  }
  let amax = 0;
  let max = 0;
  for (let j = x0; j < x0 + QK; j++) {
    const v = src[j]!;
    const a = Math.abs(v);
    if (amax < a) {
      amax = a;
      max = v;
    }
  }
  return max;
}

/** A block's minimum and maximum (a scratch object the caller owns). */
export interface Extremes {
  min: number;
  max: number;
}

/**
 * C: min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v → `out`. Math.min/max
 * agree except with NaN (C skips it), with ±0 (C keeps the first of equal values, Math.min prefers
 * -0) and when every value is +inf (C keeps min = FLT_MAX) or -inf (max = -FLT_MAX), so those blocks
 * take the literal loop.
 */
export function blockMinMax(src: Float32Array, x0: number, out: Extremes): void {
  let lo = src[x0]!;
  let hi = lo;
  for (let j = x0 + 1; j < x0 + QK; j++) {
    const v = src[j]!;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (lo !== 0 && hi !== 0 && lo === lo && hi === hi && lo !== Infinity && hi !== -Infinity) {
    out.min = lo;
    out.max = hi;
    return;
  }
  lo = FLT_MAX;
  hi = -FLT_MAX;
  for (let j = x0; j < x0 + QK; j++) {
    const v = src[j]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  out.min = lo;
  out.max = hi;
}

/**
 * The scalar quantizer of one legacy type, following its quantize_row_*_ref:
 *   symmetric: max = signed first-largest |x|, d = max / div; asymmetric: d = (max - min) / div;
 *   id = d ? 1/d : 0; level = MIN(clamp, (int8_t)(x*id + bias)) or (int8_t)((x - min)*id + 0.5f)
 *   (Q5_1: a plain (uint8_t) cast, no clamp); qs[j] = level[j] & 15 | (level[j+16] & 15) << 4,
 *   5-bit types: qh bit j = bit 4 of level j.
 * t = x*id + bias is in (0, clamp + 2) up to rounding, ±inf or NaN for every input (|x*id| stays within
 * the scale, also for subnormal d where 1/d is accurate or inf), so `t | 0` is gcc's cvttss2si-then-
 * low-byte (±inf and NaN → 0 both ways) and no int8 wrap can happen.
 */
export function quantizeLegacyScalar(spec: LegacySpec, src: Float32Array, dst: Uint8Array): void {
  const { asym, div, bias, clamp, bits5, bytes } = spec;
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  const mm: Extremes = { min: 0, max: 0 };
  const qs = asym ? (bits5 ? 8 : 4) : bits5 ? 6 : 2;
  const qhAt = asym ? 4 : 2;
  const lim = clamp > 0 ? clamp : 255;
  const levels = new Uint8Array(QK);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += bytes) {
    let d: number;
    let min = 0;
    if (asym) {
      blockMinMax(src, x0, mm);
      min = mm.min;
      d = fr(fr(mm.max - min) / div);
    } else {
      d = fr(signedAbsMax(src, si, x0) / div);
    }
    const id = d !== 0 ? fr(1 / d) : 0;
    const hd = toF16Fast(d);
    dst[o] = hd;
    dst[o + 1] = hd >>> 8;
    if (asym) {
      const hm = toF16Fast(min);
      dst[o + 2] = hm;
      dst[o + 3] = hm >>> 8;
    }
    for (let j = 0; j < 16; j++) {
      const xa = src[x0 + j]!;
      const xb = src[x0 + j + 16]!;
      levels[j] = Math.min(lim, fr(fr((asym ? fr(xa - min) : xa) * id) + bias) | 0);
      levels[j + 16] = Math.min(lim, fr(fr((asym ? fr(xb - min) : xb) * id) + bias) | 0);
    }
    packLegacyLevels(levels, dst, o, qs, qhAt, bits5);
  }
}

/**
 * The four legacy dequantizers as one (ggml-quants.c dequantize_row_q4_0 / _q4_1 / _q5_0 / _q5_1):
 * level l = low nibble | high bit << 4 (5-bit types, qh bit j = level j's bit 4; level j + 16 in the
 * byte's high nibble and qh bit j + 16). Symmetric: y = (l - offset)·d with offset 8 or 16 — a small
 * integer times a float32 is exact in double, so the store's one rounding is C's float multiply.
 * Asymmetric: y = l·d + m, two float32 roundings (no FMA in the C).
 */
export function dequantizeLegacy(spec: LegacySpec, src: Uint8Array, dst: Float32Array): void {
  const { asym, bits5, bytes } = spec;
  const lut = f16Lut();
  const qs = asym ? (bits5 ? 8 : 4) : bits5 ? 6 : 2;
  const qhAt = asym ? 4 : 2;
  const offset = asym ? 0 : bits5 ? 16 : 8;
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += bytes, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const m = asym ? lut[src[o + 2]! | (src[o + 3]! << 8)]! : 0;
    const qh = bits5 ? src[o + qhAt]! | (src[o + qhAt + 1]! << 8) | (src[o + qhAt + 2]! << 16) | (src[o + qhAt + 3]! << 24) : 0;
    for (let j = 0; j < 16; j++) {
      const b = src[o + qs + j]!;
      const la = ((b & 15) | (((qh >>> j) & 1) << 4)) - offset;
      const lb = ((b >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) - offset;
      dst[y + j] = asym ? fr(la * d) + m : la * d;
      dst[y + j + 16] = asym ? fr(lb * d) + m : lb * d;
    }
  }
}

/**
 * Pack 32 levels (level j and j + 16 share byte j; 5-bit types put each level's bit 4 in the u32 qh)
 * into a block at dst[o..] whose nibbles start at `qs` and whose qh (5-bit types) starts at `qhAt`.
 * Shared by the scalar quantizer below and the importance-weighted rows (weighted.ts).
 */
export function packLegacyLevels(L: ArrayLike<number>, dst: Uint8Array, o: number, qs: number, qhAt: number, bits5: boolean): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = L[j]! & 0xff;
    const b = L[j + 16]! & 0xff;
    dst[o + qs + j] = (a & 15) | ((b & 15) << 4);
    if (bits5) qh |= (((a >>> 4) & 1) << j) | (((b >>> 4) & 1) << (j + 16));
  }
  if (bits5) {
    dst[o + qhAt] = qh;
    dst[o + qhAt + 1] = qh >>> 8;
    dst[o + qhAt + 2] = qh >>> 16;
    dst[o + qhAt + 3] = qh >>> 24;
  }
}

// ---- the WebAssembly kernels ---------------------------------------------------------------------

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = FuncBuilder<any>;

/** 32-bit lanes (a0..a3 of the first operand, b0..b3 = 4..7 of the second) as i8x16.shuffle byte indices */
const lanes = (...l: number[]): number[] => l.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]);

/**
 * Emit: [r(p0), r(p1), r(p2), r(p3)] for four vectors, r = the reduction of a vector's four lanes by
 * `op` (pmin or pmax): a 4×4 transposition interleaved with the reduction (6 shuffles, 3 ops).
 */
function reduce4(f: Fn, p: Local<"v128">[], t: Local<"v128">[], op: (f: Fn) => void): void {
  const [p0, p1, p2, p3] = p as [Local<"v128">, Local<"v128">, Local<"v128">, Local<"v128">];
  const [u0, u1] = t as [Local<"v128">, Local<"v128">];
  // u0 = op([a0 b0 a1 b1], [a2 b2 a3 b3]) for a = p0, b = p1; u1 likewise for p2, p3
  f.get(p0).get(p1).i8x16.shuffle(lanes(0, 4, 1, 5)).get(p0).get(p1).i8x16.shuffle(lanes(2, 6, 3, 7));
  op(f);
  f.set(u0);
  f.get(p2).get(p3).i8x16.shuffle(lanes(0, 4, 1, 5)).get(p2).get(p3).i8x16.shuffle(lanes(2, 6, 3, 7));
  op(f);
  f.set(u1);
  f.get(u0).get(u1).i8x16.shuffle(lanes(0, 1, 4, 5)).get(u0).get(u1).i8x16.shuffle(lanes(2, 3, 6, 7));
  op(f);
}

/**
 * The asymmetric types (Q4_1, Q5_1) four blocks at a time: q(nb) quantizes nb blocks (rounded up to a
 * multiple of 4; the extra blocks' output is ignored) and returns how many blocks it flagged at FLAGS.
 *
 * Per block, C's min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v is run in
 * four lanes with f32x4.pmin / pmax (b < a ? b : a — the same comparison, so NaN is skipped and the
 * all-infinite cases keep ±FLT_MAX as in C), then the lanes are reduced. Only the sign of a zero
 * extreme can differ from C's sequential order (C keeps the first of -0 / +0), so a block whose min or
 * max is ±0 is flagged; so is one whose id = 1/d is +inf (d subnormal: C's (int8) cast of +inf is 0,
 * trunc_sat's is INT_MAX). Every other level t = (x - min)·id + 0.5 is in [0, div + 2) or NaN, where
 * trunc_sat equals gcc's cvttss2si (NaN → 0), so no further masking is needed.
 * d, id and the fp16 conversions are computed for the four blocks together.
 */
function buildAsymKernel(spec: LegacySpec): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: 2 });
  const f = mod.func("q", { nb: "i32" }, "i32");
  const nb = f.p.nb;
  const x = f.i32("x"), o = f.i32("o"), fl = f.i32("fl"), redo = f.i32("redo");
  const mn = f.locals("v128", 4, "min"), mx = f.locals("v128", 4, "max"), tmp = f.locals("v128", 2, "t");
  const v = f.v128("v"), min4 = f.v128("min4"), max4 = f.v128("max4"), d4 = f.v128("d4"), id4 = f.v128("id4"), flag = f.v128("flag");
  const h = f.v128("h"), minv = f.v128("minv"), idv = f.v128("idv"), lo = f.v128("lo"), hi = f.v128("hi");
  const BIG = f.v128("FLT_MAX"), NBIG = f.v128("-FLT_MAX"), ZERO = f.v128("zero"), HALF = f.v128("half"), DIV = f.v128("div");
  const ONE = f.v128("one"), INF = f.v128("inf"), C15 = f.v128("15");
  const toF16 = f16x4Emitter(f);
  const { bytes, bits5 } = spec;
  f.f32.const(FLT_MAX).f32x4.splat().set(BIG);
  f.f32.const(-FLT_MAX).f32x4.splat().set(NBIG);
  f.f32.const(0).f32x4.splat().set(ZERO);
  f.f32.const(0.5).f32x4.splat().set(HALF);
  f.f32.const(spec.div).f32x4.splat().set(DIV);
  f.f32.const(1).f32x4.splat().set(ONE);
  f.f32.const(Infinity).f32x4.splat().set(INF);
  f.i32.const(15).i32x4.splat().set(C15);
  f.i32.const(0).set(x).i32.const(OUT).set(o).i32.const(FLAGS).set(fl).i32.const(0).set(redo);
  f.block((done) =>
    f.loop((nextGroup) => {
      f.get(nb).i32.const(0).i32.leS().brIf(done);
      // per block k: lane-wise C min / max over its 8 vectors
      for (let k = 0; k < 4; k++) {
        f.get(BIG).set(mn[k]!).get(NBIG).set(mx[k]!);
        for (let j = 0; j < 8; j++) {
          f.get(x).v128.load(4 * QK * k + 16 * j).set(v);
          f.get(mn[k]!).get(v).f32x4.pmin().set(mn[k]!);
          f.get(mx[k]!).get(v).f32x4.pmax().set(mx[k]!);
        }
      }
      reduce4(f, mn, tmp, (g) => g.f32x4.pmin());
      f.set(min4);
      reduce4(f, mx, tmp, (g) => g.f32x4.pmax());
      f.set(max4);
      // d = (max - min) / div; id = d ? 1/d : 0
      f.get(max4).get(min4).f32x4.sub().get(DIV).f32x4.div().set(d4);
      f.get(ONE).get(d4).f32x4.div().get(ZERO).get(d4).get(ZERO).f32x4.ne().v128.bitselect().set(id4);
      // blocks the lanes cannot do exactly: a ±0 extreme, or id = +inf
      f.get(min4).get(ZERO).f32x4.eq().get(max4).get(ZERO).f32x4.eq().v128.or().get(id4).get(INF).f32x4.eq().v128.or().tee(flag);
      f.get(fl).get(flag).v128.store(0);
      f.get(flag).i32x4.bitmask().i32.popcnt().get(redo).i32.add().set(redo);
      // fp16 d (lanes 0..3) and min (lanes 4..7)
      toF16(d4);
      toF16(min4);
      f.i16x8.narrowI32x4U().set(h);
      for (let k = 0; k < 4; k++) {
        const ob = bytes * k;
        f.get(o).get(h).v128.store16Lane(ob, k);
        f.get(o).get(h).v128.store16Lane(ob + 2, 4 + k);
        f.get(min4).get(min4).i8x16.shuffle(lanes(k, k, k, k)).set(minv);
        f.get(id4).get(id4).i8x16.shuffle(lanes(k, k, k, k)).set(idv);
        /** levels of elements e..e+15 as 16 bytes */
        const levels16 = (e: number): void => {
          for (let q = 0; q < 4; q++) {
            f.get(x).v128.load(4 * QK * k + 4 * e + 16 * q).get(minv).f32x4.sub().get(idv).f32x4.mul().get(HALF).f32x4.add().i32x4.truncSatF32x4S();
            if (spec.clamp > 0) f.get(C15).i32x4.minS();
            if (q % 2 === 1) f.i16x8.narrowI32x4U();
          }
          f.i8x16.narrowI16x8U();
        };
        levels16(0);
        f.set(lo);
        levels16(16);
        f.set(hi);
        if (bits5) {
          // qh: bit j = bit 4 of level j (bits 0..15 from lo, 16..31 from hi)
          f.get(o).get(lo).i32.const(3).i8x16.shl().i8x16.bitmask().get(hi).i32.const(3).i8x16.shl().i8x16.bitmask().i32.const(16).i32.shl().i32.or();
          f.i32.store(ob + 4);
          f.get(lo).i32.const(15).i8x16.splat().v128.and().set(lo);
        }
        // qs: level j in the low nibble, level j + 16 in the high one (i8x16.shl drops Q5_1's bit 4)
        f.get(o).get(lo).get(hi).i32.const(4).i8x16.shl().v128.or().v128.store(ob + (bits5 ? 8 : 4));
      }
      f.get(x).i32.const(4 * 4 * QK).i32.add().set(x);
      f.get(o).i32.const(4 * bytes).i32.add().set(o);
      f.get(fl).i32.const(16).i32.add().set(fl);
      f.get(nb).i32.const(4).i32.sub().set(nb);
      f.br(nextGroup);
    }),
  );
  f.get(redo);
  return mod.bytes();
}

/**
 * The quantize function of a legacy 32-block type: the WebAssembly kernel over chunks of CHUNK floats
 * (copied into and out of the module's memory), instantiated on first use, or `scalar` when it is not
 * available. `usesWasm()` tells which one runs.
 */
export function legacyQuantizer(
  name: string,
  spec: LegacySpec,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): { quantize: (src: Float32Array, dst: Uint8Array) => void; usesWasm: () => boolean } {
  const layout = { chunk: CHUNK, out: OUT, qk: QK, bytes: spec.bytes, flags: spec.asym ? FLAGS : undefined };
  const { quantize, kernel } = blockKernel(name, layout, () => (spec.asym ? buildAsymKernel(spec) : buildSymKernel(spec)), scalar);
  return { quantize, usesWasm: () => kernel.available() };
}

/**
 * One legacy type's codec: the WebAssembly kernel (instantiated on first use) or the shared scalar
 * path, and the type's dequantizer. `scalar` and `usesWasm` are exported by the type's file for tests.
 */
export function legacyCodec(
  name: keyof typeof LEGACY,
  type: GGMLType,
): { codec: BlockCodec; scalar: (src: Float32Array, dst: Uint8Array) => void; usesWasm: () => boolean } {
  const spec = LEGACY[name];
  const scalar = (src: Float32Array, dst: Uint8Array): void => quantizeLegacyScalar(spec, src, dst);
  const { quantize, usesWasm } = legacyQuantizer(name, spec, scalar);
  const dequantize = (src: Uint8Array, dst: Float32Array): void => dequantizeLegacy(spec, src, dst);
  return { codec: { type, blockSize: QK, typeSize: spec.bytes, quantize, dequantize }, scalar, usesWasm };
}
