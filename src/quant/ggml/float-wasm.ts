/**
 * WebAssembly SIMD fast paths of the float conversions on the F16/BF16/F32 output paths:
 *
 *   f32 → f16, bf16 → f16, bf16 → f32 (each with a non-finite scan), and non-finite scans of
 *   f32 / f16 / bf16 data that is copied unchanged.
 *
 * The f32 → f16 rounding is ggml_compute_fp32_to_fp16's branch-free form (the FP16 library's
 * fp32_to_fp16: scale to inf and back to zero, add the rounding bias, take exponent + mantissa bits;
 * NaN → sign | 0x7E00), which is IEEE round-to-nearest-even for every input, subnormals included —
 * the same values as half.ts's f32BitsToF16 (the readable reference, used when WebAssembly SIMD is
 * missing; tests compare both over millions of bit patterns). Wasm's f32 arithmetic keeps subnormals
 * (no flush to zero), so the float steps are exact IEEE binary32 operations as in C.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { lazyKernel, SharedMemoryKernel } from "../wasm/instantiate.js";
import { f16x4Emitter } from "../wasm/kernels.js";
import { f32RowToF16 } from "../../formats/half.js";

/** elements per kernel call */
const CH = 65536;
const IN0 = 0; // up to CH f32
const OUT0 = CH * 4; // up to CH u16 or f32
const PAGES = Math.ceil((OUT0 + CH * 4) / 65536);

type Mode = "f32tof16" | "bf16tof16" | "checkf32" | "checkf16" | "checkbf16" | "bf16tof32";
const MODES: Mode[] = ["f32tof16", "bf16tof16", "checkf32", "checkf16", "checkbf16", "bf16tof32"];

/**
 * one (i32 at, i32 n) → i32 function: n elements at IN + at (n a multiple of 8), the result at
 * OUT + at; returns 1 if any is NaN/±inf.
 */
