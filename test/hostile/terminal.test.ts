/**
 * Issue 15, "terminal injection and crashes in inspect" and "resource limits": every string from a file
 * reaches stdout escaped (text) or JSON-escaped (--json, which must still parse back to the very same
 * strings), 200,000 tensors do not overflow the stack, --threads is validated and capped, and
 * --override-kv of keys that shape the file is validated (an accepted general.alignment gives a file
 * @huggingface/gguf — an independent reader — lays out the same way).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { encodeGgufHeader } from "../../src/formats/gguf/writer.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { kv, GGUFValueType } from "../../src/formats/gguf/types.js";
import { GGMLType } from "../../src/quant/ggml/types.js";
import { writeSafetensors } from "../../src/formats/safetensors/writer.js";
import { formatVerify } from "../../src/cli/verify.js";
import { termSafe } from "../../src/cli/escape.js";
import { effectiveThreads, MAX_THREADS } from "../../src/convert/limits.js";
import type { VerifyResult } from "../../src/convert/verify.js";
import { cli, copyStories, scratch } from "./helpers.js";
import { rawControlBytes, runNode } from "./tree.js";
import { repoRoot } from "../../fixtures/paths.js";

let root: string;
before(async () => {
  root = await scratch("ggufy-terminal-");
});
after(() => rm(root, { recursive: true, force: true }));

const HOSTILE = ["\u001b]0;pwned\u0007", "\u001b[2J", "a\u009b31mb", "del\u007f", "rtl\u202eevil", "nl\nname", "\u0085next"];

function assertNoControls(out: string, what: string): void {
  const bad = rawControlBytes(Buffer.from(out, "utf8"));
  assert.deepEqual(bad.slice(0, 5), [], `${what}: raw control bytes at ${bad.slice(0, 5)}: ${JSON.stringify(out.slice(Math.max(0, bad[0]! - 20), bad[0]! + 20))}`);
  assert.ok(!/[\u202a-\u202e\u2066-\u2069]/.test(out), `${what}: raw bidi control`);
}

async function hostileGguf(file: string): Promise<void> {
  const kvs = [kv.str("general.architecture", "llama"), ...HOSTILE.map((k, i) => kv.str(`k${i}.${k}`, `value ${k}`)), kv.strs("arr", HOSTILE)];
  const tensors = HOSTILE.map((name) => ({ name, ne: [4], type: GGMLType.F32 }));
  const h = encodeGgufHeader(kvs, tensors);
  const buf = Buffer.alloc(h.fileSize);
  Buffer.from(h.bytes).copy(buf);
  await writeFile(file, buf);
}

test("regression: GGUF keys and tensor names with escape sequences reach inspect's stdout escaped", async () => {
  const f = path.join(root, "hostile.gguf");
  await hostileGguf(f);
  const r = await cli(["inspect", f, "--full"]);
  assert.equal(r.code, 0, r.stderr);
  assertNoControls(r.stdout, "inspect");
  assert.ok(r.stdout.includes("k0.\\x1b]0;pwned\\x07 = "), r.stdout);
  assert.ok(r.stdout.includes("  \\x1b[2J "));
  assert.ok(r.stdout.includes("rtl\\u202eevil"));
});

test("variant: inspect --json escapes DEL/C1/bidi too, and parses back to exactly the file's strings", async () => {
  const f = path.join(root, "hostile.gguf");
  await hostileGguf(f);
  const r = await cli(["inspect", f, "--json", "--full"]);
  assert.equal(r.code, 0, r.stderr);
  assertNoControls(r.stdout, "inspect --json");
  const j = JSON.parse(r.stdout) as { metadata: Record<string, unknown>; tensors: { name: string }[] };
  assert.deepEqual(j.tensors.map((t) => t.name), HOSTILE);
  assert.deepEqual(j.metadata["arr"], HOSTILE);
  HOSTILE.forEach((k, i) => assert.equal(j.metadata[`k${i}.${k}`], `value ${k}`));
});

test("variant: safetensors tensor names and __metadata__ values (file and folder inspect)", async () => {
  const f = path.join(root, "hostile.safetensors");
  await writeSafetensors(f, HOSTILE.map((name) => ({ name, dtype: "F32" as const, shape: [1], data: new Uint8Array(4) })), { note: "\u001b[31mred\u009b" });
  for (const args of [["inspect", f], ["inspect", f, "--json"]]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout, args.join(" "));
  }
});

test("variant: a model card name with escapes in convert --dry-run, text and JSON", async () => {
  const dir = await copyStories(root, "card");
  await writeFile(path.join(dir, "README.md"), `---\nname: "evil\\e]0;t\\a\\u009b"\nfinetune: "x\\u202ey"\n---\n`);
  for (const args of [["convert", dir, "--dry-run"], ["convert", dir, "--dry-run", "--json"]]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout, args.join(" "));
  }
});

test("variant: verify's report escapes tensor names, problems and metadata differences", () => {
  const name = HOSTILE[0]!;
  const r = {
    ok: false, file: `/x/${HOSTILE[1]}.gguf`, modelDir: "/m", outtype: "f16", parts: ["/x"], fileType: 1,
    tensors: [{ name, type: "F16", ok: false, exact: false, relRmse: 1, maxAbsErr: 1, cosine: 0, problems: [`bad ${HOSTILE[2]}`] }],
    missing: [HOSTILE[3]], unexpected: [HOSTILE[4]], summary: [], failures: ["x"], kvDifferences: [`general.name: ${HOSTILE[5]}`],
  } as unknown as VerifyResult;
  const s = formatVerify(r);
  assertNoControls(s, "verify");
  assert.ok(s.includes(termSafe(name)));
});

test("escaping: lone surrogates, C0, C1 and bidi are escaped; printable text (accents, CJK, emoji) is not", () => {
  assert.equal(termSafe("a\u001bb\u0085c\u202ed\ud800e"), "a\\x1bb\\x85c\\u202ed\\ud800e");
  assert.equal(termSafe("é 漢字 😀 tab"), "é 漢字 😀 tab");
});

// ───────────────────────────── no recursion proportional to the input ─────────────────────────────

test("regression: 200,000 tensors — inspect prints them (exit 0, not 'Maximum call stack size exceeded' / 70)", async () => {
  const f = path.join(root, "200k.gguf");
  const tensors = Array.from({ length: 200_000 }, (_, i) => ({ name: `t${i}`, ne: [1], type: GGMLType.F32 }));
  const h = encodeGgufHeader([kv.str("general.architecture", "llama")], tensors);
  const buf = Buffer.alloc(h.fileSize);
  Buffer.from(h.bytes).copy(buf);
  await writeFile(f, buf);
  const r = await cli(["inspect", f]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^200000 tensors \(200000 f32\)$/m);
  assert.match(r.stdout, /^ {2}t199999 +f32 +\[1\]/m);
});

test("variant: a safetensors file (and a folder) with 200,000 tensors", async () => {
  const dir = path.join(root, "st200k");
  await (await import("node:fs/promises")).mkdir(dir);
  const f = path.join(dir, "model.safetensors");
  await writeSafetensors(f, Array.from({ length: 200_000 }, (_, i) => ({ name: `w.${i}`, dtype: "F32" as const, shape: [1], data: new Uint8Array(4) })));
  let r = await cli(["inspect", f]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^200000 tensors/m);
  await writeFile(path.join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"] }));
  r = await cli(["inspect", dir, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { tensors: unknown[] }).tensors.length, 200_000);
});

// ───────────────────────────── --threads ─────────────────────────────

test("threads: validated and capped at min(requested, 4 × cores, 64, chunks)", async () => {
  assert.equal(effectiveThreads(1_000_000_000, Infinity, 2), 8);
  assert.equal(effectiveThreads(1_000_000_000, Infinity, 256), MAX_THREADS);
  assert.equal(effectiveThreads(200, 3, 2), 3);
  assert.equal(effectiveThreads(undefined, Infinity, 6), 6);
  assert.equal(effectiveThreads(2, 0, 2), 1);
  for (const bad of [0, -1, 1.5, NaN]) assert.throws(() => effectiveThreads(bad), /E_USAGE/);
  const dir = await copyStories(root, "thr");
  for (const bad of ["0", "-1", "1.5", "abc", ""]) {
    const r = await cli(["convert", dir, "--threads", bad]);
    assert.equal(r.code, 64, `--threads ${bad}: ${r.stderr}`);
  }
});

test("regression: --threads 1000000000 converts with bounded memory (child process, peak RSS < 1.5 GB)", async () => {
  const dir = await copyStories(root, "thr2");
  const main = path.join(repoRoot(), "dist", "src", "cli", "main.js");
  const code = `import { main } from ${JSON.stringify(main)};
const c = await main(["convert", ${JSON.stringify(dir)}, "--outtype", "Q4_K_M", "--threads", "1000000000", "--outfile", ${JSON.stringify(path.join(dir, "t.gguf"))}]);
process.stderr.write("RSS " + process.resourceUsage().maxRSS * 1024 + "\\n");
process.exitCode = c;`;
  const script = path.join(root, "threads.mjs");
  await writeFile(script, code);
  const r = await runNode([script], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const rss = Number(/RSS (\d+)/.exec(r.stderr)?.[1]);
  assert.ok(rss > 0 && rss < 1.5e9, `peak RSS ${rss}`);
});

// ───────────────────────────── --override-kv of structural keys ─────────────────────────────

test("regression: --override-kv general.alignment=int:3 is refused naming the key", async () => {
  const dir = await copyStories(root, "kv");
  const r = await cli(["convert", dir, "--override-kv", "general.alignment=int:3"]);
  assert.equal(r.code, 64, r.stderr);
  assert.match(r.stderr, /E_USAGE: --override-kv general\.alignment: 3 is not a power of two/);
});

test("variant: zero, strings, floats, over-cap alignments, split.* and another architecture are refused", async () => {
  const dir = await copyStories(root, "kv2");
  for (const o of ["general.alignment=int:0", "general.alignment=str:32", "general.alignment=float:32", "general.alignment=int:131072", "general.alignment=int:-32", "split.count=int:2", "split.no=int:0", "split.tensors.count=int:1", "general.architecture=str:qwen2"]) {
    const r = await cli(["convert", dir, "--dry-run", "--override-kv", o]);
    assert.equal(r.code, 64, `${o}: ${r.stderr}`);
    assert.ok(r.stderr.includes(`--override-kv ${o.split("=")[0]}`), `${o}: ${r.stderr}`);
  }
});

test("variant: --override-kv general.alignment=int:64 writes a file laid out at 64 (our reader and @huggingface/gguf agree)", async () => {
  const dir = await copyStories(root, "kv3");
  const out = path.join(dir, "a64.gguf");
  const r = await cli(["convert", dir, "--outtype", "q8_0", "--outfile", out, "--override-kv", "general.alignment=int:64"]);
  assert.equal(r.code, 0, r.stderr);
  const g = await readGguf(out);
  assert.equal(g.alignment, 64);
  assert.equal(g.kvs.get("general.alignment")?.type, GGUFValueType.UINT32);
  const hf = await gguf(out, { allowLocalFile: true });
  assert.equal(Number((hf.metadata as Record<string, unknown>)["general.alignment"]), 64);
  assert.equal(Number(hf.tensorDataOffset), g.dataStart);
  assert.equal(Number(hf.tensorDataOffset) % 64, 0);
  for (const t of hf.tensorInfos) assert.equal(Number(t.offset) % 64, 0, t.name);
  // the same bytes as a default (32) conversion, tensor by tensor
  const ref = path.join(dir, "a32.gguf");
  assert.equal((await cli(["convert", dir, "--outtype", "q8_0", "--outfile", ref])).code, 0);
  const g32 = await readGguf(ref);
  const b64 = await readFile(out);
  const b32 = await readFile(ref);
  for (const t of g.tensors) {
    const u = g32.tensors.find((x) => x.name === t.name)!;
    assert.ok(b64.subarray(t.fileOffset, t.fileOffset + t.bytes).equals(b32.subarray(u.fileOffset, u.fileOffset + u.bytes)), t.name);
  }
});
