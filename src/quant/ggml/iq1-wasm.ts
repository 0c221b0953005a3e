/**
 * WebAssembly kernels of the IQ1_S and IQ1_M quantizers: ggml-quants.c quantize_row_iq1_s_impl /
 * quantize_row_iq1_m_impl operation for operation (wasm f32 is IEEE binary32, round to nearest even,
 * never fused or reassociated), written with src/quant/wasm/builder.ts. iq1.ts is the readable
 * reference and the fallback; the kernel must give its bytes (test/quant/iq1-wasm.test.ts).
 *
 * What differs from a literal port, and why it is the same:
 *
 * - The sort (C: qsort with iq1_sort_helper, which glibc runs as a stable merge sort; iq1.ts: stable
 *   insertion sort) is a rank computation: rank(i) = #{j < i : x_j ≤ x_i} + #{j > i : x_j < x_i}
 *   is the position of element i in the stable ascending order (for non-NaN values; blocks holding a
 *   NaN or an infinity are redone by iq1.ts), four ranks per f32x4 comparison.
 * - IQ1_S's split scan evaluates four i2 values per vector (each lane is C's float expression for
 *   its own i2; the terms that depend on i2 only are tabled once per sub-block, and bx·x_m[1] is
 *   −(bx·x_p[1]) exactly, x_m[1] being −x_p[1]), then checks whether any lane's
 *   `sumqx·sumqx > best_score·sumq2` holds against the current best; only then are the lanes decided
 *   one by one with C's full test, in C's order (shift +1 before −1, ascending i2). When no lane
 *   passes, none would change best_score, so skipping them is exact. sumw[33..35] are NaN, so the
 *   lanes past i2 = 32 never pass.
 * - IQ1_M's four sums (the lanes k = 0..3) are sequential float sums over the sorted positions j
 *   with the level of j fixed by (i1, i2). The state after the j < i1 part depends on i1 only, the
 *   state after the i1 ≤ j < i2 part on (i1, i2) and is the previous i2's state plus one term, so
 *   only the i2 ≤ j < 16 part is summed per pair: the same additions in the same order. Each term
 *   w·x_l·x (w·x_l·x_l) is formed once per (j, l), the same float product as C forms each time.
 * - iq1_find_best_neighbour2 runs four neighbours per vector, two vectors per pass (independent
 *   chains of float adds hide their latency): the eight terms w·(scale·q − x)² of a group are formed
 *   once per level (24 floats, looked up per lane with a byte swizzle), each lane sums its
 *   neighbour's eight in C's order, and the lanes keep their first strict minimum; the lane with the smallest (d2, position) is the
 *   neighbour C's scan keeps (its first strict minimum). Lists are padded to a multiple of eight with
 *   their last entry, which can only tie with it at a later position.
 * - The neighbour lists (iq2xs_init_impl: the grid points at the three smallest distinct squared
 *   distances, by (distance, index)) are built inside the module the first time a point needs one,
 *   as iq-common.ts's Lattice does, from its grid and map (copied into the module's memory); each
 *   entry's levels are also kept as swizzle offsets in a side pool, transposed by fours.
 *
 * s(nb) / m(nb, hasQw) quantize nb blocks from X (and their importance rows from QW) into OUT and
 * return how many they could not do: those have FLAG[b] ≠ 0 (a NaN or an infinity in the block, an
 * overflow to a non-finite scale, or a group without a neighbour — where iq1.ts throws as ggml
 * aborts) and are redone by iq1.ts.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import type { FuncBuilder, Label, Local } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import type { LazyKernel } from "../wasm/instantiate.js";
import { f16Emitter } from "../wasm/kernels.js";
import type { Lattice } from "./iq-common.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = FuncBuilder<any>;
type I = Local<"i32">;
type Fl = Local<"f32">;
type V = Local<"v128">;

/** blocks per kernel call */
export const IQ1_BLOCKS = 64;
const QK = 256;
const NGRID = 2048;
const KMAP = 43692; // iq2xs_init_impl kmap_size
const MAXLIST = NGRID + 7; // a list can hold every grid point, plus the padding to a multiple of 8

// memory layout (bytes)
const X = 0; // input blocks, f32 [IQ1_BLOCKS][256]
const QW = X + IQ1_BLOCKS * QK * 4; // their importance rows, f32 [IQ1_BLOCKS][256]
const OUT = QW + IQ1_BLOCKS * QK * 4; // output blocks [IQ1_BLOCKS][50 or 56]
const FLAG = OUT + 4096; // i32 [IQ1_BLOCKS]
const W = FLAG + 4 * IQ1_BLOCKS; // weights of the current block, f32 [256]
const IDX = W + 1024; // sorted order of the current sub-block, i32 [32]
const SX = IDX + 128; // IQ1_S sumx[0..32] + 3 pad (0), f32
const SW = SX + 160; // IQ1_S sumw[0..32] + 3 pad (NaN), f32
const LV = SW + 160; // L, i32 [32]
const SC = LV + 128; // sub-block scales, f32 [16]
const SH = SC + 64; // sub-block shifts, i32 [16]
const TX = SH + 64; // IQ1_M terms w·x_l·x by (position j ≤ 16, level l), v128 (lanes k = 0..3)
const TQ = TX + 17 * 48; // IQ1_M terms w·x_l·x_l
const CXP = TQ + 17 * 48; // IQ1_S, by i2 = 0..35: (sumx[32] − sumx[i2])·x_p[2], f32
const CWP = CXP + 160; // (sumw[32] − sumw[i2])·x_p[2]·x_p[2]
const CXM = CWP + 160; // (sumx[32] − sumx[i2])·x_m[2]
const CWM = CXM + 160; // (sumw[32] − sumw[i2])·x_m[2]·x_m[2]
const CT = CWM + 160; // x_p at CT, x_m at CT + 16 (3 f32 each)
const SCW = CT + 32; // IQ1_M packed scales, i32 [4]
const POOLP = SCW + 16; // i32: next free byte of the neighbour pool
const PTRS = POOLP + 16; // i32 [4]: write pointers of the three distance sections, and a dummy
const SLOT = PTRS + 16; // i32 [33]: section of each squared level distance (3 = none)
const HIST = SLOT + 144; // i32 [33]
const D2 = HIST + 144; // i32 [2048]: squared level distances to the point being listed
const CODE = D2 + 4 * NGRID; // u16 [2048]: grid point levels, 2 bits per coordinate
const LB = CODE + 2 * NGRID; // u8 [2048][8]: 4 · level of each coordinate (swizzle byte offsets)
const MAP = LB + 8 * NGRID; // i32 [KMAP]: grid index of a packed level vector, −1 off the grid
const NBP = MAP + 4 * KMAP; // i32 [KMAP]: address of a built neighbour list, 0 before
const POOL = NBP + 4 * KMAP; // lists: 16-byte header (i32 count), then u32 entries index | code << 16
const POOL_END = POOL + 1_600_000; // the 4513 lists of IQ1 (padded) need ~1.5 MB
const TRASH = POOL_END - 16; // where the dummy section pointer writes (never part of a list)
// the LB bytes of the entries, transposed by fours: the entries at POOL + 16g … + 16g + 15 (n = 0..3)
// have coordinate i's byte at POOLB + 32g + 4i + n (bAddr)
const POOLB = POOL_END;
const B_OFF = POOLB - 2 * POOL;
const END = POOLB + 2 * (POOL_END - POOL);

