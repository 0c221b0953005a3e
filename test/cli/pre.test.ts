/**
 * --pre overrides the pre-tokenizer read from the tokenizer files (the tokenizer module validates the
 * name against llama.cpp's list): the plan's tokenizer.ggml.pre follows it, an unknown name is refused.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { plan } from "../../src/index.js";
import { writeTinyQwen2, scratchDir } from "../../fixtures/qwen2.js";
import { isGgufyError } from "../../src/errors.js";

const tmp = await scratchDir("ggufy-pre-");
after(() => rm(tmp, { recursive: true, force: true }));
const dir = path.join(tmp, "q");
await writeTinyQwen2(dir, { layers: 1, hidden: 64, dtype: "F32", seed: 1 });

async function preOf(pre?: string): Promise<unknown> {
  const p = await plan({ input: dir, outtype: "f32", ...(pre !== undefined ? { pre } : {}) });
  try {
    return p.files[0]!.kvs.find((k) => k.key === "tokenizer.ggml.pre")?.value.value;
  } finally {
    await p.close();
  }
}

test("--pre: default from the tokenizer (qwen2), overridden by name, unknown names refused", async () => {
  assert.equal(await preOf(), "qwen2");
  assert.equal(await preOf("gpt-2"), "gpt-2");
  await assert.rejects(preOf("bogus"), (e: unknown) => isGgufyError(e) && e.code === "E_USAGE" && /bogus/.test(e.message));
});
