/**
 * Row-range decoding of a detected bitsandbytes module with positioned reads: only the packed bytes, absmax
 * codes and scales that rows [row0, row0 + nRows) need are read.
 */
import { GgufyError } from "../../errors.js";
import { dequantize4bit, reconstructNestedAbsmax, dequantizeInt8Rows } from "./decode.js";
import type { BnbModule, Bnb4bitModule, BnbInt8Module, BnbReadRange } from "./types.js";

function f32Values(bytes: Uint8Array): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 2);
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  return out;
}

async function readExact(read: BnbReadRange, m: BnbModule, name: string, off: number, len: number, into?: Uint8Array): Promise<Uint8Array> {
  const b = await read(name, off, len, into && into.length >= len ? into.subarray(0, len) : undefined);
  if (b.byteLength !== len) throw new GgufyError("E_BNB", `bitsandbytes module '${m.module}': read of '${name}' [${off}, ${off + len}) returned ${b.byteLength} bytes`, { tensor: name });
  return b;
}

/** float32 absmax of 4-bit blocks [b0, b1). */
async function blockAbsmax(m: Bnb4bitModule, read: BnbReadRange, b0: number, b1: number): Promise<Float32Array> {
  if (!m.nested) return f32Values(await readExact(read, m, m.absmaxKey, b0 * 4, (b1 - b0) * 4));
  const n = m.nested;
  const q = await readExact(read, m, m.absmaxKey, b0, b1 - b0);
  const nb0 = Math.floor(b0 / n.blocksize);
  const nb1 = Math.floor((b1 - 1) / n.blocksize) + 1;
  const nabs = f32Values(await readExact(read, m, n.absmaxKey, nb0 * 4, (nb1 - nb0) * 4));
  return reconstructNestedAbsmax(q, b0, nabs, nb0, n.blocksize, n.quantMap, n.offset, n.dtype);
}

/**
 * Decode rows [row0, row0 + nRows) of the logical matrix (`rows` rows of `cols` values each) to float32
 * values that carry the module's output dtype (`m.dtype`) exactly, in row-major order.
 */
export async function decodeBnbRows(m: BnbModule, read: BnbReadRange, row0: number, nRows: number): Promise<Float32Array> {
  if (!Number.isSafeInteger(row0) || !Number.isSafeInteger(nRows) || row0 < 0 || nRows < 0 || row0 + nRows > m.rows) {
    throw new RangeError(`decodeBnbRows: rows [${row0}, ${row0 + nRows}) outside the ${m.rows} rows of ${m.weight}`);
  }
  const count = nRows * m.cols;
  if (count === 0) return new Float32Array(0);
  if (m.kind === "int8") return decodeInt8(m, read, row0, nRows);
  const e = await encoded4(m, read, row0, nRows);
  return dequantize4bit(e.packed, e.elem0, e.count, e.absmax, e.block0, e.blocksize, e.quantType, e.dtype);
}

/**
 * The encoded form of rows [row0, row0 + nRows) of a 4-bit module — exactly the arguments
 * `dequantize4bit` takes (packed bytes from floor(elem0 / 2), the blocks' float32 absmax) — so that
 * the decoding itself can run elsewhere (the converter's worker threads). undefined for LLM.int8.
 */
export interface Bnb4Encoded {
  packed: Uint8Array;
  elem0: number;
  count: number;
  absmax: Float32Array;
  block0: number;
  blocksize: number;
  quantType: "nf4" | "fp4";
  dtype: "bf16" | "f16" | "f32";
}

export async function readBnb4Encoded(m: BnbModule, read: BnbReadRange, row0: number, nRows: number, into?: Uint8Array): Promise<Bnb4Encoded | undefined> {
  if (m.kind === "int8") return undefined;
  if (!Number.isSafeInteger(row0) || !Number.isSafeInteger(nRows) || row0 < 0 || nRows <= 0 || row0 + nRows > m.rows) return undefined;
  return encoded4(m, read, row0, nRows, into);
}

/**
 * the packed bytes (read into `into` when it is large enough) and the blocks' absmax of rows
 * [row0, row0 + nRows) of a 4-bit module (rows checked by the caller)
 */
async function encoded4(m: BnbModule & { kind: "nf4" | "fp4" }, read: BnbReadRange, row0: number, nRows: number, into?: Uint8Array): Promise<Bnb4Encoded> {
  const count = nRows * m.cols;
  const e0 = row0 * m.cols;
  const e1 = e0 + count;
  const b0 = Math.floor(e0 / m.blocksize);
  const b1 = Math.ceil(e1 / m.blocksize);
  const absmax = await blockAbsmax(m, read, b0, b1);
  const byte0 = Math.floor(e0 / 2);
  const packed = await readExact(read, m, m.weight, byte0, Math.ceil(e1 / 2) - byte0, into);
  return { packed, elem0: e0, count, absmax, block0: b0, blocksize: m.blocksize, quantType: m.kind, dtype: m.dtype };
}

async function decodeInt8(m: BnbInt8Module, read: BnbReadRange, row0: number, nRows: number): Promise<Float32Array> {
  const scb = f32Values(await readExact(read, m, m.scbKey, row0 * 4, nRows * 4));
  const bytes = await readExact(read, m, m.weight, row0 * m.cols, nRows * m.cols);
  const cb = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return dequantizeInt8Rows(cb, scb, m.cols, m.dtype);
}

/** Decode the whole module (rows 0 … rows-1). */
export function decodeBnb(m: BnbModule, read: BnbReadRange): Promise<Float32Array> {
  return decodeBnbRows(m, read, 0, m.rows);
}
