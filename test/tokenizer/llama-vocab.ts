/**
 * llama.cpp (node-llama-cpp 3.21.1) loading a vocabulary ggufy built: the vocab is written as a
 * vocab-only GGUF and opened with `vocabOnly: true`. Shared by the tokenizer tests.
 */
import { after } from "node:test";
import fs from "node:fs";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { vocabToKvs, type GGUFVocab } from "../../src/tokenizer/index.js";
import { encodeGgufHeader } from "../../src/formats/gguf/writer.js";
import { kv, type GGUFKV } from "../../src/formats/gguf/types.js";
import { tempDir } from "./support.js";

let llamaP: Promise<Llama> | undefined;
const llama = () => (llamaP ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false }));
after(async () => {
  if (llamaP) await (await llamaP).dispose();
});

/** Architecture hparams llama.cpp reads even for a vocab-only load (values of the reference vocab files). */
export function vocabHparams(arch: string): GGUFKV[] {
  return [
    kv.str("general.architecture", arch),
    kv.u32(`${arch}.block_count`, 32),
    kv.u32(`${arch}.context_length`, 4096),
    kv.u32(`${arch}.embedding_length`, 4096),
    kv.u32(`${arch}.feed_forward_length`, 11008),
    kv.u32(`${arch}.attention.head_count`, 32),
    kv.u32(`${arch}.attention.head_count_kv`, 32),
    kv.f32(`${arch}.attention.layer_norm_rms_epsilon`, 1e-6),
  ];
}

/**
 * Write `v` as a vocab-only GGUF, load it in llama.cpp, run `fn`, dispose. (node-llama-cpp may log
 * "missing tensor 'token_embd.weight'" while it inspects the file; the vocab-only load itself works.)
 */
export async function withVocabModel<T>(v: GGUFVocab, arch: string, fn: (model: LlamaModel) => T): Promise<T> {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, "vocab.gguf");
    fs.writeFileSync(file, encodeGgufHeader([...vocabHparams(arch), ...vocabToKvs(v)], []).bytes);
    const model = await (await llama()).loadModel({ modelPath: file, vocabOnly: true, gpuLayers: 0 });
    try {
      return fn(model);
    } finally {
      await model.dispose();
    }
  } finally {
    cleanup();
  }
}

/** llama.cpp's tokenization of each text (no BOS; special tokens parsed when `special`). */
export function tokenizeAll(model: LlamaModel, texts: readonly string[], special = false): number[][] {
  return texts.map((t) => model.tokenize(t, special).map(Number));
}

/** Strings whose ids differ, as readable lines ([] when all agree). */
export function differences(texts: readonly string[], got: number[][], want: number[][], names = ["llama.cpp", "expected"]): string[] {
  return texts.flatMap((t, i) => (JSON.stringify(got[i]) === JSON.stringify(want[i]) ? [] : [`${JSON.stringify(t)}: ${names[0]} ${JSON.stringify(got[i])}, ${names[1]} ${JSON.stringify(want[i])}`]));
}
