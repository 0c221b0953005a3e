/**
 * decoder(encoder(x)) ≈ x for every bitsandbytes variant the fixture encoder produces, with the exact keys,
 * dtypes, shapes and JSON field order bitsandbytes writes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { detectBnb, decodeBnbRows, type Bnb4bitModule } from "../../src/quant/bnb/index.js";
import { bnbModuleTensors, memoryCheckpoint, roundTo, type QuantStorage, type TorchFloat } from "../../fixtures/bnb.js";

/** deterministic normal-ish samples (sum of uniforms), with a few structured blocks */
function samples(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (u() + u() + u() + u() - 2) * 0.05;
  for (let i = 0; i < Math.min(n, 40); i++) out[i] = 0; // an all-zero stretch
  if (n > 300) out[300] = 0.9; // an outlier
  return out;
}

const W = "model.layers.3.self_attn.q_proj.weight";
const ITEM: Record<QuantStorage, number> = { uint8: 1, int8: 1, float16: 2, bfloat16: 2, float32: 4, float64: 8 };
const ST: Record<QuantStorage, string> = { uint8: "U8", int8: "I8", float16: "F16", bfloat16: "BF16", float32: "F32", float64: "F64" };
const SHORT: Record<TorchFloat, string> = { float32: "f32", float16: "f16", bfloat16: "bf16" };

test("4-bit round trip: nf4/fp4 × double quant × blocksize × quant_storage × dtype, keys and shapes", async () => {
  let cases = 0;
  for (const [rows, cols] of [[13, 70], [3, 7], [8, 64]] as const) {
    const x = samples(rows * cols, rows * 1000 + cols);
    const n = rows * cols;
    for (const method of ["nf4", "fp4"] as const) {
      for (const doubleQuant of [false, true]) {
        for (const blocksize of [32, 64, 128, 256]) {
          for (const quantStorage of ["uint8", "bfloat16", "float32"] as const) {
            for (const dtype of ["float32", "bfloat16", "float16"] as const) {
              cases++;
              const what = `${method} dq=${doubleQuant} bs${blocksize} ${quantStorage} ${dtype} [${rows},${cols}]`;
              const tensors = bnbModuleTensors(W, x, [rows, cols], { method, doubleQuant, blocksize, quantStorage, dtype });
              const nb = Math.ceil(n / blocksize);
              // keys, dtypes, shapes
              const want: [string, string, number[]][] = [
                [W, ST[quantStorage], [Math.ceil(Math.ceil(n / 2) / ITEM[quantStorage]), 1]],
                [`${W}.absmax`, doubleQuant ? "U8" : "F32", [nb]],
                [`${W}.quant_map`, "F32", [16]],
                ...(doubleQuant ? ([[`${W}.nested_absmax`, "F32", [Math.ceil(nb / 256)]], [`${W}.nested_quant_map`, "F32", [256]]] as [string, string, number[]][]) : []),
              ];
              for (const [name, dt, shape] of want) {
                const t = tensors.find((t) => t.name === name);
                assert.ok(t, `${what}: ${name} present`);
                assert.equal(t.dtype, dt, `${what}: ${name} dtype`);
                assert.deepEqual(t.shape, shape, `${what}: ${name} shape`);
              }
              const qs = tensors.find((t) => t.name === `${W}.quant_state.bitsandbytes__${method}`)!;
              assert.equal(tensors.length, want.length + 1, `${what}: no other keys`);
              const js = JSON.parse(Buffer.from(qs.data).toString("utf8")) as Record<string, unknown>;
              assert.deepEqual(Object.keys(js), ["quant_type", "blocksize", "dtype", "shape", ...(doubleQuant ? ["nested_blocksize", "nested_dtype", "nested_offset"] : [])]);
              assert.deepEqual([js["quant_type"], js["blocksize"], js["dtype"], js["shape"]], [method, blocksize, dtype, [rows, cols]]);
              if (doubleQuant) assert.deepEqual([js["nested_blocksize"], js["nested_dtype"]], [256, "float32"]);

              // detection
              const mc = memoryCheckpoint(tensors);
              const mods = await detectBnb(mc.infos, mc.readSmall, { quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: method, bnb_4bit_use_double_quant: doubleQuant });
              const m = mods.get(W) as Bnb4bitModule;
              assert.ok(m, what);
              assert.deepEqual([m.kind, m.blocksize, m.doubleQuant, m.dtype, m.storageDtype, m.rows, m.cols], [method, blocksize, doubleQuant, SHORT[dtype], ST[quantStorage], rows, cols], what);
              assert.deepEqual(m.warnings, [], `${what}: the encoder's quant_map agrees with the decoder's table`);
              assert.deepEqual(new Set([W, ...m.auxKeys]), new Set(tensors.map((t) => t.name)));

              // values
              const y = await decodeBnbRows(m, mc.read, 0, rows);
              const halfGap = method === "nf4" ? 0.1520 : 0.1667; // widest gaps: NF4 -1 … -0.696, FP4 0.667 … 1
              let maxAbs = 0;
              for (const v of x) maxAbs = Math.max(maxAbs, Math.abs(v));
              for (let i = 0; i < n; i++) {
                const xi = roundTo(dtype, x[i]!);
                let am = 0;
                const b = Math.floor(i / blocksize);
                for (let j = b * blocksize; j < Math.min(n, (b + 1) * blocksize); j++) am = Math.max(am, Math.abs(roundTo(dtype, x[j]!)));
                const tol = halfGap * am * 1.001 + (doubleQuant ? 0.01 * maxAbs : 0) + Math.abs(xi) * 2 ** -8 + 1e-30;
                if (!(Math.abs(y[i]! - xi) <= tol)) assert.fail(`${what}: element ${i}: decoded ${y[i]} vs ${xi} (block absmax ${am}, tol ${tol})`);
                assert.equal(y[i], roundTo(dtype, y[i]!), `${what}: element ${i} is exact in ${dtype}`);
                // the block maximum itself decodes back exactly (code ±1) without double quant
                if (!doubleQuant && am > 0 && Math.abs(xi) === am) assert.equal(Math.abs(y[i]!), roundTo(dtype, am), `${what}: absmax element ${i}`);
              }
            }
          }
        }
      }
    }
  }
  assert.equal(cases, 3 * 2 * 2 * 4 * 3 * 3);
});

