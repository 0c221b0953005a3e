/**
 * ggml-cpu's F16 activation tables, emulated in float32, and the real ones read out of libggml-cpu.so.
 *
 * ggml/src/ggml-cpu/vec.h (bundled llama.cpp v0.4.0) defines GGML_GELU_FP16 and GGML_GELU_QUICK_FP16
 * unconditionally, so on the CPU backend an F32 `ggml_gelu` / `ggml_gelu_quick` does not evaluate the function:
 *
 *   ggml_vec_gelu_quick_f32   y = F16→F32(ggml_table_gelu_quick_f16[F32→F16(x)])        (no clamps)
 *   ggml_vec_gelu_f32         x ≤ −10 → 0, x ≥ 10 → x, else F16→F32(ggml_table_gelu_f16[F32→F16(x)])
 *
 * and ggml_cpu_init (ggml-cpu.c) fills entry i, for f = the F16 value with bits i, with
 * F32→F16(ggml_gelu_quick_f32(f)) / F32→F16(ggml_gelu_f32(f)), where (vec.h, every constant a float):
 *
 *   ggml_gelu_quick_f32(x) = x*(1.0f/(1.0f+expf(GELU_QUICK_COEF*x)))                       GELU_QUICK_COEF = −1.702f
 *   ggml_gelu_f32(x)       = 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x)))
 *                            GELU_COEF_A = 0.044715f, SQRT_2_OVER_PI = 0.79788456080286535587989211986876f
 *
 * C evaluates those left to right in float: `GELU_QUICK_COEF*x` is fround(fround(−1.702)·x), not fround(−1.702·x).
 * expf / tanhf are emulated as fround(Math.exp / Math.tanh); test/models/ggml-f16-tables.test.ts checks the
 * emulations against all 65 536 entries of the real tables (`readGgmlCpuTables`): the quick-GELU table is equal in
 * every entry; the GELU table in all but one (0xbfff, input −1.999: the float32 value sits on an F16 rounding
 * midpoint and glibc 2.36's tanhf is one float32 ulp off the correctly rounded tanh there). The references use
 * these emulations, so at that one input their GELU is one F16 ulp from ggml's.
 */
import path from "node:path";
import { fromF16, toF16 } from "../../src/formats/half.js";

const f = Math.fround;
const QUICK_COEF = f(-1.702);
const GELU_COEF_A = f(0.044715);
const SQRT_2_OVER_PI = f(0.79788456080286535587989211986876);

/** vec.h ggml_gelu_quick_f32 in float32 */
export function ggmlGeluQuickF32(x: number): number {
  return f(x * f(1 / f(1 + f(Math.exp(f(QUICK_COEF * x))))));
}

/**
 * vec.h ggml_gelu_f32 in float32; `tanhUlps` moves tanhf's result by that many float32 ulps (glibc's tanhf is not
 * correctly rounded everywhere: the table test allows an entry to match with ±1)
 */
export function ggmlGeluF32(x: number, tanhUlps = 0): number {
  let t = f(Math.tanh(f(f(SQRT_2_OVER_PI * x) * f(1 + f(f(GELU_COEF_A * x) * x)))));
  if (tanhUlps !== 0 && t !== 0) {
    f32[0] = t;
    u32[0] = u32[0]! + tanhUlps;
    t = f32[0]!;
  }
  return f(f(0.5 * x) * f(1 + t));
}
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The ggml_table_gelu_f16 entries (F16 input bits) where the emulation is one F16 ulp off glibc 2.36's tanhf;
 * test/models/ggml-f16-tables.test.ts asserts this is exactly the set of differing entries.
 */
export const GELU_TABLE_TANHF_ENTRIES: readonly number[] = [0xbfff];

const quickTable = new Float32Array(65536);
const geluTable = new Float32Array(65536);
for (let i = 0; i < 65536; i++) {
  const h = fromF16(i);
  quickTable[i] = fromF16(toF16(ggmlGeluQuickF32(h)));
  geluTable[i] = fromF16(toF16(ggmlGeluF32(h)));
}

/** the emulated tables as F16 bit patterns (for comparing with the real ones) */
export function emulatedTablesF16(): { geluQuick: Uint16Array; gelu: Uint16Array } {
  return { geluQuick: Uint16Array.from(quickTable, (v) => toF16(v)), gelu: Uint16Array.from(geluTable, (v) => toF16(v)) };
}

/** ggml_vec_gelu_quick_f32 with GGML_GELU_QUICK_FP16: the table at the F16 rounding of x */
export function ggmlQuickGeluTable(x: number): number {
  return quickTable[toF16(f(x))]!;
}

/** ggml_vec_gelu_f32 with GGML_GELU_FP16: the ±10 clamps, else the table at the F16 rounding of x */
export function ggmlGeluTable(x: number): number {
  const xf = f(x);
  if (xf <= -10) return 0;
  if (xf >= 10) return xf;
  return geluTable[toF16(xf)]!;
}

/**
 * The real ggml_table_gelu_quick_f16 / ggml_table_gelu_f16 (exported data symbols of libggml-cpu.so in `libDir`,
 * the tools build of test/support/llama-tools.ts), after ggml_cpu_init fills them.
 */
export async function readGgmlCpuTables(libDir: string): Promise<{ geluQuick: Uint16Array; gelu: Uint16Array }> {
  const { default: koffi } = await import("koffi");
  const cpu = koffi.load(path.join(libDir, "libggml-cpu.so"));
  cpu.func("void ggml_cpu_init(void)")();
  const read = (name: string): Uint16Array => Uint16Array.from(koffi.decode(cpu.symbol(name), "uint16_t", 65536) as ArrayLike<number>);
  return { geluQuick: read("ggml_table_gelu_quick_f16"), gelu: read("ggml_table_gelu_f16") };
}
