import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { legacyQuantizer } from "./legacy.js";

/**
 * Q4_0: 32 values per block, fp16 scale + 16 bytes of 4-bit levels (18 bytes).
 * Bit-exact port of ggml's quantize_row_q4_0_ref / dequantize_row_q4_0 (ggml/src/ggml-quants.c):
 *   max = signed value of the first strictly largest |x|; d = max / -8; id = d ? 1/d : 0;
 *   q = MIN(15, (int8)(x*id + 8.5f)); byte j = q[j] | q[j+16] << 4.
 *
 * This file also holds the WebAssembly machinery of the legacy 32-block quantizers (Q4_0, Q4_1,
 * Q5_0, Q5_1; Q8_0 and the IQ4 search reuse the emitter): a minimal code emitter, one kernel builder
 * parameterised by block family (`legacyQuantizer`), and the fp16 conversion in wasm. Wasm's f32
 * arithmetic is IEEE binary32 with round-to-nearest-even, so the kernels perform the C float
 * operations one for one. The scalar JS port below (every float32 operation one Math.fround of the
 * double result) is the fallback when WebAssembly SIMD is missing, and is tested on its own.
 *
 * Scalar speed notes: the largest |x| is found on the float bit patterns (non-negative floats order
 * like their bits), then the first element with that |x| gives the signed max; NaN blocks take the C loop.
 */

const QK = 32;
const BYTES = 18;
const fr = Math.fround;

const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/**
 * Signed value of the first element with the strictly largest |x| (C: if (amax < fabsf(v)) {…}),
 * 0 when every |x| is 0. The maximum of |x| is taken on the bit patterns with a branch-free integer
 * max (two independent chains); a NaN (bits > 0x7f800000, never wins in C) sends the block to the C loop.
 */
function signedAbsMax(src: Float32Array, si: Int32Array, x0: number): number {
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

/** Scalar JS path (used when WebAssembly SIMD is unavailable; exported for the tests). */
export function quantizeQ4_0Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    const max = signedAbsMax(src, si, x0);
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    // C: MIN(15, (int8_t)(x*id + 8.5f)). For finite x, |x*id| <= 8 up to rounding (even when d is
    // subnormal, id = 1/d is either accurate or ±inf), so t is in (0, 17), ±inf or NaN; `t | 0` then
    // equals gcc's cvttss2si-then-low-byte (±inf and NaN → 0 both ways) and no int8 wrap can happen.
    for (let j = 0, q = o + 2; j < 16; j += 2, q += 2) {
      const a0 = fr(fr(src[x0 + j]! * id) + 8.5) | 0;
      const b0 = fr(fr(src[x0 + j + 16]! * id) + 8.5) | 0;
      const a1 = fr(fr(src[x0 + j + 1]! * id) + 8.5) | 0;
      const b1 = fr(fr(src[x0 + j + 17]! * id) + 8.5) | 0;
      dst[q] = Math.min(15, a0) | (Math.min(15, b0) << 4);
      dst[q + 1] = Math.min(15, a1) | (Math.min(15, b1) << 4);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WebAssembly SIMD kernel (the fast path). Wasm's f32 arithmetic is IEEE binary32 with
// round-to-nearest-even, so f32x4.mul / f32x4.add are exactly C's float operations — no emulation
// needed. The module is assembled below from our own opcode list (no build step, no dependency).

/** Minimal WebAssembly code emitter: just what the kernels here need. */
export class WasmCode {
  readonly b: number[] = [];
  private emit(...xs: number[]): this {
    for (const x of xs) this.b.push(x);
    return this;
  }
  static uleb(n: number): number[] {
    const out: number[] = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n !== 0) byte |= 0x80;
      out.push(byte);
    } while (n !== 0);
    return out;
  }
  static sleb(n: number): number[] {
    const out: number[] = [];
    for (;;) {
      const byte = n & 0x7f;
      n >>= 7;
      if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
        out.push(byte);
        return out;
      }
      out.push(byte | 0x80);
    }
  }
  op(...xs: number[]): this {
    return this.emit(...xs);
  }
  get(i: number): this {
    return this.emit(0x20, ...WasmCode.uleb(i));
  }
  set(i: number): this {
    return this.emit(0x21, ...WasmCode.uleb(i));
  }
  tee(i: number): this {
    return this.emit(0x22, ...WasmCode.uleb(i));
  }
  i32(v: number): this {
    return this.emit(0x41, ...WasmCode.sleb(v | 0));
  }
  f32(v: number): this {
    const u = new Uint8Array(new Float32Array([v]).buffer);
    return this.emit(0x43, u[0]!, u[1]!, u[2]!, u[3]!);
  }
  /** 0xFD-prefixed (SIMD) instruction */
  simd(code: number, ...imm: number[]): this {
    return this.emit(0xfd, ...WasmCode.uleb(code), ...imm);
  }
  v128load(offset: number): this {
    return this.simd(0x00, 0, ...WasmCode.uleb(offset));
  }
  v128store(offset: number): this {
    return this.simd(0x0b, 0, ...WasmCode.uleb(offset));
  }
  v128const(lanes: readonly number[]): this {
    const u = new Uint8Array(new Int32Array(lanes).buffer);
    return this.simd(0x0c, ...u);
  }
  f32load(offset: number): this {
    return this.emit(0x2a, 2, ...WasmCode.uleb(offset));
  }
  store16(offset: number): this {
    return this.emit(0x3b, 0, ...WasmCode.uleb(offset));
  }
  store32(offset: number): this {
    return this.emit(0x36, 0, ...WasmCode.uleb(offset));
  }
  f32store(offset: number): this {
    return this.emit(0x38, 0, ...WasmCode.uleb(offset));
  }
}

