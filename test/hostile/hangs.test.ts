/**
 * Issue 15, "hangs and signals": inputs that are FIFOs, devices or huge are refused at once (each run
 * here is the real CLI in a child process with a 20 s SIGKILL deadline, so a hang fails instead of
 * blocking the suite); SIGINT/SIGTERM/SIGHUP end every command with exit 130, one line and nothing
 * left; a SIGKILLed run's temp file is cleaned by the next; `| head -c 100` ends quietly.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm, symlink, truncate, writeFile, stat } from "node:fs/promises";
import path from "node:path";
import { encodeGgufHeader } from "../../src/formats/gguf/writer.js";
import { kv } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { cli, copyStories, leftovers, scratch, shard, writeRandomLlama } from "./helpers.js";
import { writeMinicpmvHeaderOnly } from "../../fixtures/minicpmv.js";
import { diff, hasOpen, mkfifo, runCli, snapshot, type ChildRun } from "./tree.js";

let root: string;
let big: string;
let manyGguf: string;
before(async () => {
  root = await scratch("ggufy-hangs-");
  big = path.join(root, "big");
  await writeRandomLlama(big, { hidden: 512, layers: 4, ffn: 1536, heads: 8, kvHeads: 4 });
  manyGguf = path.join(root, "many.gguf");
  const tensors = Array.from({ length: 20000 }, (_, i) => ({ name: `t.${i}`, ne: [8], type: GGMLType.F32 }));
  const h = encodeGgufHeader([kv.str("general.architecture", "llama")], tensors);
  const buf = Buffer.alloc(h.fileSize);
  Buffer.from(h.bytes).copy(buf);
  await writeFile(manyGguf, buf);
});
after(() => rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): Promise<string> => copyStories(root, `m${n++}`);

function refusedQuickly(r: ChildRun, code: number, re: RegExp): void {
  assert.equal(r.signal, null, `killed by ${r.signal} (a hang): ${r.stderr}`);
  assert.equal(r.code, code, r.stderr);
  assert.match(r.stderr, re);
  assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
}

// ───────────────────────────── FIFOs, devices, sizes ─────────────────────────────

test("regression: config.json as a FIFO is refused at once (convert)", async () => {
  const dir = await fresh();
  await rm(path.join(dir, "config.json"));
  mkfifo(path.join(dir, "config.json"));
  refusedQuickly(await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 }), 2, /E_CONFIG: .*config\.json: .*FIFO/);
  assert.deepEqual(await leftovers(dir), []);
});

test("variant: inspect on a folder whose config.json is a FIFO, and on a FIFO named .gguf / .safetensors", async () => {
  const dir = await fresh();
  await rm(path.join(dir, "config.json"));
  mkfifo(path.join(dir, "config.json"));
  refusedQuickly(await runCli(["inspect", dir], { timeoutMs: 20_000 }), 2, /E_CONFIG: .*FIFO/);
  for (const name of ["x.gguf", "y.safetensors"]) {
    mkfifo(path.join(root, `${n}-${name}`));
    refusedQuickly(await runCli(["inspect", path.join(root, `${n}-${name}`)], { timeoutMs: 20_000 }), 2, /E_IO: .*FIFO/);
  }
});

test("variant: a FIFO as the index, a shard or the tokenizer is refused; as README.md or generation_config.json it is ignored", async () => {
  let dir = await fresh();
  await shard(dir, 2);
  await rm(path.join(dir, "model.safetensors.index.json"));
  mkfifo(path.join(dir, "model.safetensors.index.json"));
  refusedQuickly(await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 }), 2, /E_INDEX: .*FIFO/);
  dir = await fresh();
  const { shards } = await shard(dir, 2);
  await rm(path.join(dir, shards[1]!));
  mkfifo(path.join(dir, shards[1]!));
  refusedQuickly(await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 }), 2, /E_IO: .*FIFO/);
  dir = await fresh();
  await rm(path.join(dir, "tokenizer.model"));
  mkfifo(path.join(dir, "tokenizer.model"));
  const t = await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 });
  assert.equal(t.signal, null);
  assert.equal(t.code, 2, t.stderr);
  dir = await fresh();
  mkfifo(path.join(dir, "README.md"));
  mkfifo(path.join(dir, "generation_config.json"));
  const ok = await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 });
  assert.equal(ok.code, 0, ok.stderr);
});

test("regression: config.json → /dev/zero is refused as a device, not read (and not 'missing')", async () => {
  const dir = await fresh();
  await rm(path.join(dir, "config.json"));
  await symlink("/dev/zero", path.join(dir, "config.json"));
  const r = await runCli(["convert", dir, "--outtype", "f16"], { timeoutMs: 20_000 });
  // refused before a byte is read: the link leaves the folder (and /dev/zero is a device)
  refusedQuickly(r, 2, /E_CONFIG: .*config\.json: (is a device, not a regular file|links outside the model folder)/);
  assert.doesNotMatch(r.stderr, /missing/);
  // a device named directly is refused by its descriptor
  refusedQuickly(await runCli(["inspect", "/dev/zero"], { timeoutMs: 20_000 }), 2, /E_IO: \/dev\/zero: is a device, not a regular file/);
});

test("variant: tokenizer.model → /dev/zero and a 17 MB config.json are refused by kind and size", async () => {
  let dir = await fresh();
  await rm(path.join(dir, "tokenizer.model"));
  await symlink("/dev/zero", path.join(dir, "tokenizer.model"));
  let r = await cli(["convert", dir, "--outtype", "f16"]);
  assert.equal(r.code, 2, r.stderr);
  dir = await fresh();
  await truncate(path.join(dir, "config.json"), 17 << 20);
  r = await cli(["convert", dir, "--outtype", "f16"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /E_CONFIG: .*config\.json: config\.json is 17825792 bytes, over the 16777216-byte cap/);
});

// ───────────────────────────── signals ─────────────────────────────

/** .gguf and temp files directly in `root` besides the fixed many.gguf (model folders have their own) */
async function rootLeft(): Promise<string[]> {
  return (await leftovers(root)).filter((f) => path.dirname(f) === root && f !== manyGguf);
}

