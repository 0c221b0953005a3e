/**
 * The per-chunk work: float32 rows (or the stored bytes of plain float rows) → bytes of the target
 * type, with the NaN/Inf check. Pure, so it can run in a worker.
 */
import { codecFor } from "../quant/ggml/index.js";
import { GGMLType, rowBytes } from "../quant/ggml/types.js";
import { bf16ToF16Bytes, bf16ToF32, f32ToF16Bytes, rawAllFinite, type FloatSlot } from "../quant/ggml/float-wasm.js";
import { encodeInSlot } from "./encode-slot.js";
import { f16Lut } from "../formats/half.js";
import { decodeEncoded, decodeEncodedRange, encodedRangeFinite } from "../source/registry.js";
import type { JobTimes } from "./profile.js";
import { firstNonFinite, unchangedCopy, type EncodeResult, type FiniteMode, type RawChunk } from "./chunk.js";

export { checkFinite, firstNonFinite, nonFiniteError, rawCount, type EncodeResult, type FiniteMode, type RawChunk } from "./chunk.js";

/** `qw`: the importance vector of the rows (--imatrix; rowLength floats), or none. */
export function encodeRows(type: GGMLType, rows: Float32Array, rowLength: number, into?: Uint8Array, qw?: Float32Array): Uint8Array {
  const nRows = rows.length / rowLength;
  const size = rowBytes(type, rowLength) * nRows;
  const out = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
  codecFor(type).quantize(rows, out, qw);
  return out;
}

/**
 * Reusable memory of one encoding thread (a worker, or the main thread with --threads 1): the float32
 * array rows are widened or decoded into, and optionally the job's stage times (GGUFY_PROFILE). Passed
 * in by the caller, so that nothing here is module-level state.
 */
export class EncodeScratch {
  private f32 = new Float32Array(0);
  /** when set, encodeRaw adds its stage times here */
  times: JobTimes | undefined;
  /**
   * when set, the job's raw bytes are at the start of this float slot's memory (slots.ts): conversions
   * to F16 (and bf16 → F32) and unchanged copies' scans run there, the output at SLOT_OUT
   */
  slot: FloatSlot | undefined;
  /** a float32 view of `n` values, reused across calls (its contents are garbage) */
  floats(n: number): Float32Array {
    if (this.f32.length < n) this.f32 = new Float32Array(n);
    return this.f32.subarray(0, n);
  }
}

const now = (): number => performance.now();

/** values widened and quantized at a time by encodeRaw (256 KB of float32: in a core's L2 cache) */
const PIECE = 1 << 16;

/**
 * Widen stored f32/f16/bf16 bytes to float32 (exactly): into `scratch` when given (reused across
 * calls; valid until its next use), else a fresh array. Aligned f32 bytes are returned as a view.
 */
export function widenRaw(raw: RawChunk, scratch?: EncodeScratch): Float32Array {
  const size = raw.dtype === "f32" ? 4 : 2;
  const n = raw.bytes.length / size;
  if (raw.dtype === "f32" && raw.bytes.byteOffset % 4 === 0) return new Float32Array(raw.bytes.buffer, raw.bytes.byteOffset, n);
  const out = scratch ? scratch.floats(n) : new Float32Array(n);
  if (raw.dtype === "f32") {
    new Uint8Array(out.buffer, out.byteOffset, n * 4).set(raw.bytes);
    return out;
  }
  const h = raw.bytes.byteOffset % 2 === 0 ? new Uint16Array(raw.bytes.buffer, raw.bytes.byteOffset, n) : new Uint16Array(raw.bytes.slice().buffer);
  if (raw.dtype === "bf16") {
    const u = new Int32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) u[i] = h[i]! << 16;
  } else {
    const lut = f16Lut();
    for (let i = 0; i < n; i++) out[i] = lut[h[i]!]!;
  }
  return out;
}

/** Check (per `mode`) and encode float32 rows. */
export function encodeChecked(type: GGMLType, rows: Float32Array, rowLength: number, mode: FiniteMode, into?: Uint8Array, qw?: Float32Array): EncodeResult {
  const bad = firstNonFinite(rows);
  if (bad >= 0) {
    if (mode === "reject") return { bytes: new Uint8Array(0), firstBad: bad, badValue: rows[bad]! };
    let count = 0;
    for (let i = bad; i < rows.length; i++) if (rows[i]! - rows[i]! !== 0) count++;
    return { bytes: encodeRows(type, rows, rowLength, into, qw), nonFinite: count };
  }
  return { bytes: encodeRows(type, rows, rowLength, into, qw) };
}

/**
 * Quantize n values a few rows at a time: `fill(v, m, wide)` puts values [v, v + m) into `wide` and
 * says whether they are all finite (false also when it cannot), each piece is quantized into its rows
 * of the output, next. The float32 rows stay in the core's cache instead of a 16 MB array per chunk
 * streaming through memory: two workers doing that slowed each other down (decode 1.8×, quantize 1.25×
 * on the full-size int4 benchmark). Rows are quantized independently (ggml_quantize_chunk row by row),
 * so the bytes are those of the whole chunk at once. Undefined when a piece was not filled or not
 * finite: the caller then takes its whole-chunk path, which reports or counts exactly.
 */
