/**
 * The int4 bit-exactness harness shared by the multimodal tests (test/support/minicpmv-family.ts,
 * test/models/minicpmv-int4.test.ts, test/models/qwen2vl-int4.test.ts): a bitsandbytes checkpoint opened through
 * ggufy's detector and decoder (the truth the converted F32 tensors must equal bit for bit), and the tensors of a
 * GGUF read straight from the file at @huggingface/gguf's offsets (an independent reader).
 */
import assert from "node:assert/strict";
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { SafetensorsCheckpoint } from "../../src/formats/safetensors/index.js";
import { decodeBnb, detectBnb, type BnbModule } from "../../src/quant/bnb/index.js";

/** A (bitsandbytes or plain bf16) checkpoint with its detected bnb modules. */
export interface DecodedCheckpoint {
  dir: string;
  st: SafetensorsCheckpoint;
  mods: Map<string, BnbModule>;
}

export async function openDecodedCheckpoint(dir: string): Promise<DecodedCheckpoint> {
  const st = await SafetensorsCheckpoint.open(dir);
  const config = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  const mods = await detectBnb(st.tensors, (n) => st.read(n), config, dir);
  return { dir, st, mods };
}

/** The decoder's value of a logical checkpoint tensor: a bnb module decoded, a BF16 tensor widened (exact). */
export async function decodedTensor(c: DecodedCheckpoint, name: string): Promise<Float32Array> {
  const m = c.mods.get(name);
  if (m) return decodeBnb(m, (n, o, l) => c.st.read(n, o, l));
  const info = c.st.get(name);
  assert.ok(info, `no ${name} in ${c.dir}`);
  assert.equal(info.dtype, "BF16", name);
  const raw = await c.st.read(name);
  const h = new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const out = new Float32Array(h.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < h.length; i++) u[i] = h[i]! << 16;
  return out;
}

/** Every tensor of a GGUF (F32 or F16 only), its raw bits read at @huggingface/gguf's offsets. */
export async function* ggufTensors(file: string): AsyncGenerator<{ name: string; ne: number[]; dtype: number; bits: Uint32Array | Uint16Array }> {
  const r = await gguf(file, { allowLocalFile: true });
  const fh = await open(file, "r");
  try {
    for (const t of r.tensorInfos) {
      const ne = t.shape.map(Number);
      const n = ne.reduce((a, b) => a * b, 1);
      const size = t.dtype === 0 ? 4 * n : t.dtype === 1 ? 2 * n : NaN;
      assert.ok(Number.isFinite(size), `${t.name}: unexpected type ${t.dtype}`);
      const buf = new ArrayBuffer(size);
      await fh.read(new Uint8Array(buf), 0, size, Number(r.tensorDataOffset + t.offset));
      yield { name: t.name, ne, dtype: t.dtype, bits: t.dtype === 0 ? new Uint32Array(buf) : new Uint16Array(buf) };
    }
  } finally {
    await fh.close();
  }
}

export const bitsOf = (f: Float32Array): Uint32Array => new Uint32Array(f.buffer, f.byteOffset, f.length);

/** Same bytes (so NaN payloads and ±0 count, as bit-exactness means). */
export const sameBits = (a: Uint32Array | Uint16Array | Float32Array, b: Uint32Array | Uint16Array | Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