const DELTA = 0.125; // IQ1S_DELTA = IQ1M_DELTA
const XP = [-1 + DELTA, DELTA, 1 + DELTA];
const XM = [-1 - DELTA, -DELTA, 1 - DELTA];
const EPS_S = 1e-12; // GROUP_MAX_EPS_IQ1_S
const EPS_M = 1e-7; // GROUP_MAX_EPS_IQ1_M
const FLT_MAX = 3.4028234663852886e38;

/** A counted loop: i = from; do { body } while (++i < to) (to > from); `cont` ends one iteration. */
function forRange(f: Fn, i: I, from: number | I, to: number | I, body: (cont: Label) => void): void {
  if (typeof from === "number") f.i32.const(from);
  else f.get(from);
  f.set(i);
  f.loop((top) => {
    f.block((cont) => body(cont));
    f.get(i).i32.const(1).i32.add().tee(i);
    if (typeof to === "number") f.i32.const(to);
    else f.get(to);
    f.i32.ltS().brIf(top);
  });
}


/** b = the B_OFF-relative address of coordinate 0's LB byte of the entry at POOL address (local a) */
function bAddr(f: Fn, a: I, b: I): void {
  f.get(a).i32.const(-16).i32.and().i32.const(1).i32.shl().get(a).i32.const(2).i32.shrU().i32.const(3).i32.and().i32.add().set(b);
}

/** nb(u): builds the neighbour list of the off-grid u (Lattice.neighbours: nwant = 3); 0 when the pool is full */
function addBuildList(mod: ModuleBuilder): FuncBuilder<{ u: "i32" }> {
  const f = mod.func("nb", { u: "i32" }, "i32");
  const u = f.p.u;
  const p = f.i32("p"), j = f.i32("j"), s = f.i32("s"), nl = f.i32("nl"), total = f.i32("total"), a = f.i32("a"), sl = f.i32("sl"), e = f.i32("e");
  const b = f.i32("b"), e0 = f.i32("e0");
  const LU = f.locals("v128", 8, "lu");
  const C = f.v128("C"), Dv = f.v128("D"), T = f.v128("T");
  f.i32.const(0).i32.load(POOLP).set(p);
  f.get(p).i32.const(16 + 4 * MAXLIST).i32.add().i32.const(TRASH).i32.gtU().if(() => f.i32.const(0).return());
  for (let c = 0; c < 8; c++) f.get(u).i32.const(2 * c).i32.shrU().i32.const(3).i32.and().i32x4.splat().set(LU[c]!);
  // squared level distances (Σ (l_c − lu_c)², a quarter of C's Σ (q_c − pos_c)²: the same order)
  f.i32.const(0).set(j);
  f.loop((top) => {
    f.get(j).i32.const(1).i32.shl().v128.load16x4U(CODE).set(C);
    f.i32.const(0).i32x4.splat().set(Dv);
    for (let c = 0; c < 8; c++) {
      f.get(C).i32.const(2 * c).i32x4.shrU().i32.const(3).i32x4.splat().v128.and().get(LU[c]!).i32x4.sub().tee(T);
      f.get(T).i32x4.mul().get(Dv).i32x4.add().set(Dv);
    }
    f.get(j).i32.const(2).i32.shl().get(Dv).v128.store(D2);
    f.get(j).i32.const(4).i32.add().tee(j).i32.const(NGRID).i32.ltU().brIf(top);
  });
  forRange(f, s, 0, 33, () => f.get(s).i32.const(2).i32.shl().i32.const(0).i32.store(HIST));
  forRange(f, j, 0, NGRID, () => {
    f.get(j).i32.const(2).i32.shl().i32.load(D2).i32.const(2).i32.shl().tee(a);
    f.get(a).i32.load(HIST).i32.const(1).i32.add().i32.store(HIST);
  });
  // the three smallest distances present: their sections, in order, after the 16-byte header
  f.i32.const(0).set(nl).i32.const(0).set(total);
  f.i32.const(0).get(p).i32.const(16).i32.add().i32.store(PTRS);
  forRange(f, s, 0, 33, () => {
    f.get(s).i32.const(2).i32.shl().set(a);
    f.get(a).i32.load(HIST).i32.const(0).i32.gtS().get(nl).i32.const(3).i32.ltS().i32.and().if(
      () => {
        f.get(a).get(nl).i32.store(SLOT);
        f.get(a).i32.load(HIST).get(total).i32.add().set(total);
        f.get(nl).i32.const(1).i32.add().tee(nl);
        f.i32.const(2).i32.shl().get(p).i32.const(16).i32.add().get(total).i32.const(2).i32.shl().i32.add().i32.store(PTRS);
      },
      () => f.get(a).i32.const(3).i32.store(SLOT),
    );
  });
  f.i32.const(12).i32.const(TRASH).i32.store(PTRS);
  // one pass over the grid in index order: each point to the end of its section (or the dummy)
  forRange(f, j, 0, NGRID, () => {
    f.get(j).i32.const(2).i32.shl().i32.load(D2).i32.const(2).i32.shl().i32.load(SLOT).tee(sl);
    f.i32.const(2).i32.shl().i32.load(PTRS).tee(a);
    f.get(j).get(j).i32.const(1).i32.shl().i32.load16U(CODE).i32.const(16).i32.shl().i32.or().i32.store();
    bAddr(f, a, b);
    f.get(j).i32.const(3).i32.shl().set(e);
    for (let i = 0; i < 8; i++) f.get(b).get(e).i32.load8U(LB + i).i32.store8(B_OFF + 4 * i);
    f.get(sl).i32.const(2).i32.shl().get(a).i32.const(4).get(sl).i32.const(3).i32.ltS().i32.mul().i32.add().i32.store(PTRS);
  });
  f.get(p).get(total).i32.store(4); // the count before padding (read by the tests)
  // pad to a multiple of eight with the last entry
  f.get(p).get(total).i32.const(2).i32.shl().i32.add().i32.const(12).i32.add().tee(a).i32.load().set(e);
  bAddr(f, a, e0);
  f.block((done) =>
    f.loop((top) => {
      f.get(total).i32.const(7).i32.and().i32.eqz().brIf(done);
      f.get(p).get(total).i32.const(2).i32.shl().i32.add().i32.const(16).i32.add().tee(a).get(e).i32.store();
      bAddr(f, a, b);
      for (let i = 0; i < 8; i++) f.get(b).get(e0).i32.load8U(B_OFF + 4 * i).i32.store8(B_OFF + 4 * i);
      f.get(total).i32.const(1).i32.add().set(total).br(top);
    }),
  );
  f.get(p).get(total).i32.store();
  f.get(u).i32.const(2).i32.shl().get(p).i32.store(NBP);
  f.i32.const(0).get(p).i32.const(16).i32.add().get(total).i32.const(2).i32.shl().i32.add().i32.store(POOLP);
  f.get(p);
  return f;
}

