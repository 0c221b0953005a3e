import type { BlockCodec } from "./codec.js";
import { GGMLType } from "./types.js";
import { f16Lut, toF16Fast } from "../../formats/half.js";
import { ModuleBuilder } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import { nearestInt } from "./kquant-common.js";

/**
 * IQ4_NL (32-blocks) and IQ4_XS (256-blocks of eight 32-sub-blocks): 4-bit indices into the
 * non-linear table kvalues_iq4nl. Bit-exact port of what ggml_quantize_chunk runs without an imatrix:
 * quantize_iq4_nl / quantize_iq4_xs → the shared search quantize_row_iq4_nl_impl with ntry = 7 and
 * weights x² (ggml/src/ggml-quants.c) — NOT quantize_row_iq4_nl_ref (ntry = -1), which gives other bytes.
 * Dequantizers follow dequantize_row_iq4_nl / _xs. Every float32 operation is one Math.fround.
 *
 * Speed: best_index_int8 (a bisection in C) is a table lookup here. For a non-NaN v it equals the
 * number of midpoints M_j = T[j-1] + T[j] (integers) with 2v ≥ M_j (ggml-quants.c best_index_int8), and because the M_j
 * are integers that only depends on floor(2v); 2v + 512 is exact in double wherever floor(2v) sits
 * next to a midpoint, so `(v + v + 512) | 0` indexes a 1024-entry table. Anything outside the table
 * (and NaN) goes through a literal port of the C bisection. The working arrays are per call (Iq4Scratch);
 * the bestIndex tables are built once at load and never written.
 *
 * The search runs as a WebAssembly kernel when available (native binary32 arithmetic, same table,
 * same order; see buildSearchKernel); the JS search is the fallback and redoes sub-blocks holding
 * NaN or ±inf. Packing the final levels and IQ4_XS's scale quantization stay in JS (1/17 of the work).
 */

/** kvalues_iq4nl (ggml-common.h) */
export const KVALUES_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113] as const;
const T = KVALUES_IQ4NL;
const fr = Math.fround;
const EPS = Math.fround(1e-15); // GROUP_MAX_EPS
const NTRY = 7;

// bestIndex lookup: index k = floor(2v) + 512 for k in [0, 1024)
const LUT_OFF = 512;
const LUT_N = 1024;
const LUT_I = new Uint8Array(LUT_N);
const LUT_Q = new Float64Array(LUT_N);
for (let k = 0; k < LUT_N; k++) {
  const f2v = k - LUT_OFF; // floor(2v)
  let idx = 0;
  for (let j = 1; j < 16; j++) if (f2v >= T[j - 1]! + T[j]!) idx = j;
  LUT_I[k] = idx;
  LUT_Q[k] = T[idx]!;
}

/** best_index_int8(16, kvalues_iq4nl, v), literally (float32 differences, ties go up; NaN → 15). */
function bestIndexSlow(v: number): number {
  if (v <= T[0]) return 0;
  if (v >= T[15]) return 15;
  let ml = 0;
  let mu = 15;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (v < T[mav]!) mu = mav;
    else ml = mav;
  }
  return fr(v - T[mu - 1]!) < fr(T[mu]! - v) ? mu - 1 : mu;
}

/** best_index_int8(16, kvalues_iq4nl, v) for a float32 value v (a table for |v| < 256, else the literal search). */
export function bestIndex(v: number): number {
  const t = v + v + LUT_OFF;
  return t >= 0 && t < LUT_N ? LUT_I[t | 0]! : bestIndexSlow(v);
}

/** kvalues_iq4nl[best_index_int8(v)] */
function bestValue(v: number): number {
  const t = v + v + LUT_OFF;
  return t >= 0 && t < LUT_N ? LUT_Q[t | 0]! : T[bestIndexSlow(v)]!;
}

// nearest_int(): kquant-common.ts's (fast arithmetic form, bit formula outside it: the same integer as C for every input)

/** fp16 bits of a float32 value (half.ts, fast path for normal halves). */
const f16 = toF16Fast;