function emitMode(mod: ModuleBuilder, mode: Mode, IN: number, OUT: number): void {
  const f = mod.func(mode, { at: "i32", n: "i32" }, "i32");
  const n = f.p.n;
  const p = f.i32("p"), o = f.i32("o"), end = f.i32("end");
  const flag = f.v128("flag"), t = f.v128("t"), lo = f.v128("lo"), hi = f.v128("hi");
  const inSize = mode === "f32tof16" || mode === "checkf32" ? 4 : 2;
  const splatI = (v: number): void => void f.i32.const(v).i32x4.splat();
  /** flag |= (bits & 0x7f800000) == 0x7f800000 for the f32 lanes in `v` */
  const check32 = (v: typeof lo): void => {
    f.get(flag).get(v);
    splatI(0x7f800000);
    f.v128.and();
    splatI(0x7f800000);
    f.i32x4.eq().v128.or().set(flag);
  };
  /** push fp16 bits (in i32 lanes) of the f32 lanes in `v` (ggml_compute_fp32_to_fp16) */
  const toF16 = f16x4Emitter(f);
  /** bf16 × 8 at p → the f32 lanes lo (first 4) and hi (last 4) */
  const widenBf16 = (): void => {
    f.get(p).v128.load(IN).set(t);
    f.get(t).i32x4.extendLowI16x8U().i32.const(16).i32x4.shl().set(lo);
    f.get(t).i32x4.extendHighI16x8U().i32.const(16).i32x4.shl().set(hi);
  };
  f.i32.const(0).i32x4.splat().set(flag);
  // bf16 → f16's fast-path constants (i16 lanes)
  const a = f.v128("abs"), z = f.v128("zero lanes");
  const M7FFF = f.v128("0x7fff"), ZERO16 = f.v128("0"), LOW16 = f.v128("0x3880"), SPAN16 = f.v128("0x4780 - 0x3880");
  const REBIAS16 = f.v128("112 << 7"), SIGN16 = f.v128("0x8000");
  if (mode === "bf16tof16") {
    const splat16 = (v: number, l: typeof a): void => void f.i32.const(v).i16x8.splat().set(l);
    splat16(0x7fff, M7FFF);
    splat16(0, ZERO16);
    splat16(0x3880, LOW16);
    splat16(0x4780 - 0x3880, SPAN16);
    splat16(112 << 7, REBIAS16);
    splat16(0x8000, SIGN16);
  }
  f.get(f.p.at).set(p).get(f.p.at).set(o);
  f.get(n).i32.const(inSize).i32.mul().get(f.p.at).i32.add().set(end);
  if (mode === "bf16tof16") {
    // input and output are 2 bytes a value: one address p serves both (OUT - IN apart)
    const t2 = f.v128("t (second vector)"), a2 = f.v128("abs (second vector)"), z2 = f.v128("zero lanes (second vector)");
    /** a = |bits|, z = (a == 0), and push "every lane on the fast path" as a v128 mask, for the 8 bf16 at p + k */
    const classify = (k: number, tl: typeof a, al: typeof a, zl: typeof a): void => {
      f.get(p).v128.load(IN + k).tee(tl).get(M7FFF).v128.and().set(al);
      f.get(al).get(ZERO16).i16x8.eq().set(zl);
      f.get(al).get(LOW16).i16x8.sub().get(SPAN16).i16x8.ltU().get(zl).v128.or();
    };
    /** store the fast-path f16 of the 8 values classified into (tl, al, zl) at OUT + p + k */
    const fast = (k: number, tl: typeof a, al: typeof a, zl: typeof a): void => {
      f.get(p);
      f.get(al).get(REBIAS16).i16x8.sub().i32.const(3).i16x8.shl().get(zl).v128.andnot();
      f.get(tl).get(SIGN16).v128.and().v128.or().v128.store(OUT + k);
    };
    // Fast path, 8 lanes at once in i16: a bf16 with an f16 normal exponent (2^-14 ≤ |x| < 2^16,
    // |bits| in [0x3880, 0x4780)) or ±0 is exactly representable in f16 (7 mantissa bits of 10), so
    // round-to-nearest-even leaves it unchanged: f16 = sign | (|bits| - (112 << 7)) << 3. Any other
    // lane in the 8 (f16 subnormal or overflow, NaN/±inf) sends them to the exact f32 path.
    const one = (k: number): void => {
      classify(k, t, a, z);
      f.i16x8.allTrue().if(
        () => fast(k, t, a, z),
        () => {
          f.get(t).i32x4.extendLowI16x8U().i32.const(16).i32x4.shl().set(lo);
          f.get(t).i32x4.extendHighI16x8U().i32.const(16).i32x4.shl().set(hi);
          check32(lo);
          check32(hi);
          f.get(p);
          toF16(lo);
          toF16(hi);
          f.i16x8.narrowI32x4U().v128.store(OUT + k);
        },
      );
    };
    // 16 values per step: both vectors classified, one branch when all 16 take the fast path
    f.block((done) =>
      f.loop((next) => {
        f.get(p).i32.const(32).i32.add().get(end).i32.gtU().brIf(done);
        classify(0, t, a, z);
        classify(16, t2, a2, z2);
        f.v128.and().i16x8.allTrue().if(
          () => {
            fast(0, t, a, z);
            fast(16, t2, a2, z2);
          },
          () => {
            one(0);
            one(16);
          },
        );
        f.get(p).i32.const(32).i32.add().set(p);
        f.br(next);
      }),
    );
    // n is a multiple of 8: at most one vector left
    f.get(p).get(end).i32.ltU().if(() => one(0));
    f.get(flag).v128.anyTrue();
    return;
  }
  f.block((done) =>
    f.loop((next) => {
      f.get(p).get(end).i32.geU().brIf(done);
      if (mode === "f32tof16" || mode === "checkf32") {
        f.get(p).v128.load(IN).set(lo);
        f.get(p).v128.load(IN + 16).set(hi);
        check32(lo);
        check32(hi);
        if (mode === "f32tof16") {
          f.get(o);
          toF16(lo);
          toF16(hi);
          f.i16x8.narrowI32x4U().v128.store(OUT);
        }
        f.get(p).i32.const(32).i32.add().set(p);
      } else if (mode === "bf16tof32") {
        widenBf16();
        check32(lo);
        check32(hi);
        f.get(o).get(lo).v128.store(OUT);
        f.get(o).get(hi).v128.store(OUT + 16);
        f.get(p).i32.const(16).i32.add().set(p);
        f.get(o).i32.const(16).i32.add().set(o); // 32 bytes out per 8 values (16 more below)
      } else {
        const m = mode === "checkf16" ? 0x7c00 : 0x7f80;
        f.get(flag).get(p).v128.load(IN);
        f.i32.const(m).i16x8.splat().v128.and().i32.const(m).i16x8.splat().i16x8.eq().v128.or().set(flag);
        f.get(p).i32.const(16).i32.add().set(p);
      }
      f.get(o).i32.const(16).i32.add().set(o);
      f.br(next);
    }),
  );
  f.get(flag).v128.anyTrue();
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: PAGES });
  for (const m of MODES) emitMode(mod, m, IN0, OUT0);
  return mod.bytes();
}

