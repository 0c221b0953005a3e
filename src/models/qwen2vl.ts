/**
 * Qwen2-VL and Qwen2.5-VL (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`) → two
 * files, as llama.cpp's `conversion/qwenvl.py` writes them from one checkpoint (once without, once with
 * `--mmproj`):
 *
 * - the language model, GGUF `qwen2vl` (qwenvl.py Qwen2VLModel: a plain TextModel — base.py
 *   TextModel.set_gguf_parameters — with M-RoPE): every `model.*` / `lm_head` tensor; `visual.*` is the
 *   projector's (TextModel.filter_tensors skips names containing "visual."). The KVs are the base's plus
 *   `qwen2vl.rope.dimension_sections` = `rope_scaling.mrope_section` padded to 4 with zeros, written
 *   between the rope-scaling KVs and `rope.freq_base` (base.py's order). `rope_scaling.type "mrope"` is
 *   not a scaling: transformers' Qwen2VLConfig rewrites it to "default" (configuration_qwen2_vl.py) and
 *   llama.cpp's converter writes no scaling KV for it ("Unknown RoPE type" warning only).
 * - the vision projector (src/models/qwen2vl-vision.ts).
 *
 * Checkpoint layout: the published one (transformers < 4.52 save_pretrained: `model.layers.*`,
 * `visual.*`, `lm_head.weight`), which is the layout qwenvl.py reads (its vision filter keeps names
 * starting with "visual."). transformers ≥ 4.52's `model.language_model.*` / `model.visual.*` is refused
 * with one line (llama.cpp's qwenvl.py would silently write a projector without any vision tensor).
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { kv } from "../formats/gguf/types.js";
import { LLM, TENSOR, archKey } from "../formats/gguf/keys.js";
import { buildTextDecoder, type DecoderSpec } from "./text-decoder.js";
import { buildQwen2vlMmproj, qwenVlKind, readQwenMeanStd, readQwenVision } from "./qwen2vl-vision.js";
import type { ConvertContext, ModelConverter, ModelFile } from "./types.js";

export const QWEN2VL_ARCH = "qwen2vl";

/**
 * config.json with `rope_scaling.type "mrope"` read as "default" (what transformers' Qwen2VLConfig /
 * Qwen2_5_VLConfig do on load); every other value is left for the base to validate.
 */
export function normalizeMropeConfig(config: Record<string, unknown>): Record<string, unknown> {
  const fix = (o: Record<string, unknown>): Record<string, unknown> => {
    const rs = o["rope_scaling"];
    if (!rs || typeof rs !== "object" || Array.isArray(rs)) return o;
    const r = rs as Record<string, unknown>;
    const key = r["rope_type"] !== undefined ? "rope_type" : "type";
    if (r[key] !== "mrope") return o;
    return { ...o, rope_scaling: { ...r, [key]: "default" } };
  };
  const out = fix(config);
  const tc = out["text_config"];
  if (tc && typeof tc === "object" && !Array.isArray(tc)) return { ...out, text_config: fix(tc as Record<string, unknown>) };
  return out;
}

export const qwen2vlSpec: DecoderSpec = {
  id: "qwen2vl",
  hfArchitectures: ["Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration"],
  arch: QWEN2VL_ARCH,
  // gguf-py constants.py MODEL_TENSORS[MODEL_ARCH.QWEN2VL]
  tensors: [
    TENSOR.TOKEN_EMBD, TENSOR.OUTPUT_NORM, TENSOR.OUTPUT,
    TENSOR.ATTN_NORM, TENSOR.ATTN_Q, TENSOR.ATTN_K, TENSOR.ATTN_V, TENSOR.ATTN_OUT,
    TENSOR.FFN_NORM, TENSOR.FFN_GATE, TENSOR.FFN_DOWN, TENSOR.FFN_UP,
  ],
  // the vision tower and merger go to the mmproj (base.py TextModel.filter_tensors: "visual." in name)
  skip: [/^visual\./],
  kvs: (cfg, h, out) => {
    const rs = cfg.obj("rope_parameters") ?? cfg.obj("rope_scaling");
    const sec = rs?.ints("mrope_section");
    if (!rs || !sec) {
      // llama.cpp's qwen2vl loader requires rope.dimension_sections (llama-model.cpp: get_key_or_arr … required)
      throw new GgufyError("E_CONFIG", "rope_scaling.mrope_section is missing; Qwen2-VL's M-RoPE needs it (llama.cpp's qwen2vl loader requires rope.dimension_sections)", { file: cfg.file });
    }
    const headDim = h.headDim ?? h.nEmbd / h.nHead;
    if (sec.length < 1 || sec.length > 4 || sec.some((s) => s < 0) || sec.reduce((a, b) => a + b, 0) !== headDim / 2) {
      rs.refuse("mrope_section", `is ${JSON.stringify(sec)}; its sections must be non-negative and add up to head_dim/2 = ${headDim / 2} (apply_multimodal_rotary_pos_emb splits the rotary half-dimensions by them), at most 4`);
    }
    const padded = [...sec, 0, 0, 0, 0].slice(0, 4);
    // base.py: the sections come after the rope-scaling KVs and before rope.freq_base
    const at = out.list.findIndex((k) => k.key === archKey(LLM.ROPE_FREQ_BASE, QWEN2VL_ARCH));
    const entry = kv.i32s(archKey(LLM.ROPE_DIMENSION_SECTIONS, QWEN2VL_ARCH), padded);
    if (at < 0) out.list.push(entry);
    else out.list.splice(at, 0, entry);
  },
};

/** The `qwen2vl` language model of a Qwen2-VL / Qwen2.5-VL checkpoint. */
export function buildQwen2vlLlm(ctx: ConvertContext): Promise<ModelFile> {
  return buildTextDecoder({ ...ctx, config: normalizeMropeConfig(ctx.config) }, qwen2vlSpec);
}

export const qwen2vl: ModelConverter = {
  id: "qwen2vl",
  hfArchitectures: qwen2vlSpec.hfArchitectures,
  async build(ctx: ConvertContext): Promise<ModelFile[]> {
    const file = path.join(ctx.dir, "config.json");
    // the vision config and preprocessor settings are checked first: a refusal comes before the tokenizer is read
    if (!ctx.vocabOnly) {
      readQwenVision(ctx.config, file);
      readQwenMeanStd(ctx.dir);
    } else qwenVlKind(ctx.config, file);
    for (const n of ctx.src.names()) {
      if (n.startsWith("model.visual.") || n.startsWith("model.language_model.")) {
        throw new GgufyError("E_UNEXPECTED_TENSOR", "transformers ≥ 4.52's layout (model.language_model.* / model.visual.*) is not supported; ggufy reads the published Qwen2-VL layout (model.layers.*, visual.*), as llama.cpp's conversion/qwenvl.py does", { file: ctx.src.dir, tensor: n });
      }
    }
    const llm = await buildQwen2vlLlm(ctx);
    return ctx.vocabOnly ? [llm] : [llm, buildQwen2vlMmproj(ctx)];
  },
};
