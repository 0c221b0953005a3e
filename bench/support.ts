/**
 * Shared pieces of the end-to-end benches (copy-path.ts, threads.ts): argument lookup, the load average,
 * and a child process timed under GNU time (wall measured here, user/system CPU and peak RSS from time).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** `--name VALUE` and `--flag` lookups over `argv` (default: this process's arguments). */
export function cliArgs(argv: readonly string[] = process.argv.slice(2)): { opt(name: string): string | undefined; flag(name: string): boolean; int(name: string, dflt: number): number } {
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    opt,
    flag: (name) => argv.includes(name),
    int: (name, dflt) => {
      const v = Number(opt(name) ?? dflt);
      if (!(Number.isInteger(v) && v > 0)) throw new Error(`${name} needs a positive integer`);
      return v;
    },
  };
}

/** The 1/5/15-minute load average, e.g. "1.20 0.90 0.75". */
export const loadAvg = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ");

/** The repository root (bench scripts run from dist/bench/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** bin/ggufy.js of this checkout */
export const ggufyBin = path.join(repoRoot, "bin", "ggufy.js");

export interface Timed {
  /** wall seconds of the child's whole life */
  wall: number;
  /** user + system CPU seconds of the child and its children */
  cpu: number;
  user: number;
  sys: number;
  rssMiB: number;
  /** minor page faults, and involuntary / voluntary context switches (GNU time %R %c %w) */
  minorFaults: number;
  involuntary: number;
  voluntary: number;
  stderr: string;
}

const TIME = "/usr/bin/time";

/** Run `cmd args` under GNU time (its report goes to `timeFile`); throws when the child fails. */
export function timedChild(cmd: string, args: readonly string[], timeFile: string, env: NodeJS.ProcessEnv = process.env): Timed {
  if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed for the children's CPU seconds`);
  const t0 = performance.now();
  const r = spawnSync(TIME, ["-f", "%U %S %M %R %c %w", "-o", timeFile, cmd, ...args], { encoding: "utf8", env, maxBuffer: 64 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  const last = readFileSync(timeFile, "utf8").trim().split("\n").pop()!;
  const [u, s, m, faults, inv, vol] = last.trim().split(/\s+/).map(Number);
  return { wall, cpu: u! + s!, user: u!, sys: s!, rssMiB: m! / 1024, minorFaults: faults!, involuntary: inv!, voluntary: vol!, stderr: r.stderr };
}

/** A shell-quoted word. */
export const shq = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/** "median m, min a, max b" of some ratios. */
export function ratioSummary(ratios: readonly number[]): string {
  const sorted = [...ratios].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, min ${sorted[0]!.toFixed(2)}, max ${sorted[sorted.length - 1]!.toFixed(2)}`;
}

/** A seeded xorshift32 stream of uniforms in (0, 1). */
export function uniform01(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}

/** Seeded N(0, 0.02²) data (xorshift32 + Box–Muller). */
export function normalData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const next = uniform01(seed);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    out[i] = 0.02 * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = 0.02 * r * Math.sin(t);
  }
  return out;
}
