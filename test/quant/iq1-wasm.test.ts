/**
 * The WebAssembly IQ1_S / IQ1_M quantizers (src/quant/ggml/iq1-wasm.ts) against the TypeScript
 * reference (iq1.ts, which iq1.test.ts and imatrix-codecs.test.ts compare with ggml): the same bytes
 * on many distributions — ties in the sort (repeated values, constant and ternary sub-blocks, signed
 * zeros), zero blocks and sub-blocks, importance vectors with zeros and zero sub-blocks, IQ1_M
 * without one, tiny / subnormal / huge values — over row lengths and block counts that are not a
 * multiple of the kernel's batch; non-finite input goes to the TypeScript path; GGUFY_NO_WASM turns
 * the kernel off through instantiate.ts's policy.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { iq1_m, iq1_s, IQ1_WASM, quantizeIq1mScalar, quantizeIq1sScalar } from "../../src/quant/ggml/iq1.js";
import { iq1Kernel, type Iq1Kernel } from "../../src/quant/ggml/iq1-wasm.js";
import { latticeIq1s } from "../../src/quant/ggml/iq-common.js";
import { fill } from "./iq-cases.js";

const NPR = 768; // three 256-blocks per row
const ROWS = 23; // 69 blocks: one batch of 64 and a rest of 5
const N = NPR * ROWS;

const DATASETS: Array<[string, () => Float32Array]> = [
  ["gaussian σ=0.02", () => fill(N, 1, (_i, _r, g) => 0.02 * g())],
  ["gaussian σ=1", () => fill(N, 2, (_i, _r, g) => g())],
  ["uniform", () => fill(N, 3, (_i, r) => 2 * r() - 1)],
  ["positive", () => fill(N, 4, (_i, _r, g) => Math.abs(g()) + 0.01)],
  ["negative", () => fill(N, 5, (_i, _r, g) => -Math.abs(g()) - 0.01)],
  ["heavy tails", () => fill(N, 6, (_i, r, g) => (r() < 0.02 ? 40 * g() : g() / Math.max(0.05, Math.abs(g()))) * 0.01)],
  // ties: few distinct values, so the sort's order of equal values decides the levels
  ["five values", () => fill(N, 7, (_i, r) => 0.01 * (Math.floor(r() * 5) - 2))],
  ["ternary", () => fill(N, 8, (_i, r) => Math.floor(r() * 3) - 1)],
  ["half steps", () => fill(N, 9, (_i, r) => (Math.floor(r() * 9) - 4) * 0.5)],
  ["constant sub-blocks", () => fill(N, 10, (i) => [0.5, -0.25, 0, 3, -1][(i >> 4) % 5]!)],
  ["constant", () => fill(N, 11, () => -0.75)],
  ["signed zeros", () => fill(N, 12, (i, _r, g) => (i % 7 === 0 ? -0 : i % 5 === 0 ? 0 : 1e-3 * g()))],
  ["zeros mixed in", () => fill(N, 13, (i, r, g) => (r() < 0.4 || (i >> 5) % 5 === 2 ? 0 : g()))],
  ["zero 16-groups", () => fill(N, 14, (i, _r, g) => ((i >> 4) % 3 === 0 ? 0 : g()))],
  ["zero blocks", () => fill(N, 15, (i, _r, g) => ((i >> 8) % 3 === 1 ? 0 : g()))],
  ["single non-zero per block", () => fill(N, 16, (i, _r, g) => (i % 256 === (i >> 8) % 256 ? g() : 0))],
  ["tiny 1e-6", () => fill(N, 17, (_i, _r, g) => 1e-6 * g())],
  ["tiny 1e-30", () => fill(N, 18, (_i, _r, g) => 1e-30 * g())],
  ["subnormal", () => fill(N, 19, (_i, _r, g) => 1e-40 * g())],
  ["huge 1e8", () => fill(N, 20, (_i, _r, g) => 1e8 * g())],
  ["wide range", () => fill(N, 21, (_i, r, g) => g() * 10 ** (r() * 8 - 4))],
  ["all zero", () => new Float32Array(N)],
];

/** importance rows: 0 random, 1 a quarter zero, 2 whole sub-blocks zero, 3 repeated values */
const imatrix = (seed: number, kind: 0 | 1 | 2 | 3): Float32Array =>
  fill(NPR, seed, (i, r, g) => {
    if (kind === 1 && r() < 0.25) return 0;
    if (kind === 2 && ((i >= 32 && i < 64) || (i >= 296 && i < 312) || (i >= 600 && i < 616))) return 0;
    if (kind === 3) return 1 + (i % 3);
    return Math.abs(g()) * 10 ** (3 * r() - 1);
  });

