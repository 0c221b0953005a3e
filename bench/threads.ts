/**
 * Two cores really used (issue 19): `ggufy convert --outtype Q4_K_M` with `--threads 1` and then
 * `--threads 2`, back to back in one script, on the same checkpoint; the figure is the wall-time
 * ratio threads 1 / threads 2 (≥ 1.8 asked for), printed with each run's CPU seconds (user + sys of
 * the child, GNU time), peak RSS and the load average before → after, since the machine is shared.
 * The two outputs must be byte-identical (checked with cmp).
 *
 *   npx tsc -p . && nice -n 5 node dist/bench/threads.js --dir CHECKPOINT [--runs 2] [--outtype Q4_K_M]
 *                                                       [--out DIR] [--profile]
 *
 * --profile passes GGUFY_PROFILE=1 and prints ggufy's stage breakdown of each run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const dir = opt("--dir");
if (!dir) {
  console.error("usage: threads --dir CHECKPOINT [--runs 2] [--outtype Q4_K_M] [--out DIR] [--profile]");
  process.exit(64);
}
const runs = Number(opt("--runs") ?? 2);
if (!(Number.isInteger(runs) && runs > 0)) throw new Error("--runs needs a positive integer");
const outtype = opt("--outtype") ?? "Q4_K_M";
const profile = argv.includes("--profile");
const TIME = "/usr/bin/time";
if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed for the children's CPU seconds`);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "bin", "ggufy.js");
const model = path.resolve(dir);
const out = path.resolve(opt("--out") ?? path.join(path.dirname(model), "threads-out"));
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ");

interface Timed {
  wall: number;
  cpu: number;
  rssMiB: number;
  stderr: string;
}

function convert(threads: number, file: string): Timed {
  const tf = path.join(out, ".time");
  const env = { ...process.env, ...(profile ? { GGUFY_PROFILE: "1" } : {}) };
  const t0 = performance.now();
  const r = spawnSync(TIME, ["-f", "%U %S %M", "-o", tf, process.execPath, bin, "convert", model, "--outtype", outtype, "--outfile", file, "--threads", String(threads), "--quiet", "--force"], { encoding: "utf8", env, maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`ggufy --threads ${threads} failed (${r.status}): ${r.stderr}`);
  const [u, s, m] = spawnSync("tail", ["-n1", tf], { encoding: "utf8" }).stdout.trim().split(/\s+/).map(Number);
  return { wall, cpu: u! + s!, rssMiB: m! / 1024, stderr: r.stderr };
}

mkdirSync(out, { recursive: true });
console.log(`checkpoint ${model} → ${outtype}; node ${process.version}, ${os.cpus().length} cores`);
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
  console.log(`  --threads 1: ${a.wall.toFixed(2)} s wall, ${a.cpu.toFixed(2)} s CPU, ${a.rssMiB.toFixed(0)} MiB peak RSS   load ${l0} → ${l1}`);
  console.log(`  --threads 2: ${b.wall.toFixed(2)} s wall, ${b.cpu.toFixed(2)} s CPU (${(b.cpu / b.wall).toFixed(2)} cores busy), ${b.rssMiB.toFixed(0)} MiB peak RSS   load ${l1} → ${l2}`);
  console.log(`  threads 1 / threads 2 wall: ${ratio.toFixed(2)}×; CPU 2 / CPU 1: ${(b.cpu / a.cpu).toFixed(2)}; outputs ${same ? "byte-identical" : "DIFFER"}`);
  if (profile) console.log(`  profile, --threads 1:\n${a.stderr.trimEnd().replace(/^/gm, "    ")}\n  profile, --threads 2:\n${b.stderr.trimEnd().replace(/^/gm, "    ")}`);
  if (!same) process.exitCode = 1;
  rmSync(f1, { force: true });
  rmSync(f2, { force: true });
}
rmSync(out, { recursive: true, force: true });
const sorted = [...ratios].sort((x, y) => x - y);
console.log(`ratio over ${runs} run(s): median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, min ${sorted[0]!.toFixed(2)}, max ${sorted[sorted.length - 1]!.toFixed(2)}`);
