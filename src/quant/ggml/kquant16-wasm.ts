/**
 * Pieces shared by the WebAssembly SIMD kernels of the K-quants with 16-value sub-blocks (Q2_K in
 * q2_k-wasm.ts, Q3_K in q3_k-wasm.ts), written with src/quant/wasm/builder.ts:
 *
 * - the transposition of a super-block, so that the four lanes of a vector are four *different*
 *   sub-blocks: every sequential float sum of ggml's per-sub-block search stays sequential within its
 *   lane, and each C float operation is one f32x4 operation (wasm f32 arithmetic is IEEE binary32,
 *   round to nearest even, never fused or reassociated);
 * - ggml's nearest_int (ggml-quants.c: the float add of 12582912, then the mantissa bits − 0x400000,
 *   which also reproduces its wrap beyond ±4194303) followed by the MAX(lo, MIN(hi, l)) clamp;
 * - the re-quantization pass of quantize_row_q2_K_ref / quantize_row_q3_K_ref with the fp16-rounded
 *   scales (l = nearest_int((x + dm)/d) or nearest_int(x/d), clamped);
 * - the loop over the super-blocks of one call.
 */
import type { FuncBuilder, Label, Local, ModuleBuilder } from "../wasm/builder.js";

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
 * The 16 × 16 super-block at byte address in + xb (sub-block j = values 16j … 16j+15) transposed to
 * xt: element i of sub-block j at xt + 4·(16i + j), so the vector at xt + 16·(4i + g) holds element i
 * of sub-blocks 4g … 4g+3.
 */
export function transpose16(f: Fn, xb: Local<"i32">, inAddr: number, xt: number): void {
  for (let j = 0; j < 16; j++) {
    for (let i = 0; i < 16; i++) f.i32.const(0).get(xb).f32.load(inAddr + 4 * (16 * j + i)).f32.store(xt + 4 * (16 * i + j));
  }
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
 * Adds r(nb) to the module: for the 16 sub-blocks j of nb super-blocks, LN[16j + i] =
 * MAX(lo, MIN(hi, nearest_int((x + DM_j) / DD_j))) + add (withMin: quantize_row_q2_K_ref) or
 * MAX(lo, MIN(hi, nearest_int(x / DD_j))) + add (quantize_row_q3_K_ref). A sub-block with DD_j = 0
 * gets meaningless levels here; the caller keeps the search's (C's `if (!d) continue`).
 */
export function addRequant16(mod: ModuleBuilder, L: RequantLayout, withMin: boolean, lo: number, hi: number, add: number): void {
  const f = mod.func("r", { nb: "i32" });
  const b = f.i32("b"), xb = f.i32("xb"), pb = f.i32("pb"), lb = f.i32("lb");
  const K = nearestConsts(lo, hi);
  const ADD = splatI(f, "add", add);
  const dd = f.v128("dd"), dm = f.v128("dm");
  const v = f.locals("v128", 3, "v");
  const level = (j: number, i: number): void => {
    f.get(xb).v128.load(L.in + 4 * (16 * j + i));
    if (withMin) f.get(dm).f32x4.add();
    f.get(dd).f32x4.div();
    nearestClamp(f, K);
    if (add) f.get(ADD).i32x4.add();
  };
  forBlocks(f, f.p.nb, b, () => {
    f.get(b).i32.const(QK * 4).i32.mul().set(xb);
    f.get(b).i32.const(64).i32.mul().set(pb);
    f.get(b).i32.const(QK).i32.mul().set(lb);
    for (let j = 0; j < 16; j++) {
      f.get(pb).f32.load(L.dd + 4 * j).f32x4.splat().set(dd);
      if (withMin) f.get(pb).f32.load(L.dm + 4 * j).f32x4.splat().set(dm);
      for (let k = 0; k < 3; k++) {
        level(j, 4 * k);
        f.set(v[k]!);
      }
      f.get(lb);
      f.get(v[0]!).get(v[1]!).i16x8.narrowI32x4U();
      f.get(v[2]!);
      level(j, 12);
      f.i16x8.narrowI32x4U().i8x16.narrowI16x8U();
      f.v128.store(L.ln + 16 * j);
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

/** What q2_k.ts / q3_k.ts need of their kernel for runK16. */
export interface K16Kernel {
  /** copy super-blocks [b0, b0 + nb) of src in and run the search; returns how many hold a NaN or an infinity */
  run(src: Float32Array, b0: number, nb: number): number;
  /** per super-block of the last run: 1 when it holds a NaN or an infinity */
  bad: Uint8Array;
  /** re-quantize the nb super-blocks in memory with dd (and dm) into `final` */
  requant(nb: number): void;
  /** pack `final` into the output blocks `out` */
  pack(nb: number): void;
  /** d·scale per sub-block, f32 [nb][16] (0: keep the search's levels) */
  dd: Float32Array;
  /** search levels, transposed (element i of sub-block j of block bi at 256·bi + 16i + j) */
  levels: Uint8Array;
  /** final levels, natural order */
  final: Uint8Array;
  /** the output blocks */
  out: Uint8Array;
}

/**
 * The SIMD path of Q2_K / Q3_K over whole chunks: the kernel's search, the super-block tail in
 * TypeScript (`tail(bi, out, o)` writes the block's scales / d into out[o..] and dd[16·bi …]), the
 * kernel's re-quantization (a sub-block with dd = 0 keeps the search's levels, C's `if (!d) continue`)
 * and packing. A super-block holding a NaN or an infinity is quantized by `scalar` instead.
 */
export function runK16(
  k: K16Kernel,
  blocks: number,
  size: number,
  src: Float32Array,
  dst: Uint8Array,
  nb: number,
  tail: (bi: number, out: Uint8Array, o: number) => void,
  scalar: (src: Float32Array, dst: Uint8Array) => void,
): void {
  const { dd, levels, final, out, bad } = k;
  for (let b0 = 0; b0 < nb; b0 += blocks) {
    const n = Math.min(blocks, nb - b0);
    const nBad = k.run(src, b0, n);
    for (let bi = 0; bi < n; bi++) tail(bi, out, bi * size);
    k.requant(n);
    for (let bi = 0; bi < n; bi++) {
      const lo = bi * QK;
      for (let j = 0; j < 16; ++j) {
        if (dd[bi * 16 + j] === 0) for (let ii = 0; ii < 16; ++ii) final[lo + 16 * j + ii] = levels[lo + ii * 16 + j]!;
      }
    }
    k.pack(n);
    dst.set(out.subarray(0, n * size), b0 * size);
    if (nBad > 0) {
      for (let bi = 0; bi < n; bi++) {
        if (!bad[bi]) continue;
        const b = b0 + bi;
        scalar(src.subarray(b * QK, (b + 1) * QK), dst.subarray(b * size, (b + 1) * size));
      }
    }
  }
}
