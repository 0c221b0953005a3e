/**
 * MiniCPM-V family: plans on realistic full-size headers (fixtures/minicpmv.ts writeMinicpmvHeaderOnly: each
 * release's published shapes, valid safetensors headers over sparse data) and the version rules.
 *
 * Tensor counts llama.cpp's pipeline writes (minicpmv-surgery.py + convert_hf_to_gguf.py for the LLM,
 * minicpmv-convert-image-encoder-to-gguf.py for the mmproj):
 * - LLM: 3 (token_embd, output_norm, output) + per layer: Llama 9 (no biases, no rope_freqs: neither 2.5's
 *   Llama 3.0 nor 4.0 has a llama3 rope_scaling), Qwen2 12 (q/k/v biases), Qwen3 11 (attn_q_norm, attn_k_norm):
 *   2.5: 3 + 32·9 = 291; 2.6 and o-2.6: 3 + 28·12 = 339; 4.0: 3 + 32·9 = 291; 4.5: 3 + 36·11 = 399.
 * - mmproj: resampler 18 (query, pos_embed_k, proj, kv, q/k/v weight + bias, out weight + bias, ln_q/ln_kv/ln_post
 *   weight + bias) + SigLIP 3 (patch_embd weight/bias, position_embd) + 27·16 + 2 (post_ln) = 455 for every release.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { plan } from "../../src/convert/convert.js";
import { main } from "../../src/cli/main.js";
import { detectMinicpmvRelease, parseMinicpmvVersion } from "../../src/models/minicpmv/versions.js";
import {
  MINICPMV_RELEASE_DIMS, RELEASE_CLIP_VERSION, releaseLlm, specLlmTensors, specMmprojTensors, writeMinicpmvHeaderOnly, writeTinyMinicpmv,
  type MinicpmvReleaseId,
} from "../../fixtures/minicpmv.js";

let tmp = "";
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-minicpmv-family-"));
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const COUNTS: Record<MinicpmvReleaseId, [number, number]> = { "2.5": [291, 455], "2.6": [339, 455], "o-2.6": [339, 455], "4.0": [291, 455], "4.5": [399, 455] };

for (const release of ["2.5", "o-2.6", "4.0", "4.5"] as const) {
  test(`${release} full size: the plan lists ${COUNTS[release][0]} ${releaseLlm(release)} + ${COUNTS[release][1]} mmproj tensors, the converter's names and shapes, clip.minicpmv_version ${RELEASE_CLIP_VERSION[release]}`, async () => {
    const dir = path.join(tmp, `full-${release}`);
    await writeMinicpmvHeaderOnly(dir, release);
    const warnings: string[] = [];
    const p = await plan({ input: dir, outtype: "Q4_K_M", onWarning: (m) => warnings.push(m) });
    try {
      const d = MINICPMV_RELEASE_DIMS[release];
      assert.deepEqual(p.files.map((f) => [f.role, f.tensors.length]), [["model", COUNTS[release][0]], ["mmproj", COUNTS[release][1]]]);
      assert.equal(p.models[0]!.arch, releaseLlm(release));
      const llm = new Map(p.files[0]!.tensors.map((t) => [t.out.name, t.out.ne]));
      const spec = specLlmTensors(d);
      assert.equal(spec.length, COUNTS[release][0]);
      for (const s of spec) assert.deepEqual(llm.get(s.name), s.ne, s.name);
      const mm = specMmprojTensors(d);
      assert.equal(mm.length, COUNTS[release][1]);
      assert.deepEqual(p.files[1]!.tensors.map((t) => [t.out.name, t.out.ne]), mm.map((s) => [s.name, s.ne]));
      const kv = (k: string) => p.files[1]!.kvs.find((x) => x.key === k)?.value.value;
      assert.equal(kv("clip.minicpmv_version"), RELEASE_CLIP_VERSION[release]);
      assert.equal(kv("clip.minicpmv_query_num"), d.queryNum);
      assert.equal(kv("clip.vision.block_count"), 27);
      const pk = p.files[1]!.tensors.find((t) => t.out.name === "resampler.pos_embed_k")!;
      assert.deepEqual(pk.out.ne, [d.llm.hidden, 4900]);
      if (release === "o-2.6") assert.ok(p.models[0]!.warnings?.some((w) => /apm \(\d+ tensors\).*tts/.test(w)), String(p.models[0]!.warnings));
    } finally {
      await p.close();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// version rules

const cfg26 = { architectures: ["MiniCPMV"], model_type: "minicpmv", hidden_size: 3584, query_num: 64, version: 2.6 };

test("detection: each release's config.json version / architecture gives its clip.minicpmv_version and LLM", () => {
  const f = "config.json";
  const rel = (c: Record<string, unknown>) => detectMinicpmvRelease(c, f).release;
  assert.deepEqual([rel({ ...cfg26, version: 2.5 }).clipVersion, rel({ ...cfg26, version: 2.5 }).llm], [2, "llama"]);
  assert.deepEqual([rel(cfg26).clipVersion, rel(cfg26).llm], [3, "qwen2"]);
  assert.deepEqual([rel({ ...cfg26, architectures: ["MiniCPMO"], model_type: "minicpmo" }).clipVersion, rel({ ...cfg26, architectures: ["MiniCPMO"] }).llm], [4, "qwen2"]);
  assert.deepEqual([rel({ ...cfg26, version: 4.0 }).clipVersion, rel({ ...cfg26, version: 4 }).llm], [5, "llama"]);
  assert.deepEqual([rel({ ...cfg26, version: 4.5 }).clipVersion, rel({ ...cfg26, version: 4.5 }).llm], [6, "qwen3"]);
  // no version: never silent
  const none = detectMinicpmvRelease({ ...cfg26, version: undefined, hidden_size: 4096, query_num: 96 }, f);
  assert.equal(none.release.clipVersion, 2);
  assert.match(none.warnings.join("\n"), /no version: taken as MiniCPM-Llama3-V 2\.5/);
  const noneO = detectMinicpmvRelease({ architectures: ["MiniCPMO"] }, f);
  assert.equal(noneO.release.clipVersion, 4);
  assert.match(noneO.warnings.join("\n"), /no version/);
});

test("an unknown MiniCPM-V version, MiniCPM-o version or vision config is refused in one line naming the field", async () => {
  const f = "config.json";
  const refuse = (c: Record<string, unknown>, re: RegExp, code = "E_UNSUPPORTED_ARCH") =>
    assert.throws(() => detectMinicpmvRelease(c, f), (e: Error & { code?: string }) => e.code === code && re.test(e.message) && !e.message.includes("\n"));
  refuse({ ...cfg26, version: 3.0 }, /version 3 is not supported \(config\.json version; known: 2\.5, 2\.6, 4\.0, 4\.5\)/);
  refuse({ ...cfg26, version: 2.0 }, /version 2\.0 is not supported/);
  refuse({ ...cfg26, version: undefined, hidden_size: 2304, query_num: 64 }, /MiniCPM-V 2\.0/);
  refuse({ architectures: ["MiniCPMO"], version: 4.5 }, /MiniCPM-o version 4\.5 is not supported/);
  refuse({ ...cfg26, version: "2.6b" }, /version must be a number or a numeric string/, "E_CONFIG");
  refuse({ ...cfg26, version: [2, 6] }, /version must be a number or a numeric string/, "E_CONFIG");
  // openbmb/MiniCPM-Llama3-V-2_5's real config.json says "version": "2.5" (a string): read as 2.5
  assert.equal(detectMinicpmvRelease({ ...cfg26, version: "2.5" }, f).release.clipVersion, 2);
  assert.equal(detectMinicpmvRelease({ ...cfg26, version: "2.6" }, f).release.clipVersion, 3);
  // the vision config, through the converter (a tiny 2.5 checkpoint with its config edited)
  const dir = path.join(tmp, "tiny-2.5");
  await writeTinyMinicpmv(dir, { release: "2.5" });
  const config = JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
  const attempt = async (edit: (c: Record<string, Record<string, unknown>>) => void, re: RegExp, code: string) => {
    const c = structuredClone(config);
    edit(c);
    await writeFile(path.join(dir, "config.json"), JSON.stringify(c));
    await assert.rejects(plan({ input: dir }), (e: Error & { code?: string }) => e.code === code && re.test(e.message) && !e.message.includes("\n"));
  };
  await attempt((c) => (c["vision_config"]!["model_type"] = "clip_vision_model"), /vision_config\.model_type "clip_vision_model"/, "E_UNSUPPORTED_ARCH");
  await attempt((c) => (c["vision_config"]!["hidden_act"] = "quick_gelu"), /vision_config\.hidden_act "quick_gelu"/, "E_UNSUPPORTED_ARCH");
  await attempt((c) => (c["vision_config"]!["patch_size"] = 14.5), /vision_config\.patch_size must be a positive integer/, "E_CONFIG");
  await attempt((c) => delete c["vision_config"], /vision_config is missing/, "E_CONFIG");
  await writeFile(path.join(dir, "config.json"), JSON.stringify(config));
});

test("--minicpmv-version N overrides config.json with a warning (2.5 checkpoint as 4.0: clip.minicpmv_version 5); unknown N is a usage error", async () => {
  const dir = path.join(tmp, "tiny-2.5");
  await writeFile(path.join(dir, "config.json"), await readFile(path.join(dir, "config.json")));
  const p = await plan({ input: dir, minicpmvVersion: 5 });
  try {
    assert.equal(p.files[1]!.kvs.find((k) => k.key === "clip.minicpmv_version")?.value.value, 5);
    assert.ok(p.models[0]!.warnings?.some((w) => /--minicpmv-version 5: converting as MiniCPM-V 4\.0 .*config\.json says MiniCPM-Llama3-V 2\.5, clip\.minicpmv_version 2/.test(w)), String(p.models[0]!.warnings));
  } finally {
    await p.close();
  }
  const p2 = await plan({ input: dir });
  try {
    assert.equal(p2.files[1]!.kvs.find((k) => k.key === "clip.minicpmv_version")?.value.value, 2);
  } finally {
    await p2.close();
  }
  await assert.rejects(plan({ input: dir, minicpmvVersion: 7 }), (e: Error & { code?: string }) => e.code === "E_USAGE" && /--minicpmv-version 7/.test(e.message));
  assert.throws(() => parseMinicpmvVersion("4.5"), (e: Error & { code?: string }) => e.code === "E_USAGE");
  // through the CLI: the flag reaches the plan; a bad value is a usage error (exit 64)
  let out = "";
  let err = "";
  const sink = (f: (s: string) => void) => new Writable({ write(c, _e, cb) { f(String(c)); cb(); } });
  const rc = await main(["convert", dir, "--minicpmv-version", "5", "--dry-run", "--json"], { stdout: sink((s) => (out += s)) as never, stderr: sink((s) => (err += s)) as never });
  assert.equal(rc, 0, err);
  const j = JSON.parse(out) as { files: { role: string; kvs?: unknown }[]; warnings: string[] };
  assert.equal(j.files.length, 2);
  // the dry run says what the conversion would: the release warning on stderr and in --json
  assert.ok(j.warnings.some((w) => /--minicpmv-version 5: converting as MiniCPM-V 4\.0/.test(w)), JSON.stringify(j.warnings));
  assert.match(err, /ggufy: warning: --minicpmv-version 5: converting as MiniCPM-V 4\.0/);
  err = "";
  out = "";
  assert.equal(await main(["convert", dir, "--minicpmv-version", "5", "--dry-run"], { stdout: sink((s) => (out += s)) as never, stderr: sink((s) => (err += s)) as never }), 0, err);
  assert.match(err, /ggufy: warning: --minicpmv-version 5: converting as MiniCPM-V 4\.0/);
  // verify takes the flag too: the pair converted as 5 verifies with it, and without it the mmproj's
  // clip.minicpmv_version differs from the re-plan (and the LLM half would be planned as 2.5)
  const llm = path.join(tmp, "as-5-llm.gguf");
  const mm = path.join(tmp, "as-5-mmproj.gguf");
  err = "";
  assert.equal(await main(["convert", dir, "--minicpmv-version", "5", "--outtype", "f32", "--mmproj-type", "f32", "--outfile", llm, "--mmproj-outfile", mm, "--quiet"], { stdout: sink(() => {}) as never, stderr: sink((s) => (err += s)) as never }), 0, err);
  for (const f of [llm, mm]) {
    out = "";
    err = "";
    const rcv = await main(["verify", f, dir, "--minicpmv-version", "5", "--json"], { stdout: sink((s) => (out += s)) as never, stderr: sink((s) => (err += s)) as never });
    assert.equal(rcv, 0, err + out.slice(0, 2000));
    const vr = JSON.parse(out) as { ok: boolean; kvDifferences: string[] };
    assert.ok(vr.ok);
    assert.ok(!vr.kvDifferences.some((d) => /minicpmv_version/.test(d)), vr.kvDifferences.join("\n"));
  }
  out = "";
  await main(["verify", mm, dir, "--json"], { stdout: sink((s) => (out += s)) as never, stderr: sink(() => {}) as never }).catch(() => 1);
  assert.ok((JSON.parse(out) as { kvDifferences: string[] }).kvDifferences.some((d) => /clip\.minicpmv_version/.test(d)), out.slice(0, 2000));
  err = "";
  const bad = await main(["convert", dir, "--minicpmv-version", "x", "--dry-run"], { stdout: sink(() => {}) as never, stderr: sink((s) => (err += s)) as never });
  assert.equal(bad, 64);
  assert.match(err, /--minicpmv-version x/);
});
