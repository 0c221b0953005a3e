/** Model references: hf:owner/name[@rev] and Hub URLs parsed; malformed ones refused by name; local paths left alone. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseModelRef } from "../../src/hub/ref.js";
import { retryAfterMs } from "../../src/hub/fetch.js";
import { GgufyError } from "../../src/errors.js";

test("hf: references and Hub URLs", () => {
  assert.deepEqual(parseModelRef("hf:Qwen/Qwen2.5-0.5B-Instruct"), { repo: "Qwen/Qwen2.5-0.5B-Instruct", revision: undefined, text: "hf:Qwen/Qwen2.5-0.5B-Instruct" });
  assert.equal(parseModelRef("hf:openbmb/MiniCPM-V-2_6-int4@refs/pr/3")!.revision, "refs/pr/3");
  assert.equal(parseModelRef("hf:gpt2")!.repo, "gpt2");
  const u = parseModelRef("https://huggingface.co/openbmb/MiniCPM-V-2_6/tree/v1.0")!;
  assert.deepEqual([u.repo, u.revision], ["openbmb/MiniCPM-V-2_6", "v1.0"]);
  assert.deepEqual([parseModelRef("https://huggingface.co/org/name")!.repo, parseModelRef("https://huggingface.co/org/name")!.revision], ["org/name", undefined]);
  assert.equal(parseModelRef("https://huggingface.co/org/name/tree/refs%2Fpr%2F1")!.revision, "refs/pr/1");
  assert.equal(parseModelRef("models/org--name"), undefined);
  assert.equal(parseModelRef("./hf"), undefined);
});

test("malformed references are refused naming the part", () => {
  for (const [s, part] of [["hf:a/b/c", "a/b/c"], ["hf:../x", "../x"], ["hf:org/na me", "org/na me"], ["hf:org/x@", ""], ["hf:org/x@a..b", "a..b"], ["https://example.com/org/x", "only Hugging Face Hub URLs"]] as const) {
    assert.throws(() => parseModelRef(s), (e: unknown) => e instanceof GgufyError && e.code === "E_USAGE" && e.message.includes(part), s);
  }
});

test("Retry-After: seconds or an HTTP date", () => {
  assert.equal(retryAfterMs("2"), 2000);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs("soon"), undefined);
});