/** The working arrays of one quantize call (allocated per call and passed down: no module-level state). */
class Iq4Scratch {
  /** weights of the current sub-block (x², float32-rounded) */
  readonly wt = new Float64Array(32);
  /** the current sub-block's values */
  readonly x = new Float64Array(32);
  /** inverse scales of the 16 passes: the initial one, then itry = -7..7 */
  readonly ids = new Float64Array(16);
  /** per pass: Σ w·q·x and Σ w·q·q */
  readonly sqx = new Float64Array(16);
  readonly sq2 = new Float64Array(16);
  /** sub-block scales of the current chunk */
  readonly sc = new Float64Array(CHUNK / 32);
  /** one IQ4_XS super-block's eight sub-block scales */
  readonly scales = new Float64Array(8);
}

/**
 * Σ w·q·x and Σ w·q·q (float32, index order) for passes p..p+3. The four passes are independent, so
 * they run interleaved: each sum is a serial chain of float32-rounded adds (a latency of several
 * cycles per element in JS), and four side by side keep the core busy. The sums themselves are
 * exactly the C ones — only unrelated work is interleaved.
 */
function passSums4(s: Iq4Scratch, p: number): void {
  const i0 = s.ids[p]!;
  const i1 = s.ids[p + 1]!;
  const i2 = s.ids[p + 2]!;
  const i3 = s.ids[p + 3]!;
  let x0 = 0, x1 = 0, x2 = 0, x3 = 0;
  let y0 = 0, y1 = 0, y2 = 0, y3 = 0;
  for (let j = 0; j < 32; j++) {
    const x = s.x[j]!;
    const w = s.wt[j]!;
    const q0 = bestValue(fr(i0 * x));
    const q1 = bestValue(fr(i1 * x));
    const q2 = bestValue(fr(i2 * x));
    const q3 = bestValue(fr(i3 * x));
    const w0 = fr(w * q0);
    const w1 = fr(w * q1);
    const w2 = fr(w * q2);
    const w3 = fr(w * q3);
    x0 = fr(x0 + fr(w0 * x));
    x1 = fr(x1 + fr(w1 * x));
    x2 = fr(x2 + fr(w2 * x));
    x3 = fr(x3 + fr(w3 * x));
    y0 = fr(y0 + fr(w0 * q0));
    y1 = fr(y1 + fr(w1 * q1));
    y2 = fr(y2 + fr(w2 * q2));
    y3 = fr(y3 + fr(w3 * q3));
  }
  s.sqx[p] = x0;
  s.sqx[p + 1] = x1;
  s.sqx[p + 2] = x2;
  s.sqx[p + 3] = x3;
  s.sq2[p] = y0;
  s.sq2[p + 1] = y1;
  s.sq2[p + 2] = y2;
  s.sq2[p + 3] = y3;
}

/**
 * The per-sub-block scale search of quantize_row_iq4_nl_impl without an imatrix (weights x²,
 * ntry = 7): the levels of the first pass are not kept by either caller, so only the scale is returned.
 */
function searchScale(s: Iq4Scratch, src: Float32Array, x0: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = src[x0 + j]!;
    s.x[j] = v;
    s.wt[j] = fr(v * v);
    const a = Math.abs(v);
    if (a > amax) {
      amax = a;
      max = v;
    }
  }
  if (amax < EPS) return 0;
  // first pass: d = -max / values[0] (ntry > 0), id = 1/d; then the 2·ntry + 1 trials id = (itry + values[0]) / max
  s.ids[0] = fr(1 / fr(-max / -127));
  for (let itry = -NTRY; itry <= NTRY; itry++) s.ids[itry + NTRY + 1] = fr((itry - 127) / max);
  passSums4(s, 0);
  passSums4(s, 4);
  passSums4(s, 8);
  passSums4(s, 12);
  // the C order of decisions
  let sumqx = s.sqx[0]!;
  let sumq2 = s.sq2[0]!;
  let d = sumq2 > 0 ? fr(sumqx / sumq2) : 0;
  let best = fr(d * sumqx);
  for (let p = 1; p < 16; p++) {
    sumqx = s.sqx[p]!;
    sumq2 = s.sq2[p]!;
    if (sumq2 > 0 && fr(sumqx * sumqx) > fr(best * sumq2)) {
      d = fr(sumqx / sumq2);
      best = fr(d * sumqx);
    }
  }
  return d;
}

