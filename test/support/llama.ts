/**
 * node-llama-cpp (the pinned 3.21.1, CPU prebuilt) as the end-to-end client in tests: one cached Llama
 * instance, models that are always disposed, tokenization, the full next-token distribution and greedy text.
 */
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type LlamaContextOptions, type Token, type ControlledEvaluateInputItem } from "node-llama-cpp";

/** node-llama-cpp brands token ids; ours are plain numbers. */
function asTokens(ids: readonly number[]): Token[] {
  return ids as unknown as Token[];
}

let llamaPromise: Promise<Llama> | undefined;

/** The shared Llama instance: CPU only, never builds or downloads, logs warnings and errors only. */
export function testLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({
    gpu: false,
    build: "never",
    logLevel: process.env["GGUFY_LLAMA_LOG"] === "debug" ? LlamaLogLevel.debug : LlamaLogLevel.error,
    progressLogs: false,
  });
  return llamaPromise;
}

/** Dispose the shared instance (call from a test file's `after` so the process can exit promptly). */
export async function disposeTestLlama(): Promise<void> {
  const p = llamaPromise;
  llamaPromise = undefined;
  if (p) await (await p).dispose();
}

/** Load `gguf`, run `fn`, and dispose the model whatever happens. */
export async function withModel<T>(gguf: string, fn: (model: LlamaModel) => Promise<T> | T): Promise<T> {
  const llama = await testLlama();
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/** llama.cpp's tokenization, never adding BOS/EOS; `specialTokens` parses `<|im_start|>`-like text as special tokens. */
export function tokenize(model: LlamaModel, text: string, specialTokens = false): number[] {
  return model.tokenize(text, specialTokens).map(Number);
}

/** Context settings for numerical comparisons. */
export interface EvalOptions {
  /**
   * `exact` (default): F32 KV cache and no flash attention, so llama.cpp stays in float32 end to end.
   * `default`: node-llama-cpp's defaults (F16 KV cache, flash attention "auto").
   */
  precision?: "exact" | "default";
  /** CPU threads (default 1: ggml's spinning thread barriers make tiny models far slower on busy, oversubscribed cores) */
  threads?: number;
  /** LoRA GGUF adapters applied at run time (llama.cpp's llama_adapter_lora, through node-llama-cpp's `lora` context option) */
  lora?: readonly { filePath: string; scale?: number }[];
}

function contextOptions(nTokens: number, o: EvalOptions): LlamaContextOptions {
  const opts: LlamaContextOptions = {
    contextSize: Math.max(256, Math.ceil(nTokens / 256) * 256),
    batchSize: Math.max(32, Math.min(512, nTokens)),
    threads: o.threads ?? 1,
    sequences: 1,
  };
  if (o.lora?.length) opts.lora = { adapters: o.lora.map((a) => ({ ...a })) };
  if ((o.precision ?? "exact") === "exact") {
    opts.flashAttention = false;
    opts.experimentalKvCacheKeyType = "F32";
    opts.experimentalKvCacheValueType = "F32";
  }
  return opts;
}

/** Every sampling filter off: temperature 1, top-k 0 (= the whole vocabulary), top-p 1, min-p 0, no penalties. */
const FULL_DISTRIBUTION = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;

/**
 * log P(next token | tokenIds) for every token of the vocabulary, from the probabilities llama.cpp reports
 * with every sampling filter off (softmax of the raw logits). Index = token id.
 */
export async function nextTokenLogProbs(model: LlamaModel, tokenIds: readonly number[], o: EvalOptions = {}): Promise<Float64Array> {
  const [lp] = await logProbsAt(model, tokenIds, [tokenIds.length - 1], o);
  return lp!;
}

/** As nextTokenLogProbs, after each of the given positions (0-based indexes into tokenIds), in one evaluation. */
export async function logProbsAt(model: LlamaModel, tokenIds: readonly number[], positions: readonly number[], o: EvalOptions = {}): Promise<Float64Array[]> {
  if (tokenIds.length === 0) throw new Error("logProbsAt: no tokens");
  for (const p of positions) if (!(Number.isInteger(p) && p >= 0 && p < tokenIds.length)) throw new RangeError(`position ${p} outside 0…${tokenIds.length - 1}`);
  const want = new Set(positions);
  const nVocab = vocabSize(model);
  const ctx = await model.createContext(contextOptions(tokenIds.length, o));
  try {
    const seq = ctx.getSequence();
    const input: ControlledEvaluateInputItem[] = asTokens(tokenIds).map((t, i) => (want.has(i) ? [t, { generateNext: { probabilities: true, options: { ...FULL_DISTRIBUTION } } }] : t));
    const out = await seq.controlledEvaluate(input);
    return positions.map((p) => {
      const probs = out[p]?.next?.probabilities;
      if (!probs) throw new Error(`no probabilities at position ${p}`);
      if (probs.size !== nVocab) throw new Error(`llama.cpp returned ${probs.size} probabilities, the vocabulary has ${nVocab} tokens`);
      const lp = new Float64Array(nVocab).fill(-Infinity);
      for (const [tok, pr] of probs) lp[tok] = Math.log(pr);
      return lp;
    });
  } finally {
    await ctx.dispose();
  }
}

/** Number of tokens in the model's vocabulary (the rows of its logits). */
export function vocabSize(model: LlamaModel): number {
  const md = model.fileInfo.metadata as unknown as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } };
  const n = md.tokenizer?.ggml?.tokens?.length;
  if (typeof n !== "number") throw new Error("the GGUF has no tokenizer.ggml.tokens");
  return n;
}

export interface GreedyResult {
  /** generated text only (the prompt excluded), decoded after the prompt's tokens */
  text: string;
  /** generated token ids */
  tokens: number[];
  /** prompt token ids, BOS included when the model adds one */
  promptTokens: number[];
}

/**
 * Greedy (temperature 0, no penalties) continuation of `prompt` for up to `nTokens` tokens, stopping at an
 * end-of-generation token. A string prompt is tokenized with BOS when the model asks for it
 * (tokenizer.ggml.add_bos_token); an array is used as is. An empty string prompt means BOS alone.
 */
export async function greedyTokens(model: LlamaModel, prompt: string | readonly number[], nTokens: number, o: EvalOptions = {}): Promise<GreedyResult> {
  let promptTokens: number[];
  if (typeof prompt === "string") {
    const bos = model.tokens.bos;
    promptTokens = [...(model.tokens.shouldPrependBosToken && bos != null ? [Number(bos)] : []), ...tokenize(model, prompt)];
  } else promptTokens = [...prompt];
  if (promptTokens.length === 0) throw new Error("greedy: empty prompt and the model adds no BOS");
  const ctx = await model.createContext(contextOptions(promptTokens.length + nTokens, o));
  const tokens: number[] = [];
  try {
    const seq = ctx.getSequence();
    if (nTokens > 0) {
      for await (const t of seq.evaluate(asTokens(promptTokens), { temperature: 0 })) {
        if (model.isEogToken(t)) break;
        tokens.push(Number(t));
        if (tokens.length >= nTokens) break;
      }
    }
  } finally {
    await ctx.dispose();
  }
  const text = model.detokenize(asTokens(tokens), false, asTokens(promptTokens));
  return { text, tokens, promptTokens };
}

/** Greedy continuation as text (see greedyTokens). */
export async function greedy(model: LlamaModel, prompt: string | readonly number[], nTokens: number, o: EvalOptions = {}): Promise<string> {
  return (await greedyTokens(model, prompt, nTokens, o)).text;
}
