import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";

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

// ---- legacy 32-block kernels (Q4_0, Q5_0, Q4_1, Q5_1): q(nb) quantizes nb blocks from memory[0..]
// into memory[OUT..]. One builder, parameterised by the block family. ------------------------------

const CHUNK = 16384; // floats per call (64 KiB in, at most 12 KiB out)
const OUT = 65536;

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

function buildLegacyKernel(spec: LegacySpec): Uint8Array<ArrayBuffer> {
  const c = new WasmCode();
  // locals: 0 = nb (param); i32 1..16; f32 17..24; v128 25..
  const nb = 0, x = 1, o = 2, m = 3, t = 4, mask = 5, j = 6, lo = 15, qh = 16;
  const F = { u: 7, h: 8, a: 9, s: 10, mm: 11, sh: 12, q: 13, rem: 14 };
  const max = 17, amax = 18, d = 19, id = 20, v = 21, min = 22;
  const acc = 25, idv = 26, MASK = 27, CB = 28, CC = 29, CC1 = 30, ZERO = 31, mv = 32, vt = 33, minv = 34, acc2 = 35, w0 = 36; // w0..w3
  const qsOff = spec.asym ? (spec.bits5 ? 8 : 4) : spec.bits5 ? 6 : 2;
  const qhOff = spec.asym ? 4 : 2;
  c.i32(0x7fffffff).simd(W.i32x4splat).set(MASK);
  c.f32(spec.bias).simd(W.f32x4splat).set(CB);
  c.i32(spec.clamp > 0 ? spec.clamp : 31).simd(W.i32x4splat).set(CC);
  c.i32(spec.clamp > 0 ? spec.clamp + 1 : 32).simd(W.i32x4splat).set(CC1);
  c.i32(0).simd(W.i32x4splat).set(ZERO);
  c.i32(0).set(x);
  c.i32(OUT).set(o);
  c.op(...W.block, ...W.loop);
  c.get(nb).op(W.i32eqz).op(W.brIf, 1);
  if (!spec.asym) {
    // m = max over the block of (bits & 0x7fffffff)
    c.get(x).v128load(0).get(MASK).simd(W.v128and).set(acc);
    for (let k = 1; k < 8; k++) c.get(acc).get(x).v128load(16 * k).get(MASK).simd(W.v128and).simd(W.i32x4maxU).set(acc);
    c.get(acc).simd(W.i32x4extract, 0).set(m);
    for (let lane = 1; lane < 4; lane++) {
      c.get(acc).simd(W.i32x4extract, lane).tee(t).get(m).get(t).get(m).op(W.i32gtU).op(W.select).set(m);
    }
    // max = signed value of the first strictly largest |x|
    c.get(m).i32(0x7f800000).op(W.i32gtU).op(...W.if);
    {
      // a NaN is present: the literal C loop (NaN never wins a strict comparison)
      c.f32(0).set(amax).f32(0).set(max).i32(0).set(j);
      c.op(...W.loop);
      c.get(x).get(j).i32(2).op(W.i32shl).op(W.i32add).f32load(0).set(v);
      c.get(amax).get(v).op(W.f32abs).op(W.f32lt).op(...W.if);
      c.get(v).op(W.f32abs).set(amax).get(v).set(max);
      c.op(...W.end);
      c.get(j).i32(1).op(W.i32add).tee(j).i32(32).op(W.i32ltU).op(W.brIf, 0);
      c.op(...W.end);
    }
    c.op(...W.else);
    c.get(m).op(W.i32eqz).op(...W.if);
    c.f32(0).set(max);
    c.op(...W.else);
    {
      // first element whose |x| bits equal m: a 32-bit mask of the matches, count trailing zeros
      c.get(m).simd(W.i32x4splat).set(mv);
      c.i32(0).set(mask);
      for (let k = 0; k < 8; k++) {
        c.get(mask).get(x).v128load(16 * k).get(MASK).simd(W.v128and).get(mv).simd(W.i32x4eq).simd(W.i32x4bitmask);
        if (k > 0) c.i32(4 * k).op(W.i32shl);
        c.op(W.i32or).set(mask);
      }
      c.get(x).get(mask).op(W.i32ctz).i32(2).op(W.i32shl).op(W.i32add).f32load(0).set(max);
    }
    c.op(...W.end, ...W.end);
    c.get(max).f32(spec.div).op(W.f32div).set(d);
  } else {
    // min and max on the order-preserving integer image of the floats: t = b ^ ((b >> 31) & 0x7fffffff)
    const key = (k: number): void => {
      c.get(x).v128load(16 * k).tee(vt).get(vt).i32(31).simd(W.i32x4shrS).get(MASK).simd(W.v128and).simd(W.v128xor);
    };
    key(0);
    c.tee(acc).set(acc2);
    for (let k = 1; k < 8; k++) {
      key(k);
      c.tee(mv).get(acc).simd(W.i32x4maxS).set(acc);
      c.get(mv).get(acc2).simd(W.i32x4minS).set(acc2);
    }
    c.get(acc).simd(W.i32x4extract, 0).set(m);
    c.get(acc2).simd(W.i32x4extract, 0).set(lo);
    for (let lane = 1; lane < 4; lane++) {
      c.get(acc).simd(W.i32x4extract, lane).tee(t).get(m).get(t).get(m).op(W.i32gtS).op(W.select).set(m);
      c.get(acc2).simd(W.i32x4extract, lane).tee(t).get(lo).get(t).get(lo).op(W.i32ltS).op(W.select).set(lo);
    }
    // A NaN (keys beyond ±inf's) or a ±0 extreme (C keeps the first of -0/+0) → the literal C loop:
    // min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v
    c.get(m).i32(0x7f800000).op(W.i32gtS);
    c.get(lo).i32(0x807fffff | 0).op(W.i32ltS).op(W.i32or);
    c.get(m).i32(1).op(W.i32add).i32(2).op(W.i32ltU).op(W.i32or); // m ∈ {-1, 0}
    c.get(lo).i32(1).op(W.i32add).i32(2).op(W.i32ltU).op(W.i32or); // lo ∈ {-1, 0}
    c.op(...W.if);
    {
      c.f32(3.4028234663852886e38).set(min).f32(-3.4028234663852886e38).set(max).i32(0).set(j);
      c.op(...W.loop);
      c.get(x).get(j).i32(2).op(W.i32shl).op(W.i32add).f32load(0).set(v);
      c.get(v).get(min).get(v).get(min).op(W.f32lt).op(W.select).set(min);
      c.get(v).get(max).get(v).get(max).op(W.f32gt).op(W.select).set(max);
      c.get(j).i32(1).op(W.i32add).tee(j).i32(32).op(W.i32ltU).op(W.brIf, 0);
      c.op(...W.end);
    }
    c.op(...W.else);
    c.get(m).get(m).i32(31).op(W.i32shrS).i32(0x7fffffff).op(W.i32and).op(W.i32xor).op(W.f32reinterpret).set(max);
    c.get(lo).get(lo).i32(31).op(W.i32shrS).i32(0x7fffffff).op(W.i32and).op(W.i32xor).op(W.f32reinterpret).set(min);
    c.op(...W.end);
    c.get(max).get(min).op(W.f32sub).f32(spec.div).op(W.f32div).set(d);
  }
  // id = d ? 1/d : 0
  c.f32(1).get(d).op(W.f32div).f32(0).get(d).f32(0).op(W.f32ne).op(W.select).set(id);
  c.get(d).op(W.i32reinterpret).set(F.u);
  emitF16(c, F);
  c.get(o).get(F.h).store16(0);
  if (spec.asym) {
    c.get(min).op(W.i32reinterpret).set(F.u);
    emitF16(c, F);
    c.get(o).get(F.h).store16(2);
    c.get(min).simd(W.f32x4splat).set(minv);
  }
  // levels. t = x*id + bias (or (x - min)*id + 0.5) is in (0, clamp + 2) for every input without
  // non-finite values in play (|x*id| stays within the scale up to rounding, also for subnormal d,
  // where 1/d is either accurate or inf), else ±inf or NaN. trunc_sat equals gcc's cvttss2si there
  // except +inf → INT_MAX (C: INT_MIN, low byte 0): lanes > clamp + 1 are zeroed, -inf/INT_MIN → max 0.
  c.get(id).simd(W.f32x4splat).set(idv);
  const level = (off: number): void => {
    c.get(x).v128load(off);
    if (spec.asym) c.get(minv).simd(W.f32x4sub);
    c.get(idv).simd(W.f32x4mul).get(CB).simd(W.f32x4add).simd(W.i32x4truncSatF32x4S).tee(vt);
    if (spec.clamp > 0) c.get(CC).simd(W.i32x4minS);
    c.get(vt).get(CC1).simd(W.i32x4gtS).simd(W.v128andnot).get(ZERO).simd(W.i32x4maxS);
  };
  if (spec.bits5) c.i32(0).set(qh);
  for (let k = 0; k < 4; k++) {
    level(16 * k);
    if (spec.bits5) {
      // qh bits 4k..4k+3 = bit 4 of levels 4k..4k+3; bits 16+4k.. from the second half
      c.tee(vt).i32(27).simd(W.i32x4shl).simd(W.i32x4bitmask).i32(4 * k).op(W.i32shl).get(qh).op(W.i32or).set(qh);
      c.get(vt).i32(15).simd(W.i32x4splat).simd(W.v128and);
    }
    level(64 + 16 * k);
    if (spec.bits5) {
      c.tee(vt).i32(27).simd(W.i32x4shl).simd(W.i32x4bitmask).i32(16 + 4 * k).op(W.i32shl).get(qh).op(W.i32or).set(qh);
      c.get(vt).i32(15).simd(W.i32x4splat).simd(W.v128and);
    }
    c.i32(4).simd(W.i32x4shl).simd(W.v128or).set(w0 + k);
  }
  if (spec.bits5) c.get(o).get(qh).store32(qhOff);
  c.get(o);
  c.get(w0).get(w0 + 1).simd(W.i16x8narrowU).get(w0 + 2).get(w0 + 3).simd(W.i16x8narrowU).simd(W.i8x16narrowU);
  c.v128store(qsOff);
  c.get(x).i32(128).op(W.i32add).set(x);
  c.get(o).i32(spec.bytes).op(W.i32add).set(o);
  c.get(nb).i32(1).op(W.i32sub).set(nb);
  c.op(W.br, 0);
  c.op(...W.end, ...W.end);
  return wasmModule(2, [[16, I32], [8, F32], [15, V128]], c);
}

