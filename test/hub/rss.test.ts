/**
 * Peak RSS of a streamed conversion (a child process) against the local conversion of the same folder:
 * the local peak plus named allowances (HTTP client, read-ahead chunks), not a timing.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { repoRoot } from "../../fixtures/paths.js";
import { writeTinyQwen2 } from "../../fixtures/qwen2.js";
import { hub, safetensorsBytes, sameBytes, setupHub, teardownHub, tmp } from "./setup.js";

// A checkpoint several times the allowances below (~190 MB bf16: the real 151k vocabulary at hidden 512,
// 8 layers), so that a streamed run that held the weights (or the output) whole could not pass.
let dir = "";
before(async () => {
  await setupHub([]);
  dir = path.join(tmp, "big", "big");
  await mkdir(dir, { recursive: true });
  await writeTinyQwen2(dir, { dtype: "BF16", hidden: 512, layers: 8, heads: 8, kvHeads: 2, ffn: 1024, tied: true });
  await hub.addRepo("test/big", dir);
});
after(teardownHub);

/** peak RSS (kB) of `ggufy convert` in a child process */
function childRss(args: string[]): Promise<number> {
  const hook = "data:text/javascript,process.on('exit',()=>process.stderr.write('RSS='+process.resourceUsage().maxRSS+'\\n'))";
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ["--import", hook, path.join(repoRoot(), "bin", "ggufy.js"), "convert", ...args, "--threads", "2", "--quiet"], { env: process.env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    c.stderr.on("data", (d) => (err += String(d)));
    c.on("error", reject);
    c.on("close", (code) => {
      const m = /RSS=(\d+)/.exec(err);
      if (code !== 0 || !m) reject(new Error(`exit ${code}: ${err}`));
      else resolve(Number(m[1]));
    });
  });
}

test("peak RSS of the streamed conversion stays within the local conversion's bound", async (t) => {
  const bytes = await safetensorsBytes(dir);
  assert.ok(bytes > 150e6, `the checkpoint is ${bytes} bytes`);
  const local = await childRss([dir, "--outfile", path.join(tmp, "rss-local.gguf")]);
  const remote = await childRss(["hf:test/big", "--outfile", path.join(tmp, "rss-hub.gguf")]);
  await sameBytes(path.join(tmp, "rss-local.gguf"), path.join(tmp, "rss-hub.gguf"));
  t.diagnostic(`peak RSS: local ${local} kB, streamed ${remote} kB (ratio ${(remote / local).toFixed(3)})`);
  // What streaming may add over the local run, each part named: the HTTP client (fetch/undici, ~15 MiB
  // measured on an empty request) and the two extra chunks the hub store reads ahead (open.ts: readAhead 2,
  // convert.ts: 4 Mi values per chunk, bf16 in → f16 out: 8 MiB read + 8 MiB written each); 10 % on the
  // local figure for the collector's timing. Until session 5 the local run's peak was the vocabulary's
  // JS strings, which hid the read-ahead; with the byte-held vocabulary the peak is the tensor stream.
  const kBperMiB = 1024; // maxRSS is in kB
  const bound = local * 1.1 + 16 * kBperMiB + 2 * (8 + 8) * kBperMiB;
  t.diagnostic(`bound ${Math.round(bound)} kB`);
  assert.ok(remote <= bound, `peak RSS ${remote} kB streamed vs ${local} kB local (bound ${Math.round(bound)} kB)`);
});

