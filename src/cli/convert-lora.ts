/**
 * `ggufy convert-lora <adapter-dir> --base <base-dir>`: a PEFT LoRA adapter as llama.cpp's LoRA GGUF
 * (src/convert/lora/gguf.ts). Progress on a TTY; SIGINT/SIGTERM abort cleanly (no output is left).
 */
import { parseArgs } from "node:util";
import { GgufyError, isGgufyError, oneLine } from "../errors.js";
import { convertLora, planLora, type ConvertLoraOptions } from "../convert/lora/gguf.js";
import { parseKvOverride } from "../convert/metadata.js";
import { ProgressLine, formatBytes } from "./progress.js";
import type { CliIO } from "./main.js";
import { formatPlan, planJson } from "./plan-format.js";
import { jsonSafe, termSafe } from "./escape.js";
import { withInterrupt } from "./signals.js";

/** (the text lives in usage.ts, which `ggufy --help` loads without this command's code) */
export { CONVERT_LORA_USAGE } from "./usage.js";
export async function cmdConvertLora(args: string[], out: (s: string) => void, err: (s: string) => void, io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        base: { type: "string" },
        outtype: { type: "string" },
        outfile: { type: "string" },
        "model-name": { type: "string" },
        metadata: { type: "string" },
        "override-kv": { type: "string", multiple: true },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
        force: { type: "boolean" },
        quiet: { type: "boolean" },
        debug: { type: "boolean" },
      },
    });
  } catch (e) {
    throw new GgufyError("E_USAGE", (e as Error).message);
  }
  const v = parsed.values;
  const adapter = parsed.positionals[0];
  if (!adapter) throw new GgufyError("E_USAGE", "convert-lora needs an adapter folder");
  if (parsed.positionals.length > 1) throw new GgufyError("E_USAGE", `unexpected argument '${parsed.positionals[1]}'`);
  if (!v.base) throw new GgufyError("E_USAGE", "convert-lora needs --base <base-model-dir> (its config.json and tensor names)");
  const kvOverrides = (v["override-kv"] ?? []).map(parseKvOverride);
  const opts: ConvertLoraOptions = {
    adapter,
    base: v.base,
    ...(v.outtype ? { outtype: v.outtype } : {}),
    ...(v.outfile ? { outfile: v.outfile } : {}),
    ...(v["model-name"] ? { modelName: v["model-name"] } : {}),
    ...(v.metadata ? { metadata: v.metadata } : {}),
    ...(kvOverrides.length ? { kvOverrides } : {}),
    ...(v.force ? { force: true } : {}),
  };
  if (v["dry-run"]) {
    const p = await planLora(opts);
    try {
      const extra = { arch: p.arch, alpha: p.alpha, targets: p.targets.map((t) => ({ tensor: t.gguf, rank: t.target.rank, alpha: t.target.alpha, scale: t.target.scale, ...(t.permuteHeads !== undefined ? { permuteHeads: t.permuteHeads } : {}), bFactor: t.bFactor })) };
      out(v.json ? jsonSafe({ ...(planJson([p.file]) as object), ...extra }, undefined, 2) : `${formatPlan([p.file])}\nadapter.lora.alpha = ${p.alpha} (${termSafe(p.arch)}), ${p.targets.length} target(s)`);
    } finally {
      await p.close();
    }
    return 0;
  }
  const progress = new ProgressLine(io.stderr, !v.quiet && io.stderr.isTTY === true);
  return withInterrupt("conversion interrupted; no output was written", async (signal) => {
    try {
      const r = await convertLora({ ...opts, signal, onProgress: (e) => progress.update(e), onWarning: (m) => {
        progress.done();
        err(`ggufy: warning: ${oneLine(m)}`);
      } });
      progress.done();
      if (v.json) out(jsonSafe({ files: [{ path: r.path, bytes: r.bytes, tensors: r.tensors }], arch: r.plan.arch, alpha: r.plan.alpha }, undefined, 2));
      else if (!v.quiet) out(`wrote ${termSafe(r.path)} (${r.tensors} tensors, ${formatBytes(r.bytes)}; LoRA for ${termSafe(r.plan.arch)}, alpha ${r.plan.alpha})`);
      return 0;
    } catch (e) {
      progress.done();
      if (signal.aborted && !(isGgufyError(e) && e.code === "E_INTERRUPTED")) throw new GgufyError("E_INTERRUPTED", "conversion interrupted; no output was written");
      throw e;
    }
  });
}
