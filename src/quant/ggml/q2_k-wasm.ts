/**
 * WebAssembly SIMD kernel of Q2_K: make_qkx2_quants(16, 3, x, weights = |x|, L, &the_min, Laux,
 * rmin = −0.5, rdelta = 0.1, nstep = 15, use_mad = true) for the 16 sub-blocks of each super-block
 * (ggml/src/ggml-quants.c: make_qkx2_quants, called from quantize_row_q2_K_ref) — the search emitter
 * Q4_K and Q5_K use too (kquant-qkx2-wasm.ts: transposed super-block, one f32x4 operation per C float
 * operation on four sub-blocks, lane masks for C's `if`s, flagged super-blocks to the TypeScript
 * path) —, then the re-quantization with the fp16 scales and the 2-bit packing (kquant16-wasm.ts).
 *
 * q(nb) writes, per super-block, the 16 scales (OUT_S), the 16 the_min values (OUT_M), the search's
 * levels (OUT_L, transposed: element i of sub-block j at 16i + j) and a flag (BAD; q returns their
 * count); r(nb) re-quantizes with DD / DM (set by the caller from the fp16 d and dmin) into LN; p(nb)
 * packs LN into the output blocks (kquant16-wasm.ts's runKQuant drives the three). The readable
 * reference is kquant-common.ts's makeQkx2 and q2_k.ts; both use q2_k.ts's q2kTail.
 */
import { ModuleBuilder } from "../wasm/builder.js";
import { QK, addPack16, addRequant, kquantKernel } from "./kquant16-wasm.js";
import type { KQuantLayout } from "./kquant16-wasm.js";
import { addQkx2Search } from "./kquant-qkx2-wasm.js";

/** super-blocks per kernel call (64 KiB of input) */
export const Q2_BLOCKS = 64;
const IN = 0;
const XT = Q2_BLOCKS * QK * 4; // the current super-block, transposed (1 KiB)
const WT = XT + 1024; // its weights |x|, transposed
const AT = WT + 1024; // Laux of the current step (f32), transposed
const TBL = AT + 1024; // step numerators f(f(rmin + f(rdelta·is)) + nmax), f32
const OUT_S = TBL + 256; // scales, f32 [Q2_BLOCKS][16]
const OUT_M = OUT_S + Q2_BLOCKS * 64; // the_min, f32 [Q2_BLOCKS][16]
const OUT_L = OUT_M + Q2_BLOCKS * 64; // search levels, u8 [Q2_BLOCKS][256], transposed
const DD = OUT_L + Q2_BLOCKS * QK; // d·(scale & 15), f32 [Q2_BLOCKS][16]
const DM = DD + Q2_BLOCKS * 64; // dmin·(scale >> 4), f32 [Q2_BLOCKS][16]
const LN = DM + Q2_BLOCKS * 64; // final levels, u8 [Q2_BLOCKS][256]
const BAD = LN + Q2_BLOCKS * QK; // u8 [Q2_BLOCKS]: 1 for a super-block the TypeScript path redoes
const OUT = BAD + Q2_BLOCKS; // the output blocks, [Q2_BLOCKS][84]
const SIZE = 84;
const END = OUT + Q2_BLOCKS * SIZE;

const NMAX = 3;

function buildModule(nstep: number): Uint8Array<ArrayBuffer> {
  const mod = new ModuleBuilder({ pages: ModuleBuilder.pagesFor(END) });
  addQkx2Search(mod, {
    n: 16, nmax: NMAX, nstep, mad: true, avWeights: false, in: IN, xt: XT, wt: WT, at: AT, table: TBL, scales: OUT_S, mins: OUT_M, levels: OUT_L, bad: BAD,
  });
  addRequant(mod, { in: IN, dd: DD, dm: DM, ln: LN }, 16, true, 0, NMAX, 0);
  addPack16(mod, { ln: LN, out: OUT, size: SIZE, qs: 16, hmask: -1 });
  return mod.bytes();
}

const LAYOUT: KQuantLayout = {
  blocks: Q2_BLOCKS, size: SIZE, n: 16, in: IN, scales: OUT_S, mins: OUT_M, levels: OUT_L, dd: DD, dm: DM, ln: LN, bad: BAD, out: OUT, table: TBL,
};

/** The Q2_K kernel (lazily instantiated: src/quant/wasm/instantiate.ts); `steps` = qkx2StepNumerators(3, −0.5, 0.1, 15). */
export function q2Kernel(steps: Float64Array) {
  return kquantKernel("q2_k", () => buildModule(steps.length - 1), LAYOUT, steps);
}
