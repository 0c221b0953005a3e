/** `ggufy inspect`: what is in a GGUF file, a safetensors file or a model folder. */
import { stat } from "node:fs/promises";
import { GgufyError } from "../errors.js";
import path from "node:path";
import { readGguf } from "../formats/gguf/reader.js";
import { GGUFValueType, type GGUFValue } from "../formats/gguf/types.js";
import { typeName } from "../quant/ggml/types.js";
import { readSafetensorsHeader } from "../formats/safetensors/reader.js";
import { SourceCheckpoint } from "../convert/source.js";
import { DECODERS } from "../convert/convert.js";
import type { ModuleInfo } from "../source/types.js";
import { jsonSafe, maxOf, termSafe } from "./escape.js";
import { ADAPTER_CONFIG, openLoraAdapter } from "../convert/lora/adapter.js";

export interface InspectResult {
  kind: "gguf" | "safetensors" | "checkpoint" | "lora-adapter";
  path: string;
  metadata: Record<string, unknown>;
  tensors: { name: string; shape: number[]; type: string; bytes?: number; encoding?: string }[];
  /** a model folder's quantized modules, as their scheme describes them (scheme, bits, group size, act-order, zero points) */
  modules?: ModuleInfo[];
  /** a PEFT LoRA adapter folder: every target with its rank, alpha and scale; modules_to_save replacements */
  lora?: { targets: { module: string; rank: number; alpha: number; scale: number; embedding: boolean; a: number[]; b: number[] }[]; saved: { tensor: string; shape: number[] }[] };
}

function jsonValue(v: GGUFValue, full: boolean): unknown {
  if (v.type === GGUFValueType.ARRAY) {
    const arr = Array.from(v.value, (x) => (typeof x === "bigint" ? x.toString() : x));
    if (full || arr.length <= 8) return arr;
    return { length: arr.length, first: arr.slice(0, 5) };
  }
  return typeof v.value === "bigint" ? v.value.toString() : v.value;
}

export async function inspect(target: string, opts: { full?: boolean } = {}): Promise<InspectResult> {
  const p = path.resolve(target);
  const st = await stat(p).catch((e: Error) => {
    throw new GgufyError("E_IO", `cannot read: ${e.message}`, { file: p });
  });
  if (st.isDirectory() && (await stat(path.join(p, ADAPTER_CONFIG)).catch(() => undefined))) {
    const a = await openLoraAdapter(p);
    try {
      const c = a.config;
      return {
        kind: "lora-adapter",
        path: p,
        metadata: {
          peft_type: c.peftType, r: c.r, lora_alpha: c.loraAlpha, use_rslora: c.useRslora, target_modules: c.targetModules,
          ...(Object.keys(c.rankPattern).length ? { rank_pattern: c.rankPattern } : {}), ...(Object.keys(c.alphaPattern).length ? { alpha_pattern: c.alphaPattern } : {}),
          ...(c.modulesToSave.length ? { modules_to_save: c.modulesToSave } : {}), ...(c.baseModelNameOrPath !== undefined ? { base_model_name_or_path: c.baseModelNameOrPath } : {}),
        },
        tensors: [...a.targets.flatMap((t) => [t.a, t.b]), ...a.saved.map((s) => s.tensor)].map((t) => ({ name: t.name, shape: [...t.shape], type: t.dtype, bytes: t.byteLength })),
        lora: {
          targets: a.targets.map((t) => ({ module: t.baseName.replace(/\.weight$/, ""), rank: t.rank, alpha: t.alpha, scale: t.scale, embedding: t.embedding, a: [...t.a.shape], b: [...t.b.shape] })),
          saved: a.saved.map((s) => ({ tensor: s.baseName, shape: [...s.tensor.shape] })),
        },
      };
    } finally {
      await a.close();
    }
  }
  if (st.isDirectory()) {
    const src = await SourceCheckpoint.open(p, DECODERS);
    try {
      return {
        kind: "checkpoint",
        path: p,
        metadata: { architectures: src.config["architectures"], model_type: src.config["model_type"], quantization_config: src.config["quantization_config"], files: src.st.files.map((f) => path.basename(f)) },
        tensors: src.names().map((n) => {
          const t = src.get(n)!;
          return { name: n, shape: [...t.shape], type: t.dtype, encoding: t.encoding };
        }),
        ...(src.modules().length ? { modules: src.modules() } : {}),
      };
    } finally {
      await src.close();
    }
  }
  if (p.endsWith(".safetensors")) {
    const h = await readSafetensorsHeader(p);
    return {
      kind: "safetensors",
      path: p,
      metadata: h.metadata,
      tensors: h.order.map((n) => {
        const t = h.tensors.get(n)!;
        return { name: n, shape: [...t.shape], type: t.dtype, bytes: t.byteLength };
      }),
    };
  }
  const g = await readGguf(p);
  const metadata: Record<string, unknown> = { "GGUF.version": g.version };
  for (const k of g.keys) metadata[k] = jsonValue(g.kvs.get(k)!, opts.full ?? false);
  return { kind: "gguf", path: p, metadata, tensors: g.tensors.map((t) => ({ name: t.name, shape: t.ne, type: typeName(t.type), bytes: t.bytes })) };
}

/**
 * The text report. Every string that came from the file — keys, values, tensor names, the path — is
 * escaped for the terminal (escape.ts); nothing recurses or spreads in proportion to the input.
 */
export function formatInspect(r: InspectResult): string {
  const lines: string[] = [`${r.kind}: ${termSafe(r.path)}`];
  for (const [k, v] of Object.entries(r.metadata)) {
    if (v === undefined) continue;
    let s = jsonSafe(v);
    if (s.length > 160) s = s.slice(0, 157).replace(/\\(u[0-9a-f]{0,3}|x[0-9a-f]?)?$/, "") + "...";
    lines.push(`  ${termSafe(k)} = ${s}`);
  }
  const counts = new Map<string, number>();
  for (const t of r.tensors) counts.set(t.type, (counts.get(t.type) ?? 0) + 1);
  lines.push(`${r.tensors.length} tensors (${[...counts].map(([t, n]) => `${n} ${termSafe(t)}`).join(", ")})`);
  const names = r.tensors.map((t) => termSafe(t.name));
  const w = maxOf(names, (n) => n.length, 4);
  if (r.lora) {
    lines.push(`${r.lora.targets.length} LoRA target(s):`);
    const mw = maxOf(r.lora.targets, (t) => termSafe(t.module).length, 4);
    for (const t of r.lora.targets) lines.push(`  ${termSafe(t.module).padEnd(mw)}  r ${t.rank}  alpha ${t.alpha}  scale ${t.scale}${t.embedding ? "  (embedding)" : ""}  A [${t.a.join(", ")}]  B [${t.b.join(", ")}]`);
    for (const s of r.lora.saved) lines.push(`  ${termSafe(s.tensor)}  replaced (modules_to_save) [${s.shape.join(", ")}]`);
  }
  r.tensors.forEach((t, i) => {
    const extra = t.encoding && t.encoding !== t.type ? `  ${termSafe(t.encoding)}` : "";
    lines.push(`  ${names[i]!.padEnd(w)}  ${termSafe(t.type).padEnd(6)}  [${t.shape.join(", ")}]${t.bytes !== undefined ? `  ${t.bytes} B` : ""}${extra}`);
  });
  return lines.join("\n");
}