/**
 * bn(u, xa, wa, scale, xg): iq1_find_best_neighbour2 for the 8 values at xa with weights at wa and
 * the level values at xg (3 f32); returns the grid index, −1 when no neighbour scores below
 * FLT_MAX, −2 when the pool is full.
 */
function addBestNeighbour(mod: ModuleBuilder, build: FuncBuilder): FuncBuilder {
  const f = mod.func("bn", { u: "i32", xa: "i32", wa: "i32", scale: "f32", xg: "i32" }, "i32");
  const { u, xa, wa, scale, xg } = f.p;
  const p = f.i32("p"), e = f.i32("e"), end = f.i32("end"), bp = f.i32("bp"), q = f.i32("q"), b = f.i32("b");
  const S = f.locals("f32", 3, "s"), diff = f.f32("diff"), bv = f.f32("bv"), v = f.f32("v");
  const T = Array.from({ length: 8 }, (_, i) => f.local("v128", `t${i}`));
  const t = f.f32("t"), C0123 = f.v128("C0123");
  const VA = f.locals("v128", 2, "va"), VB = f.locals("v128", 2, "vb"), DA = f.v128("DA"), DB = f.v128("DB");
  const BEST = f.v128("BEST"), BPOS = f.v128("BPOS"), POSA = f.v128("POSA"), POSB = f.v128("POSB"), better = f.v128("better");
  f.get(u).i32.const(2).i32.shl().i32.load(NBP).tee(p).i32.eqz().if(() => {
    f.get(u).call(build).tee(p).i32.eqz().if(() => f.i32.const(-2).return());
  });
  // scale·xg[l], then per coordinate i and level l: w_i·(scale·xg[l] − x_i)·(…)
  for (let l = 0; l < 3; l++) f.get(scale).get(xg).f32.load(4 * l).f32.mul().set(S[l]!);
  // as a swizzle table per coordinate: [t(l = 0), t(1), t(2), 0]
  for (let i = 0; i < 8; i++) {
    for (let l = 0; l < 3; l++) {
      f.get(S[l]!).get(xa).f32.load(4 * i).f32.sub().set(diff);
      f.get(wa).f32.load(4 * i).get(diff).f32.mul().get(diff).f32.mul().set(t);
      if (l === 0) f.f32.const(0).f32x4.splat().get(t).f32x4.replaceLane(0).set(T[i]!);
      else f.get(T[i]!).get(t).f32x4.replaceLane(l).set(T[i]!);
    }
  }
  f.i32.const(0x03020100).i32x4.splat().set(C0123);
  f.f32.const(FLT_MAX).f32x4.splat().set(BEST);
  f.i32.const(-1).i32x4.splat().set(BPOS);
  f.i32x4.const([0, 1, 2, 3]).set(POSA);
  f.i32x4.const([4, 5, 6, 7]).set(POSB);
  f.get(p).i32.const(16).i32.add().tee(e).get(p).i32.load().i32.const(2).i32.shl().i32.add().set(end);
  f.block((done) =>
    f.loop((top) => {
      f.get(e).get(end).i32.geU().brIf(done);
      // eight neighbours per pass, as two independent chains of four (A: entries 0..3, B: 4..7);
      // lane n of coordinate i takes byte 4(i % 4) + n of the group's vector i / 4, four times,
      // plus 0, 1, 2, 3: the byte offsets of its level's f32 in the coordinate's table
      f.get(e).i32.const(1).i32.shl().set(b);
      for (let h = 0; h < 2; h++) {
        f.get(b).v128.load(B_OFF + 16 * h).set(VA[h]!);
        f.get(b).v128.load(B_OFF + 32 + 16 * h).set(VB[h]!);
      }
      f.f32.const(0).f32x4.splat().tee(DA).set(DB);
      for (let i = 0; i < 8; i++) {
        const lanes = Array.from({ length: 16 }, (_, k) => 4 * (i % 4) + (k >> 2));
        for (const [V, D] of [[VA, DA], [VB, DB]] as const) {
          f.get(D).get(T[i]!).get(V[i >> 2]!).get(V[i >> 2]!).i8x16.shuffle(lanes).get(C0123).i8x16.add().i8x16.swizzle().f32x4.add().set(D);
        }
      }
      for (const [D, POS] of [[DA, POSA], [DB, POSB]] as const) {
        f.get(D).get(BEST).f32x4.lt().set(better);
        f.get(D).get(BEST).get(better).v128.bitselect().set(BEST);
        f.get(POS).get(BPOS).get(better).v128.bitselect().set(BPOS);
        f.get(POS).i32.const(8).i32x4.splat().i32x4.add().set(POS);
      }
      f.get(e).i32.const(32).i32.add().set(e).br(top);
    }),
  );
  // the lane with the smallest (d2, position)
  f.get(BEST).f32x4.extractLane(0).set(bv).get(BPOS).i32x4.extractLane(0).set(bp);
  for (let lane = 1; lane < 4; lane++) {
    f.get(BEST).f32x4.extractLane(lane).set(v).get(BPOS).i32x4.extractLane(lane).set(q);
    f.get(v).get(bv).f32.lt().get(v).get(bv).f32.eq().get(q).get(bp).i32.ltS().i32.and().i32.or().if(() => f.get(v).set(bv).get(q).set(bp));
  }
  f.get(bp).i32.const(0).i32.ltS().if(() => f.i32.const(-1).return());
  f.get(p).get(bp).i32.const(2).i32.shl().i32.add().i32.load(16).i32.const(0xffff).i32.and();
  return f;
}

/** The per-block pieces both quantizers share. */
class Common {
  readonly sigma2: Fl;
  readonly max: Fl;
  readonly scale: Fl;
  readonly best: Fl;
  readonly besti1: I;
  readonly besti2: I;
  private readonly t: I;
  private readonly j: I;
  private readonly acc: V;
  private readonly xv: V;
  private readonly r: V;

  constructor(
    readonly f: Fn,
    readonly bs: number,
  ) {
    this.sigma2 = f.f32("sigma2");
    this.max = f.f32("max");
    this.scale = f.f32("scale");
    this.best = f.f32("best");
    this.besti1 = f.i32("besti1");
    this.besti2 = f.i32("besti2");
    this.t = f.i32("t");
    this.j = f.i32("j");
    this.acc = f.v128("acc");
    this.xv = f.v128("xv");
    this.r = f.v128("rank");
  }

  /** push 1 when any of the n floats at (a) has an all-ones exponent (NaN, ±inf) */
  nonFinite(a: I, n: number): void {
    const { f, acc } = this;
    f.i32.const(0).i32x4.splat().set(acc);
    for (let v = 0; v < n / 4; v++) {
      f.get(acc).get(a).v128.load(16 * v).i32.const(0x7f800000).i32x4.splat().tee(this.xv).v128.and().get(this.xv).i32x4.eq().v128.or().set(acc);
    }
    f.get(acc).v128.anyTrue();
  }

  /** sigma2 = 2·Σx²/256 over the block at (xb0), in index order */
  sigma(xb0: I): void {
    const { f, sigma2, t } = this;
    const s = this.max; // scratch
    f.f32.const(0).set(s);
    forRange(f, t, 0, QK, () => {
      f.get(xb0).get(t).i32.const(2).i32.shl().i32.add().f32.load().tee(this.sigma2).get(this.sigma2).f32.mul().get(s).f32.add().set(s);
    });
    f.f32.const(2).get(s).f32.mul().f32.const(QK).f32.div().set(sigma2);
  }

