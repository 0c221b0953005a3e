/**
 * general.* metadata like llama.cpp's converter (gguf-py Metadata.load + set_gguf_meta_model), --metadata and
 * --override-kv, read back from converted files. Expected values for the model card below were computed with
 * gguf-py v0.4.0's Metadata.load on the same folder.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { loadMetadata, metadataKvs, parseKvOverride, resolveKvOverride, GgufyError, convert } from "../../src/index.js";
import { modelCardFrontMatter } from "../../src/convert/metadata.js";
import { GGUFValueType as T, kv } from "../../src/formats/gguf/types.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { cli, readKvs } from "./helpers.js";

const CARD = `---
license: apache-2.0
license_link: https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/LICENSE
language:
- en
- no
- zh
pipeline_tag: text-generation
base_model: Qwen/Qwen2.5-0.5B
tags:
  - chat
  - "tiny"   # a comment
datasets: [HuggingFaceH4/ultrachat_200k, "https://huggingface.co/datasets/foo/bar"]
model-index:
- name: tiny
  results:
  - task:
      type: text-generation
    metrics:
    - type: acc
      value: 0.5
description: |
  A tiny model.
  Second line.
author: Someone
inference: false
---

# Tiny
body
`;

test("model card front matter: the YAML subset model cards use", () => {
  assert.deepEqual(modelCardFrontMatter(CARD), {
    license: "apache-2.0",
    license_link: "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/LICENSE",
    language: ["en", "no", "zh"], // gguf-py's "Norway problem" fix keeps `- no` a string
    pipeline_tag: "text-generation",
    base_model: "Qwen/Qwen2.5-0.5B",
    tags: ["chat", "tiny"],
    datasets: ["HuggingFaceH4/ultrachat_200k", "https://huggingface.co/datasets/foo/bar"],
    "model-index": [{ name: "tiny", results: [{ task: { type: "text-generation" }, metrics: [{ type: "acc", value: "0.5" }] }] }],
    description: "A tiny model.\nSecond line.\n",
    author: "Someone",
    inference: false,
  });
  assert.deepEqual(modelCardFrontMatter("# no front matter\n---\nlicense: mit\n---\n"), {});
  assert.deepEqual(modelCardFrontMatter("---\n- a list\n- is not a mapping\n---\n"), {});
  assert.deepEqual(modelCardFrontMatter("---\nlicense: [unterminated\n---\n"), {});
  assert.deepEqual(modelCardFrontMatter("---\nlicense: 'it''s'\nthumbnail: >-\n  folded\n  text\nk: {a: 1, b: [x, y]}\n---\n"), { license: "it's", thumbnail: "folded text\n", k: { a: "1", b: ["x", "y"] } });
  // hostile nesting is refused, not a stack overflow
  const deep = "---\n" + Array.from({ length: 500 }, (_, i) => " ".repeat(i) + "k:").join("\n") + "\n---\n";
  assert.deepEqual(modelCardFrontMatter(deep), {});
});

let tmp = "";
let dir = "";
before(async () => {
  tmp = await scratchDir("ggufy-metadata-");
  dir = path.join(tmp, "Tiny-Qwen2-10M-Instruct-v1.2");
  await writeTinyQwen2(dir, { layers: 1, hidden: 64, heads: 2, kvHeads: 1, ffn: 128, dtype: "BF16", tied: true, seed: 9 });
  await writeFile(path.join(dir, "README.md"), CARD);
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

test("loadMetadata: model card, folder name and generation_config.json, as gguf-py", async () => {
  const md = await loadMetadata({ dir, config: { _name_or_path: "/some/local/path" }, totalParams: 9_761_088 });
  assert.deepEqual(md, {
    author: "Someone",
    description: "A tiny model.\nSecond line.\n",
    baseModels: [{ name: "Qwen2.5 0.5B", organization: "Qwen", repo_url: "https://huggingface.co/Qwen/Qwen2.5-0.5B" }],
    datasets: [{ name: "Ultrachat_200K", organization: "HuggingFaceH4", repo_url: "https://huggingface.co/HuggingFaceH4/ultrachat_200k" }, { repo_url: "https://huggingface.co/datasets/foo/bar" }],
    license: "apache-2.0",
    licenseLink: "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/LICENSE",
    tags: ["chat", "tiny", "text-generation"],
    languages: ["en", "no", "zh"],
    name: "Tiny Qwen2 10M Instruct v1.2",
    basename: "Tiny-Qwen2",
    finetune: "Instruct",
    version: "v1.2",
    sizeLabel: "10M",
    // the fixture's generation_config.json (Qwen2.5-0.5B-Instruct's): repetition_penalty becomes penalty_repeat
    sampling: { top_k: 20, top_p: 0.8, temp: 0.7, penalty_repeat: 1.1 },
  });
  const kvs = metadataKvs(md);
  assert.deepEqual(kvs.map((k) => k.key), [
    "general.sampling.top_k", "general.sampling.top_p", "general.sampling.temp", "general.sampling.penalty_repeat",
    "general.name", "general.author", "general.version", "general.finetune", "general.basename", "general.description", "general.size_label",
    "general.license", "general.license.link",
    "general.base_model.count", "general.base_model.0.name", "general.base_model.0.organization", "general.base_model.0.repo_url",
    "general.dataset.count", "general.dataset.0.name", "general.dataset.0.organization", "general.dataset.0.repo_url", "general.dataset.1.repo_url",
    "general.tags", "general.languages",
  ]);
  assert.equal(kvs[0]!.value.type, T.INT32);
  assert.equal(kvs[1]!.value.type, T.FLOAT32);
  assert.equal(kvs.find((k) => k.key === "general.base_model.count")!.value.type, T.UINT32);
});

test("loadMetadata: --metadata overrides (null clears), --model-name wins", async () => {
  const o = { "general.version": "v9", "general.tags": ["a", "b"], "general.sampling.top_k": 40, "general.quantized_by": "ggufy tests", "general.base_models": [{ name: "X", organization: "Y" }], "general.finetune": null };
  const md = await loadMetadata({ dir, totalParams: 9_761_088, metadata: o, modelName: "Given" });
  assert.equal(md.version, "v9");
  assert.deepEqual(md.tags, ["a", "b"]);
  assert.equal(md.sampling?.top_k, 40);
  assert.equal(md.quantizedBy, "ggufy tests");
  assert.deepEqual(md.baseModels, [{ name: "X", organization: "Y" }]);
  assert.equal(md.finetune, undefined);
  assert.equal(md.name, "Given");
  await assert.rejects(loadMetadata({ dir, totalParams: 1, metadata: { "general.tags": 5 } }), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE");
  await assert.rejects(loadMetadata({ dir, totalParams: 1, metadata: path.join(tmp, "missing.json") }), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE");
});

test("--override-kv: llama.cpp's KEY=TYPE:VALUE syntax and the written types", () => {
  assert.deepEqual(parseKvOverride("a.b=int:-5"), { key: "a.b", type: "int", value: -5n });
  assert.deepEqual(parseKvOverride("a.b=float:0.25"), { key: "a.b", type: "float", value: 0.25 });
  assert.deepEqual(parseKvOverride("a.b=bool:true"), { key: "a.b", type: "bool", value: true });
  assert.deepEqual(parseKvOverride("a.b=str:x=y:z"), { key: "a.b", type: "str", value: "x=y:z" });
  for (const bad of ["noequals", "=int:1", "k=int:1.5", "k=bool:yes", "k=float:abc", "k=text:x", "k=int", `${"k".repeat(128)}=int:1`]) {
    assert.throws(() => parseKvOverride(bad), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE", bad);
  }
  // new keys: llama-quantize's types (int → UINT32, negative → INT64)
  assert.equal(resolveKvOverride(parseKvOverride("n=int:7")).value.type, T.UINT32);
  assert.equal(resolveKvOverride(parseKvOverride("n=int:-7")).value.type, T.INT64);
  assert.equal(resolveKvOverride(parseKvOverride("n=float:1")).value.type, T.FLOAT32);
  // existing keys keep their type (the loader checks types exactly)
  assert.deepEqual(resolveKvOverride(parseKvOverride("s=int:-3"), kv.i32("s", 1)).value, { type: T.INT32, value: -3 });
  assert.deepEqual(resolveKvOverride(parseKvOverride("f=int:3"), kv.f32("f", 1)).value, { type: T.FLOAT32, value: 3 });
  assert.throws(() => resolveKvOverride(parseKvOverride("u=int:-1"), kv.u32("u", 1)), /does not fit UINT32/);
  assert.throws(() => resolveKvOverride(parseKvOverride("u=str:x"), kv.u32("u", 1)), /integer/);
  assert.throws(() => resolveKvOverride(parseKvOverride("split.count=int:2")), /split/);
});

test("CLI: --metadata and --override-kv values are read back from the converted file", async () => {
  const meta = path.join(tmp, "meta.json");
  await writeFile(meta, JSON.stringify({ "general.author": "Override Author", "general.tags": ["x", "y"], "general.url": "https://example.com/m", "general.sampling.temp": 0.25 }));
  const out = path.join(tmp, "meta-{ftype}.gguf");
  const r = await cli([
    "convert", dir, "--outtype", "q8_0", "--outfile", out, "--quiet", "--threads", "1",
    "--metadata", meta,
    "--override-kv", "qwen2.context_length=int:4096",
    "--override-kv", "general.name=str:Renamed Model",
    "--override-kv", "test.count=int:12",
    "--override-kv", "test.offset=int:-12",
    "--override-kv", "test.scale=float:0.5",
    "--override-kv", "test.flag=bool:false",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const g = await readKvs(path.join(tmp, "meta-q8_0.gguf"));
  const get = (k: string): { type: T; value: unknown } => {
    const v = g.kv.get(k);
    assert.ok(v, `missing ${k}`);
    return v;
  };
  assert.deepEqual(get("general.author"), { type: T.STRING, value: "Override Author" });
  assert.deepEqual(get("general.tags"), { type: T.ARRAY, itemType: T.STRING, value: ["x", "y"] });
  assert.deepEqual(get("general.url"), { type: T.STRING, value: "https://example.com/m" });
  assert.deepEqual(get("general.sampling.temp"), { type: T.FLOAT32, value: 0.25 });
  assert.deepEqual(get("general.sampling.top_k"), { type: T.INT32, value: 20 });
  assert.deepEqual(get("general.license"), { type: T.STRING, value: "apache-2.0" });
  assert.deepEqual(get("general.languages"), { type: T.ARRAY, itemType: T.STRING, value: ["en", "no", "zh"] });
  assert.deepEqual(get("general.base_model.0.repo_url"), { type: T.STRING, value: "https://huggingface.co/Qwen/Qwen2.5-0.5B" });
  assert.deepEqual(get("general.quantization_version"), { type: T.UINT32, value: 2 });
  assert.deepEqual(get("general.file_type"), { type: T.UINT32, value: 7 });
  assert.deepEqual(get("qwen2.context_length"), { type: T.UINT32, value: 4096 });
  assert.deepEqual(get("general.name"), { type: T.STRING, value: "Renamed Model" });
  assert.deepEqual(get("test.count"), { type: T.UINT32, value: 12 });
  assert.deepEqual(get("test.offset"), { type: T.INT64, value: -12n });
  assert.deepEqual(get("test.scale"), { type: T.FLOAT32, value: 0.5 });
  assert.deepEqual(get("test.flag"), { type: T.BOOL, value: false });
  // overridden keys stay where they were; new ones come last
  assert.equal(g.keys.indexOf("general.name"), g.keys.indexOf("general.sampling.penalty_repeat") + 1);
  assert.deepEqual(g.keys.slice(-4), ["test.count", "test.offset", "test.scale", "test.flag"]);
  assert.equal(g.keys[0], "general.architecture");
  assert.equal(g.keys[1], "general.type");
});

test("library: convert() takes the metadata object and typed overrides too", async () => {
  const outfile = path.join(tmp, "lib.gguf");
  await convert({ input: dir, outtype: "q8_0", outfile, threads: 1, metadata: { "general.organization": "Lib Org" }, overrides: [kv.str("general.description", "typed")], kvOverrides: [parseKvOverride("general.description=str:raw wins")] });
  const g = await readKvs(outfile);
  assert.equal(g.kv.get("general.organization")?.value, "Lib Org");
  assert.equal(g.kv.get("general.description")?.value, "raw wins");
});

test("CLI: bad --override-kv and --metadata are usage errors (exit 64)", async () => {
  for (const args of [["--override-kv", "x"], ["--override-kv", "qwen2.block_count=str:2"], ["--metadata", path.join(tmp, "nope.json")]]) {
    const r = await cli(["convert", dir, "--outtype", "q8_0", "--dry-run", ...args]);
    assert.equal(r.code, 64, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^ggufy: error: E_USAGE: /);
  }
});
