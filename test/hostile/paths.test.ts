/**
 * Issue 15, "writes outside where the user asked" and "races and paths": every name part from the
 * checkpoint is one safe path component, outputs stay in the chosen folder, temp files are never
 * followed through a planted link, inputs are never overwritten (even with --force), single-file
 * checkpoints are confined, commits are atomic against a concurrent run, folders/FIFOs at an output
 * path are refused, and GGUF names are measured and compared as bytes.
 *
 * Each test lists the tree around the model before and after (tree.ts): nothing may appear outside the
 * folder the output was meant for, and no input may change.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { link, mkdir, readdir, readFile, rm, symlink, writeFile, stat, lstat } from "node:fs/promises";
import path from "node:path";
import { convert, GgufyError } from "../../src/index.js";
import { AtomicOutput } from "../../src/convert/output.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { conventionalName, safeNamePart } from "../../src/convert/naming.js";
import { cli, copyStories, leftovers, scratch, writeRandomLlama } from "./helpers.js";
import { diff, mkfifo, runCli, snapshot } from "./tree.js";

let root: string;
before(async () => {
  root = await scratch("ggufy-paths-");
});
after(() => rm(root, { recursive: true, force: true }));
let n = 0;
/** a stories260K copy three levels down, so that `../../..` still lands inside `root` (where we look) */
async function fresh(): Promise<{ dir: string; top: string }> {
  const top = path.join(root, `t${n++}`);
  const dir = await copyStories(path.join(top, "a", "b", "c"), "model");
  return { dir, top };
}

/** Everything added under `top` must be a .gguf directly in `allowed`; nothing may change or vanish. */
function assertConfined(before: Map<string, string>, after: Map<string, string>, top: string, allowed: string): void {
  const d = diff(before, after);
  assert.deepEqual(d.changed, [], "an existing file changed");
  assert.deepEqual(d.removed, [], "a file vanished");
  for (const a of d.added) {
    const abs = path.join(top, a);
    assert.equal(path.dirname(abs), allowed, `written outside ${allowed}: ${abs}`);
    assert.ok(abs.endsWith(".gguf"), `unexpected file ${abs}`);
  }
}

async function card(dir: string, fields: Record<string, string>): Promise<void> {
  const yaml = Object.entries(fields).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n");
  await writeFile(path.join(dir, "README.md"), `---\n${yaml}\n---\n# card\n`);
}

// ───────────────────────────── name parts ─────────────────────────────

test("regression: README finetune 'x/../../../escaped/pwned' stays one file name in the model folder", async () => {
  const { dir, top } = await fresh();
  await card(dir, { finetune: "x/../../../escaped/pwned" });
  const s0 = await snapshot(top);
  const r = await cli(["convert", dir, "--outtype", "f16"]);
  assert.equal(r.code, 0, r.stderr);
  const s1 = await snapshot(top);
  assertConfined(s0, s1, top, dir);
  const written = (await readdir(dir)).filter((f) => f.endsWith(".gguf"));
  assert.equal(written.length, 1);
  assert.match(written[0]!, /^[^/]*x-\.\.-\.\.-\.\.-escaped-pwned-F16\.gguf$/);
});

for (const [label, fields] of [
  ["version", { version: "../../../escaped/v1" }],
  ["size_label", { size_label: "1B/../../../../escaped" }],
  ["name + basename with backslashes and controls", { basename: "..\\..\\x\u001b]0;t\u0007", name: "n" }],
] as const) {
  test(`variant: model card ${label} cannot leave the model folder`, async () => {
    const { dir, top } = await fresh();
    await card(dir, fields);
    const s0 = await snapshot(top);
    const r = await cli(["convert", dir, "--outtype", "f32"]);
    assert.equal(r.code, 0, r.stderr);
    assertConfined(s0, await snapshot(top), top, dir);
    // eslint-disable-next-line no-control-regex
    for (const f of await readdir(dir)) assert.doesNotMatch(f, /[\u0000-\u001f\u007f-\u009f\\]/);
  });
}

