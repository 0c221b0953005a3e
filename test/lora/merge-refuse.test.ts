/**
 * Refusals in the merge path (`convert --lora`, `dequantize --lora`): DoRA, a rank that does not match the
 * stored factors, an adapter made for another architecture, a modules_to_save tensor of the wrong shape,
 * a target the conversion would not write. Each is one line (E_LORA) naming the tensor, exit code 2, and
 * nothing is left in the output folder.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { main } from "../../src/cli/main.js";
import { writeTinyFamily } from "../../fixtures/llama3.js";
import { writePeftAdapter, baseShapesOf } from "../../fixtures/peft.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { LoraMerge } from "../../src/index.js";
import { SourceCheckpoint } from "../../src/source/checkpoint.js";
import { captureIO } from "./merge-support.js";

const tmp = await scratchDir("ggufy-lora-refuse-");
after(() => rm(tmp, { recursive: true, force: true }));

const baseDir = path.join(tmp, "base");
await writeTinyFamily(baseDir, "llama3.1", { dtype: "BF16", seed: 163 });
const shapes = await baseShapesOf(baseDir);

async function refused(cmd: "convert" | "dequantize", adapterDir: string, re: RegExp): Promise<void> {
  const out = path.join(tmp, `out-${path.basename(adapterDir)}-${cmd}`);
  await mkdir(out, { recursive: true });
  const args = cmd === "convert" ? ["convert", baseDir, "--outtype", "q8_0", "--outfile", path.join(out, "x.gguf"), "--lora", adapterDir] : ["dequantize", baseDir, "--outdir", path.join(out, "hf"), "--lora", adapterDir];
  const c = captureIO();
  assert.equal(await main(args, c.io), 2, c.err());
  const lines = c.err().trimEnd().split("\n");
  assert.equal(lines.length, 1, c.err());
  assert.match(lines[0]!, /^ggufy: error: E_LORA: /);
  assert.match(lines[0]!, re);
  assert.deepEqual(await readdir(out), [], "nothing left behind");
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith(".")), [], "no temp folder beside it");
}

test("DoRA (use_dora, lora_magnitude_vector) is refused naming the tensor", async () => {
  const dir = path.join(tmp, "dora");
  await writePeftAdapter(dir, { base: shapes, useDora: true, seed: 4 });
  for (const cmd of ["convert", "dequantize"] as const) await refused(cmd, dir, /lora_magnitude_vector.*DoRA/);
});

test("a rank mismatch (adapter_config r ≠ the stored factors) is refused naming the tensor", async () => {
  const dir = path.join(tmp, "rank");
  await writePeftAdapter(dir, { base: shapes, r: 8, seed: 5 });
  const cfgFile = path.join(dir, "adapter_config.json");
  const cfg = JSON.parse(await readFile(cfgFile, "utf8")) as Record<string, unknown>;
  cfg["r"] = 4;
  await writeFile(cfgFile, JSON.stringify(cfg, null, 2));
  await refused("convert", dir, /tensor 'base_model\.model\.model\.layers\.\d\.self_attn\.\w_proj\.lora_[AB]\.weight'.*rank/);
});

test("an adapter for another architecture (MiniCPM-V's llm.* names) is refused naming the tensor", async () => {
  const dir = path.join(tmp, "other-arch");
  const other = new Map([...shapes].map(([k, v]) => [`llm.${k}`, v]));
  await writePeftAdapter(dir, { base: other, seed: 6 });
  for (const cmd of ["convert", "dequantize"] as const) await refused(cmd, dir, /tensor 'base_model\.model\.llm\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight'.*llm\.model\.layers\.0\.self_attn\.k_proj\.weight/);
});

test("shapes that do not fit (an adapter for a wider model) are refused naming the tensor", async () => {
  const dir = path.join(tmp, "wide");
  const wide = new Map([...shapes].map(([k, v]) => [k, v.length === 2 ? [v[0]! * 2, v[1]! * 2] : v]));
  await writePeftAdapter(dir, { base: wide, seed: 7, targetModules: ["v_proj"] });
  await refused("convert", dir, /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_A\.weight'.*(fit|shape)/);
});

test("the merge's own checks (without the reader's): rank and shape against the base, by tensor", async () => {
  const src = await SourceCheckpoint.open(baseDir);
  try {
    const ref = (name: string, shape: number[]) => ({ name, shape, dtype: "F32" });
    const ad = (a: number[], b: number[], rank = 4) => ({
      dir: "/x", targets: [{ baseName: "model.layers.0.self_attn.q_proj.weight", a: ref("qa", a), b: ref("qb", b), rank, alpha: 8, scale: 2, embedding: false }], saved: [], read: async () => new Float32Array(0),
    });
    assert.throws(() => LoraMerge.create(src, [ad([8, 64], [64, 4])], [1]), /E_LORA: \/x: tensor 'qa': rank mismatch/);
    assert.throws(() => LoraMerge.create(src, [ad([4, 64], [64, 8])], [1]), /E_LORA: \/x: tensor 'qb': rank mismatch/);
    assert.throws(() => LoraMerge.create(src, [ad([4, 32], [64, 4])], [1]), /tensor 'qa': has shape \[4, 32\], expected \[4, 64\]/);
    assert.throws(() => LoraMerge.create(src, [ad([4, 64], [64, 4])], [NaN]), /E_USAGE/);
    LoraMerge.create(src, [ad([4, 64], [64, 4])], [1]); // fits
    // a stored tensor with fewer values than its header says is caught when read, naming it
    const m = LoraMerge.create(src, [{ ...ad([4, 64], [64, 4]), read: async () => new Float32Array(3) }], [1]);
    await assert.rejects(m.readMerged("model.layers.0.self_attn.q_proj.weight", 0, 4), /tensor 'qa': holds 3 values, expected 256/);
  } finally {
    await src.close();
  }
});