  /** weight[i] = qw[i]·√(sigma2 + x²) (or x² without qw) into (wb), bs values; max = max |x| */
  weightsAndMax(xb: I, qb: I | null, wb: I, hasQw: I | null): void {
    const { f, bs, acc, xv } = this;
    const withQw = (): void => {
      for (let v = 0; v < bs / 4; v++) {
        f.get(wb).get(qb!).v128.load(16 * v);
        f.get(this.sigma2).f32x4.splat().get(xb).v128.load(16 * v).tee(xv).get(xv).f32x4.mul().f32x4.add().f32x4.sqrt();
        f.f32x4.mul().v128.store(16 * v);
      }
    };
    const without = (): void => {
      for (let v = 0; v < bs / 4; v++) f.get(wb).get(xb).v128.load(16 * v).tee(xv).get(xv).f32x4.mul().v128.store(16 * v);
    };
    if (hasQw) f.get(hasQw).if(withQw, without);
    else withQw();
    f.get(xb).v128.load(0).f32x4.abs().set(acc);
    for (let v = 1; v < bs / 4; v++) f.get(acc).get(xb).v128.load(16 * v).f32x4.abs().f32x4.max().set(acc);
    f.get(acc).f32x4.extractLane(0).get(acc).f32x4.extractLane(1).f32.max();
    f.get(acc).f32x4.extractLane(2).get(acc).f32x4.extractLane(3).f32.max().f32.max().set(this.max);
  }

  /** IDX[rank(i)] = i: the stable ascending order of the bs values at (xb) */
  sort(xb: I): void {
    const { f, bs, xv, r } = this;
    for (let v = 0; v < bs / 4; v++) {
      f.get(xb).v128.load(16 * v).set(xv);
      f.i32.const(0).i32x4.splat().set(r);
      for (let j = 0; j < bs; j++) {
        f.get(r);
        const lo = 4 * v;
        if (j < lo) f.get(xb).v128.load32Splat(4 * j).get(xv).f32x4.le();
        else if (j > lo + 3) f.get(xb).v128.load32Splat(4 * j).get(xv).f32x4.lt();
        else {
          // lanes with i > j count x_j ≤ x_i, the others x_j < x_i
          f.get(xb).v128.load32Splat(4 * j).get(xv).f32x4.le();
          f.get(xb).v128.load32Splat(4 * j).get(xv).f32x4.lt();
          const c = j - lo;
          f.i32x4.const([0, 1, 2, 3].map((lane) => (lane > c ? -1 : 0)) as [number, number, number, number]).v128.bitselect();
        }
        f.i32x4.sub().set(r);
      }
      for (let lane = 0; lane < 4; lane++) f.get(r).i32x4.extractLane(lane).i32.const(2).i32.shl().i32.const(4 * v + lane).i32.store(IDX);
    }
  }

  /** L[IDX[j]] = level of sorted position j (0 below besti1, 1 below besti2, else 2), 2 − that when flip */
  assignLevels(flip: I): void {
    const { f, bs, j } = this;
    forRange(f, j, 0, bs, () => {
      f.get(j).i32.const(2).i32.shl().i32.load(IDX).i32.const(2).i32.shl();
      f.get(j).get(this.besti1).i32.geS().get(j).get(this.besti2).i32.geS().i32.add().set(this.t);
      f.i32.const(2).get(this.t).i32.sub().get(this.t).get(flip).select();
      f.i32.store(LV);
    });
  }

  /**
   * The grid indices of the groups of L (off-grid ones by bn at `scale` with the level values at
   * xg0 for group 0, xg1 for the others) into idx[k]; when any was off the grid, scale refitted.
   * Branches to `bail` (with FLAG set by the caller's `fail`) when bn finds nothing.
   */
  placeOnGrid(bn: FuncBuilder, xb: I, wb: I, xg0: I, xg1: I, idx: I[], fail: () => void): void {
    const f = this.f;
    const groups = idx.length;
    const allOn = f.i32("allOn"), u = f.i32("u"), code = f.i32("code"), xgk = f.i32("xgk");
    const sqx = f.f32("rsqx"), sq2 = f.f32("rsq2"), w = f.f32("rw"), q = f.f32("rq");
    f.i32.const(1).set(allOn);
    for (let k = 0; k < groups; k++) {
      f.i32.const(0).set(u);
      for (let jj = 0; jj < 8; jj++) f.get(u).i32.const(0).i32.load(LV + 4 * (8 * k + jj)).i32.const(2 * jj).i32.shl().i32.or().set(u);
      f.get(u).i32.const(2).i32.shl().i32.load(MAP).tee(idx[k]!).i32.const(0).i32.ltS().if(() => {
        f.i32.const(0).set(allOn);
        f.get(u).get(xb).i32.const(32 * k).i32.add().get(wb).i32.const(32 * k).i32.add().get(this.scale).get(k === 0 ? xg0 : xg1).call(bn).tee(idx[k]!);
        f.i32.const(0).i32.ltS().if(fail);
      });
    }
    f.get(allOn).i32.eqz().if(() => {
      f.f32.const(0).set(sqx).f32.const(0).set(sq2);
      for (let k = 0; k < groups; k++) {
        f.get(idx[k]!).i32.const(1).i32.shl().i32.load16U(CODE).set(code);
        f.get(k === 0 ? xg0 : xg1).set(xgk);
        for (let jj = 0; jj < 8; jj++) {
          const o = 4 * (8 * k + jj);
          f.get(wb).f32.load(o).set(w);
          f.get(code).i32.const(2 * jj).i32.shrU().i32.const(3).i32.and().i32.const(2).i32.shl().get(xgk).i32.add().f32.load().set(q);
          f.get(sqx).get(w).get(q).f32.mul().get(xb).f32.load(o).f32.mul().f32.add().set(sqx);
          f.get(sq2).get(w).get(q).f32.mul().get(q).f32.mul().f32.add().set(sq2);
        }
      }
      f.get(sqx).f32.const(0).f32.gt().get(sq2).f32.const(0).f32.gt().i32.and().if(() => f.get(sqx).get(sq2).f32.div().set(this.scale));
    });
  }

  /** push nearest_int(0.5·(id·s − 1)) clamped to [0, 7] (MAX(0, MIN(7, l))) for f32 locals id, s */
  level3(id: Fl, s: () => void): void {
    const { f, t } = this;
    f.f32.const(0.5).get(id);
    s();
    f.f32.mul().f32.const(1).f32.sub().f32.mul().f32.const(12582912).f32.add().i32.reinterpretF32();
    f.i32.const(0x7fffff).i32.and().i32.const(0x400000).i32.sub().set(t);
    f.i32.const(7).get(t).get(t).i32.const(7).i32.gtS().select().set(t);
    f.i32.const(0).get(t).get(t).i32.const(0).i32.ltS().select();
  }
}

