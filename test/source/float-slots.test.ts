/**
 * Float slots (src/convert/slots.ts, quant/ggml/float-wasm.ts): a shared WebAssembly memory that a
 * plain-float chunk is read into, converted in by a worker and written from. The truth: half.ts's scalar
 * f32BitsToF16 (the readable reference of ggml_compute_fp32_to_fp16) for the kernels, one thread's
 * inline encoder for the pool, and a one-thread conversion for the pipeline.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { bindFloatSlot, newFloatSlotMemory, SLOT_OUT, slotFits } from "../../src/quant/ggml/float-wasm.js";
import { f32BitsToF16 } from "../../src/formats/half.js";
import { createInlineEncoder, runPlan } from "../../src/convert/pipeline.js";
import { WorkerPoolEncoder } from "../../src/convert/workers.js";
import { plan } from "../../src/convert/convert.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { Rng } from "../../fixtures/rng.js";

const rng = (seed: number): (() => number) => {
  const g = new Rng(seed);
  return () => g.uniform();
};

const tmp = await scratchDir("ggufy-float-slots-");
after(() => rm(tmp, { recursive: true, force: true }));

/** bit patterns of every class: normal in and out of f16's range, subnormal, zero, inf, NaN */
function bf16Patterns(n: number, seed: number, finiteOnly = false): Uint16Array {
  const r = rng(seed);
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let v = Math.floor(r() * 65536);
    if (r() < 0.7) v = (v & 0x807f) | ((0x71 + Math.floor(r() * 30)) << 7); // mostly f16-normal exponents
    if (finiteOnly && (v & 0x7f80) === 0x7f80) v &= 0xbfff;
    h[i] = v;
  }
  return h;
}

const isFiniteBits32 = (u: number): boolean => (u & 0x7f800000) !== 0x7f800000;

test("slot kernels: bf16/f32 → f16 at SLOT_OUT and the scans, against the scalar reference, any count", () => {
  const mem = newFloatSlotMemory();
  assert.ok(mem, "shared WebAssembly memory with SIMD is available on Node 20");
  const slot = bindFloatSlot(mem)!;
  assert.ok(slot);
  const r = rng(7);
  for (const n of [1, 7, 8, 9, 24, 4095, 65536 + 3, SLOT_OUT / 4 - 8]) {
    for (const finiteOnly of [false, true]) {
      // bf16
      const h = bf16Patterns(Math.min(n, SLOT_OUT / 2 - 8), n + (finiteOnly ? 1 : 0), finiteOnly);
      slot.u8.set(new Uint8Array(h.buffer), 0);
      slot.u8.fill(0xff, h.length * 2, h.length * 2 + 16); // garbage after the values: padding must not read it
      const fin = slot.toF16("bf16", h.length);
      const out = new Uint16Array(slot.u8.buffer.slice(SLOT_OUT, SLOT_OUT + h.length * 2));
      let allFin = true;
      for (let i = 0; i < h.length; i++) {
        const u = h[i]! << 16;
        if (!isFiniteBits32(u)) allFin = false;
        if (out[i] !== f32BitsToF16(u >>> 0)) assert.fail(`bf16 ${h[i]!.toString(16)} (n ${h.length}, value ${i}) gave ${out[i]!.toString(16)}, expected ${f32BitsToF16(u >>> 0).toString(16)}`);
      }
      assert.equal(fin, allFin, `bf16 → f16 finite flag, n ${h.length}`);
      slot.u8.set(new Uint8Array(h.buffer), 0);
      assert.equal(slot.allFinite("bf16", h.length), allFin, `bf16 scan, n ${h.length}`);
      // bf16 → f32: the bits shifted up, exactly
      slot.u8.fill(0xff, h.length * 2, h.length * 2 + 16);
      assert.equal(slot.bf16ToF32(h.length), allFin, `bf16 → f32 finite flag, n ${h.length}`);
      const wide = new Uint32Array(slot.u8.buffer.slice(SLOT_OUT, SLOT_OUT + h.length * 4));
      for (let i = 0; i < h.length; i++) if (wide[i] !== (h[i]! << 16) >>> 0) assert.fail(`bf16 ${h[i]!.toString(16)} (n ${h.length}, value ${i}) widened to ${wide[i]!.toString(16)}`);
      // f32
      const u32 = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        let v = (Math.floor(r() * 2 ** 32) >>> 0) & (r() < 0.7 ? 0x87ffffff : 0xffffffff);
        if (r() < 0.5) v = ((v & 0x807fffff) | ((0x66 + Math.floor(r() * 40)) << 23)) >>> 0;
        if (finiteOnly && !isFiniteBits32(v)) v &= 0xbfffffff;
        u32[i] = v >>> 0;
      }
      slot.u8.set(new Uint8Array(u32.buffer), 0);
      const fin32 = slot.toF16("f32", n);
      const out32 = new Uint16Array(slot.u8.buffer.slice(SLOT_OUT, SLOT_OUT + n * 2));
      let allFin32 = true;
      for (let i = 0; i < n; i++) {
        if (!isFiniteBits32(u32[i]!)) allFin32 = false;
        if (out32[i] !== f32BitsToF16(u32[i]!)) assert.fail(`f32 ${u32[i]!.toString(16)} (n ${n}, value ${i}) gave ${out32[i]!.toString(16)}`);
      }
      assert.equal(fin32, allFin32, `f32 → f16 finite flag, n ${n}`);
      assert.equal(slot.allFinite("f32", n), allFin32, `f32 scan, n ${n}`);
      // f16 scan (the bytes as f16)
      const f16n = Math.min(n, SLOT_OUT / 2 - 8);
      const f16 = new Uint16Array(u32.buffer, 0, f16n);
      slot.u8.set(new Uint8Array(f16.buffer, 0, f16n * 2), 0);
      assert.equal(slot.allFinite("f16", f16n), f16.every((x) => (x & 0x7c00) !== 0x7c00), `f16 scan, n ${f16n}`);
    }
  }
  assert.ok(slotFits(4, SLOT_OUT / 4) && !slotFits(4, SLOT_OUT / 4 + 1) && slotFits(2, SLOT_OUT / 2) && !slotFits(2, SLOT_OUT / 2 + 1));
  assert.throws(() => slot.toF16("f32", SLOT_OUT / 4 + 1), /do not fit/);
});

