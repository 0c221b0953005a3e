/**
 * llama-quantize's per-tensor type choice (src/quant/presets.ts) against:
 * - the MiniCPM-V 2.6 table worked out by hand from src/llama-quant.cpp llama_tensor_get_type_impl
 *   (docs/minicpmv.md),
 * - llama.cpp itself: `llama_quant_compute_types` of the bundled libllama (v0.4.0) on mock models,
 *   for every ftype × several architectures/shapes × the --pure / --output-tensor-type /
 *   --token-embedding-type / --tensor-type / --leave-output-tensor options,
 * - the real `llama_model_quantize` on all-zero GGUFs (real hparams loader: LLM_TYPE_70B, imatrix refusals).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GGMLType as G, typeName } from "../../src/quant/ggml/types.js";
import {
  allowsQuantization, fallbackType, finalPresetTypes, findLlamaFtype, findPreset, FT, IMATRIX_PRESETS, isType70B, LLAMA_FTYPES,
  imatrixRequiredBy, PRESETS, presetTypes, quantizeOrder, UNSUPPORTED_PRESETS, useMoreBits, type PresetOptions, type QuantTensor,
} from "../../src/quant/presets.js";
import { kv } from "../../src/formats/gguf/types.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { llamaComputeTypes, llamaQuantize, writeZeroGguf, type LlamaQuantizeParams, type TypesRequest } from "../support/llama-quantize.js";

// ---- synthetic models ----------------------------------------------------------------------------

interface ModelCfg {
  label: string;
  arch: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  tied?: boolean;
  /** q/k/v biases (Qwen2) */
  biases?: boolean;
  /** one fused attn_qkv instead of q/k/v (Falcon); no ffn_gate */
  fused?: boolean;
  /** experts (Mixtral-style 3-D ffn_*_exps + ffn_gate_inp) */
  experts?: number;
}

/** GGUF tensor names and ne, in convert order (token_embd, blocks, output_norm, output). */
function modelTensors(c: ModelCfg): QuantTensor[] {
  const H = c.hidden;
  const hd = Math.trunc(H / c.heads);
  const kvDim = hd * c.kvHeads;
  const out: QuantTensor[] = [{ name: "token_embd.weight", ne: [H, c.vocab] }];
  for (let i = 0; i < c.layers; i++) {
    const b = `blk.${i}.`;
    out.push({ name: b + "attn_norm.weight", ne: [H] });
    if (c.fused) {
      out.push({ name: b + "attn_norm.bias", ne: [H] });
      out.push({ name: b + "attn_qkv.weight", ne: [H, H + 2 * kvDim] });
    } else {
      out.push({ name: b + "attn_q.weight", ne: [H, H] });
      if (c.biases) out.push({ name: b + "attn_q.bias", ne: [H] });
      out.push({ name: b + "attn_k.weight", ne: [H, kvDim] });
      if (c.biases) out.push({ name: b + "attn_k.bias", ne: [kvDim] });
      out.push({ name: b + "attn_v.weight", ne: [H, kvDim] });
      if (c.biases) out.push({ name: b + "attn_v.bias", ne: [kvDim] });
    }
    out.push({ name: b + "attn_output.weight", ne: [H, H] });
    if (!c.fused) out.push({ name: b + "ffn_norm.weight", ne: [H] });
    if (c.experts) {
      const E = c.experts;
      out.push({ name: b + "ffn_gate_inp.weight", ne: [H, E] });
      out.push({ name: b + "ffn_gate_exps.weight", ne: [H, c.ffn, E] });
      out.push({ name: b + "ffn_up_exps.weight", ne: [H, c.ffn, E] });
      out.push({ name: b + "ffn_down_exps.weight", ne: [c.ffn, H, E] });
    } else {
      if (!c.fused) out.push({ name: b + "ffn_gate.weight", ne: [H, c.ffn] });
      out.push({ name: b + "ffn_up.weight", ne: [H, c.ffn] });
      out.push({ name: b + "ffn_down.weight", ne: [c.ffn, H] });
    }
  }
  out.push({ name: "output_norm.weight", ne: [H] });
  if (!c.tied) out.push({ name: "output.weight", ne: [H, c.vocab] });
  return out;
}

