/**
 * Pieces shared by the WebAssembly SIMD kernels of the K-quants (Q2_K in q2_k-wasm.ts, Q3_K in
 * q3_k-wasm.ts, Q4_K / Q5_K / Q6_K in kquant-wasm.ts), written with src/quant/wasm/builder.ts:
 *
 * - the transposition of a super-block, so that the four lanes of a vector are four *different*
 *   sub-blocks: every sequential float sum of ggml's per-sub-block search stays sequential within its
 *   lane, and each C float operation is one f32x4 operation (wasm f32 arithmetic is IEEE binary32,
 *   round to nearest even, never fused or reassociated);
 * - ggml's nearest_int (ggml-quants.c: the float add of 12582912, then the mantissa bits − 0x400000,
 *   which also reproduces its wrap beyond ±4194303) followed by the MAX(lo, MIN(hi, l)) clamp, and the
 *   cheaper form of the two for arguments known to lie within ±4194303 (nearestLevel);
 * - the fit and acceptance steps of make_qkx2_quants (qkx2Fit, qkx2Accept), shared by Q2_K, Q4_K, Q5_K;
 * - the re-quantization pass of the quantize_row_qN_K_ref functions with the fp16-rounded scales
 *   (l = nearest_int((x + dm)/d) or nearest_int(x/d), clamped);
 * - the loops over the super-blocks of one call and over the elements of a sub-block;
 * - the kernel's memory views (bindKQuant) and the chunk driver of every K-quant kernel (runKQuant).
 */
import type { FuncBuilder, Label, Local, ModuleBuilder } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import type { LazyKernel } from "../wasm/instantiate.js";
import { checkQuantizeArgs } from "./kquant-common.js";

export const QK = 256;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Fn = FuncBuilder<any>;
export type V = Local<"v128">;

/** The clamp of nearestClamp: [lo, hi]. */
export interface NearestConsts {
  lo: number;
  hi: number;
}

/** The clamp bounds of nearestClamp (its constants are v128.const operands: no v128 locals held). */
export function nearestConsts(lo: number, hi: number): NearestConsts {
  return { lo, hi };
}

const splat4 = (v: number): [number, number, number, number] => [v, v, v, v];

/** The f32x4 on the stack → MAX(lo, MIN(hi, nearest_int(v))) as i32x4. */
export function nearestClamp(f: Fn, K: NearestConsts): void {
  f.f32x4.const(splat4(12582912)).f32x4.add().i32x4.const(splat4(0x7fffff)).v128.and().i32x4.const(splat4(0x400000)).i32x4.sub();
  f.i32x4.const(splat4(K.hi)).i32x4.minS().i32x4.const(splat4(K.lo)).i32x4.maxS();
}

/** Splat an f32 / i32 constant into a new v128 local. */
export function splatF(f: Fn, name: string, v: number): V {
  const l = f.v128(name);
  f.f32.const(v).f32x4.splat().set(l);
  return l;
}
export function splatI(f: Fn, name: string, v: number): V {
  const l = f.v128(name);
  f.i32.const(v).i32x4.splat().set(l);
  return l;
}

/** Push the v128 at the absolute address `addr`. */
export function loadAt(f: Fn, addr: number): Fn {
  return f.i32.const(0).v128.load(addr);
}

/** Pop a v128 into the absolute address `addr` (the value is pushed by `value`). */
export function storeAt(f: Fn, addr: number, value: () => void): void {
  f.i32.const(0);
  value();
  f.v128.store(addr);
}

/**
 * The super-block at byte address in + xb, G = 256/n sub-blocks of n values (sub-block j = values
 * nj … nj+n−1), transposed to xt: element i of sub-block j at xt + 4·(Gi + j), so the vector at
 * xt + 16·(Gi/4 + g) holds element i of sub-blocks 4g … 4g+3.
 */
export function transpose(f: Fn, xb: Local<"i32">, inAddr: number, xt: number, n: number): void {
  const G = QK / n;
  for (let j = 0; j < G; j++) {
    for (let i = 0; i < n; i++) f.i32.const(0).get(xb).f32.load(inAddr + 4 * (n * j + i)).f32.store(xt + 4 * (G * i + j));
  }
}

