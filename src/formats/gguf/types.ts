/**
 * GGUF v3 value types and typed key/value pairs. llama.cpp checks KV types exactly
 * (u32 counts, f32 eps, INT32 token_type arrays …), so every value carries its GGUF type.
 */

export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GGUFScalarType = Exclude<GGUFValueType, GGUFValueType.ARRAY>;
export type GGUFScalar = number | bigint | boolean | string;

export type GGUFValue =
  | { readonly type: GGUFScalarType; readonly value: GGUFScalar }
  | { readonly type: GGUFValueType.ARRAY; readonly itemType: GGUFScalarType; readonly value: ArrayLike<GGUFScalar> };

export interface GGUFKV {
  readonly key: string;
  readonly value: GGUFValue;
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Constructors that make the GGUF type explicit at the call site. */
export const kv = {
  u8: (key: string, v: number): GGUFKV => ({ key, value: { type: GGUFValueType.UINT8, value: v } }),
  u32: (key: string, v: number): GGUFKV => ({ key, value: { type: GGUFValueType.UINT32, value: v } }),
  i32: (key: string, v: number): GGUFKV => ({ key, value: { type: GGUFValueType.INT32, value: v } }),
  u64: (key: string, v: number | bigint): GGUFKV => ({ key, value: { type: GGUFValueType.UINT64, value: BigInt(v) } }),
  f32: (key: string, v: number): GGUFKV => ({ key, value: { type: GGUFValueType.FLOAT32, value: v } }),
  bool: (key: string, v: boolean): GGUFKV => ({ key, value: { type: GGUFValueType.BOOL, value: v } }),
  str: (key: string, v: string): GGUFKV => ({ key, value: { type: GGUFValueType.STRING, value: v } }),
  strs: (key: string, v: readonly string[]): GGUFKV => ({ key, value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: v } }),
  i32s: (key: string, v: ArrayLike<number>): GGUFKV => ({ key, value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32, value: v } }),
  f32s: (key: string, v: ArrayLike<number>): GGUFKV => ({ key, value: { type: GGUFValueType.ARRAY, itemType: GGUFValueType.FLOAT32, value: v } }),
};
