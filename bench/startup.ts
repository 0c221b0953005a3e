/**
 * Startup cost of the built CLI: `ggufy --help` and `ggufy convert DIR --dry-run` on a checkpoint with
 * the real 151k Qwen2 vocabulary (vocab.json + merges.txt + Qwen2.5's added tokens, tiny weights),
 * each against a baseline measured in the same run: `node -e 0` (bare process start).
 *
 *   npx tsc -p . && node dist/bench/startup.js [--runs 5] [--dir CHECKPOINT] [--compare OTHER/bin/ggufy.js]
 *
 * Wall and CPU (user + sys) seconds of each child come from /usr/bin/time (GNU time); the medians of
 * --runs runs are printed with their ratio to the baseline. CPU seconds are the steadier figure on a
 * shared machine. Without --dir a checkpoint is written to a temporary folder and removed afterwards.
 * --compare runs another build's CLI (e.g. an earlier commit's tree, built) through the same cases,
 * interleaved with this one's, so "before" and "after" share the machine's load.
 */
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { writeTinyQwen2 } from "../fixtures/qwen2.js";

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const runs = Number(opt("--runs") ?? 5);
if (!(Number.isInteger(runs) && runs > 0)) throw new Error("--runs needs a positive integer");
const TIME = "/usr/bin/time";
if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed for the children's CPU seconds`);

// dist/bench/startup.js → repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "bin", "ggufy.js");
const other = opt("--compare");
if (other !== undefined && !existsSync(other)) throw new Error(`--compare ${other}: not found`);

let dir = opt("--dir");
let temp: string | undefined;
if (!dir) {
  temp = await mkdtemp(path.join(os.tmpdir(), "ggufy-startup-"));
  dir = path.join(temp, "qwen2-151k");
  await writeTinyQwen2(dir, { hidden: 64, heads: 2, kvHeads: 1, ffn: 128, layers: 1, dtype: "BF16" });
}

interface Sample {
  wall: number;
  cpu: number;
}

function once(args: string[]): Sample {
  const r = spawnSync(TIME, ["-f", "GGUFY_TIME %e %U %S", process.execPath, ...args], { encoding: "utf8", cwd: root });
  const m = /GGUFY_TIME (\S+) (\S+) (\S+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${args.join(" ")} failed (status ${r.status}): ${r.stderr.slice(-400)}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]) };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

const cases: [string, string[]][] = [["node -e 0 (baseline)", ["-e", "0"]]];
for (const [label, b] of [...(other ? [["compared: ", path.resolve(other)]] : []), ["", bin]]) {
  cases.push([`${label}ggufy --help`, [b!, "--help"]]);
  cases.push([`${label}ggufy convert --dry-run`, [b!, "convert", dir, "--dry-run", "--quiet"]]);
}
const samples = new Map<string, Sample[]>(cases.map(([k]) => [k, []]));
const load0 = os.loadavg()[0]!;
// interleaved, so that a burst of load from elsewhere hits every case alike
for (let i = 0; i < runs; i++) for (const [k, args] of cases) samples.get(k)!.push(once(args));

const base = samples.get(cases[0][0])!;
const bw = median(base.map((s) => s.wall));
const bc = median(base.map((s) => s.cpu));
console.log(`startup, median of ${runs} runs (checkpoint ${dir}; os load ${load0.toFixed(1)} before, ${os.loadavg()[0]!.toFixed(1)} after, on ${os.cpus().length} cores)`);
for (const [k] of cases) {
  const s = samples.get(k)!;
  const w = median(s.map((x) => x.wall));
  const c = median(s.map((x) => x.cpu));
  console.log(`  ${k.padEnd(36)} wall ${w.toFixed(2)} s (${(w / bw).toFixed(1)}× baseline)   cpu ${c.toFixed(2)} s (${(c / bc).toFixed(1)}× baseline)`);
}
if (temp) rmSync(temp, { recursive: true, force: true });