/**
 * Push MAX(lo, MIN(hi, nearest_int(v))) as f32x4 for the f32x4 v pushed by `value`, where every lane
 * of v is known to lie within ±4194303 (and not to be NaN): there fl(v + 12582912) lies in
 * [2^23, 2^24), whose spacing is 1, so nearest_int(v) is v rounded to the nearest integer, ties to
 * even — f32x4.nearest — and the clamp is exact on the integer-valued floats (f32x4.pmin(r, hi) is
 * hi < r ? hi : r, f32x4.pmax(lo, r) is lo < r ? r : lo, so a −0 from the rounding becomes +0 when
 * lo = 0). Three instructions instead of nearestClamp's five and the conversion; the callers prove
 * (or check, and fall back) the range.
 */
export function nearestLevel(f: Fn, lo: V, hi: V, value: () => void): void {
  f.get(lo);
  value();
  f.f32x4.nearest().get(hi).f32x4.pmin().f32x4.pmax();
}

/** The levels (i32x4 on the stack, 0..255) → their 4 low bytes, stored at the absolute address `addr`. */
export function storeBytes4(f: Fn, base: Local<"i32">, addr: number, t: V): void {
  f.tee(t).get(t).i16x8.narrowI32x4U().tee(t).get(t).i8x16.narrowI16x8U().set(t);
  f.get(base).get(t).v128.store32Lane(addr, 0);
}

/** for (b = 0; b < nb; b++) body() — the loop over the super-blocks of one call. */
export function forBlocks(f: Fn, nb: Local<"i32">, b: Local<"i32">, body: (out: Label) => void): void {
  f.i32.const(0).set(b);
  f.block((out) =>
    f.loop((top) => {
      f.get(b).get(nb).i32.geU().brIf(out);
      body(out);
      f.get(b).i32.const(1).i32.add().set(b);
      f.br(top);
    }),
  );
}

/**
 * Emit the frame of a search function q(nb) → flagged count (after the caller's locals and constants):
 * for each of the nb super-blocks b, its transposition from `in` to `xt` (transpose, n values per
 * sub-block), body(b), then BAD[b] = the i32 0/1 that flag() pushes (1: the caller redoes the block
 * with the TypeScript path), counted; the count is left on the stack as the result.
 */
export function searchFrame(f: Fn, n: number, L: { readonly in: number; readonly xt: number; readonly bad: number }, body: (b: Local<"i32">) => void, flag: () => void): void {
  const b = f.i32("b"), xb = f.i32("xb"), nBad = f.i32("nBad"), bad = f.i32("bad");
  f.i32.const(0).set(nBad);
  forBlocks(f, f.p.nb, b, () => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    transpose(f, xb, L.in, L.xt, n);
    body(b);
    f.get(b);
    flag();
    f.tee(bad).i32.store8(L.bad);
    f.get(nBad).get(bad).i32.add().set(nBad);
  });
  f.get(nBad);
}

/** Emit the stores of make_qkx2_quants' results for the four lanes of q at ob + 16·g: scale (0 for an empty range), the_min = −min. */
export function qkx2Outputs(f: Fn, q: Qkx2Lanes & { flat: V; min0: V }, ZERO: V, ob: Local<"i32">, outS: number, outM: number, g: number): void {
  f.get(ob).get(ZERO).get(q.scale).get(q.flat).v128.bitselect().v128.store(outS + 16 * g);
  f.get(ob).get(q.min0).f32x4.neg().get(q.min).f32x4.neg().get(q.flat).v128.bitselect().v128.store(outM + 16 * g);
}

/**
 * for (p = start; p < end; p += step) body() — a loop over the elements of the transposed sub-blocks
 * (p a byte offset, the body addresses its vectors as p + constant). A real loop, not unrolled: with
 * the whole sub-block unrolled, V8's scheduler computes every level first and spills them.
 */
export function forBytes(f: Fn, p: Local<"i32">, start: number, end: number, step: number, body: () => void): void {
  f.i32.const(start).set(p);
  f.loop((top) => {
    body();
    f.get(p).i32.const(step).i32.add().tee(p).i32.const(end).i32.ltU().brIf(top);
  });
}

