/**
 * LoRA adapters and bases given as model references: `convert hf:… --lora hf:…` and
 * `convert-lora hf:<adapter> --base hf:<base>` against the local stand-in Hub write the same bytes as
 * the local folders; the adapter lands in the Hub cache layout, and no output is written inside the cache.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { cli } from "../cli/helpers.js";
import { writePeftAdapter, baseShapesOf } from "../../fixtures/peft.js";
import { dirs, hub, sameBytes, setupHub, teardownHub, tmp } from "./setup.js";

let adapterDir = "";

before(async () => {
  await setupHub(["model"], { small: true });
  adapterDir = path.join(tmp, "adapter", "adapter");
  await writePeftAdapter(adapterDir, { base: await baseShapesOf(dirs["model"]!), r: 4, loraAlpha: 8, bStd: 0.05, seed: 5 });
  await hub.addRepo("test/adapter", adapterDir);
});
after(teardownHub);

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

test("convert hf:base --lora hf:adapter equals the local merge, byte for byte", async () => {
  const local = path.join(tmp, "merge-local.gguf");
  const remote = path.join(tmp, "merge-hub.gguf");
  const a = await cli(["convert", dirs["model"]!, "--lora", adapterDir, "--outtype", "f32", "--outfile", local, "--quiet"]);
  assert.equal(a.code, 0, a.stderr);
  const b = await cli(["convert", "hf:test/model", "--lora", "hf:test/adapter", "--outtype", "f32", "--outfile", remote, "--quiet"]);
  assert.equal(b.code, 0, b.stderr);
  await sameBytes(local, remote);
  // the adapter was placed in the cache layout; nothing but the cache's own files is in it
  const cached = await walk(path.join(tmp, "cache", "models--test--adapter"));
  assert.ok(cached.some((f) => f.endsWith("adapter_model.safetensors")), "the adapter is in the Hub cache");
  assert.ok(!cached.some((f) => f.endsWith(".gguf")), "no output inside the cache");
});

test("convert-lora hf:adapter --base hf:base equals the local LoRA GGUF", async () => {
  const local = path.join(tmp, "lora-local.gguf");
  const remote = path.join(tmp, "lora-hub.gguf");
  const a = await cli(["convert-lora", adapterDir, "--base", dirs["model"]!, "--outfile", local, "--quiet"]);
  assert.equal(a.code, 0, a.stderr);
  const b = await cli(["convert-lora", "hf:test/adapter", "--base", "hf:test/model", "--outfile", remote, "--quiet"]);
  assert.equal(b.code, 0, b.stderr);
  await sameBytes(local, remote);
});
