/**
 * Seeded fuzzing of the safetensors, index and GGUF parsers (see fuzz-lib.ts), and of paths, links,
 * FIFOs, signal timing and concurrent runs around them (fuzz-fs.ts; GGUFY_FUZZ_FS_CASES,
 * GGUFY_FUZZ_FS_CHILD_CASES scale it). Every case must end
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
import { fsSummary, fuzzFilesystem } from "./fuzz-fs.js";

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

// issue 15: names, links, FIFOs (in-process) and signal timing, concurrency (child processes); see fuzz-fs.ts
const FS_CASES = Number(process.env["GGUFY_FUZZ_FS_CASES"] ?? 48);
const FS_CHILD_CASES = Number(process.env["GGUFY_FUZZ_FS_CHILD_CASES"] ?? 9);
test(`filesystem: ${FS_CASES} name/link/FIFO cases, ${FS_CHILD_CASES} signal/concurrency cases`, async () => {
  const s = await fuzzFilesystem({ seed: SEED + 3, cases: FS_CASES, childCases: FS_CHILD_CASES, dir: path.join(scratch, "fs") });
  console.log(`# ${fsSummary(s)}`);
  for (const f of s.failures.slice(0, 10)) console.log(`#   case ${f.case} [${f.kind}] ${f.label}: ${f.problem}`);
  assert.equal(s.cases, FS_CASES + FS_CHILD_CASES);
  assert.deepEqual(s.failures.slice(0, 5), [], `${s.failures.length} failing cases`);
  assert.ok(s.slowestMs <= 30_000, `slowest case ${s.slowestMs} ms`);
  // 1 s on an idle machine; a signal that lands while ggufy's modules are still being evaluated waits for
  // the evaluation (~0.3 s idle, over 1 s on a heavily shared 2-core box), hence the env override
  const signalMs = Number(process.env["GGUFY_FUZZ_SIGNAL_MS"] ?? 2500);
  assert.ok(s.slowestSignalMs <= signalMs, `slowest signal answer ${s.slowestSignalMs} ms`);
  assert.equal(s.exitCodes["70"] ?? 0, 0);
});
