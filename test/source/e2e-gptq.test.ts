/** GPTQ end to end (see e2e-support.ts): 4-bit act-order v1, 3-bit sym v2, 8-bit, 2-bit per-channel; a mixed checkpoint. */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { convert, readGguf } from "../../src/index.js";
import { openSource } from "../../src/source/registry.js";
import { Rng } from "../../fixtures/rng.js";
import { writeQuantizedStories } from "../../fixtures/quantized-stories.js";
import { gptqEncode, gptqModuleTensors, gptqQuantizationConfig } from "../../fixtures/gptq.js";
import { gptqVariant, runVariants, checkF32, tmp } from "./e2e-support.js";

runVariants([
  gptqVariant("gptq4-actorder-v1", { bits: 4, groupSize: 32, descAct: true, sym: false, format: "gptq" }, true, /model\.layers\.0\.mlp\.up_proj\.weight\s+f32\s+\[160, 64\]\s+gptq 4-bit g32 act-order asym \(gptq, f16 scales\)/),
  gptqVariant("gptq3-v2", { bits: 3, groupSize: 64, descAct: false, sym: true, format: "gptq_v2" }, true, /down_proj\.weight\s+f32\s+\[64, 160\]\s+gptq 3-bit g64 sym \(gptq_v2/),
  gptqVariant("gptq8", { bits: 8, groupSize: 128, descAct: true, sym: false, format: "gptq_v2" }, false, /gptq 8-bit g128 act-order asym/),
  gptqVariant("gptq2", { bits: 2, groupSize: -1, descAct: false, sym: false, format: "gptq" }, false, /gptq 2-bit per-channel asym/),
]);

test("mixed GPTQ checkpoint: lm_head and one MLP module left in bf16 by modules_to_not_convert", async () => {
  const dir = path.join(tmp, "mixed");
  const expected = new Map<string, Float32Array>();
  const o = { bits: 4 as const, groupSize: 32, descAct: true, sym: false, format: "gptq" as const };
  const skip = ["lm_head", "model.layers.1.mlp.down_proj"];
  const rng = new Rng(77);
  await writeQuantizedStories(dir, {
    untie: true,
    torchDtype: "BF16",
    quantizationConfig: gptqQuantizationConfig(o, { modules_to_not_convert: skip }),
    quantize: (m, w, r, c) => {
      if (skip.includes(m)) return undefined;
      const e = gptqEncode(w, r, c, { ...o, rng });
      expected.set(`${m}.weight`, e.expected);
      return gptqModuleTensors(m, e, r, c, 4);
    },
  });
  assert.equal(expected.size, 34);
  const src = await openSource(dir);
  try {
    for (const s of skip) {
      assert.equal(src.isDecoded(`${s}.weight`), false);
      assert.equal(src.get(`${s}.weight`)!.encoding, "bf16");
    }
  } finally {
    await src.close();
  }
  const f32 = path.join(tmp, "mixed-f32.gguf");
  await convert({ input: dir, outfile: f32, outtype: "f32", threads: 2 });
  await checkF32(dir, f32, expected);
  const g = await readGguf(f32);
  assert.ok(g.tensors.some((t) => t.name === "output.weight"), "untied output");
});