/** the loop over the nb blocks of a call: body(b, bail) with `bail` leaving block b (flag it first) */
function forBlocks(f: Fn, nb: I, b: I, body: (bail: Label) => void): void {
  f.i32.const(0).set(b);
  f.block((done) =>
    f.loop((top) => {
      f.get(b).get(nb).i32.geS().brIf(done);
      f.get(b).i32.const(2).i32.shl().i32.const(0).i32.store(FLAG);
      f.block((bail) => body(bail));
      f.get(b).i32.const(1).i32.add().set(b).br(top);
    }),
  );
}

function buildModule(): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  const build = addBuildList(mod);
  const bn = addBestNeighbour(mod, build as unknown as FuncBuilder);
  addIq1s(mod, bn);
  addIq1m(mod, bn);
  return mod.bytes();
}

function addIq1s(mod: ModuleBuilder, bn: FuncBuilder): void {
  const f = mod.func("qs", { nb: "i32" }, "i32");
  const bs = 32;
  const c = new Common(f, bs);
  const b = f.i32("b"), nbad = f.i32("nbad"), xb0 = f.i32("xb0"), qb0 = f.i32("qb0"), o = f.i32("o"), ib = f.i32("ib");
  const xb = f.i32("xb"), qb = f.i32("qb"), wb = f.i32("wb"), i1 = f.i32("i1"), i2 = f.i32("i2"), j = f.i32("j"), i = f.i32("i");
  const shift = f.i32("shift"), flip = f.i32("flip"), xg = f.i32("xg"), h = f.i32("h"), u16 = f.i32("u16"), hb = f.i32("hb");
  const idx = f.locals("i32", 4, "index");
  const sx = f.f32("sx"), sw = f.f32("sw"), ax = f.f32("ax"), aw = f.f32("aw"), maxScale = f.f32("maxScale"), d = f.f32("d"), id = f.f32("id");
  const lx = f.f32("lx"), l2 = f.f32("l2");
  const SXN = f.v128("SXN"), SWN = f.v128("SWN"), SX1 = f.v128("SX1"), SW1 = f.v128("SW1");
  const AXP = f.v128("AXP"), AWP = f.v128("AWP"), AXM = f.v128("AXM"), AWM = f.v128("AWM");
  const BX = f.v128("BX"), CX = f.v128("CX"), BW = f.v128("BW"), CW = f.v128("CW");
  const QXP = f.v128("QXP"), Q2P = f.v128("Q2P"), QXM = f.v128("QXM"), Q2M = f.v128("Q2M"), BEST = f.v128("BESTV");
  const toF16 = f16Emitter(f);
  // pads: sumx 0, sumw NaN (lanes past i2 = 32 fail sumq2 > 0)
  for (let k = 33; k < 36; k++) f.i32.const(0).f32.const(0).f32.store(SX + 4 * k).i32.const(0).f32.const(NaN).f32.store(SW + 4 * k);
  f.i32.const(0).set(nbad);
  f.i32.const(W).set(wb);
  forBlocks(f, f.p.nb, b, (bail) => {
    const fail = (): void => {
      f.get(b).i32.const(2).i32.shl().i32.const(1).i32.store(FLAG);
      f.get(nbad).i32.const(1).i32.add().set(nbad).br(bail);
    };
    f.get(b).i32.const(10).i32.shl().tee(xb0).i32.const(QW).i32.add().set(qb0);
    f.get(b).i32.const(50).i32.mul().i32.const(OUT).i32.add().set(o);
    c.nonFinite(xb0, QK);
    c.nonFinite(qb0, QK);
    f.i32.or().if(fail);
    for (let k = 0; k < 3; k++) f.get(o).i32.const(0).i32x4.splat().v128.store(16 * k);
    f.get(o).i32.const(0).i32.store16(48);
    c.sigma(xb0);
    f.f32.const(0).set(maxScale);
    forRange(f, ib, 0, 8, (cont) => {
      const skip = (): void => {
        f.get(ib).i32.const(2).i32.shl().tee(i).f32.const(0).f32.store(SC);
        f.get(i).i32.const(1).i32.store(SH);
        f.br(cont);
      };
      f.get(ib).i32.const(7).i32.shl().tee(i).get(xb0).i32.add().set(xb);
      f.get(i).get(qb0).i32.add().set(qb);
      c.weightsAndMax(xb, qb, wb, null);
      f.get(c.max).f32.const(EPS_S).f32.lt().if(skip);
      c.sort(xb);
      // sumx[j+1] = sumx[j] + w[i]·x[i], sumw[j+1] = sumw[j] + w[i], i = IDX[j]
      f.f32.const(0).set(sx).f32.const(0).set(sw);
      f.i32.const(0).f32.const(0).f32.store(SX).i32.const(0).f32.const(0).f32.store(SW);
      forRange(f, j, 0, bs, () => {
        f.get(j).i32.const(2).i32.shl().i32.load(IDX).i32.const(2).i32.shl().set(i);
        f.get(sx).get(wb).get(i).i32.add().f32.load().get(xb).get(i).i32.add().f32.load().f32.mul().f32.add().set(sx);
        f.get(sw).get(wb).get(i).i32.add().f32.load().f32.add().set(sw);
        f.get(j).i32.const(2).i32.shl().tee(i).get(sx).f32.store(SX + 4);
        f.get(i).get(sw).f32.store(SW + 4);
      });
      f.get(sx).f32x4.splat().set(SXN).get(sw).f32x4.splat().set(SWN);
      // the i2-only terms of the scan, by i2 (the pads give NaN in CWP / CWM)
      for (let v = 0; v < 9; v++) {
        f.i32.const(0).get(SXN).i32.const(0).v128.load(SX + 16 * v).f32x4.sub().tee(CX).f32.const(XP[2]!).f32x4.splat().f32x4.mul().v128.store(CXP + 16 * v);
        f.i32.const(0).get(CX).f32.const(XM[2]!).f32x4.splat().f32x4.mul().v128.store(CXM + 16 * v);
        f.i32.const(0).get(SWN).i32.const(0).v128.load(SW + 16 * v).f32x4.sub().tee(CW).f32.const(XP[2]!).f32x4.splat().f32x4.mul().f32.const(XP[2]!).f32x4.splat().f32x4.mul().v128.store(CWP + 16 * v);
        f.i32.const(0).get(CW).f32.const(XM[2]!).f32x4.splat().f32x4.mul().f32.const(XM[2]!).f32x4.splat().f32x4.mul().v128.store(CWM + 16 * v);
      }
      f.f32.const(-FLT_MAX).set(c.best).get(c.max).set(c.scale);
      f.i32.const(-1).set(c.besti1).i32.const(-1).set(c.besti2).i32.const(0).set(shift);
      forRange(f, i1, 0, bs + 1, () => {
        // sumx[0] = sumw[0] = 0: sumx[i1] − sumx[0] is sumx[i1] itself (x − 0 = x)
        f.get(i1).i32.const(2).i32.shl().tee(i).f32.load(SX).tee(ax).f32x4.splat().set(SX1);
        f.get(i).f32.load(SW).tee(aw).f32x4.splat().set(SW1);
        f.get(ax).f32.const(XP[0]!).f32.mul().f32x4.splat().set(AXP);
        f.get(aw).f32.const(XP[0]!).f32.mul().f32.const(XP[0]!).f32.mul().f32x4.splat().set(AWP);
        f.get(ax).f32.const(XM[0]!).f32.mul().f32x4.splat().set(AXM);
        f.get(aw).f32.const(XM[0]!).f32.mul().f32.const(XM[0]!).f32.mul().f32x4.splat().set(AWM);
        f.get(i1).set(i2);
        f.loop((top) => {
          // bx·x_m[1] = −(bx·x_p[1]) and (bw·x_m[1])·x_m[1] = (bw·x_p[1])·x_p[1] exactly (x_m[1] = −x_p[1]:
          // round to nearest even is symmetric), and a + (−b) is a − b
          f.get(i2).i32.const(2).i32.shl().tee(i).v128.load(SX).get(SX1).f32x4.sub().f32.const(XP[1]!).f32x4.splat().f32x4.mul().set(BX);
          f.get(i).v128.load(SW).get(SW1).f32x4.sub().f32.const(XP[1]!).f32x4.splat().f32x4.mul().f32.const(XP[1]!).f32x4.splat().f32x4.mul().set(BW);
          f.get(AXP).get(BX).f32x4.add().get(i).v128.load(CXP).f32x4.add().set(QXP);
          f.get(AWP).get(BW).f32x4.add().get(i).v128.load(CWP).f32x4.add().set(Q2P);
          f.get(AXM).get(BX).f32x4.sub().get(i).v128.load(CXM).f32x4.add().set(QXM);
          f.get(AWM).get(BW).f32x4.add().get(i).v128.load(CWM).f32x4.add().set(Q2M);
          f.get(c.best).f32x4.splat().set(BEST);
          // a lane can pass only if sumqx² > best·sumq2 (the sumq2 > 0 test is left to the lane decisions)
          const pass = (QX: V, Q2: V): void => {
            f.get(QX).get(QX).f32x4.mul().get(BEST).get(Q2).f32x4.mul().f32x4.gt();
          };
          pass(QXP, Q2P);
          pass(QXM, Q2M);
          f.v128.or().v128.anyTrue().if(() => {
            for (let lane = 0; lane < 4; lane++) {
              for (const [QX, Q2, sh] of [[QXP, Q2P, 1], [QXM, Q2M, -1]] as const) {
                f.get(QX).f32x4.extractLane(lane).set(lx).get(Q2).f32x4.extractLane(lane).set(l2);
                f.get(l2).f32.const(0).f32.gt().get(lx).get(lx).f32.mul().get(c.best).get(l2).f32.mul().f32.gt().i32.and().if(() => {
                  f.get(lx).get(l2).f32.div().tee(c.scale).get(lx).f32.mul().set(c.best);
                  f.get(i1).set(c.besti1).get(i2).i32.const(lane).i32.add().set(c.besti2).i32.const(sh).set(shift);
                });
              }
            }
          });
          f.get(i2).i32.const(4).i32.add().tee(i2).i32.const(bs).i32.leS().brIf(top);
        });
      });
      f.get(c.besti1).i32.const(0).i32.ltS().get(c.besti2).i32.const(0).i32.ltS().i32.or().get(shift).i32.eqz().i32.or().if(skip);
      f.get(c.scale).f32.const(0).f32.lt().tee(flip).if(() => {
        f.get(c.scale).f32.neg().set(c.scale);
        f.i32.const(0).get(shift).i32.sub().set(shift);
      });
      c.assignLevels(flip);
      f.i32.const(CT).i32.const(CT + 16).get(shift).i32.const(1).i32.eq().select().set(xg);
      c.placeOnGrid(bn, xb, wb, xg, xg, idx, fail);
      f.i32.const(0).set(h);
      for (let k = 0; k < 4; k++) {
        f.get(o).get(ib).i32.const(2).i32.shl().i32.add().get(idx[k]!).i32.store8(2 + k);
        f.get(h).get(idx[k]!).i32.const(8).i32.shrU().i32.const(3 * k).i32.shl().i32.or().set(h);
      }
      f.get(o).get(ib).i32.const(1).i32.shl().i32.add().get(h).i32.store16(34);
      f.get(ib).i32.const(2).i32.shl().tee(i).get(c.scale).f32.store(SC);
      f.get(i).get(shift).i32.store(SH);
      f.get(maxScale).get(c.scale).get(maxScale).get(c.scale).f32.gt().select().set(maxScale);
    });
    // a non-finite max_scale: iq1.ts decides
    f.get(maxScale).get(maxScale).f32.sub().get(maxScale).get(maxScale).f32.sub().f32.ne().if(fail);
    f.get(maxScale).f32.const(0).f32.ne().if(() => {
      f.get(maxScale).f32.const(15).f32.div().tee(d).f32.const(1.125).f32.mul().i32.reinterpretF32().set(u16);
      toF16(u16, hb);
      f.get(o).get(hb).i32.store16();
      f.f32.const(1).get(d).f32.div().set(id);
      forRange(f, ib, 0, 8, () => {
        c.level3(id, () => f.get(ib).i32.const(2).i32.shl().f32.load(SC));
        f.get(ib).i32.const(2).i32.shl().i32.load(SH).i32.const(-1).i32.eq().i32.const(3).i32.shl().i32.or().set(h);
        f.get(o).get(ib).i32.const(1).i32.shl().i32.add().tee(i).get(i).i32.load16U(34).get(h).i32.const(12).i32.shl().i32.or().i32.store16(34);
      });
    });
  });
  f.get(nbad);
}

