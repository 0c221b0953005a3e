/**
 * GGUF v3 value types and typed key/value pairs. llama.cpp checks KV types exactly
 * (u32 counts, f32 eps, INT32 token_type arrays …), so every value carries its GGUF type.
 */

import { defineLazyStrings, type Utf8Strings } from "./utf8-strings.js";

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
  | {
      readonly type: GGUFValueType.ARRAY;
      readonly itemType: GGUFScalarType;
      readonly value: ArrayLike<GGUFScalar>;
      /** a STRING array still held as UTF-8 bytes (kv.utf8s; not enumerable, gone once `value` is read) */
      readonly utf8?: Utf8Strings;
    };

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
  /** a STRING array written from its UTF-8 bytes; `value` decodes them when read (utf8-strings.ts) */
  utf8s: (key: string, v: Utf8Strings): GGUFKV => {
    const value = { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING } as { type: GGUFValueType.ARRAY; itemType: GGUFValueType.STRING; value: string[] };
    defineLazyStrings(value, "value", "utf8", v);
    return { key, value };
  },
};
