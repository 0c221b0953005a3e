/**
 * The copy path against the disk (issue 19): in one script, back to back, `cp` + `sync` of a
 * checkpoint's safetensors, then `ggufy convert --outtype f16` (a child process: its start, the
 * vocabulary, every tensor, the fsync and rename) + `sync` of the output; the throughput of each is
 * input bytes / wall seconds, and their ratio is the figure the issue asks for (≥ 0.5 on the 1.6 GB
 * Qwen2 checkpoint, ≥ 0.8 on the 15 GB Qwen2-7B-shaped one).
 *
 *   npx tsc -p . && nice -n 5 node dist/bench/copy-path.js --dir CHECKPOINT [--runs 3] [--out DIR]
 *                                                          [--outtype f16] [--threads N] [--profile]
 *
 * The page cache is warmed first (one untimed read of the shards), as in the measurement; each
 * run removes the previous copies before it starts (not timed). Wall, CPU (user + sys) and peak RSS of
 * each child come from GNU time; the load average (1/5/15 min) is printed before and after each run,
 * since the machine is shared. --profile passes GGUFY_PROFILE=1 to ggufy, whose stage breakdown then
 * appears on stderr (printed here).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
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
  console.error("usage: copy-path --dir CHECKPOINT [--runs 3] [--out DIR] [--outtype f16] [--threads N] [--profile]");
  process.exit(64);
}
const runs = Number(opt("--runs") ?? 3);
if (!(Number.isInteger(runs) && runs > 0)) throw new Error("--runs needs a positive integer");
const outtype = opt("--outtype") ?? "f16";
const threads = opt("--threads");
const profile = argv.includes("--profile");
const TIME = "/usr/bin/time";
if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed for the children's CPU seconds`);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "bin", "ggufy.js");
const model = path.resolve(dir);
const out = path.resolve(opt("--out") ?? path.join(path.dirname(model), "copy-path-out"));
const shards = readdirSync(model).filter((f) => f.endsWith(".safetensors")).sort().map((f) => path.join(model, f));
if (shards.length === 0) throw new Error(`no .safetensors in ${model}`);
const bytes = shards.reduce((a, f) => a + statSync(f).size, 0);
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ");

interface Timed {
  wall: number;
  cpu: number;
  rssMiB: number;
  stderr: string;
}

/** Run `cmd` under GNU time; wall measured here (the child's whole life), CPU and RSS from time. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Timed {
  const tf = path.join(out, ".time");
  const t0 = performance.now();
  const r = spawnSync(TIME, ["-f", "%U %S %M", "-o", tf, cmd, ...args], { encoding: "utf8", env, maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  const [u, s, m] = spawnSync("tail", ["-n1", tf], { encoding: "utf8" }).stdout.trim().split(/\s+/).map(Number);
  return { wall, cpu: u! + s!, rssMiB: m! / 1024, stderr: r.stderr };
}

const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;
const mbps = (t: Timed): string => `${(bytes / 1e6 / t.wall).toFixed(0)} MB/s`;
const describe = (t: Timed): string => `${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU, ${t.rssMiB.toFixed(0)} MiB peak RSS → ${mbps(t)}`;

mkdirSync(out, { recursive: true });
const cpDir = path.join(out, "cp");
const gguf = path.join(out, `out-${outtype}.gguf`);
const clean = (): void => {
  rmSync(cpDir, { recursive: true, force: true });
  rmSync(gguf, { force: true });
  mkdirSync(cpDir, { recursive: true });
  spawnSync("sync", [out]); // the deletions' metadata is not charged to the next run
};

console.log(`checkpoint ${model}: ${shards.length} shard(s), ${(bytes / 1e9).toFixed(2)} GB; outputs in ${out}; node ${process.version}, ${os.cpus().length} cores`);
// warm the page cache (the figures are warm-cache)
spawnSync("sh", ["-c", `cat ${shards.map(q).join(" ")} > /dev/null`]);
const ratios: number[] = [];
for (let k = 0; k < runs; k++) {
  clean();
  const l0 = load();
  const cp = timed("sh", ["-c", `cp ${shards.map(q).join(" ")} ${q(cpDir)}/ && sync ${shards.map((s) => q(path.join(cpDir, path.basename(s)))).join(" ")}`]);
  const l1 = load();
  clean();
  const env = { ...process.env, ...(profile ? { GGUFY_PROFILE: "1" } : {}) };
  const args = [bin, "convert", model, "--outtype", outtype, "--outfile", gguf, "--quiet", ...(threads ? ["--threads", threads] : [])];
  const g = timed("sh", ["-c", `${q(process.execPath)} ${args.map(q).join(" ")} && sync ${q(gguf)}`], env);
  const l2 = load();
  const ratio = cp.wall / g.wall;
  ratios.push(ratio);
  console.log(`run ${k + 1}:`);
  console.log(`  cp + sync:               ${describe(cp)}   load ${l0} → ${l1}`);
  console.log(`  ggufy --outtype ${outtype} + sync: ${describe(g)}   load ${l1} → ${l2}   (output ${(statSync(gguf).size / 1e9).toFixed(2)} GB)`);
  console.log(`  ggufy throughput / cp throughput: ${ratio.toFixed(2)}`);
  if (profile && g.stderr.trim()) console.log(g.stderr.trimEnd().replace(/^/gm, "    "));
}
clean();
rmSync(out, { recursive: true, force: true });
const sorted = [...ratios].sort((a, b) => a - b);
console.log(`ratio over ${runs} run(s): median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, min ${sorted[0]!.toFixed(2)}, max ${sorted[sorted.length - 1]!.toFixed(2)}`);
