/**
 * The WebAssembly SIMD K-quant kernels of Q4_K, Q5_K and Q6_K (src/quant/ggml/kquant-wasm.ts) against
 * the TypeScript reference paths and ggml itself (ggml_quantize_chunk through koffi, no imatrix): same
 * bytes on many distributions, including the edge cases of the searches (empty ranges, all-zero groups,
 * ties, subnormals — where the Q4_K/Q5_K range guard sends super-blocks to the TypeScript path —, huge
 * values), odd chunk lengths and non-finite values (test/support/kquant-data.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGMLType, codecFor, typeName } from "../../src/quant/ggml/index.js";
import { quantizeQ4KScalar, Q4_K_KERNEL, Q4_K_WASM } from "../../src/quant/ggml/q4_k.js";
import { quantizeQ5KScalar, Q5_K_KERNEL, Q5_K_WASM } from "../../src/quant/ggml/q5_k.js";
import { quantizeQ6KScalar, Q6_K_KERNEL, Q6_K_WASM } from "../../src/quant/ggml/q6_k.js";
import { Rng } from "../../fixtures/rng.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { checkChunksAndNonFinite, checkDatasets, checkFlags, sameBytes } from "../support/kquant-data.js";

const CASES = [
  { type: GGMLType.Q4_K, scalar: quantizeQ4KScalar, wasm: Q4_K_WASM, kernel: Q4_K_KERNEL, group: 32 as const },
  { type: GGMLType.Q5_K, scalar: quantizeQ5KScalar, wasm: Q5_K_WASM, kernel: Q5_K_KERNEL, group: 32 as const },
  { type: GGMLType.Q6_K, scalar: quantizeQ6KScalar, wasm: Q6_K_WASM, kernel: Q6_K_KERNEL, group: 16 as const },
];

for (const c of CASES) {
  const name = typeName(c.type);
  test(`${name}: the wasm search gives ggml's bytes and the TypeScript path's`, () => {
    assert.equal(c.wasm(), true, "WebAssembly SIMD kernel in use on Node ≥ 20");
    checkDatasets(c, 77, c.group);
  });
  test(`${name}: chunk lengths that are not a multiple of the kernel batch; non-finite values take the TypeScript path`, () => {
    checkChunksAndNonFinite(c);
  });
  test(`${name}: the kernel flags the super-blocks holding a NaN or an infinity, not a finite 3.4e38`, () => {
    checkFlags(c.kernel(), false);
  });
}

for (const c of CASES.slice(0, 2)) {
  test(`${typeName(c.type)}: the range guard flags a sub-block whose iscale overflows (nearest_int's wrap), and only that`, () => {
    // a sub-block of 0 and 2^-149: iscale = nmax/2^-149 = inf, so iscale·(x − min) is inf, where
    // ggml's nearest_int gives −4194304 (clamped to 0) and a plain rounding nmax
    const x = new Rng(3).normals(256 * 3, 0, 0.1);
    for (let i = 0; i < 32; i++) x[256 + 64 + i] = i % 2 ? 2 ** -149 : 0;
    const k = c.kernel();
    assert.ok(k);
    assert.equal(k.run(x, 0, 3), 1);
    assert.deepEqual([...k.bad.subarray(0, 3)], [0, 1, 0]);
    const ref = ggmlOracle().quantizeChunk(c.type, x, 256);
    const out = new Uint8Array(ref.length);
    codecFor(c.type).quantize(x, out);
    assert.ok(sameBytes(out, ref), "the flagged super-block is quantized by the TypeScript path");
  });
}