/** The running state of make_qkx2_quants in four lanes (four sub-blocks). */
export interface Qkx2Lanes {
  /** Σw, Σw·x (fixed), and the step's Σw·l, Σw·l·l, Σw·l·x */
  sw: V;
  sx: V;
  sl: V;
  sl2: V;
  sxl: V;
  /** the step's D, this_scale, this_min, cur_error */
  D: V;
  s: V;
  m: V;
  err: V;
  /** the search so far: best_error, scale, and the step's iscale / min, the accepted iscale / min */
  best: V;
  scale: V;
  is: V;
  min: V;
  bestIs: V;
  bestMin: V;
}

/**
 * Emit the fit of one make_qkx2_quants step from its sums: D = sum_w·sum_l2 − sum_l·sum_l;
 * this_scale = (sum_w·sum_xl − sum_x·sum_l)/D; this_min = (sum_l2·sum_x − sum_l·sum_xl)/D;
 * if (this_min > 0) { this_min = 0; this_scale = sum_xl/sum_l2; } (a lane with D ≤ 0 computes
 * values that qkx2Accept then refuses).
 */
export function qkx2Fit(f: Fn, q: Qkx2Lanes, ZERO: V, t: V): void {
  f.get(q.sw).get(q.sl2).f32x4.mul().get(q.sl).get(q.sl).f32x4.mul().f32x4.sub().set(q.D);
  f.get(q.sw).get(q.sxl).f32x4.mul().get(q.sx).get(q.sl).f32x4.mul().f32x4.sub().get(q.D).f32x4.div().set(q.s);
  f.get(q.sl2).get(q.sx).f32x4.mul().get(q.sl).get(q.sxl).f32x4.mul().f32x4.sub().get(q.D).f32x4.div().set(q.m);
  f.get(q.m).get(ZERO).f32x4.gt().set(t);
  f.get(q.sxl).get(q.sl2).f32x4.div().get(q.s).get(t).v128.bitselect().set(q.s);
  f.get(ZERO).get(q.m).get(t).v128.bitselect().set(q.m);
}

/**
 * Emit the acceptance of one make_qkx2_quants step: if (D > 0 && cur_error < best_error) { L = Laux;
 * best_error = cur_error; scale = this_scale; min = this_min; } — as lane masks; the accepted step's
 * iscale and min are kept (bestIs, bestMin) instead of its levels, which are recomputed from them.
 */
export function qkx2Accept(f: Fn, q: Qkx2Lanes, ZERO: V, t: V): void {
  f.get(q.D).get(ZERO).f32x4.gt().get(q.err).get(q.best).f32x4.lt().v128.and().set(t);
  f.get(q.err).get(q.best).get(t).v128.bitselect().set(q.best);
  f.get(q.s).get(q.scale).get(t).v128.bitselect().set(q.scale);
  f.get(q.is).get(q.bestIs).get(t).v128.bitselect().set(q.bestIs);
  f.get(q.min).get(q.bestMin).get(t).v128.bitselect().set(q.bestMin);
  f.get(q.m).get(q.min).get(t).v128.bitselect().set(q.min);
}

/** Byte addresses of the re-quantization pass. */
export interface RequantLayout {
  /** the input floats, [nb][256] */
  readonly in: number;
  /** d·scale of each sub-block, f32 [nb][16] */
  readonly dd: number;
  /** dmin·min of each sub-block, f32 [nb][16] (withMin only) */
  readonly dm: number;
  /** the levels out, u8 [nb][256] in natural order */
  readonly ln: number;
}

/**
 * Adds r(nb) to the module: for the 256/n sub-blocks j (of n values) of nb super-blocks, LN[nj + i] =
 * MAX(lo, MIN(hi, nearest_int((x + DM_j) / DD_j))) + add (withMin: quantize_row_q2_K_ref, _q4_K_ref,
 * _q5_K_ref) or MAX(lo, MIN(hi, nearest_int(x / DD_j))) + add (quantize_row_q3_K_ref, _q6_K_ref).
 * DD / DM hold 16 floats per super-block. A sub-block with DD_j = 0 gets meaningless levels here; the
 * caller keeps the search's (C's `if (!d) continue`).
 */
