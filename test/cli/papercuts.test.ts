/**
 * The first things a new user hits (issue 12): per-command --help/-h, --version, where the MiniCPM-V
 * projector goes with --outfile, tokenizer warnings on stderr and in the JSON/library results, and
 * --tensor-type patterns lower-cased as llama-quantize's command line does (tools/quantize/quantize.cpp:
 * parse_tensor_type lower-cases the name part; parse_ggml_type matches the type name case-insensitively).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { plan, convert } from "../../src/index.js";
import { typeName } from "../../src/quant/ggml/types.js";
import { SafetensorsCheckpoint, writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { writeTinyMinicpmv } from "../../fixtures/minicpmv.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { repoRoot } from "../../fixtures/paths.js";
import { STORIES260K_HF_DIR } from "../support/reference-llama.js";
import { cli } from "./helpers.js";

let tmp = "";
before(async () => {
  tmp = await scratchDir("ggufy-papercuts-");
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// ---- --help / -h / --version -----------------------------------------------------------------------

const COMMANDS: [string, RegExp][] = [
  ["convert", /--outtype T[\s\S]*--tensor-type REGEX=T/],
  ["inspect", /--json[\s\S]*--full/],
  ["verify", /--exact/],
  ["dequantize", /--outdir DIR[\s\S]*--max-shard-size/],
];

for (const [cmd, options] of COMMANDS) {
  test(`ggufy ${cmd} --help / -h: that command's usage and options on stdout, exit 0`, async () => {
    for (const argv of [[cmd, "--help"], [cmd, "-h"], [cmd, "some/dir", "--outtype", "q8_0", "--help"], ["help", cmd]]) {
      const r = await cli(argv);
      assert.equal(r.code, 0, `${argv.join(" ")}: exit code (stderr: ${r.stderr})`);
      assert.equal(r.stderr, "", argv.join(" "));
      assert.match(r.stdout, new RegExp(`^usage: ggufy ${cmd} `), argv.join(" "));
      assert.match(r.stdout, options, argv.join(" "));
      // only that command: the other commands' usage lines are not in it
      for (const [other] of COMMANDS) if (other !== cmd) assert.doesNotMatch(r.stdout, new RegExp(`usage: ggufy ${other} `), argv.join(" "));
    }
  });
}

test("a real unknown option is still refused (E_USAGE, exit 64); --help after `--` is not a help request", async () => {
  const r = await cli(["convert", "x", "--no-such-flag"]);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /E_USAGE.*no-such-flag/);
  const r2 = await cli(["inspect", "--", "--help"]);
  assert.notEqual(r2.code, 0);
  assert.equal(r2.stdout, "");
});

test("ggufy --version and -V print package.json's version", async () => {
  const want = (JSON.parse(await readFile(path.join(repoRoot(), "package.json"), "utf8")) as { version: string }).version;
  assert.match(want, /^\d+\.\d+\.\d+/);
  for (const flag of ["--version", "-V"]) {
    const r = await cli([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, want + "\n");
    assert.equal(r.stderr, "");
  }
});

// ---- MiniCPM-V: the projector beside --outfile ---------------------------------------------------------

test("MiniCPM-V --outfile out/x.gguf without --mmproj-outfile: the projector is out/mmproj-x-f16.gguf", async () => {
  const dir = path.join(tmp, "minicpmv");
  await writeTinyMinicpmv(dir);
  const out = path.join(tmp, "out");
  await mkdir(out);
  const paths = async (extra: string[]): Promise<string[]> => {
    const r = await cli(["convert", dir, "--outtype", "f16", "--dry-run", "--json", ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { files: { path: string; role: string }[] }).files.map((f) => `${f.role}:${f.path}`);
  };
  assert.deepEqual(await paths(["--outfile", path.join(out, "x.gguf")]), [`model:${path.join(out, "x.gguf")}`, `mmproj:${path.join(out, "mmproj-x-f16.gguf")}`]);
  // a {ftype} template: the mmproj takes its own type in the same place
  assert.deepEqual(await paths(["--outfile", path.join(out, "x-{ftype}.gguf"), "--mmproj-type", "q8_0"]), [`model:${path.join(out, "x-f16.gguf")}`, `mmproj:${path.join(out, "mmproj-x-q8_0.gguf")}`]);
  // the language model's type at the end of its name is not repeated in the projector's
  assert.deepEqual(await paths(["--outfile", path.join(out, "x-F16.gguf")]), [`model:${path.join(out, "x-F16.gguf")}`, `mmproj:${path.join(out, "mmproj-x-f16.gguf")}`]);
  assert.deepEqual(await paths(["--outfile", path.join(out, "my-model.gguf")]), [`model:${path.join(out, "my-model.gguf")}`, `mmproj:${path.join(out, "mmproj-my-model-f16.gguf")}`]);
  // an existing folder: both default names inside it
  const inOut = await paths(["--outfile", out]);
  assert.equal(path.dirname(inOut[0]!.slice(6)), out);
  assert.equal(path.dirname(inOut[1]!.slice(7)), out);
  assert.match(path.basename(inOut[1]!), /^mmproj-[^.]+-f16\.gguf$/);
  // an explicit --mmproj-outfile still wins
  assert.deepEqual(await paths(["--outfile", path.join(out, "x.gguf"), "--mmproj-outfile", path.join(tmp, "vision.gguf")]), [`model:${path.join(out, "x.gguf")}`, `mmproj:${path.join(tmp, "vision.gguf")}`]);
  // no --outfile: unchanged, both in the model folder, the projector named after the model's base name
  const def = await paths([]);
  assert.equal(path.dirname(def[0]!.slice(6)), dir);
  assert.match(def[1]!, new RegExp(`^mmproj:${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/mmproj-[^/]+-f16\\.gguf$`));
  assert.doesNotMatch(def[1]!, /\.gguf-f16/);

  // and the real conversion writes exactly those two files, the projector a CLIP GGUF
  const r = await cli(["convert", dir, "--outtype", "f16", "--outfile", path.join(out, "x.gguf"), "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await readdir(out)).sort(), ["mmproj-x-f16.gguf", "x.gguf"]);
  const { metadata } = await gguf(path.join(out, "mmproj-x-f16.gguf"), { allowLocalFile: true });
  assert.equal(metadata["general.architecture"], "clip");
  assert.equal((await gguf(path.join(out, "x.gguf"), { allowLocalFile: true })).metadata["general.architecture"], "qwen2");
});

// ---- tokenizer warnings ----------------------------------------------------------------------------------

/** stories260K with tokenizer files that make the SentencePiece conversion warn (and still succeed). */
async function warningModel(): Promise<string> {
  const dir = path.join(tmp, "stories-warn");
  await cp(STORIES260K_HF_DIR(), dir, { recursive: true });
  // an added token past the 512-row embedding: dropped, as the converter drops it
  await writeFile(path.join(dir, "added_tokens.json"), JSON.stringify({ "<extra_9999>": 9999 }));
  const tc = JSON.parse(await readFile(path.join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  // a special token whose id is beyond the vocabulary, and one whose text (with a newline) replaces piece 300
  tc["added_tokens_decoder"] = { "7777": { content: "<beyond>", special: true }, "300": { content: "two\nlines", special: true } };
  await writeFile(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  return dir;
}

/** The facts each warning must carry, whatever its wording: the id, and (for the replacement) the text. */
const WARNING_FACTS = [/9999/, /7777/, /\b300\b/];

function checkWarningLines(stderr: string): string[] {
  const lines = stderr.split("\n").filter((l) => l !== "");
  const warnings = lines.filter((l) => l.startsWith("ggufy: warning: "));
  for (const f of WARNING_FACTS) assert.equal(warnings.filter((l) => f.test(l)).length, 1, `one warning line about ${f}: ${JSON.stringify(lines)}`);
  // the newline inside the token text is escaped: no stray line without the prefix
  assert.deepEqual(lines.filter((l) => !l.startsWith("ggufy: warning: ")), [], "every stderr line is a warning line");
  assert.ok(warnings.some((l) => l.includes("two\\nlines")), "the newline shows escaped");
  return warnings;
}

test("tokenizer warnings: convert prints them on stderr (not a terminal), one line each; --json carries them", async () => {
  const dir = await warningModel();
  const outfile = path.join(tmp, "warn.gguf");
  const r = await cli(["convert", dir, "--outtype", "f32", "--outfile", outfile]);
  assert.equal(r.code, 0, r.stderr);
  const lines = checkWarningLines(r.stderr);
  assert.match(r.stdout, /^wrote /);

  const dry = await cli(["convert", dir, "--outtype", "f32", "--outfile", outfile, "--force", "--dry-run", "--json"]);
  assert.equal(dry.code, 0, dry.stderr);
  checkWarningLines(dry.stderr);
  const dj = JSON.parse(dry.stdout) as { warnings: string[]; files: unknown[] };
  assert.equal(dj.files.length, 1);
  assert.deepEqual(dj.warnings.map((w) => "ggufy: warning: " + w.replaceAll("\n", "\\n")), lines);

  const real = await cli(["convert", dir, "--outtype", "f32", "--outfile", outfile, "--force", "--json"]);
  assert.equal(real.code, 0, real.stderr);
  checkWarningLines(real.stderr);
  const rj = JSON.parse(real.stdout) as { warnings: string[]; files: { path: string; tensors: number }[] };
  assert.deepEqual(rj.warnings, dj.warnings);
  assert.equal(rj.files[0]!.path, outfile);

  // the warnings describe what was written: piece 300 became the special token, nothing at 7777/9999
  const { metadata } = await gguf(outfile, { allowLocalFile: true });
  const tokens = (metadata as unknown as Record<string, unknown>)["tokenizer.ggml.tokens"] as string[];
  assert.equal(tokens.length, 512);
  assert.equal(tokens[300], "two\nlines");
});

test("tokenizer warnings in the library: plan().warnings, convert().warnings and onWarning", async () => {
  const dir = await warningModel();
  const seen: string[] = [];
  const p = await plan({ input: dir, outtype: "f32", onWarning: (m) => seen.push(m) });
  await p.close();
  assert.ok(p.warnings.length >= WARNING_FACTS.length, JSON.stringify(p.warnings));
  for (const f of WARNING_FACTS) assert.equal(p.warnings.filter((w) => f.test(w)).length, 1, String(f));
  assert.deepEqual(seen, p.warnings);
  const r = await convert({ input: dir, outtype: "f32", outfile: path.join(tmp, "warn-lib.gguf") });
  assert.deepEqual(r.warnings, p.warnings);
  // a clean model has none
  const clean = await plan({ input: STORIES260K_HF_DIR(), outtype: "f32" });
  await clean.close();
  assert.deepEqual(clean.warnings, []);
});

test("a trimmed vocabulary (tokenizer.model has more pieces than the embedding rows) is a warning on stderr and in --json", async () => {
  // stories260K cut to 500 embedding rows (config vocab_size 500); tokenizer.model keeps its 512 pieces
  const dir = path.join(tmp, "stories-500");
  await cp(STORIES260K_HF_DIR(), dir, { recursive: true });
  const st = await SafetensorsCheckpoint.open(dir);
  const tensors: StTensor[] = [];
  try {
    for (const [name, info] of st.tensors) {
      const data = await st.read(name);
      if (name === "model.embed_tokens.weight") tensors.push({ name, dtype: info.dtype, shape: [500, info.shape[1]!], data: data.slice(0, 500 * info.shape[1]! * 4) });
      else tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data });
    }
  } finally {
    await st.close();
  }
  assert.equal(tensors.find((t) => t.name === "model.embed_tokens.weight")!.dtype, "F32");
  await writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const config = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  await writeFile(path.join(dir, "config.json"), JSON.stringify({ ...config, vocab_size: 500 }));
  const outfile = path.join(tmp, "trimmed.gguf");
  const r = await cli(["convert", dir, "--outtype", "f32", "--outfile", outfile, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.match(lines[0]!, /^ggufy: warning: .*tokenizer\.model.*\b500\b/);
  const j = JSON.parse(r.stdout) as { warnings: string[] };
  assert.deepEqual(j.warnings.map((w) => `ggufy: warning: ${w}`), lines);
  const { metadata } = await gguf(outfile, { allowLocalFile: true });
  assert.equal(((metadata as unknown as Record<string, unknown>)["tokenizer.ggml.tokens"] as string[]).length, 500, "the vocabulary is cut to the embedding rows");
});

// ---- --tensor-type lower-casing ----------------------------------------------------------------------------

async function dryTypes(args: string[]): Promise<Map<string, string>> {
  const r = await cli(["convert", STORIES260K_HF_DIR(), "--dry-run", "--json", "--outfile", path.join(tmp, "tt.gguf"), ...args]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { files: { tensors: { name: string; type: string }[] }[] };
  return new Map(j.files[0]!.tensors.map((t) => [t.name, t.type]));
}

test("--tensor-type: the pattern is lower-cased as llama-quantize's CLI does; the type name is case-insensitive", async () => {
  const base = await dryTypes(["--outtype", "Q4_0", "--pure"]);
  assert.equal(base.get("blk.0.attn_v.weight"), "q4_0");
  const upper = await dryTypes(["--outtype", "Q4_0", "--pure", "--tensor-type", "ATTN_V=Q8_0"]);
  const lower = await dryTypes(["--outtype", "Q4_0", "--pure", "--tensor-type", "attn_v=q8_0"]);
  assert.deepEqual(upper, lower);
  for (const [n, ty] of upper) assert.equal(ty, /attn_v\.weight$/.test(n) ? "q8_0" : base.get(n), n);
  assert.equal([...upper.values()].filter((t) => t === "q8_0").length, 5, "the five layers' attn_v");
  // the whole name part is lower-cased, escapes too (std::transform over the text): \D becomes \d
  const esc = await dryTypes(["--outtype", "Q4_0", "--pure", "--tensor-type", "BLK\\.\\D\\.ATTN_K=q8_0"]);
  assert.deepEqual([...esc].filter(([, t]) => t === "q8_0").map(([n]) => n).sort(), [0, 1, 2, 3, 4].map((i) => `blk.${i}.attn_k.weight`));
  // the library takes the pattern as given (llama_model_quantize_params.tensor_types is not lower-cased)
  const p = await plan({ input: STORIES260K_HF_DIR(), outtype: "Q4_0", pure: true, tensorTypes: ["ATTN_V=q8_0"] });
  await p.close();
  const attnV = p.files[0]!.tensors.filter((t) => /attn_v/.test(t.out.name));
  assert.equal(attnV.length, 5);
  for (const t of attnV) assert.equal(typeName(t.type), "q4_0", t.out.name);
});
