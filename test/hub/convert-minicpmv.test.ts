/**
 * The tiny MiniCPM-V-2_6-int4 demo model (fixtures/minicpmv.ts: bitsandbytes NF4, two shards) from the
 * stand-in Hub, named by a Hub URL: both files (language model and mmproj) byte-identical to the local run.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { convertHub, hub, sameBytes, setupHub, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["MiniCPM-V-2_6-int4"]));
after(teardownHub);

describe("convert https://<hub>/test/MiniCPM-V-2_6-int4", () => {
  test("MiniCPM-V int4 (https URL form): both files identical", async () => {
    const out = path.join(tmp, "mcv-hub.gguf");
    const mm = path.join(tmp, "mcv-mmproj-hub.gguf");
    const r = await convertHub(`${hub.url}/test/MiniCPM-V-2_6-int4`, out, ["--mmproj-outfile", mm]);
    assert.equal(r.code, 0, r.stderr);
    await sameBytes(path.join(tmp, "mcv-local.gguf"), out);
    await sameBytes(path.join(tmp, "mcv-mmproj-local.gguf"), mm);
  });
});
