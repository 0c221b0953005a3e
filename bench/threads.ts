/**
 * Two cores really used (issue 19): `ggufy convert --outtype Q4_K_M` with `--threads 1` and then
 * `--threads 2`, back to back in one script, on the same checkpoint; the figure is the wall-time
 * ratio threads 1 / threads 2 (≥ 1.8 asked for), printed with each run's CPU seconds (user + sys of
 * the child, GNU time), peak RSS and the load average before → after, since the machine is shared.
 * The two outputs must be byte-identical (checked with cmp).
 *
 *   npx tsc -p . && nice -n 5 node dist/bench/threads.js --dir CHECKPOINT [--runs 2] [--outtype Q4_K_M]
 *                                                       [--out DIR] [--profile] [--bin OTHER/bin/ggufy.js]
 *
 * --profile passes GGUFY_PROFILE=1 and prints ggufy's stage breakdown of each run.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cliArgs, ggufyBin, loadAvg, ratioSummary, timedChild, type Timed } from "./support.js";

const args = cliArgs();
const dir = args.opt("--dir");
if (!dir) {
  console.error("usage: threads --dir CHECKPOINT [--runs 2] [--outtype Q4_K_M] [--out DIR] [--profile] [--bin OTHER/bin/ggufy.js]");
  process.exit(64);
}
const runs = args.int("--runs", 2);
const outtype = args.opt("--outtype") ?? "Q4_K_M";
const profile = args.flag("--profile");
const model = path.resolve(dir);
const out = path.resolve(args.opt("--out") ?? path.join(path.dirname(model), "threads-out"));
const load = loadAvg;
/** --bin: another build's bin/ggufy.js (a before/after comparison) */
const bin = path.resolve(args.opt("--bin") ?? ggufyBin);

function convert(threads: number, file: string): Timed {
  const env = { ...process.env, ...(profile ? { GGUFY_PROFILE: "1" } : {}) };
  return timedChild(process.execPath, [bin, "convert", model, "--outtype", outtype, "--outfile", file, "--threads", String(threads), "--quiet", "--force"], path.join(out, ".time"), env);
}

mkdirSync(out, { recursive: true });
console.log(`checkpoint ${model} → ${outtype} (${bin}); node ${process.version}, ${os.cpus().length} cores`);
const ratios: number[] = [];
for (let k = 0; k < runs; k++) {
  const f1 = path.join(out, "t1.gguf");
  const f2 = path.join(out, "t2.gguf");
  const l0 = load();
  const a = convert(1, f1);
  const l1 = load();
  const b = convert(2, f2);
  const l2 = load();
  const same = spawnSync("cmp", ["-s", f1, f2]).status === 0;
  const ratio = a.wall / b.wall;
  ratios.push(ratio);
  console.log(`run ${k + 1}:`);
  console.log(`  --threads 1: ${a.wall.toFixed(2)} s wall, ${a.cpu.toFixed(2)} s CPU (user ${a.user.toFixed(2)}, sys ${a.sys.toFixed(2)}), ${a.rssMiB.toFixed(0)} MiB peak RSS   load ${l0} → ${l1}`);
  console.log(`  --threads 2: ${b.wall.toFixed(2)} s wall, ${b.cpu.toFixed(2)} s CPU (user ${b.user.toFixed(2)}, sys ${b.sys.toFixed(2)}; ${(b.cpu / b.wall).toFixed(2)} cores busy), ${b.rssMiB.toFixed(0)} MiB peak RSS   load ${l1} → ${l2}`);
  console.log(`  minor page faults ${a.minorFaults} / ${b.minorFaults}; context switches involuntary ${a.involuntary} / ${b.involuntary}, voluntary ${a.voluntary} / ${b.voluntary} (threads 1 / 2)`);
  console.log(`  threads 1 / threads 2 wall: ${ratio.toFixed(2)}×; CPU 2 / CPU 1: ${(b.cpu / a.cpu).toFixed(2)}; outputs ${same ? "byte-identical" : "DIFFER"}`);
  if (profile) console.log(`  profile, --threads 1:\n${a.stderr.trimEnd().replace(/^/gm, "    ")}\n  profile, --threads 2:\n${b.stderr.trimEnd().replace(/^/gm, "    ")}`);
  if (!same) process.exitCode = 1;
  rmSync(f1, { force: true });
  rmSync(f2, { force: true });
}
rmSync(out, { recursive: true, force: true });
console.log(`ratio over ${runs} run(s): ${ratioSummary(ratios)}`);