test("the pool converts a chunk where it was read and hands the slot back after the write; NaN/Inf as on one thread", async () => {
  const pool = new WorkerPoolEncoder(2);
  const inline = createInlineEncoder();
  try {
    const n = 3 * 65536 + 40; // 40 values past the last 64Ki piece, a multiple of the row (40)
    const row = 40;
    for (const [label, mutate] of [["finite", (_: Uint16Array) => undefined], ["NaN at 131077 and -inf at 5", (h: Uint16Array) => ((h[131077] = 0x7fc1), (h[5] = 0xff80))]] as const) {
      const h = bf16Patterns(n, 11, true);
      mutate(h);
      const bytes = new Uint8Array(h.buffer);
      for (const mode of ["reject", "count"] as const) {
        const target = pool.readTarget(GGMLType.F16, "bf16", n);
        assert.ok(target, "a slot for a bf16 → f16 chunk");
        const before = pool.slots.idle;
        target.set(bytes, 0);
        const got = await pool.encodeRaw(GGMLType.F16, { dtype: "bf16", bytes: target.subarray(0, n * 2) }, row, mode);
        const want = await inline.encodeRaw!(GGMLType.F16, { dtype: "bf16", bytes: bytes.slice() }, row, mode);
        assert.equal(got.firstBad, want.firstBad, `${label}, ${mode}: first bad index`);
        assert.equal(got.nonFinite, want.nonFinite, `${label}, ${mode}: count`);
        if (want.badValue !== undefined) assert.ok(Object.is(got.badValue, want.badValue), `${label}: bad value ${got.badValue}`);
        assert.ok(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), `${label}, ${mode}: bytes differ from one thread's`);
        if (label === "finite") {
          assert.equal(got.bytes.buffer, target.buffer, "the output is in the slot (this thread's view)");
          assert.equal(got.bytes.byteOffset, SLOT_OUT);
          assert.equal(pool.slots.idle, before, "held until written");
          pool.pool.give(got.bytes);
          assert.equal(pool.slots.idle, before + 1, "given back after the write");
        } else {
          assert.notEqual(got.bytes.buffer, target.buffer);
          assert.equal(pool.slots.idle, before + 1, "a chunk that left the slot frees it at once");
        }
      }
    }
    // an unchanged copy: the scan runs in the slot and the output is the input itself
    const target = pool.readTarget(GGMLType.BF16, "bf16", 1000)!;
    const h = bf16Patterns(1000, 3, true);
    target.set(new Uint8Array(h.buffer));
    const same = await pool.encodeRaw(GGMLType.BF16, { dtype: "bf16", bytes: target.subarray(0, 2000) }, 100, "reject");
    assert.equal(same.bytes.buffer, target.buffer);
    assert.equal(same.bytes.byteOffset, 0);
    assert.ok(Buffer.from(same.bytes).equals(Buffer.from(h.buffer)));
    pool.pool.give(same.bytes);
    // bf16 → F32 in the slot
    const t32 = pool.readTarget(GGMLType.F32, "bf16", 1000)!;
    t32.set(new Uint8Array(h.buffer));
    const wide = await pool.encodeRaw(GGMLType.F32, { dtype: "bf16", bytes: t32.subarray(0, 2000) }, 100, "reject");
    assert.equal(wide.bytes.buffer, t32.buffer);
    assert.ok(Buffer.from(wide.bytes).equals(Buffer.from((await inline.encodeRaw!(GGMLType.F32, { dtype: "bf16", bytes: new Uint8Array(h.buffer).slice() }, 100, "reject")).bytes)));
    pool.pool.give(wide.bytes);
    // no slot for a quantized target or a chunk too large for one
    assert.equal(pool.readTarget(GGMLType.Q4_K, "bf16", 4096), undefined);
    assert.equal(pool.readTarget(GGMLType.F16, "f32", SLOT_OUT / 4 + 1), undefined);
    assert.equal(pool.readTarget(GGMLType.F32, "bf16", SLOT_OUT / 4 + 1), undefined, "its f32 output would not fit");
    assert.equal(pool.readTarget(GGMLType.F32, "f16", 1000), undefined, "f16 → f32 has no slot kernel");
    assert.equal(pool.slots.idle, pool.slots.allocated, "every slot free again");
  } finally {
    await pool.close();
    await inline.close!();
  }
});

