/**
 * convert-lora on other bases and through the CLI: a bitsandbytes base gives the very file the plain base
 * gives (only names and logical shapes are read); MiniCPM-V: the LLM's targets become a `qwen2` LoRA, a
 * vision-tower target is refused by name; `ggufy convert-lora` writes, dry-runs and refuses in one line;
 * `ggufy inspect` on an adapter folder lists targets, ranks and alphas.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { scratchDir } from "../../fixtures/qwen2.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4 } from "../../fixtures/minicpmv.js";
import { writePeftAdapter } from "../../fixtures/peft.js";
import { convertLora } from "../../src/convert/lora/gguf.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { GgufyError } from "../../src/errors.js";
import { inspect } from "../../src/cli/inspect.js";
import { cli } from "../cli/helpers.js";

test("a bitsandbytes NF4 base gives the same LoRA GGUF as its plain base", async () => {
  const dir = await scratchDir("ggufy-lora-bnb-");
  try {
    const plain = path.join(dir, "plain");
    const bnb = path.join(dir, "bnb");
    const fam = await writeTinyFamily(plain, "llama3.1", { seed: 5 });
    await quantizeCheckpointToBnb(plain, bnb, { method: "nf4", doubleQuant: true });
    const ad = path.join(dir, "ad");
    await writePeftAdapter(ad, { base: new Map(fam.tensors.map((t) => [t.name, t.shape])), targetModules: "all-linear", r: 4 });
    const a = await convertLora({ adapter: ad, base: plain, outfile: path.join(dir, "a.gguf") });
    const b = await convertLora({ adapter: ad, base: bnb, outfile: path.join(dir, "b.gguf") });
    assert.ok(a.tensors >= 2 * 7 * 2, String(a.tensors));
    assert.deepEqual(await readFile(b.path), await readFile(a.path));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("MiniCPM-V (bf16 and int4 bases): LLM targets → a qwen2 LoRA GGUF; a vision-tower target refused by name", async () => {
  const dir = await scratchDir("ggufy-lora-mcpv-");
  try {
    const base = path.join(dir, "base");
    const int4 = path.join(dir, "int4");
    const tm = await writeTinyMinicpmv(base);
    await writeTinyMinicpmvInt4(base, int4);
    const shapes = new Map(Object.entries(tm.shapes));
    const ad = path.join(dir, "ad");
    await writePeftAdapter(ad, { base: shapes, targetModules: "llm\\..*\\.(q_proj|k_proj|v_proj|o_proj|down_proj)", r: 4 });
    const a = await convertLora({ adapter: ad, base, outfile: path.join(dir, "a.gguf") });
    const g = await readGguf(a.path);
    const arch = g.kvs.get("general.architecture")!;
    assert.equal(arch.value, "qwen2");
    assert.deepEqual(g.tensors.slice(0, 4).map((t) => t.name), ["blk.0.ffn_down.weight.lora_a", "blk.0.ffn_down.weight.lora_b", "blk.0.attn_k.weight.lora_a", "blk.0.attn_k.weight.lora_b"]);
    assert.equal(g.tensors.length, 2 * 2 * 5);
    const b = await convertLora({ adapter: ad, base: int4, outfile: path.join(dir, "b.gguf") });
    assert.deepEqual(await readFile(b.path), await readFile(a.path));

    const vis = path.join(dir, "ad-vision");
    await writePeftAdapter(vis, { base: shapes, targetModules: ["q_proj"], r: 4 });
    const e = await convertLora({ adapter: vis, base, outfile: path.join(dir, "c.gguf") }).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof GgufyError && e.code === "E_LORA", String(e));
    assert.match(e.message, /outside the language model \(llm\.\*\): llama\.cpp applies LoRA adapters to the language model only/);
    assert.match(e.tensor ?? "", /^base_model\.model\.vpm\.encoder\.layers\.0\.self_attn\.q_proj\.lora_A\.weight$/);
    assert.ok(!(await readdir(dir)).includes("c.gguf"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("ggufy convert-lora: writes, --dry-run --json, usage and refusals in one line; inspect lists the adapter", async () => {
  const dir = await scratchDir("ggufy-lora-cli-");
  try {
    const base = path.join(dir, "base");
    const fam = await writeTinyFamily(base, "llama3.1", { seed: 5 });
    const ad = path.join(dir, "ad");
    await writePeftAdapter(ad, { base: new Map(fam.tensors.map((t) => [t.name, t.shape])), targetModules: ["q_proj", "v_proj"], r: 8, loraAlpha: 16, rankPattern: { v_proj: 4 } });
    const out = path.join(dir, "x.gguf");
    let r = await cli(["convert-lora", ad, "--base", base, "--outtype", "f16", "--outfile", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*x\.gguf \(8 tensors, .*LoRA for llama, alpha 16\)\n$/);
    r = await cli(["convert-lora", ad, "--base", base, "--outfile", out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ggufy: error: E_OUTPUT_EXISTS: .*x\.gguf: output file already exists; pass --force/);
    r = await cli(["convert-lora", ad, "--base", base, "--dry-run", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { alpha: number; arch: string; files: { tensors: { name: string; type: string }[] }[]; targets: { tensor: string; rank: number; permuteHeads?: number }[] };
    assert.equal(j.arch, "llama");
    assert.equal(j.alpha, 16);
    assert.equal(j.files[0]!.tensors[0]!.name, "blk.0.attn_q.weight.lora_a");
    assert.equal(j.files[0]!.tensors[0]!.type, "f32");
    assert.deepEqual(j.targets.map((t) => [t.tensor, t.rank, t.permuteHeads ?? null]), [
      ["blk.0.attn_q.weight", 8, 4], ["blk.0.attn_v.weight", 4, null], ["blk.1.attn_q.weight", 8, 4], ["blk.1.attn_v.weight", 4, null],
    ]);
    assert.ok(!(await readdir(ad)).some((f) => f.endsWith(".gguf")), "a dry run writes nothing");
    r = await cli(["convert-lora", ad]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /E_USAGE: convert-lora needs --base/);
    r = await cli(["convert-lora", ad, "--base", base, "--outtype", "Q4_K_M"]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /a LoRA GGUF is f32, f16, bf16, q8_0 or auto/);
    r = await cli(["convert-lora", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: ggufy convert-lora [\s\S]*--base DIR/);
    // inspect: the adapter folder
    const info = await inspect(ad);
    assert.equal(info.kind, "lora-adapter");
    assert.equal(info.metadata["r"], 8);
    assert.deepEqual(info.lora!.targets.map((t) => [t.module, t.rank, t.alpha, t.scale]), [
      ["model.layers.0.self_attn.q_proj", 8, 16, 2], ["model.layers.0.self_attn.v_proj", 4, 16, 4],
      ["model.layers.1.self_attn.q_proj", 8, 16, 2], ["model.layers.1.self_attn.v_proj", 4, 16, 4],
    ]);
    r = await cli(["inspect", ad]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^lora-adapter: /);
    assert.match(r.stdout, /4 LoRA target\(s\):\n {2}model\.layers\.0\.self_attn\.q_proj {2}r 8 {2}alpha 16 {2}scale 2 {2}A \[8, 64\] {2}B \[64, 8\]/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
