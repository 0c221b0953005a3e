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
import { WasmCode } from "./q4_0.js";
import { f32RowToF16 } from "../../formats/half.js";

/** elements per kernel call */
const CH = 65536;
const IN = 0; // up to CH f32
const OUT = CH * 4; // up to CH u16 or f32
const PAGES = Math.ceil((OUT + CH * 4) / 65536);

const S = {
  splatI16: 0x10, splatI32: 0x11, i16eq: 0x2d, i32eq: 0x37, i32gtU: 0x3c,
  and: 0x4e, or: 0x50, bitselect: 0x52, anyTrue: 0x53, narrowI32U: 0x86,
  extLoU: 0xa9, extHiU: 0xaa, shl: 0xab, shrU: 0xad, i32add: 0xae, i32maxU: 0xb9,
  f32abs: 0xe0, f32add: 0xe4, f32mul: 0xe6,
} as const;

type Mode = "f32tof16" | "bf16tof16" | "checkf32" | "checkf16" | "checkbf16" | "bf16tof32";
const MODES: Mode[] = ["f32tof16", "bf16tof16", "checkf32", "checkf16", "checkbf16", "bf16tof32"];

/** one (i32 n) → i32 function: n elements at IN (n a multiple of 8); returns 1 if any is NaN/±inf */
function body(mode: Mode): number[] {
  const c = new WasmCode();
  // locals: 0 = n (param), 1 = p (input byte offset), 2 = o (output byte offset), 3 = end;
  // v128: 4 flag, 5 (unused), 6 shl1, 7 t, 8 lo, 9 hi, 10 (unused)
  const n = 0, p = 1, o = 2, end = 3, flag = 4, shl1 = 6, t = 7, lo = 8, hi = 9;
  const inSize = mode === "f32tof16" || mode === "checkf32" ? 4 : 2;
  const splatI = (v: number): void => void c.i32(v).simd(S.splatI32);
  const splatF = (v: number): void => void c.f32(v).simd(0x13);
  /** flag |= (bits & 0x7f800000) == 0x7f800000 for the f32 lanes in local `v` */
  const check32 = (v: number): void => {
    c.get(flag).get(v);
    splatI(0x7f800000);
    c.simd(S.and);
    splatI(0x7f800000);
    c.simd(S.i32eq).simd(S.or).set(flag);
  };
  /** push fp16 bits (in i32 lanes) of the f32 lanes in local `v` (ggml_compute_fp32_to_fp16) */
  const toF16 = (v: number): void => {
    c.get(v).get(v).simd(S.i32add).set(shl1);
    // base = (|f| · 2^112) · 2^-110 + f32((max_u(shl1 & 0xff000000, 0x71000000) >> 1) + 0x07800000)
    c.get(shl1);
    splatI(0xff000000 | 0);
    c.simd(S.and);
    splatI(0x71000000);
    c.simd(S.i32maxU).i32(1).simd(S.shrU);
    splatI(0x07800000);
    c.simd(S.i32add);
    c.get(v).simd(S.f32abs);
    splatF(2 ** 112);
    c.simd(S.f32mul);
    splatF(2 ** -110);
    c.simd(S.f32mul).simd(S.f32add).set(t);
    // (sign >> 16) | (shl1 > 0xff000000 ? 0x7e00 : ((bits >> 13) & 0x7c00) + (bits & 0xfff))
    c.get(v).i32(16).simd(S.shrU);
    splatI(0x8000);
    c.simd(S.and);
    splatI(0x7e00);
    c.get(t).i32(13).simd(S.shrU);
    splatI(0x7c00);
    c.simd(S.and).get(t);
    splatI(0xfff);
    c.simd(S.and).simd(S.i32add);
    c.get(shl1);
    splatI(0xff000000 | 0);
    c.simd(S.i32gtU).simd(S.bitselect).simd(S.or);
  };
  c.i32(0).simd(S.splatI32).set(flag);
  c.i32(0).set(p).i32(0).set(o);
  c.get(n).i32(inSize).op(0x6c).set(end);
  c.op(0x02, 0x40, 0x03, 0x40);
  c.get(p).get(end).op(0x4f).op(0x0d, 1);
  if (mode === "f32tof16" || mode === "checkf32") {
    c.get(p).v128load(IN).set(lo);
    c.get(p).v128load(IN + 16).set(hi);
    check32(lo);
    check32(hi);
    if (mode === "f32tof16") {
      c.get(o);
      toF16(lo);
      toF16(hi);
      c.simd(S.narrowI32U).v128store(OUT);
    }
    c.get(p).i32(32).op(0x6a).set(p);
  } else if (mode === "bf16tof32") {
    c.get(p).v128load(IN).set(t);
    c.get(t).simd(S.extLoU).i32(16).simd(S.shl).set(lo);
    c.get(t).simd(S.extHiU).i32(16).simd(S.shl).set(hi);
    check32(lo);
    check32(hi);
    c.get(o).get(lo).v128store(OUT);
    c.get(o).get(hi).v128store(OUT + 16);
    c.get(p).i32(16).op(0x6a).set(p);
    c.get(o).i32(16).op(0x6a).set(o); // 32 bytes out per 8 values (16 more below)
  } else if (mode === "bf16tof16") {
    c.get(p).v128load(IN).set(t);
    c.get(t).simd(S.extLoU).i32(16).simd(S.shl).set(lo);
    c.get(t).simd(S.extHiU).i32(16).simd(S.shl).set(hi);
    check32(lo);
    check32(hi);
    c.get(o);
    toF16(lo);
    toF16(hi);
    c.simd(S.narrowI32U).v128store(OUT);
    c.get(p).i32(16).op(0x6a).set(p);
  } else {
    const m = mode === "checkf16" ? 0x7c00 : 0x7f80;
    c.get(flag).get(p).v128load(IN);
    c.i32(m).simd(S.splatI16).simd(S.and).i32(m).simd(S.splatI16).simd(S.i16eq).simd(S.or).set(flag);
    c.get(p).i32(16).op(0x6a).set(p);
  }
  c.get(o).i32(16).op(0x6a).set(o);
  c.op(0x0c, 0, 0x0b, 0x0b);
  c.get(flag).simd(S.anyTrue);
  // locals: 3 i32, then 7 v128
  return [2, 3, 0x7f, 7, 0x7b, ...c.b, 0x0b];
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const { uleb } = WasmCode;
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const str = (x: string): number[] => [...uleb(x.length), ...Array.from(x, (ch) => ch.charCodeAt(0))];
  const bodies = MODES.map(body);
  const exports: number[] = [MODES.length + 1];
  MODES.forEach((m, i) => exports.push(...str(m), 0x00, i));
  exports.push(...str("m"), 0x02, 0);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7f]),
    ...section(3, [MODES.length, ...MODES.map(() => 0)]),
    ...section(5, [1, 0x00, ...uleb(PAGES)]),
    ...section(7, exports),
    ...section(10, [MODES.length, ...bodies.flatMap((b) => [...uleb(b.length), ...b])]),
  ]);
}