const baseOpts = (c: ModelCfg): PresetOptions => ({ nLayer: c.layers, nHead: c.heads, nHeadKv: c.kvHeads, nExpert: c.experts ?? 0, arch: c.arch });

const MINICPMV: ModelCfg = { label: "MiniCPM-V 2.6 LLM (Qwen2-7B)", arch: "qwen2", layers: 28, hidden: 3584, heads: 28, kvHeads: 4, ffn: 18944, vocab: 151666, biases: true };

const CONFIGS: ModelCfg[] = [
  { label: "qwen2 8L gqa4 odd-ffn", arch: "qwen2", layers: 8, hidden: 256, heads: 4, kvHeads: 1, ffn: 544, vocab: 1000, biases: true },
  { label: "qwen2 16L gqa2 tied", arch: "qwen2", layers: 16, hidden: 256, heads: 4, kvHeads: 2, ffn: 512, vocab: 1000, biases: true, tied: true },
  MINICPMV,
  { label: "llama 32L mha", arch: "llama", layers: 32, hidden: 4096, heads: 32, kvHeads: 32, ffn: 11008, vocab: 32000 },
  { label: "llama 80L gqa8 (70B)", arch: "llama", layers: 80, hidden: 8192, heads: 64, kvHeads: 8, ffn: 28672, vocab: 128256 },
  { label: "llama 80L mha (65B)", arch: "llama", layers: 80, hidden: 8192, heads: 64, kvHeads: 64, ffn: 22016, vocab: 32000 },
  { label: "falcon 32L fused qkv", arch: "falcon", layers: 32, hidden: 4544, heads: 71, kvHeads: 1, ffn: 18176, vocab: 65024, fused: true },
  { label: "mixtral 32L 8 experts", arch: "llama", layers: 32, hidden: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 32000, experts: 8 },
  { label: "qwen2 8L hidden 320 (fallbacks)", arch: "qwen2", layers: 8, hidden: 320, heads: 5, kvHeads: 1, ffn: 544, vocab: 1000, biases: true },
  { label: "qwen2 8L hidden 328 tied (f16 fallbacks)", arch: "qwen2", layers: 8, hidden: 328, heads: 4, kvHeads: 1, ffn: 512, vocab: 1000, biases: true, tied: true },
];

interface OptCase {
  label: string;
  opts: Omit<PresetOptions, "nLayer" | "nHead" | "nHeadKv">;
  /** the same, as llama_model_quantize_params (tensor-type patterns as strings) */
  params: Omit<LlamaQuantizeParams, "ftype">;
}

const re = (pairs: [string, G][]): { opts: { tensorTypes: [RegExp, G][] }; params: { tensorTypes: [string, number][] } } => ({
  opts: { tensorTypes: pairs.map(([p, t]) => [new RegExp(p), t]) },
  params: { tensorTypes: pairs },
});

const OPTION_CASES: OptCase[] = [
  { label: "defaults", opts: {}, params: {} },
  { label: "--pure", opts: { pure: true }, params: { pure: true } },
  { label: "--output-tensor-type q8_0", opts: { outputTensorType: G.Q8_0 }, params: { outputTensorType: G.Q8_0 } },
  { label: "--token-embedding-type q4_0", opts: { tokenEmbeddingType: G.Q4_0 }, params: { tokenEmbeddingType: G.Q4_0 } },
  { label: "--output-tensor-type f16 --token-embedding-type q8_0", opts: { outputTensorType: G.F16, tokenEmbeddingType: G.Q8_0 }, params: { outputTensorType: G.F16, tokenEmbeddingType: G.Q8_0 } },
  { label: "--leave-output-tensor", opts: { leaveOutputTensor: true }, params: { leaveOutputTensor: true } },
  { label: "--tensor-type attn_v=q8_0", ...re([["attn_v", G.Q8_0]]) },
  { label: "--tensor-type blk.[0-2].attn_v=q5_0 ffn_down=q8_0 token_embd=q4_1 output=q5_1", ...re([["blk\\.[0-2]\\.attn_v", G.Q5_0], ["ffn_down", G.Q8_0], ["token_embd", G.Q4_1], ["^output\\.", G.Q5_1]]) },
  { label: "--tensor-type (ffn_up|ffn_gate)=q4_K blk\\.1\\.=q6_K (first match wins)", ...re([["ffn_(up|gate)", G.Q4_K], ["blk\\.1\\.", G.Q6_K]]) },
  {
    label: "--pure --output-tensor-type q6_K --token-embedding-type f16 --tensor-type attn_q=q8_0",
    opts: { pure: true, outputTensorType: G.Q6_K, tokenEmbeddingType: G.F16, tensorTypes: [[/attn_q/, G.Q8_0]] },
    params: { pure: true, outputTensorType: G.Q6_K, tokenEmbeddingType: G.F16, tensorTypes: [["attn_q", G.Q8_0]] },
  },
];

