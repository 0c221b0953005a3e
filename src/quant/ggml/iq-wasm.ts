/**
 * WebAssembly kernel of the IQ2_XXS / IQ2_XS / IQ2_S / IQ3_XXS / IQ3_S sub-block search, one module
 * per type generated from the same code and parametrised by the type's data (IqGroups of
 * iq-common.ts plus the few per-type rules below). It does, per 256-block, what the TypeScript
 * reference does before packing (iq2.ts / iq3.ts; ggml-quants.c quantize_row_iq2_xxs_impl,
 * _iq2_xs_impl, _iq2_s_impl, _iq3_xxs_impl, _iq3_s_impl):
 *
 * - σ² = Σx²/256 (or 2Σx²/256), the weights qw·√(σ² + x²) (or σ²/4 + x², or x², without an importance
 *   vector), √weight, |x| with the sign bits of each 8-group and, where the type keeps 7 sign bits, the
 *   parity flip of the element of least w·x²;
 * - IQ2_XXS's make_qp_quants scale (the start scale and the divisor of the trial scales);
 * - the trial-scale scan (searchIqScale): each trial rounds the magnitudes to levels group by group
 *   (4 lanes at a time: elementwise, so exact), looks the packed group up in the grid map and moves an
 *   off-grid group to its best neighbour (iq2_find_best_neighbour / iq3_find_best_neighbour), then
 *   the sequential float sums Σw·x·q, Σw·q² and the acceptance test; then the re-quantisation;
 * - the sign flip of a negative scale and the grid index of every group.
 *
 * The neighbour search runs four neighbours per vector: lane j of a record holds neighbour 4r + j, so
 * each lane's Σ w·(scale·q − x)² is the C loop's sequential float sum; the lane minima (strict <, so
 * the earliest) are then reduced by (distance, position), which is the C scan's first minimum. For
 * IQ2 (coordinates q ∈ {1, 3, 5, 7}) the four possible terms w·(scale·q − x)² of each coordinate are
 * computed once per call, with the C operations, and a record picks each lane's term by a byte
 * swizzle (see tableRecords). The neighbour lists are those of
 * iq-common.ts's Lattice (ggml's iq2xs_init_impl / iq3xs_init_impl lists, same order), built for every
 * level vector the rounding can produce and copied into the module's memory once, when the kernel is
 * instantiated.
 *
 * Every float operation is one IEEE binary32 wasm operation in the C order (the TypeScript reference's
 * Math.fround sequence, itself checked against ggml_quantize_chunk). q(nb, hasQw, reset) leaves per
 * block the sub-block scales, a "skipped" flag per sub-block (ggml's `continue` for an all-small
 * sub-block), the grid index of every group and the sign byte of every 8-group; the caller packs them
 * (iq2.ts / iq3.ts, the same code as the TypeScript path). A block holding a non-finite value or
 * importance, or whose search found no neighbour / a point off the grid (ggml aborts), is flagged
 * and left to the TypeScript path, which reproduces ggml's behaviour there (or throws as it does).
 */
import { ModuleBuilder } from "../wasm/builder.js";
import type { FuncBuilder, Local } from "../wasm/builder.js";
import { lazyKernel } from "../wasm/instantiate.js";
import type { LazyKernel } from "../wasm/instantiate.js";
import { checkArgs } from "./iq-common.js";
import { nearestClamp, nearestConsts } from "./kquant16-wasm.js";
import type { IqGroups } from "./iq-common.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = FuncBuilder<any>;
type V = Local<"v128">;
type I = Local<"i32">;

const QK = 256;
/** 256-blocks per kernel call */
export const IQ_CHUNK = 16;
const FLT_MAX = 3.4028234663852886e38;

/** What distinguishes the five types beyond their IqGroups. */
export interface IqKernelSpec {
  readonly name: string;
  readonly g: IqGroups;
  /** the type stores 7 sign bits per 8-group (parity flip) */
  readonly parity: boolean;
  /** a sub-block is skipped when max < eps, or when max == 0 with eps = 0 (IQ3_S's `if (!max)`) */
  readonly eps: number;
  /** the weights without an importance vector: σ²/4 + x² (IQ2_S), x² (IQ3_*), none (imatrix required) */
  readonly noQw: "s4x2" | "x2" | "none";
  /** σ² = 2Σx²/256 (IQ2_S, IQ3_*) rather than Σx²/256 */
  readonly sigma2Two: boolean;
  /**
   * IQ2_XXS: make_qp_quants(32, kMaxQ + 1) gives the start scale, the trial divisor is scale·kMaxQ,
   * and the levels are not cleared per sub-block (a sub-block where no trial is accepted keeps the
   * previous one's levels, as the TypeScript path's scratch does within one call); the other types
   * clear them (L.fill(0)).
   */
  readonly qp: boolean;
  readonly qpEps?: number;
  readonly qpStep?: number;
}

/** The per-block results the packers read (views of the kernel's memory, or the TypeScript path's arrays). */
export interface IqBlockResults {
  /** scale of sub-block j of block b at 16b + j (f32) */
  readonly scales: Float32Array;
  /** 1 when sub-block j was skipped (ggml's `continue`), at 16b + j */
  readonly skip: Uint8Array;
  /** grid index of group j at 64b + j */
  readonly gi: Uint16Array;
  /** sign byte of 8-group j at 32b + j (after the negative-scale flip) */
  readonly signs: Uint8Array;
}

export interface IqKernel extends IqBlockResults {
  /** quantizes nb blocks of `x` (and `qw`, one 256-slice per block, or null) starting at block b0 into the result arrays */
  run(x: Float32Array, xo: number, qw: Float32Array | null, nb: number, qwOf: (b: number) => number, first: boolean): void;
  /** 1 for a block the TypeScript path must do */
  readonly flags: Uint8Array;
}

