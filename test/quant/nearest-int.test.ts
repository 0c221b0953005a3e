/**
 * nearestInt / nearestSlow (src/quant/ggml/kquant-common.ts) against ggml's nearest_int bit formula
 * (ggml-quants.c: `float val = fval + 12582912.f; int i; memcpy(&i, &val, 4); return (i & 0x007fffff)
 * - 0x00400000;`), evaluated here literally through a Float32Array/Int32Array view. It guards the fast
 * path's bounds (the arithmetic form is wrong at 4194303.5) and the codecs' shared nearestInt. Inputs: ~700,000 float32 encodings — every exponent and sign with a stride through the
 * mantissas, the two ends of every binade, every encoding around the fast path's bounds (±4194303) and
 * around the values where val is 0, subnormal or 2^24, ±0, ±inf, and NaNs with several payloads.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { nearestClamped, nearestInt, nearestSlow } from "../../src/quant/ggml/kquant-common.js";

const vf = new Float32Array(1);
const vi = new Int32Array(vf.buffer);
/** the C formula, literally */
function bitFormula(v: number): number {
  vf[0] = v + 12582912;
  return (vi[0]! & 0x007fffff) - 0x00400000;
}
const bitsF = new Float32Array(1);
const bitsI = new Uint32Array(bitsF.buffer);
const ofBits = (u: number): number => {
  bitsI[0] = u >>> 0;
  return bitsF[0]!;
};
const bitsOf = (v: number): number => {
  bitsF[0] = v;
  return bitsI[0]!;
};

function encodings(): number[] {
  const out: number[] = [];
  for (let sign = 0; sign < 2; ++sign) {
    for (let e = 0; e < 256; ++e) {
      const base = (sign << 31) | (e << 23);
      for (let m = 0; m < 1 << 23; m += 8191) out.push(base | m);
      for (let m = 0; m < 64; ++m) out.push(base | m, base | (0x7fffff - m));
    }
  }
  // every encoding around the fast-path bounds, around v = −12582912 (val 0 and tiny), v = 4194304 (val 2^24), ±2^23
  for (const c of [4194303, -4194303, 4194303.5, -4194303.5, -12582912, -12582911, -8388608, 4194304, 8388608, -8388608, 16777216, -16777216]) {
    const b = bitsOf(c);
    for (let d = -4096; d <= 4096; ++d) out.push((b + d) >>> 0);
  }
  // subnormals and small values
  for (let m = 0; m < 4096; ++m) out.push(m, 0x80000000 | m);
  return out;
}

test("nearestInt and nearestSlow equal ggml's nearest_int bit formula for ~700,000 float32 inputs (all exponents, signs, binade ends, the bounds, ±0, ±inf)", () => {
  let n = 0;
  for (const u of encodings()) {
    const v = ofBits(u);
    if (v !== v) continue; // NaN: next test
    const want = bitFormula(v);
    const got = nearestInt(v);
    const slow = nearestSlow(v);
    if (got !== want || slow !== want) assert.fail(`input 0x${(u >>> 0).toString(16)} (${v}): bit formula ${want}, nearestInt ${got}, nearestSlow ${slow}`);
    ++n;
  }
  assert.ok(n > 690_000, `${n} inputs`);
  for (const v of [Infinity, -Infinity, 0, -0, 3.4028234663852886e38, -3.4028234663852886e38, 2 ** -149, -(2 ** -149)]) {
    assert.equal(nearestInt(v), bitFormula(v), `${v}`);
  }
});

test("NaN inputs: the payload bits as in C (and as the former bit-cast view gave them)", () => {
  const payloads = [0x7fc00000, 0xffc00000, 0x7fc00001, 0x7f800001, 0x7fc12345, 0xffd00000, 0x7fffffff, 0xffffffff, 0x7fa00000];
  for (const u of payloads) {
    const v = ofBits(u);
    assert.ok(v !== v);
    assert.equal(nearestInt(v), bitFormula(v), `0x${u.toString(16)}`);
    assert.equal(nearestInt(NaN), 0);
  }
});

test("nearestClamped(v, hi) = MAX(0, MIN(hi, nearest_int(v))) for the same inputs", () => {
  for (const hi of [3, 15, 31]) {
    for (const u of encodings()) {
      const v = ofBits(u);
      if (v !== v) continue;
      const l = bitFormula(v);
      const want = l < 0 ? 0 : l > hi ? hi : l;
      const got = nearestClamped(v, hi);
      if (got !== want) assert.fail(`hi ${hi}, input 0x${u.toString(16)} (${v}): want ${want}, got ${got}`);
    }
  }
});
