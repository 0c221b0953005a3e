import { GgufyError } from "../errors.js";
import { llama } from "./llama.js";
import { minicpmv } from "./minicpmv.js";
import { qwen2 } from "./qwen2.js";
import { gemma2, gemma3 } from "./gemma.js";
import { phi3 } from "./phi3.js";
import { qwen3 } from "./qwen3.js";
import { qwen3moe } from "./qwen3moe.js";
import { qwen2vl } from "./qwen2vl.js";
import type { ModelConverter } from "./types.js";

/** Every architecture ggufy converts, one module each. */
export const MODELS: readonly ModelConverter[] = [llama, qwen2, minicpmv, qwen3, qwen3moe, gemma2, gemma3, phi3, qwen2vl];


export function findModel(config: Record<string, unknown>, file: string, models: readonly ModelConverter[] = MODELS): ModelConverter {
  const archs = Array.isArray(config["architectures"]) ? (config["architectures"] as unknown[]).filter((a): a is string => typeof a === "string") : [];
  for (const a of archs) {
    const m = models.find((m) => m.hfArchitectures.includes(a));
    if (m) return m;
  }
  const mt = config["model_type"];
  if (typeof mt === "string") {
    const m = models.find((m) => m.id === mt);
    if (m) return m;
  }
  throw new GgufyError("E_UNSUPPORTED_ARCH", `architecture ${JSON.stringify(archs[0] ?? mt ?? "unknown")} is not supported (supported: ${models.flatMap((m) => m.hfArchitectures).join(", ")})`, { file });
}
