/**
 * IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S against ggml itself (through koffi):
 * - the derived dequantisation grids equal what ggml's to_float returns for crafted blocks that put
 *   every grid index in every slot with a known scale;
 * - to_float bit for bit on random blocks;
 * - ggml_quantize_chunk(type, …, imatrix) bytes on rows of several distributions with a random
 *   importance vector, and with imatrix = NULL for the types ggml quantizes without one;
 * - requiresImatrix as ggml_quantize_requires_imatrix (plus IQ1_M, which llama-quantize refuses).
 * The neighbour lists (iq2xs_init_impl / iq3xs_init_impl) are checked through the quantisation bytes:
 * most 8-/4-groups of these rows fall off the grid, so every such group's bytes depend on them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codecFor, GGMLType, typeName } from "../../src/quant/ggml/index.js";
import { ggmlOracle } from "../support/ggml-oracle.js";
import { mulberry32, quantizeCases } from "./iq-cases.js";
import { IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS } from "../../src/quant/ggml/iq-common.js";

const TYPES = [GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ3_XXS, GGMLType.IQ3_S, GGMLType.IQ1_S, GGMLType.IQ1_M];

test("IQ codecs: requiresImatrix as ggml_quantize_requires_imatrix (IQ1_M as llama-quantize)", () => {
  const g = ggmlOracle();
  for (const t of TYPES) {
    const c = codecFor(t);
    assert.equal(Boolean(c.requiresImatrix), g.requiresImatrix(t) || t === GGMLType.IQ1_M, typeName(t));
    assert.equal(c.typeSize, g.rowSize(t, 256), typeName(t));
  }
});

test("IQ grids: every grid point and ksigns equal ggml's dequantisation of crafted blocks", () => {
  const g = ggmlOracle();
  // d = 1 (fp16 0x3c00); each case: how to put grid index k in a slot, scale and sign fields zero
  const one = 0x3c00;
  const cases: Array<{ t: GGMLType; grid: Int16Array; dim: number; n: number; make: (b: Uint8Array, ks: number[]) => void; unit: number; delta?: number }> = [
    {
      // db = (0.5 + 0)·0.25 = 0.125
      t: GGMLType.IQ2_XXS, grid: IQ2XXS_GRID, dim: 8, n: 256, unit: 0.125,
      make: (b, ks) => { for (let s = 0; s < 32; s++) b[2 + 8 * (s >> 2) + (s & 3)] = ks[s]!; },
    },
    {
      t: GGMLType.IQ2_XS, grid: IQ2XS_GRID, dim: 8, n: 512, unit: 0.125,
      make: (b, ks) => { for (let s = 0; s < 32; s++) { b[2 + 2 * s] = ks[s]! & 255; b[3 + 2 * s] = ks[s]! >> 8; } },
    },
    {
      t: GGMLType.IQ2_S, grid: IQ2S_GRID, dim: 8, n: 1024, unit: 0.125,
      make: (b, ks) => { for (let s = 0; s < 32; s++) { b[2 + s] = ks[s]! & 255; b[66 + (s >> 2)]! |= (ks[s]! >> 8) << (2 * (s & 3)); } },
    },
    {
      // db = 0.5·0.5 = 0.25
      t: GGMLType.IQ3_XXS, grid: IQ3XXS_GRID, dim: 4, n: 256, unit: 0.25,
      make: (b, ks) => { for (let s = 0; s < 64; s++) b[2 + s] = ks[s]!; },
    },
    {
      // db = d·1
      t: GGMLType.IQ3_S, grid: IQ3S_GRID, dim: 4, n: 512, unit: 1,
      make: (b, ks) => { for (let s = 0; s < 64; s++) { b[2 + s] = ks[s]! & 255; b[66 + (s >> 3)]! |= (ks[s]! >> 8) << (s & 7); } },
    },
    {
      // dl = d·1, delta +0.125
      t: GGMLType.IQ1_S, grid: IQ1S_GRID, dim: 8, n: 2048, unit: 1, delta: 0.125,
      make: (b, ks) => { for (let s = 0; s < 32; s++) { b[2 + s] = ks[s]! & 255; const q = 34 + 2 * (s >> 2); const h = (b[q]! | (b[q + 1]! << 8)) | ((ks[s]! >> 8) << (3 * (s & 3))); b[q] = h & 255; b[q + 1] = h >> 8; } },
    },
  ];
  for (const c of cases) {
    const size = g.rowSize(c.t, 256);
    const slots = 256 / c.dim;
    const nblk = Math.ceil(c.n / slots);
    const bytes = new Uint8Array(nblk * size);
    for (let bi = 0; bi < nblk; bi++) {
      const blk = bytes.subarray(bi * size, (bi + 1) * size);
      if (c.t !== GGMLType.IQ1_M) { blk[0] = one & 255; blk[1] = one >> 8; }
      const ks: number[] = [];
      for (let s = 0; s < slots; s++) ks.push((bi * slots + s) % c.n);
      c.make(blk, ks);
    }
    const y = g.dequantize(c.t, bytes, nblk * 256);
    for (let k = 0; k < c.n; k++) {
      for (let j = 0; j < c.dim; j++) {
        const v = y[k * c.dim + j]! / c.unit - (c.delta ?? 0);
        assert.equal(c.grid[k * c.dim + j], v, `${typeName(c.t)} grid point ${k} coordinate ${j}`);
      }
    }
  }
  // ksigns_iq2xs through IQ2_XXS: grid point 0 is all 8s; sign field s of slot l
  const blk = new Uint8Array(66 * 16);
  for (let bi = 0; bi < 16; bi++) {
    blk[66 * bi] = one & 255; blk[66 * bi + 1] = one >> 8;
    for (let ib = 0; ib < 8; ib++) {
      // four 7-bit sign indices per 32-group: s = 8·(8·bi + ib)/… cover 0..127 over the 16 blocks
      let aux = 0;
      for (let l = 0; l < 4; l++) aux |= (((bi * 32 + ib * 4 + l) & 127) << (7 * l));
      const p = 66 * bi + 2 + 8 * ib + 4;
      blk[p] = aux & 255; blk[p + 1] = (aux >>> 8) & 255; blk[p + 2] = (aux >>> 16) & 255; blk[p + 3] = (aux >>> 24) & 15;
    }
  }
  const y = g.dequantize(GGMLType.IQ2_XXS, blk, 16 * 256);
  for (let s = 0; s < 128; s++) {
    let m = 0;
    for (let j = 0; j < 8; j++) if (y[8 * s + j]! < 0) m |= 1 << j;
    assert.equal(KSIGNS[s], m, `ksigns_iq2xs[${s}]`);
  }
});

test("IQ dequantize: random blocks equal ggml's to_float bit for bit", () => {
  const g = ggmlOracle();
  const r = mulberry32(99);
  for (const t of TYPES) {
    const c = codecFor(t);
    const nb = 64;
    const bytes = new Uint8Array(nb * c.typeSize);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (r() * 256) | 0;
    // finite scales: fp16 exponent field kept below 31 (d is the first two bytes except for IQ1_M,
    // whose fp16 is spread over the top nibbles of its four scale words)
    for (let b = 0; b < nb; b++) {
      const o = b * c.typeSize;
      if (t === GGMLType.IQ1_M) bytes[o + 55]! &= 0xbf;
      else bytes[o + 1]! &= 0xbf;
    }
    const want = new Uint32Array(g.dequantize(t, bytes, nb * 256).buffer);
    const got = new Float32Array(nb * 256);
    c.dequantize(bytes, got);
    const gotBits = new Uint32Array(got.buffer);
    for (let i = 0; i < want.length; i++) assert.equal(gotBits[i], want[i], `${typeName(t)} value ${i}`);
  }
});

quantizeCases([GGMLType.IQ3_XXS, GGMLType.IQ3_S]);

test("IQ2_XXS / IQ2_XS / IQ1_S refuse to quantize without an importance vector", () => {
  for (const t of [GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ1_S]) {
    assert.throws(() => codecFor(t).quantize(new Float32Array(256), new Uint8Array(codecFor(t).typeSize)), /importance matrix/);
  }
});
