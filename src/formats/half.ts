/**
 * Half-precision conversions, bit-exact with ggml (ggml_compute_fp32_to_fp16 / _bf16).
 * Node 20 has no Float16Array, so everything works on integer bit patterns.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bits of a number (after rounding it to float32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** float32 value for a bit pattern. */
export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** fp32 bit pattern → fp16 bit pattern, IEEE round-to-nearest-even; NaN → 0x7E00|sign (ggml drops payloads). */
export function f32BitsToF16(u: number): number {
  const s = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return s | 0x7e00;
  if (a >= 0x477ff000) return s | 0x7c00;
  if (a >= 0x38800000) {
    const r = a - 0x38000000;
    let q = r >>> 13;
    const rem = r & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q += 1;
    return s | q;
  }
  if (a < 0x33000001) return s;
  const e = a >>> 23;
  const m = (a & 0x7fffff) | 0x800000;
  const sh = 126 - e;
  let q = m >>> sh;
  const rem = m & ((1 << sh) - 1);
  const half = 1 << (sh - 1);
  if (rem > half || (rem === half && (q & 1) === 1)) q += 1;
  return s | q;
}

/** number → fp16 bits (the number is first rounded to float32, as C would hold it). */
export function toF16(x: number): number {
  f32[0] = x;
  return f32BitsToF16(u32[0]!);
}

/**
 * number → fp16 bits, with an inline path for results that are normal halves (the common case for
 * quantization scales); the rest goes through f32BitsToF16. Same bits as toF16 for every input.
 */
export function toF16Fast(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  const a = u & 0x7fffffff;
  if (a >= 0x38800000 && a < 0x477ff000) {
    const r = a - 0x38000000;
    return ((u >>> 16) & 0x8000) | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  return f32BitsToF16(u);
}

/** fp32 bits → bf16 bits: RNE, NaN truncated with the quiet bit forced (ggml_compute_fp32_to_bf16). */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff;
  return (((u + 0x7fff + ((u >>> 16) & 1)) >>> 0) >>> 16) & 0xffff;
}

export function toBf16(x: number): number {
  f32[0] = x;
  return f32BitsToBf16(u32[0]!);
}

/** fp16 bits → float32 bits, exact; NaN payload shifted up with the quiet bit set (as ggml does). */
export function f16ToF32Bits(h: number): number {
  const s = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) {
    if (m === 0) return s >>> 0;
    // subnormal half: normalise
    let mm = m;
    let ee = -14;
    while ((mm & 0x400) === 0) {
      mm <<= 1;
      ee -= 1;
    }
    return (s | ((ee + 127) << 23) | ((mm & 0x3ff) << 13)) >>> 0;
  }
  if (e === 0x1f) return m === 0 ? (s | 0x7f800000) >>> 0 : (s | 0x7fc00000 | (m << 13)) >>> 0;
  return (s | ((e - 15 + 127) << 23) | (m << 13)) >>> 0;
}

let f16Table: Float32Array | undefined;
/** 65,536-entry fp16 → f32 lookup table, built on first use. */
export function f16Lut(): Float32Array {
  if (!f16Table) {
    const t = new Float32Array(65536);
    const tu = new Uint32Array(t.buffer);
    for (let h = 0; h < 65536; h++) tu[h] = f16ToF32Bits(h);
    f16Table = t;
  }
  return f16Table;
}

export function fromF16(h: number): number {
  return f16Lut()[h & 0xffff]!;
}

export function fromBf16(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

/** Row converters over typed arrays (the hot path for F16/BF16 output). */
export function f32RowToF16(src: Float32Array, dst: Uint16Array): void {
  const su = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < su.length; i++) dst[i] = f32BitsToF16(su[i]!);
}

export function f32RowToBf16(src: Float32Array, dst: Uint16Array): void {
  const su = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < su.length; i++) {
    const u = su[i]!;
    dst[i] = (u & 0x7fffffff) > 0x7f800000 ? ((u >>> 16) | 0x40) & 0xffff : ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

export function f16RowToF32(src: Uint16Array, dst: Float32Array): void {
  const t = f16Lut();
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!;
}

export function bf16RowToF32(src: Uint16Array, dst: Float32Array): void {
  const du = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) du[i] = src[i]! << 16;
}