interface Layout {
  IN: number; QW: number; RS: number; RSK: number; RGI: number; RSG: number; FLG: number;
  W: number; WA: number; X: number; WX: number; LA: number; LB: number; LQ: number; LV: number;
  ONG: number; ONGA: number; SG: number; ERR: number;
  LVL: number; MAP: number; NBO: number; LISTS: number; END: number;
}

const up16 = (n: number): number => (n + 15) & ~15;

/** Every level vector the rounding can produce (levels 0 … kMaxQ − 1) that is off the grid. */
function offGridVectors(g: IqGroups): number[] {
  const { lat, kMaxQ, bits } = g;
  const out: number[] = [];
  const total = kMaxQ ** lat.dim;
  for (let c = 0; c < total; c++) {
    let u = 0;
    let r = c;
    for (let i = 0; i < lat.dim; i++) {
      u |= (r % kMaxQ) << (bits * i);
      r = Math.floor(r / kMaxQ);
    }
    if (lat.map[u]! < 0) out.push(u);
  }
  return out;
}

function layoutFor(spec: IqKernelSpec, listBytes: number): Layout {
  const { lat } = spec.g;
  let a = 0;
  const take = (n: number): number => {
    const r = a;
    a = up16(a + n);
    return r;
  };
  const IN = take(IQ_CHUNK * QK * 4), QW = take(IQ_CHUNK * QK * 4);
  const RS = take(IQ_CHUNK * 64), RSK = take(IQ_CHUNK * 16), RGI = take(IQ_CHUNK * 128), RSG = take(IQ_CHUNK * 32), FLG = take(IQ_CHUNK);
  const W = take(128), WA = take(128), X = take(128), WX = take(128), LA = take(128), LB = take(128), LQ = take(128), LV = take(128);
  const ONG = take(16), ONGA = take(16), SG = take(16), ERR = take(16);
  const LVL = take(lat.size * lat.dim), MAP = take(lat.map.length * 2), NBO = take(lat.map.length * 4), LISTS = take(listBytes);
  return { IN, QW, RS, RSK, RGI, RSG, FLG, W, WA, X, WX, LA, LB, LQ, LV, ONG, ONGA, SG, ERR, LVL, MAP, NBO, LISTS, END: a };
}

/**
 * With 2-bit levels (IQ2) a coordinate is one of q = 1, 3, 5, 7: a record is 32 bytes, byte 4i + j
 * holding 4l for coordinate i of lane j (the byte offset of its level's term among the four
 * precomputed ones), the grid indices follow the records as u16, and padding lanes repeat the list's
 * last neighbour (an equal distance at a later position never wins). The lists are touched at random
 * and IQ2_XS's would be ~7 MB as f32 records: compact ones keep the search out of main memory.
 * Otherwise (IQ3, 8 levels) a record is dim f32x4 of coordinates (padding lanes NaN) and the 4 grid
 * indices as i32.
 */
const tableRecords = (g: IqGroups): boolean => g.bits === 2;

/** bytes of one 4-neighbour record: dim f32x4 of coordinates, then the 4 grid indices (i32) */
const recBytes = (dim: number): number => 16 * dim + 16;
/** bytes of one list: its record count (16 bytes), the records, and with tableRecords the u16 grid indices after them */
const listSize = (dim: number, table: boolean, len: number): number => {
  const recs = Math.ceil(len / 4);
  return table ? 16 + 32 * recs + up16(8 * recs) : 16 + recs * recBytes(dim);
};

/** the f32 on the stack → ggml's nearest_int as i32 (float add of 1.5·2^23, mantissa bits − 2^22) */
function nearest(f: Fn): void {
  f.f32.const(12582912).f32.add().i32.reinterpretF32().i32.const(0x7fffff).i32.and().i32.const(0x400000).i32.sub();
}

const sp = (v: number): [number, number, number, number] => [v, v, v, v];

