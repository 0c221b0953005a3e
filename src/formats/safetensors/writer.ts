/** safetensors writer: header first (8-byte aligned, space padded like the reference), then data. */
import { open } from "node:fs/promises";
import { ST_DTYPE_SIZE, type StDtype } from "./dtypes.js";

export interface StEntry {
  name: string;
  dtype: StDtype;
  shape: readonly number[];
}

export interface StTensor extends StEntry {
  data: Uint8Array;
}

export function stByteLength(e: StEntry): number {
  return e.shape.reduce((a, b) => a * b, 1) * ST_DTYPE_SIZE[e.dtype];
}

/** The full header (length prefix + JSON + padding) for entries laid out in the given order. */
export function safetensorsHeader(entries: readonly StEntry[], metadata?: Record<string, string>): Uint8Array {
  const obj: Record<string, unknown> = {};
  if (metadata) obj["__metadata__"] = metadata;
  let off = 0;
  for (const e of entries) {
    const n = stByteLength(e);
    obj[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = Buffer.from(JSON.stringify(obj), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

/** Write a whole (small) safetensors file. */
export async function writeSafetensors(file: string, tensors: readonly StTensor[], metadata: Record<string, string> = { format: "pt" }): Promise<void> {
  for (const t of tensors) {
    if (t.data.length !== stByteLength(t)) throw new Error(`writeSafetensors: ${t.name} has ${t.data.length} bytes, shape × dtype says ${stByteLength(t)}`);
  }
  const fh = await open(file, "w");
  try {
    await fh.write(safetensorsHeader(tensors, metadata));
    for (const t of tensors) await fh.write(t.data);
  } finally {
    await fh.close();
  }
}
