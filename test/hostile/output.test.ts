/**
 * Output safety: an existing output is kept unless --force, free disk space is checked before
 * anything is written, a failing writer (disk full) or creator ends cleanly, and in every failure
 * no .gguf and no temp file stays behind. Then the CLI: one line per error, documented exit codes.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { open, readFile, rm, writeFile, stat, statfs } from "node:fs/promises";
import path from "node:path";
import { convert, plan, GgufyError } from "../../src/index.js";
import type { FileOpener } from "../../src/convert/output.js";
import { checkFreeSpace } from "../../src/convert/pipeline.js";
import { cli, copyStories, editHeader, entry, f32View, leftovers, rewriteTensors, scratch } from "./helpers.js";

let root: string;
before(async () => {
  root = await scratch();
});
after(() => rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): Promise<string> => copyStories(root, `m${n++}`);

async function rejects(p: Promise<unknown>, code: string, ...mentions: (string | RegExp)[]): Promise<GgufyError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof GgufyError, `expected a GgufyError, got ${caught === undefined ? "success" : (caught as Error).stack}`);
  assert.equal(caught.code, code, caught.message);
  for (const m of mentions) assert.ok(typeof m === "string" ? caught.message.includes(m) : m.test(caught.message), `no ${m} in: ${caught.message}`);
  return caught;
}

/** An opener over real files whose writes fail with `code` once `limit` bytes were written. */
function failingOpener(limit: number, code = "ENOSPC"): FileOpener & { opened: string[] } {
  const opened: string[] = [];
  const f = async (p: string) => {
    opened.push(p);
    const fh = await open(p, "w");
    let written = 0;
    return {
      write: (async (buf: Uint8Array, offset = 0, length = buf.length - offset) => {
        if (written + length > limit) {
          const e = new Error(`${code}: simulated, write`) as NodeJS.ErrnoException;
          e.code = code;
          throw e;
        }
        written += length;
        return fh.write(buf, offset, length);
      }) as unknown as typeof fh.write,
      close: () => fh.close(),
      sync: () => fh.sync(),
    };
  };
  return Object.assign(f, { opened });
}

describe("output files", () => {
  test("an existing output is refused without --force and left untouched", async () => {
    const dir = await fresh();
    const out = path.join(dir, "out.gguf");
    await writeFile(out, "precious");
    await rejects(convert({ input: dir, outfile: out, threads: 1 }), "E_OUTPUT_EXISTS", out, "--force");
    assert.equal(await readFile(out, "utf8"), "precious");
    assert.deepEqual(await leftovers(dir), [out]);
  });

  test("--force replaces it", async () => {
    const dir = await fresh();
    const out = path.join(dir, "out.gguf");
    await writeFile(out, "old");
    const r = await convert({ input: dir, outfile: out, threads: 1, force: true });
    assert.equal((await stat(out)).size, r.files[0]!.bytes);
    assert.equal((await readFile(out)).subarray(0, 4).toString("latin1"), "GGUF");
    assert.deepEqual(await leftovers(dir), [out]);
  });

  test("not enough free space: refused before writing, saying how much is needed", async () => {
    const dir = await fresh();
    const out = path.join(dir, "out.gguf");
    const asked: string[] = [];
    const e = await rejects(
      convert({ input: dir, outfile: out, threads: 1, freeSpace: async (d) => (asked.push(d), 100_000) }),
      "E_DISK_SPACE", out, /needs .*\(\d+ bytes\)/, "100.0 kB", "is free",
    );
    const need = Number(/\((\d+) bytes\)/.exec(e.message)![1]);
    const p = await plan({ input: dir, outfile: out });
    await p.source.close();
    assert.equal(need, p.files[0]!.header.fileSize);
    assert.deepEqual(asked, [dir]);
    assert.deepEqual(await leftovers(dir), []);
  });

  test("the real free-space check passes where there is room and reads fs.statfs", async () => {
    const dir = await fresh();
    const p = await plan({ input: dir, outfile: path.join(dir, "out.gguf") });
    await p.source.close();
    await checkFreeSpace(p.files);
    const s = await statfs(dir);
    const huge = [{ ...p.files[0]!, header: { ...p.files[0]!.header, fileSize: s.bavail * s.bsize + 1 } }];
    await rejects(checkFreeSpace(huge), "E_DISK_SPACE", "needs");
  });

  test("disk full while writing (ENOSPC): E_WRITE, no output, no temp file", async () => {
    const dir = await fresh();
    const out = path.join(dir, "out.gguf");
    const opener = failingOpener(200_000);
    await rejects(convert({ input: dir, outfile: out, threads: 1, outtype: "f32", opener }), "E_WRITE", out, "the disk is full");
    assert.equal(opener.opened.length, 1, "the temp file was created");
    assert.match(path.basename(opener.opened[0]!), /^\.out\.gguf\.ggufy-tmp-\d+$/);
    assert.deepEqual(await leftovers(dir), []);
  });

  test("any other write error (EIO) ends the same way", async () => {
    const dir = await fresh();
    const out = path.join(dir, "out.gguf");
    await rejects(convert({ input: dir, outfile: out, threads: 1, opener: failingOpener(0, "EIO") }), "E_WRITE", out, "EIO");
    assert.deepEqual(await leftovers(dir), []);
  });

  test("the output cannot be created (missing folder)", async () => {
    const dir = await fresh();
    const out = path.join(dir, "no-such-dir", "out.gguf");
    await rejects(convert({ input: dir, outfile: out, threads: 1 }), "E_WRITE", out, "cannot create");
    assert.deepEqual(await leftovers(dir), []);
  });

  test("an abort signal fired before the start writes nothing", async () => {
    const dir = await fresh();
    const ac = new AbortController();
    ac.abort();
    await rejects(convert({ input: dir, outfile: path.join(dir, "out.gguf"), threads: 1, signal: ac.signal }), "E_INTERRUPTED");
    assert.deepEqual(await leftovers(dir), []);
  });

  test("an abort between chunks removes the temp file (worker pool)", async () => {
    const dir = await fresh();
    const ac = new AbortController();
    let events = 0;
    await rejects(
      convert({ input: dir, outfile: path.join(dir, "out.gguf"), threads: 2, chunkElements: 1024, onProgress: () => void (++events === 5 && ac.abort()), signal: ac.signal }),
      "E_INTERRUPTED",
    );
    assert.equal(events, 5);
    assert.deepEqual(await leftovers(dir), []);
  });
});