export function addRequant(mod: ModuleBuilder, L: RequantLayout, n: number, withMin: boolean, lo: number, hi: number, add: number): void {
  const f = mod.func("r", { nb: "i32" });
  const b = f.i32("b"), xb = f.i32("xb"), pb = f.i32("pb"), lb = f.i32("lb");
  const K = nearestConsts(lo, hi);
  const ADD = splatI(f, "add", add);
  const dd = f.v128("dd"), dm = f.v128("dm");
  const v = f.locals("v128", 3, "v");
  const level = (j: number, i: number): void => {
    f.get(xb).v128.load(L.in + 4 * (n * j + i));
    if (withMin) f.get(dm).f32x4.add();
    f.get(dd).f32x4.div();
    nearestClamp(f, K);
    if (add) f.get(ADD).i32x4.add();
  };
  forBlocks(f, f.p.nb, b, () => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    f.get(b).i32.const(64).i32.mul().set(pb);
    f.get(b).i32.const(QK).i32.mul().set(lb);
    for (let j = 0; j < QK / n; j++) {
      f.get(pb).f32.load(L.dd + 4 * j).f32x4.splat().set(dd);
      if (withMin) f.get(pb).f32.load(L.dm + 4 * j).f32x4.splat().set(dm);
      for (let i = 0; i < n; i += 16) {
        for (let k = 0; k < 3; k++) {
          level(j, i + 4 * k);
          f.set(v[k]!);
        }
        f.get(lb);
        f.get(v[0]!).get(v[1]!).i16x8.narrowI32x4U();
        f.get(v[2]!);
        level(j, i + 12);
        f.i16x8.narrowI32x4U().i8x16.narrowI16x8U();
        f.v128.store(L.ln + n * j + i);
      }
    }
  });
}

/** Byte addresses and block layout of the packing pass. */
export interface PackLayout {
  /** the final levels, u8 [nb][256] in natural order */
  readonly ln: number;
  /** the output blocks, [nb][size] */
  readonly out: number;
  readonly size: number;
  /** offset of qs[64] in a block */
  readonly qs: number;
  /** offset of hmask[32] in a block (Q3_K: levels 0..7, the high bit there and the low 2 in qs) or -1 (Q2_K: levels 0..3) */
  readonly hmask: number;
}

/**
 * Adds p(nb) to the module: the packing of quantize_row_q2_K_ref / quantize_row_q3_K_ref for nb
 * super-blocks, qs[32c + l] = L[128c + l] | L[128c + l + 32] << 2 | L[128c + l + 64] << 4 |
 * L[128c + l + 96] << 6 (low 2 bits), and for Q3_K hmask[m] bit k = L[32k + m] > 3.
 */
export function addPack16(mod: ModuleBuilder, L: PackLayout): void {
  const f = mod.func("p", { nb: "i32" });
  const b = f.i32("b"), lb = f.i32("lb"), ob = f.i32("ob");
  const M3 = splatI(f, "three", 0x03030303), acc = f.v128("acc");
  const level = (off: number): void => {
    f.get(lb).v128.load(L.ln + off);
    if (L.hmask >= 0) f.get(M3).v128.and();
  };
  forBlocks(f, f.p.nb, b, () => {
    f.get(b).i32.const(QK).i32.mul().set(lb);
    f.get(b).i32.const(L.size).i32.mul().set(ob);
    if (L.hmask >= 0) {
      for (let h = 0; h < 2; h++) {
        f.get(lb).v128.load(L.ln + 16 * h).i32.const(2).i8x16.shrU().set(acc);
        for (let k = 1; k < 8; k++) f.get(acc).get(lb).v128.load(L.ln + 32 * k + 16 * h).i32.const(2).i8x16.shrU().i32.const(k).i8x16.shl().v128.or().set(acc);
        f.get(ob).get(acc).v128.store(L.out + L.hmask + 16 * h);
      }
    }
    for (let c = 0; c < 2; c++) {
      for (let h = 0; h < 2; h++) {
        const base = 128 * c + 16 * h;
        f.get(ob);
        level(base);
        for (let k = 1; k < 4; k++) {
          level(base + 32 * k);
          f.i32.const(2 * k).i8x16.shl().v128.or();
        }
        f.v128.store(L.out + L.qs + 32 * c + 16 * h);
      }
    }
  });
}

