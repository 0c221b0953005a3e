/**
 * The IQ presets with an importance matrix, end to end (issue 18): a generated 8-layer Qwen2 checkpoint is
 * converted by ggufy to F32, llama.cpp's own `llama-imatrix` computes an importance matrix on it in both
 * formats (GGUF and the legacy .dat), and for IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS IQ3_XS IQ3_S
 * IQ3_M `ggufy convert --outtype P --imatrix F` must equal `llama-quantize --imatrix F f32.gguf out.gguf P`
 * tensor for tensor (names, order, types, bytes) with the same KVs. Machinery: test/support/imatrix-e2e.ts.
 *
 * The checkpoint is shaped so that llama_tensor_get_type's IQ branches all fire (src/llama-quant.cpp):
 * n_gqa 2 (< 4: attn_v → q2_K / iq3_s / iq3_xxs-with-imatrix, not the n_gqa ≥ 4 q4_K), ffn 256 (ffn_down rows
 * are whole IQ super-blocks: layer 0 = n_layer/8 takes the first-layer rule, the rest the IQ type), untied
 * (output → q5_K for the IQ1/IQ2/IQ3_XXS ftypes, token_embd → q2_K / iq3_s), 8 layers (IQ3_XS's
 * ffn_gate/ffn_up → iq3_xxs on layers 1…6 only). The IQ quantizers are slow in TypeScript, hence hidden 256.
 *
 * Shown to fail when broken: dropping the importance vector of blk.3.ffn_up.weight in matchImatrix fails IQ3_S
 * ("blk.3.ffn_up.weight (iq3_s): bytes differ") and IQ2_XXS (.dat).
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import path from "node:path";
import { convert, plan } from "../../src/index.js";
import { GgufyError } from "../../src/errors.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { setupImatrixModel, compareWithLlamaQuantize, runTool, type ImatrixSetup } from "../support/imatrix-e2e.js";
import { llamaTool } from "../support/llama-tools.js";

const tmp = await scratchDir("ggufy-e2e-iq-imatrix-");
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let s: ImatrixSetup;

before(async () => {
  s = await setupImatrixModel(tmp, { layers: 8, hidden: 256, heads: 4, kvHeads: 2, ffn: 256, tied: false, dtype: "F32", seed: 33 });
});

const IQ_PRESETS = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"];

/** ggml types llama-quantize must have chosen somewhere, per preset: the shape reaches the IQ rules */
const MUST_USE: Record<string, string[]> = {
  IQ1_S: ["iq1_s", "iq2_xxs", "q2_K", "q5_K"], IQ1_M: ["iq1_m", "iq2_xxs", "q2_K", "q5_K"],
  IQ2_XXS: ["iq2_xxs", "q2_K", "q5_K"], IQ2_XS: ["iq2_xs", "q2_K", "q5_K"],
  IQ2_S: ["iq2_xs", "iq3_s", "q5_K"], IQ2_M: ["iq2_s", "iq3_s", "q5_K"],
  IQ3_XXS: ["iq3_xxs", "iq2_s", "iq3_s", "q5_K"], IQ3_XS: ["iq3_s", "iq3_xxs", "q6_K"],
  IQ3_S: ["iq3_s", "q6_K"], IQ3_M: ["iq3_s", "q4_K", "q6_K"],
};

for (const p of IQ_PRESETS) {
  test(`${p} --imatrix (GGUF imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    const tally = await compareWithLlamaQuantize(s, tmp, p, s.imGguf);
    assert.equal(Object.values(tally).reduce((x, y) => x + y, 0), 3 + 8 * 12);
    for (const t of MUST_USE[p]!) assert.ok(tally[t], `${p}: no ${t} tensor in llama-quantize's file (${JSON.stringify(tally)})`);
  });
}

// every preset with the legacy .dat imatrix as well (issue 18: both formats)
for (const p of IQ_PRESETS) {
  test(`${p} --imatrix (legacy .dat imatrix): byte-identical to llama-quantize --imatrix`, async () => {
    await compareWithLlamaQuantize(s, tmp, p, s.imDat);
  });
}

/** llama-quantize on the F32 file; returns its exit status and output (never throws) */
function quantize(args: string[]): { status: number | null; out: string } {
  try {
    return { status: 0, out: runTool(llamaTool("llama-quantize"), args) };
  } catch (e) {
    return { status: 1, out: (e as Error).message };
  }
}

test("without --imatrix the IQ1/IQ2 presets (and IQ3_XXS, IQ3_XS) are refused, as llama-quantize refuses them; IQ3_S / IQ3_M are not", async () => {
  for (const p of ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS"]) {
    const out = path.join(tmp, `${p}-refused.gguf`);
    await assert.rejects(convert({ input: s.modelDir, outtype: p, outfile: out, force: true }), (e: unknown) => {
      assert.ok(e instanceof GgufyError, p);
      assert.equal(e.code, "E_IMATRIX_REQUIRED", p);
      assert.match(e.message, /--imatrix/, p);
      return true;
    });
    const ref = path.join(tmp, `${p}-refused-llama.gguf`);
    const r = quantize([s.f32, ref, p, "1"]);
    assert.notEqual(r.status, 0, `llama-quantize ${p} without an imatrix`);
    assert.match(r.out, /this quantization requires an imatrix/, p);
    await assert.rejects(rm(out), { code: "ENOENT" }, `${p}: nothing written`);
  }
  for (const p of ["IQ3_S", "IQ3_M"]) {
    const r = quantize(["--dry-run", s.f32, p]);
    assert.equal(r.status, 0, r.out);
    assert.doesNotMatch(r.out, /will require an imatrix/, p);
    const pl = await plan({ input: s.modelDir, outtype: p, outfile: path.join(tmp, `${p}-plain.gguf`) });
    await pl.close();
  }
});

test("IQ2_XXS --imatrix with ffn_gate's entry excluded: refused naming blk.0.ffn_gate.weight, as llama-quantize refuses it", async () => {
  const out = path.join(tmp, "excl.gguf");
  await assert.rejects(convert({ input: s.modelDir, outtype: "IQ2_XXS", outfile: out, force: true, imatrix: s.imGguf, excludeWeights: ["ffn_gate"] }), (e: unknown) => {
    assert.ok(e instanceof GgufyError);
    assert.equal(e.code, "E_IMATRIX_REQUIRED");
    assert.match(e.message, /blk\.0\.ffn_gate\.weight/);
    return true;
  });
  const r = quantize(["--imatrix", s.imGguf, "--exclude-weights", "ffn_gate", s.f32, path.join(tmp, "excl-llama.gguf"), "IQ2_XXS", "1"]);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /Missing importance matrix for tensor blk\.0\.ffn_gate\.weight/);
});
