/**
 * Qwen2-VL / Qwen2.5-VL → the two files llama.cpp's conversion/qwenvl.py writes, checked on plans (no weights
 * read) of tiny checkpoints (fixtures/qwen2vl.ts) and of full-size headers built from the published shapes:
 * tensor names, shapes, types per --mmproj-type, KVs (names, GGUF types, values, order), tensor counts, and the
 * refusals of vision configs llama.cpp cannot run, each by field name. The expected lists are written here from
 * qwenvl.py (Qwen2VLModel / Qwen2VLVisionModel), base.py (TextModel / MmprojModel set_gguf_parameters,
 * prepare_tensors' type rules, tensor_force_quant) and gguf-py's tensor_mapping.py — not from src/models.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile, unlink } from "node:fs/promises";
import path from "node:path";
import { plan, GgufyError, typeName } from "../../src/index.js";
import { GGUFValueType, type GGUFKV } from "../../src/formats/gguf/types.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import {
  QWEN25VL_REAL, QWEN2VL_REAL, QWENVL_IMAGE_MEAN, QWENVL_IMAGE_STD, TINY_QWEN25VL, TINY_QWEN2VL,
  writeQwenVlHeaderOnly, writeTinyQwenVl, type QwenVlDims,
} from "../../fixtures/qwen2vl.js";

let tmp = "";
const dirs: Record<string, string> = {};
before(async () => {
  tmp = await scratchDir("ggufy-qwen2vl-");
  for (const d of [TINY_QWEN2VL, TINY_QWEN25VL]) {
    dirs[d.variant] = path.join(tmp, d.variant);
    await writeTinyQwenVl(dirs[d.variant]!, d);
  }
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

type Row = [string, string, unknown];
const kvRows = (kvs: readonly GGUFKV[], keep: (k: string) => boolean): Row[] =>
  kvs.filter((k) => keep(k.key)).map((k) => {
    const v = k.value as { type: GGUFValueType; itemType?: GGUFValueType; value: unknown };
    // a plan holds float KVs as JS numbers; the file stores them as float32
    const fl = (x: unknown): unknown => (typeof x === "number" && (v.type === GGUFValueType.FLOAT32 || v.itemType === GGUFValueType.FLOAT32) ? Math.fround(x) : x);
    return [k.key, GGUFValueType[v.type], v.type === GGUFValueType.ARRAY ? Array.from(v.value as ArrayLike<unknown>).map(fl) : fl(v.value)];
  });
const f32 = Math.fround;

/** The LLM tensors of qwen2vl: MODEL_TENSORS[QWEN2VL] through TextModel's mapping; tied → no output.weight. */
function llmTensors(d: QwenVlDims): string[] {
  const H = d.llm.hidden;
  const kv = (H / d.llm.heads) * d.llm.kvHeads;
  const F = d.llm.ffn;
  const out = [`token_embd.weight [${H}, ${d.llm.vocab}]`, `output_norm.weight [${H}]`];
  for (let i = 0; i < d.llm.layers; i++) {
    const b = `blk.${i}.`;
    out.push(
      `${b}attn_norm.weight [${H}]`, `${b}ffn_norm.weight [${H}]`,
      `${b}attn_q.weight [${H}, ${H}]`, `${b}attn_q.bias [${H}]`, `${b}attn_k.weight [${H}, ${kv}]`, `${b}attn_k.bias [${kv}]`,
      `${b}attn_v.weight [${H}, ${kv}]`, `${b}attn_v.bias [${kv}]`, `${b}attn_output.weight [${H}, ${H}]`,
      `${b}ffn_gate.weight [${H}, ${F}]`, `${b}ffn_up.weight [${H}, ${F}]`, `${b}ffn_down.weight [${F}, ${H}]`,
    );
  }
  return out.sort();
}

/** The mmproj tensors qwenvl.py writes (ggml ne order). */
function mmprojTensors(d: QwenVlDims): string[] {
  const E = d.vision.embd;
  const F = d.vision.ffn;
  const p = d.vision.patch;
  const q2 = d.variant === "qwen2vl";
  const out = [`v.patch_embd.weight [${p}, ${p}, 3, ${E}]`, `v.patch_embd.weight.1 [${p}, ${p}, 3, ${E}]`, `v.post_ln.weight [${E}]`,
    `mm.0.weight [${4 * E}, ${4 * E}]`, `mm.0.bias [${4 * E}]`, `mm.2.weight [${4 * E}, ${d.llm.hidden}]`, `mm.2.bias [${d.llm.hidden}]`];
  if (q2) out.push(`v.post_ln.bias [${E}]`);
  for (let i = 0; i < d.vision.depth; i++) {
    const b = `v.blk.${i}.`;
    out.push(`${b}ln1.weight [${E}]`, `${b}ln2.weight [${E}]`, `${b}attn_out.weight [${E}, ${E}]`, `${b}attn_out.bias [${E}]`);
    for (const x of ["q", "k", "v"]) out.push(`${b}attn_${x}.weight [${E}, ${E}]`, `${b}attn_${x}.bias [${E}]`);
    if (q2) out.push(`${b}ln1.bias [${E}]`, `${b}ln2.bias [${E}]`);
    out.push(`${b}ffn_up.weight [${E}, ${F}]`, `${b}ffn_up.bias [${F}]`, `${b}ffn_down.weight [${F}, ${E}]`, `${b}ffn_down.bias [${E}]`);
    if (!q2) out.push(`${b}ffn_gate.weight [${E}, ${F}]`, `${b}ffn_gate.bias [${F}]`);
  }
  return out.sort();
}

