/**
 * Peak memory of `convert --lora` (issue 16): a rank-64 PEFT adapter on every Linear (PEFT's "all-linear":
 * LLM q/k/v/o/gate/up/down, SigLIP q/k/v/out/fc1/fc2, resampler kv_proj) merged into the full-size
 * synthetic MiniCPM-V-2_6-int4 checkpoint (bench/gen-fullsize.ts), against the same conversion without it.
 * Both runs under `/usr/bin/time -v` (peak RSS = "Maximum resident set size"), back to back.
 *
 *   node dist/bench/lora-memory.js --data DIR [--layers N] [--rank 64] [--outtype Q4_K_M] [--threads 2]
 *
 * DIR/minicpmv-int4 (or DIR/minicpmv-int4-L<N>) is generated when missing (~6 GB), then the adapter
 * DIR/lora-r<rank>(-L<N>) (bf16, as PEFT saves a bf16 training run; ~0.8 GB at rank 64), then the two
 * conversions (outputs in DIR/out-lora, overwritten). Target: peak RSS with / without ≤ 1.2.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SourceCheckpoint } from "../src/source/checkpoint.js";
import { DECODERS } from "../src/source/registry.js";
import { writePeftAdapter } from "../fixtures/peft.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, "../../bin/ggufy.js");

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("close", (c) => resolve({ code: c ?? -1, stderr: err }));
  });
}

interface Timed {
  wall: number;
  rssKiB: number;
  user: number;
  load0: string;
  load1: string;
}

const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ");

async function timed(args: string[]): Promise<Timed> {
  const load0 = load();
  const r = await run("/usr/bin/time", ["-v", process.execPath, ...args]);
  if (r.code !== 0) throw new Error(`exit ${r.code}:\n${r.stderr.slice(-3000)}`);
  const num = (re: RegExp): number => Number(re.exec(r.stderr)?.[1] ?? NaN);
  const w = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(r.stderr)?.[1] ?? "";
  const wall = w.split(":").map(Number).reduce((a, b) => a * 60 + b, 0);
  return { wall, rssKiB: num(/Maximum resident set size \(kbytes\): (\d+)/), user: num(/User time \(seconds\): ([\d.]+)/), load0, load1: load() };
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: { data: { type: "string" }, layers: { type: "string" }, rank: { type: "string" }, outtype: { type: "string" }, threads: { type: "string" } } });
  if (!v.data) throw new Error("usage: lora-memory --data DIR [--layers N] [--rank 64] [--outtype Q4_K_M] [--threads 2]");
  const rank = Number(v.rank ?? 64);
  const outtype = v.outtype ?? "Q4_K_M";
  const threads = v.threads ?? "2";
  const suffix = v.layers ? `-L${v.layers}` : "";
  const base = path.join(v.data, `minicpmv-int4${suffix}`);
  if (!existsSync(path.join(base, "config.json"))) {
    console.log(`generating ${base} …`);
    const g = await run(process.execPath, [path.join(here, "gen-fullsize.js"), "--out", base, ...(v.layers ? ["--layers", v.layers] : [])]);
    if (g.code !== 0) throw new Error(`gen-fullsize failed:\n${g.stderr.slice(-3000)}`);
  }
  const adapter = path.join(v.data, `lora-r${rank}${suffix}`);
  if (!existsSync(path.join(adapter, "adapter_config.json"))) {
    console.log(`writing the rank-${rank} all-linear adapter ${adapter} …`);
    const src = await SourceCheckpoint.open(base, DECODERS);
    const shapes = new Map(src.names().map((n) => [n, [...src.get(n)!.shape]]));
    await src.close();
    await writePeftAdapter(adapter, { base: shapes, targetModules: "all-linear", r: rank, loraAlpha: 2 * rank, dtype: "BF16", aStd: 0.02, bStd: 0.002, seed: 64 });
  }
  const out = path.join(v.data, "out-lora");
  mkdirSync(out, { recursive: true });
  const args = (label: string, extra: string[]): string[] => [cli, "convert", base, "--outtype", outtype, "--outfile", path.join(out, `${label}.gguf`), "--mmproj-outfile", path.join(out, `${label}-mmproj.gguf`), "--threads", threads, "--force", "--quiet", ...extra];
  const fmt = (t: Timed): string => `wall ${t.wall.toFixed(1)} s, user ${t.user.toFixed(1)} s, peak RSS ${(t.rssKiB / 1024).toFixed(0)} MiB, load ${t.load0} → ${t.load1}`;
  const plain = await timed(args("plain", []));
  console.log(`- without adapter: ${fmt(plain)}`);
  const merged = await timed(args("merged", ["--lora", adapter]));
  console.log(`- with the rank-${rank} adapter: ${fmt(merged)}`);
  console.log(`- peak RSS with / without: ${(merged.rssKiB / plain.rssKiB).toFixed(3)} (target ≤ 1.2)`);
}

await main();