/** Wasm opcodes used here. */
export const W = {
  block: [0x02, 0x40], loop: [0x03, 0x40], if: [0x04, 0x40], else: [0x05], end: [0x0b], br: 0x0c, brIf: 0x0d,
  select: 0x1b,
  i32eqz: 0x45, i32eq: 0x46, i32ne: 0x47, i32ltU: 0x49, i32gtU: 0x4b, i32geU: 0x4f, i32gtS: 0x4a,
  i32ltS: 0x48, f32ne: 0x5c, f32lt: 0x5d, f32gt: 0x5e,
  i32ctz: 0x68, i32add: 0x6a, i32sub: 0x6b, i32and: 0x71, i32or: 0x72, i32xor: 0x73, i32shl: 0x74, i32shrS: 0x75, i32shrU: 0x76,
  f32abs: 0x8b, f32neg: 0x8c, f32floor: 0x8e, f32add: 0x92, f32sub: 0x93, f32mul: 0x94, f32div: 0x95,
  f32convertI32S: 0xb2, i32truncSatF32S: [0xfc, 0x00],
  i32reinterpret: 0xbc, f32reinterpret: 0xbe,
  // SIMD (after 0xFD)
  i32x4splat: 0x11, f32x4splat: 0x13, i32x4extract: 0x1b, i32x4eq: 0x37, i32x4gtS: 0x3b,
  v128and: 0x4e, v128andnot: 0x4f, v128or: 0x50, i8x16narrowU: 0x66, i16x8narrowU: 0x86, i32x4bitmask: 0xa4,
  i32x4shl: 0xab, i32x4minS: 0xb6, i32x4maxS: 0xb8, i32x4maxU: 0xb9, f32x4add: 0xe4, f32x4mul: 0xe6,
  i32x4truncSatF32x4S: 0xf8, f32x4trunc: 0x69, f32x4abs: 0xe0, f32x4sub: 0xe5, f32x4ge: 0x46,
  i8x16narrowS: 0x65, i16x8narrowS: 0x85, i32x4shrS: 0xac, v128xor: 0x51,
} as const;