/** Levels of 32 values at src[x0..] for inverse scale id, packed as byte j = L[j] | L[j+16] << 4. */
function packLevels(src: Float32Array, x0: number, id: number, dst: Uint8Array, o: number): void {
  for (let j = 0; j < 16; j++) {
    dst[o + j] = bestIndex(fr(id * src[x0 + j]!)) | (bestIndex(fr(id * src[x0 + j + 16]!)) << 4);
  }
}

// ---------------------------------------------------------------------------------------------
// WebAssembly kernel for the scale search (the hot part: 16 passes over each sub-block). Wasm's f32
// arithmetic is IEEE binary32, so the code below is the C search operation for operation, with the
// same four-pass interleaving and the C decision order. s(nsub) reads nsub sub-blocks of 32 floats
// from memory[0..] and writes one f32 scale per sub-block at SCALE_BASE, plus a flag at FLAG_BASE
// for sub-blocks holding a NaN or ±inf, which are redone by searchScale() above (the table lookup is
// only proven for non-NaN values).

const CHUNK = 16384; // floats per call: 512 sub-blocks, 64 IQ4_XS super-blocks
const LUTQ_BASE = 65536; // 1024 f32: kvalues[best index] by floor(2v) + 512
const SCALE_BASE = LUTQ_BASE + 4096;
const FLAG_BASE = SCALE_BASE + 4 * (CHUNK / 32);

function buildSearchKernel(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: 2 });
  const f = mod.func("q", { nsub: "i32" });
  const nsub = f.p.nsub;
  const x = f.i32("x"), out = f.i32("out"), j = f.i32("j"), k = f.i32("k"), flag = f.i32("flag"), cond = f.i32("cond");
  const amax = f.f32("amax"), max = f.f32("max"), v = f.f32("v"), xv = f.f32("xv"), w = f.f32("w"), d = f.f32("d"), best = f.f32("best");
  const dn = f.f32("dn"), tt = f.f32("tt"), q = f.f32("q"), wq = f.f32("wq");
  const ID = f.locals("f32", 4, "id"), SX = f.locals("f32", 4, "sumqx"), SY = f.locals("f32", 4, "sumq2");
  // kvalues[bi(v)] for the f32 on the stack: table[clamp(floor(2v), -512, 511) + 512]
  const lookup = (): void => {
    f.tee(tt).get(tt).f32.add().f32.floor().i32.truncSatF32S().set(k);
    f.get(k).i32.const(-512).get(k).i32.const(-512).i32.gtS().select().tee(k);
    f.i32.const(511).get(k).i32.const(511).i32.ltS().select();
    f.i32.const(512).i32.add().i32.const(2).i32.shl().f32.load(LUTQ_BASE);
  };
  f.i32.const(0).set(x).i32.const(0).set(out);
  f.block((done) =>
    f.loop((nextSub) => {
      f.get(nsub).i32.eqz().brIf(done);
      // first strictly largest |x| (signed value kept) and the non-finite flag
      f.f32.const(0).set(amax).f32.const(0).set(max).i32.const(0).set(flag).i32.const(0).set(j);
      f.loop((next) => {
        f.get(x).get(j).i32.add().f32.load(0).set(xv);
        f.get(xv).i32.reinterpretF32().i32.const(0x7f800000).i32.and().i32.const(0x7f800000).i32.eq().get(flag).i32.or().set(flag);
        f.get(xv).f32.abs().tee(v).get(amax).f32.gt().set(cond);
        f.get(v).get(amax).get(cond).select().set(amax);
        f.get(xv).get(max).get(cond).select().set(max);
        f.get(j).i32.const(4).i32.add().tee(j).i32.const(128).i32.ltU().brIf(next);
      });
      f.get(out).get(flag).i32.store(FLAG_BASE);
      f.get(amax).f32.const(EPS).f32.lt().if(
        () => f.get(out).f32.const(0).f32.store(SCALE_BASE),
        () => {
          // pass 0: id = 1 / (-max / values[0]); passes 1..15: id = (itry + values[0]) / max, itry = -7..7
          for (let g = 0; g < 4; g++) {
            for (let l = 0; l < 4; l++) {
              const p = 4 * g + l;
              if (p === 0) f.f32.const(1).get(max).f32.neg().f32.const(-127).f32.div().f32.div().set(ID[0]!);
              else f.f32.const(p - 1 - NTRY - 127).get(max).f32.div().set(ID[l]!);
              f.f32.const(0).set(SX[l]!).f32.const(0).set(SY[l]!);
            }
            f.i32.const(0).set(j);
            f.loop((next) => {
              f.get(x).get(j).i32.add().f32.load(0).tee(xv).get(xv).f32.mul().set(w);
              for (let l = 0; l < 4; l++) {
                f.get(ID[l]!).get(xv).f32.mul();
                lookup();
                f.set(q);
                f.get(w).get(q).f32.mul().set(wq);
                f.get(SX[l]!).get(wq).get(xv).f32.mul().f32.add().set(SX[l]!);
                f.get(SY[l]!).get(wq).get(q).f32.mul().f32.add().set(SY[l]!);
              }
              f.get(j).i32.const(4).i32.add().tee(j).i32.const(128).i32.ltU().brIf(next);
            });
            // the C decisions, in pass order
            for (let l = 0; l < 4; l++) {
              const sx = SX[l]!, sy = SY[l]!;
              if (g === 0 && l === 0) {
                f.get(sx).get(sy).f32.div().f32.const(0).get(sy).f32.const(0).f32.gt().select().set(d);
                f.get(d).get(sx).f32.mul().set(best);
              } else {
                f.get(sx).get(sy).f32.div().set(dn);
                f.get(sy).f32.const(0).f32.gt();
                f.get(sx).get(sx).f32.mul().get(best).get(sy).f32.mul().f32.gt();
                f.i32.and().set(cond);
                f.get(dn).get(d).get(cond).select().set(d);
                f.get(dn).get(sx).f32.mul().get(best).get(cond).select().set(best);
              }
            }
          }
          f.get(out).get(d).f32.store(SCALE_BASE);
        },
      );
      f.get(x).i32.const(128).i32.add().set(x);
      f.get(out).i32.const(4).i32.add().set(out);
      f.get(nsub).i32.const(1).i32.sub().set(nsub);
      f.br(nextSub);
    }),
  );
  return mod.bytes();
}