type KernelFn = (at: number, n: number) => number;

interface Kernels {
  fns: Record<Mode, KernelFn>;
  u8: Uint8Array;
}

const kernels = lazyKernel("float", moduleBytes, (e, mem): Kernels => ({
  fns: Object.fromEntries(MODES.map((m) => [m, e[m] as KernelFn])) as Record<Mode, KernelFn>,
  u8: new Uint8Array(mem.buffer),
}));
const get = (): Kernels | undefined => kernels.get();

/** Whether the WebAssembly SIMD conversions are available. */
export function floatWasmAvailable(): boolean {
  return get() !== undefined;
}

function run(mode: Mode, src: Uint8Array, inSize: number, dst: Uint8Array | undefined, outSize = 2): boolean {
  const k = get()!;
  const n = src.length / inSize;
  let bad = false;
  for (let s = 0; s < n; s += CH) {
    const len = Math.min(CH, n - s);
    const padded = (len + 7) & ~7;
    k.u8.set(src.subarray(s * inSize, (s + len) * inSize), IN0);
    if (padded > len) k.u8.fill(0, IN0 + len * inSize, IN0 + padded * inSize);
    if (k.fns[mode](0, padded)) bad = true;
    if (dst) dst.set(k.u8.subarray(OUT0, OUT0 + len * outSize), s * outSize);
  }
  return !bad;
}

/**
 * bf16 bytes → float32 values (exact) into `dst`, with the non-finite scan in the same pass.
 * @returns whether every value is finite, or undefined without the kernel
 */
export function bf16ToF32(src: Uint8Array, dst: Float32Array): boolean | undefined {
  if (!get()) return undefined;
  return run("bf16tof32", src, 2, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), 4);
}

/**
 * f32 → f16 (ggml's rounding) of `src` into `dst` (2 bytes per value, little-endian).
 * @returns true when every value is finite
 */
export function f32ToF16Bytes(src: Float32Array, dst: Uint8Array): boolean {
  const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  if (!get()) {
    const tmp = new Uint16Array(src.length);
    f32RowToF16(src, tmp);
    dst.set(new Uint8Array(tmp.buffer));
    for (let i = 0; i < src.length; i++) if (src[i]! - src[i]! !== 0) return false;
    return true;
  }
  return run("f32tof16", bytes, 4, dst);
}

/**
 * bf16 bytes → f16 bytes (exact widening, then ggml's rounding), when WebAssembly SIMD is available.
 * @returns whether every value is finite, or undefined without the kernel (caller takes the generic path)
 */
export function bf16ToF16Bytes(src: Uint8Array, dst: Uint8Array): boolean | undefined {
  if (!get()) return undefined;
  return run("bf16tof16", src, 2, dst);
}

/** Whether raw f32 / f16 / bf16 data holds no NaN/±inf (undefined without the kernel). */
export function rawAllFinite(dtype: "f32" | "f16" | "bf16", src: Uint8Array): boolean | undefined {
  if (!get()) return undefined;
  return run(dtype === "f32" ? "checkf32" : dtype === "f16" ? "checkf16" : "checkbf16", src, dtype === "f32" ? 4 : 2, undefined);
}