/** A module with one exported memory "m" of `pages` pages and one exported function "q" (i32) → (). */
export function wasmModule(pages: number, locals: ReadonlyArray<readonly [number, number]>, body: WasmCode): Uint8Array<ArrayBuffer> {
  const { uleb } = WasmCode;
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const str = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
  const localDecl: number[] = [...uleb(locals.length)];
  for (const [count, type] of locals) localDecl.push(...uleb(count), type);
  const fn = [...localDecl, ...body.b, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 0]), // type 0: (i32) -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, ...uleb(pages)]), // memory 0, min pages
    ...section(7, [2, ...str("q"), 0x00, 0, ...str("m"), 0x02, 0]),
    ...section(10, [1, ...uleb(fn.length), ...fn]),
  ]);
}

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

/**
 * Emit: fp16 bits of the f32 whose bits are in local `u` → local `h` (same rules as half.ts's
 * f32BitsToF16, i.e. ggml_compute_fp32_to_fp16). Uses locals a, s, e, mm, sh, q, rem as scratch.
 */
export function emitF16(c: WasmCode, L: { u: number; h: number; a: number; s: number; mm: number; sh: number; q: number; rem: number }): void {
  c.get(L.u).i32(16).op(W.i32shrU).i32(0x8000).op(W.i32and).set(L.s);
  c.get(L.u).i32(0x7fffffff).op(W.i32and).set(L.a);
  c.get(L.a).i32(0x7f800000).op(W.i32gtU).op(...W.if);
  c.get(L.s).i32(0x7e00).op(W.i32or).set(L.h);
  c.op(...W.else);
  c.get(L.a).i32(0x477ff000).op(W.i32geU).op(...W.if);
  c.get(L.s).i32(0x7c00).op(W.i32or).set(L.h);
  c.op(...W.else);
  c.get(L.a).i32(0x38800000).op(W.i32geU).op(...W.if);
  // normal: r = a - 0x38000000; h = s | (r + 0xfff + ((r >> 13) & 1)) >> 13
  c.get(L.a).i32(0x38000000).op(W.i32sub).set(L.mm);
  c.get(L.s);
  c.get(L.mm).i32(0xfff).op(W.i32add).get(L.mm).i32(13).op(W.i32shrU).i32(1).op(W.i32and).op(W.i32add).i32(13).op(W.i32shrU);
  c.op(W.i32or).set(L.h);
  c.op(...W.else);
  c.get(L.a).i32(0x33000001).op(W.i32ltU).op(...W.if);
  c.get(L.s).set(L.h);
  c.op(...W.else);
  // subnormal half: mm = mantissa | implicit bit; sh = 126 - exponent; q = mm >> sh; rem = mm & ((1<<sh)-1)
  c.get(L.a).i32(0x7fffff).op(W.i32and).i32(0x800000).op(W.i32or).set(L.mm);
  c.i32(126).get(L.a).i32(23).op(W.i32shrU).op(W.i32sub).set(L.sh);
  c.get(L.mm).get(L.sh).op(W.i32shrU).set(L.q);
  c.get(L.mm).i32(1).get(L.sh).op(W.i32shl).i32(1).op(W.i32sub).op(W.i32and).set(L.rem);
  // q += rem > half || (rem == half && q odd), half = 1 << (sh-1)
  c.get(L.q);
  c.get(L.rem).i32(1).get(L.sh).i32(1).op(W.i32sub).op(W.i32shl).op(W.i32gtU);
  c.get(L.rem).i32(1).get(L.sh).i32(1).op(W.i32sub).op(W.i32shl).op(W.i32eq).get(L.q).i32(1).op(W.i32and).op(W.i32and);
  c.op(W.i32or).op(W.i32add);
  c.get(L.s).op(W.i32or).set(L.h);
  c.op(...W.end, ...W.end, ...W.end, ...W.end);
}

// the WebAssembly SIMD kernel (legacy.ts), instantiated on first use, else the scalar path
const fast = legacyQuantizer("q4_0", { asym: false, div: -8, bias: 8.5, clamp: 15, bits5: false, bytes: BYTES }, quantizeQ4_0Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q4_0_WASM = fast.usesWasm;
const quantize = fast.quantize;

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES, y += QK) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      dst[y + j] = ((b & 15) - 8) * d;
      dst[y + j + 16] = ((b >>> 4) - 8) * d;
    }
  }
}

export const q4_0: BlockCodec = {
  type: GGMLType.Q4_0,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
