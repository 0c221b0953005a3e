/** safetensors dtypes and their element sizes (the reference crate's Dtype enum, byte-sized kinds). */
export const ST_DTYPE_SIZE = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type StDtype = keyof typeof ST_DTYPE_SIZE;

export function isStDtype(s: unknown): s is StDtype {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(ST_DTYPE_SIZE, s);
}