function firstDiff(a: Uint8Array, b: Uint8Array, size: number): string {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `block ${Math.floor(i / size)} byte ${i % size}: kernel ${a[i]} vs TypeScript ${b[i]}`;
  return "";
}

const CODECS = [
  { name: "IQ1_S", codec: iq1_s, scalar: quantizeIq1sScalar, size: 50, noQw: false },
  { name: "IQ1_M", codec: iq1_m, scalar: quantizeIq1mScalar, size: 56, noQw: true },
];

for (const c of CODECS) {
  test(`${c.name}: the WebAssembly kernel gives the TypeScript quantizer's bytes`, () => {
    assert.equal(IQ1_WASM(), true, "WebAssembly SIMD kernel in use on Node ≥ 20");
    let seed = 100;
    let cases = 0;
    for (const [name, make] of DATASETS) {
      const x = make();
      const weights: Array<[string, Float32Array | null]> = ([0, 1, 2, 3] as const).map((k) => [`imatrix ${k}`, imatrix(++seed, k)]);
      if (c.noQw) weights.push(["no imatrix", null]);
      for (const [wname, qw] of weights) {
        const fast = new Uint8Array((N / 256) * c.size);
        const slow = new Uint8Array((N / 256) * c.size);
        c.codec.quantize(x, fast, qw);
        c.scalar(x, slow, qw);
        assert.equal(firstDiff(fast, slow, c.size), "", `${c.name} ${name}, ${wname}`);
        cases++;
      }
    }
    assert.equal(cases, DATASETS.length * (c.noQw ? 5 : 4));
  });

  test(`${c.name}: one block, and an importance row of one block`, () => {
    const x = fill(256, 31, (_i, _r, g) => g());
    const qw = imatrix(32, 0).subarray(0, 256);
    const fast = new Uint8Array(c.size);
    const slow = new Uint8Array(c.size);
    c.codec.quantize(x, fast, qw);
    c.scalar(x, slow, qw);
    assert.equal(firstDiff(fast, slow, c.size), "");
  });

  test(`${c.name}: blocks holding a NaN or an infinity take the TypeScript path`, () => {
    const qw = imatrix(41, 0);
    for (const bad of [NaN, Infinity]) {
      const x = fill(N, 42, (_i, _r, g) => g());
      x[5 * 256 + 17] = bad; // block 5 of the first batch
      x[66 * 256 + 3] = bad; // block 66, in the second batch
      let fastErr = "";
      let slowErr = "";
      const fast = new Uint8Array((N / 256) * c.size);
      const slow = new Uint8Array((N / 256) * c.size);
      try {
        c.codec.quantize(x, fast, qw);
      } catch (e) {
        fastErr = (e as Error).message;
      }
      try {
        c.scalar(x, slow, qw);
      } catch (e) {
        slowErr = (e as Error).message;
      }
      assert.equal(fastErr, slowErr, `${bad}: the same outcome`);
      if (!slowErr) assert.equal(firstDiff(fast, slow, c.size), "", `${bad}`);
    }
    // an infinite importance entry: the block goes to TypeScript too
    const x = fill(N, 43, (_i, _r, g) => g());
    const w = qw.slice();
    w[300] = Infinity;
    const outcome = (f: () => void): string => {
      try {
        f();
        return "";
      } catch (e) {
        return (e as Error).message;
      }
    };
    const fast = new Uint8Array((N / 256) * c.size);
    const slow = new Uint8Array((N / 256) * c.size);
    const fe = outcome(() => c.codec.quantize(x, fast, w));
    const se = outcome(() => c.scalar(x, slow, w));
    assert.equal(fe, se);
    if (!se) assert.equal(firstDiff(fast, slow, c.size), "");
  });

  test(`${c.name}: the kernel checks its arguments as the TypeScript path does`, () => {
    assert.throws(() => c.codec.quantize(new Float32Array(300), new Uint8Array(2 * c.size), imatrix(1, 0)), /not a multiple of 256/);
    assert.throws(() => c.codec.quantize(new Float32Array(512), new Uint8Array(c.size), imatrix(1, 0).subarray(0, 256)), /destination holds/);
    if (!c.noQw) assert.throws(() => c.codec.quantize(new Float32Array(256), new Uint8Array(c.size)), /needs an importance matrix/);
  });
}

