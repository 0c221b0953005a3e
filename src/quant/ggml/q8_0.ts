import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { ModuleBuilder } from "../wasm/builder.js";
import { absMaxBitsEmitter, blockKernel, blockLoop, f16Emitter } from "../wasm/kernels.js";

/**
 * Q8_0: 32 values per block, fp16 scale + 32 int8 levels (34 bytes).
 * Bit-exact port of ggml's quantize_row_q8_0_ref / dequantize_row_q8_0 (ggml/src/ggml-quants.c):
 *   amax = MAX-reduction of |x|; d = amax/127; id = d ? 1/d : 0; q = (int8) roundf(x*id).
 * The quantizer runs as a WebAssembly SIMD kernel (src/quant/wasm/builder.ts; wasm f32 arithmetic
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

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/** Scalar JS path (used when WebAssembly SIMD is unavailable; exported for the tests). */
export function quantizeQ8_0Scalar(src: Float32Array, dst: Uint8Array): void {
  const nb = (src.length / QK) | 0;
  const si = new Int32Array(src.buffer, src.byteOffset, src.length);
  // float <-> bits, one per call (the hot loop never allocates; nothing module-level)
  const sF = new Float32Array(1);
  const sI = new Int32Array(sF.buffer);
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

// ---- WebAssembly SIMD kernel (fast path, built with src/quant/wasm/builder.ts) ------------------
// q(nb) quantizes nb blocks from memory[0..] into memory[OUT..]. f32x4 arithmetic is IEEE binary32.

const CHUNK = 16384; // floats per call (64 KiB in, 17 KiB out)
const OUT = 65536;

function buildKernel(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: 2 });
  const f = mod.func("q", { nb: "i32" });
  const nb = f.p.nb;
  const x = f.i32("x"), o = f.i32("o"), m = f.i32("m"), j = f.i32("j"), bits = f.i32("bits"), half = f.i32("half");
  const amax = f.f32("amax"), d = f.f32("d"), id = f.f32("id"), v = f.f32("v");
  const idv = f.v128("idv"), SIGN = f.v128("SIGN"), ONE = f.v128("ONE"), HALF = f.v128("HALF");
  const IMAX = f.v128("IMAX"), LOW = f.v128("LOW"), vt = f.v128("vt"), va = f.v128("va");
  const r = f.locals("v128", 8, "r");
  const toF16 = f16Emitter(f);
  const absMaxBits = absMaxBitsEmitter(f);
  f.i32.const(0x80000000).i32x4.splat().set(SIGN);
  f.f32.const(1).f32x4.splat().set(ONE);
  f.f32.const(0.5).f32x4.splat().set(HALF);
  f.i32.const(0x7fffffff).i32x4.splat().set(IMAX);
  f.i32.const(0xff).i32x4.splat().set(LOW);
  blockLoop(f, nb, x, o, { out: OUT, inStride: 4 * QK, outStride: BYTES }, () => {
      absMaxBits(x, m); // m = max over the block of (bits & 0x7fffffff)
      f.get(m).i32.const(0x7f800000).i32.gtU().if(
        () => {
          // a NaN is present: C's amax = MAX(amax, |v|) = amax > |v| ? amax : |v|, literally
          f.f32.const(0).set(amax).i32.const(0).set(j);
          f.loop((next) => {
            f.get(x).get(j).i32.const(2).i32.shl().i32.add().f32.load(0).f32.abs().set(v);
            f.get(amax).get(v).get(amax).get(v).f32.gt().select().set(amax);
            f.get(j).i32.const(1).i32.add().tee(j).i32.const(32).i32.ltU().brIf(next);
          });
        },
        () => f.get(m).f32.reinterpretI32().set(amax),
      );
      // d = amax / 127; id = d ? 1/d : 0
      f.get(amax).f32.const(127).f32.div().set(d);
      f.f32.const(1).get(d).f32.div().f32.const(0).get(d).f32.const(0).f32.ne().select().set(id);
      f.get(d).i32.reinterpretF32().set(bits);
      toF16(bits, half);
      f.get(o).get(half).i32.store16(0);
      // q = (int8_t) roundf(x*id): roundf = trunc(v) + copysign(1, v) where |v - trunc(v)| >= 0.5 (the
      // difference is exact). The C cast is cvttss2si's low byte (INT_MIN for NaN/±inf/|r| >= 2^31).
      // Without a NaN in the block |v| < 127.5, but with one the max is wrong and r can be anything:
      // trunc_sat agrees with cvttss2si except that it saturates up to INT_MAX (low byte 0xff) where x86
      // gives INT_MIN (low byte 0) — a float r >= 2^31 is a multiple of 256, so zeroing those lanes and
      // keeping the low byte reproduces the C bytes for every input.
      f.get(id).f32x4.splat().set(idv);
      for (let k = 0; k < 8; k++) {
        f.get(x).v128.load(16 * k).get(idv).f32x4.mul().set(va);
        f.get(va).f32x4.trunc().tee(vt);
        f.get(va).get(SIGN).v128.and().get(ONE).v128.or();
        f.get(va).get(vt).f32x4.sub().f32x4.abs().get(HALF).f32x4.ge();
        f.v128.and().f32x4.add().i32x4.truncSatF32x4S().tee(vt);
        f.get(vt).get(IMAX).i32x4.eq().v128.andnot().get(LOW).v128.and().set(r[k]!);
      }
      for (let h = 0; h < 2; h++) {
        f.get(o);
        f.get(r[4 * h]!).get(r[4 * h + 1]!).i16x8.narrowI32x4U().get(r[4 * h + 2]!).get(r[4 * h + 3]!).i16x8.narrowI32x4U();
        f.i8x16.narrowI16x8U().v128.store(2 + 16 * h);
      }
  });
  return mod.bytes();
}

const fast = blockKernel("q8_0", { chunk: CHUNK, out: OUT, qk: QK, bytes: BYTES }, buildKernel, quantizeQ8_0Scalar);
/** Whether the WebAssembly SIMD kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const Q8_0_WASM = (): boolean => fast.kernel.available();
const quantize = fast.quantize;

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
