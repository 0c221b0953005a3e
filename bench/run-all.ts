/**
 * The issue's end-to-end acceptance measurements, each a ratio of two runs made back to back in
 * this process (baseline and ggufy on the same machine state), with the load average recorded.
 *
 *   node dist/bench/run-all.js --data DIR [--only prep,q4km,llama,threads1,half,f16] [--keep]
 *
 * DIR must hold the generated checkpoints (bench/run-all.sh makes them):
 *   DIR/minicpmv-int4       full-size MiniCPM-V-2_6-int4        (gen-fullsize.js)
 *   DIR/minicpmv-int4-half  the same with 14 LLM / 14 vision layers (--layers 14)
 *   DIR/qwen2-7b-bf16       Qwen2-7B-shaped bf16                (--qwen2-bf16)
 * Outputs go to DIR/out and are deleted after use (unless --keep). Every ggufy run is the real CLI under
 * `/usr/bin/time -v` (peak RSS = "Maximum resident set size"); while it runs, the output folder and the
 * model folder are polled for files other than the outputs and their own `.NAME.ggufy-tmp-PID`
 * (bench/run-all.sh also runs one conversion under strace to list every file it creates).
 * Results are printed as markdown lines and appended to DIR/out/results.md.
 */
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { llamaQuantize } from "../test/support/llama-quantize.js";
import { readGguf, readGgufTensorBytes } from "../src/formats/gguf/reader.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "bin", "ggufy.js");

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const data = path.resolve(arg("data") ?? "/work/bench-data");
const only = new Set((arg("only") ?? "prep,q4km,llama,threads1,half,f16").split(","));
const keep = process.argv.includes("--keep");
const out = path.join(data, "out");
mkdirSync(out, { recursive: true });
const results = path.join(out, "results.md");

const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(" ");
function log(line: string): void {
  console.log(line);
  appendFileSync(results, line + "\n");
}

interface Timed {
  wall: number;
  user: number;
  sys: number;
  rssKiB: number;
  code: number;
  load0: string;
  load1: string;
  strayFiles: string[];
  stderr: string;
}

function parseTime(stderr: string): { wall: number; user: number; sys: number; rssKiB: number } {
  const num = (re: RegExp): number => Number(re.exec(stderr)?.[1] ?? NaN);
  const w = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(stderr)?.[1] ?? "";
  const parts = w.split(":").map(Number);
  const wall = parts.reduce((a, b) => a * 60 + b, 0);
  return { wall, user: num(/User time \(seconds\): ([\d.]+)/), sys: num(/System time \(seconds\): ([\d.]+)/), rssKiB: num(/Maximum resident set size \(kbytes\): (\d+)/) };
}

/** Run a command under /usr/bin/time -v; poll `watch` folders for files not in `allowed`. */
async function timed(cmd: string, args: string[], watch: string[] = [], allowed: (f: string) => boolean = () => false): Promise<Timed> {
  const before = new Set(watch.flatMap((d) => (existsSync(d) ? readdirSync(d).map((f) => path.join(d, f)) : [])));
  const stray = new Set<string>();
  const load0 = load();
  const child = spawn("/usr/bin/time", ["-v", cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  child.stdout.on("data", () => undefined);
  const poll = setInterval(() => {
    for (const d of watch) {
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d)) {
        const p = path.join(d, f);
        if (!before.has(p) && !allowed(p)) stray.add(p);
      }
    }
  }, 250);
  const code = await new Promise<number>((res) => child.on("close", (c) => res(c ?? -1)));
  clearInterval(poll);
  const t = parseTime(err);
  return { ...t, code, load0, load1: load(), strayFiles: [...stray], stderr: err };
}

function ggufyArgs(model: string, outtype: string, outfile: string, mmproj: string, extra: string[] = []): string[] {
  return [cli, "convert", model, "--outtype", outtype, "--outfile", outfile, "--mmproj-outfile", mmproj, "--force", ...extra];
}