const nm = (t: G | undefined): string => (t === undefined ? "copy" : typeName(t));

// ---- pure functions ------------------------------------------------------------------------------

test("use_more_bits layer sets", () => {
  const set = (n: number): number[] => Array.from({ length: n }, (_, i) => i).filter((i) => useMoreBits(i, n));
  // llama-quant.cpp llama_tensor_get_type_impl: use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
  assert.deepEqual(set(28), [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
  assert.deepEqual(set(8), [0, 3, 6, 7]);
  assert.deepEqual(set(16), [0, 1, 4, 7, 10, 13, 14, 15]);
  assert.deepEqual(set(32), [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  assert.deepEqual(set(4), [2, 3]); // n/8 = 0, 7n/8 = 3; (i - 0) % 3 == 2 → 2
});

test("quantizeOrder: non-block tensors first, then blocks by number, names by byte order", () => {
  const names = ["token_embd.weight", "blk.10.attn_q.weight", "blk.9.ffn_up.weight", "blk.9.attn_v.weight", "output_norm.weight", "output.weight", "blk.0.ffn_down.weight"];
  assert.deepEqual(quantizeOrder(names.map((name) => ({ name }))).map((t) => t.name), [
    "output.weight", "output_norm.weight", "token_embd.weight", "blk.0.ffn_down.weight", "blk.9.attn_v.weight", "blk.9.ffn_up.weight", "blk.10.attn_q.weight",
  ]);
});

test("allowsQuantization: ggml_n_dims, names, exclusions", () => {
  const a = (name: string, ne: number[], leave = false): boolean => allowsQuantization({ name, ne }, { leaveOutputTensor: leave });
  assert.equal(a("blk.0.attn_q.weight", [256, 256]), true);
  assert.equal(a("blk.0.attn_q.weight", [256, 1]), false); // ggml_n_dims = 1
  assert.equal(a("blk.0.attn_q.weight", [256, 1, 4]), true); // n_dims 3
  assert.equal(a("blk.0.attn_q.bias", [256, 256]), false);
  assert.equal(a("blk.0.attn_norm.weight", [256, 256]), false);
  assert.equal(a("output.weight", [256, 100]), true);
  assert.equal(a("output.weight", [256, 100], true), false);
  assert.equal(a("blk.0.ffn_gate_inp.weight", [256, 8]), false);
  assert.equal(a("position_embd.weight", [256, 100]), false);
  assert.equal(a("v.position_embd.weight", [256, 100]), false);
  assert.equal(a("v.patch_embd.weight", [14, 14, 3, 256]), false);
  assert.equal(a("token_embd.weight", [256, 100]), true);
});

test("fallbackType (tensor_type_fallback)", () => {
  assert.equal(fallbackType(G.Q4_K, 544), G.Q5_0);
  assert.equal(fallbackType(G.Q5_K, 544), G.Q5_1);
  assert.equal(fallbackType(G.Q6_K, 544), G.Q8_0);
  assert.equal(fallbackType(G.Q2_K, 544), G.Q4_0);
  assert.equal(fallbackType(G.Q3_K, 544), G.Q4_0);
  assert.equal(fallbackType(G.TQ1_0, 544), G.Q4_0);
  assert.equal(fallbackType(G.IQ4_XS, 544), G.IQ4_NL);
  assert.equal(fallbackType(G.Q4_K, 328), G.F16);
  assert.equal(fallbackType(G.Q8_0, 328), G.F16);
  assert.equal(fallbackType(G.IQ4_NL, 328), G.F16);
  assert.equal(fallbackType(G.Q4_K, 512), G.Q4_K);
});

test("preset table: names, ftype ids, default types; imatrix-only and unsupported presets are not offered", () => {
  const expect: [string, number, G][] = [
    ["F32", 0, G.F32], ["F16", 1, G.F16], ["BF16", 32, G.BF16], ["Q4_0", 2, G.Q4_0], ["Q4_1", 3, G.Q4_1], ["Q8_0", 7, G.Q8_0],
    ["Q5_0", 8, G.Q5_0], ["Q5_1", 9, G.Q5_1], ["Q2_K", 10, G.Q2_K], ["Q3_K_S", 11, G.Q3_K], ["Q3_K_M", 12, G.Q3_K], ["Q3_K_L", 13, G.Q3_K],
    ["Q4_K_S", 14, G.Q4_K], ["Q4_K_M", 15, G.Q4_K], ["Q5_K_S", 16, G.Q5_K], ["Q5_K_M", 17, G.Q5_K], ["Q6_K", 18, G.Q6_K],
    ["IQ4_NL", 25, G.IQ4_NL], ["IQ4_XS", 30, G.IQ4_XS], ["TQ1_0", 36, G.TQ1_0], ["TQ2_0", 37, G.TQ2_0],
    ["IQ3_S", 26, G.IQ3_S], ["IQ3_M", 27, G.IQ3_S],
  ];
  assert.deepEqual(PRESETS.map((p) => [p.name, p.ftype, p.defaultType]).sort(), expect.sort());
  assert.equal(findPreset("q4_k")?.name, "Q4_K_M");
  assert.equal(findPreset("Q5_K")?.name, "Q5_K_M");
  assert.equal(findPreset("Q3_K")?.name, "Q3_K_M");
  for (const n of [...IMATRIX_PRESETS, ...UNSUPPORTED_PRESETS]) {
    assert.equal(findPreset(n), undefined, n);
    assert.ok(findLlamaFtype(n), n);
  }
  assert.equal(findLlamaFtype("IQ2_S")?.defaultType, G.IQ2_XS);
  assert.equal(findLlamaFtype("IQ2_M")?.defaultType, G.IQ2_S);
  assert.equal(findLlamaFtype("IQ3_XS")?.defaultType, G.IQ3_S);
});

test("isType70B follows the archs' load_hparams", () => {
  assert.equal(isType70B("qwen2", { nLayer: 80, nHead: 64, nHeadKv: 8 }), true);
  assert.equal(isType70B("llama", { nLayer: 80, nHead: 64, nHeadKv: 8 }), true);
  assert.equal(isType70B("llama", { nLayer: 80, nHead: 64, nHeadKv: 64 }), false); // 65B
  assert.equal(isType70B("llama", { nLayer: 32, nHead: 32, nHeadKv: 8 }), false);
  assert.equal(isType70B(undefined, { nLayer: 80, nHead: 64, nHeadKv: 8 }), false);
});

// ---- MiniCPM-V 2.6's LLM by hand (docs/minicpmv.md) --------------------------------------------------------

test("worked table: MiniCPM-V 2.6 LLM (28 layers, n_gqa 7, untied)", () => {
  const tensors = quantizeOrder(modelTensors(MINICPMV));
  assert.equal(tensors.length, 339);
  const umb = (i: number): boolean => useMoreBits(i, 28);
  type Rule = { def: G; attnV: (i: number) => G; ffnDown: (i: number) => G; attnOut: G; output: G; tokenEmbd: G };
  const rows: Record<string, Rule> = {
    Q4_K_M: { def: G.Q4_K, attnV: (i) => (umb(i) ? G.Q6_K : G.Q4_K), ffnDown: (i) => (umb(i) ? G.Q6_K : G.Q4_K), attnOut: G.Q4_K, output: G.Q6_K, tokenEmbd: G.Q4_K },
    Q4_K_S: { def: G.Q4_K, attnV: (i) => (i < 4 ? G.Q5_K : G.Q4_K), ffnDown: (i) => (i < 3 ? G.Q5_K : G.Q4_K), attnOut: G.Q4_K, output: G.Q6_K, tokenEmbd: G.Q4_K },
    Q5_K_M: { def: G.Q5_K, attnV: (i) => (umb(i) ? G.Q6_K : G.Q5_K), ffnDown: (i) => (umb(i) ? G.Q6_K : G.Q5_K), attnOut: G.Q5_K, output: G.Q6_K, tokenEmbd: G.Q5_K },
    Q5_K_S: { def: G.Q5_K, attnV: () => G.Q5_K, ffnDown: () => G.Q5_K, attnOut: G.Q5_K, output: G.Q6_K, tokenEmbd: G.Q5_K },
    Q6_K: { def: G.Q6_K, attnV: () => G.Q6_K, ffnDown: () => G.Q6_K, attnOut: G.Q6_K, output: G.Q6_K, tokenEmbd: G.Q6_K },
    Q8_0: { def: G.Q8_0, attnV: () => G.Q8_0, ffnDown: () => G.Q8_0, attnOut: G.Q8_0, output: G.Q8_0, tokenEmbd: G.Q8_0 },
    Q4_0: { def: G.Q4_0, attnV: () => G.Q4_0, ffnDown: () => G.Q4_0, attnOut: G.Q4_0, output: G.Q6_K, tokenEmbd: G.Q4_0 },
    Q3_K_M: { def: G.Q3_K, attnV: (i) => (i < 2 ? G.Q5_K : G.Q4_K), ffnDown: (i) => (i < 1 ? G.Q5_K : G.Q4_K), attnOut: G.Q4_K, output: G.Q6_K, tokenEmbd: G.Q3_K },
    Q2_K: { def: G.Q2_K, attnV: () => G.Q4_K, ffnDown: () => G.Q3_K, attnOut: G.Q3_K, output: G.Q6_K, tokenEmbd: G.Q2_K },
    IQ4_NL: { def: G.IQ4_NL, attnV: () => G.Q5_K, ffnDown: (i) => (i < 3 ? G.Q5_K : G.IQ4_NL), attnOut: G.IQ4_NL, output: G.Q6_K, tokenEmbd: G.IQ4_NL },
    IQ4_XS: { def: G.IQ4_XS, attnV: () => G.Q5_K, ffnDown: (i) => (i < 3 ? G.Q5_K : G.IQ4_XS), attnOut: G.IQ4_XS, output: G.Q6_K, tokenEmbd: G.IQ4_XS },
  };
  for (const [name, r] of Object.entries(rows)) {
    const types = finalPresetTypes(tensors, findPreset(name)!, baseOpts(MINICPMV));
    tensors.forEach((t, k) => {
      const layer = Number(/^blk\.(\d+)\./.exec(t.name)?.[1] ?? -1);
      let want: G | undefined;
      if (t.ne.length < 2 || t.name.endsWith("_norm.weight")) want = undefined;
      else if (t.name === "output.weight") want = r.output;
      else if (t.name === "token_embd.weight") want = r.tokenEmbd;
      else if (t.name.endsWith("attn_v.weight")) want = r.attnV(layer);
      else if (t.name.endsWith("ffn_down.weight")) want = r.ffnDown(layer);
      else if (t.name.endsWith("attn_output.weight")) want = r.attnOut;
      else want = r.def;
      assert.equal(nm(types[k]), nm(want), `${name} ${t.name}`);
    });
  }
  // tally: 29 q6_K (14 attn_v + 14 ffn_down + output), 169 q4_K, 141 copied (F32)
  const tally = new Map<string, number>();
  for (const t of finalPresetTypes(tensors, findPreset("Q4_K_M")!, baseOpts(MINICPMV))) tally.set(nm(t), (tally.get(nm(t)) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(tally), { q6_K: 29, q4_K: 169, copy: 141 });
});

test("fused attn_qkv follows the attn_v rules (llama.cpp's separate ATTENTION_QKV branch is unreachable)", () => {
  const c: ModelCfg = { label: "phi-like", arch: "phi3", layers: 8, hidden: 256, heads: 4, kvHeads: 4, ffn: 512, vocab: 1000, fused: true };
  const tensors = quantizeOrder(modelTensors(c));
  const types = finalPresetTypes(tensors, findPreset("Q4_K_M")!, baseOpts(c));
  const qkv = tensors.map((t, k) => [t.name, types[k]] as const).filter(([n]) => n.endsWith("attn_qkv.weight"));
  assert.deepEqual(qkv.map(([, t]) => nm(t)), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => (useMoreBits(i, 8) ? "q6_K" : "q4_K")));
});

test("--tensor-type hits skip the mixture and its counters (as in llama.cpp)", () => {
  const c = CONFIGS[0]!;
  const tensors = quantizeOrder(modelTensors(c));
  // blk.0.attn_v is taken by the override, so blk.1.attn_v is the mixture's first attn_v (i_attention_wv = 0)
  const types = presetTypes(tensors, findPreset("Q3_K_M")!, { ...baseOpts(c), tensorTypes: [[/blk\.0\.attn_v/, G.Q8_0]] });
  const v = tensors.map((t, k) => [t.name, types[k]] as const).filter(([n]) => n.endsWith("attn_v.weight")).map(([, t]) => nm(t));
  assert.deepEqual(v, ["q8_0", "q5_K", "q5_K", "q4_K", "q4_K", "q4_K", "q4_K", "q4_K"]);
});

// ---- llama.cpp's own choice on mock models ----------------------------------------------------------

test("every ftype × architecture × option set matches llama_quant_compute_types (libllama v0.4.0)", async () => {
  const requests: TypesRequest[] = [];
  const ours: { label: string; names: string[]; types: number[]; allows: boolean[] }[] = [];
  let skipped = 0;
  for (const c of CONFIGS) {
    const tensors = quantizeOrder(modelTensors(c));
    for (const p of LLAMA_FTYPES) {
      // (the 80-layer models are there for LLM_TYPE_70B: the defaults and two option sets suffice)
      for (const oc of c.layers === 80 ? OPTION_CASES.slice(0, 3) : OPTION_CASES) {
        const opts: PresetOptions = { ...baseOpts(c), ...oc.opts };
        let mine: (G | undefined)[];
        try {
          mine = finalPresetTypes(tensors, p, opts);
        } catch (e) {
          // llama.cpp throws the same from its preliminary loop (which would abort the mock helper): Q1_0's 128-block
          assert.match((e as Error).message, /no tensor type fallback is defined for type q1_0/);
          skipped++;
          continue;
        }
        ours.push({
          label: `${c.label} / ${p.name} / ${oc.label}`,
          names: tensors.map((t) => t.name),
          types: mine.map((t) => t ?? G.F32),
          allows: tensors.map((t) => allowsQuantization(t, opts)),
        });
        requests.push({
          model: { architecture: c.arch, nEmbd: c.hidden, nFf: c.ffn, nLayer: c.layers, nHead: c.heads, nHeadKv: c.kvHeads, nExpert: c.experts ?? 0 },
          params: { ftype: p.ftype, ...oc.params },
          tensors,
        });
      }
    }
  }
  const theirs = await llamaComputeTypes(requests);
  assert.equal(theirs.length, ours.length);
  let compared = 0;
  const diffs: string[] = [];
  for (let r = 0; r < ours.length; r++) {
    const o = ours[r]!;
    const t = theirs[r]!;
    for (let k = 0; k < o.names.length; k++) {
      compared++;
      if (o.types[k] !== t.types[k] || o.allows[k] !== t.allows[k]) {
        diffs.push(`${o.label}: ${o.names[k]} ours ${nm(o.types[k])}${o.allows[k] ? "" : " (copy)"} llama.cpp ${nm(t.types[k])}${t.allows[k] ? "" : " (copy)"}`);
      }
    }
  }
  assert.deepEqual(diffs.slice(0, 20), [], `${diffs.length} differences out of ${compared} tensor choices`);
  assert.ok(compared > 100_000);
  assert.ok(skipped < OPTION_CASES.length * CONFIGS.length);
});

// ---- the real llama_model_quantize (real hparams loader) ------------------------------------------

function zeroModelKvs(c: ModelCfg) {
  const a = c.arch;
  return [
    kv.str("general.architecture", a),
    kv.u32(`${a}.block_count`, c.layers),
    kv.u32(`${a}.context_length`, 256),
    kv.u32(`${a}.embedding_length`, c.hidden),
    kv.u32(`${a}.feed_forward_length`, c.ffn),
    kv.u32(`${a}.attention.head_count`, c.heads),
    kv.u32(`${a}.attention.head_count_kv`, c.kvHeads),
    kv.f32(`${a}.attention.layer_norm_rms_epsilon`, 1e-6),
  ];
}

test("real llama_model_quantize on all-zero GGUFs: the same types, including LLM_TYPE_70B from the real loader", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ggufy-presets-"));
  try {
    const cases: [ModelCfg, string, Omit<LlamaQuantizeParams, "ftype">][] = [
      [{ label: "qwen2 80L (70B)", arch: "qwen2", layers: 80, hidden: 256, heads: 4, kvHeads: 1, ffn: 256, vocab: 64, biases: true }, "Q4_K_M", {}],
      [{ label: "qwen2 80L (70B)", arch: "qwen2", layers: 80, hidden: 256, heads: 4, kvHeads: 1, ffn: 256, vocab: 64, biases: true }, "Q3_K_S", {}],
      [{ label: "llama 80L gqa (70B)", arch: "llama", layers: 80, hidden: 256, heads: 4, kvHeads: 1, ffn: 256, vocab: 64 }, "Q4_K_S", {}],
      [{ label: "llama 80L mha (65B)", arch: "llama", layers: 80, hidden: 256, heads: 4, kvHeads: 4, ffn: 256, vocab: 64 }, "Q4_K_S", {}],
      [CONFIGS[0]!, "Q4_K_M", {}],
      [CONFIGS[0]!, "F16", { outputTensorType: G.Q8_0 }],
      [CONFIGS[0]!, "Q5_K_M", { tensorTypes: [["attn_v", G.Q8_0], ["blk\\.3\\.", G.Q4_0]] }],
      [CONFIGS[1]!, "Q2_K", { tokenEmbeddingType: G.Q6_K }],
    ];
    let i = 0;
    for (const [c, presetName, params] of cases) {
      // rows do not matter to the choice (only ne0 and the number of dims): keep 4 per matrix
      const tensors = modelTensors(c).map((t) => (t.ne.length < 2 ? t : { name: t.name, ne: [t.ne[0]!, Math.min(t.ne[1]!, 4), ...t.ne.slice(2)] }));
      const input = path.join(dir, `in-${i}.gguf`);
      const output = path.join(dir, `out-${i++}.gguf`);
      await writeZeroGguf(input, zeroModelKvs(c), tensors);
      const preset = findPreset(presetName)!;
      await llamaQuantize(input, output, { ftype: preset.ftype, ...params });
      const got = await readGguf(output);
      const order = quantizeOrder(tensors);
      assert.deepEqual(got.tensors.map((t) => t.name), order.map((t) => t.name), "output order");
      const opts: PresetOptions = {
        ...baseOpts(c),
        ...(params.outputTensorType !== undefined ? { outputTensorType: params.outputTensorType } : {}),
        ...(params.tokenEmbeddingType !== undefined ? { tokenEmbeddingType: params.tokenEmbeddingType } : {}),
        ...(params.tensorTypes ? { tensorTypes: params.tensorTypes.map(([p, t]) => [new RegExp(p), t] as const) } : {}),
      };
      const mine = finalPresetTypes(order, preset, opts);
      // copied tensors keep the input's type (F32 here)
      assert.deepEqual(mine.map((t) => nm(t ?? G.F32)), got.tensors.map((t) => nm(t.type)), `${c.label} ${presetName} ${JSON.stringify(params)}`);
      await rm(input);
      await rm(output);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** tensor_requires_imatrix for a final type under an ftype */
function requiresImatrix(name: string, t: G | undefined, ftype: number): boolean {
  if (t === undefined || name === "token_embd.weight" || name === "per_layer_token_embd.weight" || name === "output.weight") return false;
  if ([G.IQ3_XXS, G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ1_M, G.IQ1_S].includes(t)) return true;
  return t === G.Q2_K && ftype === FT.Q2_K_S;
}

test("IMATRIX_PRESETS are exactly the ftypes whose mixture needs an imatrix (tensor_requires_imatrix); llama_model_quantize agrees", async () => {
  // (on models whose rows fit 256-blocks and that have separate attn_q/attn_k: elsewhere fallbacks dodge the IQ types)
  for (const c of CONFIGS.filter((c) => c.hidden % 256 === 0 && !c.fused)) {
    const tensors = quantizeOrder(modelTensors(c));
    for (const p of LLAMA_FTYPES) {
      let types: (G | undefined)[];
      try {
        types = finalPresetTypes(tensors, p, baseOpts(c));
      } catch {
        assert.equal(p.name, "Q1_0");
        continue;
      }
      const needs = tensors.some((t, k) => requiresImatrix(t.name, types[k], p.ftype));
      assert.equal(needs, IMATRIX_PRESETS.includes(p.name), `${c.label} ${p.name}`);
    }
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "ggufy-presets-"));
  try {
    const c: ModelCfg = { label: "tiny", arch: "qwen2", layers: 2, hidden: 256, heads: 4, kvHeads: 1, ffn: 256, vocab: 64, biases: true };
    const input = path.join(dir, "in.gguf");
    await writeZeroGguf(input, zeroModelKvs(c), modelTensors(c));
    for (const name of ["IQ3_XS", "Q2_K_S", "IQ2_XXS", "IQ3_M", "IQ3_S"]) {
      const out = path.join(dir, `${name}.gguf`);
      const run = llamaQuantize(input, out, { ftype: findLlamaFtype(name)!.ftype });
      if (IMATRIX_PRESETS.includes(name)) await assert.rejects(run, /requires an imatrix/, name);
      else await run;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("imatrixRequiredBy follows tensor_requires_imatrix (token_embd/output exempt) and ggml_quantize_requires_imatrix", () => {
  const order = [{ name: "token_embd.weight" }, { name: "blk.0.attn_q.weight" }, { name: "output.weight" }];
  assert.equal(imatrixRequiredBy(order, [G.Q4_K, G.IQ3_S, G.Q6_K]), undefined);
  assert.deepEqual(imatrixRequiredBy(order, [G.Q4_K, G.IQ3_XXS, G.Q6_K]), { name: "blk.0.attn_q.weight", type: G.IQ3_XXS });
  for (const t of [G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ1_S, G.IQ1_M]) assert.equal(imatrixRequiredBy(order, [G.Q4_K, t, G.Q6_K])?.type, t);
  // on token_embd / output only what ggml itself refuses without quant_weights
  assert.equal(imatrixRequiredBy(order, [G.IQ2_S, G.Q4_K, G.IQ3_XXS]), undefined);
  assert.equal(imatrixRequiredBy(order, [G.IQ1_M, G.Q4_K, G.Q6_K]), undefined);
  assert.deepEqual(imatrixRequiredBy(order, [G.Q4_K, G.Q4_K, G.IQ2_XXS]), { name: "output.weight", type: G.IQ2_XXS });
  assert.deepEqual(imatrixRequiredBy(order, [G.IQ1_S, G.Q4_K, G.Q6_K]), { name: "token_embd.weight", type: G.IQ1_S });
});
