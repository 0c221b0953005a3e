/**
 * Helpers of the LoRA merge tests: an independent float64 merge (written from PEFT's definitions in
 * peft/tuners/lora/layer.py — Linear: ΔW = scale·(B @ A); Embedding: ΔW = scale·(B @ A)ᵀ — not from the
 * code under test) and GGUF readers. The Q/K permutation and the HF → GGUF names are test/support/hf-llama.ts's.
 */
import assert from "node:assert/strict";
import { readGguf, readGgufTensorBytes, type GGUFFile } from "../../src/index.js";
import { SourceCheckpoint } from "../../src/source/checkpoint.js";
import { DECODERS } from "../../src/source/registry.js";
import type { PeftAdapter } from "../../fixtures/peft.js";
export { permuteRows, llamaGgufName as ggufNameOf } from "../support/hf-llama.js";

/** The base's decoded rows (the converter's own decoders: these are the tests' "W" for any base format). */
export async function decodedBase(dir: string, only?: (name: string) => boolean): Promise<Map<string, { shape: readonly number[]; values: Float32Array }>> {
  const src = await SourceCheckpoint.open(dir, DECODERS);
  try {
    const out = new Map<string, { shape: readonly number[]; values: Float32Array }>();
    for (const n of src.names()) if (!only || only(n)) out.set(n, { shape: src.get(n)!.shape, values: await src.readAll(n) });
    return out;
  } finally {
    await src.close();
  }
}

/**
 * W + Σ S_i·scale_i·ΔW_i in float64, rounded once; modules_to_save replace. Only the tensors an adapter
 * touches are returned. Loops written plainly: (o, i) element by element, Σ over k.
 */
export function independentMerge(
  base: ReadonlyMap<string, { shape: readonly number[]; values: Float32Array }>,
  adapters: readonly { adapter: PeftAdapter; scale?: number }[],
): Map<string, Float32Array> {
  const acc = new Map<string, Float64Array>();
  for (const { adapter, scale = 1 } of adapters) {
    for (const s of adapter.saved) acc.set(s.baseName, Float64Array.from(s.values));
    for (const t of adapter.targets) {
      const w = base.get(t.baseName)!;
      const [rows, cols] = [w.shape[0]!, w.shape[1]!];
      const cur = acc.get(t.baseName) ?? Float64Array.from(w.values);
      const r = t.rank;
      const coef = scale * t.scale;
      for (let o = 0; o < rows; o++) {
        for (let i = 0; i < cols; i++) {
          let d = 0;
          if (t.embedding) {
            // W [vocab, hidden]: ΔW[v, h] = Σ_k B[h, k]·A[k, v]
            for (let k = 0; k < r; k++) d += t.b[i * r + k]! * t.a[k * rows + o]!;
          } else {
            for (let k = 0; k < r; k++) d += t.b[o * r + k]! * t.a[k * cols + i]!;
          }
          cur[o * cols + i] = cur[o * cols + i]! + coef * d;
        }
      }
      acc.set(t.baseName, cur);
    }
  }
  return new Map([...acc].map(([k, v]) => [k, Float32Array.from(v)]));
}

/** Distance in units in the last place between two float32 values (by their ordered bit patterns). */
export function ulpDistance(a: number, b: number): number {
  const f = new Float32Array([a, b]);
  const u = new Int32Array(f.buffer);
  const key = (x: number): number => (x < 0 ? -2147483648 - x : x);
  return Math.abs(key(u[0]!) - key(u[1]!));
}

export function maxUlp(got: Float32Array, want: Float32Array): { max: number; at: number } {
  assert.equal(got.length, want.length);
  let max = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = ulpDistance(got[i]!, want[i]!);
    if (d > max) {
      max = d;
      at = i;
    }
  }
  return { max, at };
}

export async function ggufTensors(file: string): Promise<{ g: GGUFFile; bytes: Map<string, Uint8Array> }> {
  const g = await readGguf(file);
  const bytes = new Map<string, Uint8Array>();
  for (const t of g.tensors) bytes.set(t.name, await readGgufTensorBytes(g, t));
  return { g, bytes };
}

export function asF32(b: Uint8Array): Float32Array {
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Capture a CLI run's stdout/stderr. */
export function captureIO(): { io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WriteStream }; out: () => string; err: () => string } {
  let o = "";
  let e = "";
  return {
    io: {
      stdout: { write: (s: string) => ((o += s), true) } as unknown as NodeJS.WritableStream,
      stderr: { write: (s: string) => ((e += s), true), isTTY: false } as unknown as NodeJS.WriteStream,
    },
    out: () => o,
    err: () => e,
  };
}
