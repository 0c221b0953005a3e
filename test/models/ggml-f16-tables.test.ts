/**
 * The vision references' emulation of ggml-cpu's F16 activation tables (test/support/ggml-f16-tables.ts) against
 * the real tables: ggml_table_gelu_quick_f16 and ggml_table_gelu_f16 read out of the libggml-cpu.so that libmtmd
 * runs on (the tools build of test/support/llama-tools.ts), after ggml_cpu_init — every one of the 65 536 entries.
 *
 * Teeth: the same formulas with the constants as double literals (fround(−1.702·x) instead of
 * fround(fround(−1.702)·x), which C's float arithmetic computes) give different entries; the test counts them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromF16, toF16 } from "../../src/formats/half.js";
import { emulatedTablesF16, GELU_TABLE_TANHF_ENTRIES, ggmlGeluF32, ggmlGeluTable, ggmlQuickGeluTable, readGgmlCpuTables } from "../support/ggml-f16-tables.js";
import { llamaToolsLibDir } from "../support/llama-tools.js";

const real = readGgmlCpuTables(llamaToolsLibDir());

function mismatches(a: Uint16Array, b: Uint16Array): number[] {
  const bad: number[] = [];
  for (let i = 0; i < 65536; i++) {
    const x = fromF16(i);
    if (!Number.isFinite(x)) {
      // ±inf / NaN inputs: compare as values (the NaN payload of F32→F16 is the CPU's business)
      const u = fromF16(a[i]!);
      const v = fromF16(b[i]!);
      if (!(Object.is(u, v) || (Number.isNaN(u) && Number.isNaN(v)))) bad.push(i);
    } else if (a[i] !== b[i]) bad.push(i);
  }
  return bad;
}

test("ggml_table_gelu_quick_f16 equals the float32 emulation in all 65 536 entries, ggml_table_gelu_f16 but for tanhf's last bit", async (t) => {
  const r = await real;
  const e = emulatedTablesF16();
  const hex = (l: number[]): string => l.slice(0, 8).map((i) => `0x${i.toString(16)}`).join(", ");
  const q = mismatches(r.geluQuick, e.geluQuick);
  assert.equal(q.length, 0, `gelu_quick table: ${q.length} entries differ (${hex(q)})`);
  const g = mismatches(r.gelu, e.gelu);
  // every GELU entry that differs is explained by tanhf's last bit: ggml's entry is what tanh moved by one float32
  // ulp gives (glibc's tanhf is not correctly rounded everywhere; Math.tanh rounded to float32 is the reference)
  for (const i of g) {
    const alt = [-1, 1].map((k) => toF16(ggmlGeluF32(fromF16(i), k)));
    assert.ok(alt.includes(r.gelu[i]!), `gelu table entry 0x${i.toString(16)}: ggml ${r.gelu[i]} ≠ emulated ${e.gelu[i]}, not a tanhf ulp either (${alt})`);
  }
  t.diagnostic(`gelu table: ${g.length} entries differ by tanhf's last float32 bit (${hex(g)})`);
  assert.deepEqual(g, GELU_TABLE_TANHF_ENTRIES, `gelu table: entries ${hex(g)} differ`);
});

test("the lookups: F16 rounding of the input, the clamps of ggml_vec_gelu_f32 only", () => {
  // 1 + 2^-12 rounds to the F16 1.0 (ties to even), so it reads entry 0x3c00
  const x = 1 + 2 ** -12;
  assert.equal(ggmlQuickGeluTable(x), ggmlQuickGeluTable(1));
  assert.equal(ggmlGeluTable(x), ggmlGeluTable(1));
  // quick GELU has no clamps: at 12 the table's F16 value (12 exactly: quick_gelu(12) = 12·(1 − 1.4e-9)); GELU
  // returns x itself from 10 up, and 0 from −10 down
  assert.equal(ggmlGeluTable(10.0001), Math.fround(10.0001));
  assert.equal(ggmlGeluTable(-10), 0);
  assert.equal(ggmlQuickGeluTable(10.0001), fromF16(toF16(Math.fround(10.0001))));
  assert.notEqual(ggmlQuickGeluTable(10.0001), Math.fround(10.0001));
  assert.ok(ggmlQuickGeluTable(-10.5) < 0, "no clamp to 0 below −10 for quick GELU");
});

test("teeth: double-literal constants (fround(−1.702·x), fround(0.7978…·x)) miss entries of the real tables", async (t) => {
  const r = await real;
  const f = Math.fround;
  const quickD = new Uint16Array(65536);
  const geluD = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) {
    const h = fromF16(i);
    quickD[i] = toF16(f(h * f(1 / f(1 + f(Math.exp(f(-1.702 * h)))))));
    geluD[i] = toF16(f(f(0.5 * h) * f(1 + f(Math.tanh(f(f(0.7978845608028654 * h) * f(1 + f(f(0.044715 * h) * h))))))));
  }
  const q = mismatches(r.geluQuick, quickD).length;
  const g = mismatches(r.gelu, geluD).length;
  t.diagnostic(`double-literal constants: ${q} gelu_quick and ${g} gelu entries differ from ggml's`);
  assert.ok(q + g > 0, "the constants' float rounding makes no difference to any entry");
});
