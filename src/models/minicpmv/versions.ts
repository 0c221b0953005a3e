/**
 * The MiniCPM-V family: which release a config.json is, and what that changes in the conversion.
 *
 * llama.cpp has one MiniCPM-V projector graph for every release (tools/mtmd/models/minicpmv.cpp
 * clip_graph_minicpmv::build: SigLIP/Idefics2 ViT + one-layer resampler, d_head 128); what differs is
 * `clip.minicpmv_version` (tools/mtmd/clip.cpp: the query-count fallback; tools/mtmd/mtmd.cpp: the 2.5 slice
 * template for 2, the 2.6 one for 3/4/5/6/100045, anything else refused), the widths and the language model.
 * The version numbers are the legacy image-encoder script's (tools/mtmd/legacy-models/
 * minicpmv-convert-image-encoder-to-gguf.py `--minicpmv_version`: "MiniCPM-V-2.5 use 2; MiniCPM-V-2.6 use 3;
 * MiniCPM-o-2.6 use 4; MiniCPM-V 4.0 use 5; MiniCPM-o-4.0 use 6", and docs/multimodal/minicpmv4.5.md converts
 * MiniCPM-V 4.5 with 6).
 *
 * The LLM of each release is the class its modeling code instantiates (vLLM model_executor/models/minicpmv.py
 * MiniCPMV2_5 / 2_6 / 4_0 / 4_5 `init_llm`, minicpmo.py for MiniCPM-o): LlamaForCausalLM (2.5: Llama-3-8B;
 * 4.0: MiniCPM4-3B weights in a LlamaConfig), Qwen2ForCausalLM (2.6, o-2.6), Qwen3ForCausalLM (4.5).
 * The release is read from config.json `version` (as vLLM's MiniCPMV.__new__ does), never guessed silently:
 * a config without it is taken as 2.5 (vLLM's rule for the early 2.5 configs) with a warning; MiniCPM-V 2.0
 * (version 1 in the legacy script, a MiniCPM LLM) has no mtmd slice template and is refused.
 */
import { GgufyError } from "../../errors.js";

export type MinicpmvLlm = "llama" | "qwen2" | "qwen3";

export interface MinicpmvRelease {
  /** clip.minicpmv_version */
  readonly clipVersion: number;
  /** the release's name, for messages */
  readonly name: string;
  /** config.json `version` of the release */
  readonly configVersion: number;
  /** `architectures[0]` of the release */
  readonly architecture: "MiniCPMV" | "MiniCPMO";
  readonly llm: MinicpmvLlm;
  /** config.query_num of the release (clip.cpp's fallback when clip.minicpmv_query_num is 0) */
  readonly queryNum: number;
}

/** Every MiniCPM-V release ggufy converts, by clip.minicpmv_version. */
export const MINICPMV_RELEASES: readonly MinicpmvRelease[] = [
  { clipVersion: 2, name: "MiniCPM-Llama3-V 2.5", configVersion: 2.5, architecture: "MiniCPMV", llm: "llama", queryNum: 96 },
  { clipVersion: 3, name: "MiniCPM-V 2.6", configVersion: 2.6, architecture: "MiniCPMV", llm: "qwen2", queryNum: 64 },
  { clipVersion: 4, name: "MiniCPM-o 2.6", configVersion: 2.6, architecture: "MiniCPMO", llm: "qwen2", queryNum: 64 },
  { clipVersion: 5, name: "MiniCPM-V 4.0", configVersion: 4.0, architecture: "MiniCPMV", llm: "llama", queryNum: 64 },
  { clipVersion: 6, name: "MiniCPM-V 4.5", configVersion: 4.5, architecture: "MiniCPMV", llm: "qwen3", queryNum: 64 },
];

/** vision_config.model_type values of the releases: Idefics2VisionTransformer (2.5) or the SigLIP NaViT copy (2.6+). */
export const MINICPMV_VISION_TYPES = ["idefics2", "siglip", "siglip_vision_model"] as const;

/**
 * Top-level modules of MiniCPM-o that are not vision: the Whisper audio encoder (`apm`), its projection and
 * pooling, and the ChatTTS speech decoder (`tts`). llama.cpp's legacy pipeline keeps only `vpm`, `resampler`
 * and `llm` (minicpmv-surgery.py); ggufy skips these by name and says so.
 */
export const MINICPMO_SKIPPED_MODULES = ["apm", "audio_projection_layer", "audio_avg_pooler", "tts"] as const;

