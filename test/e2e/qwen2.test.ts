/**
 * End to end on a tiny random Qwen2 with the real Qwen2 tokenizer: HF folder → GGUF with ggufy → llama.cpp
 * (node-llama-cpp 3.21.1).
 * (a) llama.cpp's tokenization equals llama.cpp's own qwen2 tokenizer test data (ggml-vocab-qwen2.gguf.inp/.out);
 * (b) llama.cpp's next-token distributions equal a plain TypeScript forward pass of the safetensors checkpoint.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { convert } from "../../src/index.js";
import { testData } from "../../fixtures/paths.js";
import { writeTinyQwen2, scratchDir, type TinyQwen2Options } from "../../fixtures/qwen2.js";
import { withModel, logProbsAt, tokenize, vocabSize, disposeTestLlama } from "../support/llama.js";
import { ReferenceDecoder, maxAbsDiff, logSoftmax } from "../support/reference-qwen2.js";

/** Tolerance on log-probabilities, llama.cpp in float32 (F32 KV cache, no flash attention) vs the float64 reference. */
const TOL = 1e-3;

const tmp = await scratchDir("ggufy-e2e-qwen2-");
after(async () => {
  await disposeTestLlama();
  await rm(tmp, { recursive: true, force: true });
});

const built = new Map<string, Promise<{ dir: string; gguf: string }>>();
/** Generate a tiny Qwen2 folder and convert it (once per name). */
function tinyQwen2(name: string, opts: TinyQwen2Options, outtype = "f32"): Promise<{ dir: string; gguf: string }> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      const dir = path.join(tmp, name);
      await writeTinyQwen2(dir, opts);
      const gguf = path.join(tmp, `${name}-${outtype}.gguf`);
      const r = await convert({ input: dir, outfile: gguf, outtype });
      assert.equal(r.files.length, 1);
      assert.equal(path.resolve(r.files[0]!.path), path.resolve(gguf));
      return { dir, gguf };
    })();
    built.set(name, p);
  }
  return p;
}

const MAIN: TinyQwen2Options = { layers: 2, hidden: 256, dtype: "F32", seed: 1 };

/** test-tokenizer-0's reading of a .inp/.out pair: strings split on "\n__ggml_vocab_test__\n", one id line per string. */
async function readVocabTests(base: string): Promise<{ text: string; ids: number[] }[]> {
  const raw = await readFile(base + ".inp", "utf8");
  const sep = "\n__ggml_vocab_test__\n";
  const inputs: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(sep, pos);
    if (next < 0) {
      inputs.push(raw.slice(pos));
      break;
    }
    inputs.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  const lines = (await readFile(base + ".out", "utf8")).split("\n");
  if (lines.at(-1) === "") lines.pop(); // getline: a final newline ends the last line, it does not start one
  if (lines.length !== inputs.length) throw new Error(`${inputs.length} test strings but ${lines.length} result lines`);
  return inputs.map((text, i) => {
    const l = lines[i]!.trim();
    return { text, ids: l === "" ? [] : l.split(" ").map((s) => Number.parseInt(s, 10)) };
  });
}

test("tiny Qwen2 → f32: llama.cpp tokenizes every ggml-vocab-qwen2 test string like test-tokenizer-0 expects", async (t) => {
  const cases = await readVocabTests(testData("llama.cpp-vocab", "ggml-vocab-qwen2.gguf"));
  assert.ok(cases.length >= 40, `${cases.length} cases`);
  const { gguf } = await tinyQwen2("main", MAIN);
  await withModel(gguf, async (model) => {
    assert.equal(vocabSize(model), 151936);
    const failures: string[] = [];
    for (const c of cases) {
      const got = tokenize(model, c.text);
      if (got.join(" ") !== c.ids.join(" ")) failures.push(`${JSON.stringify(c.text)}: got [${got.join(" ")}], want [${c.ids.join(" ")}]`);
    }
    t.diagnostic(`${cases.length - failures.length}/${cases.length} test strings tokenized as expected`);
    assert.deepEqual(failures, []);

    // added tokens: parsed as one special token when asked, as plain text otherwise
    const chat = tokenize(model, "<|im_start|>user\nHi<|im_end|>", true);
    assert.deepEqual(chat, [151644, ...tokenize(model, "user\nHi"), 151645]);
    assert.ok(!tokenize(model, "<|im_start|>").includes(151644));
  });
});