/**
 * Float slots: a shared WebAssembly.Memory of SLOT_BYTES that is at once a chunk's read buffer, the
 * conversion kernel's memory and the write buffer — the pipeline reads stored bytes into it at 0, a
 * worker thread converts (or scans) them there, the output lands at SLOT_OUT and is written from there.
 * No copy into or out of a kernel memory (session 10's profile: as long as the conversion itself).
 */
export const SLOT_BYTES = 32 << 20;
export const SLOT_OUT = 16 << 20;
const SLOT_PAGES = SLOT_BYTES / 65536;
const SLOT_MODES = ["f32tof16", "bf16tof16", "bf16tof32", "checkf32", "checkf16", "checkbf16"] as const;
type SlotMode = (typeof SLOT_MODES)[number];

function slotModuleBytes(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: SLOT_PAGES, sharedImport: { maxPages: SLOT_PAGES } });
  for (const m of SLOT_MODES) emitMode(mod, m, 0, SLOT_OUT);
  return mod.bytes();
}

/** The kernels bound to one slot memory. Values are at offset 0; counts as in rawCount. */
export interface FloatSlot {
  readonly u8: Uint8Array;
  /** bf16 / f32 at 0 → f16 at SLOT_OUT (same bytes as bf16ToF16Bytes / f32ToF16Bytes); whether all are finite */
  toF16(dtype: "bf16" | "f32", n: number): boolean;
  /** bf16 at 0 → f32 at SLOT_OUT (exact, as bf16ToF32); whether all are finite */
  bf16ToF32(n: number): boolean;
  /** whether the n values at 0 are all finite */
  allFinite(dtype: "f32" | "f16" | "bf16", n: number): boolean;
}

const slotKernels = new SharedMemoryKernel("float-slot", slotModuleBytes, (e, mem): FloatSlot => {
  const fns = Object.fromEntries(SLOT_MODES.map((m) => [m, e[m] as KernelFn])) as Record<SlotMode, KernelFn>;
  const u8 = new Uint8Array(mem.buffer);
  const call = (mode: SlotMode, size: number, n: number, outSize = 2): boolean => {
    if (!slotFits(size, n, outSize)) throw new RangeError(`float slot: ${n} values of ${size} bytes do not fit`);
    const padded = (n + 7) & ~7;
    if (padded > n) u8.fill(0, n * size, padded * size);
    return fns[mode](0, padded) === 0;
  };
  return {
    u8,
    toF16: (dtype, n) => call(dtype === "bf16" ? "bf16tof16" : "f32tof16", dtype === "bf16" ? 2 : 4, n),
    bf16ToF32: (n) => call("bf16tof32", 2, n, 4),
    allFinite: (dtype, n) => call(dtype === "f32" ? "checkf32" : dtype === "f16" ? "checkf16" : "checkbf16", dtype === "f32" ? 4 : 2, n),
  };
});

/** Whether n values of `size` bytes (and their output of `outSize` bytes each) fit a slot, with the kernel's padding to 8. */
export function slotFits(size: number, n: number, outSize = 2): boolean {
  const padded = (n + 7) & ~7;
  return padded * size <= SLOT_OUT && padded * outSize <= SLOT_BYTES - SLOT_OUT;
}

/** Whether float slots can be used in this thread (compiles their module on the first call). */
export function floatSlotsAvailable(): boolean {
  return slotKernels.available();
}

/** A new slot memory (shared: it can be posted to worker threads), or undefined without the kernels. */
export function newFloatSlotMemory(): WebAssembly.Memory | undefined {
  if (!slotKernels.available()) return undefined;
  try {
    return new WebAssembly.Memory({ initial: SLOT_PAGES, maximum: SLOT_PAGES, shared: true });
  } catch {
    return undefined;
  }
}

/** The kernels over slot memory `memory` (one instance per memory and thread: cache the result). */
export function bindFloatSlot(memory: WebAssembly.Memory): FloatSlot | undefined {
  return slotKernels.bind(memory);
}
