/**
 * The other commands that take a model folder take a reference too: `verify <gguf> hf:…` checks a GGUF
 * against the checkpoint read from the stand-in Hub, `inspect hf:…` lists what inspect of the folder lists.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { cli } from "../cli/helpers.js";
import { dirs, hub, setupHub, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["model"], { small: true }));
after(teardownHub);

test("verify <gguf> hf:test/model: OK, and the tensors were read over the network", async () => {
  hub.resetCounters();
  const r = await cli(["verify", path.join(tmp, "model-local.gguf"), "hf:test/model", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ok: boolean; tensors: unknown[] };
  assert.equal(j.ok, true);
  assert.ok(j.tensors.length > 0);
  assert.ok(hub.log.some((x) => x.host === "cdn"), "the weights came from the Hub");
});

test("inspect hf:test/model --json: the tensors and metadata of inspect <folder>", async () => {
  const a = await cli(["inspect", dirs["model"]!, "--json"]);
  const b = await cli(["inspect", "hf:test/model", "--json"]);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual((JSON.parse(b.stdout) as { tensors: unknown }).tensors, (JSON.parse(a.stdout) as { tensors: unknown }).tensors);
});