test("LLM.int8 round trip: with and without weight_format, every source dtype", async () => {
  const M = "model.layers.1.mlp.down_proj";
  for (const [rows, cols] of [[5, 172], [1, 3], [64, 64]] as const) {
    const x = samples(rows * cols, 77 + rows);
    x.fill(0, cols, 2 * Math.min(cols, rows * cols - cols) > 0 && rows > 1 ? 2 * cols : cols); // an all-zero row → SCB 0
    for (const weightFormat of [true, false]) {
      for (const dtype of ["float32", "bfloat16", "float16"] as const) {
        const what = `int8 [${rows},${cols}] ${dtype} weight_format=${weightFormat}`;
        const tensors = bnbModuleTensors(`${M}.weight`, x, [rows, cols], { method: "int8", dtype, weightFormat });
        assert.deepEqual(
          tensors.map((t) => [t.name, t.dtype, t.shape]),
          [[`${M}.weight`, "I8", [rows, cols]], [`${M}.SCB`, "F32", [rows]], ...(weightFormat ? [[`${M}.weight_format`, "U8", []]] : [])],
          what,
        );
        const mc = memoryCheckpoint(tensors);
        const mods = await detectBnb(mc.infos, mc.readSmall, { quant_method: "bitsandbytes", load_in_8bit: true }, undefined, { int8Dtype: SHORT[dtype] as "f32" });
        const m = mods.get(`${M}.weight`)!;
        assert.deepEqual([m.kind, m.rows, m.cols, m.dtype, m.doubleQuant], ["int8", rows, cols, SHORT[dtype], false], what);
        const y = await decodeBnbRows(m, mc.read, 0, rows);
        const scb = new Float32Array(tensors[1]!.data.buffer.slice(tensors[1]!.data.byteOffset, tensors[1]!.data.byteOffset + rows * 4));
        for (let r = 0; r < rows; r++) {
          let am = 0;
          for (let c = 0; c < cols; c++) am = Math.max(am, Math.abs(roundTo("float16", roundTo(dtype, x[r * cols + c]!))));
          assert.equal(scb[r], am, `${what}: SCB[${r}] is the fp16 row absmax`);
          for (let c = 0; c < cols; c++) {
            const i = r * cols + c;
            const xi = roundTo(dtype, x[i]!);
            const tol = (am / 127) * 0.5 * 1.0001 + Math.abs(xi) * 2 ** -8 + 1e-30;
            if (!(Math.abs(y[i]! - xi) <= tol)) assert.fail(`${what}: [${r},${c}] decoded ${y[i]} vs ${xi} (tol ${tol})`);
          }
        }
      }
    }
  }
});
