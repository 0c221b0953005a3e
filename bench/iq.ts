/**
 * IQ codec throughput (issue 18): ggufy's IQ1_S … IQ3_S quantizers and dequantizers against ggml's
 * own ggml_quantize_chunk / to_float, one thread, same process (through the koffi oracle), same
 * input (rows of 4096 N(0, 0.02²) floats, a random importance vector), bytes checked identical.
 *
 *   node dist/bench/iq.js [--types iq2_xxs,iq3_s,...] [--rows 16] [--reps 3]
 *
 * ggml builds every neighbour list at its first quantisation (iq2xs_init_impl / iq3xs_init_impl);
 * ggufy builds a list the first time a point needs it. Both one-off costs are timed separately
 * ("init": the first call on one row) and excluded from the throughput (best of --reps after it).
 * ggufy's WebAssembly kernels (IQ2_*, IQ3_*: src/quant/ggml/iq-wasm.ts) build all their lists when the
 * kernel is instantiated, inside "init". The "TS" column is the TypeScript search of the same codec
 * (the fallback, GGUFY_NO_WASM=1) timed in the same loop, so "wasm/TS" is the kernel's speed-up.
 */
import { ggmlOracle } from "../test/support/ggml-oracle.js";
import { uniform01 } from "./support.js";
import { codecFor, parseTypeName, typeName, GGMLType } from "../src/quant/ggml/index.js";
import { iq2Reference } from "../src/quant/ggml/iq2.js";
import { iq3Reference } from "../src/quant/ggml/iq3.js";

type Q = (src: Float32Array, dst: Uint8Array, qw?: Float32Array | null) => void;
const TS_PATH: Partial<Record<GGMLType, Q>> = {
  [GGMLType.IQ2_XXS]: iq2Reference.iq2_xxs,
  [GGMLType.IQ2_XS]: iq2Reference.iq2_xs,
  [GGMLType.IQ2_S]: iq2Reference.iq2_s,
  [GGMLType.IQ3_XXS]: iq3Reference.iq3_xxs,
  [GGMLType.IQ3_S]: iq3Reference.iq3_s,
};

const ROW = 4096;
const ALL = [GGMLType.IQ1_S, GGMLType.IQ1_M, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS, GGMLType.IQ3_S];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function data(n: number, seed: number, scale: number, abs: boolean): Float32Array {
  const out = new Float32Array(n);
  const next = uniform01(seed);
  for (let i = 0; i < n; i++) {
    const v = scale * Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
    out[i] = abs ? Math.abs(v) + 1e-3 : v;
  }
  return out;
}

function cpu<T>(f: () => T): [number, T] {
  const t0 = process.cpuUsage();
  const r = f();
  const t = process.cpuUsage(t0);
  return [(t.user + t.system) / 1e6, r];
}

function main(): void {
  const rows = Number(arg("rows") ?? 16);
  const reps = Math.max(1, Number(arg("reps") ?? 3));
  const types = arg("types")?.split(",").map((s) => {
    const t = parseTypeName(s.trim());
    if (t === undefined || !ALL.includes(t)) throw new Error(`not an IQ1/IQ2/IQ3 type: ${s}`);
    return t;
  }) ?? ALL;
  const g = ggmlOracle();
  const src = data(rows * ROW, 7, 0.02, false);
  const qw = data(ROW, 8, 1, true);
  const mb = (src.length * 4) / 1e6;
  console.log(`IQ quantize: ${rows} rows × ${ROW} (${mb.toFixed(2)} MB f32), importance vector, best of ${reps}, CPU seconds`);
  console.log("| type | ggufy init s | ggml init s | ggufy MB/s | ggml MB/s | ggufy/ggml | TS path MB/s | ggufy/TS | dequant ggufy MB/s | dequant ggml MB/s | ratio | bytes |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const t of types) {
    const c = codecFor(t);
    const one = src.subarray(0, ROW);
    const [ourInit] = cpu(() => c.quantize(one, new Uint8Array((ROW / 256) * c.typeSize), qw));
    const [ggInit] = cpu(() => g.quantizeChunk(t, one, ROW, qw));
    let ours = Infinity;
    let theirs = Infinity;
    let tsPath = Infinity;
    const ref = TS_PATH[t];
    let tsSame = true;
    let got: Uint8Array = new Uint8Array(0);
    let want: Uint8Array = new Uint8Array(0);
    for (let r = 0; r < reps; r++) {
      const out = new Uint8Array((src.length / 256) * c.typeSize);
      const [a] = cpu(() => c.quantize(src, out, qw));
      ours = Math.min(ours, a);
      got = out;
      const [b, w] = cpu(() => g.quantizeChunk(t, src, ROW, qw));
      theirs = Math.min(theirs, b);
      want = w;
      if (ref) {
        const o2 = new Uint8Array(out.length);
        const [c2] = cpu(() => ref(src, o2, qw));
        tsPath = Math.min(tsPath, c2);
        tsSame &&= o2.every((v, i) => v === w[i]);
      }
    }
    const same = got.length === want.length && got.every((v, i) => v === want[i]) && tsSame;
    let dq = Infinity;
    let dg = Infinity;
    const y = new Float32Array(src.length);
    // dequantisation is fast: DQ passes per timing, so the CPU-time clock resolution does not dominate
    const DQ = 50;
    for (let r = 0; r < reps; r++) {
      const [a] = cpu(() => { for (let k = 0; k < DQ; k++) c.dequantize(want, y); });
      dq = Math.min(dq, a / DQ);
      const [b] = cpu(() => { for (let k = 0; k < DQ; k++) g.dequantize(t, want, src.length); });
      dg = Math.min(dg, b / DQ);
    }
    const f = (x: number) => (x > 0 ? (mb / x).toFixed(2) : "∞");
    console.log(
      `| ${typeName(t)} | ${ourInit.toFixed(3)} | ${ggInit.toFixed(3)} | ${f(ours)} | ${f(theirs)} | ${(theirs / ours).toFixed(3)} | ${ref ? f(tsPath) : "—"} | ${ref ? (tsPath / ours).toFixed(2) : "—"} | ${f(dq)} | ${f(dg)} | ${(dg / dq).toFixed(3)} | ${same ? "identical" : "DIFFER"} |`,
    );
  }
}

main();
