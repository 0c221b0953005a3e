/**
 * How far two cores can go on this machine (issue 19, "two cores really used"): the same quantization
 * work done by one process, then split over two processes running at once, for ggml's own C
 * quantizer (`ggml_quantize_chunk` through the koffi oracle) and for ggufy's kernel of the same type.
 * Speed-up = wall(one process, 2·reps) / wall(two processes, reps each); it is the ceiling a
 * two-thread conversion can reach here, measured with llama.cpp's own code, so that the pipeline's
 * `--threads 2 / --threads 1` (bench/threads.ts) can be read against it. With `--gguf F16.gguf` it
 * also runs the real `llama_model_quantize` on that file with nthread 1 and then nthread 2
 * (→ `--ftype`, 15 = Q4_K_M), llama.cpp's own thread scaling on the same machine in the same run.
 *
 *   npx tsc -p . && node dist/bench/scaling.js [--types q4_k,q6_k] [--mb 16] [--reps 6] [--gguf F16.gguf --ftype 15]
 */
import { spawn } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cliArgs, loadAvg, normalData } from "./support.js";

const ROW = 4096;
const self = fileURLToPath(import.meta.url);
const args = cliArgs();

interface ChildResult {
  wall: number;
  cpu: number;
}

/** Child: quantize `mb` MiB of N(0, 0.02²) floats `reps` times with `impl`, after a warm-up; prints wall and CPU seconds. */
async function child(impl: string, typeName: string, mb: number, reps: number): Promise<void> {
  const { parseTypeName, codecFor, typeInfo } = await import("../src/quant/ggml/index.js");
  const t = parseTypeName(typeName);
  if (t === undefined) throw new Error(`unknown type ${typeName}`);
  const info = typeInfo(t);
  const n = Math.max(ROW, Math.floor((mb * 1048576) / 4 / ROW) * ROW);
  const x = normalData(n, 0x5eed);
  const dst = new Uint8Array((n / info.blockSize) * info.typeSize);
  let run: () => void;
  if (impl === "ggml") {
    const { ggmlOracle } = await import("../test/support/ggml-oracle.js");
    const lib = ggmlOracle().lib;
    const q = lib.func("size_t ggml_quantize_chunk(int type, const float *src, uint8_t *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)") as (
      type: number, src: Float32Array, dst: Uint8Array, start: number, nrows: number, nPerRow: number, imatrix: null) => number;
    (lib.func("void ggml_quantize_init(int type)") as (type: number) => void)(t);
    run = () => void q(t, x, dst, 0, n / ROW, ROW, null);
  } else {
    const codec = codecFor(t);
    run = () => codec.quantize(x, dst);
  }
  run(); // warm-up (JIT, kernel compilation, ggml's tables)
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) run();
  const c = process.cpuUsage(c0);
  console.log(JSON.stringify({ wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 }));
}

function spawnChild(impl: string, type: string, mb: number, reps: number): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [self, "--child", impl, type, String(mb), String(reps)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.on("close", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop()!) as ChildResult) : reject(new Error(`child ${impl} ${type} exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const types = (args.opt("--types") ?? "q4_k,q6_k").split(",");
  const mb = args.int("--mb", 16);
  const reps = args.int("--reps", 6);
  console.log(`${os.cpus().length} cores (${os.cpus()[0]?.model}), node ${process.version}; ${mb} MiB of float32 per pass; one process × ${2 * reps} passes vs two processes × ${reps} passes at once`);
  console.log("| type | impl | 1 process wall | 2 processes wall | speed-up | CPU per pass, 2 at once / alone | load before → after |");
  console.log("|---|---|---|---|---|---|---|");
  for (const type of types) {
    for (const impl of ["ggml", "ggufy"]) {
      const l0 = loadAvg();
      const one = await spawnChild(impl, type, mb, 2 * reps);
      const two = await Promise.all([spawnChild(impl, type, mb, reps), spawnChild(impl, type, mb, reps)]);
      const wall2 = Math.max(two[0]!.wall, two[1]!.wall);
      const cpuRatio = (two[0]!.cpu + two[1]!.cpu) / one.cpu;
      console.log(`| ${type} | ${impl} | ${one.wall.toFixed(2)} s | ${wall2.toFixed(2)} s | **${(one.wall / wall2).toFixed(2)}×** | ${cpuRatio.toFixed(2)} | ${l0} → ${loadAvg()} |`);
    }
  }
  const gguf = args.opt("--gguf");
  if (gguf) {
    const { llamaQuantize } = await import("../test/support/llama-quantize.js");
    const ftype = args.int("--ftype", 15);
    const dst = path.join(path.dirname(path.resolve(gguf)), `scaling-${process.pid}.gguf`);
    const walls: number[] = [];
    for (const nthread of [1, 2]) {
      const l0 = loadAvg();
      const t0 = performance.now();
      await llamaQuantize(gguf, dst, { ftype, nthread });
      walls.push((performance.now() - t0) / 1000);
      console.log(`llama_model_quantize ${path.basename(gguf)} (${(statSync(gguf).size / 1e9).toFixed(2)} GB) ftype ${ftype} nthread ${nthread}: ${walls.at(-1)!.toFixed(2)} s wall, load ${l0} → ${loadAvg()}`);
      rmSync(dst, { force: true });
    }
    console.log(`llama_model_quantize nthread 1 / nthread 2 wall: **${(walls[0]! / walls[1]!).toFixed(2)}×**`);
  }
}

if (process.argv[2] === "--child") await child(process.argv[3]!, process.argv[4]!, Number(process.argv[5]), Number(process.argv[6]));
else await main();