function buildModule(spec: IqKernelSpec, lists: Map<number, Uint16Array>): { bytes: Uint8Array<ArrayBuffer>; L: Layout } {
  const { g } = spec;
  const { lat, n, kMaxQ, bits, range, step, requant, initOnGrid } = g;
  const dim = lat.dim;
  const groups = n / dim; // groups per sub-block
  const nsub = QK / n;
  const track = requant !== "always";
  const TABLE = tableRecords(g);
  let listBytes = 0;
  for (const l of lists.values()) listBytes += listSize(dim, TABLE, l.length);
  const L = layoutFor(spec, listBytes);
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(L.END) });

  /** push u for group kk at inverse scale `id`, its levels into the i32 array at dst (groupLevels) */
  const lev = (f: Fn, kk: number, id: Local<"f32">, dst: number, idv: V, t: V, acc: V): void => {
    f.get(id).f32x4.splat().set(idv);
    for (let h = 0; h < dim / 4; h++) {
      // l = MAX(0, MIN(kMaxQ − 1, nearest_int(0.5·(id·x − 1))))
      f.get(idv).i32.const(0).v128.load(L.X + 4 * dim * kk + 16 * h).f32x4.mul().f32x4.const(sp(1)).f32x4.sub().f32x4.const(sp(0.5)).f32x4.mul();
      nearestClamp(f, nearestConsts(0, kMaxQ - 1)); // kquant16-wasm.ts: ggml-quants.c nearest_int, then the clamp
      f.set(t);
      f.i32.const(0).get(t).v128.store(dst + 4 * dim * kk + 16 * h);
      const sh = 4 * bits * h;
      f.get(t).i32x4.const([1 << sh, 1 << (sh + bits), 1 << (sh + 2 * bits), 1 << (sh + 3 * bits)]).i32x4.mul();
      if (h === 0) f.set(acc);
      else f.get(acc).i32x4.add().set(acc);
    }
    f.get(acc).i32x4.extractLane(0).get(acc).i32x4.extractLane(1).i32.add().get(acc).i32x4.extractLane(2).i32.add().get(acc).i32x4.extractLane(3).i32.add();
  };

  // ---- bn(u, k, scale, dst) → grid index: the best neighbour of off-grid u for group k (−1 and ERR if none)
  const bn = mod.func("bn", { u: "i32", k: "i32", scale: "f32", dst: "i32" }, "i32");
  {
    const f = bn;
    const rec = f.i32("rec"), cnt = f.i32("cnt"), p = f.i32("p"), xa = f.i32("xa"), recs = f.i32("recs");
    const r0 = f.v128("r0"), r1 = f.v128("r1");
    const xs = f.locals("v128", dim, "xs"), ws = f.locals("v128", dim, "ws");
    const sc = f.v128("sc"), best = f.v128("best"), bpos = f.v128("bpos"), pos = f.v128("pos"), d2 = f.v128("d2"), diff = f.v128("diff"), lt = f.v128("lt");
    const bp = f.i32("bp"), gi = f.i32("gi");
    f.get(f.p.u).i32.const(2).i32.shl().i32.load(L.NBO).tee(rec).i32.load(L.LISTS).tee(cnt).set(recs);
    f.get(rec).i32.const(L.LISTS + 16).i32.add().set(p);
    f.get(f.p.k).i32.const(4 * dim).i32.mul().set(xa);
    for (let i = 0; i < dim; i++) {
      f.get(xa).v128.load32Splat(L.X + 4 * i).set(xs[i]!);
      f.get(xa).v128.load32Splat(L.WA + 4 * i).set(ws[i]!);
    }
    f.get(f.p.scale).f32x4.splat().set(sc);
    if (TABLE) {
      // the four possible terms of coordinate i, for q = 1, 3, 5, 7: w·(scale·q − x)², the C float ops
      f.get(sc).f32x4.const([1, 3, 5, 7]).f32x4.mul().set(diff);
      for (let i = 0; i < dim; i++) f.get(diff).get(xs[i]!).f32x4.sub().tee(d2).get(ws[i]!).f32x4.mul().get(d2).f32x4.mul().set(ws[i]!);
    }
    f.f32x4.const(sp(FLT_MAX)).set(best);
    f.i32x4.const(sp(-1)).set(bpos);
    f.i32x4.const([0, 1, 2, 3]).set(pos);
    f.block((done) =>
      f.loop((next) => {
        f.get(cnt).i32.eqz().brIf(done);
        if (TABLE) {
          f.get(p).v128.load(0).set(r0);
          f.get(p).v128.load(16).set(r1);
        }
        for (let i = 0; i < dim; i++) {
          if (TABLE) {
            // the lane's term of coordinate i: its level's float, picked by byte indices 4l … 4l + 3
            // (bytes 4l of coordinate i spread over each lane's four bytes, plus 0 1 2 3)
            const r = i < 4 ? r0 : r1;
            const spread: number[] = [];
            for (let j = 0; j < 4; j++) for (let c = 0; c < 4; c++) spread.push(4 * (i % 4) + j);
            f.get(ws[i]!).get(r).get(r).i8x16.shuffle(spread).i32x4.const(sp(0x03020100)).i8x16.add().i8x16.swizzle();
          } else {
            // diff = scale·q − x; w·diff·diff
            f.get(sc).get(p).v128.load(16 * i).f32x4.mul().get(xs[i]!).f32x4.sub().set(diff);
            f.get(ws[i]!).get(diff).f32x4.mul().get(diff).f32x4.mul();
          }
          // d2 += term (f32x4.add is commutative bit for bit: 0 + t and d2 + t as in C)
          if (i === 0) f.f32x4.const(sp(0)).f32x4.add();
          else f.get(d2).f32x4.add();
          f.set(d2);
        }
        f.get(d2).get(best).f32x4.lt().set(lt);
        f.get(d2).get(best).get(lt).v128.bitselect().set(best);
        f.get(pos).get(bpos).get(lt).v128.bitselect().set(bpos);
        f.get(pos).i32x4.const(sp(4)).i32x4.add().set(pos);
        f.get(p).i32.const(TABLE ? 32 : recBytes(dim)).i32.add().set(p);
        f.get(cnt).i32.const(1).i32.sub().set(cnt);
        f.br(next);
      }),
    );
    // the first minimum over the lanes: the least distance m (no lane holds a NaN: a lane keeps FLT_MAX
    // or a distance that compared <), then the least position among the lanes holding m
    const SWAP64 = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
    const SWAP32 = [4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11];
    // (i8x16.shuffle takes two vectors: the lanes of the first are bytes 0-15)
    f.get(best).get(best).get(best).i8x16.shuffle(SWAP64).f32x4.pmin().tee(d2).get(d2).get(d2).i8x16.shuffle(SWAP32).f32x4.pmin().set(d2);
    f.get(bpos).i32x4.const(sp(0x7fffffff)).get(best).get(d2).f32x4.eq().v128.bitselect().tee(lt);
    f.get(lt).get(lt).i8x16.shuffle(SWAP64).i32x4.minS().tee(lt).get(lt).get(lt).i8x16.shuffle(SWAP32).i32x4.minS().i32x4.extractLane(0).set(bp);
    f.get(bp).i32.const(0).i32.ltS().if(() => {
      f.i32.const(0).i32.const(1).i32.store(L.ERR);
      f.i32.const(-1).return();
    });
    // grid index of position bp, then its levels into dst
    if (TABLE) {
      // u16 at rec + 16 + 32·recs + 2·bp
      f.get(rec).get(recs).i32.const(5).i32.shl().i32.add().get(bp).i32.const(1).i32.shl().i32.add().i32.load16U(L.LISTS + 16).set(gi);
    } else {
      f.get(rec).get(bp).i32.const(2).i32.shrU().i32.const(recBytes(dim)).i32.mul().i32.add().get(bp).i32.const(3).i32.and().i32.const(2).i32.shl().i32.add();
      f.i32.load(L.LISTS + 16 + 16 * dim).set(gi);
    }
    f.get(f.p.k).i32.const(4 * dim).i32.mul().get(f.p.dst).i32.add().set(p);
    for (let h = 0; h < dim / 4; h++) {
      f.get(p).get(gi).i32.const(dim).i32.mul().v128.load32Zero(L.LVL + 4 * h).i16x8.extendLowI8x16U().i32x4.extendLowI16x8U().v128.store(16 * h);
    }
    f.get(gi);
  }

  /** Σ w·x·q and Σ w·q² over the sub-block's levels at src (q = 2L + 1), sequential as in C, into a and b (groupSums) */
  const sums = (f: Fn, src: number, a: Local<"f32">, b: Local<"f32">, q: Local<"f32">): void => {
    f.f32.const(0).tee(a).set(b);
    for (let i = 0; i < n; i++) {
      f.i32.const(0).i32.load(src + 4 * i).i32.const(1).i32.shl().i32.const(1).i32.add().f32.convertI32S().set(q);
      f.get(a).i32.const(0).f32.load(L.WX + 4 * i).get(q).f32.mul().f32.add().set(a);
      f.get(b).i32.const(0).f32.load(L.W + 4 * i).get(q).f32.mul().get(q).f32.mul().f32.add().set(b);
    }
  };

  // ---- search(denom, scale) → scale (searchIqScale); levels in LB
  const search = mod.func("search", { denom: "f32", scale: "f32" }, "f32");
  {
    const f = search;
    const best = f.f32("best"), is = f.i32("is"), id = f.f32("id"), ts = f.f32("ts"), u = f.i32("u");
    const sqx = f.f32("sqx"), sq2 = f.f32("sq2"), redo = f.i32("redo"), scale = f.p.scale, q = f.f32("q");
    const idv = f.v128("idv"), t = f.v128("t"), acc = f.v128("acc");
    if (track) {
      f.i32.const(0).i32.const(initOnGrid ? 0x01010101 : 0).i32.store(L.ONG);
      f.i32.const(0).i32.const(initOnGrid ? 0x01010101 : 0).i32.store(L.ONG + 4);
    }
    f.i32.const(-range).set(is);
    f.loop((trial) => {
      // id = (2·kMaxQ − 1 + is·step)/denom, this_scale = 1/id
      f.f32.const(2 * kMaxQ - 1).get(is).f32.convertI32S().f32.const(step).f32.mul().f32.add().get(f.p.denom).f32.div().set(id);
      f.f32.const(1).get(id).f32.div().set(ts);
      for (let kk = 0; kk < groups; kk++) {
        lev(f, kk, id, L.LA, idv, t, acc);
        f.set(u);
        if (track) f.i32.const(0).i32.const(1).i32.store8(L.ONGA + kk);
        f.get(u).i32.const(1).i32.shl().i32.load16S(L.MAP).i32.const(0).i32.ltS().if(() => {
          if (track) f.i32.const(0).i32.const(0).i32.store8(L.ONGA + kk);
          f.get(u).i32.const(kk).get(ts).i32.const(L.LA).call(bn).drop();
        });
      }
      sums(f, L.LA, sqx, sq2, q);
      f.get(sq2).f32.const(0).f32.gt().if(() => {
        f.get(sqx).get(sqx).f32.mul().get(best).get(sq2).f32.mul().f32.gt().if(() => {
          f.get(sqx).get(sq2).f32.div().set(scale);
          f.get(scale).get(sqx).f32.mul().set(best);
          for (let h = 0; h < n / 4; h++) f.i32.const(0).i32.const(0).v128.load(L.LA + 16 * h).v128.store(L.LB + 16 * h);
          if (track) {
            f.i32.const(0).i32.const(0).i32.load(L.ONGA).i32.store(L.ONG);
            f.i32.const(0).i32.const(0).i32.load(L.ONGA + 4).i32.store(L.ONG + 4);
          }
        });
      });
      f.get(is).i32.const(1).i32.add().tee(is).i32.const(range).i32.leS().brIf(trial);
    });
    f.get(scale).f32.const(0).f32.gt().set(redo);
    if (track) {
      // redo only when some group of the winning trial was off the grid
      f.get(redo).if(() => {
        f.i32.const(0).set(redo);
        for (let kk = 0; kk < groups; kk++) f.get(redo).i32.const(0).i32.load8U(L.ONG + kk).i32.eqz().i32.or().set(redo);
      });
    }
    f.get(redo).if(() => {
      f.f32.const(1).get(scale).f32.div().set(id);
      for (let kk = 0; kk < groups; kk++) {
        const body = (): void => {
          lev(f, kk, id, L.LB, idv, t, acc);
          f.set(u);
          f.get(u).i32.const(1).i32.shl().i32.load16S(L.MAP).i32.const(0).i32.ltS().if(() => {
            f.get(u).i32.const(kk).get(scale).i32.const(L.LB).call(bn).drop();
          });
        };
        if (requant === "off-grid") {
          f.i32.const(0).i32.load8U(L.ONG + kk).i32.eqz().if(body);
        } else body();
      }
      sums(f, L.LB, sqx, sq2, q);
      f.get(sq2).f32.const(0).f32.gt().if(() => f.get(sqx).get(sq2).f32.div().set(scale));
    });
    f.get(scale);
  }

  // ---- mqp() → scale: make_qp_quants(32, kMaxQ + 1, xval, L, weight) (IQ2_XXS)
  const mqp = mod.func("mqp", {}, "f32");
  {
    const f = mqp;
    const nmax = kMaxQ + 1;
    const max = f.f32("max"), x = f.f32("x"), iscale = f.f32("iscale"), sc = f.f32("sc"), bestMse = f.f32("bestMse"), mse = f.f32("mse");
    const diff = f.f32("diff"), w = f.f32("w"), isc = f.f32("isc"), sci = f.f32("sci"), i = f.i32("i"), is = f.i32("is"), l = f.i32("l");
    const sumlx = f.f32("sumlx"), suml2 = f.f32("suml2"), slx = f.f32("slx"), sl2 = f.f32("sl2"), li = f.i32("li"), nl = f.i32("nl");
    const itry = f.i32("itry"), changed = f.i32("changed");
    const forI = (body: () => void): void => {
      f.i32.const(0).set(i);
      f.loop((next) => {
        body();
        f.get(i).i32.const(4).i32.add().tee(i).i32.const(4 * n).i32.ltU().brIf(next);
      });
    };
    const minNmax = (v: I): void => void f.i32.const(nmax).get(v).i32.const(nmax).get(v).i32.ltS().select().set(v);
    f.f32.const(0).set(max);
    forI(() => {
      f.get(i).f32.load(L.X).set(x);
      f.get(max).get(x).get(max).get(x).f32.gt().select().set(max);
    });
    f.get(max).f32.const(spec.qpEps ?? 0).f32.lt().if(() => f.f32.const(0).return());
    f.f32.const(nmax).get(max).f32.div().set(iscale);
    forI(() => {
      f.get(i).get(iscale).get(i).f32.load(L.X).f32.mul();
      nearest(f);
      f.i32.const(255).i32.and().i32.store(L.LQ);
    });
    f.f32.const(1).get(iscale).f32.div().set(sc);
    forI(() => {
      f.get(i).f32.load(L.X).get(sc).get(i).i32.load(L.LQ).f32.convertI32S().f32.mul().f32.sub().set(diff);
      f.get(bestMse).get(i).f32.load(L.W).get(diff).f32.mul().get(diff).f32.mul().f32.add().set(bestMse);
    });
    f.i32.const(-4).set(is);
    f.loop((nextIs) => {
      f.get(is).if(() => {
        f.f32.const(spec.qpStep ?? 0).get(is).f32.convertI32S().f32.mul().f32.const(nmax).f32.add().get(max).f32.div().set(isc);
        f.f32.const(1).get(isc).f32.div().set(sci);
        f.f32.const(0).set(mse);
        forI(() => {
          f.get(isc).get(i).f32.load(L.X).f32.mul();
          nearest(f);
          f.set(l);
          minNmax(l);
          f.get(i).f32.load(L.X).get(sci).get(l).f32.convertI32S().f32.mul().f32.sub().set(diff);
          f.get(mse).get(i).f32.load(L.W).get(diff).f32.mul().get(diff).f32.mul().f32.add().set(mse);
        });
        f.get(mse).get(bestMse).f32.lt().if(() => {
          f.get(mse).set(bestMse);
          f.get(isc).set(iscale);
        });
      });
      f.get(is).i32.const(1).i32.add().tee(is).i32.const(4).i32.leS().brIf(nextIs);
    });
    f.f32.const(0).tee(sumlx).set(suml2);
    forI(() => {
      f.get(iscale).get(i).f32.load(L.X).f32.mul();
      nearest(f);
      f.set(l);
      minNmax(l);
      f.get(i).get(l).i32.const(255).i32.and().i32.store(L.LV);
      f.get(i).f32.load(L.W).set(w);
      f.get(sumlx).get(i).f32.load(L.WX).get(l).f32.convertI32S().f32.mul().f32.add().set(sumlx);
      f.get(suml2).get(w).get(l).f32.convertI32S().f32.mul().get(l).f32.convertI32S().f32.mul().f32.add().set(suml2);
    });
    f.i32.const(0).set(itry);
    f.block((out) =>
      f.loop((nextTry) => {
        f.i32.const(0).set(changed);
        forI(() => {
          f.get(i).f32.load(L.W).set(w);
          f.get(i).i32.load(L.LV).set(li);
          f.get(sumlx).get(i).f32.load(L.WX).get(li).f32.convertI32S().f32.mul().f32.sub().set(slx);
          f.get(suml2).get(w).get(li).f32.convertI32S().f32.mul().get(li).f32.convertI32S().f32.mul().f32.sub().set(sl2);
          f.get(slx).f32.const(0).f32.gt().get(sl2).f32.const(0).f32.gt().i32.and().if(() => {
            f.get(i).f32.load(L.X).get(sl2).f32.mul().get(slx).f32.div();
            nearest(f);
            f.set(nl);
            minNmax(nl);
            f.get(nl).get(li).i32.ne().if(() => {
              f.get(slx).get(i).f32.load(L.WX).get(nl).f32.convertI32S().f32.mul().f32.add().set(slx);
              f.get(sl2).get(w).get(nl).f32.convertI32S().f32.mul().get(nl).f32.convertI32S().f32.mul().f32.add().set(sl2);
              f.get(slx).get(slx).f32.mul().get(suml2).f32.mul().get(sumlx).get(sumlx).f32.mul().get(sl2).f32.mul().f32.gt().if(() => {
                f.get(i).get(nl).i32.const(255).i32.and().i32.store(L.LV);
                f.get(slx).set(sumlx);
                f.get(sl2).set(suml2);
                f.get(changed).i32.const(1).i32.add().set(changed);
              });
            });
          });
        });
        f.get(changed).i32.eqz().brIf(out);
        f.get(itry).i32.const(1).i32.add().tee(itry).i32.const(5).i32.ltS().brIf(nextTry);
      }),
    );
    f.get(suml2).f32.const(0).f32.gt().if(() => f.get(sumlx).get(suml2).f32.div().return());
    f.f32.const(0);
  }

  // ---- q(nb, hasQw): the blocks
  const qf = mod.func("q", { nb: "i32", hasQw: "i32", reset: "i32" }, []);
  {
    const f = qf;
    const b = f.i32("b"), xb = f.i32("xb"), ib = f.i32("ib"), xs = f.i32("xs"), i = f.i32("i");
    const fin = f.v128("fin"), v = f.v128("v"), m = f.v128("m"), sig = f.v128("sig"), s4 = f.v128("s4");
    const sumx2 = f.f32("sumx2"), sigma2 = f.f32("sigma2"), x = f.f32("x"), max = f.f32("max"), scale = f.f32("scale"), denom = f.f32("denom");
    const sb = f.i32("sb"), imin = f.i32("imin"), mn = f.f32("mn"), ax = f.f32("ax"), u = f.i32("u"), gi = f.i32("gi"), o = f.i32("o");
    const skip = f.i32("skip");
    const clearL = (): void => {
      for (let h = 0; h < 8; h++) f.i32.const(0).i32.const(0).i32x4.splat().v128.store(L.LB + 16 * h);
    };
    if (spec.qp) f.get(f.p.reset).if(clearL);
    f.i32.const(0).set(b);
    f.block((doneAll) =>
      f.loop((nextBlock) => {
        f.get(b).get(f.p.nb).i32.geU().brIf(doneAll);
        f.get(b).i32.const(QK * 4).i32.mul().set(xb);
        f.i32.const(0).i32.const(0).i32.store(L.ERR);
        // non-finite input or importance: the TypeScript path
        f.f32x4.const(sp(0)).set(fin);
        for (let h = 0; h < QK / 4; h++) {
          f.get(xb).v128.load(L.IN + 16 * h).tee(v).get(v).f32x4.sub().get(fin).f32x4.add().set(fin);
          f.get(f.p.hasQw).if(() => {
            f.get(xb).v128.load(L.QW + 16 * h).tee(v).get(v).f32x4.sub().get(fin).f32x4.add().set(fin);
          });
        }
        f.get(fin).get(fin).f32x4.ne().v128.anyTrue().if(() => {
          f.get(b).i32.const(1).i32.store8(L.FLG);
        }, () => {
          f.get(b).i32.const(0).i32.store8(L.FLG);
          // σ²
          f.f32.const(0).set(sumx2);
          f.i32.const(0).set(i);
          f.loop((next) => {
            f.get(xb).get(i).i32.add().f32.load(L.IN).tee(x).get(x).f32.mul().get(sumx2).f32.add().set(sumx2);
            f.get(i).i32.const(4).i32.add().tee(i).i32.const(4 * QK).i32.ltU().brIf(next);
          });
          if (spec.sigma2Two) f.f32.const(2).get(sumx2).f32.mul().f32.const(QK).f32.div().set(sigma2);
          else f.get(sumx2).f32.const(QK).f32.div().set(sigma2);
          f.get(sigma2).f32x4.splat().set(sig);
          f.f32.const(0.25).get(sigma2).f32.mul().f32x4.splat().set(s4);
          f.i32.const(0).set(ib);
          f.loop((nextSub) => {
            f.get(xb).get(ib).i32.const(4 * n).i32.mul().i32.add().set(xs);
            // weights, √weight, |x| (x ≥ 0 ? x : −x) and the sign bits of each 8-group
            for (let h = 0; h < n / 4; h++) {
              f.i32.const(0);
              f.get(f.p.hasQw).if(() => {
                // qw·√(σ² + x·x)
                f.get(xs).v128.load(L.QW + 16 * h);
                f.get(sig).get(xs).v128.load(L.IN + 16 * h).tee(v).get(v).f32x4.mul().f32x4.add().f32x4.sqrt().f32x4.mul();
              }, () => {
                if (spec.noQw === "s4x2") f.get(s4).get(xs).v128.load(L.IN + 16 * h).tee(v).get(v).f32x4.mul().f32x4.add();
                else f.get(xs).v128.load(L.IN + 16 * h).tee(v).get(v).f32x4.mul();
              }, "v128");
              f.tee(m).v128.store(L.W + 16 * h);
              f.i32.const(0).get(m).f32x4.sqrt().v128.store(L.WA + 16 * h);
              f.get(xs).v128.load(L.IN + 16 * h).tee(v).f32x4.const(sp(0)).f32x4.ge().set(m);
              f.i32.const(0).get(v).get(v).f32x4.neg().get(m).v128.bitselect().v128.store(L.X + 16 * h);
              if (h % 2 === 0) f.get(m).v128.not().i32x4.bitmask().set(sb);
              else {
                f.get(sb).get(m).v128.not().i32x4.bitmask().i32.const(4).i32.shl().i32.or().set(sb);
                const k8 = h >> 1;
                if (spec.parity) {
                  // an odd count of negatives: flip the element of least w·x²
                  f.get(sb).i32.popcnt().i32.const(1).i32.and().if(() => {
                    f.i32.const(0).set(imin);
                    f.get(xs).f32.load(L.IN + 32 * k8).set(x);
                    f.i32.const(0).f32.load(L.W + 32 * k8).get(x).f32.mul().get(x).f32.mul().set(mn);
                    for (let j = 1; j < 8; j++) {
                      f.get(xs).f32.load(L.IN + 32 * k8 + 4 * j).set(x);
                      f.i32.const(0).f32.load(L.W + 32 * k8 + 4 * j).get(x).f32.mul().get(x).f32.mul().tee(ax).get(mn).f32.lt().if(() => {
                        f.get(ax).set(mn);
                        f.i32.const(j).set(imin);
                      });
                    }
                    f.get(imin).i32.const(2).i32.shl().tee(i).get(i).f32.load(L.X + 32 * k8).f32.neg().f32.store(L.X + 32 * k8);
                    f.get(sb).i32.const(1).get(imin).i32.shl().i32.xor().set(sb);
                  });
                  f.i32.const(0).get(sb).i32.const(127).i32.and().i32.store8(L.SG + k8);
                } else f.i32.const(0).get(sb).i32.store8(L.SG + k8);
              }
            }
            // w·x (the product every weighted sum starts with)
            for (let h = 0; h < n / 4; h++) f.i32.const(0).i32.const(0).v128.load(L.W + 16 * h).i32.const(0).v128.load(L.X + 16 * h).f32x4.mul().v128.store(L.WX + 16 * h);
            // max (C: max = xval[i] > max ? xval[i] : max)
            f.i32.const(0).f32.load(L.X).set(max);
            for (let j = 1; j < n; j++) f.get(max).i32.const(0).f32.load(L.X + 4 * j).tee(x).get(max).get(x).f32.gt().select().set(max);
            if (!spec.qp) clearL();
            f.i32.const(1).set(skip);
            f.block((skipped) => {
              if (spec.eps > 0) f.get(max).f32.const(spec.eps).f32.lt().brIf(skipped);
              else f.get(max).f32.const(0).f32.eq().brIf(skipped);
              if (spec.qp) {
                f.call(mqp).tee(scale).f32.const(kMaxQ).f32.mul().tee(denom).f32.const(0).f32.le().brIf(skipped);
              } else {
                f.get(max).set(denom);
                f.get(max).f32.const(2 * kMaxQ - 1).f32.div().set(scale);
              }
              f.i32.const(0).set(skip);
              f.get(denom).get(scale).call(search).set(scale);
              f.get(scale).f32.const(0).f32.lt().if(() => {
                f.get(scale).f32.neg().set(scale);
                const mask = spec.parity ? 0x7f7f7f7f : -1;
                f.i32.const(0).i32.const(0).i32.load(L.SG).i32.const(-1).i32.xor().i32.const(mask).i32.and().i32.store(L.SG);
              });
              // grid indices (ggml aborts when a point is not on the grid: flagged)
              for (let kk = 0; kk < groups; kk++) {
                f.i32.const(0).set(u);
                for (let j = 0; j < dim; j++) f.get(u).i32.const(0).i32.load(L.LB + 4 * (dim * kk + j)).i32.const(bits * j).i32.shl().i32.or().set(u);
                f.get(u).i32.const(1).i32.shl().i32.load16S(L.MAP).tee(gi).i32.const(0).i32.ltS().if(() => f.i32.const(0).i32.const(1).i32.store(L.ERR));
                // gi at RGI + 2·(64b + groups·ib + kk)
                f.get(b).i32.const(64).i32.mul().get(ib).i32.const(groups).i32.mul().i32.add().i32.const(kk).i32.add().i32.const(1).i32.shl().get(gi).i32.store16(L.RGI);
              }
              for (let kk = 0; kk < n / 8; kk++) {
                f.get(b).i32.const(32).i32.mul().get(ib).i32.const(n / 8).i32.mul().i32.add().i32.const(kk).i32.add();
                f.i32.const(0).i32.load8U(L.SG + kk).i32.store8(L.RSG);
              }
            });
            f.get(b).i32.const(16).i32.mul().get(ib).i32.add().tee(o).get(skip).i32.store8(L.RSK);
            f.get(o).i32.const(2).i32.shl().get(skip).if(() => f.f32.const(0), () => f.get(scale), "f32").f32.store(L.RS);
            f.get(ib).i32.const(1).i32.add().tee(ib).i32.const(nsub).i32.ltU().brIf(nextSub);
          });
          f.i32.const(0).i32.load(L.ERR).if(() => f.get(b).i32.const(1).i32.store8(L.FLG));
        });
        f.get(b).i32.const(1).i32.add().set(b);
        f.br(nextBlock);
      }),
    );
  }
  return { bytes: mod.bytes(), L };
}

