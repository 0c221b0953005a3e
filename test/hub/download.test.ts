/**
 * --download places the files in huggingface_hub's cache layout (checked by its documented structure and by
 * @huggingface/hub's own scanCachedRepo); a second run reads the cached snapshot and sends no request; a
 * corrupted transfer is refused by its sha256.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { scanCachedRepo } from "@huggingface/hub";
import { convertHub, hub, sameBytes, setEnv, setupHub, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["model"], { small: true }));
after(teardownHub);

describe("--download: the huggingface_hub cache layout", () => {
  test("fills blobs/, snapshots/<commit>/, refs/main; a second run sends no request", async () => {
    const cache = path.join(tmp, "cache");
    hub.resetCounters();
    const out1 = path.join(tmp, "dl-1.gguf");
    const r = await convertHub("hf:test/model", out1, ["--download"]);
    assert.equal(r.code, 0, r.stderr);
    await sameBytes(path.join(tmp, "model-local.gguf"), out1);
    const repo = hub.repos.get("test/model")!;
    const rd = path.join(cache, "models--test--model");
    assert.equal((await readFile(path.join(rd, "refs", "main"), "utf8")).trim(), repo.commit);
    for (const f of repo.files.values()) {
      if (!/\.(json|txt|model|md|safetensors)$/.test(f.path)) continue;
      const link = path.join(rd, "snapshots", repo.commit, f.path);
      assert.ok((await lstat(link)).isSymbolicLink(), `${f.path} is a link`);
      const blob = f.lfs ? f.sha256 : f.sha1;
      assert.equal(await readlink(link), path.join("..", "..", "blobs", blob));
      assert.ok((await readFile(path.join(rd, "blobs", blob))).equals(f.bytes), `blobs/${blob} holds ${f.path}`);
    }
    assert.deepEqual((await readdir(path.join(rd, "blobs"))).filter((f) => f.endsWith(".incomplete")), []);
    // the library's own cache scanner sees the revision, its files and the ref
    const scan = await scanCachedRepo(rd);
    const rev = [...scan.revisions].find((x) => x.commitOid === repo.commit);
    assert.ok(rev, "scanCachedRepo finds the snapshot");
    assert.ok(rev.files.some((f) => f.path.endsWith("model.safetensors")));
    assert.deepEqual(rev.refs, ["main"]);
    assert.deepEqual(scan.id, { name: "test/model", type: "model" });
    // offline: the cached snapshot is used, nothing is requested
    hub.resetCounters();
    const out2 = path.join(tmp, "dl-2.gguf");
    const r2 = await convertHub("hf:test/model", out2);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(hub.log.length, 0, `requests: ${hub.log.map((x) => x.url).join(", ")}`);
    await sameBytes(path.join(tmp, "model-local.gguf"), out2);
  });

  test("a corrupted transfer is refused by its sha256; no blob is left under its name", async () => {
    const cache = path.join(tmp, "cache-bad");
    setEnv("HF_HUB_CACHE", cache);
    hub.fault = (r) => (r.host === "cdn" ? { kind: "corrupt" } : undefined);
    try {
      const out = path.join(tmp, "bad.gguf");
      const r = await convertHub("hf:test/model", out, ["--download"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr.trim(), /^ggufy: error: E_HUB: hf:test\/model: model\.safetensors: sha256 of the download is [0-9a-f]{64}, the Hub lists [0-9a-f]{64}$/);
      await assert.rejects(stat(out));
      const blobs = await readdir(path.join(cache, "models--test--model", "blobs"));
      const st = hub.repos.get("test/model")!.files.get("model.safetensors")!;
      assert.ok(!blobs.includes(st.sha256) && !blobs.includes(`${st.sha256}.incomplete`), blobs.join(", "));
      await assert.rejects(stat(path.join(cache, "models--test--model", "refs", "main")), "no ref for an incomplete snapshot");
    } finally {
      hub.fault = undefined;
      setEnv("HF_HUB_CACHE", path.join(tmp, "cache"));
    }
  });
});
