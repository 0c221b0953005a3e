/**
 * Seeded fuzzing of the safetensors, index and GGUF parsers (see fuzz-lib.ts). Every case must end
 * in an accepted file or a GgufyError naming the file, within 2 s, without an allocation larger
 * than the input file. GGUFY_FUZZ_CASES / GGUFY_FUZZ_SEED scale or vary the run; bench/fuzz.ts
 * runs longer campaigns.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { existsSync } from "node:fs";
import path from "node:path";
import { fuzzGguf, fuzzIndex, fuzzSafetensors, summary, type FuzzStats } from "./fuzz-lib.js";

const CASES = Number(process.env["GGUFY_FUZZ_CASES"] ?? 2000);
const SEED = Number(process.env["GGUFY_FUZZ_SEED"] ?? 20240601);
// thousands of small files: a RAM-backed folder when there is one
const scratch = await mkdtemp(path.join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "ggufy-fuzz-"));
after(() => rm(scratch, { recursive: true, force: true }));

function assertClean(name: string, s: FuzzStats, minCases: number): void {
  console.log(`# ${summary(name, s)}`);
  assert.ok(s.cases >= minCases, `${name}: only ${s.cases} cases ran`);
  assert.deepEqual(s.failures.slice(0, 5), [], `${name}: ${s.failures.length} failing cases`);
  assert.deepEqual(s.allocViolations.slice(0, 5), [], `${name}: allocations larger than the input file`);
  assert.ok(s.slowest.ms < 2000, `${name}: slowest case took ${s.slowest.ms} ms`);
  // the mutations must exercise both outcomes
  assert.ok(s.rejected > s.cases / 4, `${name}: only ${s.rejected} rejections`);
}

test(`safetensors headers: ${CASES} mutated files`, async () => {
  const s = await fuzzSafetensors({ seed: SEED, cases: CASES, dir: path.join(scratch, "st") });
  assertClean("safetensors", s, CASES);
  assert.ok(s.accepted > 0, "no mutated file was accepted (the base files must be valid)");
});

test(`GGUF files: ${CASES} mutated files`, async () => {
  const s = await fuzzGguf({ seed: SEED + 1, cases: CASES, dir: path.join(scratch, "gguf") });
  assertClean("gguf", s, CASES);
  assert.ok(s.accepted > 0, "no mutated file was accepted (the base files must be valid)");
});

test(`sharded checkpoints: ${Math.ceil(CASES / 8)} mutated index files`, async () => {
  const s = await fuzzIndex({ seed: SEED + 2, cases: Math.ceil(CASES / 8), dir: path.join(scratch, "index"), outside: path.join(scratch, "outside") });
  assertClean("index", s, Math.ceil(CASES / 8));
});