/**
 * The quantize function of a legacy 32-block type: the WebAssembly kernel over chunks of CHUNK floats
 * (copied into and out of the module's memory), or `scalar` when WebAssembly SIMD is unavailable.
 * `usesWasm` tells which one was chosen.
 */
export function legacyQuantizer(spec: LegacySpec, scalar: (src: Float32Array, dst: Uint8Array) => void): { quantize: (src: Float32Array, dst: Uint8Array) => void; usesWasm: boolean } {
  let run: (nb: number) => void;
  let in32: Float32Array;
  let out8: Uint8Array;
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(buildLegacyKernel(spec)), {});
    const mem = inst.exports["m"] as WebAssembly.Memory;
    run = inst.exports["q"] as (nb: number) => void;
    in32 = new Float32Array(mem.buffer, 0, CHUNK);
    out8 = new Uint8Array(mem.buffer, OUT, (CHUNK / QK) * spec.bytes);
  } catch {
    return { quantize: scalar, usesWasm: false };
  }
  const bytes = spec.bytes;
  return {
    usesWasm: true,
    quantize(src: Float32Array, dst: Uint8Array): void {
      const n = src.length - (src.length % QK);
      for (let off = 0; off < n; off += CHUNK) {
        const len = Math.min(CHUNK, n - off);
        in32.set(src.subarray(off, off + len));
        const nbk = len / QK;
        run(nbk);
        dst.set(out8.subarray(0, nbk * bytes), (off / QK) * bytes);
      }
    },
  };
}

const fast = legacyQuantizer({ asym: false, div: -8, bias: 8.5, clamp: 15, bits5: false, bytes: BYTES }, quantizeQ4_0Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20). */
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
