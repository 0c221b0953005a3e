/**
 * Interrupted conversions, end to end: the real CLI (bin/ggufy.js) in a child process converting a
 * random 13M-parameter llama to Q6_K is sent SIGINT once its temp file has received its first
 * 8 MB flush (about three quarters through), and SIGTERM shortly after it started writing. Each
 * must exit 130 promptly with one error line, leaving no .gguf and no temp file. A disk that fills
 * up halfway through the same model (injected writer) must leave nothing either. A signal that
 * arrives as a finished convert winds down (right after its `wrote` line) must not kill it: it exits
 * with its own code.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { open, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "../../fixtures/paths.js";
import { convert, GgufyError } from "../../src/index.js";
import type { FileOpener } from "../../src/convert/output.js";
import { leftovers, scratch, writeRandomLlama } from "./helpers.js";

let root: string;
let model: string;
before(async () => {
  root = await scratch("ggufy-signals-");
  model = path.join(root, "big");
  await writeRandomLlama(model, { hidden: 512, layers: 4, ffn: 1536, heads: 8, kvHeads: 4 });
});
after(() => rm(root, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function tempFile(dir: string): Promise<string | undefined> {
  const f = (await readdir(dir)).find((n) => n.includes(".ggufy-tmp-"));
  return f ? path.join(dir, f) : undefined;
}

/**
 * Start the CLI, wait until `ready(tempSize)` holds for its temp file, send `signal`; resolve with
 * the exit status, stderr, and how long the child took to exit after the signal.
 */
async function interrupt(signal: NodeJS.Signals, out: string, ready: (size: number) => boolean) {
  const child = spawn(process.execPath, [path.join(repoRoot(), "bin", "ggufy.js"), "convert", model, "--outfile", out, "--outtype", "Q6_K", "--threads", "2"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((res) => child.on("exit", (code, sig) => res({ code, sig })));
  let done = false;
  void exited.then(() => (done = true));
  let sentAt = 0;
  let sawTemp: string | undefined;
  const deadline = Date.now() + 120_000;
  while (!done && Date.now() < deadline) {
    const t = await tempFile(path.dirname(out));
    if (t) {
      sawTemp = t;
      const size = await stat(t).then((s) => s.size, () => -1);
      if (size >= 0 && ready(size)) {
        child.kill(signal);
        sentAt = performance.now();
        break;
      }
    }
    await sleep(10);
  }
  if (!sentAt) child.kill("SIGKILL");
  const r = await exited;
  return { ...r, stderr, sawTemp, exitMs: sentAt ? performance.now() - sentAt : NaN, sent: sentAt > 0 };
}

test("SIGINT three quarters through: exit 130, one line, no .gguf, no temp file", async (t) => {
  const out = path.join(root, "int.gguf");
  const r = await interrupt("SIGINT", out, (size) => size > 0);
  t.diagnostic(`stopped ${r.exitMs.toFixed(0)} ms after SIGINT`);
  assert.ok(r.sent, `the conversion ended before its first flush could be seen: exit ${r.code}, ${r.stderr}`);
  assert.equal(r.sig, null, "the process handled the signal itself");
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /^ggufy: error: E_INTERRUPTED: conversion interrupted; no output was written\n$/);
  assert.ok(r.exitMs < 5000, `took ${r.exitMs} ms to stop`);
  assert.ok(r.sawTemp);
  assert.deepEqual(await leftovers(root), []);
});

test("SIGTERM just after writing started: exit 130, nothing left", async () => {
  const out = path.join(root, "term.gguf");
  let first = 0;
  const r = await interrupt("SIGTERM", out, () => (first ||= performance.now()) < performance.now() - 200);
  assert.ok(r.sent, `the conversion ended first: exit ${r.code}`);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /E_INTERRUPTED/);
  assert.deepEqual(await leftovers(root), []);
});

test("a signal as a finished convert winds down: exit 0 with its output, never killed by the signal", async (t) => {
  // Sent the moment stdout shows the `wrote` line: the command is done, the process is on its way
  // out. Before bin/ggufy.js exited explicitly, the natural exit reset the handlers to the default
  // action ~10 ms before the process ended, and 4 of 30 such signals killed it (exit by signal).
  const small = path.join(root, "small");
  await writeRandomLlama(small, { hidden: 256, layers: 2, ffn: 768, heads: 4, kvHeads: 2, seed: 3 });
  const seen: Record<string, number> = {};
  for (let i = 0; i < 24; i++) {
    const sig = (["SIGINT", "SIGTERM", "SIGHUP"] as const)[i % 3]!;
    const out = path.join(root, `wind-${i}.gguf`);
    const child = spawn(process.execPath, [path.join(repoRoot(), "bin", "ggufy.js"), "convert", small, "--outfile", out, "--outtype", "q8_0", "--threads", String(1 + (i % 2))], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("wrote ")) child.kill(sig);
    });
    const r = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((res) => child.on("exit", (code, s) => res({ code, sig: s })));
    const k = `${r.code}/${r.sig}`;
    seen[k] = (seen[k] ?? 0) + 1;
    assert.equal(r.sig, null, `run ${i}: killed by ${r.sig} after it had written ${out}`);
    assert.equal(r.code, 0, `run ${i} (${sig}): ${stderr}`);
    assert.doesNotMatch(stderr, /E_INTERRUPTED/);
    assert.ok((await stat(out)).size > 0);
    await rm(out);
  }
  t.diagnostic(`exits: ${JSON.stringify(seen)}`);
  assert.deepEqual(await leftovers(root), []);
});

test("the disk fills up halfway through: E_WRITE, nothing left", async () => {
  const out = path.join(root, "full.gguf");
  let written = 0;
  const opener: FileOpener = async (p) => {
    const fh = await open(p, "w");
    return {
      write: (async (buf: Uint8Array, offset = 0, length = buf.length - offset) => {
        if (written + length > 20_000_000) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        written += length;
        return fh.write(buf, offset, length);
      }) as unknown as typeof fh.write,
      close: () => fh.close(),
      sync: () => fh.sync(),
    };
  };
  // f32: 52 MB of output, so the failure comes after two full 8 MB flushes
  await assert.rejects(convert({ input: model, outfile: out, outtype: "f32", threads: 2, opener }), (e: unknown) => {
    assert.ok(e instanceof GgufyError && e.code === "E_WRITE", String(e));
    assert.match(e.message, /writing failed after \d+ bytes: the disk is full/);
    assert.ok(e.message.includes(out));
    return true;
  });
  assert.ok(written >= 16_000_000, `only ${written} bytes were written before the failure`);
  assert.deepEqual(await leftovers(root), []);
});
