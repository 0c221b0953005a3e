/**
 * Pieces shared by several kernels: the fp16 rounding as wasm code, and the chunked runner of a block
 * quantizer (copy a chunk of floats into the module's memory, run it, copy the blocks out).
 */
import type { FuncBuilder, Local } from "./builder.js";
import { lazyKernel } from "./instantiate.js";
import type { LazyKernel } from "./instantiate.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFunc = FuncBuilder<any>;

/**
 * Returns an emitter of: h = fp16 bits of the f32 whose bits are in `u` (the rules of half.ts's
 * f32BitsToF16, i.e. ggml_compute_fp32_to_fp16, round to nearest even). Declares its scratch locals
 * in `f` once.
 */
export function f16Emitter(f: AnyFunc): (u: Local<"i32">, h: Local<"i32">) => void {
  const s = f.i32("f16_sign"), a = f.i32("f16_abs"), mm = f.i32("f16_mant"), sh = f.i32("f16_shift"), q = f.i32("f16_q"), rem = f.i32("f16_rem");
  const normal = (h: Local<"i32">): void => {
    // r = a - 0x38000000; h = s | (r + 0xfff + ((r >> 13) & 1)) >> 13
    f.get(a).i32.const(0x38000000).i32.sub().set(mm);
    f.get(s);
    f.get(mm).i32.const(0xfff).i32.add().get(mm).i32.const(13).i32.shrU().i32.const(1).i32.and().i32.add().i32.const(13).i32.shrU();
    f.i32.or().set(h);
  };
  const subnormal = (h: Local<"i32">): void => {
    // mm = mantissa | implicit bit; sh = 126 - exponent; q = mm >> sh; rem = mm & ((1 << sh) - 1)
    f.get(a).i32.const(0x7fffff).i32.and().i32.const(0x800000).i32.or().set(mm);
    f.i32.const(126).get(a).i32.const(23).i32.shrU().i32.sub().set(sh);
    f.get(mm).get(sh).i32.shrU().set(q);
    f.get(mm).i32.const(1).get(sh).i32.shl().i32.const(1).i32.sub().i32.and().set(rem);
    // q += rem > half || (rem == half && q odd), half = 1 << (sh - 1)
    f.get(q);
    f.get(rem).i32.const(1).get(sh).i32.const(1).i32.sub().i32.shl().i32.gtU();
    f.get(rem).i32.const(1).get(sh).i32.const(1).i32.sub().i32.shl().i32.eq().get(q).i32.const(1).i32.and().i32.and();
    f.i32.or().i32.add();
    f.get(s).i32.or().set(h);
  };
  return (u, h) => {
    f.get(u).i32.const(16).i32.shrU().i32.const(0x8000).i32.and().set(s);
    f.get(u).i32.const(0x7fffffff).i32.and().set(a);
    f.get(a).i32.const(0x7f800000).i32.gtU().if(
      () => f.get(s).i32.const(0x7e00).i32.or().set(h), // NaN
      () =>
        f.get(a).i32.const(0x477ff000).i32.geU().if(
          () => f.get(s).i32.const(0x7c00).i32.or().set(h), // overflow to inf
          () =>
            f.get(a).i32.const(0x38800000).i32.geU().if(
              () => normal(h),
              () => f.get(a).i32.const(0x33000001).i32.ltU().if(() => f.get(s).set(h), () => subnormal(h)),
            ),
        ),
    );
  };
}

/**
 * Returns an emitter that pushes the fp16 bits (one per i32 lane) of the four f32 lanes of `v`:
 * ggml_compute_fp32_to_fp16's branch-free form (the FP16 library's fp32_to_fp16: scale to inf and back
 * to zero, add the rounding bias, take exponent + mantissa bits; NaN → sign | 0x7E00), which is IEEE
 * round-to-nearest-even for every input, subnormals included — the values of half.ts's f32BitsToF16.
 * Declares two scratch v128 locals in `f` once.
 */
export function f16x4Emitter(f: AnyFunc): (v: Local<"v128">) => void {
  const shl1 = f.v128("f16x4_shl1"), t = f.v128("f16x4_t");
  const splatI = (x: number): void => void f.i32.const(x).i32x4.splat();
  const splatF = (x: number): void => void f.f32.const(x).f32x4.splat();
  return (v) => {
    f.get(v).get(v).i32x4.add().set(shl1);
    // base = (|f| · 2^112) · 2^-110 + f32((max_u(shl1 & 0xff000000, 0x71000000) >> 1) + 0x07800000)
    f.get(shl1);
    splatI(0xff000000);
    f.v128.and();
    splatI(0x71000000);
    f.i32x4.maxU().i32.const(1).i32x4.shrU();
    splatI(0x07800000);
    f.i32x4.add();
    f.get(v).f32x4.abs();
    splatF(2 ** 112);
    f.f32x4.mul();
    splatF(2 ** -110);
    f.f32x4.mul().f32x4.add().set(t);
    // (sign >> 16) | (shl1 > 0xff000000 ? 0x7e00 : ((bits >> 13) & 0x7c00) + (bits & 0xfff))
    f.get(v).i32.const(16).i32x4.shrU();
    splatI(0x8000);
    f.v128.and();
    splatI(0x7e00);
    f.get(t).i32.const(13).i32x4.shrU();
    splatI(0x7c00);
    f.v128.and().get(t);
    splatI(0xfff);
    f.v128.and().i32x4.add();
    f.get(shl1);
    splatI(0xff000000);
    f.i32x4.gtU().v128.bitselect().v128.or();
  };
}

