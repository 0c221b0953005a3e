/**
 * Reads and writes larger than one system call (IO_PIECE, 1 MiB): FileReaderPool and AtomicOutput
 * split them into pieces; the bytes must come out exactly as one read/write would give them — at an
 * unaligned offset, into a caller's buffer, from a view with a byteOffset, and from a
 * SharedArrayBuffer (the worker pool's chunk buffers). Also: the background fsyncs AtomicOutput
 * starts every 256 MiB never touch the content (a 300 MiB output triggers one, checked by counting
 * the opener's sync calls).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FileReaderPool, IO_PIECE } from "../../src/formats/safetensors/reader.js";
import { AtomicOutput, type FileOpener } from "../../src/convert/output.js";

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

test("FileReaderPool: a read of 3.5 pieces at an odd offset equals the file's bytes", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ggufy-io-"));
  try {
    const f = path.join(dir, "a.bin");
    const data = pattern(4 * IO_PIECE + 123, 7);
    await writeFile(f, data);
    const pool = new FileReaderPool();
    const off = 12345;
    const len = Math.floor(3.5 * IO_PIECE);
    const got = await pool.read(f, off, len);
    assert.ok(Buffer.from(got).equals(Buffer.from(data.subarray(off, off + len))));
    // into a larger shared buffer given by the caller (only its first len bytes are written)
    const into = new Uint8Array(new SharedArrayBuffer(len + 10)).fill(0xee);
    const got2 = await pool.read(f, off + 1, len, into);
    assert.equal(got2, into);
    assert.ok(Buffer.from(into.subarray(0, len)).equals(Buffer.from(data.subarray(off + 1, off + 1 + len))));
    assert.equal(into[len], 0xee);
    await pool.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("AtomicOutput: large writes (pieces, views, shared memory) and a background fsync keep every byte", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ggufy-io-"));
  try {
    const target = path.join(dir, "out.bin");
    let syncs = 0;
    const opener: FileOpener = async (p) => {
      const fh = await open(p, "wx");
      return { write: fh.write.bind(fh) as typeof fh.write, close: () => fh.close(), sync: () => { syncs++; return fh.sync(); } };
    };
    const out = await AtomicOutput.create(target, { opener });
    const small = pattern(1000, 1);
    const big = pattern(3 * IO_PIECE + 77, 2);
    const backing = new Uint8Array(new SharedArrayBuffer(big.length + 64));
    backing.set(big, 64);
    const sharedView = backing.subarray(64);
    const block = pattern(20 << 20, 3);
    const parts: Uint8Array[] = [small, big, sharedView];
    await out.write(small);
    await out.write(big); // below the 8 MiB write buffer: copied in, flushed in pieces
    await out.write(sharedView);
    // 300 MiB more in 20 MiB blocks: past the 256 MiB mark one background fsync starts
    for (let i = 0; i < 15; i++) {
      await out.write(block);
      parts.push(block);
    }
    await out.commit();
    const want = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
    const got = await readFile(target);
    assert.equal(got.length, want.length);
    assert.ok(got.equals(want));
    assert.ok(syncs >= 2, `expected a background fsync and the commit's, saw ${syncs}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
