/**
 * A 401 (private repository, no token), a 404 (repository, revision) and a revision that moves mid-run
 * end with one clear line, exit code 2 and no output (nor temporary files).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { convertHub, hub, sameBytes, setupHub, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["model"], { small: true }));
after(teardownHub);

describe("refusals: one line, no output", () => {
  async function refused(ref: string, out: string, want: RegExp, extra: string[] = []): Promise<void> {
    const r = await convertHub(ref, out, extra);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, want);
    await assert.rejects(stat(out), "no output");
    const left = (await readdir(path.dirname(out))).filter((f) => f.startsWith(".") || f.includes(".tmp") || f.includes("partial"));
    assert.deepEqual(left, [], "no temporary files left");
  }

  test("401: a private repository without a token; 403-style wording names HF_TOKEN / --token", async () => {
    hub.token = "hf_secret";
    try {
      await mkdir(path.join(tmp, "e401"), { recursive: true });
      await refused("hf:test/model", path.join(tmp, "e401", "x.gguf"), /^ggufy: error: E_HUB: hf:test\/model: 401 Unauthorized .*HF_TOKEN or pass --token/);
      // with the token it works
      const r = await convertHub("hf:test/model", path.join(tmp, "e401", "ok.gguf"), ["--token", "hf_secret"]);
      assert.equal(r.code, 0, r.stderr);
      await sameBytes(path.join(tmp, "model-local.gguf"), path.join(tmp, "e401", "ok.gguf"));
    } finally {
      hub.token = undefined;
    }
  });

  test("403: a gated repository whose access was not granted to the token's account", async () => {
    hub.token = "hf_secret";
    hub.gatedDeny = true;
    try {
      await mkdir(path.join(tmp, "e403"), { recursive: true });
      await refused("hf:test/model", path.join(tmp, "e403", "x.gguf"), /^ggufy: error: E_HUB: hf:test\/model: 403 Forbidden \(config\.json\): the repository is gated .*request access on http:\/\/127\.0\.0\.1:\d+\/test\/model /, ["--token", "hf_secret"]);
    } finally {
      hub.token = undefined;
      hub.gatedDeny = false;
    }
  });

  test("404: repository, revision", async () => {
    await mkdir(path.join(tmp, "e404"), { recursive: true });
    await refused("hf:test/nope", path.join(tmp, "e404", "x.gguf"), /^ggufy: error: E_HUB: hf:test\/nope: repository 'test\/nope' not found/);
    await refused("hf:test/model@v9", path.join(tmp, "e404", "y.gguf"), /^ggufy: error: E_HUB: hf:test\/model@v9: revision 'v9' not found in 'test\/model'$/);
  });

  test("the revision changes mid-run", async () => {
    await mkdir(path.join(tmp, "moved"), { recursive: true });
    hub.fault = (r, nth) => (r.host === "hub" && r.file?.endsWith(".safetensors") && nth > 4 ? { kind: "moved" } : undefined);
    try {
      await refused("hf:test/model", path.join(tmp, "moved", "x.gguf"), /E_HUB: hf:test\/model: model\.safetensors: the (repository changed revision|file changed) during the run .*; run again$/);
    } finally {
      hub.fault = undefined;
    }
  });
});

