/**
 * Hand-made hostile GGUF files: each length, count, type and range check of the reader, asserting
 * the code and that the message names the file (and the tensor where there is one). Large declared
 * arrays must come back as typed arrays over exactly the bytes in the file.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { readGguf, GgufyError, GGMLType } from "../../src/index.js";
import { inspect } from "../../src/cli/inspect.js";
import { GGUFValueType as V } from "../../src/formats/gguf/types.js";
import { scratch } from "./helpers.js";

let root: string;
before(async () => {
  root = await scratch("ggufy-gguf-");
});
after(() => rm(root, { recursive: true, force: true }));

/** A little-endian byte builder for GGUF files. */
class B {
  parts: Buffer[] = [];
  u32(v: number): this { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); this.parts.push(b); return this; }
  i32(v: number): this { const b = Buffer.alloc(4); b.writeInt32LE(v); this.parts.push(b); return this; }
  u64(v: number | bigint): this { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.parts.push(b); return this; }
  raw(b: Uint8Array): this { this.parts.push(Buffer.from(b)); return this; }
  str(s: string, len?: number | bigint): this { const b = Buffer.from(s, "utf8"); this.u64(len ?? b.length); this.parts.push(b); return this; }
  get length(): number { return this.parts.reduce((a, p) => a + p.length, 0); }
  pad(align = 32): this { this.parts.push(Buffer.alloc((align - (this.length % align)) % align)); return this; }
  bytes(): Buffer { return Buffer.concat(this.parts); }
}

const head = (nTensors: number | bigint, nKv: number | bigint, magic = 0x46554747, version = 3): B => new B().u32(magic).u32(version).u64(nTensors).u64(nKv);
/** one F32 tensor [n] at `offset` */
const tensorInfo = (b: B, name: string, ne: (number | bigint)[], type: number = GGMLType.F32, offset: number | bigint = 0): B => {
  b.str(name).u32(ne.length);
  for (const d of ne) b.u64(d);
  return b.i32(type).u64(offset);
};

let n = 0;
async function expectFormatError(bytes: Uint8Array, ...mentions: (string | RegExp)[]): Promise<void> {
  const file = path.join(root, `case-${n++}.gguf`);
  await writeFile(file, bytes);
  const t0 = performance.now();
  await assert.rejects(readGguf(file), (e: unknown) => {
    assert.ok(e instanceof GgufyError, String(e));
    assert.equal(e.code, "E_GGUF_FORMAT", e.message);
    assert.ok(e.message.includes(file), e.message);
    assert.ok(!/\n/.test(e.message));
    for (const m of mentions) assert.ok(typeof m === "string" ? e.message.includes(m) : m.test(e.message), `no ${m} in ${e.message}`);
    return true;
  });
  assert.ok(performance.now() - t0 < 2000);
}

