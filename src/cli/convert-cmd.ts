/**
 * `ggufy convert <model-dir>`: the plan (--dry-run) or the conversion. Loaded by src/cli/main.ts only
 * when the command is convert.
 */
import { parseArgs } from "node:util";
import { GgufyError, isGgufyError, oneLine } from "../errors.js";
import { convert, plan } from "../convert/convert.js";
import { ProgressLine, formatBytes, formatDuration } from "./progress.js";
import { lowerTensorTypePattern, parseIntFlag, parseSize, usageError } from "./args.js";
import { diskUsage } from "../convert/disk.js";
import { parseKvOverride } from "../convert/metadata.js";
import { MODELS } from "../models/registry.js";
import { parseMinicpmvVersion } from "../models/minicpmv/versions.js";
import { jsonSafe, termSafe } from "./escape.js";
import { withInterrupt } from "./signals.js";
import { formatLoraSummary, takeLoraArgs } from "./lora-args.js";
import { HUB_OPTIONS, shownAs, withModel } from "./hub.js";
import { formatPlan, planJson } from "./plan-format.js";
import type { CliIO } from "./main.js";

export function formatSupportedModels(): string {
  const lines = ["TEXT models:"];
  for (const m of MODELS) for (const a of [...m.hfArchitectures].sort()) lines.push(`  - ${a}  (${m.id})`);
  return lines.join("\n");
}