interface Comparison {
  /** max |Δ log p| over the compared positions and the whole vocabulary, per context precision */
  max: Record<"exact" | "default", number>;
  positions: number[];
  /** the same comparison (last position, exact) against a deliberately wrong reference (interleaved RoPE) */
  wrongRope: number;
}

/**
 * Compare llama.cpp with the reference after several positions of a prompt (the first, every third, the last):
 * position 0 has no attention mixing, later ones exercise RoPE and the causal mask.
 */
async function compareDistributions(dir: string, gguf: string, prompt: string, precisions: readonly ("exact" | "default")[], specialTokens = false): Promise<Comparison> {
  const ref = await ReferenceDecoder.load(dir);
  return withModel(gguf, async (model) => {
    const ids = tokenize(model, prompt, specialTokens);
    const positions = ids.map((_, i) => i).filter((i) => i % 3 === 0 || i === ids.length - 1);
    const want = ref.logits(ids, positions).map(logSoftmax);
    const max = { exact: NaN, default: NaN };
    let last: Float64Array | undefined;
    for (const precision of precisions) {
      const ours = await logProbsAt(model, ids, positions, { precision });
      let m = 0;
      for (let k = 0; k < positions.length; k++) m = Math.max(m, maxAbsDiff(ours[k]!, want[k]!).max);
      max[precision] = m;
      if (precision === "exact") last = ours.at(-1);
    }
    const wrongRope = last ? maxAbsDiff(last, ref.nextTokenLogProbs(ids, { interleavedRope: true })).max : NaN;
    return { max, positions, wrongRope };
  });
}

const PROMPT = "Hello, my name is Qwen. I like to write small programs in TypeScript.";

test(`tiny Qwen2 → f32: llama.cpp's next-token distributions equal the reference forward pass (max |Δ log p| ≤ ${TOL})`, async (t) => {
  const { dir, gguf } = await tinyQwen2("main", MAIN);
  const r = await compareDistributions(dir, gguf, PROMPT, ["exact", "default"]);
  t.diagnostic(`F32 KV cache, no flash attention: max |Δ log p| at positions [${r.positions.join(",")}] × 151936 tokens = ${r.max.exact.toExponential(3)} (vs a wrong RoPE layout: ${r.wrongRope.toFixed(3)})`);
  assert.ok(r.max.exact <= TOL, `max |Δ log p| = ${r.max.exact}`);
  assert.ok(r.wrongRope > 100 * TOL, `a wrong RoPE layout is only ${r.wrongRope} away`);
  // node-llama-cpp's default context (F16 KV cache, flash attention auto) rounds K/V to half precision: looser, reported
  t.diagnostic(`default context (F16 KV cache, flash attention auto): max |Δ log p| = ${r.max.default.toExponential(3)}`);
  assert.ok(r.max.default <= 2e-2, `default-context max |Δ log p| = ${r.max.default}`);
});

test(`tiny Qwen2, tied embeddings, BF16, 2 shards, odd FFN → f32: distributions equal the reference (≤ ${TOL})`, async (t) => {
  const { dir, gguf } = await tinyQwen2("tied-bf16-sharded", { tied: true, dtype: "BF16", shards: 2, oddFfn: true, seed: 2 });
  const r = await compareDistributions(dir, gguf, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", ["exact"], true);
  t.diagnostic(`max |Δ log p| at positions [${r.positions.join(",")}] = ${r.max.exact.toExponential(3)}`);
  assert.ok(r.max.exact <= TOL, `max |Δ log p| = ${r.max.exact}`);
});