test("bf16 and f32 checkpoints → f16 / bf16 / f32 through two workers' slots: the bytes of one thread", async (t) => {
  for (const [dtype, outtype] of [["BF16", "f16"], ["F32", "f16"], ["BF16", "bf16"], ["F32", "f32"], ["BF16", "f32"]] as const) {
    const dir = path.join(tmp, `tiny-${dtype}`);
    await writeTinyFamily(dir, "llama3.1", { dtype, sizes: { hidden: 512, heads: 8, kvHeads: 4, headDim: 64, ffn: 1376, layers: 2 } }).catch((e: unknown) => {
      if (!String(e).includes("EEXIST")) throw e;
    });
    const run = async (encoder: ReturnType<typeof createInlineEncoder> | WorkerPoolEncoder, outfile: string): Promise<void> => {
      const p = await plan({ input: dir, outfile, outtype, force: true });
      try {
        await runPlan(p.files, { encoder, chunkElements: 100_000, inflight: 6, force: true });
      } finally {
        await encoder.close!();
        await p.close();
      }
    };
    const pool = new WorkerPoolEncoder(2);
    const a = path.join(tmp, `${dtype}-${outtype}-2.gguf`);
    const b = path.join(tmp, `${dtype}-${outtype}-1.gguf`);
    await run(pool, a);
    await run(createInlineEncoder(), b);
    t.diagnostic(`${dtype} → ${outtype}: ${pool.slots.allocated} slots`);
    assert.ok(pool.slots.allocated >= 2, `slots were used (${pool.slots.allocated})`);
    assert.equal(pool.slots.idle, pool.slots.allocated, "every slot handed back");
    assert.ok((await readFile(a)).equals(await readFile(b)), `${dtype} → ${outtype}: two workers' GGUF differs from one thread's`);
  }
});