/** The neighbour lists of every off-grid level vector the rounding can produce. */
function neighbourLists(g: IqGroups): Map<number, Uint16Array> {
  const m = new Map<number, Uint16Array>();
  for (const u of offGridVectors(g)) m.set(u, g.lat.neighbours(u));
  return m;
}

/** Copies the grid tables and neighbour records into the module's memory. */
function writeTables(buf: ArrayBuffer, g: IqGroups, L: Layout, lists: Map<number, Uint16Array>): void {
  const { lat } = g;
  const dim = lat.dim;
  const lvl = new Uint8Array(buf, L.LVL, lat.size * dim);
  for (let j = 0; j < lat.size * dim; j++) lvl[j] = (lat.q[j]! - 1) >> 1;
  new Int16Array(buf, L.MAP, lat.map.length).set(lat.map);
  const nbo = new Int32Array(buf, L.NBO, lat.map.length);
  // the records are 16-byte aligned: f32 / i32 / u8 views over the list area, indexed in 4-byte words
  const f32 = new Float32Array(buf, L.LISTS);
  const i32 = new Int32Array(buf, L.LISTS);
  const u8 = new Uint8Array(buf, L.LISTS);
  const u16 = new Uint16Array(buf, L.LISTS);
  const table = tableRecords(g);
  const q = lat.q;
  let off = 0; // bytes
  for (const [u, l] of lists) {
    nbo[u] = off;
    const recs = Math.ceil(l.length / 4);
    i32[off >> 2] = recs;
    for (let r = 0; r < recs; r++) {
      for (let lane = 0; lane < 4; lane++) {
        const j = 4 * r + lane;
        const gj = j < l.length ? l[j]! : table ? l[l.length - 1]! : -1;
        if (table) {
          const rb = off + 16 + 32 * r;
          for (let i = 0; i < dim; i++) u8[rb + 4 * i + lane] = 4 * ((q[gj * dim + i]! - 1) >> 1);
          u16[(off + 16 + 32 * recs + 2 * j) >> 1] = gj;
        } else {
          const rw = (off + 16 + r * recBytes(dim)) >> 2;
          for (let i = 0; i < dim; i++) f32[rw + 4 * i + lane] = gj >= 0 ? q[gj * dim + i]! : NaN;
          i32[rw + 4 * dim + lane] = gj;
        }
      }
    }
    off += listSize(dim, table, l.length);
  }
}