function inPieces(
  type: GGMLType,
  n: number,
  rowLength: number,
  into: Uint8Array | undefined,
  qw: Float32Array | undefined,
  scratch: EncodeScratch,
  lap: (k: keyof JobTimes) => void,
  fill: (v: number, m: number, wide: Float32Array) => boolean,
): EncodeResult | undefined {
  const per = Math.max(1, Math.floor(PIECE / rowLength)) * rowLength;
  const rb = rowBytes(type, rowLength);
  const size = rb * (n / rowLength);
  const out = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
  const codec = codecFor(type);
  for (let v = 0; v < n; v += per) {
    const m = Math.min(per, n - v);
    const wide = scratch.floats(m);
    const ok = fill(v, m, wide);
    lap("decode");
    if (!ok) return undefined;
    codec.quantize(wide, out.subarray((v / rowLength) * rb, ((v + m) / rowLength) * rb), qw);
    lap("encode");
  }
  return { bytes: out };
}

/**
 * Check and encode stored float rows. Plain copies (bf16 → BF16, f16 → F16, f32 → F32) return the
 * input bytes themselves after a SIMD scan; bf16/f32 → F16 convert in one SIMD pass; anything else
 * widens (into `scratch`'s reused array when given) and takes encodeChecked. Any non-finite value sends the chunk
 * through encodeChecked too, which reports or counts it exactly as for decoded rows.
 */
export function encodeRaw(type: GGMLType, raw: RawChunk, rowLength: number, mode: FiniteMode, into?: Uint8Array, qw?: Float32Array, scratch?: EncodeScratch): EncodeResult {
  const times = scratch?.times;
  let t = times ? now() : 0;
  /** the time since the last lap goes to stage `k` */
  const lap = (k: keyof JobTimes): void => {
    if (!times) return;
    const u = now();
    times[k] += u - t;
    t = u;
  };
  const encodeTimed = (rows: Float32Array): EncodeResult => {
    const r = encodeChecked(type, rows, rowLength, mode, into, qw);
    lap("encode");
    return r;
  };
  if (raw.encoded) {
    // rows still encoded by a scheme: decoded here (by the scheme's decoder, found by its id) into the
    // scratch — a few rows at a time when the scheme can (see the bf16 pieces below), else whole
    const n = raw.encoded.count;
    const enc = { ...raw.encoded, bytes: raw.bytes };
    if (scratch && n > PIECE) {
      const r = inPieces(type, n, rowLength, into, qw, scratch, lap, (v, m, wide) => {
        const got = decodeEncodedRange(enc, v, m, wide);
        return got !== undefined && (encodedRangeFinite(enc, v, m) || firstNonFinite(got) < 0);
      });
      if (r) return r;
    }
    const rows = decodeEncoded(enc, scratch ? scratch.floats(n) : new Float32Array(n));
    lap("decode");
    return encodeTimed(rows);
  }
  const size = raw.dtype === "f32" ? 4 : 2;
  const n = raw.bytes.length / size;
  const same = unchangedCopy(type, raw.dtype);
  const slot = scratch?.slot;
  if (slot) {
    const r = encodeInSlot(type, raw, slot);
    lap(same ? "scan" : "encode");
    if (r) return r;
  }
  // (a slot's chunk that was not finite has already been scanned: straight to the general path)
  if (same && !slot) {
    const finite = rawAllFinite(raw.dtype, raw.bytes);
    lap("scan");
    if (finite === true) return { bytes: raw.bytes };
  } else if (!slot && type === GGMLType.F16 && (raw.dtype === "bf16" || (raw.dtype === "f32" && raw.bytes.byteOffset % 4 === 0))) {
    const out = into && into.length >= n * 2 ? into.subarray(0, n * 2) : new Uint8Array(n * 2);
    const finite = raw.dtype === "bf16" ? bf16ToF16Bytes(raw.bytes, out) : f32ToF16Bytes(new Float32Array(raw.bytes.buffer, raw.bytes.byteOffset, n), out);
    lap("encode");
    if (finite === true) return { bytes: out };
  }
  if (raw.dtype === "bf16" && !same && scratch && n > PIECE) {
    // a few rows at a time: widen (and scan) PIECE values into the scratch, quantize them, next — the
    // float32 rows stay in the core's cache instead of a 16 MB array per chunk streaming through memory
    // (two workers doing that slowed each other). Rows are quantized independently (ggml_quantize_chunk
    // row by row), so the bytes are those of the whole chunk at once. A piece with NaN/Inf: the chunk
    // takes the general path below, which reports or counts exactly as for decoded rows.
    const r = inPieces(type, n, rowLength, into, qw, scratch, lap, (v, m, wide) => bf16ToF32(raw.bytes.subarray(v * 2, (v + m) * 2), wide) === true);
    if (r) return r;
  } else if (raw.dtype === "bf16" && !same) {
    // widen and scan in one SIMD pass; a finite chunk skips the scalar scan
    const wide = scratch ? scratch.floats(n) : new Float32Array(n);
    const finite = bf16ToF32(raw.bytes, wide);
    lap("decode");
    if (finite === true) {
      const bytes = encodeRows(type, wide, rowLength, into, qw);
      lap("encode");
      return { bytes };
    }
  }
  const rows = widenRaw(raw, scratch);
  lap("decode");
  return encodeTimed(rows);
}
