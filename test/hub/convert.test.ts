/**
 * `ggufy convert hf:test/<name>` against a local stand-in for the Hub (server.ts; HF_ENDPOINT points at it)
 * writes a GGUF byte-identical to converting the same folder locally: a plain bf16 Qwen2, a sharded
 * bitsandbytes NF4 one (the MiniCPM-V demo model: convert-minicpmv.test.ts); the weights are fetched once.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { convertHub, dirs, hub, sameBytes, safetensorsBytes, setupHub, smallBytes, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["model", "bnb"]));
after(teardownHub);

describe("convert hf:… is byte-identical to converting the folder", () => {
  test("plain bf16 Qwen2: identical; the weights fetched once (within 5%), the CDN never sees the token", async () => {
    hub.resetCounters();
    const out = path.join(tmp, "model-hub.gguf");
    const r = await convertHub("hf:test/model", out);
    assert.equal(r.code, 0, r.stderr);
    await sameBytes(path.join(tmp, "model-local.gguf"), out);
    // warnings name the reference, not the temporary folder the small files were fetched into
    assert.match(r.stderr, /^ggufy: warning: hf:test\/model: no tokenizer\.json/m);
    assert.doesNotMatch(r.stderr, /ggufy-hf-/);
    const st = await safetensorsBytes(dirs["model"]!);
    const cdn = hub.log.filter((x) => x.host === "cdn");
    assert.ok(cdn.length > 0, "the weights came from the LFS host (a redirect was followed)");
    const weightBytes = hub.fileBytes - smallBytes("test/model");
    assert.ok(weightBytes >= st && weightBytes <= st * 1.05, `weights fetched ${weightBytes} bytes, checkpoint ${st}`);
    assert.ok(cdn.every((x) => x.status === 206), "every weight read is a range request");
  });

  test("inspect hf:… lists what inspect of the folder lists; the library's convert() takes a reference too", async () => {
    const { cli } = await import("../cli/helpers.js");
    const a = await cli(["inspect", dirs["model"]!, "--json"]);
    const b = await cli(["inspect", "hf:test/model", "--json"]);
    assert.equal(b.code, 0, b.stderr);
    const ja = JSON.parse(a.stdout) as { tensors: unknown; metadata: unknown };
    const jb = JSON.parse(b.stdout) as { tensors: unknown; metadata: unknown };
    assert.deepEqual(jb.tensors, ja.tensors);
    assert.deepEqual(jb.metadata, ja.metadata);
    const { convert } = await import("../../src/index.js");
    const out = path.join(tmp, "model-api.gguf");
    await convert({ input: "hf:test/model", outfile: out, threads: 2 });
    await sameBytes(path.join(tmp, "model-local.gguf"), out);
  });

  test("sharded bitsandbytes NF4: identical", async () => {
    hub.resetCounters();
    const out = path.join(tmp, "bnb-hub.gguf");
    const r = await convertHub("hf:test/bnb", out);
    assert.equal(r.code, 0, r.stderr);
    await sameBytes(path.join(tmp, "bnb-local.gguf"), out);
    const st = await safetensorsBytes(dirs["bnb"]!);
    const small = smallBytes("test/bnb");
    assert.ok(hub.fileBytes - small <= st * 1.05, `weights fetched ${hub.fileBytes - small} bytes, checkpoint ${st}`);
    const shards = new Set(hub.log.filter((x) => x.host === "cdn").map((x) => x.file));
    assert.equal(shards.size, 2, "both shards read");
  });

});

