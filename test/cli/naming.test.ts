/**
 * Default output names by the GGUF naming convention (<BaseName>-<SizeLabel>-<FineTune>-<Version>-<Encoding>.gguf)
 * and the naming helpers, against values llama.cpp's gguf-py (v0.4.0, the build node-llama-cpp 3.21.1 bundles)
 * computes for the same inputs: model_weight_count_rounded_notation, Metadata.get_model_id_components,
 * Metadata.id_to_title, naming_convention, fill_templated_filename.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { plan, type ConvertOptions } from "../../src/index.js";
import { conventionalName, fillTemplatedFilename, idToTitle, modelIdComponents, pyFixed, sizeLabel, weightCountNotation } from "../../src/convert/naming.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { cli } from "./helpers.js";

test("weightCountNotation: gguf-py's rounding (2 significant digits, half to even)", () => {
  const cases: [number, string][] = [
    [7_615_616_512, "7.6B"], [494_032_768, "494M"], [1_543_714_304, "1.5B"], [260_000, "260K"], [999, "1.0K"], [500, "0.50K"],
    [12_500_000_000, "12B"], // Python rounds the tie 12.5 to even; toFixed would say 13
    [2_250_000_000, "2.2B"], [79_000_000, "79M"], [1e12, "1.0T"], [0, "0.00K"], [125_000, "125K"], [9_950_000_000, "10B"], [99_500_000, "100M"],
  ];
  for (const [n, want] of cases) assert.equal(weightCountNotation(n), want, String(n));
  assert.equal(sizeLabel(46_702_792_704, 1_000_000_000, 5_600_000_000, 8), "8x6.6B");
  assert.equal(pyFixed(2.5, 0), "2");
  assert.equal(pyFixed(3.5, 0), "4");
  assert.equal(pyFixed(0.125, 2), "0.12");
  assert.equal(pyFixed(2.675, 2), "2.67"); // not a tie: the double is below 2.675
});

test("idToTitle: title-cases lower-case words, keeps acronyms, versions and numbers", () => {
  assert.equal(idToTitle("my-model_dir"), "My Model_Dir");
  assert.equal(idToTitle("qwen2.5-coder-7b"), "Qwen2.5 Coder 7b");
  assert.equal(idToTitle("v1.2 abc"), "v1.2 Abc");
  assert.equal(idToTitle("they're"), "They'Re");
  assert.equal(idToTitle("MiniCPM-V-2_6"), "MiniCPM V 2_6");
});

test("modelIdComponents: base name, size label, fine-tune, version like gguf-py", () => {
  const P = 8_000_000_000;
  const cases: [string, Record<string, string>][] = [
    ["Qwen/Qwen2.5-7B-Instruct", { fullName: "Qwen2.5-7B-Instruct", organization: "Qwen", basename: "Qwen2.5", finetune: "Instruct", sizeLabel: "7B" }],
    ["meta-llama/Llama-2-7b-chat-hf", { fullName: "Llama-2-7b-chat-hf", organization: "meta-llama", basename: "Llama-2", finetune: "chat-hf", sizeLabel: "7B" }],
    ["bigscience/bloom-7b1", { fullName: "bloom-7b1", organization: "bigscience", basename: "bloom", sizeLabel: "7.1B" }],
    ["mistralai/Mixtral-8x7B-Instruct-v0.1", { fullName: "Mixtral-8x7B-Instruct-v0.1", organization: "mistralai", basename: "Mixtral", finetune: "Instruct", version: "v0.1", sizeLabel: "8x7B" }],
    ["MiniCPM-V-2_6", { fullName: "MiniCPM-V-2_6", basename: "MiniCPM-V", finetune: "2_6" }],
    ["tiny-qwen2", { fullName: "tiny-qwen2" }],
    ["Tiny-Qwen2-80M-Instruct-v1.2", { fullName: "Tiny-Qwen2-80M-Instruct-v1.2", basename: "Tiny-Qwen2", finetune: "80m-Instruct", version: "v1.2" }],
    ["Llama-3-8B-Instruct-262k", { fullName: "Llama-3-8B-Instruct-262k", basename: "Llama-3", finetune: "Instruct-262k", sizeLabel: "8B" }],
    ["./model", { fullName: "model" }],
    ["Phi-3-mini-4k-instruct", { fullName: "Phi-3-mini-4k-instruct", basename: "Phi-3", finetune: "4k-instruct", sizeLabel: "mini" }],
    ["Qwen2.5-Coder-1.5B-Q4_K_M", { fullName: "Qwen2.5-Coder-1.5B-Q4_K_M", basename: "Qwen2.5-Coder", sizeLabel: "1.5B" }],
    ["Just a sentence", { fullName: "Just a sentence" }],
  ];
  for (const [id, want] of cases) assert.deepEqual({ ...modelIdComponents(id, P) }, want, id);
  // the same "80M" is a size label when the model really has about 80M parameters
  assert.equal(modelIdComponents("Tiny-Qwen2-80M-Instruct-v1.2", 79_000_000).sizeLabel, "80M");
});

test("conventionalName and templated file names", () => {
  assert.equal(conventionalName({ name: "Tiny Qwen2", sizeLabel: "79M", encoding: "Q4_K_M" }), "Tiny-Qwen2-79M-Q4_K_M");
  assert.equal(conventionalName({ name: "x", baseName: "Mixtral", sizeLabel: "8x7B", fineTune: "Instruct", version: "v0.1", encoding: "q8_0" }), "Mixtral-8x7B-Instruct-v0.1-Q8_0");
  assert.equal(conventionalName({ name: "org/Model Name", kind: "vocab" }), "org-Model-Name-vocab");
  assert.equal(conventionalName({}), "ggml-model");
  assert.equal(fillTemplatedFilename("m-{ftype}.gguf", "Q4_K_M"), "m-q4_k_m.gguf");
  assert.equal(fillTemplatedFilename("m-{FTYPE}-{outtype}-{}.gguf", "bf16"), "m-BF16-bf16-bf16.gguf");
});

// ---- default names of generated models ------------------------------------------------------------

let tmp = "";
let cur = "";
before(async () => {
  tmp = await scratchDir("ggufy-naming-");
  cur = path.join(tmp, "tiny-qwen2");
  // 9,761,088 parameters: size label "10M"
  await writeTinyQwen2(cur, { layers: 1, hidden: 64, heads: 2, kvHeads: 1, ffn: 128, dtype: "BF16", tied: true, seed: 5 });
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Move the model to a folder with this name and plan it. */
async function planAs(folder: string, opts: Omit<ConvertOptions, "input"> = {}): Promise<{ file: string; kv: Map<string, unknown>; paths: string[] }> {
  const dir = path.join(tmp, folder);
  if (dir !== cur) {
    await rename(cur, dir);
    cur = dir;
  }
  const p = await plan({ input: dir, ...opts });
  try {
    const f = p.files[0]!;
    return { file: path.relative(dir, f.path), kv: new Map(f.kvs.map((k) => [k.key, k.value.value])), paths: p.files.map((x) => path.relative(dir, x.path)) };
  } finally {
    await p.close();
  }
}

