/**
 * Long fuzz campaign over the safetensors, index and GGUF parsers (the CI test runs 2,000 cases of each).
 *
 *   node dist/bench/fuzz.js [cases=20000] [seed=1] [--keep] [--samples]
 *
 * Prints one summary line per parser; exits 1 on any failure (kept under <scratch>/failures with --keep).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fuzzGguf, fuzzIndex, fuzzSafetensors, summary, type FuzzStats } from "../test/hostile/fuzz-lib.js";

const args = process.argv.slice(2);
const pos = args.filter((a) => !a.startsWith("--"));
const cases = Number(pos[0] ?? 20000);
const seed = Number(pos[1] ?? 1);
const keep = args.includes("--keep");
const scratch = await mkdtemp(path.join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "ggufy-fuzz-long-"));
let bad = 0;
const report = (name: string, s: FuzzStats): void => {
  console.log(summary(name, s));
  if (args.includes("--samples")) for (const [code, msgs] of Object.entries(s.samples)) for (const m of msgs) console.log(`  ${code}: ${m}`);
  for (const f of s.failures.slice(0, 20)) console.log(`  FAIL #${f.case} [${f.mutation}] ${f.problem}${f.file ? ` (kept: ${f.file})` : ""}`);
  for (const v of s.allocViolations.slice(0, 20)) console.log(`  ALLOC #${v.case} [${v.mutation}] ${v.what}(${v.size}) > ${v.limit}`);
  bad += s.failures.length + s.allocViolations.length;
};
try {
  const opts = { cases, dir: scratch, keepFailures: keep };
  report("safetensors", await fuzzSafetensors({ ...opts, seed, dir: path.join(scratch, "st") }));
  report("gguf", await fuzzGguf({ ...opts, seed: seed + 1, dir: path.join(scratch, "gguf") }));
  report("index", await fuzzIndex({ ...opts, seed: seed + 2, cases: Math.ceil(cases / 8), dir: path.join(scratch, "index"), outside: path.join(scratch, "outside") }));
} finally {
  if (!keep || bad === 0) await rm(scratch, { recursive: true, force: true });
}
process.exitCode = bad ? 1 : 0;
