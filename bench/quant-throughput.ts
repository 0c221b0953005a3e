/**
 * Quantization kernel throughput: ggufy's codecs against ggml's own ggml_quantize_chunk, one thread,
 * same process (through the koffi oracle), same input.
 *
 *   node dist/bench/quant-throughput.js [--types q8_0,q4_0,...] [--mb 64] [--reps 5]
 *
 * For every quantized type in the registry that is implemented (placeholders throw and are skipped),
 * times quantize() on N MB of float32 normal data (rows of 4096) and ggml_quantize_chunk on the same
 * buffer, reports MB/s of float32 input per CPU second for both (best of --reps alternating runs
 * after a warm-up; the wall-clock ratio is printed beside it) and checks that the bytes are identical.
 */
import { ggmlOracle } from "../test/support/ggml-oracle.js";
import { normalData } from "./support.js";
import { codecFor, supportedTypes, typeInfo, parseTypeName, GGMLType } from "../src/quant/ggml/index.js";

const ROW = 4096;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function main(): void {
  const mb = Number(arg("mb") ?? 64);
  const reps = Math.max(1, Number(arg("reps") ?? 5));
  const typesArg = arg("types");
  const nominal = Math.max(ROW, Math.floor((mb * 1024 * 1024) / 4 / ROW) * ROW);

  let types: GGMLType[];
  if (typesArg) {
    types = typesArg.split(",").map((s) => {
      const t = parseTypeName(s.trim());
      if (t === undefined) throw new Error(`unknown type ${s}`);
      return t;
    });
  } else {
    types = supportedTypes().filter((t) => typeInfo(t).blockSize > 1);
  }

  const oracle = ggmlOracle();
  // our own binding with a preallocated destination (no _Out_ copy), so both sides write in place
  const quantizeChunk = oracle.lib.func(
    "size_t ggml_quantize_chunk(int type, const float *src, uint8_t *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)",
  ) as (type: number, src: Float32Array, dst: Uint8Array, start: number, nrows: number, nPerRow: number, imatrix: null) => number | bigint;
  const init = oracle.lib.func("void ggml_quantize_init(int type)") as (type: number) => void;

  const x = normalData(nominal, 0x5eed);
  const rows: string[][] = [];
  console.log(`input: up to ${(nominal * 4 / 1048576).toFixed(0)} MiB of float32 N(0, 0.02²) data, rows of ${ROW}, best of ${reps} runs, 1 thread; MB/s = 10^6 bytes of float32 input per second of CPU time`);

  for (const t of types) {
    const info = typeInfo(t);
    // probe: types missing from the registry and placeholder codecs throw
    const probeDst = new Uint8Array((ROW / info.blockSize) * info.typeSize);
    let codec;
    try {
      codec = codecFor(t);
      codec.quantize(x.subarray(0, ROW), probeDst);
    } catch (e) {
      console.log(`${info.name}: skipped (${(e as Error).message})`);
      continue;
    }
    init(t);
    // slow kernels (IQ4 search, K-quant searches) get a smaller input so that one run of the slower
    // side stays around a second
    const probeN = Math.min(nominal, 16 * ROW);
    const probeOut = new Uint8Array((probeN / info.blockSize) * info.typeSize);
    codec.quantize(x.subarray(0, probeN), probeOut); // also the JIT warm-up
    let p0 = performance.now();
    codec.quantize(x.subarray(0, probeN), probeOut);
    const oursPerElem = (performance.now() - p0) / probeN;
    p0 = performance.now();
    quantizeChunk(t, x.subarray(0, probeN), probeOut, 0, probeN / ROW, ROW, null);
    const ggmlPerElem = (performance.now() - p0) / probeN;
    const n = Math.max(ROW, Math.min(nominal, Math.floor(1000 / Math.max(oursPerElem, ggmlPerElem) / ROW) * ROW));
    const src = x.subarray(0, n);
    const bytes = (n / info.blockSize) * info.typeSize;
    const ours = new Uint8Array(bytes);
    const theirs = new Uint8Array(bytes);
    // best of `reps` alternating runs; CPU time (process user+system) is the main measure because a
    // shared machine's wall clock mostly measures the neighbours; wall time is reported beside it
    const best = { oursCpu: Infinity, ggmlCpu: Infinity, oursWall: Infinity, ggmlWall: Infinity };
    for (let r = 0; r < reps; r++) {
      let c0 = process.cpuUsage();
      let t0 = performance.now();
      codec.quantize(src, ours);
      best.oursWall = Math.min(best.oursWall, performance.now() - t0);
      let c = process.cpuUsage(c0);
      best.oursCpu = Math.min(best.oursCpu, (c.user + c.system) / 1000);
      c0 = process.cpuUsage();
      t0 = performance.now();
      quantizeChunk(t, src, theirs, 0, n / ROW, ROW, null);
      best.ggmlWall = Math.min(best.ggmlWall, performance.now() - t0);
      c = process.cpuUsage(c0);
      best.ggmlCpu = Math.min(best.ggmlCpu, (c.user + c.system) / 1000);
    }
    let firstDiff = -1;
    for (let i = 0; i < bytes; i++) {
      if (ours[i] !== theirs[i]) {
        firstDiff = i;
        break;
      }
    }
    const mbIn = (n * 4) / 1e6;
    const oursMBs = mbIn / (best.oursCpu / 1000);
    const ggmlMBs = mbIn / (best.ggmlCpu / 1000);
    rows.push([
      info.name,
      ((n * 4) / 1048576).toFixed(0),
      oursMBs.toFixed(1),
      ggmlMBs.toFixed(1),
      (oursMBs / ggmlMBs).toFixed(2),
      (best.ggmlWall / best.oursWall).toFixed(2),
      firstDiff < 0 ? "yes" : `NO (first diff at byte ${firstDiff}, block ${Math.floor(firstDiff / info.typeSize)})`,
    ]);
  }

  const head = ["type", "input MiB", "ours MB/s", "ggml MB/s", "ratio", "ratio (wall)", "identical"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => "| " + r.map((c, i) => c.padEnd(widths[i]!)).join(" | ") + " |";
  console.log(line(head));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of rows) console.log(line(r));
  if (rows.some((r) => r[6] !== "yes")) process.exitCode = 1;
}

main();