/**
 * Returns an emitter of: m = max over the 32 floats at (local x) of (bits & 0x7fffffff), i.e. the
 * bits of the largest |x| when no NaN is present (non-negative floats order like their bits; a NaN
 * gives m > 0x7f800000). Declares its scratch locals in `f` once and emits the setting of its
 * constant right away, so create it before the loop that uses it.
 */
export function absMaxBitsEmitter(f: AnyFunc): (x: Local<"i32">, m: Local<"i32">) => void {
  const MASK = f.v128("absmax_mask"), acc = f.v128("absmax_acc"), t = f.i32("absmax_t");
  f.i32.const(0x7fffffff).i32x4.splat().set(MASK);
  return (x, m) => {
    f.get(x).v128.load(0).get(MASK).v128.and().set(acc);
    for (let k = 1; k < 8; k++) f.get(acc).get(x).v128.load(16 * k).get(MASK).v128.and().i32x4.maxU().set(acc);
    f.get(acc).i32x4.extractLane(0).set(m);
    for (let lane = 1; lane < 4; lane++) f.get(acc).i32x4.extractLane(lane).tee(t).get(m).get(t).get(m).i32.gtU().select().set(m);
  };
}

/**
 * Emit the loop over the nb blocks of a block kernel: x = 0 (input address), o = `out` (output
 * address); while (nb != 0) { body(); x += inStride; o += outStride; nb--; }.
 */
export function blockLoop(
  f: AnyFunc,
  nb: Local<"i32">,
  x: Local<"i32">,
  o: Local<"i32">,
  strides: { out: number; inStride: number; outStride: number },
  body: () => void,
): void {
  f.i32.const(0).set(x);
  f.i32.const(strides.out).set(o);
  f.block((done) =>
    f.loop((next) => {
      f.get(nb).i32.eqz().brIf(done);
      body();
      f.get(x).i32.const(strides.inStride).i32.add().set(x);
      f.get(o).i32.const(strides.outStride).i32.add().set(o);
      f.get(nb).i32.const(1).i32.sub().set(nb);
      f.br(next);
    }),
  );
}

/** What a block kernel's module holds: q(nb) quantizes nb blocks from address 0 into address `out`. */
export interface BlockKernelLayout {
  /** floats per call (a multiple of the block size) */
  readonly chunk: number;
  /** byte address of the output blocks */
  readonly out: number;
  /** values per block and bytes per block */
  readonly qk: number;
  readonly bytes: number;
  /**
   * When set, q(nb) returns how many blocks it could not do exactly and marks them with a non-zero
   * i32 at flags + 4·block; the runner redoes those blocks with the scalar path.
   */
  readonly flags?: number;
}

/**
 * A block quantizer over a lazily instantiated kernel q(nb): returns `quantize(src, dst)` that runs the
 * kernel chunk by chunk, or `scalar` when the kernel is not available (instantiate.ts's policy).
 */
export function blockKernel(
  name: string,
  layout: BlockKernelLayout,
  build: () => Uint8Array<ArrayBuffer>,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): { quantize: (src: Float32Array, dst: Uint8Array) => void; kernel: LazyKernel<unknown> } {
  const { chunk, out, qk, bytes, flags } = layout;
  const kernel = lazyKernel(name, build, (e, mem) => ({
    run: e["q"] as (nb: number) => number | undefined,
    in32: new Float32Array(mem.buffer, 0, chunk),
    out8: new Uint8Array(mem.buffer, out, (chunk / qk) * bytes),
    flags: flags === undefined ? undefined : new Int32Array(mem.buffer, flags, chunk / qk),
  }));
  const quantize = (src: Float32Array, dst: Uint8Array): void => {
    const k = kernel.get();
    if (!k) return scalar(src, dst);
    const n = src.length - (src.length % qk);
    for (let off = 0; off < n; off += chunk) {
      const len = Math.min(chunk, n - off);
      k.in32.set(src.subarray(off, off + len));
      const nb = len / qk;
      const redo = k.run(nb);
      const o = (off / qk) * bytes;
      dst.set(k.out8.subarray(0, nb * bytes), o);
      if (redo && k.flags) {
        for (let b = 0; b < nb; b++) {
          if (k.flags[b] !== 0) scalar(src.subarray(off + b * qk, off + (b + 1) * qk), dst.subarray(o + b * bytes, o + (b + 1) * bytes));
        }
      }
    }
  };
  return { quantize, kernel };
}
