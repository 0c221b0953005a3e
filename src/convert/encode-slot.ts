/**
 * The float-slot fast path of encodeRaw (encode.ts), in a module of its own that loads no codec: the
 * workers take it without importing the quantizers, so a conversion to F16/BF16/F32 does not pay for
 * loading them in every worker while the main thread plans (two cores).
 */
import { SLOT_OUT, type FloatSlot } from "../quant/ggml/float-wasm.js";
import { GGMLType } from "../quant/ggml/types.js";
import type { RawRows } from "../source/types.js";
import { unchangedCopy } from "./chunk.js";

/**
 * Stored plain-float bytes at the start of `slot`'s memory, as `type`: an unchanged copy returns them
 * after the scan; bf16/f32 → F16 and bf16 → F32 convert to SLOT_OUT. Undefined when the chunk is not one of those or
 * holds a NaN/Inf (the caller then takes encodeRaw's general path, which reports or counts exactly;
 * the input bytes are untouched).
 */
export function encodeInSlot(type: GGMLType, raw: RawRows, slot: FloatSlot): { bytes: Uint8Array } | undefined {
  if (raw.encoded) return undefined;
  if (raw.bytes.byteOffset !== 0) throw new Error("internal: a float slot's bytes must start at 0");
  const n = raw.bytes.length / (raw.dtype === "f32" ? 4 : 2);
  const same = unchangedCopy(type, raw.dtype);
  if (same) return slot.allFinite(raw.dtype, n) ? { bytes: raw.bytes } : undefined;
  if (type === GGMLType.F16 && raw.dtype !== "f16") return slot.toF16(raw.dtype, n) ? { bytes: slot.u8.subarray(SLOT_OUT, SLOT_OUT + n * 2) } : undefined;
  if (type === GGMLType.F32 && raw.dtype === "bf16") return slot.bf16ToF32(n) ? { bytes: slot.u8.subarray(SLOT_OUT, SLOT_OUT + n * 4) } : undefined;
  return undefined;
}