/**
 * Byte addresses of a K-quant kernel's module (see bindKQuant): the input, the search's outputs,
 * the re-quantization's inputs and outputs, the flags and the packed blocks.
 */
export interface KQuantLayout {
  /** super-blocks per call */
  readonly blocks: number;
  /** bytes per output block */
  readonly size: number;
  /** values per sub-block (16 or 32) */
  readonly n: number;
  /** the input floats, [blocks][256] */
  readonly in: number;
  /** the search's scales, f32 [blocks][16] */
  readonly scales: number;
  /** the search's the_min values, f32 [blocks][16] (−1: none) */
  readonly mins: number;
  /** the search's levels, u8 [blocks][256], transposed (element i of sub-block j at 256·bi + (256/n)·i + j) */
  readonly levels: number;
  /** d·scale per sub-block, f32 [blocks][16] */
  readonly dd: number;
  /** dmin·min per sub-block, f32 [blocks][16] (−1: none) */
  readonly dm: number;
  /** the final levels, u8 [blocks][256] in natural order */
  readonly ln: number;
  /** u8 [blocks]: 1 for a super-block the kernel cannot do exactly (NaN, infinity, or a range check) */
  readonly bad: number;
  /** the output blocks, [blocks][size] */
  readonly out: number;
  /** the search's step numerators (f32), copied in once (−1: none) */
  readonly table: number;
}

/** What runKQuant needs of a K-quant kernel, plus the views its super-block tail reads and writes. */
export interface KQuantKernel {
  /** copy super-blocks [b0, b0 + nb) of src in and run the search; returns how many are flagged in `bad` */
  run(src: Float32Array, b0: number, nb: number): number;
  /** per super-block of the last run: 1 when the kernel could not do it exactly (the caller redoes it) */
  bad: Uint8Array;
  /** re-quantize the nb super-blocks in memory with dd (and dm) into `final` */
  requant(nb: number): void;
  /** pack `final` into the output blocks `out` */
  pack(nb: number): void;
  /** the search's scales and the_min values, f32 [nb][16] (mins empty when the type has none) */
  scales: Float32Array;
  mins: Float32Array;
  /** d·scale and dmin·min per sub-block, f32 [nb][16] (dd = 0: keep the search's levels; dm empty when none) */
  dd: Float32Array;
  dm: Float32Array;
  /** search levels, transposed */
  levels: Uint8Array;
  /** final levels, natural order */
  final: Uint8Array;
  /** the output blocks */
  out: Uint8Array;
  /** values per sub-block */
  n: number;
  /** scratch of runKQuant: per super-block of a call, 1 when its tail wrote it as all zeros */
  zero: Uint8Array;
}

/**
 * The memory views and entry points of an instantiated K-quant module exporting q(nb) → flagged
 * count (the search), r(nb) (re-quantization) and p(nb) (packing), laid out as `L`; `table` is copied
 * to L.table once.
 */
export function bindKQuant(e: WebAssembly.Exports, mem: WebAssembly.Memory, L: KQuantLayout, table?: Float64Array): KQuantKernel {
  const buf = mem.buffer;
  const q = e["q"] as (nb: number) => number;
  const input = new Float32Array(buf, L.in, L.blocks * QK);
  if (table) new Float32Array(buf, L.table, table.length).set(table);
  const f32 = (at: number): Float32Array => new Float32Array(buf, at < 0 ? 0 : at, at < 0 ? 0 : L.blocks * 16);
  return {
    run(src, b0, nb) {
      input.set(src.subarray(b0 * QK, (b0 + nb) * QK));
      return q(nb);
    },
    bad: new Uint8Array(buf, L.bad, L.blocks),
    requant: e["r"] as (nb: number) => void,
    pack: e["p"] as (nb: number) => void,
    scales: f32(L.scales),
    mins: f32(L.mins),
    dd: f32(L.dd),
    dm: f32(L.dm),
    levels: new Uint8Array(buf, L.levels, L.blocks * QK),
    final: new Uint8Array(buf, L.ln, L.blocks * QK),
    out: new Uint8Array(buf, L.out, L.blocks * L.size),
    n: L.n,
    zero: new Uint8Array(L.blocks),
  };
}