const kernel = lazyKernel("iq4", buildSearchKernel, (e, mem) => {
  new Float32Array(mem.buffer, LUTQ_BASE, LUT_N).set(LUT_Q);
  return {
    run: e["q"] as (nsub: number) => void,
    in32: new Float32Array(mem.buffer, 0, CHUNK),
    scales: new Float32Array(mem.buffer, SCALE_BASE, CHUNK / 32),
    flags: new Int32Array(mem.buffer, FLAG_BASE, CHUNK / 32),
  };
});
/** Whether the WebAssembly search kernel is in use (tests assert it on Node ≥ 20; instantiates it). */
export const IQ4_WASM = (): boolean => kernel.available();

/** Scales of `nsub` (≤ CHUNK/32) consecutive sub-blocks starting at src[start] → s.sc[0..nsub). */
function subScales(s: Iq4Scratch, src: Float32Array, start: number, nsub: number, useWasm: boolean): void {
  const k = useWasm ? kernel.get() : undefined;
  if (k) {
    k.in32.set(src.subarray(start, start + 32 * nsub));
    k.run(nsub);
    const { scales, flags } = k;
    for (let i = 0; i < nsub; i++) s.sc[i] = flags[i] === 0 ? scales[i]! : searchScale(s, src, start + 32 * i);
  } else {
    for (let i = 0; i < nsub; i++) s.sc[i] = searchScale(s, src, start + 32 * i);
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL: 32 values, d f16 + qs[16] (18 bytes)

function quantizeNLWith(src: Float32Array, dst: Uint8Array, useWasm: boolean): void {
  const s = new Iq4Scratch();
  const nb = (src.length / 32) | 0;
  for (let b0 = 0; b0 < nb; b0 += CHUNK / 32) {
    const cnt = Math.min(CHUNK / 32, nb - b0);
    subScales(s, src, 32 * b0, cnt, useWasm);
    for (let k = 0, x0 = 32 * b0, o = 18 * b0; k < cnt; k++, x0 += 32, o += 18) {
      const scale = s.sc[k]!;
      const h = f16(scale);
      dst[o] = h;
      dst[o + 1] = h >>> 8;
      const id = scale !== 0 ? fr(1 / scale) : 0; // C: scales[0] ? 1/scales[0] : 0
      packLevels(src, x0, id, dst, o + 2);
    }
  }
}

function quantizeNL(src: Float32Array, dst: Uint8Array): void {
  quantizeNLWith(src, dst, true);
}

/** IQ4_NL with the search in JS only (the fallback when WebAssembly is missing; exported for tests). */
export function quantizeIQ4_NLScalar(src: Float32Array, dst: Uint8Array): void {
  quantizeNLWith(src, dst, false);
}

function dequantizeNL(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / 32) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += 18, y += 32) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      dst[y + j] = d * T[b & 15]!;
      dst[y + j + 16] = d * T[b >>> 4]!;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// IQ4_XS: 256 values, d f16 · scales_h u16 · scales_l[4] · qs[128] (136 bytes)

function quantizeXSWith(src: Float32Array, dst: Uint8Array, useWasm: boolean): void {
  const s = new Iq4Scratch();
  const nb = (src.length / 256) | 0;
  for (let i = 0, x0 = 0, o = 0; i < nb; i++, x0 += 256, o += 136) {
    const k = i % (CHUNK / 256);
    if (k === 0) subScales(s, src, x0, 8 * Math.min(CHUNK / 256, nb - i), useWasm);
    let amaxS = 0;
    let maxS = 0;
    for (let ib = 0; ib < 8; ib++) {
      const sb = s.sc[8 * k + ib]!;
      s.scales[ib] = sb;
      const a = Math.abs(sb);
      if (a > amaxS) {
        amaxS = a;
        maxS = sb;
      }
    }
    const d = fr(-maxS / 32);
    const h = f16(d);
    dst[o] = h;
    dst[o + 1] = h >>> 8;
    const id = d !== 0 ? fr(1 / d) : 0;
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      let l = nearestInt(fr(id * s.scales[ib]!));
      l = Math.max(-32, Math.min(31, l));
      const dl = fr(d * l);
      const idl = dl !== 0 ? fr(1 / dl) : 0;
      packLevels(src, x0 + 32 * ib, idl, dst, o + 8 + 16 * ib);
      l += 32;
      const sl = o + 4 + (ib >> 1);
      if ((ib & 1) === 0) dst[sl] = l & 15;
      else dst[sl] = dst[sl]! | ((l & 15) << 4);
      scalesH |= (l >> 4) << (2 * ib);
    }
    dst[o + 2] = scalesH;
    dst[o + 3] = scalesH >>> 8;
  }
}

