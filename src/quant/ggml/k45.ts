/**
 * What Q4_K and Q5_K share (q4_k.ts, q5_k.ts): the codec around the same super-block search and tail
 * (kquant-common.ts k45Search / k45Finish, after ggml-quants.c quantize_row_q4_K_ref / _q5_K_ref), the
 * same WebAssembly fast path (kquant-wasm.ts k45WasmQuantizer) and the same dequantization frame
 * (dequantize_row_q4_K / _q5_K: fp16 d and dmin, per 64 values two sub-blocks' f(d·scale), f(dmin·min)).
 * The two types differ only in nmax, the search steps, how the levels are packed and how a 64-value
 * chunk of levels is read back.
 */
import type { BlockCodec } from "./codec.js";
import type { GGMLType } from "./types.js";
import { k45WasmQuantizer } from "./kquant-wasm.js";
import type { KQuantKernel } from "./kquant16-wasm.js";
import { F, H2F, KQuantScratch, checkDequantizeArgs, checkQuantizeArgs, k45Finish, k45Search, minK4, scaleK4 } from "./kquant-common.js";

const QK = 256;

export interface K45Spec {
  readonly type: GGMLType;
  readonly name: "Q4_K" | "Q5_K";
  /** largest level (15, 31) */
  readonly nmax: number;
  /** qkx2StepNumerators(nmax, rmin, rdelta, nstep) of the type's make_qkx2_quants call */
  readonly steps: Float64Array;
  /** bytes per super-block (144, 176) */
  readonly size: number;
  /** the 256 levels L[0..256) into the block's level bytes after its 16-byte header at dst[o..] */
  pack(L: Uint8Array, dst: Uint8Array, o: number): void;
  /** values 64c..64c+64 of the block at src[o..] into dst[y..]: first 32 with (d1, m1), then 32 with (d2, m2) */
  chunk(src: Uint8Array, o: number, c: number, dst: Float32Array, y: number, d1: number, m1: number, d2: number, m2: number): void;
}

export interface K45Family {
  readonly codec: BlockCodec;
  /** the TypeScript reference path (also the fallback without WebAssembly SIMD or with non-finite input); `s` made per call unless given */
  scalar(src: Float32Array, dst: Uint8Array, s?: KQuantScratch): void;
  /** one super-block in two steps (tests interleave them): the searches into `s`, then from `s` to the bytes at dst[o..] */
  search(s: KQuantScratch, src: Float32Array, xo: number): void;
  finish(s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number): void;
  /** whether the WebAssembly SIMD search (kquant-wasm.ts) is in use (instantiates it) */
  available(): boolean;
  /** the kernel itself, instantiated (tests: its flags) */
  kernel(): KQuantKernel | undefined;
}

export function k45Family(spec: K45Spec): K45Family {
  const { type, name, nmax, steps, size, pack, chunk } = spec;
  const search = (s: KQuantScratch, src: Float32Array, xo: number): void => k45Search(s, src, xo, nmax, steps);
  const finish = (s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number): void => {
    k45Finish(s, src, xo, nmax, dst, o);
    pack(s.L, dst, o);
  };
  const scalar = (src: Float32Array, dst: Uint8Array, s: KQuantScratch = new KQuantScratch()): void => {
    const nb = checkQuantizeArgs(name, src, dst, QK, size);
    for (let b = 0; b < nb; ++b) {
      k45Search(s, src, b * QK, nmax, steps);
      finish(s, src, b * QK, dst, b * size);
    }
  };
  const fast = k45WasmQuantizer(name === "Q4_K" ? "q4_k" : "q5_k", nmax, steps, size, scalar);
  const codec: BlockCodec = {
    type,
    blockSize: QK,
    typeSize: size,
    quantize(src, dst) {
      const nb = checkQuantizeArgs(name, src, dst, QK, size);
      if (fast.quantize(src.subarray(0, nb * QK), dst)) return;
      scalar(src, dst);
    },
    dequantize(src, dst) {
      const nb = checkDequantizeArgs(name, src, dst, QK, size);
      for (let b = 0; b < nb; ++b) {
        const o = b * size;
        const d = H2F[src[o]! | (src[o + 1]! << 8)]!;
        const min = H2F[src[o + 2]! | (src[o + 3]! << 8)]!;
        for (let c = 0; c < 4; ++c) {
          const d1 = F(d * scaleK4(src, o + 4, 2 * c));
          const m1 = F(min * minK4(src, o + 4, 2 * c));
          const d2 = F(d * scaleK4(src, o + 4, 2 * c + 1));
          const m2 = F(min * minK4(src, o + 4, 2 * c + 1));
          chunk(src, o, c, dst, b * QK + 64 * c, d1, m1, d2, m2);
        }
      }
    },
  };
  return { codec, scalar, search, finish, available: fast.available, kernel: fast.kernel };
}
