/**
 * The legacy 32-block quantizers (Q4_0, Q4_1, Q5_0, Q5_1) as one WebAssembly SIMD kernel
 * parameterised by the block family (`LegacySpec`), following ggml-quants.c's quantize_row_q4_0_ref,
 * _q4_1_ref, _q5_0_ref and _q5_1_ref. Wasm's f32 arithmetic is IEEE binary32 with round-to-nearest-
 * even, so the kernel performs the C float operations one for one. The TypeScript ports in q4_0.ts …
 * q5_1.ts are the readable reference and the fallback (instantiate.ts's policy), tested on their own.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { blockKernel, f16Emitter } from "../wasm/kernels.js";

const QK = 32;
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

/** q(nb): nb blocks from memory[0..] into memory[OUT..]. */
function buildLegacyKernel(spec: LegacySpec): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: 2 });
  const f = mod.func("q", { nb: "i32" });
  const nb = f.p.nb;
  const x = f.i32("x"), o = f.i32("o"), m = f.i32("m"), lo = f.i32("lo"), t = f.i32("t"), mask = f.i32("mask"), j = f.i32("j"), qh = f.i32("qh");
  const bits = f.i32("bits"), half = f.i32("half");
  const max = f.f32("max"), amax = f.f32("amax"), d = f.f32("d"), id = f.f32("id"), v = f.f32("v"), min = f.f32("min");
  const acc = f.v128("acc"), acc2 = f.v128("acc2"), idv = f.v128("idv"), MASK = f.v128("MASK"), CB = f.v128("CB"), CC = f.v128("CC");
  const CC1 = f.v128("CC1"), ZERO = f.v128("ZERO"), mv = f.v128("mv"), vt = f.v128("vt"), minv = f.v128("minv");
  const w = f.locals("v128", 4, "w");
  const toF16 = f16Emitter(f);
  const qsOff = spec.asym ? (spec.bits5 ? 8 : 4) : spec.bits5 ? 6 : 2;
  const qhOff = spec.asym ? 4 : 2;

  f.i32.const(0x7fffffff).i32x4.splat().set(MASK);
  f.f32.const(spec.bias).f32x4.splat().set(CB);
  f.i32.const(spec.clamp > 0 ? spec.clamp : 31).i32x4.splat().set(CC);
  f.i32.const(spec.clamp > 0 ? spec.clamp + 1 : 32).i32x4.splat().set(CC1);
  f.i32.const(0).i32x4.splat().set(ZERO);
  f.i32.const(0).set(x);
  f.i32.const(OUT).set(o);
  f.block((done) =>
    f.loop((nextBlock) => {
      f.get(nb).i32.eqz().brIf(done);
      if (!spec.asym) {
        // m = max over the block of (bits & 0x7fffffff)
        f.get(x).v128.load(0).get(MASK).v128.and().set(acc);
        for (let k = 1; k < 8; k++) f.get(acc).get(x).v128.load(16 * k).get(MASK).v128.and().i32x4.maxU().set(acc);
        f.get(acc).i32x4.extractLane(0).set(m);
        for (let lane = 1; lane < 4; lane++) f.get(acc).i32x4.extractLane(lane).tee(t).get(m).get(t).get(m).i32.gtU().select().set(m);
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
      } else {
        // min and max on the order-preserving integer image of the floats: key = b ^ ((b >> 31) & 0x7fffffff)
        const key = (k: number): void => void f.get(x).v128.load(16 * k).tee(vt).get(vt).i32.const(31).i32x4.shrS().get(MASK).v128.and().v128.xor();
        key(0);
        f.tee(acc).set(acc2);
        for (let k = 1; k < 8; k++) {
          key(k);
          f.tee(mv).get(acc).i32x4.maxS().set(acc);
          f.get(mv).get(acc2).i32x4.minS().set(acc2);
        }
        f.get(acc).i32x4.extractLane(0).set(m);
        f.get(acc2).i32x4.extractLane(0).set(lo);
        for (let lane = 1; lane < 4; lane++) {
          f.get(acc).i32x4.extractLane(lane).tee(t).get(m).get(t).get(m).i32.gtS().select().set(m);
          f.get(acc2).i32x4.extractLane(lane).tee(t).get(lo).get(t).get(lo).i32.ltS().select().set(lo);
        }
        // A NaN (keys beyond ±inf's) or a ±0 extreme (C keeps the first of -0/+0) → the literal C loop:
        // min = FLT_MAX, max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v
        f.get(m).i32.const(0x7f800000).i32.gtS();
        f.get(lo).i32.const(0x807fffff).i32.ltS().i32.or();
        f.get(m).i32.const(1).i32.add().i32.const(2).i32.ltU().i32.or(); // m ∈ {-1, 0}
        f.get(lo).i32.const(1).i32.add().i32.const(2).i32.ltU().i32.or(); // lo ∈ {-1, 0}
        f.if(
          () => {
            f.f32.const(3.4028234663852886e38).set(min).f32.const(-3.4028234663852886e38).set(max).i32.const(0).set(j);
            f.loop((next) => {
              f.get(x).get(j).i32.const(2).i32.shl().i32.add().f32.load(0).set(v);
              f.get(v).get(min).get(v).get(min).f32.lt().select().set(min);
              f.get(v).get(max).get(v).get(max).f32.gt().select().set(max);
              f.get(j).i32.const(1).i32.add().tee(j).i32.const(32).i32.ltU().brIf(next);
            });
          },
          () => {
            f.get(m).get(m).i32.const(31).i32.shrS().i32.const(0x7fffffff).i32.and().i32.xor().f32.reinterpretI32().set(max);
            f.get(lo).get(lo).i32.const(31).i32.shrS().i32.const(0x7fffffff).i32.and().i32.xor().f32.reinterpretI32().set(min);
          },
        );
        f.get(max).get(min).f32.sub().f32.const(spec.div).f32.div().set(d);
      }
      // id = d ? 1/d : 0
      f.f32.const(1).get(d).f32.div().f32.const(0).get(d).f32.const(0).f32.ne().select().set(id);
      f.get(d).i32.reinterpretF32().set(bits);
      toF16(bits, half);
      f.get(o).get(half).i32.store16(0);
      if (spec.asym) {
        f.get(min).i32.reinterpretF32().set(bits);
        toF16(bits, half);
        f.get(o).get(half).i32.store16(2);
        f.get(min).f32x4.splat().set(minv);
      }
      // levels. t = x*id + bias (or (x - min)*id + 0.5) is in (0, clamp + 2) for every input without
      // non-finite values in play (|x*id| stays within the scale up to rounding, also for subnormal d,
      // where 1/d is either accurate or inf), else ±inf or NaN. trunc_sat equals gcc's cvttss2si there
      // except +inf → INT_MAX (C: INT_MIN, low byte 0): lanes > clamp + 1 are zeroed, -inf/INT_MIN → max 0.
      f.get(id).f32x4.splat().set(idv);
      const level = (off: number): void => {
        f.get(x).v128.load(off);
        if (spec.asym) f.get(minv).f32x4.sub();
        f.get(idv).f32x4.mul().get(CB).f32x4.add().i32x4.truncSatF32x4S().tee(vt);
        if (spec.clamp > 0) f.get(CC).i32x4.minS();
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
      f.get(x).i32.const(4 * QK).i32.add().set(x);
      f.get(o).i32.const(spec.bytes).i32.add().set(o);
      f.get(nb).i32.const(1).i32.sub().set(nb);
      f.br(nextBlock);
    }),
  );
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
  const { quantize, kernel } = blockKernel(name, { chunk: CHUNK, out: OUT, qk: QK, bytes: spec.bytes }, () => buildLegacyKernel(spec), scalar);
  return { quantize, usesWasm: () => kernel.available() };
}