/** base.py + MmprojModel.tensor_force_quant, for a file of type `ft`. */
function mmprojType(name: string, ne: readonly number[], ft: "f32" | "f16" | "q8_0"): string {
  if (name.includes(".patch_embd.weight")) return ft === "f16" ? "F16" : "F32";
  if (ne.length <= 1) return "F32";
  if (ft === "f32") return "F32";
  if (ft === "f16") return "F16";
  return ne[0]! % 32 === 0 ? "Q8_0" : "F16";
}

function mmprojKvs(d: QwenVlDims, fileType: number): Row[] {
  const rows: Row[] = [
    ["general.file_type", "UINT32", fileType],
    ["clip.has_vision_encoder", "BOOL", true],
    ["clip.vision.projection_dim", "UINT32", d.llm.hidden],
    ["clip.vision.image_size", "UINT32", 560],
    ["clip.vision.patch_size", "UINT32", d.vision.patch],
    ["clip.vision.embedding_length", "UINT32", d.vision.embd],
    // Qwen2-VL: qwenvl.py renames vision_config.hidden_size (the merger's output = LLM width) to intermediate_size
    ["clip.vision.feed_forward_length", "UINT32", d.variant === "qwen2vl" ? d.llm.hidden : d.vision.ffn],
    ["clip.vision.block_count", "UINT32", d.vision.depth],
    ["clip.vision.attention.head_count", "UINT32", d.vision.heads],
    ["clip.vision.image_mean", "ARRAY", QWENVL_IMAGE_MEAN.map(f32)],
    ["clip.vision.image_std", "ARRAY", QWENVL_IMAGE_STD.map(f32)],
    ["clip.projector_type", "STRING", d.variant === "qwen2vl" ? "qwen2vl_merger" : "qwen2.5vl_merger"],
  ];
  if (d.variant === "qwen25vl") rows.push(["clip.use_silu", "BOOL", true], ["clip.vision.n_wa_pattern", "UINT32", d.vision.fullAtt![0]! + 1]);
  rows.push(["clip.vision.attention.layer_norm_epsilon", "FLOAT32", f32(1e-6)]);
  return rows;
}

function llmKvs(d: QwenVlDims): Row[] {
  return [
    ["qwen2vl.block_count", "UINT32", d.llm.layers],
    ["qwen2vl.context_length", "UINT32", d.llm.maxPos],
    ["qwen2vl.embedding_length", "UINT32", d.llm.hidden],
    ["qwen2vl.feed_forward_length", "UINT32", d.llm.ffn],
    ["qwen2vl.attention.head_count", "UINT32", d.llm.heads],
    ["qwen2vl.attention.head_count_kv", "UINT32", d.llm.kvHeads],
    // no rope.scaling.* for type "mrope"; the sections padded to 4, before rope.freq_base
    ["qwen2vl.rope.dimension_sections", "ARRAY", [...d.llm.mrope, 0]],
    ["qwen2vl.rope.freq_base", "FLOAT32", 1e6],
    ["qwen2vl.attention.layer_norm_rms_epsilon", "FLOAT32", f32(1e-6)],
  ];
}

const list = (ts: readonly { out: { name: string; ne: readonly number[] } }[]): string[] => ts.map((t) => `${t.out.name} [${t.out.ne.join(", ")}]`).sort();

