/**
 * The header encoder writes short strings (tokens, merges) with its own UTF-8 loop instead of
 * Buffer.write: its bytes are compared with Node's own encoder (Buffer.from(s, "utf8"), the independent
 * truth — it also turns a lone surrogate into U+FFFD) on random strings of every UTF-8 length class,
 * surrogate pairs, lone and reversed surrogates, and strings on both sides of the 64-unit switch.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeGgufHeader, ggufHeaderLayout } from "../../src/formats/gguf/writer.js";
import { GGUFValueType, kv, type GGUFKV } from "../../src/formats/gguf/types.js";
import { Utf8Strings, Utf8StringsBuilder } from "../../src/formats/gguf/utf8-strings.js";

function randomStrings(count: number, seed: number): string[] {
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  // code units from each class: ASCII, 2-byte, 3-byte below and above the surrogates, high and low surrogates
  const ranges: [number, number][] = [[0, 0x7f], [0x80, 0x7ff], [0x800, 0xd7ff], [0xe000, 0xffff], [0xd800, 0xdbff], [0xdc00, 0xdfff]];
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const len = k % 7 === 0 ? 60 + Math.floor(rnd() * 10) : Math.floor(rnd() * 12); // around the 64-unit switch too
    const units: number[] = [];
    for (let i = 0; i < len; i++) {
      if (rnd() < 0.15) {
        const cp = 0x10000 + Math.floor(rnd() * 0xfffff); // a valid pair
        units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      } else {
        const [a, b] = ranges[Math.floor(rnd() * ranges.length)]!;
        units.push(a + Math.floor(rnd() * (b - a + 1)));
      }
    }
    out.push(String.fromCharCode(...units));
  }
  return out.concat(["", "\ud800", "\udc00", "\udc00\ud800", "a\ud83d", "\ud83d\ude00", "Ġthe", "ĠĠĠ", "日本語", "\u07ff\u0800\uffff", "x".repeat(64), "é".repeat(65)]);
}

test("header strings: the same UTF-8 bytes as Buffer.from(s, 'utf8'), lengths included", () => {
  const strs = randomStrings(20000, 0x9e3779b9);
  const h = encodeGgufHeader([kv.strs("t.strs", strs)], []);
  assert.equal(h.size, ggufHeaderLayout([kv.strs("t.strs", strs)], []).size);
  const b = Buffer.from(h.bytes);
  // magic, version, n_tensors, n_kv, key, value type (ARRAY), item type, count
  let o = 4 + 4 + 8 + 8;
  const keyLen = Number(b.readBigUInt64LE(o));
  assert.equal(b.toString("utf8", o + 8, o + 8 + keyLen), "t.strs");
  o += 8 + keyLen + 4 + 4;
  assert.equal(Number(b.readBigUInt64LE(o)), strs.length);
  o += 8;
  for (let i = 0; i < strs.length; i++) {
    const want = Buffer.from(strs[i]!, "utf8");
    const n = Number(b.readBigUInt64LE(o));
    assert.equal(n, want.length, `string ${i}: byte length`);
    assert.ok(b.subarray(o + 8, o + 8 + n).equals(want), `string ${i}: bytes of ${JSON.stringify(strs[i])}`);
    o += 8 + n;
  }
});

test("u64 fields: lengths and counts above 2^32 as numbers and bigints", () => {
  const kvs: GGUFKV[] = [{ key: "a", value: { type: GGUFValueType.UINT64, value: 2 ** 40 + 3 } }, { key: "b", value: { type: GGUFValueType.UINT64, value: (1n << 63n) + 5n } }, { key: "c", value: { type: GGUFValueType.UINT64, value: 4294967295 } }];
  const b = Buffer.from(encodeGgufHeader(kvs, []).bytes);
  let o = 24;
  const vals: bigint[] = [];
  for (let k = 0; k < 3; k++) {
    o += 8 + 1 + 4; // key length, one-byte key, type
    vals.push(b.readBigUInt64LE(o));
    o += 8;
  }
  assert.deepEqual(vals, [2n ** 40n + 3n, (1n << 63n) + 5n, 4294967295n]);
});

test("Utf8Strings.byteLength: the builder's running sum and the lazily summed one both equal the ranges' lengths", () => {
  const base = Buffer.from("ab cde fghij", "utf8");
  const b = new Utf8StringsBuilder(base, 1); // capacity 1: grows on the way
  const want: string[] = [];
  // ranges of the base, strings and bytes encoded beside it, and more than one chunk of entries (3000)
  for (let i = 0; i < 3000; i++) {
    const k = i % 4;
    if (k === 0) b.range(0, 2), want.push("ab");
    else if (k === 1) b.range(3, 6), want.push("cde");
    else if (k === 2) b.string(`é𝄞${i}`), want.push(`é𝄞${i}`);
    else b.bytes(Buffer.from("xyz"), i % 3), want.push("xyz".slice(0, i % 3));
  }
  const u = b.finish();
  const sum = want.reduce((a, s) => a + Buffer.byteLength(s, "utf8"), 0);
  assert.equal(u.byteLength, sum);
  assert.deepEqual(u.toArray(), want);
  const lazy = new Utf8Strings(u.bytes, u.starts, u.ends, u.extra);
  assert.equal(lazy.byteLength, sum);
  assert.equal(new Utf8Strings(base, new Int32Array(0), new Int32Array(0)).byteLength, 0);
  // the header's size counted from byteLength is the size of the bytes written
  const kvs = [kv.utf8s("t", u)];
  assert.equal(ggufHeaderLayout(kvs, []).fileSize, encodeGgufHeader(kvs, []).fileSize);
  assert.equal(encodeGgufHeader(kvs, []).bytes.length, encodeGgufHeader([kv.strs("t", want)], []).bytes.length);
});
