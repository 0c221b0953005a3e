/**
 * The WebAssembly module builder (src/quant/wasm/builder.ts) and the instantiation policy
 * (instantiate.ts): encodings checked against bytes assembled by hand from the core specification's
 * binary format, small functions run against hand-computed results, and every fallback reason.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ModuleBuilder } from "../../src/quant/wasm/builder.js";
import { lazyKernel } from "../../src/quant/wasm/instantiate.js";

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const old: Record<string, string | undefined> = {};
  for (const k of Object.keys(vars)) {
    old[k] = process.env[k];
    if (vars[k] === undefined) delete process.env[k];
    else process.env[k] = vars[k];
  }
  try {
    return fn();
  } finally {
    for (const k of Object.keys(old)) {
      if (old[k] === undefined) delete process.env[k];
      else process.env[k] = old[k];
    }
  }
}

test("a tiny module encodes to the bytes of the binary format, by hand", () => {
  const m = new ModuleBuilder({ pages: 1 });
  const f = m.func("add", { a: "i32", b: "i32" }, "i32");
  f.get(f.p.a).get(f.p.b).i32.add();
  // prettier-ignore
  const want = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type section: (i32, i32) → i32
    0x03, 0x02, 0x01, 0x00, // function section: f0 has type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory section: min 1 page
    0x07, 0x0b, 0x02, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x01, 0x6d, 0x02, 0x00, // exports "add" (func 0), "m" (memory 0)
    0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, // code: no locals; get 0, get 1, i32.add, end
  ];
  assert.deepEqual(Array.from(m.bytes()), want);
});

test("a shared imported memory: the import section by hand, one memory serving instances in two threads' place", () => {
  const m = new ModuleBuilder({ pages: 1, sharedImport: { maxPages: 2 } });
  const f = m.func("inc", { at: "i32" }, []);
  f.get(f.p.at).get(f.p.at).i32.load(0).i32.const(1).i32.add().i32.store(0);
  const bytes = m.bytes();
  // prettier-ignore
  const imp = [0x02, 0x0b, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x01, 0x6d, 0x02, 0x03, 0x01, 0x02]; // import "env" "m": memory, shared, min 1, max 2
  const at = Array.from(bytes).findIndex((_, i) => imp.every((b, k) => bytes[i + k] === b));
  assert.ok(at > 0, "import section present");
  assert.ok(!Array.from(bytes).some((_, i) => bytes[i] === 0x05 && bytes[i + 1] === 0x03 && bytes[i + 2] === 0x01), "no memory section of its own");
  assert.ok(WebAssembly.validate(bytes));
  const mem = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
  const mod = new WebAssembly.Module(bytes);
  const a = new WebAssembly.Instance(mod, { env: { m: mem } }).exports["inc"] as (at: number) => void;
  const b = new WebAssembly.Instance(mod, { env: { m: mem } }).exports["inc"] as (at: number) => void;
  a(8);
  b(8);
  assert.equal(new Int32Array(mem.buffer)[2], 2, "both instances work on the one memory");
  assert.throws(() => new ModuleBuilder({ pages: 2, sharedImport: { maxPages: 1 } }), /bad maximum page count/);
});

test("immediates: signed LEB128 constants, multi-byte SIMD opcodes, memargs, named locals in runs", () => {
  const m = new ModuleBuilder({ pages: 1 });
  const f = m.func("k", { p: "i32" });
  const a = f.i32("a");
  const v = f.v128("v");
  const b = f.i32("b");
  assert.deepEqual([f.p.p.index, a.index, v.index, b.index], [0, 1, 2, 3]);
  f.i32.const(-1).i32.const(128).i32.const(-129).drop().drop().drop();
  f.get(v).get(v).f32x4.add().set(v); // 0xfd 0xe4 0x01
  f.get(f.p.p).v128.load(300).set(v); // memarg align 4, offset 300 = 0xac 0x02
  f.get(f.p.p).i32.load8U(1).set(a);
  const code = f.body();
  // locals: 3 runs (1 i32, 1 v128, 1 i32)
  assert.deepEqual(code.slice(0, 7), [3, 1, 0x7f, 1, 0x7b, 1, 0x7f]);
  // prettier-ignore
  assert.deepEqual(code.slice(7), [
    0x41, 0x7f, 0x41, 0x80, 0x01, 0x41, 0xff, 0x7e, 0x1a, 0x1a, 0x1a,
    0x20, 0x02, 0x20, 0x02, 0xfd, 0xe4, 0x01, 0x21, 0x02,
    0x20, 0x00, 0xfd, 0x00, 0x04, 0xac, 0x02, 0x21, 0x02,
    0x20, 0x00, 0x2d, 0x00, 0x01, 0x21, 0x01,
    0x0b,
  ]);
  assert.ok(WebAssembly.validate(m.bytes()));
});

function buildKernels(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder({ pages: 1 });
  // sum(n): Σ of n f32 at address 0, in order
  const sum = m.func("sum", { n: "i32" }, "f32");
  const i = sum.i32("i");
  const s = sum.f32("s");
  sum.block((out) =>
    sum.loop((top) => {
      sum.get(i).get(sum.p.n).i32.geU().brIf(out);
      sum.get(s).get(i).i32.const(2).i32.shl().f32.load(0).f32.add().set(s);
      sum.get(i).i32.const(1).i32.add().set(i).br(top);
    }),
  );
  sum.get(s);
  // dot4(): lanes of x[0..4) · x[4..8), added lane 0 first
  const dot = m.func("dot4", {}, "f32");
  const p = dot.v128("p");
  dot.i32.const(0).v128.load(0).i32.const(0).v128.load(16).f32x4.mul().set(p);
  dot.get(p).f32x4.extractLane(0).get(p).f32x4.extractLane(1).f32.add();
  dot.get(p).f32x4.extractLane(2).f32.add().get(p).f32x4.extractLane(3).f32.add();
  // clamp10(x) = x > 10 ? 10 : x, with if/else
  const cl = m.func("clamp10", { x: "i32" }, "i32");
  const r = cl.i32("r");
  cl.get(cl.p.x).i32.const(10).i32.gtS().if(
    () => cl.i32.const(10).set(r),
    () => cl.get(cl.p.x).set(r),
  );
  cl.get(r);
  // sat(): i32x4 constant → trunc_sat of f32x4 constant, a shuffle, bitmask of (lanes < 0)
  const sat = m.func("sat", {}, "i32");
  sat.f32x4.const([1.5, -2.5, 3e9, -3e9]).i32x4.truncSatF32x4S();
  sat.i32x4.const([0, 0, 0, 0]).i8x16.shuffle([12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]);
  sat.i32x4.const([0, 0, 0, 0]).i32x4.ltS().i32x4.bitmask();
  return m.bytes();
}

test("functions run and give hand-computed results", () => {
  const k = lazyKernel("test-kernels", buildKernels, (e, mem) => ({ e, f32: new Float32Array(mem.buffer) }));
  const got = withEnv({ GGUFY_NO_WASM: undefined }, () => k.get());
  assert.ok(got, `kernel available (reason: ${k.reason})`);
  got.f32.set([1, 2, 3, 4.5, 5, 6, 7, 8]);
  assert.equal((got.e["sum"] as (n: number) => number)(4), 10.5);
  assert.equal((got.e["sum"] as (n: number) => number)(0), 0);
  assert.equal((got.e["dot4"] as () => number)(), 1 * 5 + 2 * 6 + 3 * 7 + 4.5 * 8);
  const clamp = got.e["clamp10"] as (x: number) => number;
  assert.deepEqual([clamp(3), clamp(42), clamp(-7)], [3, 10, -7]);
  // trunc_sat: [1, -2, INT_MAX, INT_MIN]; reversed lanes → [INT_MIN, INT_MAX, -2, 1]; negative: lanes 0, 2
  assert.equal((got.e["sat"] as () => number)(), 0b0101);
});

test("lazy: nothing is built before the first get(), and the result is cached", () => {
  let builds = 0;
  const k = lazyKernel("lazy", () => (builds++, buildKernels()), (e) => e);
  assert.equal(builds, 0);
  withEnv({ GGUFY_NO_WASM: undefined }, () => {
    assert.ok(k.available());
    assert.ok(k.get());
  });
  assert.equal(builds, 1);
});

function captureStderr(fn: () => void): string {
  const orig = process.stderr.write.bind(process.stderr);
  let out = "";
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = orig;
  }
  return out;
}

test("GGUFY_NO_WASM: the kernel is not built and the caller gets undefined", () => {
  let builds = 0;
  const k = lazyKernel("nowasm", () => (builds++, buildKernels()), (e) => e);
  const err = captureStderr(() => withEnv({ GGUFY_NO_WASM: "1", NODE_DEBUG: "ggufy" }, () => assert.equal(k.get(), undefined)));
  assert.equal(builds, 0);
  assert.match(k.reason ?? "", /GGUFY_NO_WASM/);
  assert.match(err, /wasm kernel nowasm not used \(GGUFY_NO_WASM is set\)/);
  assert.equal(err.trim().split("\n").length, 1, "one line");
});

test("invalid bytes fall back with the reason, printed only under NODE_DEBUG=ggufy", () => {
  const bad = (): Uint8Array<ArrayBuffer> => {
    const b = buildKernels();
    b[b.length - 1] = 0x6a; // the last function's end → i32.add: no longer a valid body
    return b;
  };
  const quiet = lazyKernel("bad-quiet", bad, (e) => e);
  const none = captureStderr(() => withEnv({ GGUFY_NO_WASM: undefined, NODE_DEBUG: undefined }, () => assert.equal(quiet.get(), undefined)));
  assert.equal(none, "");
  assert.match(quiet.reason ?? "", /does not validate/);
  const loud = lazyKernel("bad-loud", bad, (e) => e);
  const err = captureStderr(() => withEnv({ GGUFY_NO_WASM: undefined, NODE_DEBUG: "net,ggufy" }, () => assert.equal(loud.get(), undefined)));
  assert.match(err, /^GGUFY \d+: wasm kernel bad-loud not used \(the module does not validate/);
});

test("a builder error (unclosed block, missing memory) is a fallback reason, not a crash", () => {
  const unclosed = lazyKernel(
    "unclosed",
    () => {
      const m = new ModuleBuilder({ pages: 1 });
      m.func("f", {}).block();
      return m.bytes();
    },
    (e) => e,
  );
  withEnv({ GGUFY_NO_WASM: undefined }, () => assert.equal(unclosed.get(), undefined));
  assert.match(unclosed.reason ?? "", /building the module failed: .*1 block\(s\) not closed/);
  const m = new ModuleBuilder({ pages: 1 });
  const f = m.func("f", {});
  assert.throws(() => f.else(), /else outside an if/);
  assert.throws(() => f.end(), /end without an open block/);
});

/**
 * Every kernel follows the policy: in a child process with GGUFY_NO_WASM=1 and NODE_DEBUG=ggufy each
 * codec and the f32 → f16 conversion name their kernel once on stderr, and give the bytes the kernels
 * give in this process.
 */