test("GGUFY_NO_WASM turns the IQ1 kernel off (one NODE_DEBUG line) and the TypeScript path gives its bytes", async () => {
  const { spawnSync } = await import("node:child_process");
  const mod = new URL("../../src/quant/ggml/iq1.js", import.meta.url).href;
  const script = `
    const { iq1_s, iq1_m } = await import(${JSON.stringify(mod)});
    const { createHash } = await import("node:crypto");
    const x = new Float32Array(256 * 70);
    const qw = new Float32Array(512);
    let s = 12345;
    const r = () => (s = (s * 1103515245 + 12345) >>> 0) / 4294967296;
    for (let i = 0; i < x.length; i++) x[i] = (r() - 0.5) * (i % 97 === 0 ? 3 : 0.1);
    for (let i = 0; i < qw.length; i++) qw[i] = r() + 0.01;
    const out = {};
    for (const [n, c] of [["s", iq1_s], ["m", iq1_m]]) {
      const d = new Uint8Array((x.length / 256) * c.typeSize);
      c.quantize(x, d, qw);
      out[n] = createHash("sha256").update(d).digest("hex");
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const run = (env: Record<string, string>): { out: string; err: string } => {
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, ...env }, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return { out: r.stdout, err: r.stderr };
  };
  const on = run({ GGUFY_NO_WASM: "", NODE_DEBUG: "ggufy" });
  assert.equal(on.err, "", "no fallback line when the kernel loads");
  const off = run({ GGUFY_NO_WASM: "1", NODE_DEBUG: "ggufy" });
  assert.equal(off.out, on.out);
  assert.match(off.err, /^GGUFY \d+: wasm kernel iq1 not used \(GGUFY_NO_WASM is set\); TypeScript path\n$/);
});

test("the module's neighbour lists are iq-common.ts's Lattice lists (all 4513 off-grid points), padded with their last entry", () => {
  const lat = latticeIq1s();
  // a kernel of its own, so the lists are built here (in the order of u) and the pool must hold them all
  const k = iq1Kernel(latticeIq1s).get();
  assert.ok(k, "kernel available");
  let n = 0;
  for (let u = 0; u < lat.map.length; u++) {
    let levels = true;
    for (let c = 0; c < 8; c++) if (((u >> (2 * c)) & 3) === 3) levels = false;
    if (!levels || lat.map[u]! >= 0) continue;
    const want = lat.neighbours(u);
    const got: ReturnType<Iq1Kernel["list"]> = k.list(u);
    assert.ok(got, `list of ${u}: the pool is full`);
    assert.equal(got.count, want.length, `count of ${u}`);
    assert.equal(got.entries.length % 8, 0);
    assert.ok(got.entries.length - got.count < 8);
    for (let j = 0; j < got.entries.length; j++) {
      const g = j < want.length ? want[j]! : want[want.length - 1]!;
      if (got.entries[j] !== g) assert.fail(`list of ${u}, entry ${j}: ${got.entries[j]} vs ${g}`);
      for (let c = 0; c < 8; c++) {
        if (got.levels4[8 * j + c] !== 4 * ((lat.q[8 * g + c]! - 1) >> 1)) assert.fail(`list of ${u}, entry ${j}, coordinate ${c}: level bytes`);
      }
    }
    n++;
  }
  assert.equal(n, 3 ** 8 - 2048);
});