function addIq1m(mod: ModuleBuilder, bn: FuncBuilder): void {
  const f = mod.func("qm", { nb: "i32", hasQw: "i32" }, "i32");
  const bs = 16;
  const c = new Common(f, bs);
  const b = f.i32("b"), nbad = f.i32("nbad"), xb0 = f.i32("xb0"), qb0 = f.i32("qb0"), o = f.i32("o"), ib = f.i32("ib");
  const xb = f.i32("xb"), qb = f.i32("qb"), wb = f.i32("wb"), i1 = f.i32("i1"), i2 = f.i32("i2"), j = f.i32("j"), i = f.i32("i");
  const bestK = f.i32("bestK"), flip = f.i32("flip"), xg0 = f.i32("xg0"), xg1 = f.i32("xg1"), u16 = f.i32("u16"), hb = f.i32("hb");
  const a = f.i32("a"), e = f.i32("e"), l = f.i32("l"), sh = f.i32("sh"), qh = f.i32("qh"), g = f.i32("g"), code = f.i32("code"), rowp = f.i32("rowp");
  const idx = f.locals("i32", 2, "index"), bad = f.i32("bad");
  const w = f.f32("w"), xv = f.f32("xval"), wp = f.f32("wp"), wm = f.f32("wm"), maxScale = f.f32("maxScale"), d = f.f32("d"), id = f.f32("id");
  const lx = f.f32("lx"), l2 = f.f32("l2"), fx = f.f32("fx"), f2 = f.f32("f2"), q = f.f32("q"), lf = f.f32("lf");
  const MASK = f.v128("mask"), AX = f.v128("AX"), AQ = f.v128("AQ"), BX = f.v128("BX"), BQ = f.v128("BQ"), CX = f.v128("CX"), CQ = f.v128("CQ");
  const toF16 = f16Emitter(f);
  f.i32.const(0).set(nbad);
  forBlocks(f, f.p.nb, b, (bail) => {
    const fail = (): void => {
      f.get(b).i32.const(2).i32.shl().i32.const(1).i32.store(FLAG);
      f.get(nbad).i32.const(1).i32.add().set(nbad).br(bail);
    };
    f.get(b).i32.const(10).i32.shl().tee(xb0).i32.const(QW).i32.add().set(qb0);
    f.get(b).i32.const(56).i32.mul().i32.const(OUT).i32.add().set(o);
    c.nonFinite(xb0, QK);
    f.set(bad);
    f.get(f.p.hasQw).if(() => {
      c.nonFinite(qb0, QK);
      f.get(bad).i32.or().set(bad);
    });
    f.get(bad).if(fail);
    for (let k = 0; k < 3; k++) f.get(o).i32.const(0).i32x4.splat().v128.store(16 * k);
    f.get(o).i32.const(0).i32.store(48).get(o).i32.const(0).i32.store(52);
    c.sigma(xb0);
    f.f32.const(0).set(maxScale);
    forRange(f, ib, 0, 16, (cont) => {
      const skip = (): void => {
        f.get(ib).i32.const(2).i32.shl().tee(i).f32.const(0).f32.store(SC);
        f.get(i).i32.const(0).i32.store(SH);
        f.br(cont);
      };
      f.get(ib).i32.const(6).i32.shl().tee(i).get(xb0).i32.add().set(xb);
      f.get(i).get(qb0).i32.add().set(qb);
      f.get(i).i32.const(W).i32.add().set(wb);
      c.weightsAndMax(xb, qb, wb, f.p.hasQw);
      f.get(c.max).f32.const(EPS_M).f32.lt().if(skip);
      c.sort(xb);
      // terms by sorted position j and level l: lanes (p, p, m, m) for i < 8, (p, m, p, m) otherwise
      forRange(f, j, 0, bs, () => {
        f.get(j).i32.const(2).i32.shl().i32.load(IDX).tee(i).i32.const(2).i32.shl().tee(a).get(wb).i32.add().f32.load().set(w);
        f.get(a).get(xb).i32.add().f32.load().set(xv);
        f.i32x4.const([0, -1, 0, -1]).i32.const(0).get(i).i32.const(8).i32.ltS().i32.sub().i32x4.splat().i32x4.const([0, -1, -1, 0]).v128.and().v128.xor().set(MASK);
        f.get(j).i32.const(48).i32.mul().set(e);
        for (let lv = 0; lv < 3; lv++) {
          f.get(w).f32.const(XP[lv]!).f32.mul().set(wp).get(w).f32.const(XM[lv]!).f32.mul().set(wm);
          f.get(e).get(wm).get(xv).f32.mul().f32x4.splat().get(wp).get(xv).f32.mul().f32x4.splat().get(MASK).v128.bitselect().v128.store(TX + 16 * lv);
          f.get(e).get(wm).f32.const(XM[lv]!).f32.mul().f32x4.splat().get(wp).f32.const(XP[lv]!).f32.mul().f32x4.splat().get(MASK).v128.bitselect().v128.store(TQ + 16 * lv);
        }
      });
      f.f32.const(-FLT_MAX).set(c.best).get(c.max).set(c.scale);
      f.i32.const(-1).set(c.besti1).i32.const(-1).set(c.besti2).i32.const(-1).set(bestK);
      const zero = (v: V): void => void f.i32.const(0).i32x4.splat().set(v);
      zero(AX);
      zero(AQ);
      forRange(f, i1, 0, bs + 1, () => {
        f.get(AX).set(BX).get(AQ).set(BQ);
        f.get(i1).set(i2);
        f.loop((top) => {
          // the level-2 part j = i2 … 15 on top of (B)
          f.get(BX).set(CX).get(BQ).set(CQ);
          f.get(i2).i32.const(48).i32.mul().set(e);
          f.block((done) =>
            f.loop((next) => {
              f.get(e).i32.const(48 * bs).i32.geS().brIf(done);
              f.get(CX).get(e).v128.load(TX + 32).f32x4.add().set(CX);
              f.get(CQ).get(e).v128.load(TQ + 32).f32x4.add().set(CQ);
              f.get(e).i32.const(48).i32.add().set(e).br(next);
            }),
          );
          f.get(CQ).f32.const(0).f32x4.splat().f32x4.gt().get(CX).get(CX).f32x4.mul().get(c.best).f32x4.splat().get(CQ).f32x4.mul().f32x4.gt().v128.and();
          f.v128.anyTrue().if(() => {
            for (let k = 0; k < 4; k++) {
              f.get(CX).f32x4.extractLane(k).set(lx).get(CQ).f32x4.extractLane(k).set(l2);
              f.get(l2).f32.const(0).f32.gt().get(lx).get(lx).f32.mul().get(c.best).get(l2).f32.mul().f32.gt().i32.and().if(() => {
                f.get(lx).get(l2).f32.div().tee(c.scale).get(lx).f32.mul().set(c.best);
                f.get(i1).set(c.besti1).get(i2).set(c.besti2).i32.const(k).set(bestK);
              });
            }
          });
          // (B) += level-1 term of position i2 (row 16 is padding, used only after the last i2)
          f.get(i2).i32.const(48).i32.mul().tee(e).v128.load(TX + 16).get(BX).f32x4.add().set(BX);
          f.get(e).v128.load(TQ + 16).get(BQ).f32x4.add().set(BQ);
          f.get(i2).i32.const(1).i32.add().tee(i2).i32.const(bs).i32.leS().brIf(top);
        });
        f.get(i1).i32.const(48).i32.mul().tee(e).v128.load(TX).get(AX).f32x4.add().set(AX);
        f.get(e).v128.load(TQ).get(AQ).f32x4.add().set(AQ);
      });
      f.get(c.besti1).i32.const(0).i32.ltS().get(c.besti2).i32.const(0).i32.ltS().i32.or().get(bestK).i32.const(0).i32.ltS().i32.or().if(skip);
      f.get(c.scale).f32.const(0).f32.lt().tee(flip).if(() => {
        f.get(c.scale).f32.neg().set(c.scale);
        f.i32.const(3).get(bestK).i32.sub().set(bestK);
      });
      c.assignLevels(flip);
      f.i32.const(CT).i32.const(CT + 16).get(bestK).i32.const(2).i32.ltS().select().set(xg0);
      f.i32.const(CT).i32.const(CT + 16).get(bestK).i32.const(1).i32.and().i32.eqz().select().set(xg1);
      c.placeOnGrid(bn, xb, wb, xg0, xg1, idx, fail);
      f.get(o).get(ib).i32.const(1).i32.shl().i32.add().tee(a).get(idx[0]!).i32.store8(0);
      f.get(a).get(idx[1]!).i32.store8(1);
      f.get(o).get(ib).i32.add().get(idx[0]!).i32.const(8).i32.shrU().get(idx[1]!).i32.const(8).i32.shrU().i32.const(4).i32.shl().i32.or().i32.store8(32);
      f.get(ib).i32.const(2).i32.shl().tee(i).get(c.scale).f32.store(SC);
      f.get(i).get(bestK).i32.store(SH);
      f.get(maxScale).get(c.scale).get(maxScale).get(c.scale).f32.gt().select().set(maxScale);
    });
    f.get(maxScale).get(maxScale).f32.sub().get(maxScale).get(maxScale).f32.sub().f32.ne().if(fail);
    f.get(maxScale).f32.const(0).f32.ne().if(() => {
      for (let k = 0; k < 4; k++) f.i32.const(0).i32.const(0).i32.store(SCW + 4 * k);
      f.get(maxScale).f32.const(15).f32.div().set(d);
      f.f32.const(1).get(d).f32.div().set(id);
      f.f32.const(0).set(fx).f32.const(0).set(f2);
      forRange(f, ib, 0, 16, () => {
        c.level3(id, () => f.get(ib).i32.const(2).i32.shl().f32.load(SC));
        f.set(l);
        // sc[ib/4] |= l << 3·(ib%4)
        f.get(ib).i32.const(2).i32.shrU().i32.const(2).i32.shl().tee(a);
        f.get(a).i32.load(SCW).get(l).get(ib).i32.const(3).i32.and().i32.const(3).i32.mul().i32.shl().i32.or().i32.store(SCW);
        // qh[ib] |= masks[shift] (0x00, 0x80, 0x08, 0x88)
        f.get(ib).i32.const(2).i32.shl().i32.load(SH).set(sh);
        f.get(o).get(ib).i32.add().tee(a).get(a).i32.load8U(32);
        f.get(sh).i32.const(1).i32.and().i32.const(7).i32.shl().i32.or().get(sh).i32.const(2).i32.and().i32.const(2).i32.shl().i32.or().tee(qh).i32.store8(32);
        f.get(l).i32.const(1).i32.shl().i32.const(1).i32.add().f32.convertI32S().set(lf);
        f.get(ib).i32.const(6).i32.shl().tee(i).get(xb0).i32.add().set(xb);
        f.get(i).i32.const(W).i32.add().set(wb);
        for (let k = 0; k < 2; k++) {
          if (k === 0) f.i32.const(CT).i32.const(CT + 16).get(sh).i32.const(2).i32.ltS().select().set(rowp);
          else f.i32.const(CT).i32.const(CT + 16).get(sh).i32.const(1).i32.and().i32.eqz().select().set(rowp);
          f.get(o).get(ib).i32.const(1).i32.shl().i32.add().i32.load8U(k).get(qh).i32.const(8 - 4 * k).i32.shl().i32.const(0x700).i32.and().i32.add().set(g);
          f.get(g).i32.const(1).i32.shl().i32.load16U(CODE).set(code);
          for (let jj = 0; jj < 8; jj++) {
            const off = 4 * (8 * k + jj);
            f.get(wb).f32.load(off).set(w);
            f.get(code).i32.const(2 * jj).i32.shrU().i32.const(3).i32.and().i32.const(2).i32.shl().get(rowp).i32.add().f32.load().get(lf).f32.mul().set(q);
            f.get(fx).get(w).get(q).f32.mul().get(xb).f32.load(off).f32.mul().f32.add().set(fx);
            f.get(f2).get(w).get(q).f32.mul().get(q).f32.mul().f32.add().set(f2);
          }
        }
      });
      f.get(f2).f32.const(0).f32.gt().if(() => f.get(fx).get(f2).f32.div().set(d));
      f.get(d).f32.const(1.1125).f32.mul().i32.reinterpretF32().set(u16);
      toF16(u16, hb);
      const masks = [0x000f, 0x00f0, 0x0f00, 0xf000], shifts = [12, 8, 4, 0];
      for (let k = 0; k < 4; k++) {
        f.get(o).i32.const(0).i32.load(SCW + 4 * k).get(hb).i32.const(masks[k]!).i32.and().i32.const(shifts[k]!).i32.shl().i32.or().i32.store16(48 + 2 * k);
      }
    });
  });
  f.get(nbad);
}