test("GGUFY_NO_WASM is honoured by every kernel, each says so once, and the fallbacks give the kernels' bytes", async () => {
  const { spawnSync } = await import("node:child_process");
  const index = new URL("../../src/quant/ggml/index.js", import.meta.url).href;
  const floatWasm = new URL("../../src/quant/ggml/float-wasm.js", import.meta.url).href;
  const TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q4_K", "Q5_K", "Q6_K"];
  // the same script runs here (kernels on) and in the child (GGUFY_NO_WASM=1): sha256 of every output
  const script = `
    const { codecFor, GGMLType } = await import(${JSON.stringify(index)});
    const { f32ToF16Bytes } = await import(${JSON.stringify(floatWasm)});
    const { createHash } = await import("node:crypto");
    const x = new Float32Array(256 * 70);
    let s = 12345;
    for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) >>> 0; x[i] = (s / 4294967296 - 0.5) * (i % 97 === 0 ? 3 : 0.1); }
    const out = {};
    for (const t of ${JSON.stringify(TYPES)}) {
      const c = codecFor(GGMLType[t]);
      const dst = new Uint8Array((x.length / c.blockSize) * c.typeSize);
      c.quantize(x, dst); c.quantize(x, dst);
      out[t] = createHash("sha256").update(dst).digest("hex");
    }
    const h = new Uint8Array(2 * x.length);
    f32ToF16Bytes(x, h); f32ToF16Bytes(x, h);
    out.F16 = createHash("sha256").update(h).digest("hex");
    process.stdout.write(JSON.stringify(out));
  `;
  const run = (env: Record<string, string | undefined>): { out: Record<string, string>; err: string } => {
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, ...env }, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return { out: JSON.parse(r.stdout) as Record<string, string>, err: r.stderr };
  };
  const on = run({ GGUFY_NO_WASM: "", NODE_DEBUG: "ggufy" });
  assert.equal(on.err, "", "no fallback line when the kernels load");
  const off = run({ GGUFY_NO_WASM: "1", NODE_DEBUG: "ggufy" });
  assert.deepEqual(off.out, on.out, "fallback bytes = kernel bytes");
  const lines = off.err.trim().split("\n");
  const names = lines.map((l) => /wasm kernel (\S+) not used \(GGUFY_NO_WASM is set\)/.exec(l)?.[1]);
  assert.deepEqual(names.slice().sort(), ["float", "iq4", "q4_0", "q4_1", "q4_k", "q5_0", "q5_1", "q5_k", "q6_k", "q8_0"]);
});
