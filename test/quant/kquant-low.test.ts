/**
 * The WebAssembly SIMD kernels of Q2_K, Q3_K, TQ1_0 and TQ2_0 (src/quant/ggml/q2_k-wasm.ts,
 * q3_k-wasm.ts, tq-wasm.ts) against ggml itself (ggml_quantize_chunk through koffi, no imatrix) and
 * against the TypeScript reference paths: the same bytes on many distributions, including the edge
 * cases of the searches (empty ranges, all-zero groups, ties, subnormals, tiny and huge magnitudes,
 * values near the overflow threshold), chunk lengths that are not a multiple of the kernel batch, and
 * non-finite values (which take the TypeScript path).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGMLType, typeName } from "../../src/quant/ggml/index.js";
import { quantizeQ2KScalar, Q2_K_WASM } from "../../src/quant/ggml/q2_k.js";
import { quantizeQ3KScalar, Q3_K_WASM } from "../../src/quant/ggml/q3_k.js";
import { quantizeTQ1Scalar, quantizeTQ2Scalar, TQ1_0_WASM, TQ2_0_WASM, tqKernelsForTest } from "../../src/quant/ggml/tq.js";
import { q2Kernel } from "../../src/quant/ggml/q2_k-wasm.js";
import { q3Kernel } from "../../src/quant/ggml/q3_k-wasm.js";
import { qkx2StepNumerators } from "../../src/quant/ggml/kquant-common.js";
import { checkChunksAndNonFinite, checkDatasets, checkFlags } from "../support/kquant-data.js";
import type { FlaggingKernel, KQuantCase } from "../support/kquant-data.js";

interface Case extends KQuantCase {
  wasm: () => boolean;
  /** the kernel itself: run(src, b0, nb) → how many super-blocks hold a NaN/inf, flagged in bad[] */
  kernel?: () => FlaggingKernel | undefined;
}

/** run(src, b0, nb) / bad[] over a blockKernel's instance (src/quant/wasm/kernels.ts: in32, run, flags). */
function blockRunner(k: unknown): FlaggingKernel | undefined {
  if (!k) return undefined;
  const b = k as { in32: Float32Array; run(nb: number): number; flags: Int32Array };
  return {
    run(src, b0, nb) {
      b.in32.set(src.subarray(b0 * 256, (b0 + nb) * 256));
      return b.run(nb);
    },
    get bad() {
      return Uint8Array.from(b.flags);
    },
  };
}

const CASES: Case[] = [
  { type: GGMLType.Q2_K, scalar: quantizeQ2KScalar, wasm: Q2_K_WASM, kernel: () => q2Kernel(qkx2StepNumerators(3, -0.5, 0.1, 15)).get() },
  { type: GGMLType.Q3_K, scalar: quantizeQ3KScalar, wasm: Q3_K_WASM, kernel: () => q3Kernel().get() },
  { type: GGMLType.TQ1_0, scalar: quantizeTQ1Scalar, wasm: TQ1_0_WASM, kernel: () => blockRunner(tqKernelsForTest.tq1.get()) },
  { type: GGMLType.TQ2_0, scalar: quantizeTQ2Scalar, wasm: TQ2_0_WASM, kernel: () => blockRunner(tqKernelsForTest.tq2.get()) },
];

for (const c of CASES) {
  const name = typeName(c.type);
  test(`${name}: the wasm kernel gives ggml's bytes and the TypeScript path's`, () => {
    assert.equal(c.wasm(), true, "WebAssembly SIMD kernel in use on Node ≥ 20");
    checkDatasets(c, 91, 16);
  });

  test(`${name}: chunk lengths that are not a multiple of the kernel batch; non-finite values take the TypeScript path`, () => {
    checkChunksAndNonFinite(c);
  });
}

for (const c of CASES) {
  if (!c.kernel) continue;
  test(`${typeName(c.type)}: the kernel flags exactly the super-blocks holding a NaN or an infinity (they go to the TypeScript path)`, () => {
    checkFlags(c.kernel!(), false);
  });
}