/** What iq1.ts drives. */
export interface Iq1Kernel {
  /** quantize nb (≤ IQ1_BLOCKS) IQ1_S blocks from x / qw into out; returns how many are flagged */
  s(nb: number): number;
  /** the same for IQ1_M (hasQw 0: weights x²) */
  m(nb: number, hasQw: number): number;
  readonly x: Float32Array;
  readonly qw: Float32Array;
  readonly out: Uint8Array;
  readonly flags: Int32Array;
  /**
   * The module's neighbour list of the off-grid u, built if needed (for the tests): the grid indices
   * (padding included), the count before padding, and each entry's LB bytes (4 · level per coordinate,
   * 8 per entry) read back from the transposed side pool; undefined when the pool is full.
   */
  list(u: number): { entries: Uint16Array; count: number; levels4: Uint8Array } | undefined;
}

/** The lazily instantiated kernel over the lattice (instantiate.ts's policy); undefined = TypeScript path. */
export function iq1Kernel(lat: () => Lattice): LazyKernel<Iq1Kernel> {
  return lazyKernel("iq1", buildModule, (e, mem): Iq1Kernel => {
    const L = lat();
    if (L.map.length !== KMAP || L.size !== NGRID) throw new Error("IQ1 kernel: unexpected lattice");
    new Int32Array(mem.buffer, MAP, KMAP).set(L.map);
    const code = new Uint16Array(mem.buffer, CODE, NGRID);
    for (let g = 0; g < NGRID; g++) {
      let c = 0;
      for (let k = 0; k < 8; k++) c |= ((L.q[8 * g + k]! - 1) >> 1) << (2 * k);
      code[g] = c;
    }
    const lb = new Uint8Array(mem.buffer, LB, 8 * NGRID);
    for (let g = 0; g < 8 * NGRID; g++) lb[g] = 4 * ((L.q[g]! - 1) >> 1);
    new Float32Array(mem.buffer, CT, 8).set([...XP, 0, ...XM, 0]);
    new Int32Array(mem.buffer, POOLP, 1)[0] = POOL;
    return {
      s: e["qs"] as (nb: number) => number,
      m: e["qm"] as (nb: number, hasQw: number) => number,
      x: new Float32Array(mem.buffer, X, IQ1_BLOCKS * QK),
      qw: new Float32Array(mem.buffer, QW, IQ1_BLOCKS * QK),
      out: new Uint8Array(mem.buffer, OUT, IQ1_BLOCKS * 56),
      flags: new Int32Array(mem.buffer, FLAG, IQ1_BLOCKS),
      list(u) {
        const i32 = new Int32Array(mem.buffer);
        const u8 = new Uint8Array(mem.buffer);
        let p = i32[NBP / 4 + u]!;
        if (p === 0) p = (e["nb"] as (u: number) => number)(u);
        if (p === 0) return undefined;
        const padded = i32[p / 4]!;
        const entries = new Uint16Array(padded);
        const levels4 = new Uint8Array(8 * padded);
        for (let k = 0; k < padded; k++) {
          const a = p + 16 + 4 * k;
          entries[k] = i32[a / 4]! & 0xffff;
          const b = B_OFF + 2 * (a & ~15) + ((a >> 2) & 3);
          for (let c = 0; c < 8; c++) levels4[8 * k + c] = u8[b + 4 * c]!;
        }
        return { entries, count: i32[p / 4 + 1]!, levels4 };
      },
    };
  });
}
