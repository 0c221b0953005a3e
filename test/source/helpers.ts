/** Tiny one-module checkpoints for the scheme tests, and refusal checks. */
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { writeSafetensors, type StTensor } from "../../src/formats/safetensors/index.js";
import { GgufyError } from "../../src/errors.js";
import { openSource } from "../../src/source/registry.js";
import type { SourceCheckpoint } from "../../src/source/checkpoint.js";
import { convert } from "../../src/convert/convert.js";

export async function writeCheckpoint(dir: string, tensors: StTensor[], quantizationConfig: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, "model.safetensors"), [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1)), { format: "pt" });
  await writeFile(path.join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], model_type: "llama", torch_dtype: "float16", ...(quantizationConfig ? { quantization_config: quantizationConfig } : {}), ...extra }));
  return dir;
}

export async function withSource<T>(dir: string, fn: (s: SourceCheckpoint) => Promise<T>): Promise<T> {
  const s = await openSource(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

export const i32 = (a: number[]): Uint8Array => new Uint8Array(new Int32Array(a).buffer);
export const f16 = (bits: number[]): Uint8Array => new Uint8Array(new Uint16Array(bits).buffer);
export const f32 = (a: number[]): Uint8Array => new Uint8Array(new Float32Array(a).buffer);

/** `p` rejects with a one-line GgufyError of `code` whose message contains every part. */
export async function refusal(p: Promise<unknown>, code: string, parts: (string | RegExp)[]): Promise<GgufyError> {
  let err: GgufyError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GgufyError, `a GgufyError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const s of parts) {
      if (typeof s === "string") assert.ok(e.message.includes(s), `message names '${s}': ${e.message}`);
      else assert.match(e.message, s);
    }
    assert.ok(!e.message.includes("\n"), "one line");
    err = e;
    return true;
  });
  return err!;
}

/** convert refuses the checkpoint and leaves nothing in `outDir` (threads 2: errors raised in a worker too). */
export async function convertRefuses(input: string, outDir: string, code: string, parts: (string | RegExp)[]): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await refusal(convert({ input, outfile: path.join(outDir, "out.gguf"), outtype: "f32", threads: 2 }), code, parts);
  assert.deepEqual(await readdir(outDir), [], "nothing left behind");
}