interface Kernels {
  fns: Record<Mode, (n: number) => number>;
  u8: Uint8Array;
}

let kernels: Kernels | null | undefined;
function get(): Kernels | null {
  if (kernels !== undefined) return kernels;
  try {
    if (process.env["GGUFY_NO_WASM"]) throw new Error("disabled");
    const inst = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), {});
    const fns = Object.fromEntries(MODES.map((m) => [m, inst.exports[m] as (n: number) => number])) as Record<Mode, (n: number) => number>;
    kernels = { fns, u8: new Uint8Array((inst.exports["m"] as WebAssembly.Memory).buffer) };
  } catch {
    kernels = null;
  }
  return kernels;
}

/** Whether the WebAssembly SIMD conversions are available. */
export function floatWasmAvailable(): boolean {
  return get() !== null;
}

function run(mode: Mode, src: Uint8Array, inSize: number, dst: Uint8Array | undefined, outSize = 2): boolean {
  const k = get()!;
  const n = src.length / inSize;
  let bad = false;
  for (let s = 0; s < n; s += CH) {
    const len = Math.min(CH, n - s);
    const padded = (len + 7) & ~7;
    k.u8.set(src.subarray(s * inSize, (s + len) * inSize), IN);
    if (padded > len) k.u8.fill(0, IN + len * inSize, IN + padded * inSize);
    if (k.fns[mode](padded)) bad = true;
    if (dst) dst.set(k.u8.subarray(OUT, OUT + len * outSize), s * outSize);
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