/** The kernel of one IQ type (lazily instantiated: src/quant/wasm/instantiate.ts); `specOf` is called on first use. */
export function iqKernel(name: string, specOf: () => IqKernelSpec): LazyKernel<IqKernel> {
  let lists: Map<number, Uint16Array> | undefined;
  let layout: Layout | undefined;
  let spec: IqKernelSpec | undefined;
  return lazyKernel(
    name,
    () => {
      spec = specOf();
      lists = neighbourLists(spec.g);
      const r = buildModule(spec, lists);
      layout = r.L;
      return r.bytes;
    },
    (e, mem): IqKernel => {
      const buf = mem.buffer;
      const L = layout!;
      writeTables(buf, spec!.g, L, lists!);
      lists = undefined;
      const q = e["q"] as (nb: number, hasQw: number, reset: number) => void;
      const input = new Float32Array(buf, L.IN, IQ_CHUNK * QK);
      const qwIn = new Float32Array(buf, L.QW, IQ_CHUNK * QK);
      return {
        run(x, xo, qw, nb, qwOf, first) {
          input.set(x.subarray(xo, xo + nb * QK));
          if (qw) for (let b = 0; b < nb; b++) qwIn.set(qw.subarray(qwOf(b), qwOf(b) + QK), b * QK);
          q(nb, qw ? 1 : 0, first ? 1 : 0);
        },
        flags: new Uint8Array(buf, L.FLG, IQ_CHUNK),
        scales: new Float32Array(buf, L.RS, IQ_CHUNK * 16),
        skip: new Uint8Array(buf, L.RSK, IQ_CHUNK * 16),
        gi: new Uint16Array(buf, L.RGI, IQ_CHUNK * 64),
        signs: new Uint8Array(buf, L.RSG, IQ_CHUNK * 32),
      };
    },
  );
}

