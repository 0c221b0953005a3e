/**
 * End to end for MiniCPM-V 2.6: the tiny bf16 checkpoint and its int4 (bitsandbytes NF4) variant (fixtures/minicpmv.ts)
 * → LLM GGUF with ggufy → llama.cpp (node-llama-cpp 3.21.1, whose addon has no mtmd, so only the LLM is loaded; the
 * mmproj is checked structurally in test/models/minicpmv*.test.ts).
 * The model loads; MiniCPM-V's added tokens (<image>, </image>, <slice>, </slice>) and <|im_start|> tokenize to their
 * single special ids; the GGUF's chat template renders a ChatML prompt (@huggingface/jinja) that llama.cpp tokenizes
 * with those specials.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gguf } from "@huggingface/gguf";
import { Template } from "@huggingface/jinja";
import { plan, DECODERS } from "../../src/convert/convert.js";
import { runPlan } from "../../src/convert/pipeline.js";
import { bnbDecoder } from "../../src/quant/bnb/index.js";
import { writeTinyMinicpmv, writeTinyMinicpmvInt4 } from "../../fixtures/minicpmv.js";
import { withModel, tokenize, vocabSize, nextTokenLogProbs, disposeTestLlama } from "../support/llama.js";

// bitsandbytes checkpoints are read through the decoder registered in src/convert/convert.ts
assert.ok(DECODERS.includes(bnbDecoder), "bnbDecoder is registered in DECODERS");

/** MiniCPM-V 2.6's added tokens (added_tokens.json) that mtmd and the chat format rely on. */
const SPECIAL: Record<string, number> = {
  "<|endoftext|>": 151643,
  "<|im_start|>": 151644,
  "<|im_end|>": 151645,
  "<image>": 151646,
  "</image>": 151647,
  "<slice>": 151656,
  "</slice>": 151657,
  "<image_id>": 151658,
  "</image_id>": 151659,
};

const CHATML =
  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
  "<|im_start|>user\n(<image>./</image>)\nWhat is in the picture?<|im_end|>\n" +
  "<|im_start|>assistant\n";

let tmp = "";
const ggufs: Record<"bf16" | "int4", string> = { bf16: "", int4: "" };

/** Convert only the language model of a MiniCPM-V folder (the mmproj is not loadable by node-llama-cpp). */
async function convertLlm(dir: string, outtype: string, out: string): Promise<string> {
  const p = await plan({ input: dir, outtype, outfile: out });
  try {
    assert.deepEqual(p.files.map((f) => f.role), ["model", "mmproj"]);
    await runPlan([p.files[0]!], {});
  } finally {
    await p.source.close();
  }
  return out;
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "ggufy-e2e-minicpmv-"));
  const bf16 = path.join(tmp, "MiniCPM-V-2_6");
  const int4 = path.join(tmp, "MiniCPM-V-2_6-int4");
  await writeTinyMinicpmv(bf16);
  await writeTinyMinicpmvInt4(bf16, int4);
  ggufs.bf16 = await convertLlm(bf16, "auto", path.join(tmp, "llm-bf16.gguf"));
  ggufs.int4 = await convertLlm(int4, "q8_0", path.join(tmp, "llm-int4-q8_0.gguf"));
});
after(async () => {
  await disposeTestLlama();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

for (const which of ["bf16", "int4"] as const) {
  test(`${which}: llama.cpp loads the LLM and tokenizes MiniCPM-V's special tokens to single ids`, async () => {
    await withModel(ggufs[which], async (model) => {
      assert.equal(vocabSize(model), 151666);
      // the weights evaluate: a finite next-token distribution that sums to 1
      const lp = await nextTokenLogProbs(model, tokenize(model, "<|im_start|>user\n<image>", true));
      let sum = 0;
      for (const x of lp) sum += Math.exp(x);
      assert.ok(Math.abs(sum - 1) < 1e-3, `probabilities sum to ${sum}`);
      for (const [text, id] of Object.entries(SPECIAL)) assert.deepEqual(tokenize(model, text, true), [id], text);
      // mtmd finds "\n" by text too
      assert.equal(tokenize(model, "\n", true).length, 1);
      // without special parsing, "<image>" is ordinary text of several tokens
      assert.ok(tokenize(model, "<image>", false).length > 1);
      const ids = tokenize(model, "<image>./</image><slice>./</slice>", true);
      assert.deepEqual([ids[0], ids[ids.length - 1]], [151646, 151657]);
    });
  });

  test(`${which}: the GGUF chat template renders ChatML and llama.cpp tokenizes it with the specials`, async () => {
    const { metadata } = await gguf(ggufs[which], { allowLocalFile: true });
    const md = metadata as Record<string, unknown>;
    assert.equal(md["general.architecture"], "qwen2");
    assert.equal(md["tokenizer.ggml.model"], "gpt2");
    assert.equal(md["tokenizer.ggml.pre"], "qwen2");
    assert.equal(md["tokenizer.ggml.bos_token_id"], 151644);
    assert.equal(md["tokenizer.ggml.eos_token_id"], 151645);
    const tokens = md["tokenizer.ggml.tokens"] as string[];
    const types = md["tokenizer.ggml.token_type"] as number[];
    for (const [text, id] of Object.entries(SPECIAL)) {
      assert.equal(tokens[id], text);
      assert.equal(types[id], 3, `${text} is CONTROL`);
    }
    const tpl = md["tokenizer.chat_template"];
    assert.equal(typeof tpl, "string");
    const rendered = new Template(tpl as string).render({
      messages: [{ role: "user", content: "(<image>./</image>)\nWhat is in the picture?" }],
      add_generation_prompt: true,
    });
    assert.equal(rendered, CHATML);
    await withModel(ggufs[which], (model) => {
      const ids = tokenize(model, rendered, true);
      assert.equal(ids[0], 151644);
      assert.equal(ids.filter((i) => i === 151644).length, 3);
      assert.equal(ids.filter((i) => i === 151645).length, 2);
      assert.ok(ids.includes(151646) && ids.includes(151647));
      assert.deepEqual(ids.slice(-3), [151644, ...tokenize(model, "assistant\n", false)]);
    });
  });
}