function describe(t: Timed): string {
  return `wall ${t.wall.toFixed(1)} s, user ${t.user.toFixed(1)} s, sys ${t.sys.toFixed(1)} s, peak RSS ${(t.rssKiB / 1024).toFixed(0)} MiB, load ${t.load0} → ${t.load1}`;
}

async function ggufy(label: string, model: string, outtype: string, extra: string[] = []): Promise<{ t: Timed; outfile: string; mmproj: string }> {
  const outfile = path.join(out, `${label}.gguf`);
  const mmproj = path.join(out, `${label}-mmproj.gguf`);
  const allowed = (p: string): boolean => {
    const b = path.basename(p);
    return p === outfile || p === mmproj || /^\.(.*)\.ggufy-tmp-\d+$/.test(b) && [outfile, mmproj].some((o) => b.startsWith(`.${path.basename(o)}.ggufy-tmp-`));
  };
  const t = await timed(process.execPath, ggufyArgs(model, outtype, outfile, mmproj, extra), [out, model], allowed);
  if (t.code !== 0) throw new Error(`${label}: ggufy exited ${t.code}\n${t.stderr.slice(-3000)}`);
  log(`- ${label}: \`ggufy convert ${path.basename(model)} --outtype ${outtype} ${extra.join(" ")}\`: ${describe(t)}; stray files: ${t.strayFiles.length ? t.strayFiles.join(", ") : "none"}`);
  return { t, outfile, mmproj };
}

function rm(...files: string[]): void {
  if (keep) return;
  for (const f of files) rmSync(f, { force: true });
}

function dirBytes(dir: string, filter: (f: string) => boolean): number {
  return readdirSync(dir).filter(filter).reduce((a, f) => a + statSync(path.join(dir, f)).size, 0);
}

/** Compare two GGUF files tensor by tensor (name, type, shape, data bytes). */
async function compareTensors(a: string, b: string): Promise<string> {
  const fa = await readGguf(a);
  const fb = await readGguf(b);
  const byName = new Map(fb.tensors.map((t) => [t.name, t] as const));
  let same = 0;
  const diff: string[] = [];
  for (const t of fa.tensors) {
    const u = byName.get(t.name);
    if (!u || u.type !== t.type || u.ne.join() !== t.ne.join() || u.bytes !== t.bytes) {
      diff.push(`${t.name} (type/shape)`);
      continue;
    }
    let equal = true;
    for (let off = 0; off < t.bytes && equal; off += 64 << 20) {
      const len = Math.min(64 << 20, t.bytes - off);
      const x = await readGgufTensorBytes(fa, t, off, len);
      const y = await readGgufTensorBytes(fb, u, off, len);
      equal = Buffer.from(x.buffer, x.byteOffset, x.length).equals(Buffer.from(y.buffer, y.byteOffset, y.length));
    }
    if (equal) same++;
    else diff.push(t.name);
  }
  return `${same} of ${fa.tensors.length} tensors byte-identical (llama's file has ${fb.tensors.length})${diff.length ? `; differ: ${diff.slice(0, 8).join(", ")}${diff.length > 8 ? " …" : ""}` : ""}`;
}

