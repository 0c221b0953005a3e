/**
 * The WebAssembly SIMD float conversions (src/quant/ggml/float-wasm.ts) against half.ts's reference:
 * f32 → f16 on a stride through all 2^32 bit patterns plus every pattern near the f16 boundaries
 * (an exhaustive run found no difference either), bf16 → f16 on all 65,536 patterns, and the
 * non-finite scans; plus the chunk encoder's raw path (encodeRaw) against widen-then-encode.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { bf16ToF16Bytes, f32ToF16Bytes, floatWasmAvailable, rawAllFinite } from "../../src/quant/ggml/float-wasm.js";
import { f32RowToF16 } from "../../src/formats/half.js";
import { encodeRaw, encodeRows } from "../../src/convert/encode.js";
import { GGMLType } from "../../src/quant/ggml/index.js";

test("f32 → f16: same bits as the reference on a stride of all patterns and around the f16 boundaries", () => {
  assert.equal(floatWasmAvailable(), true);
  const N = 1 << 20;
  const u = new Uint32Array(N);
  const f = new Float32Array(u.buffer);
  const ours = new Uint8Array(2 * N);
  const ref = new Uint16Array(N);
  const check = (): void => {
    f32ToF16Bytes(f, ours);
    f32RowToF16(f, ref);
    assert.ok(Buffer.from(ours).equals(Buffer.from(ref.buffer)), `first pattern 0x${u[0]!.toString(16)}`);
  };
  for (let base = 0; base < 2 ** 32; base += N * 4093) {
    for (let i = 0; i < N; i++) u[i] = (base + i * 4093) >>> 0;
    check();
  }
  // every pattern within 2^18 of the subnormal/normal/overflow/inf/NaN edges, both signs
  for (const edge of [0x33000000, 0x38800000, 0x477fe000, 0x477ff000, 0x7f800000]) {
    for (const s of [0, 0x80000000]) {
      for (let i = 0; i < N; i++) u[i] = ((edge - N / 2 + i) | s) >>> 0;
      check();
    }
  }
});

test("bf16 → f16 on every bf16 pattern; non-finite scans", () => {
  const h = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const out = new Uint8Array(2 * 65536);
  assert.equal(bf16ToF16Bytes(new Uint8Array(h.buffer), out), false, "the patterns include inf and NaN");
  const wide = new Float32Array(65536);
  new Uint32Array(wide.buffer).forEach((_, i, a) => (a[i] = i << 16));
  const ref = new Uint16Array(65536);
  f32RowToF16(wide, ref);
  assert.ok(Buffer.from(out).equals(Buffer.from(ref.buffer)));
  // The kernel takes 8 values at a time on an integer fast path when all 8 are f16 normals or ±0. In
  // the order above, groups of 8 are alike; scattered (40503 is odd: a permutation of 2^16), groups mix
  // fast-path lanes with subnormal, overflowing and non-finite ones; and groups of normals with ±0 only
  const same = (h: Uint16Array, label: string): void => {
    const o = new Uint8Array(2 * h.length);
    bf16ToF16Bytes(new Uint8Array(h.buffer), o);
    const w = new Float32Array(h.length);
    new Uint32Array(w.buffer).forEach((_, i, a) => (a[i] = h[i]! << 16));
    const r = new Uint16Array(h.length);
    f32RowToF16(w, r);
    const got = new Uint16Array(o.buffer);
    const bad = r.findIndex((v, i) => got[i] !== v);
    assert.equal(bad, -1, `${label}: bf16 ${h[bad]?.toString(16)} gave ${got[bad]?.toString(16)}, want ${r[bad]?.toString(16)}`);
  };
  same(Uint16Array.from({ length: 65536 }, (_, i) => (i * 40503) & 0xffff), "scattered");
  const edges = [0, 0x8000, 0x3880, 0xb880, 0x477f, 0xc77f, 0x3f80, 0x4000, 0x387f, 0x4780, 0x0001, 0x7f80];
  same(Uint16Array.from({ length: 8 * 64 }, (_, i) => edges[(i * 5 + (i >> 3)) % 8]!), "normals and zeros");
  same(Uint16Array.from({ length: 8 * 144 }, (_, i) => edges[(i * 7 + (i >> 3)) % edges.length]!), "edges mixed");
  // 16 values a step, then the last 8 alone (their own fast/exact choice): odd multiples of 8, the
  // last group fast or not, and a lone slow group beside a fast one in a step
  same(Uint16Array.from({ length: 8 * 145 }, (_, i) => edges[(i * 7 + (i >> 3)) % edges.length]!), "edges mixed, odd groups");
  same(Uint16Array.from({ length: 8 * 33 }, (_, i) => 0x3f80 + (i % 97)), "normals, odd groups");
  same(Uint16Array.from({ length: 8 * 33 }, (_, i) => (i >= 8 * 32 ? 0x0001 + i : 0x3f80 + (i % 97))), "normals, a subnormal last group");
  same(Uint16Array.from({ length: 8 * 34 }, (_, i) => (i % 16 >= 8 && i % 48 < 16 ? 0x7f80 : 0xbf80 - (i % 89))), "fast and exact groups paired");
  const f32 = (xs: number[]): Uint8Array => new Uint8Array(new Float32Array(xs).buffer);
  const u16 = (xs: number[]): Uint8Array => new Uint8Array(new Uint16Array(xs).buffer);
  assert.equal(rawAllFinite("f32", f32([1, -2, 3e38, 1e-45, 0, -0, 5, 6, 7])), true);
  assert.equal(rawAllFinite("f32", f32([1, 2, 3, 4, 5, 6, 7, 8, NaN])), false, "a NaN in the tail after a whole vector");
  assert.equal(rawAllFinite("f32", f32([-Infinity])), false);
  assert.equal(rawAllFinite("f16", u16([0x3c00, 0x7bff, 0xfbff])), true);
  assert.equal(rawAllFinite("f16", u16([0x3c00, 0xfc00])), false);
  assert.equal(rawAllFinite("bf16", u16([0x3f80, 0x7f7f])), true);
  assert.equal(rawAllFinite("bf16", u16([0x3f80, 0x7fc0])), false);
});

test("encodeRaw: same bytes as widening then encoding; NaN reported (index, value) or counted", () => {
  const n = 4096 * 3;
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) h[i] = 0x3c00 + ((i * 7919) % 0x3000) - 0x1800; // bf16 around ±1 … small
  const bytes = new Uint8Array(h.buffer);
  const wide = new Float32Array(n);
  new Uint32Array(wide.buffer).forEach((_, i, a) => (a[i] = h[i]! << 16));
  for (const type of [GGMLType.F16, GGMLType.BF16, GGMLType.F32, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K]) {
    const r = encodeRaw(type, { dtype: "bf16", bytes: bytes.slice() }, 4096, "reject");
    assert.ok(Buffer.from(r.bytes).equals(Buffer.from(encodeRows(type, wide, 4096))), `type ${type}`);
  }
  const f32 = new Uint8Array(wide.slice().buffer);
  assert.ok(Buffer.from(encodeRaw(GGMLType.F16, { dtype: "f32", bytes: f32 }, 4096, "reject").bytes).equals(Buffer.from(encodeRows(GGMLType.F16, wide, 4096))));
  const bad = h.slice();
  bad[5000] = 0x7fc0;
  bad[6000] = 0xff80;
  const r1 = encodeRaw(GGMLType.F16, { dtype: "bf16", bytes: new Uint8Array(bad.buffer) }, 4096, "reject");
  assert.equal(r1.firstBad, 5000);
  assert.ok(Number.isNaN(r1.badValue));
  const r2 = encodeRaw(GGMLType.BF16, { dtype: "bf16", bytes: new Uint8Array(bad.slice().buffer) }, 4096, "count");
  assert.equal(r2.nonFinite, 2);
  assert.equal(r2.bytes.length, 2 * n);
});

test("bf16 → f32 widening (all 65,536 patterns) with the scan", async () => {
  const { bf16ToF32 } = await import("../../src/quant/ggml/float-wasm.js");
  const h = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const out = new Float32Array(65536);
  assert.equal(bf16ToF32(new Uint8Array(h.buffer), out), false);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < 65536; i++) assert.equal(u[i], (i << 16) >>> 0);
  const fin = new Float32Array(13);
  assert.equal(bf16ToF32(new Uint8Array(h.subarray(0x3f00, 0x3f0d).slice().buffer), fin), true);
  assert.equal(new Uint32Array(fin.buffer)[12], (0x3f0c << 16) >>> 0);
});

test("encodeRaw with a scratch: bf16 rows widened and quantized a piece at a time = the whole chunk at once; NaN in a later piece", async () => {
  const { EncodeScratch } = await import("../../src/convert/encode.js");
  const rowLength = 3072; // pieces of 21 rows (64512 values): three pieces, the last one partial
  const rows = 50;
  const n = rowLength * rows;
  const h = new Uint16Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    h[i] = 0x3c00 + (s >>> 20) - 0x800; // bf16 of magnitudes ~1e-3 … 1e-1, both signs
    if (s & 1) h[i]! |= 0x8000;
  }
  const wide = new Float32Array(n);
  new Uint32Array(wide.buffer).forEach((_, i, a) => (a[i] = h[i]! << 16));
  const qw = Float32Array.from({ length: rowLength }, (_, i) => 0.5 + ((i * 37) % 101) / 50);
  const scratch = new EncodeScratch();
  for (const type of [GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q5_K, GGMLType.Q8_0, GGMLType.Q4_0]) {
    for (const w of [undefined, qw]) {
      const r = encodeRaw(type, { dtype: "bf16", bytes: new Uint8Array(h.buffer) }, rowLength, "reject", undefined, w, scratch);
      assert.ok(Buffer.from(r.bytes).equals(Buffer.from(encodeRows(type, wide, rowLength, undefined, w))), `type ${type}${w ? " with an importance vector" : ""}`);
    }
  }
  const bad = h.slice();
  bad[64512 + 999] = 0x7fc0; // in the second piece
  bad[64512 * 2 + 5] = 0xff80; // in the third
  const r1 = encodeRaw(GGMLType.Q4_K, { dtype: "bf16", bytes: new Uint8Array(bad.buffer) }, rowLength, "reject", undefined, undefined, scratch);
  assert.equal(r1.firstBad, 64512 + 999);
  const r2 = encodeRaw(GGMLType.Q8_0, { dtype: "bf16", bytes: new Uint8Array(bad.buffer) }, rowLength, "count", undefined, undefined, scratch);
  assert.equal(r2.nonFinite, 2);
  const wideBad = new Float32Array(n);
  new Uint32Array(wideBad.buffer).forEach((_, i, a) => (a[i] = bad[i]! << 16));
  assert.ok(Buffer.from(r2.bytes).equals(Buffer.from(encodeRows(GGMLType.Q8_0, wideBad, rowLength))));
});