test("variant: --metadata general.finetune and --model-name with separators stay in the folder", async () => {
  const { dir, top } = await fresh();
  const md = path.join(top, "md.json");
  await writeFile(md, JSON.stringify({ "general.finetune": "../../../../escaped/pwned", "general.version": "/etc/x" }));
  const s0 = await snapshot(top);
  let r = await cli(["convert", dir, "--outtype", "f16", "--metadata", md]);
  assert.equal(r.code, 0, r.stderr);
  r = await cli(["convert", dir, "--outtype", "f32", "--model-name", "../../../../escaped/name\u009b2J"]);
  assert.equal(r.code, 0, r.stderr);
  assertConfined(s0, await snapshot(top), top, dir);
});

test("name parts: capped, no separators, no leading dot or dash", () => {
  const long = conventionalName({ baseName: "é".repeat(300), fineTune: "f/".repeat(100), version: "v1", encoding: "q4_k_m" });
  assert.ok(Buffer.byteLength(long) <= 200, `${Buffer.byteLength(long)} bytes`);
  assert.ok(!long.includes("/"));
  assert.ok(long.endsWith("-v1-Q4_K_M"), long);
  assert.equal(conventionalName({ name: "../..", encoding: "f16" }), "ggml-model-F16");
  assert.equal(conventionalName({ name: ".hidden", encoding: "f16" }), "hidden-F16");
  assert.equal(safeNamePart("a\u202eb\ud800c"), "a-b\ufffdc");
});

// ───────────────────────────── temp files and links ─────────────────────────────

test("regression: a symlink planted at the temp name is neither followed nor overwritten", async () => {
  const { dir, top } = await fresh();
  const victim = path.join(top, "victim.txt");
  await writeFile(victim, "precious");
  const out = path.join(dir, "o.gguf");
  // the name a conversion run by this process would use (in-process CLI: our pid)
  await symlink(victim, AtomicOutput.tempPathFor(out));
  const s0 = await snapshot(top);
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /E_WRITE: .*temp file .*not ours/);
  assert.equal(await readFile(victim, "utf8"), "precious");
  assert.deepEqual(diff(s0, await snapshot(top)), { added: [], removed: [], changed: [] });
});

test("variant: a dangling link at the output is refused without --force; with --force the link is replaced, its target never created", async () => {
  const { dir, top } = await fresh();
  const target = path.join(top, "elsewhere.gguf");
  const out = path.join(dir, "o.gguf");
  await symlink(target, out);
  let r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /E_OUTPUT_EXISTS/);
  r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--force"]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await lstat(out)).isFile(), "the link was replaced by the file");
  await assert.rejects(stat(target), "the link's target was not written");
});

test("variant: a link at the output pointing to a file outside is replaced, the outside file unchanged (--force)", async () => {
  const { dir, top } = await fresh();
  const victim = path.join(top, "victim.gguf");
  await writeFile(victim, "precious");
  const out = path.join(dir, "o.gguf");
  await symlink(victim, out);
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--force"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(victim, "utf8"), "precious");
  assert.equal((await readGguf(out)).tensors.length > 0, true);
});

test("stale temp files: a dead run's is removed and reported, a live run's is left alone and reported", async () => {
  const { dir } = await fresh();
  const out = path.join(dir, "o.gguf");
  // pid 2^22+1 is above Linux's pid_max default: not alive
  const dead = path.join(dir, `.o.gguf.ggufy-tmp-${(1 << 22) + 1}`);
  const live = path.join(dir, `.o.gguf.ggufy-tmp-${process.ppid}`);
  await writeFile(dead, "half a file");
  await writeFile(live, "another run's half");
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: removed .*ggufy-tmp-4194305, the temp file of an interrupted run/);
  assert.match(r.stderr, new RegExp(`warning: .*ggufy-tmp-${process.ppid}: another run \\(pid ${process.ppid}\\)`));
  await assert.rejects(stat(dead));
  assert.equal(await readFile(live, "utf8"), "another run's half");
});

// ───────────────────────────── inputs are never outputs ─────────────────────────────

test("regression: --outfile m/model.safetensors --force is refused; the input is unchanged", async () => {
  const { dir, top } = await fresh();
  const s0 = await snapshot(top);
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", path.join(dir, "model.safetensors"), "--force"]);
  assert.equal(r.code, 64, r.stderr);
  assert.match(r.stderr, /E_USAGE: .*model\.safetensors: the output would overwrite .*model\.safetensors.*refused even with --force/);
  assert.deepEqual(diff(s0, await snapshot(top)), { added: [], removed: [], changed: [] });
});