async function main(): Promise<void> {
  const full = path.join(data, "minicpmv-int4");
  const half = path.join(data, "minicpmv-int4-half");
  const qwen = path.join(data, "qwen2-7b-bf16");
  log(`\n## run ${new Date().toISOString()} (${os.cpus().length} cores, ${os.cpus()[0]?.model}, Node ${process.version}), load ${load()}`);
  const f16 = path.join(out, "llm-f16.gguf");
  if (only.has("prep") || (only.has("llama") && !existsSync(f16))) {
    // the F16 GGUF llama-quantize starts from: ggufy's own f16 conversion of the same checkpoint's LLM
    const r = await ggufy("llm-f16", full, "f16");
    rm(r.mmproj);
  }
  let q4: Timed | undefined;
  let q4file: string | undefined;
  if (only.has("q4km")) {
    const r = await ggufy("int4-q4km-t2", full, "Q4_K_M", ["--threads", "2"]);
    q4 = r.t;
    q4file = r.outfile;
    log(`  - output ${(statSync(r.outfile).size / 1e9).toFixed(3)} GB + mmproj ${(statSync(r.mmproj).size / 1e9).toFixed(3)} GB`);
    rm(r.mmproj);
  }
  if (only.has("llama")) {
    const dst = path.join(out, "llama-q4km.gguf");
    const load0 = load();
    const t0 = performance.now();
    await llamaQuantize(f16, dst, { ftype: 15, nthread: 2 });
    const wall = (performance.now() - t0) / 1000;
    log(`- llama_model_quantize (koffi, nthread 2) llm-f16.gguf → Q4_K_M: wall ${wall.toFixed(1)} s, load ${load0} → ${load()}; output ${(statSync(dst).size / 1e9).toFixed(3)} GB`);
    if (q4) log(`  - **ggufy int4 → Q4_K_M (LLM + mmproj) / llama_model_quantize F16 → Q4_K_M (LLM) wall-time ratio: ${(q4.wall / wall).toFixed(2)}** (< 1 means ggufy is faster)`);
    if (q4file && existsSync(q4file)) log(`  - tensor data, ggufy vs llama_model_quantize: ${await compareTensors(q4file, dst)}`);
    rm(dst);
  }
  if (q4file) rm(q4file);
  if (only.has("threads1")) {
    const r = await ggufy("int4-q4km-t1", full, "Q4_K_M", ["--threads", "1"]);
    rm(r.outfile, r.mmproj);
    if (q4) log(`  - **--threads 2 speed-up over --threads 1: ${(r.t.wall / q4.wall).toFixed(2)}×** (CPU time t1 ${(r.t.user + r.t.sys).toFixed(0)} s, t2 ${(q4.user + q4.sys).toFixed(0)} s)`);
  }
  if (only.has("half")) {
    const r = await ggufy("half-q4km-t2", half, "Q4_K_M", ["--threads", "2"]);
    rm(r.outfile, r.mmproj);
    if (q4) log(`  - **peak RSS full / half-depth: ${(q4.rssKiB / r.t.rssKiB).toFixed(3)}** (${(q4.rssKiB / 1024).toFixed(0)} / ${(r.t.rssKiB / 1024).toFixed(0)} MiB)`);
  }
  if (only.has("f16") && existsSync(qwen)) {
    const bytes = dirBytes(qwen, (f) => f.endsWith(".safetensors"));
    const cpDir = path.join(out, "cp");
    const cp = async (): Promise<Timed> => {
      rmSync(cpDir, { recursive: true, force: true });
      mkdirSync(cpDir);
      const shards = readdirSync(qwen).filter((f) => f.endsWith(".safetensors")).map((f) => path.join(qwen, f));
      // cp, then sync of the copies (ggufy fsyncs its output before the rename)
      const t = await timed("sh", ["-c", `cp ${shards.map((s) => `'${s}'`).join(" ")} '${cpDir}/' && sync '${cpDir}'/*`]);
      rmSync(cpDir, { recursive: true, force: true });
      log(`- cp + sync of the ${(bytes / 1e9).toFixed(2)} GB of shards: ${describe(t)} → ${(bytes / 1e6 / t.wall).toFixed(0)} MB/s`);
      return t;
    };
    const c1 = await cp();
    const r = await ggufy("qwen2-f16", qwen, "f16", ["--threads", "2"]);
    log(`  - ggufy f16: ${(bytes / 1e6 / r.t.wall).toFixed(0)} MB/s of input`);
    rm(r.outfile, r.mmproj);
    const c2 = await cp();
    const cpWall = Math.min(c1.wall, c2.wall);
    log(`  - **f16 throughput / cp throughput: ${(cpWall / r.t.wall).toFixed(2)}** (against the faster cp; ${(((c1.wall + c2.wall) / 2) / r.t.wall).toFixed(2)} against their mean)`);
  }
  if (only.has("prep") && !only.has("keepf16")) rm(f16);
}

await main();
