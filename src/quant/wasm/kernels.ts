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

/** What a block kernel's module holds: q(nb) quantizes nb blocks from address 0 into address `out`. */
export interface BlockKernelLayout {
  /** floats per call (a multiple of the block size) */
  readonly chunk: number;
  /** byte address of the output blocks */
  readonly out: number;
  /** values per block and bytes per block */
  readonly qk: number;
  readonly bytes: number;
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
  const { chunk, out, qk, bytes } = layout;
  const kernel = lazyKernel(name, build, (e, mem) => ({
    run: e["q"] as (nb: number) => void,
    in32: new Float32Array(mem.buffer, 0, chunk),
    out8: new Uint8Array(mem.buffer, out, (chunk / qk) * bytes),
  }));
  const quantize = (src: Float32Array, dst: Uint8Array): void => {
    const k = kernel.get();
    if (!k) return scalar(src, dst);
    const n = src.length - (src.length % qk);
    for (let off = 0; off < n; off += chunk) {
      const len = Math.min(chunk, n - off);
      k.in32.set(src.subarray(off, off + len));
      const nb = len / qk;
      k.run(nb);
      dst.set(k.out8.subarray(0, nb * bytes), (off / qk) * bytes);
    }
  };
  return { quantize, kernel };
}