test("a plain folder name: <Name>-<SizeLabel>-<ENCODING>.gguf, general.name from the folder", async () => {
  const r = await planAs("tiny-qwen2", { outtype: "q8_0" });
  assert.equal(r.file, "Tiny-Qwen2-10M-Q8_0.gguf");
  assert.equal(r.kv.get("general.name"), "Tiny Qwen2");
  assert.equal(r.kv.get("general.size_label"), "10M");
  assert.equal(r.kv.has("general.basename"), false);
  assert.equal((await planAs("tiny-qwen2", { outtype: "auto" })).file, "Tiny-Qwen2-10M-BF16.gguf");
  assert.equal((await planAs("tiny-qwen2", { outtype: "Q4_K_M" })).file, "Tiny-Qwen2-10M-Q4_K_M.gguf");
  assert.equal((await planAs("tiny-qwen2", { outtype: "f16", modelName: "My Model" })).file, "My-Model-10M-F16.gguf");
});

test("a Hugging Face style folder name: base name, size label, fine-tune and version in their places", async () => {
  const r = await planAs("Tiny-Qwen2-10M-Instruct-v1.2", { outtype: "Q5_K_M" });
  assert.equal(r.file, "Tiny-Qwen2-10M-Instruct-v1.2-Q5_K_M.gguf");
  assert.equal(r.kv.get("general.name"), "Tiny Qwen2 10M Instruct v1.2");
  assert.equal(r.kv.get("general.basename"), "Tiny-Qwen2");
  assert.equal(r.kv.get("general.finetune"), "Instruct");
  assert.equal(r.kv.get("general.version"), "v1.2");
  assert.equal(r.kv.get("general.size_label"), "10M");
  // --model-name changes general.name, not the base name the file is named after
  assert.equal((await planAs("Tiny-Qwen2-10M-Instruct-v1.2", { outtype: "q8_0", modelName: "Other" })).file, "Tiny-Qwen2-10M-Instruct-v1.2-Q8_0.gguf");
});

