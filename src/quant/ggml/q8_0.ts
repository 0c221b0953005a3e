import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { WasmCode, W, wasmModule, emitF16, I32, F32, V128 } from "./q4_0.js";

/**
 * Q8_0: 32 values per block, fp16 scale + 32 int8 levels (34 bytes).
 * Bit-exact port of ggml's quantize_row_q8_0_ref / dequantize_row_q8_0 (ggml/src/ggml-quants.c):
 *   amax = MAX-reduction of |x|; d = amax/127; id = d ? 1/d : 0; q = (int8) roundf(x*id).
 * The quantizer runs as a WebAssembly SIMD kernel (emitter shared with q4_0.ts; wasm f32 arithmetic
 * is IEEE binary32, so it performs the C operations one for one). The scalar JS port — every
 * float32 operation one Math.fround of the double result — is the fallback and is tested too.
 *
 * Scalar speed notes: the |x| maximum is taken on the float bit patterns (non-negative floats order
 * like their bits), falling back to the C loop when a NaN is present; roundf is done branch-free as
 * trunc(|v| + 0.5) with the input's sign bit reapplied (id ≥ 0, so sign(v) = sign(x)); the level
 * loop is unrolled by 4 (V8 does not unroll).
 */

const QK = 32;
const BYTES = 34;
const fr = Math.fround;

// scratch for float <-> bits; module-level so the hot loop never allocates
const sF = new Float32Array(1);
const sI = new Int32Array(sF.buffer);

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/** Scalar JS path (used when WebAssembly SIMD is unavailable; exported for the tests). */
export function quantizeQ8_0Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += QK, o += BYTES) {
    let m = 0;
    for (let j = x0; j < x0 + QK; j++) m = Math.max(m, si[j]! & 0x7fffffff);
    let amax: number;
    if (m > 0x7f800000) {
      // a NaN is present: C's MAX(a, b) = a > b ? a : b lets a NaN through, the next element replaces it
      amax = 0;
      for (let j = x0; j < x0 + QK; j++) {
        const a = Math.abs(src[j]!);
        amax = amax > a ? amax : a;
      }
    } else {
      sI[0] = m;
      amax = sF[0]!;
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    // (int8) roundf(v): half away from zero. NaN → 0 (x86 cvttss2si gives INT_MIN, low byte 0; |0 gives 0).
    for (let j = x0, q = o + 2; j < x0 + QK; j += 4, q += 4) {
      const r0 = (fr(Math.abs(src[j]!) * id) + 0.5) | 0;
      const s0 = si[j]! >> 31;
      const r1 = (fr(Math.abs(src[j + 1]!) * id) + 0.5) | 0;
      const s1 = si[j + 1]! >> 31;
      const r2 = (fr(Math.abs(src[j + 2]!) * id) + 0.5) | 0;
      const s2 = si[j + 2]! >> 31;
      const r3 = (fr(Math.abs(src[j + 3]!) * id) + 0.5) | 0;
      const s3 = si[j + 3]! >> 31;
      dst[q] = (r0 ^ s0) - s0;
      dst[q + 1] = (r1 ^ s1) - s1;
      dst[q + 2] = (r2 ^ s2) - s2;
      dst[q + 3] = (r3 ^ s3) - s3;
    }
  }
}

// ---- WebAssembly SIMD kernel (fast path; assembler shared with q4_0.ts) --------------------------
// q(nb) quantizes nb blocks from memory[0..] into memory[OUT..]. f32x4 arithmetic is IEEE binary32.

const CHUNK = 16384; // floats per call (64 KiB in, 17 KiB out)
const OUT = 65536;