const tempIn = async (dir: string): Promise<boolean> => (await readdir(dir)).some((f) => f.includes(".ggufy-tmp-"));

test("regression: SIGHUP mid-conversion → exit 130, one line, nothing left", async () => {
  const out = path.join(root, "hup.gguf");
  const r = await runCli(["convert", big, "--outfile", out, "--outtype", "Q6_K", "--threads", "2"], { signal: "SIGHUP", when: () => tempIn(root) });
  assert.equal(r.signal, null, "handled, not killed by the signal");
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /^ggufy: error: E_INTERRUPTED: conversion interrupted; no output was written\n$/);
  assert.ok(r.exitMs < 1000, `answered in ${r.exitMs} ms`);
  assert.deepEqual(await rootLeft(), []);
});

test("variant: SIGINT while still planning (before any output exists) → exit 130 within 1 s, nothing written", async () => {
  const s0 = await snapshot(big);
  const r = await runCli(["convert", big, "--outtype", "Q6_K", "--threads", "2"], { signal: "SIGINT", afterReady: 0 });
  assert.equal(r.signal, null);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /E_INTERRUPTED/);
  assert.ok(r.exitMs < 1000, `answered in ${r.exitMs} ms`);
  assert.deepEqual(diff(s0, await snapshot(big)), { added: [], removed: [], changed: [] });
});

test("variant: a second SIGINT forces the exit at once, still 130 and nothing left", async () => {
  const out = path.join(root, "twice.gguf");
  const r = await runCli(["convert", big, "--outfile", out, "--outtype", "Q6_K", "--threads", "2"], { signal: "SIGINT", when: () => tempIn(root), repeatAfter: 5 });
  assert.equal(r.signal, null);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /E_INTERRUPTED/);
  assert.ok(r.exitMs < 1000, `answered in ${r.exitMs} ms`);
  assert.deepEqual(await rootLeft(), []);
});

test("regression: verify on SIGTERM exits 130 with one line (it used to die by the signal)", async () => {
  const out = path.join(root, "v.gguf");
  const c = await runCli(["convert", big, "--outfile", out, "--outtype", "q8_0", "--threads", "2"]);
  assert.equal(c.code, 0, c.stderr);
  try {
    const r = await runCli(["verify", out, big], { signal: "SIGTERM", when: (pid) => hasOpen(pid, path.join(big, "model.safetensors")) });
    assert.equal(r.signal, null, "handled, not killed by the signal");
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^ggufy: error: E_INTERRUPTED: verification interrupted\n$/);
    assert.ok(r.exitMs < 1000, `answered in ${r.exitMs} ms`);
  } finally {
    await rm(out);
  }
});

test("variant: inspect on SIGINT exits 130 at once", async () => {
  const r = await runCli(["inspect", manyGguf], { signal: "SIGINT", afterReady: 20, stdoutBytes: 1 << 30 });
  assert.equal(r.signal, null);
  assert.ok(Number.isFinite(r.exitMs), "the signal was sent while inspect ran");
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /^ggufy: error: E_INTERRUPTED: /);
  assert.ok(r.exitMs < 1000);
});

test("regression: a SIGKILLed run leaves .NAME.ggufy-tmp-PID; the next run removes it and says so", async () => {
  const out = path.join(root, "killed.gguf");
  const r = await runCli(["convert", big, "--outfile", out, "--outtype", "Q6_K", "--threads", "2"], { signal: "SIGKILL", when: () => tempIn(root) });
  assert.equal(r.signal, "SIGKILL");
  const stale = (await readdir(root)).filter((f) => f.startsWith(".killed.gguf.ggufy-tmp-"));
  assert.equal(stale.length, 1);
  const next = await runCli(["convert", big, "--outfile", out, "--outtype", "q8_0", "--threads", "2"]);
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stderr, new RegExp(`warning: removed .*${stale[0]!.replace(/\./g, "\\.")}, the temp file of an interrupted run \\(pid \\d+, no longer running\\)`));
  assert.deepEqual((await readdir(root)).filter((f) => f.includes("ggufy-tmp")), []);
  await rm(out);
});

// ───────────────────────────── EPIPE ─────────────────────────────

test("regression: inspect … | head -c 100 ends quietly (exit 0, no stack trace)", async () => {
  const r = await runCli(["inspect", manyGguf], { stdoutBytes: 100 });
  assert.equal(r.signal, null);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
});

test("variant: inspect --json and convert --dry-run piped into head -c 100 end quietly too", async () => {
  for (const args of [["inspect", manyGguf, "--json"], ["convert", big, "--dry-run", "--outtype", "Q4_K_M"], ["inspect", big]]) {
    const r = await runCli(args, { stdoutBytes: 100 });
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr, "", args.join(" "));
  }
  assert.ok((await stat(manyGguf)).size > 0);
});

test("variant: MiniCPM-V's preprocessor_config.json as a FIFO is refused at once (convert --dry-run)", async () => {
  const dir = path.join(root, "minicpmv-fifo");
  await writeMinicpmvHeaderOnly(dir);
  await rm(path.join(dir, "preprocessor_config.json"), { force: true });
  mkfifo(path.join(dir, "preprocessor_config.json"));
  refusedQuickly(await runCli(["convert", dir, "--dry-run"], { timeoutMs: 20_000 }), 2, /E_CONFIG: .*preprocessor_config\.json: .*FIFO/);
});