test("the model card's basename/finetune/version and --metadata override the folder's", async () => {
  const dir = path.join(tmp, "tiny-qwen2");
  await planAs("tiny-qwen2");
  await writeFile(path.join(dir, "README.md"), "---\nbasename: Small\nfinetune: Chat\nlicense: mit\n---\n# card\n");
  try {
    assert.equal((await planAs("tiny-qwen2", { outtype: "q8_0" })).file, "Small-10M-Chat-Q8_0.gguf");
    const meta = path.join(tmp, "meta.json");
    await writeFile(meta, JSON.stringify({ "general.version": "v3", "general.size_label": "0.01B", "general.finetune": null }));
    const r = await planAs("tiny-qwen2", { outtype: "q8_0", metadata: meta });
    assert.equal(r.file, "Small-0.01B-v3-Q8_0.gguf");
    assert.equal(r.kv.get("general.license"), "mit");
  } finally {
    await rm(path.join(dir, "README.md"));
  }
});

test("--vocab-only: <Name>-vocab.gguf; {ftype} templates and an --outfile folder", async () => {
  assert.equal((await planAs("tiny-qwen2", { vocabOnly: true })).file, "Tiny-Qwen2-vocab.gguf");
  assert.equal((await planAs("tiny-qwen2", { outtype: "auto", outfile: path.join(tmp, "out-{ftype}.gguf") })).file, path.join("..", "out-bf16.gguf"));
  assert.equal((await planAs("tiny-qwen2", { outtype: "Q4_K_M", outfile: path.join(tmp, "out-{FTYPE}.gguf") })).file, path.join("..", "out-Q4_K_M.gguf"));
  const outDir = path.join(tmp, "outdir");
  await mkdir(outDir, { recursive: true });
  assert.equal((await planAs("tiny-qwen2", { outtype: "q8_0", outfile: outDir })).file, path.join("..", "outdir", "Tiny-Qwen2-10M-Q8_0.gguf"));
});

test("split outputs: <stem>-0000k-of-0000N.gguf", async () => {
  const r = await planAs("tiny-qwen2", { outtype: "q8_0", splitMaxTensors: 5 });
  assert.deepEqual(r.paths, ["Tiny-Qwen2-10M-Q8_0-00001-of-00003.gguf", "Tiny-Qwen2-10M-Q8_0-00002-of-00003.gguf", "Tiny-Qwen2-10M-Q8_0-00003-of-00003.gguf"]);
});

test("CLI dry run prints the conventional name", async () => {
  const r = await cli(["convert", cur, "--outtype", "Q8_0", "--dry-run"]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith(`model: ${path.join(cur, "Tiny-Qwen2-10M-Q8_0.gguf")}  (Q8_0, `), r.stdout.split("\n")[0]);
  assert.match(r.stdout, /^ {2}name "Tiny Qwen2", size label 10M$/m);
});