for (const d of [TINY_QWEN2VL, TINY_QWEN25VL]) {
  test(`${d.variant} tiny: both files' tensors, shapes, types (--mmproj-type f16, f32, q8_0) and KVs are qwenvl.py's`, async () => {
    const p = await plan({ input: dirs[d.variant]!, outtype: "f32", mmprojType: "f16", outfile: path.join(tmp, "out.gguf") });
    try {
      assert.deepEqual(p.files.map((f) => f.role), ["model", "mmproj"]);
      const [llm, mm] = p.files as [typeof p.files[0], typeof p.files[0]];
      assert.deepEqual(list(llm.tensors), llmTensors(d));
      assert.deepEqual(kvRows(llm.kvs, (k) => k.startsWith("qwen2vl.")), llmKvs(d));
      assert.equal(llm.kvs.find((k) => k.key === "general.architecture")!.value.value, "qwen2vl");
      assert.equal(llm.kvs.find((k) => k.key === "tokenizer.ggml.pre")!.value.value, "qwen2");
      assert.deepEqual(list(mm.tensors), mmprojTensors(d));
      for (const t of mm.tensors) assert.equal(typeName(t.type).toUpperCase(), mmprojType(t.out.name, t.out.ne, "f16"), t.out.name);
      assert.equal(mm.kvs[0]!.key, "general.architecture");
      assert.equal(mm.kvs[0]!.value.value, "clip");
      assert.deepEqual(kvRows(mm.kvs, (k) => k.startsWith("clip.") || k === "general.file_type"), mmprojKvs(d, 1));
      // each Conv2d half comes from one temporal slice of the Conv3d kernel
      const halves = mm.tensors.filter((t) => t.out.name.startsWith("v.patch_embd.weight")).map((t) => t.out.encoding);
      assert.deepEqual(halves, ["bf16, frame 0 of 2", "bf16, frame 1 of 2"]);
      // the other --mmproj-type values, through the projector's own type rule (the planner calls it per tensor)
      const model = p.models[1]!;
      for (const ft of ["f32", "q8_0"] as const) {
        for (const t of model.tensors) assert.equal(typeName(model.chooseType!(t, ft)).toUpperCase(), mmprojType(t.name, t.ne, ft), `${ft} ${t.name}`);
      }
      assert.throws(() => model.chooseType!(model.tensors[0]!, "q4_k"), /--mmproj-type q4_k/);
    } finally {
      await p.close();
    }
  });
}

test("full-size headers (Qwen2-VL-2B-Instruct, Qwen2.5-VL-3B-Instruct shapes): the plan's tensor counts are the converter's", async () => {
  // qwen2vl LLM (tied): token_embd + output_norm + 12 per layer; mmproj: 2 patch halves + 16 per block + post_ln
  // (w+b for Qwen2-VL's LayerNorm, w for 2.5's RMSNorm) + mm.0/mm.2 (w+b)
  const cases: [QwenVlDims, number, number][] = [
    [QWEN2VL_REAL, 2 + 28 * 12, 2 + 32 * 16 + 2 + 4], // 338 + 520
    [QWEN25VL_REAL, 2 + 36 * 12, 2 + 32 * 16 + 1 + 4], // 434 + 519
  ];
  for (const [d, nLlm, nMm] of cases) {
    const dir = path.join(tmp, `full-${d.variant}`);
    await writeQwenVlHeaderOnly(dir, d);
    const p = await plan({ input: dir, outtype: "f16", mmprojType: "f16" });
    try {
      assert.deepEqual(p.files.map((f) => f.tensors.length), [nLlm, nMm], d.variant);
      assert.deepEqual(list(p.files[0]!.tensors), llmTensors(d));
      assert.deepEqual(list(p.files[1]!.tensors), mmprojTensors(d));
      assert.deepEqual(kvRows(p.files[1]!.kvs, (k) => k.startsWith("clip.") || k === "general.file_type"), mmprojKvs(d, 1));
    } finally {
      await p.close();
    }
  }
  assert.deepEqual([338, 520, 434, 519], cases.flatMap(([, a, b]) => [a, b]));
});

/** Plan a copy of a tiny checkpoint whose config.json (or preprocessor_config.json) was edited; returns the error. */
async function refusal(variant: string, edit: (c: Record<string, unknown>) => void, file = "config.json"): Promise<GgufyError> {
  const dir = dirs[variant]!;
  const f = path.join(dir, file);
  const orig = await readFile(f, "utf8");
  const c = JSON.parse(orig) as Record<string, unknown>;
  edit(c);
  await writeFile(f, JSON.stringify(c));
  try {
    const p = await plan({ input: dir, outtype: "f32" });
    await p.close();
    assert.fail("planned");
  } catch (e) {
    assert.ok(e instanceof GgufyError, String(e));
    return e;
  } finally {
    await writeFile(f, orig);
  }
}
const vc = (c: Record<string, unknown>): Record<string, unknown> => c["vision_config"] as Record<string, unknown>;