describe("CLI", () => {
  const oneErrorLine = (stderr: string, code: string): string => {
    const lines = stderr.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
    assert.ok(lines[0]!.startsWith(`ggufy: error: ${code}: `), lines[0]);
    assert.ok(!/\n\s+at /.test(stderr), "no stack without --debug");
    return lines[0]!;
  };

  test("a corrupt header: exit 2, one line naming file and tensor, no stack", async () => {
    const dir = await fresh();
    await editHeader(path.join(dir, "model.safetensors"), (j) => void (entry(j, "model.norm.weight").dtype = "Q4"));
    const r = await cli(["convert", dir, "--outfile", path.join(dir, "o.gguf"), "--threads", "1"]);
    assert.equal(r.code, 2);
    const line = oneErrorLine(r.stderr, "E_ST_DTYPE");
    assert.ok(line.includes(path.join(dir, "model.safetensors")) && line.includes("tensor 'model.norm.weight'"), line);
    assert.equal(r.stdout, "");
    assert.deepEqual(await leftovers(dir), []);
  });

  test("--debug adds the stack", async () => {
    const dir = await fresh();
    await editHeader(path.join(dir, "model.safetensors"), (j) => void (entry(j, "model.norm.weight").dtype = "Q4"));
    const r = await cli(["convert", dir, "--debug", "--threads", "1"]);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.startsWith("ggufy: error: E_ST_DTYPE: "));
    assert.match(r.stderr, /\n\s+at /);
  });

  test("a hostile tensor name (newline, terminal escape) still prints one line", async () => {
    const dir = await fresh();
    await editHeader(path.join(dir, "model.safetensors"), (j) => {
      const e = entry(j, "model.norm.weight");
      delete j["model.norm.weight"];
      j["evil\n\u001b[2Jname\r"] = { ...e, dtype: "BAD" };
    });
    const r = await cli(["convert", dir, "--threads", "1"]);
    assert.equal(r.code, 2);
    const line = oneErrorLine(r.stderr, "E_ST_DTYPE");
    assert.ok(line.includes("evil\\n\\u001b[2Jname\\u000d"), line);
    assert.ok(!line.includes("\u001b"));
  });

  test("a missing model folder, or a file instead of one: exit 2", async () => {
    const r = await cli(["convert", path.join(root, "nope"), "--threads", "1"]);
    assert.equal(r.code, 2);
    assert.ok(oneErrorLine(r.stderr, "E_IO").includes("model folder not found"));
    const dir = await fresh();
    const r2 = await cli(["convert", path.join(dir, "model.safetensors"), "--threads", "1"]);
    assert.equal(r2.code, 2);
    assert.ok(oneErrorLine(r2.stderr, "E_IO").includes("not a folder"));
  });

  test("usage errors: exit 64, one line", async () => {
    for (const argv of [["frobnicate"], ["convert"], ["convert", "a", "b"], ["convert", "x", "--bogus"], ["convert", "x", "--threads", "0"]]) {
      const r = await cli(argv);
      assert.equal(r.code, 64, `${argv.join(" ")}: ${r.stderr}`);
      oneErrorLine(r.stderr, "E_USAGE");
    }
  });

  test("an existing output: exit 2 with E_OUTPUT_EXISTS; --force: exit 0", async () => {
    const dir = await fresh();
    const out = path.join(dir, "o.gguf");
    await writeFile(out, "x");
    const r = await cli(["convert", dir, "--outfile", out, "--threads", "1"]);
    assert.equal(r.code, 2);
    assert.ok(oneErrorLine(r.stderr, "E_OUTPUT_EXISTS").includes(out));
    const r2 = await cli(["convert", dir, "--outfile", out, "--threads", "1", "--force", "--quiet"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stderr, "");
  });

  test("NaN: exit 2; --allow-nonfinite: exit 0 with a warning line", async () => {
    const dir = await fresh();
    await rewriteTensors(dir, (ts) => void (f32View(ts.find((t) => t.name === "model.norm.weight")!)[3] = NaN));
    const r = await cli(["convert", dir, "--outfile", path.join(dir, "o.gguf"), "--threads", "1"]);
    assert.equal(r.code, 2);
    assert.ok(oneErrorLine(r.stderr, "E_NONFINITE").includes("tensor 'output_norm.weight'"));
    const r2 = await cli(["convert", dir, "--outfile", path.join(dir, "o.gguf"), "--threads", "1", "--allow-nonfinite"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /^ggufy: warning: 1 non-finite value\(s\) were passed through \(--allow-nonfinite\)$/m);
  });

  test("inspect of a corrupt GGUF: exit 2, one line", async () => {
    const f = path.join(root, "bad.gguf");
    await writeFile(f, Buffer.from("GGUF\u0003\u0000\u0000\u0000\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff", "latin1"));
    const r = await cli(["inspect", f]);
    assert.equal(r.code, 2);
    assert.ok(oneErrorLine(r.stderr, "E_GGUF_FORMAT").includes(f));
  });
});