export async function cmdConvert(argv: string[], out: (s: string) => void, err: (s: string) => void, io: CliIO): Promise<number> {
  const { args, lora } = takeLoraArgs(argv);
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        outtype: { type: "string" },
        outfile: { type: "string" },
        "mmproj-outfile": { type: "string" },
        "mmproj-type": { type: "string" },
        pure: { type: "boolean" },
        "output-tensor-type": { type: "string" },
        "token-embedding-type": { type: "string" },
        "tensor-type": { type: "string", multiple: true },
        "leave-output-tensor": { type: "boolean" },
        imatrix: { type: "string" },
        "include-weights": { type: "string", multiple: true },
        "exclude-weights": { type: "string", multiple: true },
        "model-name": { type: "string" },
        metadata: { type: "string" },
        "override-kv": { type: "string", multiple: true },
        "split-max-size": { type: "string" },
        "split-max-tensors": { type: "string" },
        "no-tensor-first-split": { type: "boolean" },
        "vocab-only": { type: "boolean" },
        pre: { type: "string" },
        "minicpmv-version": { type: "string" },
        "print-supported-models": { type: "boolean" },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
        threads: { type: "string" },
        "allow-nonfinite": { type: "boolean" },
        force: { type: "boolean" },
        quiet: { type: "boolean" },
        debug: { type: "boolean" },
        ...HUB_OPTIONS,
      },
    });
  } catch (e) {
    usageError(e);
  }
  const v = parsed.values;
  // warnings (a trimmed vocabulary, special tokens that resolve to nothing …) on stderr, one line each, on a
  // terminal or not: they are not progress
  let shown: (m: string) => string = (m) => m; // hf:…: the temporary folder shown as the reference
  const warn = (m: string): void => err(`ggufy: warning: ${oneLine(shown(m))}`);
  if (v["print-supported-models"]) {
    out(formatSupportedModels());
    return 0;
  }
  const input = parsed.positionals[0];
  if (!input) throw new GgufyError("E_USAGE", "convert needs a model folder");
  if (parsed.positionals.length > 1) throw new GgufyError("E_USAGE", `unexpected argument '${parsed.positionals[1]}'`);
  const threads = parseIntFlag(v.threads, "--threads");
  const splitMaxSize = v["split-max-size"] !== undefined ? parseSize(v["split-max-size"], "--split-max-size") : undefined;
  if (splitMaxSize !== undefined && splitMaxSize <= 0) throw new GgufyError("E_USAGE", `--split-max-size ${v["split-max-size"]}: must be positive`);
  const splitMaxTensors = parseIntFlag(v["split-max-tensors"], "--split-max-tensors");
  const kvOverrides = (v["override-kv"] ?? []).map(parseKvOverride);
  // hf:owner/name: the folder it resolves to (cli/hub.ts), released when the command ends
  return withModel(input, v, async (loc) => {
  shown = (m) => shownAs(loc, m);
  const opts = {
    input: loc.dir,
    ...(v.outtype ? { outtype: v.outtype } : {}),
    ...(v.outfile ? { outfile: v.outfile } : {}),
    ...(v["mmproj-outfile"] ? { mmprojOutfile: v["mmproj-outfile"] } : {}),
    ...(v["mmproj-type"] ? { mmprojType: v["mmproj-type"] } : {}),
    ...(v.pure ? { pure: true } : {}),
    ...(v["output-tensor-type"] ? { outputTensorType: v["output-tensor-type"] } : {}),
    ...(v["token-embedding-type"] ? { tokenEmbeddingType: v["token-embedding-type"] } : {}),
    ...(v["tensor-type"] ? { tensorTypes: v["tensor-type"].map(lowerTensorTypePattern) } : {}),
    ...(v["leave-output-tensor"] ? { leaveOutputTensor: true } : {}),
    ...(v.imatrix !== undefined ? { imatrix: v.imatrix } : {}),
    ...(v["include-weights"] ? { includeWeights: v["include-weights"] } : {}),
    ...(v["exclude-weights"] ? { excludeWeights: v["exclude-weights"] } : {}),
    ...(v["model-name"] ? { modelName: v["model-name"] } : {}),
    ...(v.metadata ? { metadata: v.metadata } : {}),
    ...(kvOverrides.length ? { kvOverrides } : {}),
    ...(splitMaxSize !== undefined ? { splitMaxSize } : {}),
    ...(splitMaxTensors !== undefined ? { splitMaxTensors } : {}),
    ...(v["no-tensor-first-split"] ? { noTensorFirstSplit: true } : {}),
    ...(v["vocab-only"] ? { vocabOnly: true } : {}),
    ...(v.pre !== undefined ? { pre: v.pre } : {}),
    ...(v["minicpmv-version"] !== undefined ? { minicpmvVersion: parseMinicpmvVersion(v["minicpmv-version"]) } : {}),
    ...(v["allow-nonfinite"] ? { allowNonfinite: true } : {}),
    ...(v.force ? { force: true } : {}),
    ...(threads ? { threads } : {}),
    ...(lora.length ? { lora } : {}),
  };
  if (v["dry-run"]) {
    const p = await plan(opts);
    try {
      // what the outputs need on each file system, and what is free there (fs.statfs)
      const disk = await diskUsage(p.files);
      for (const w of p.warnings) warn(w);
      out(v.json ? jsonSafe({ ...(planJson(p.files, disk, p.source) as object), ...(p.lora ? { lora: p.lora } : {}), warnings: p.warnings }, undefined, 2) : formatPlan(p.files, disk, p.source) + (p.lora ? "\n" + formatLoraSummary(p.lora) : ""));
    } finally {
      await p.close();
    }
    return 0;
  }
  const progress = new ProgressLine(io.stderr, !v.quiet && io.stderr.isTTY === true, loc.stats ? () => loc.stats!.bytes : undefined);
  const t0 = performance.now();
  // SIGINT/SIGTERM/SIGHUP abort the conversion (signals.ts); it unwinds, removing its temp files, and exits 130
  return withInterrupt("conversion interrupted; no output was written", async (signal) => {
    try {
      const r = await convert({ ...opts, signal, onProgress: (e) => progress.update(e), onWarning: (m) => {
        progress.done(); // a warning is its own line, not written over the progress line
        warn(m);
      } });
      progress.done();
      const secs = (performance.now() - t0) / 1000;
      const bytesIn = r.plan.reduce((a, f) => a + f.tensors.reduce((b, t) => b + t.out.ne.reduce((x, y) => x * y, 1) * 4, 0), 0);
      const bytesOut = r.files.reduce((a, f) => a + f.bytes, 0);
      if (v.json) out(jsonSafe({ files: r.files, warnings: r.warnings, nonFinite: r.nonFinite }, undefined, 2));
      else if (!v.quiet) {
        for (const f of r.files) out(`wrote ${termSafe(f.path)} (${f.tensors} tensors, ${formatBytes(f.bytes)})`);
        // the summary is for people watching a terminal; scripts get only the `wrote` lines and errors
        if (io.stderr.isTTY === true) err(`ggufy: ${r.files.reduce((a, f) => a + f.tensors, 0)} tensors, ${formatBytes(bytesIn)} as f32 in, ${formatBytes(bytesOut)} out, ${formatDuration(secs)}, peak RSS ${formatBytes(process.resourceUsage().maxRSS * 1024)}`);
      }
      return 0;
    } catch (e) {
      progress.done();
      if (signal.aborted && !(isGgufyError(e) && e.code === "E_INTERRUPTED")) throw new GgufyError("E_INTERRUPTED", "conversion interrupted; no output was written");
      throw e;
    }
  });
  });
}