const CASES: [string, () => Uint8Array, (string | RegExp)[]][] = [
  ["not a GGUF (magic)", () => head(0, 0, 0x12345678).bytes(), ["not a GGUF file"]],
  ["big-endian or future version", () => head(0, 0, 0x46554747, 0x03000000).bytes(), ["unsupported GGUF version"]],
  ["version 1", () => head(0, 0, 0x46554747, 1).bytes(), ["unsupported GGUF version 1"]],
  ["empty file", () => new Uint8Array(0), ["unexpected end of file"]],
  ["tensor count 2^63", () => head(1n << 63n, 0).bytes(), ["tensor count", "implausible"]],
  ["key count 2^40", () => head(0, 1n << 40n).bytes(), ["key/value count", "implausible"]],
  ["counts that cannot fit the file", () => head(1000, 1000).raw(new Uint8Array(100)).bytes(), ["cannot fit in a"]],
  ["key length 2^63", () => head(0, 1).str("k", 1n << 63n).raw(new Uint8Array(16)).bytes(), ["key #0", "string length"]],
  ["key length past the end by one", () => head(0, 1).u64(9).raw(Buffer.from("12345678")).bytes(), ["string length 9 exceeds the file"]],
  ["empty key", () => head(0, 1).str("").u32(V.UINT8).raw(new Uint8Array([1])).bytes(), ["key #0 is empty"]],
  ["value type 13", () => head(0, 1).str("k").u32(13).raw(new Uint8Array(8)).bytes(), ["key 'k' has invalid type 13"]],
  ["nested array", () => head(0, 1).str("k").u32(V.ARRAY).u32(V.ARRAY).u64(1).raw(new Uint8Array(16)).bytes(), ["nested arrays"]],
  ["array of 2^40 u8", () => head(0, 1).str("k").u32(V.ARRAY).u32(V.UINT8).u64(1n << 40n).raw(new Uint8Array(16)).bytes(), ["array of 1099511627776 elements does not fit"]],
  ["array of 2^61 u64 (byte count overflows 2^64)", () => head(0, 1).str("k").u32(V.ARRAY).u32(V.UINT64).u64(1n << 61n).raw(new Uint8Array(16)).bytes(), ["does not fit"]],
  ["array of strings longer than the file", () => head(0, 1).str("k").u32(V.ARRAY).u32(V.STRING).u64(2).str("a").str("b", 1000).bytes(), ["key 'k'[1]", "string length 1000"]],
  ["duplicate key", () => head(0, 2).str("k").u32(V.UINT8).raw(new Uint8Array([1])).str("k").u32(V.UINT8).raw(new Uint8Array([1])).bytes(), ["duplicate key 'k'"]],
  ["alignment not a power of two", () => head(0, 1).str("general.alignment").u32(V.UINT32).u32(48).bytes(), ["not a power of two"]],
  ["alignment of the wrong type", () => head(0, 1).str("general.alignment").u32(V.UINT64).u64(32).bytes(), ["must be UINT32"]],
  ["tensor name of 64 bytes", () => tensorInfo(head(1, 0), "x".repeat(64), [4]).pad().raw(new Uint8Array(16)).bytes(), ["max 63"]],
  ["five dimensions", () => tensorInfo(head(1, 0), "t", [1, 1, 1, 1, 1]).pad().raw(new Uint8Array(16)).bytes(), ["tensor 't'", "5 dimensions"]],
  ["dimension 2^63", () => tensorInfo(head(1, 0), "t", [1n << 63n]).pad().bytes(), ["tensor 't'", "too large"]],
  ["element count past 2^53", () => tensorInfo(head(1, 0), "t", [1 << 30, 1 << 30]).pad().bytes(), ["tensor 't'", "overflows"]],
  ["removed type id 4 (Q4_2)", () => tensorInfo(head(1, 0), "t", [32], 4).pad().bytes(), ["tensor 't'", "unknown ggml type id 4"]],
  ["negative type id", () => tensorInfo(head(1, 0), "t", [32], -1).pad().bytes(), ["unknown ggml type id -1"]],
  ["row not a whole number of blocks", () => tensorInfo(head(1, 0), "t", [33], GGMLType.Q8_0).pad().bytes(), ["tensor 't'", "not a multiple of q8_0's block size 32"]],
  ["offset not aligned", () => tensorInfo(head(1, 0), "t", [4], GGMLType.F32, 4).pad().raw(new Uint8Array(64)).bytes(), ["tensor 't'", "not aligned to 32"]],
  ["offset leaves a gap", () => tensorInfo(head(1, 0), "t", [4], GGMLType.F32, 32).pad().raw(new Uint8Array(64)).bytes(), ["tensor 't'", "expected 0"]],
  ["data past the end of the file", () => tensorInfo(head(1, 0), "t", [1024]).pad().raw(new Uint8Array(100)).bytes(), ["tensor 't'", "runs past the end of the file"]],
  ["duplicate tensor", () => tensorInfo(tensorInfo(head(2, 0), "t", [8]), "t", [8], GGMLType.F32, 32).pad().raw(new Uint8Array(64)).bytes(), ["tensor 't'", "duplicate tensor name"]],
];

for (const [name, make, mentions] of CASES) {
  test(`GGUF: ${name}`, () => expectFormatError(make(), ...mentions));
}

test("GGUF: a FIFO or a folder is not opened", async () => {
  await assert.rejects(readGguf(root), (e: unknown) => e instanceof GgufyError && e.code === "E_IO" && /not a regular file/.test(e.message));
});

test("GGUF: large numeric arrays are typed arrays over exactly the file's bytes, read quickly", async () => {
  const N = 2_000_000;
  const f32 = new Float32Array(N).map((_, i) => i * 0.5);
  const b = head(1, 3)
    .str("big.f32").u32(V.ARRAY).u32(V.FLOAT32).u64(N).raw(new Uint8Array(f32.buffer))
    .str("big.u8").u32(V.ARRAY).u32(V.UINT8).u64(N).raw(new Uint8Array(N).fill(7))
    .str("big.i64").u32(V.ARRAY).u32(V.INT64).u64(3).raw(new Uint8Array(new BigInt64Array([-1n, 2n, 1n << 62n]).buffer));
  tensorInfo(b, "t", [4]).pad().raw(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)).pad();
  const file = path.join(root, "big.gguf");
  await writeFile(file, b.bytes());
  const t0 = performance.now();
  const g = await readGguf(file);
  const ms = performance.now() - t0;
  const a = g.kvs.get("big.f32")!.value;
  assert.ok(a instanceof Float32Array && a.length === N && a[N - 1] === (N - 1) * 0.5);
  const u = g.kvs.get("big.u8")!.value;
  assert.ok(u instanceof Uint8Array && u.length === N && u[123] === 7);
  assert.deepEqual(Array.from(g.kvs.get("big.i64")!.value as BigInt64Array), [-1n, 2n, 1n << 62n]);
  assert.ok(ms < 2000, `${ms} ms`);
  const r = await inspect(file);
  assert.deepEqual(r.metadata["big.i64"], ["-1", "2", String(1n << 62n)]);
  assert.deepEqual(r.tensors, [{ name: "t", shape: [4], type: "f32", bytes: 16 }]);
});
