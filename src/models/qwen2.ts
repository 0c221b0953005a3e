/**
 * Qwen2 (Qwen2ForCausalLM). NEOX RoPE, so no Q/K permutation; q/k/v biases; rope.freq_base is
 * always written because llama.cpp would otherwise default it to 10000 (Qwen2 uses 1e6).
 */
import type { SourceCheckpoint } from "../convert/source.js";
import { LLAMA_LIKE_NAMES, mapAll, textHparams, textKvs } from "./hf-text.js";
import type { ConvertContext, ModelConverter, ModelFile } from "./types.js";
import { validateTextModel, validateVocab } from "./validate.js";
import path from "node:path";

/** The Qwen2 language model found under `prefix` of a checkpoint (MiniCPM-V keeps it under `llm.`). */
export async function buildQwen2(ctx: ConvertContext, prefix = "", tokenizerDir = ctx.dir): Promise<ModelFile> {
  const file = path.join(ctx.dir, "config.json");
  const h = textHparams(ctx.config, file);
  validateTextModel({ src: ctx.src as SourceCheckpoint, h, configFile: file, prefix, vocabOnly: ctx.vocabOnly === true });
  const arch = "qwen2";
  const kvs = textKvs(arch, h, { alwaysRopeBase: 10000 });
  const vocab = await ctx.loadVocab({ dir: tokenizerDir, arch, config: ctx.config, ...(h.vocabSize !== undefined ? { vocabSize: h.vocabSize } : {}) });
  validateVocab(vocab, { src: ctx.src as SourceCheckpoint, configFile: file, tokenizerDir, prefix, vocabOnly: ctx.vocabOnly === true });
  const tensors = ctx.vocabOnly ? [] : mapAll(ctx.src as SourceCheckpoint, LLAMA_LIKE_NAMES, { prefix });
  return { role: "model", arch, kvs, tensors, vocab };
}

export const qwen2: ModelConverter = {
  id: "qwen2",
  hfArchitectures: ["Qwen2ForCausalLM", "Qwen2Model"],
  async build(ctx: ConvertContext): Promise<ModelFile[]> {
    return [await buildQwen2(ctx)];
  },
};
