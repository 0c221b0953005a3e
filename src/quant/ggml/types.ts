/**
 * ggml tensor types as data: id, name, block size, bytes per block (ggml-common.h / ggml.c type_traits).
 * Formats and plans use this table; the codecs live one block family per file.
 */

export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

export interface TypeInfo {
  readonly type: GGMLType;
  /** lower-case name as llama.cpp prints it (q4_K, f16 …) */
  readonly name: string;
  readonly blockSize: number;
  readonly typeSize: number;
}

const T = (type: GGMLType, name: string, blockSize: number, typeSize: number): TypeInfo => ({ type, name, blockSize, typeSize });

export const TYPE_INFO: ReadonlyMap<GGMLType, TypeInfo> = new Map(
  [
    T(GGMLType.F32, "f32", 1, 4),
    T(GGMLType.F16, "f16", 1, 2),
    T(GGMLType.Q4_0, "q4_0", 32, 18),
    T(GGMLType.Q4_1, "q4_1", 32, 20),
    T(GGMLType.Q5_0, "q5_0", 32, 22),
    T(GGMLType.Q5_1, "q5_1", 32, 24),
    T(GGMLType.Q8_0, "q8_0", 32, 34),
    T(GGMLType.Q8_1, "q8_1", 32, 36),
    T(GGMLType.Q2_K, "q2_K", 256, 84),
    T(GGMLType.Q3_K, "q3_K", 256, 110),
    T(GGMLType.Q4_K, "q4_K", 256, 144),
    T(GGMLType.Q5_K, "q5_K", 256, 176),
    T(GGMLType.Q6_K, "q6_K", 256, 210),
    T(GGMLType.Q8_K, "q8_K", 256, 292),
    T(GGMLType.IQ2_XXS, "iq2_xxs", 256, 66),
    T(GGMLType.IQ2_XS, "iq2_xs", 256, 74),
    T(GGMLType.IQ3_XXS, "iq3_xxs", 256, 98),
    T(GGMLType.IQ1_S, "iq1_s", 256, 50),
    T(GGMLType.IQ4_NL, "iq4_nl", 32, 18),
    T(GGMLType.IQ3_S, "iq3_s", 256, 110),
    T(GGMLType.IQ2_S, "iq2_s", 256, 82),
    T(GGMLType.IQ4_XS, "iq4_xs", 256, 136),
    T(GGMLType.I8, "i8", 1, 1),
    T(GGMLType.I16, "i16", 1, 2),
    T(GGMLType.I32, "i32", 1, 4),
    T(GGMLType.I64, "i64", 1, 8),
    T(GGMLType.F64, "f64", 1, 8),
    T(GGMLType.IQ1_M, "iq1_m", 256, 56),
    T(GGMLType.BF16, "bf16", 1, 2),
    T(GGMLType.TQ1_0, "tq1_0", 256, 54),
    T(GGMLType.TQ2_0, "tq2_0", 256, 66),
    T(GGMLType.MXFP4, "mxfp4", 32, 17),
    T(GGMLType.NVFP4, "nvfp4", 64, 36),
    T(GGMLType.Q1_0, "q1_0", 128, 18),
    T(GGMLType.Q2_0, "q2_0", 64, 18),
  ].map((t) => [t.type, t] as const),
);

export function typeInfo(t: GGMLType): TypeInfo {
  const info = TYPE_INFO.get(t);
  if (!info) throw new Error(`unknown ggml type id ${t}`);
  return info;
}

export function typeName(t: GGMLType): string {
  return TYPE_INFO.get(t)?.name ?? `type${t}`;
}

/** Parse a type name case-insensitively ("Q4_K", "q4_k", "f16"). */
export function parseTypeName(s: string): GGMLType | undefined {
  const l = s.toLowerCase();
  for (const info of TYPE_INFO.values()) if (info.name.toLowerCase() === l) return info.type;
  return undefined;
}

/** Bytes of a tensor of `ne` elements per row × rows, for a type. ne0 must be a multiple of the block. */
export function rowBytes(t: GGMLType, ne0: number): number {
  const info = typeInfo(t);
  if (ne0 % info.blockSize !== 0) throw new Error(`row length ${ne0} is not a multiple of ${info.name}'s block ${info.blockSize}`);
  return (ne0 / info.blockSize) * info.typeSize;
}

export function tensorBytes(t: GGMLType, ne: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return rowBytes(t, ne[0] ?? 1) * rows;
}