function quantizeXS(src: Float32Array, dst: Uint8Array): void {
  quantizeXSWith(src, dst, true);
}

/** IQ4_XS with the search in JS only (the fallback when WebAssembly is missing; exported for tests). */
export function quantizeIQ4_XSScalar(src: Float32Array, dst: Uint8Array): void {
  quantizeXSWith(src, dst, false);
}

function dequantizeXS(src: Uint8Array, dst: Float32Array): void {
  const lut = f16Lut();
  const nb = (dst.length / 256) | 0;
  for (let i = 0, o = 0, y = 0; i < nb; i++, o += 136) {
    const d = lut[src[o]! | (src[o + 1]! << 8)]!;
    const scalesH = src[o + 2]! | (src[o + 3]! << 8);
    for (let ib = 0; ib < 8; ib++, y += 32) {
      const ls = ((src[o + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = fr(d * (ls - 32));
      const q = o + 8 + 16 * ib;
      for (let j = 0; j < 16; j++) {
        const b = src[q + j]!;
        dst[y + j] = dl * T[b & 15]!;
        dst[y + j + 16] = dl * T[b >>> 4]!;
      }
    }
  }
}

export const iq4_nl: BlockCodec = {
  type: GGMLType.IQ4_NL,
  blockSize: 32,
  typeSize: 18,
  quantize: quantizeNL,
  dequantize: dequantizeNL,
};

export const iq4_xs: BlockCodec = {
  type: GGMLType.IQ4_XS,
  blockSize: 256,
  typeSize: 136,
  quantize: quantizeXS,
  dequantize: dequantizeXS,
};
