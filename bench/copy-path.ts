/**
 * The copy path against the disk (issue 19): in one script, back to back, `cp` + `sync` of a
 * checkpoint's safetensors, then `ggufy convert --outtype f16` (a child process: its start, the
 * vocabulary, every tensor, the fsync and rename) + `sync` of the output; the throughput of each is
 * input bytes / wall seconds, and their ratio is the figure the issue asks for (≥ 0.5 on the 1.6 GB
 * Qwen2 checkpoint, ≥ 0.8 on the 15 GB Qwen2-7B-shaped one).
 *
 *   npx tsc -p . && nice -n 5 node dist/bench/copy-path.js --dir CHECKPOINT [--runs 3] [--out DIR]
 *                                                          [--outtype f16] [--threads N] [--profile]
 *                                                          [--base OTHER_CHECKOUT/bin/ggufy.js]
 *
 * The page cache is warmed first (one untimed read of the shards), as in the issue's measurement; each
 * run removes the previous copies before it starts (not timed). Wall, CPU (user + sys) and peak RSS of
 * each child come from GNU time; the load average (1/5/15 min) is printed before and after each run,
 * since the machine is shared. --profile passes GGUFY_PROFILE=1 to ggufy, whose stage breakdown then
 * appears on stderr (printed here). --base runs a second build (e.g. a copy of main's bin/ + dist/) right
 * after this one in each run, against the same cp figure: a before/after comparison under the same load.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cliArgs, ggufyBin, loadAvg, ratioSummary, shq as q, timedChild, type Timed } from "./support.js";

const args = cliArgs();
const dir = args.opt("--dir");
if (!dir) {
  console.error("usage: copy-path --dir CHECKPOINT [--runs 3] [--out DIR] [--outtype f16] [--threads N] [--profile] [--base OTHER/bin/ggufy.js]");
  process.exit(64);
}
const runs = args.int("--runs", 3);
const outtype = args.opt("--outtype") ?? "f16";
const threads = args.opt("--threads");
const profile = args.flag("--profile");
/** --base BIN: another build's bin/ggufy.js, run right after this one in every run (before/after in one script) */
const baseArg = args.opt("--base");
const base = baseArg ? path.resolve(baseArg) : undefined;
const model = path.resolve(dir);
const out = path.resolve(args.opt("--out") ?? path.join(path.dirname(model), "copy-path-out"));
const shards = readdirSync(model).filter((f) => f.endsWith(".safetensors")).sort().map((f) => path.join(model, f));
if (shards.length === 0) throw new Error(`no .safetensors in ${model}`);
const bytes = shards.reduce((a, f) => a + statSync(f).size, 0);
const load = loadAvg;

/** Run `cmd` under GNU time; wall measured here (the child's whole life), CPU and RSS from time. */
const timed = (cmd: string, argv: string[], env: NodeJS.ProcessEnv = process.env): Timed => timedChild(cmd, argv, path.join(out, ".time"), env);

const mbps = (t: Timed): string => `${(bytes / 1e6 / t.wall).toFixed(0)} MB/s`;
const describe = (t: Timed): string => `${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU (user ${t.user.toFixed(2)}, sys ${t.sys.toFixed(2)}), ${t.rssMiB.toFixed(0)} MiB peak RSS → ${mbps(t)}`;

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
// warm the page cache (the issue's figures are warm-cache)
spawnSync("sh", ["-c", `cat ${shards.map(q).join(" ")} > /dev/null`]);
const ratios: number[] = [];
const baseRatios: number[] = [];
/** `ggufy convert` of `bin` + sync of its output, timed */
const ggufyRun = (bin: string): Timed => {
  const env = { ...process.env, ...(profile ? { GGUFY_PROFILE: "1" } : {}) };
  const argv = [bin, "convert", model, "--outtype", outtype, "--outfile", gguf, "--quiet", ...(threads ? ["--threads", threads] : [])];
  return timed("sh", ["-c", `${q(process.execPath)} ${argv.map(q).join(" ")} && sync ${q(gguf)}`], env);
};
for (let k = 0; k < runs; k++) {
  clean();
  const l0 = load();
  const cp = timed("sh", ["-c", `cp ${shards.map(q).join(" ")} ${q(cpDir)}/ && sync ${shards.map((s) => q(path.join(cpDir, path.basename(s)))).join(" ")}`]);
  const l1 = load();
  clean();
  const g = ggufyRun(ggufyBin);
  const l2 = load();
  const ratio = cp.wall / g.wall;
  ratios.push(ratio);
  console.log(`run ${k + 1}:`);
  console.log(`  cp + sync:               ${describe(cp)}   load ${l0} → ${l1}`);
  console.log(`  ggufy --outtype ${outtype} + sync: ${describe(g)}   load ${l1} → ${l2}   (output ${(statSync(gguf).size / 1e9).toFixed(2)} GB)`);
  console.log(`  ggufy throughput / cp throughput: ${ratio.toFixed(2)}`);
  if (profile && g.stderr.trim()) console.log(g.stderr.trimEnd().replace(/^/gm, "    "));
  if (base) {
    clean();
    const b = ggufyRun(base);
    const l3 = load();
    baseRatios.push(cp.wall / b.wall);
    console.log(`  base ${base} + sync: ${describe(b)}   load ${l2} → ${l3}; its ratio to cp ${(cp.wall / b.wall).toFixed(2)}; this build / base wall ${(b.wall / g.wall).toFixed(2)}×`);
    if (profile && b.stderr.trim()) console.log(b.stderr.trimEnd().replace(/^/gm, "    "));
  }
}
clean();
rmSync(out, { recursive: true, force: true });
console.log(`ratio over ${runs} run(s): ${ratioSummary(ratios)}${base ? `; base build: ${ratioSummary(baseRatios)}` : ""}`);