/** One block's results for the TypeScript path (block index 0 of the packers). */
export function blockResults(): IqBlockResults {
  return { scales: new Float32Array(16), skip: new Uint8Array(16), gi: new Uint16Array(64), signs: new Uint8Array(32) };
}

/**
 * quantize_iq* (ggml-quants.c) over whole rows: the blocks through the kernel when it is available
 * (GGUFY_NO_WASM unset, instantiate.ts), flagged blocks and every block otherwise through the
 * TypeScript search `ts` (kernel = null: always); both pack with the same `pack`. The importance vector (one row's worth,
 * repeating) is aligned to each block.
 */
export function quantizeIqBlocks<S>(
  name: string, typeSize: number, src: Float32Array, dst: Uint8Array, qw: Float32Array | null | undefined, needQw: boolean,
  kernel: LazyKernel<IqKernel> | null, scratch: () => S,
  ts: (s: S, x: Float32Array, xo: number, qw: Float32Array | null | undefined, qo: number, r: IqBlockResults) => void,
  pack: (r: IqBlockResults, b: number, dst: Uint8Array, o: number) => void,
): void {
  const nb = checkArgs(name, src, dst, typeSize, qw);
  if (needQw && !qw) throw new Error(`${name} needs an importance matrix (ggml_quantize_requires_imatrix)`);
  const n = qw ? qw.length : 0;
  const qo = (b: number): number => (n ? (QK * b) % n : 0);
  const k = kernel?.get();
  let s: S | undefined;
  let r: IqBlockResults | undefined;
  const tsBlock = (b: number): void => {
    s ??= scratch();
    r ??= blockResults();
    ts(s, src, QK * b, qw, qo(b), r);
    pack(r, 0, dst, b * typeSize);
  };
  if (!k) {
    for (let b = 0; b < nb; b++) tsBlock(b);
    return;
  }
  for (let b0 = 0; b0 < nb; b0 += IQ_CHUNK) {
    const cnt = Math.min(IQ_CHUNK, nb - b0);
    k.run(src, QK * b0, qw ?? null, cnt, (j) => qo(b0 + j), b0 === 0);
    for (let j = 0; j < cnt; j++) {
      if (k.flags[j]) tsBlock(b0 + j);
      else pack(k, j, dst, (b0 + j) * typeSize);
    }
  }
}