test("vision configs llama.cpp cannot run are refused in one line naming the field", async () => {
  const cases: [string, (c: Record<string, unknown>) => void, RegExp][] = [
    ["qwen25vl", (c) => (vc(c)["window_size"] = 224), /vision_config\.window_size is 224/],
    ["qwen25vl", (c) => (vc(c)["fullatt_block_indexes"] = [1, 2]), /vision_config\.fullatt_block_indexes is \[1,2\]/],
    ["qwen25vl", (c) => (vc(c)["fullatt_block_indexes"] = [1]), /vision_config\.fullatt_block_indexes is \[1\].*layers \[1,3\]/],
    ["qwen25vl", (c) => delete vc(c)["fullatt_block_indexes"], /vision_config\.fullatt_block_indexes is missing/],
    ["qwen25vl", (c) => (vc(c)["hidden_act"] = "gelu"), /vision_config\.hidden_act is "gelu"/],
    ["qwen25vl", (c) => (vc(c)["out_hidden_size"] = 256), /vision_config\.out_hidden_size is 256/],
    ["qwen2vl", (c) => (vc(c)["spatial_merge_size"] = 4), /vision_config\.spatial_merge_size is 4/],
    ["qwen2vl", (c) => (vc(c)["temporal_patch_size"] = 4), /vision_config\.temporal_patch_size is 4/],
    ["qwen2vl", (c) => (vc(c)["in_chans"] = 1), /vision_config\.in_chans is 1/],
    ["qwen2vl", (c) => (vc(c)["hidden_act"] = "silu"), /vision_config\.hidden_act is "silu"/],
    ["qwen2vl", (c) => (vc(c)["depth"] = "32"), /vision_config\.depth is "32"/],
    ["qwen2vl", (c) => (c["model_type"] = "qwen2_vl_moe"), /model_type is "qwen2_vl_moe"/],
    ["qwen2vl", (c) => ((c["rope_scaling"] as Record<string, unknown>)["mrope_section"] = [8, 12, 8]), /rope_scaling\.mrope_section is \[8,12,8\]/],
  ];
  for (const [variant, edit, re] of cases) {
    const e = await refusal(variant, edit);
    assert.equal(e.code, "E_CONFIG", e.message);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), e.message);
    assert.match(e.file ?? "", /config\.json$/);
  }
  const e = await refusal("qwen2vl", (p) => delete p["image_std"], "preprocessor_config.json");
  assert.match(e.message, /image_std is missing/);
});

test("a vision tensor the projector has no name for, and a missing block tensor, are refused naming the tensor", async () => {
  // depth beyond the stored blocks → the first absent block tensor is named
  const e = await refusal("qwen2vl", (c) => (vc(c)["depth"] = 3));
  assert.equal(e.code, "E_MISSING_TENSOR");
  assert.match(e.tensor ?? "", /^visual\.blocks\.2\./);
  // depth below the stored blocks → the extra block is named
  const e2 = await refusal("qwen2vl", (c) => (vc(c)["depth"] = 1));
  assert.equal(e2.code, "E_UNEXPECTED_TENSOR");
  assert.match(e2.tensor ?? "", /^visual\.blocks\.1\./);
  // a missing preprocessor_config.json
  const pp = path.join(dirs["qwen2vl"]!, "preprocessor_config.json");
  const saved = await readFile(pp);
  await unlink(pp);
  try {
    await assert.rejects(async () => (await plan({ input: dirs["qwen2vl"]!, outtype: "f32" })).close(), /preprocessor_config\.json is missing/);
  } finally {
    await writeFile(pp, saved);
  }
});

test("convert --dry-run (CLI) plans both files; the real run writes exactly what it announced", async () => {
  const { cli } = await import("../cli/helpers.js");
  const { stat, readdir, mkdir } = await import("node:fs/promises");
  const { readGguf } = await import("../../src/index.js");
  const out = path.join(tmp, "dry");
  await mkdir(out, { recursive: true });
  const args = ["convert", dirs["qwen25vl"]!, "--outtype", "q8_0", "--mmproj-type", "q8_0", "--outfile", path.join(out, "llm.gguf")];
  const d = await cli([...args, "--dry-run", "--json"]);
  assert.equal(d.code, 0, d.stderr);
  const p = JSON.parse(d.stdout) as { files: { path: string; role: string; bytes: number; tensors: { name: string; shape: number[]; type: string }[] }[] };
  assert.deepEqual(p.files.map((f) => [f.role, f.tensors.length]), [["model", 2 + 12 * TINY_QWEN25VL.llm.layers], ["mmproj", 2 + 16 * TINY_QWEN25VL.vision.depth + 1 + 4]]);
  assert.deepEqual(await readdir(out).catch(() => []), [], "a dry run writes nothing");
  const r = await cli(args);
  assert.equal(r.code, 0, r.stderr);
  for (const f of p.files) {
    assert.equal((await stat(f.path)).size, f.bytes, f.path);
    const g = await readGguf(f.path);
    assert.deepEqual(g.tensors.map((t) => [t.name, t.ne, typeName(t.type)]), f.tensors.map((t) => [t.name, t.shape, t.type]));
  }
});
