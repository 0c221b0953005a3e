/**
 * Shared set-up of the hub tests: the stand-in Hub (server.ts) on two local ports, HF_ENDPOINT pointed at
 * it, a private HF_HUB_CACHE, the tiny checkpoints (each in a folder named like its repository, since the
 * metadata's fallback name is the folder name) and their local conversions, the reference outputs.
 */
import assert from "node:assert/strict";
import { cp, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { testData } from "../../fixtures/paths.js";
import path from "node:path";
import { scratchDir, writeTinyQwen2 } from "../../fixtures/qwen2.js";
import { quantizeCheckpointToBnb } from "../../fixtures/bnb.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4 } from "../../fixtures/minicpmv.js";
import { cli } from "../cli/helpers.js";
import { FakeHub } from "./server.js";

export let tmp: string;
export const hub = new FakeHub();
export const dirs: Record<string, string> = {};
const saved: Record<string, string | undefined> = {};

export function setEnv(k: string, v: string | undefined): void {
  if (!(k in saved)) saved[k] = process.env[k];
  if (v === undefined) delete process.env[k];
  else process.env[k] = v;
}

export async function sameBytes(a: string, b: string): Promise<void> {
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  assert.equal(y.length, x.length, `${b}: ${y.length} bytes, local ${x.length}`);
  assert.ok(x.equals(y), `${b} differs from the local conversion ${a}`);
}

export async function safetensorsBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) if (f.endsWith(".safetensors")) n += (await stat(path.join(dir, f))).size;
  return n;
}

/** bytes of the repository's small (non-LFS) files, all fetched whole */
export function smallBytes(repo: string): number {
  return [...hub.repos.get(repo)!.files.values()].filter((f) => !f.lfs).reduce((a, f) => a + f.bytes.length, 0);
}

/** `ggufy convert` in-process */
export async function convertHub(ref: string, out: string, extra: string[] = []): Promise<{ code: number; stderr: string }> {
  const r = await cli(["convert", ref, "--outfile", out, "--threads", "2", "--quiet", ...extra]);
  return { code: r.code, stderr: r.stderr };
}

type Name = "model" | "bnb" | "MiniCPM-V-2_6-int4";

/**
 * `model`: the tiny bf16 Qwen2 (fixtures/qwen2.ts, ~20 MB, the real 151k-token tokenizer); with
 * `small`, the real stories260K Llama instead (test/data/tinyllamas-stories260K/derived-hf-llama, 1 MB
 * f32, 512 tokens: converts in well under a second, for the tests that convert many times).
 */
export async function setupHub(which: readonly Name[], o: { small?: boolean } = {}): Promise<void> {
  tmp = await scratchDir("ggufy-hub-");
  await hub.start();
  setEnv("HF_ENDPOINT", hub.url);
  setEnv("HF_HUB_CACHE", path.join(tmp, "cache"));
  setEnv("HF_TOKEN", undefined);
  setEnv("HUGGING_FACE_HUB_TOKEN", undefined);
  setEnv("GGUFY_HUB_RETRY_MS", "20");
  if (which.includes("model") && o.small) {
    dirs["model"] = path.join(tmp, "stories", "model");
    await cp(testData("tinyllamas-stories260K", "derived-hf-llama"), dirs["model"], { recursive: true });
  } else if (which.includes("model")) {
    dirs["model"] = path.join(tmp, "qwen", "model");
    await mkdir(dirs["model"], { recursive: true });
    await writeTinyQwen2(dirs["model"], { dtype: "BF16", hidden: 64, heads: 4, kvHeads: 2, ffn: 128, tied: true });
  }
  if (which.includes("bnb")) {
    const src = path.join(tmp, "bnb-src");
    await mkdir(src);
    await writeTinyQwen2(src, { dtype: "BF16", hidden: 64, heads: 4, kvHeads: 2, ffn: 128, shards: 2, seed: 3 });
    dirs["bnb"] = path.join(tmp, "bnb", "bnb");
    await mkdir(dirs["bnb"], { recursive: true });
    await quantizeCheckpointToBnb(src, dirs["bnb"], { method: "nf4", doubleQuant: true, torchDtype: "bfloat16" });
    await rm(src, { recursive: true });
  }
  if (which.includes("MiniCPM-V-2_6-int4")) {
    const msrc = path.join(tmp, "mcv-src");
    await mkdir(msrc);
    await writeTinyMinicpmv(msrc);
    dirs["MiniCPM-V-2_6-int4"] = path.join(tmp, "mcv", "MiniCPM-V-2_6-int4");
    await mkdir(dirs["MiniCPM-V-2_6-int4"], { recursive: true });
    await writeTinyMinicpmvInt4(msrc, dirs["MiniCPM-V-2_6-int4"]);
    await rm(msrc, { recursive: true });
  }
  for (const name of which) await hub.addRepo(`test/${name}`, dirs[name]!);
  // the reference outputs: the same folders converted locally
  for (const name of which.filter((n) => n !== "MiniCPM-V-2_6-int4")) {
    const r = await convertHub(dirs[name]!, path.join(tmp, `${name}-local.gguf`));
    assert.equal(r.code, 0, r.stderr);
  }
  if (which.includes("MiniCPM-V-2_6-int4")) {
    const r = await convertHub(dirs["MiniCPM-V-2_6-int4"]!, path.join(tmp, "mcv-local.gguf"), ["--mmproj-outfile", path.join(tmp, "mcv-mmproj-local.gguf")]);
    assert.equal(r.code, 0, r.stderr);
  }
}

export async function teardownHub(): Promise<void> {
  await hub.stop();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await rm(tmp, { recursive: true, force: true });
}