test("variant: config.json, the tokenizer, a hard link and a symlink to an input are refused too (--force)", async () => {
  const { dir, top } = await fresh();
  const hard = path.join(top, "hard.gguf");
  await link(path.join(dir, "tokenizer.model"), hard);
  const soft = path.join(top, "soft.gguf");
  await symlink(path.join(dir, "config.json"), soft);
  const s0 = await snapshot(top);
  for (const out of [path.join(dir, "config.json"), path.join(dir, "tokenizer.model"), hard, soft]) {
    const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--force"]);
    assert.equal(r.code, 64, `${out}: ${r.stderr}`);
    assert.match(r.stderr, /would overwrite/);
  }
  assert.deepEqual(diff(s0, await snapshot(top)), { added: [], removed: [], changed: [] });
});

test("variant: library convert() refuses the same (dry plan too)", async () => {
  const { dir } = await fresh();
  await assert.rejects(convert({ input: dir, outtype: "f16", outfile: path.join(dir, "tokenizer_config.json"), force: true }), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE");
  const r = await cli(["convert", dir, "--dry-run", "--outfile", path.join(dir, "model.safetensors")]);
  assert.equal(r.code, 64);
});

// ───────────────────────────── single-file confinement ─────────────────────────────

test("regression: a model.safetensors symlinked outside the folder is refused like a shard", async () => {
  const { dir, top } = await fresh();
  const outside = path.join(top, "outside.safetensors");
  await rm(path.join(dir, "model.safetensors")).then(() => undefined);
  await writeFile(outside, await readFile(path.join(await copyStories(path.join(top, "src"), "m"), "model.safetensors")));
  await symlink(outside, path.join(dir, "model.safetensors"));
  const r = await cli(["convert", dir, "--outtype", "f16"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /E_SHARD_PATH: .*model\.safetensors.*outside the model folder/);
  // variant: inspect on the folder refuses it the same way
  const i = await cli(["inspect", dir]);
  assert.equal(i.code, 2);
  assert.match(i.stderr, /E_SHARD_PATH/);
  assert.deepEqual(await leftovers(dir), []);
});

test("variant: a model.safetensors linked to a file inside the folder is fine; a dangling one is E_SHARD_MISSING", async () => {
  const { dir } = await fresh();
  await mkdir(path.join(dir, "blobs"));
  const { rename } = await import("node:fs/promises");
  await rename(path.join(dir, "model.safetensors"), path.join(dir, "blobs", "w"));
  await symlink(path.join(dir, "blobs", "w"), path.join(dir, "model.safetensors"));
  assert.equal((await cli(["convert", dir, "--outtype", "f16"])).code, 0);
  await rm(path.join(dir, "blobs", "w"));
  const r = await cli(["inspect", dir]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /E_SHARD_MISSING/);
});

// ───────────────────────────── races and odd output paths ─────────────────────────────

test("regression: two conversions to the same output without --force — exactly one wins, the other gets E_OUTPUT_EXISTS", async () => {
  const dir = path.join(root, "race-model");
  await writeRandomLlama(dir, { hidden: 256, layers: 2, ffn: 768, heads: 4, kvHeads: 2 });
  const out = path.join(dir, "race.gguf");
  const runs = await Promise.all([0, 1].map(() => runCli(["convert", dir, "--outtype", "q8_0", "--outfile", out, "--threads", "1"])));
  const codes = runs.map((r) => r.code).sort();
  assert.deepEqual(codes, [0, 2], runs.map((r) => r.stderr).join("\n"));
  const loser = runs.find((r) => r.code === 2)!;
  assert.match(loser.stderr, /E_OUTPUT_EXISTS/);
  assert.deepEqual((await leftovers(dir)).map((f) => path.basename(f)), ["race.gguf"]);
  assert.ok((await readGguf(out)).tensors.length > 0);
});

test("variant: an output that appears while converting is kept; the finished temp file goes (E_OUTPUT_EXISTS at commit)", async () => {
  const { dir } = await fresh();
  const target = path.join(dir, "x.gguf");
  const o = await AtomicOutput.create(target);
  await o.write(new Uint8Array([1, 2, 3]));
  await writeFile(target, "the other run's file");
  await assert.rejects(o.commit(), (e: unknown) => e instanceof GgufyError && e.code === "E_OUTPUT_EXISTS");
  await o.abort();
  assert.equal(await readFile(target, "utf8"), "the other run's file");
  assert.deepEqual((await readdir(dir)).filter((f) => f.includes("ggufy-tmp")), []);
});

test("variant: two in-process conversions to the same output — one wins, the other E_OUTPUT_EXISTS", async () => {
  const { dir } = await fresh();
  const out = path.join(dir, "same.gguf");
  const rs = await Promise.allSettled([0, 1].map(() => convert({ input: dir, outtype: "f16", outfile: out, threads: 1 })));
  assert.equal(rs.filter((r) => r.status === "fulfilled").length, 1);
  const lost = rs.find((r) => r.status === "rejected") as PromiseRejectedResult;
  assert.ok(lost.reason instanceof GgufyError && lost.reason.code === "E_OUTPUT_EXISTS", String(lost.reason));
  assert.deepEqual((await leftovers(dir)).map((f) => path.basename(f)), ["same.gguf"]);
});

test("regression: a split part whose name is an existing folder → clear error, nothing left behind", async () => {
  const { dir } = await fresh();
  const out = path.join(dir, "s.gguf");
  const dry = JSON.parse((await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--split-max-tensors", "20", "--dry-run", "--json"])).stdout) as { files: { path: string }[] };
  const second = dry.files[1]!.path;
  await mkdir(second);
  for (const force of [false, true]) {
    const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--split-max-tensors", "20", ...(force ? ["--force"] : [])]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`E_OUTPUT_EXISTS: ${second}: is an existing folder; ggufy never replaces a folder`), r.stderr);
    assert.deepEqual(await leftovers(dir), []);
  }
});

test("variant: a FIFO at the output path is refused even with --force, and never opened", async () => {
  const { dir } = await fresh();
  const out = path.join(dir, "fifo.gguf");
  mkfifo(out);
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", out, "--force"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /E_OUTPUT_EXISTS: .*not a regular file/);
  assert.ok((await lstat(out)).isFIFO());
});

test("variant: split parts are all-or-nothing when a later part loses a race", async () => {
  const { dir } = await fresh();
  const out = path.join(dir, "p.gguf");
  const { plan } = await import("../../src/index.js");
  const { runPlan } = await import("../../src/convert/pipeline.js");
  const p = await plan({ input: dir, outtype: "f16", outfile: out, splitMaxTensors: 20 });
  let last = "";
  try {
    assert.ok(p.files.length >= 2);
    last = p.files[p.files.length - 1]!.path;
    let planted: Promise<void> | undefined;
    // a rival run finishes the last part while this one is still writing it
    await assert.rejects(
      runPlan(p.files, { onProgress: (e) => { if (!planted && e.file === last) planted = writeFile(last, "rival"); } }),
      (e: unknown) => e instanceof GgufyError && e.code === "E_OUTPUT_EXISTS",
    );
    await planted;
  } finally {
    await p.close();
  }
  // the parts committed before the failure were taken back; the rival's file is untouched
  assert.deepEqual(await leftovers(dir), [last]);
  assert.equal(await readFile(last, "utf8"), "rival");
});

test("regression: --outfile m/newdir/ (a missing folder) is refused, no file named newdir", async () => {
  const { dir } = await fresh();
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", path.join(dir, "newdir") + "/"]);
  assert.equal(r.code, 64, r.stderr);
  assert.match(r.stderr, /the folder does not exist/);
  await assert.rejects(lstat(path.join(dir, "newdir")));
});

test("variant: an existing folder with a trailing slash gets the default name inside; 'x/..' is not a file name", async () => {
  const { dir, top } = await fresh();
  const od = path.join(top, "outdir");
  await mkdir(od);
  let r = await cli(["convert", dir, "--outtype", "f16", "--outfile", od + "/"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await readdir(od)).filter((f) => f.endsWith("-F16.gguf")).length, 1);
  r = await cli(["convert", dir, "--outtype", "f16", "--outfile", `${top}/nope/..`]);
  assert.equal(r.code, 64, r.stderr);
});

// ───────────────────────────── names as bytes ─────────────────────────────

/** A GGUF (written by hand, as a stranger would) whose tensor names are the given raw bytes (F32, one element each). */
async function ggufWithRawNames(file: string, names: Buffer[]): Promise<void> {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number): void => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (b: Buffer): void => { u64(b.length); parts.push(b); };
  u32(0x46554747); u32(3); u64(names.length); u64(1);
  str(Buffer.from("general.architecture")); u32(8); str(Buffer.from("llama"));
  names.forEach((b, i) => { str(b); u32(1); u64(1); u32(GGMLType.F32); u64(i * 32); });
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc((32 - (head.length % 32)) % 32)]);
  await writeFile(file, Buffer.concat([head, Buffer.alloc(32 * names.length)]));
}

test("regression: a 30-byte invalid-UTF-8 tensor name is 30 bytes, not 90", async () => {
  const f = path.join(root, "bad-utf8.gguf");
  await ggufWithRawNames(f, [Buffer.alloc(30, 0xff)]);
  const g = await readGguf(f);
  assert.equal(g.tensors.length, 1);
  const r = await cli(["inspect", f]);
  assert.equal(r.code, 0, r.stderr);
  // variant: 64 such bytes are refused with their true length
  await ggufWithRawNames(f, [Buffer.alloc(64, 0xfe)]);
  await assert.rejects(readGguf(f), /tensor name is 64 bytes \(max 63\)/);
});

test("regression: two distinct raw names that decode alike are not duplicates; equal raw names are", async () => {
  const f = path.join(root, "two-names.gguf");
  await ggufWithRawNames(f, [Buffer.from([0x61, 0xff]), Buffer.from([0x61, 0xfe])]);
  const g = await readGguf(f);
  assert.equal(g.tensors.length, 2);
  assert.equal(g.tensors[0]!.name, g.tensors[1]!.name, "both decode to a\\ufffd");
  await ggufWithRawNames(f, [Buffer.from([0x61, 0xff]), Buffer.from([0x61, 0xff])]);
  await assert.rejects(readGguf(f), /duplicate tensor name/);
});

// ───────────────────────────── small files are confined too ─────────────────────────────

test("variant: config.json or tokenizer.model linked to a copy outside the folder is refused; a README.md link is ignored", async () => {
  for (const [file, code] of [["config.json", "E_CONFIG"], ["tokenizer.model", "E_TOKENIZER"]] as const) {
    const { dir, top } = await fresh();
    const outside = path.join(top, `outside-${file}`);
    await writeFile(outside, await readFile(path.join(dir, file)));
    await rm(path.join(dir, file));
    await symlink(outside, path.join(dir, file));
    const r = await cli(["convert", dir, "--outtype", "f16"]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`${code}: ${path.join(dir, file)}: links outside the model folder`), r.stderr);
  }
  const { dir, top } = await fresh();
  await writeFile(path.join(top, "card.md"), "---\nname: FromOutside\n---\n");
  await symlink(path.join(top, "card.md"), path.join(dir, "README.md"));
  const r = await cli(["convert", dir, "--dry-run"]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /FromOutside/);
});

test("a Hugging Face cache snapshot (every file a link into blobs/) still converts", async () => {
  const { dir, top } = await fresh();
  const repo = path.join(top, "hub", "models--org--tiny");
  const snap = path.join(repo, "snapshots", "abc123");
  await mkdir(path.join(repo, "blobs"), { recursive: true });
  await mkdir(snap, { recursive: true });
  const { rename } = await import("node:fs/promises");
  for (const f of await readdir(dir)) {
    await rename(path.join(dir, f), path.join(repo, "blobs", `blob-${f}`));
    await symlink(path.join("..", "..", "blobs", `blob-${f}`), path.join(snap, f));
  }
  const out = path.join(top, "hub.gguf");
  const r = await cli(["convert", snap, "--outtype", "f16", "--outfile", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readGguf(out)).tensors.length > 0);
});