export interface DetectedRelease {
  readonly release: MinicpmvRelease;
  /** how it was found, or why it was overridden: shown to the user */
  readonly warnings: readonly string[];
}

function releaseByClip(v: number): MinicpmvRelease | undefined {
  return MINICPMV_RELEASES.find((r) => r.clipVersion === v);
}

const known = (): string => MINICPMV_RELEASES.map((r) => `${r.clipVersion} (${r.name})`).join(", ");

/**
 * The release of a MiniCPMV / MiniCPMO config.json. `override` is `--minicpmv-version N` (a
 * clip.minicpmv_version): it wins, with a warning naming what config.json said.
 */
export function detectMinicpmvRelease(config: Record<string, unknown>, file: string, override?: number): DetectedRelease {
  const archs = Array.isArray(config["architectures"]) ? (config["architectures"] as unknown[]) : [];
  const isO = archs.includes("MiniCPMO") || config["model_type"] === "minicpmo";
  const v = config["version"];
  // openbmb/MiniCPM-Llama3-V-2_5's config.json writes "version": "2.5" (a string; test/data/minicpm-llama3-v-2_5),
  // the later releases a number; vLLM minicpmv.py MiniCPMV.__new__ reads either as str(config.version).split(".")
  const numeric = typeof v === "string" && /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v.trim()) : v;
  if (numeric !== undefined && (typeof numeric !== "number" || !Number.isFinite(numeric))) {
    throw new GgufyError("E_CONFIG", `version must be a number or a numeric string (2.5, 2.6, 4.0, 4.5), found ${JSON.stringify(v)}`, { file });
  }
  const ver = numeric as number | undefined;
  let fromConfig: MinicpmvRelease | undefined;
  const warnings: string[] = [];
  let problem: string | undefined;
  if (isO) {
    if (ver === undefined) {
      fromConfig = releaseByClip(4);
      warnings.push("config.json has no version: MiniCPMO taken as MiniCPM-o 2.6 (clip.minicpmv_version 4); --minicpmv-version N chooses another");
    } else if (ver === 2.6) fromConfig = releaseByClip(4);
    else problem = `MiniCPM-o version ${ver} is not supported (config.json version; ggufy knows MiniCPM-o 2.6)`;
  } else if (ver === undefined) {
    // vLLM minicpmv.py MiniCPMV.__new__: no version → 2.0 when hidden_size 2304 and query_num 64, else 2.5
    if (config["hidden_size"] === 2304 && config["query_num"] === 64) {
      problem = "MiniCPM-V 2.0 (no version, hidden_size 2304, query_num 64) is not supported: llama.cpp's mtmd has no slice template for its clip.minicpmv_version 1";
    } else {
      fromConfig = releaseByClip(2);
      warnings.push("config.json has no version: taken as MiniCPM-Llama3-V 2.5 (clip.minicpmv_version 2), as vLLM does for the early 2.5 configs; --minicpmv-version N chooses another");
    }
  } else {
    fromConfig = MINICPMV_RELEASES.find((r) => r.architecture === "MiniCPMV" && r.configVersion === ver);
    if (!fromConfig) {
      problem = ver === 2 || ver === 2.0
        ? "MiniCPM-V version 2.0 is not supported (config.json version): llama.cpp's mtmd has no slice template for its clip.minicpmv_version 1"
        : `MiniCPM-V version ${ver} is not supported (config.json version; known: 2.5, 2.6, 4.0, 4.5)`;
    }
  }
  if (override !== undefined) {
    const r = releaseByClip(override);
    if (!r) throw new GgufyError("E_USAGE", `--minicpmv-version ${override}: not a clip.minicpmv_version ggufy converts (known: ${known()})`);
    const said = fromConfig ? `${fromConfig.name}, clip.minicpmv_version ${fromConfig.clipVersion}` : problem ?? "nothing usable";
    return { release: r, warnings: [`--minicpmv-version ${override}: converting as ${r.name} (${r.llm} language model, clip.minicpmv_version ${override}); config.json says ${said}`] };
  }
  if (!fromConfig) throw new GgufyError("E_UNSUPPORTED_ARCH", problem!, { file });
  return { release: fromConfig, warnings };
}

/** Parse `--minicpmv-version` (an integer clip.minicpmv_version). */
export function parseMinicpmvVersion(s: string): number {
  if (!/^\d+$/.test(s)) throw new GgufyError("E_USAGE", `--minicpmv-version ${s}: an integer clip.minicpmv_version (${known()})`);
  return Number(s);
}
