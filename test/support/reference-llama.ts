/**
 * Reference for Llama checkpoints in the HF layout (LlamaForCausalLM: rotate_half RoPE, no biases), plus what
 * the stories260K tests need: llama2.c's tok512 decoder and the greedy sample quoted in the data's PROVENANCE.md.
 * The forward pass itself is the shared one in reference-qwen2.ts (same HF equations; biases only when present).
 */
import { readFile } from "node:fs/promises";
import { testData } from "../../fixtures/paths.js";
import { ReferenceDecoder } from "./reference-qwen2.js";

export { ReferenceDecoder } from "./reference-qwen2.js";

export const STORIES260K_HF_DIR = (): string => testData("tinyllamas-stories260K", "derived-hf-llama");

export async function loadLlamaReference(dir: string): Promise<ReferenceDecoder> {
  return ReferenceDecoder.load(dir);
}

/**
 * The greedy (temperature 0) llama2.c sample of stories260K as quoted in
 * test/data/tinyllamas-stories260K/PROVENANCE.md: the text inside `("…")`, without the trailing ellipsis.
 * It is the start of the sample printed in llama2.c's doc/stories260K.md.
 */
export async function stories260kSamplePrefix(): Promise<string> {
  const md = await readFile(testData("tinyllamas-stories260K", "PROVENANCE.md"), "utf8");
  const m = /\("(Once upon a time[^"]*?)\s*…"\)/s.exec(md);
  if (!m) throw new Error("PROVENANCE.md no longer quotes the stories260K greedy sample");
  return m[1]!.replace(/\s+/g, " ").trim();
}

/**
 * The whole greedy sample printed in karpathy/llama2.c doc/stories260K.md (`./run stories260K.bin -z tok512.bin
 * -t 0.0`, 256 steps from BOS), quoted verbatim. PROVENANCE.md states that run.c reproduces it word for word.
 */
export const STORIES260K_DOC_SAMPLE =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
  'Lily\'s mom said, "Lily, let\'s go to the park." Lily was sad and didn\'t know what to do. She said, "I want to play with your ball, but I can\'t find it."\n' +
  'Lily was sad and didn\'t know what to do. She said, "I\'m sorry, Lily. I didn\'t know what to do."\n' +
  'Lily didn\'t want to help her mom, so she said, "I\'m sorry, mom. I didn\'t know what to do." Her mom said, "Don\'t worry, Lily. We can help you.';

/** llama2.c's tokenizer (tok512.bin): pieces by id, decoded the way run.c's decode() does. */
export class Llama2cTokenizer {
  private constructor(readonly pieces: Uint8Array[]) {}

  static async load(file = testData("tinyllamas-stories260K", "tok512.bin"), vocabSize = 512): Promise<Llama2cTokenizer> {
    const b = await readFile(file);
    let off = 4; // int32 max_token_length
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < vocabSize; i++) {
      off += 4; // float score
      const len = b.readInt32LE(off);
      off += 4;
      pieces.push(new Uint8Array(b.subarray(off, off + len)));
      off += len;
    }
    return new Llama2cTokenizer(pieces);
  }

  /** run.c: drop the leading space of a piece that follows BOS (1); `<0xNN>` pieces are raw bytes. */
  decode(ids: readonly number[], prev = 1): string {
    const bytes: number[] = [];
    for (const id of ids) {
      let p = this.pieces[id]!;
      if (prev === 1 && p[0] === 0x20) p = p.subarray(1);
      const s = Buffer.from(p).toString("latin1");
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(s);
      if (m) bytes.push(parseInt(m[1]!, 16));
      else bytes.push(...p);
      prev = id;
    }
    return Buffer.from(bytes).toString("utf8");
  }
}

/** Split into words (whitespace-separated) for word-by-word comparisons. */
export function words(s: string): string[] {
  return s.split(/\s+/).filter((w) => w.length > 0);
}