function buildKernel(): Uint8Array<ArrayBuffer> {
  const c = new WasmCode();
  // locals: 0 = nb (param); i32 1..13; f32 14..17; v128 18..34
  const nb = 0, x = 1, o = 2, m = 3, t = 4, j = 5;
  const F = { u: 6, h: 7, a: 8, s: 9, mm: 10, sh: 11, q: 12, rem: 13 };
  const amax = 14, d = 15, id = 16, v = 17;
  const acc = 18, idv = 19, MASK = 20, SIGN = 21, ONE = 22, HALF = 23, IMAX = 24, vt = 25, va = 26, r0 = 27, LOW = 35;
  c.i32(0x7fffffff).simd(W.i32x4splat).set(MASK);
  c.i32(0x80000000 | 0).simd(W.i32x4splat).set(SIGN);
  c.f32(1).simd(W.f32x4splat).set(ONE);
  c.f32(0.5).simd(W.f32x4splat).set(HALF);
  c.i32(0x7fffffff).simd(W.i32x4splat).set(IMAX);
  c.i32(0xff).simd(W.i32x4splat).set(LOW);
  c.i32(0).set(x);
  c.i32(OUT).set(o);
  c.op(...W.block, ...W.loop);
  c.get(nb).op(W.i32eqz).op(W.brIf, 1);
  // m = max over the block of (bits & 0x7fffffff)
  c.get(x).v128load(0).get(MASK).simd(W.v128and).set(acc);
  for (let k = 1; k < 8; k++) c.get(acc).get(x).v128load(16 * k).get(MASK).simd(W.v128and).simd(W.i32x4maxU).set(acc);
  c.get(acc).simd(W.i32x4extract, 0).set(m);
  for (let lane = 1; lane < 4; lane++) {
    c.get(acc).simd(W.i32x4extract, lane).tee(t).get(m).get(t).get(m).op(W.i32gtU).op(W.select).set(m);
  }
  c.get(m).i32(0x7f800000).op(W.i32gtU).op(...W.if);
  {
    // a NaN is present: C's amax = MAX(amax, |v|) = amax > |v| ? amax : |v|, literally
    c.f32(0).set(amax).i32(0).set(j);
    c.op(...W.loop);
    c.get(x).get(j).i32(2).op(W.i32shl).op(W.i32add).f32load(0).op(W.f32abs).set(v);
    c.get(amax).get(v).get(amax).get(v).op(W.f32gt).op(W.select).set(amax);
    c.get(j).i32(1).op(W.i32add).tee(j).i32(32).op(W.i32ltU).op(W.brIf, 0);
    c.op(...W.end);
  }
  c.op(...W.else);
  c.get(m).op(W.f32reinterpret).set(amax);
  c.op(...W.end);
  // d = amax / 127; id = d ? 1/d : 0
  c.get(amax).f32(127).op(W.f32div).set(d);
  c.f32(1).get(d).op(W.f32div).f32(0).get(d).f32(0).op(W.f32ne).op(W.select).set(id);
  c.get(d).op(W.i32reinterpret).set(F.u);
  emitF16(c, F);
  c.get(o).get(F.h).store16(0);
  // q = (int8_t) roundf(x*id): roundf = trunc(v) + copysign(1, v) where |v - trunc(v)| >= 0.5 (the
  // difference is exact). The C cast is cvttss2si's low byte (INT_MIN for NaN/±inf/|r| >= 2^31).
  // Without a NaN in the block |v| < 127.5, but with one the max is wrong and r can be anything:
  // trunc_sat agrees with cvttss2si except that it saturates up to INT_MAX (low byte 0xff) where x86
  // gives INT_MIN (low byte 0) — a float r >= 2^31 is a multiple of 256, so zeroing those lanes and
  // keeping the low byte reproduces the C bytes for every input.
  c.get(id).simd(W.f32x4splat).set(idv);
  for (let k = 0; k < 8; k++) {
    c.get(x).v128load(16 * k).get(idv).simd(W.f32x4mul).set(va);
    c.get(va).simd(W.f32x4trunc).tee(vt);
    c.get(va).get(SIGN).simd(W.v128and).get(ONE).simd(W.v128or);
    c.get(va).get(vt).simd(W.f32x4sub).simd(W.f32x4abs).get(HALF).simd(W.f32x4ge);
    c.simd(W.v128and).simd(W.f32x4add).simd(W.i32x4truncSatF32x4S).tee(vt);
    c.get(vt).get(IMAX).simd(W.i32x4eq).simd(W.v128andnot).get(LOW).simd(W.v128and).set(r0 + k);
  }
  for (let h = 0; h < 2; h++) {
    c.get(o);
    c.get(r0 + 4 * h).get(r0 + 4 * h + 1).simd(W.i16x8narrowU).get(r0 + 4 * h + 2).get(r0 + 4 * h + 3).simd(W.i16x8narrowU);
    c.simd(W.i8x16narrowU).v128store(2 + 16 * h);
  }
  c.get(x).i32(128).op(W.i32add).set(x);
  c.get(o).i32(BYTES).op(W.i32add).set(o);
  c.get(nb).i32(1).op(W.i32sub).set(nb);
  c.op(W.br, 0);
  c.op(...W.end, ...W.end);
  return wasmModule(2, [[13, I32], [4, F32], [18, V128]], c);
}

interface Kernel {
  run: (nb: number) => void;
  in32: Float32Array;
  out8: Uint8Array;
}

function loadKernel(): Kernel | null {
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(buildKernel()), {});
    const mem = inst.exports["m"] as WebAssembly.Memory;
    return { run: inst.exports["q"] as (nb: number) => void, in32: new Float32Array(mem.buffer, 0, CHUNK), out8: new Uint8Array(mem.buffer, OUT, (CHUNK / QK) * BYTES) };
  } catch {
    return null; // no WebAssembly SIMD: the scalar path is used
  }
}

const kernel = loadKernel();
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20). */
export const Q8_0_WASM = kernel !== null;

function quantize(src: Float32Array, dst: Uint8Array): void {
  if (!kernel) {
    quantizeQ8_0Scalar(src, dst);
    return;
  }
  const n = src.length - (src.length % QK);
  for (let off = 0; off < n; off += CHUNK) {
    const len = Math.min(CHUNK, n - off);
    kernel.in32.set(src.subarray(off, off + len));
    const nbk = len / QK;
    kernel.run(nbk);
    dst.set(kernel.out8.subarray(0, nbk * BYTES), (off / QK) * BYTES);
  }
}

function dequantize(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / QK) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += BYTES) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    // y = (float)q * d, one float32 rounding (done by the Float32Array store)
    for (let j = o + 2; j < o + 2 + QK; j++, y++) dst[y] = ((src[j]! << 24) >> 24) * d;
  }
}

export const q8_0: BlockCodec = {
  type: GGMLType.Q8_0,
  blockSize: QK,
  typeSize: BYTES,
  quantize,
  dequantize,
};