/**
 * A K-quant kernel, lazily instantiated (instantiate.ts's policy): the module `build` makes, bound
 * with bindKQuant to the layout `L` (and the step / trial numerators `table`, when it has one).
 */
export function kquantKernel(name: string, build: () => Uint8Array<ArrayBuffer>, L: KQuantLayout, table?: Float64Array): LazyKernel<KQuantKernel> {
  return lazyKernel(name, build, (e, mem) => bindKQuant(e, mem, L, table));
}

/**
 * The SIMD path of a K-quant over whole chunks: the kernel's search, the super-block tail in
 * TypeScript (`tail(bi, out, o)` writes the block's scales / d into out[o..] and dd[16·bi …]; it
 * returns false for a block that C writes as all zeros), the kernel's re-quantization (a sub-block
 * with dd = 0 keeps the search's levels, C's `if (!d) continue`) and packing. A super-block the kernel
 * flags (a NaN, an infinity, or a value outside a kernel's range check) is quantized by `scalar`.
 */
export function runKQuant(
  k: KQuantKernel,
  blocks: number,
  size: number,
  src: Float32Array,
  dst: Uint8Array,
  nb: number,
  tail: (bi: number, out: Uint8Array, o: number) => boolean | void,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): void {
  const { dd, levels, final, out, bad, n, zero } = k;
  const G = QK / n;
  for (let b0 = 0; b0 < nb; b0 += blocks) {
    const cnt = Math.min(blocks, nb - b0);
    const nBad = k.run(src, b0, cnt);
    let zeros = 0;
    for (let bi = 0; bi < cnt; bi++) {
      const z = tail(bi, out, bi * size) === false;
      zero[bi] = z ? 1 : 0;
      if (z) zeros++;
    }
    k.requant(cnt);
    for (let bi = 0; bi < cnt; bi++) {
      if (zero[bi]) continue;
      const lo = bi * QK;
      for (let j = 0; j < G; ++j) {
        if (dd[bi * 16 + j] === 0) for (let ii = 0; ii < n; ++ii) final[lo + n * j + ii] = levels[lo + ii * G + j]!;
      }
    }
    k.pack(cnt);
    if (zeros > 0) {
      for (let bi = 0; bi < cnt; bi++) if (zero[bi]) out.fill(0, bi * size, (bi + 1) * size);
    }
    dst.set(out.subarray(0, cnt * size), b0 * size);
    if (nBad > 0) {
      for (let bi = 0; bi < cnt; bi++) {
        if (!bad[bi]) continue;
        const b = b0 + bi;
        scalar(src.subarray(b * QK, (b + 1) * QK), dst.subarray(b * size, (b + 1) * size));
      }
    }
  }
}

/**
 * The quantize entry of a K-quant codec with a kernel of this file's kind (Q2_K, Q3_K): the argument
 * checks, then runKQuant over the whole blocks when the kernel is available (`tail(k, bi, out, o)` is
 * runKQuant's tail with the kernel's views), else `scalar`, the TypeScript reference path.
 */
export function kquantQuantize(
  name: string,
  size: number,
  kernel: { get(): KQuantKernel | undefined },
  blocks: number,
  tail: (k: KQuantKernel, bi: number, out: Uint8Array, o: number) => boolean | void,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): (src: Float32Array, dst: Uint8Array) => void {
  return (src, dst) => {
    const nb = checkQuantizeArgs(name, src, dst, QK, size);
    const k = kernel.get();
    if (k) runKQuant(k, blocks, size, src.subarray(0, nb * QK), dst, nb, (bi, out, o) => tail(k, bi, out, o), scalar);
    else scalar(src, dst);
  };
}
