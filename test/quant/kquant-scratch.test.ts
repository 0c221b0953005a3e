/**
 * No module-level mutable state in the K-quant TypeScript paths (issue 19): each quantization keeps
 * its working arrays in its own KQuantScratch (kquant-common.ts), so two quantizations in progress at
 * the same time do not disturb each other. Two async tasks quantize two different tensors super-block
 * by super-block, each block in its two steps (the searches into the scratch, then the bytes from it),
 * yielding between steps, so that the steps interleave (search A, search B, finish A, finish B, …);
 * their bytes must equal the isolated calls' and ggml's. A scratch is also reused for a second
 * quantization (A, then B, then A again with the same scratch). With one array shared by all scratches
 * (e.g. KQuantScratch.L or .sc module-level) the interleaved bytes differ.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GGMLType, typeName } from "../../src/quant/ggml/index.js";
import { KQuantScratch } from "../../src/quant/ggml/kquant-common.js";
import { q2kFinish, q2kSearch, quantizeQ2KScalar } from "../../src/quant/ggml/q2_k.js";
import { q3kFinish, q3kSearch, quantizeQ3KScalar } from "../../src/quant/ggml/q3_k.js";
import { Q4_K_FAMILY } from "../../src/quant/ggml/q4_k.js";
import { Q5_K_FAMILY } from "../../src/quant/ggml/q5_k.js";
import { q6kFinish, q6kSearch, quantizeQ6KScalar } from "../../src/quant/ggml/q6_k.js";
import { Rng } from "../../fixtures/rng.js";
import { ggmlOracle } from "../support/ggml-oracle.js";

type Step = (s: KQuantScratch, src: Float32Array, xo: number) => void;
type Finish = (s: KQuantScratch, src: Float32Array, xo: number, dst: Uint8Array, o: number) => void;

const CASES: { type: GGMLType; size: number; scalar: (src: Float32Array, dst: Uint8Array, s?: KQuantScratch) => void; search: Step; finish: Finish }[] = [
  { type: GGMLType.Q2_K, size: 84, scalar: quantizeQ2KScalar, search: q2kSearch, finish: q2kFinish },
  { type: GGMLType.Q3_K, size: 110, scalar: quantizeQ3KScalar, search: q3kSearch, finish: q3kFinish },
  { type: GGMLType.Q4_K, size: 144, scalar: Q4_K_FAMILY.scalar, search: Q4_K_FAMILY.search, finish: Q4_K_FAMILY.finish },
  { type: GGMLType.Q5_K, size: 176, scalar: Q5_K_FAMILY.scalar, search: Q5_K_FAMILY.search, finish: Q5_K_FAMILY.finish },
  { type: GGMLType.Q6_K, size: 210, scalar: quantizeQ6KScalar, search: q6kSearch, finish: q6kFinish },
];

const NB = 6;
/** two tensors unlike each other: narrow normals, and wide ones with a positive offset and outliers */
const rng = new Rng(19);
const A = rng.normals(256 * NB, 0, 0.02);
const B = rng.normals(256 * NB, 0.3, 1.5);
for (let i = 0; i < B.length; i += 37) B[i] = B[i]! * 40;

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** one quantization as a task that yields between the two steps of every super-block */
async function task(c: (typeof CASES)[number], src: Float32Array, s: KQuantScratch, log: string[], tag: string): Promise<Uint8Array> {
  const out = new Uint8Array(NB * c.size);
  for (let b = 0; b < NB; ++b) {
    c.search(s, src, 256 * b);
    log.push(`search ${tag}${b}`);
    await tick();
    c.finish(s, src, 256 * b, out, c.size * b);
    log.push(`finish ${tag}${b}`);
    await tick();
  }
  return out;
}

for (const c of CASES) {
  test(`${typeName(c.type)}: two quantizations interleaved block step by block step, each with its scratch, give the isolated calls' bytes (and ggml's)`, async () => {
    const oracle = ggmlOracle();
    const refA = oracle.quantizeChunk(c.type, A, 256);
    const refB = oracle.quantizeChunk(c.type, B, 256);
    const isoA = new Uint8Array(refA.length);
    const isoB = new Uint8Array(refB.length);
    c.scalar(A, isoA);
    c.scalar(B, isoB);
    assert.deepEqual(isoA, refA, "isolated A = ggml");
    assert.deepEqual(isoB, refB, "isolated B = ggml");
    assert.notDeepEqual(refA.subarray(0, c.size), refB.subarray(0, c.size), "the two tensors' blocks differ");

    const log: string[] = [];
    const [outA, outB] = await Promise.all([task(c, A, new KQuantScratch(), log, "A"), task(c, B, new KQuantScratch(), log, "B")]);
    assert.deepEqual(log.slice(0, 4), ["search A0", "search B0", "finish A0", "finish B0"], "the steps did interleave");
    assert.deepEqual(outA, isoA, "interleaved A = isolated A");
    assert.deepEqual(outB, isoB, "interleaved B = isolated B");

    // one scratch reused: A, then B, then A again
    const s = new KQuantScratch();
    const again = [A, B, A].map((x) => {
      const out = new Uint8Array(NB * c.size);
      c.scalar(x, out, s);
      return out;
    });
    assert.deepEqual(again, [isoA, isoB, isoA], "a reused scratch carries nothing from one call to the next");
  });
}
