/**
 * The ggufy command line: convert, inspect, dequantize. Errors print as one line (stack with --debug) and
 * exit non-zero with the code documented in the README.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { GgufyError, isGgufyError, oneLine } from "../errors.js";
import { convert, plan } from "../convert/convert.js";
import { typeName } from "../quant/ggml/types.js";
import { inspect, formatInspect } from "./inspect.js";
import { ProgressLine, formatBytes, formatDuration } from "./progress.js";
import { lowerTensorTypePattern, parseIntFlag } from "./args.js";
import type { PlannedFile } from "../convert/plan.js";
import { diskUsage, type DiskUsage } from "../convert/pipeline.js";
import { parseKvOverride } from "../convert/metadata.js";
import { MODELS } from "../models/registry.js";
import { parseSize } from "./args.js";
import { cmdVerify, VERIFY_USAGE } from "./verify.js";
import { cmdDequantize, DEQUANTIZE_USAGE } from "./dequantize.js";
import { cmdConvertLora, CONVERT_LORA_USAGE } from "./convert-lora.js";
import { jsonSafe, maxOf, termSafe } from "./escape.js";
import { onForcedExit, signalsInstalled, withInterrupt } from "./signals.js";
import { removeLiveTempsSync } from "../convert/output.js";
import { formatLoraSummary, LORA_USAGE, takeLoraArgs } from "./lora-args.js";

const COMMANDS = `usage:
  ggufy convert <model-dir> [--outtype TYPE] [--outfile PATH] [options]
  ggufy inspect <file.gguf|file.safetensors|model-dir> [--json]
  ggufy verify <file.gguf> <model-dir> [--outtype TYPE] [--json] [--exact]
  ggufy dequantize <bnb-model-dir> --outdir DIR [--dtype bf16|f16|f32|auto] [--max-shard-size 5GB]
  ggufy convert-lora <adapter-dir> --base <base-model-dir> [--outtype f32|f16|bf16|q8_0|auto] [--outfile PATH]
  ggufy --version
  ggufy <command> --help`;

const CONVERT_OPTIONS = `convert options:
  --outtype T            f32 | f16 | bf16 | q8_0 | auto (default) or a llama-quantize preset:
                         Q4_K_M Q4_K_S Q5_K_M Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q3_K_S Q3_K_M Q3_K_L Q2_K IQ4_NL IQ4_XS F16 BF16 F32
  --outfile PATH         output file ({ftype} is replaced by the type)
  --mmproj-outfile PATH  vision projector output (multimodal models)
  --mmproj-type T        f16 (default) | f32 | q8_0
  --pure                 no k-quant mixture: the preset's type for every quantizable tensor
  --output-tensor-type T, --token-embedding-type T, --tensor-type REGEX=T (repeatable), --leave-output-tensor
  --model-name NAME      general.name
  --metadata FILE.json   general.* overrides with llama.cpp's key names ("general.name", "general.tags" …)
  --override-kv KEY=TYPE:VALUE  set a metadata key (TYPE: int, float, bool, str); repeatable
  --split-max-size N     split the output into parts of at most N bytes of tensors (500M, 2G …)
  --split-max-tensors N  split the output into parts of at most N tensors
  --no-tensor-first-split  the first part holds only the metadata
  --vocab-only           only the tokenizer and metadata
${LORA_USAGE}
  --pre NAME             BPE pre-tokenizer name (llama-bpe, qwen2, gpt-2 …) instead of the one read from tokenizer.json
  --print-supported-models  list the architectures ggufy converts
  --dry-run              print the plan (names, shapes, types, bytes) without reading weights
  --json                 machine-readable output: the plan with --dry-run, else the files written; both with "warnings"
  --threads N            worker threads (default: number of cores; capped at min(4 × cores, 64))
  --allow-nonfinite      pass NaN/Inf through instead of refusing
  --force                overwrite existing outputs
  --quiet                no progress or summary
  --debug                stack traces on errors
  --help, -h             this help`;

const INSPECT_OPTIONS = `inspect options (ggufy inspect <file.gguf|file.safetensors|model-dir>):
  --json                 machine-readable output
  --full                 whole arrays (tokens, merges …) instead of their length and first items`;

const USAGE = `${COMMANDS}

${CONVERT_OPTIONS}

${INSPECT_OPTIONS}

${VERIFY_USAGE}

${DEQUANTIZE_USAGE}

${CONVERT_LORA_USAGE}`;

/** `ggufy <command> --help`: the command's own usage line and options. */
const COMMAND_HELP: Record<string, string> = {
  convert: `usage: ggufy convert <model-dir> [--outtype TYPE] [--outfile PATH] [options]\n\n${CONVERT_OPTIONS}`,
  inspect: `usage: ggufy inspect <file.gguf|file.safetensors|model-dir> [--json] [--full]\n\n${INSPECT_OPTIONS}`,
  verify: `usage: ggufy verify <file.gguf> <model-dir> [--outtype TYPE] [--json] [--exact]\n\n${VERIFY_USAGE}`,
  "convert-lora": `usage: ggufy convert-lora <adapter-dir> --base <base-model-dir> [--outtype f32|f16|bf16|q8_0|auto] [--outfile PATH]\n\n${CONVERT_LORA_USAGE}`,
  dequantize: `usage: ggufy dequantize <bnb-model-dir> --outdir DIR [--dtype bf16|f16|f32|auto] [--max-shard-size 5GB]\n\n${DEQUANTIZE_USAGE}`,
};

/** `--help` or `-h` among a command's arguments (before a `--` that ends the options). */
function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
  }
  return false;
}

/** The version in ggufy's package.json (dist/src/cli/main.js → ../../../package.json, in the repository and in the installed package). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string") throw new Error("package.json has no version");
  return pkg.version;
}

export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WriteStream;
}

export async function main(argv: string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const debug = argv.includes("--debug");
  const out = (s: string): void => void io.stdout.write(s + "\n");
  const err = (s: string): void => void io.stderr.write(s + "\n");
  // a forced exit on a signal (signals.ts) removes the temp files being written
  if (signalsInstalled()) onForcedExit(removeLiveTempsSync);
  try {
    const [cmd, ...rest] = argv;
    if (cmd !== undefined && COMMAND_HELP[cmd] !== undefined && wantsHelp(rest)) {
      out(COMMAND_HELP[cmd]!);
      return 0;
    }
    switch (cmd) {
      case "convert":
        return await cmdConvert(rest, out, err, io);
      case "inspect":
        return await cmdInspect(rest, out);
      case "verify":
        return await cmdVerify(rest, out, err, io);
      case "dequantize":
        return await cmdDequantize(rest, out, err, io);
      case "convert-lora":
        return await cmdConvertLora(rest, out, err, io);
      case "--version":
      case "-V":
        out(packageVersion());
        return 0;
      case "help":
        if (rest[0] !== undefined && COMMAND_HELP[rest[0]] !== undefined) {
          out(COMMAND_HELP[rest[0]]!);
          return 0;
        }
        out(USAGE);
        return 0;
      case undefined:
      case "--help":
      case "-h":
        out(USAGE);
        return cmd === undefined ? 64 : 0;
      default:
        throw new GgufyError("E_USAGE", `unknown command '${cmd}' (commands: convert, inspect, verify, dequantize, convert-lora; see ggufy --help)`);
    }
  } catch (e) {
    if (isGgufyError(e)) {
      err(`ggufy: error: ${e.message}`);
      if (debug && e.stack) err(e.stack);
      return e.exitCode;
    }
    err(`ggufy: internal error: ${oneLine(String((e as Error)?.message ?? e))}${debug ? "" : " (run with --debug for details)"}`);
    if (debug && (e as Error)?.stack) err((e as Error).stack!);
    return 70;
  }
}

function usageError(e: unknown): never {
  throw new GgufyError("E_USAGE", (e as Error).message);
}

async function cmdInspect(args: string[], out: (s: string) => void): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, full: { type: "boolean" }, debug: { type: "boolean" } } });
  } catch (e) {
    usageError(e);
  }
  const target = parsed.positionals[0];
  if (!target) throw new GgufyError("E_USAGE", "inspect needs a file or folder");
  const r = await inspect(target, { full: parsed.values.full ?? false });
  out(parsed.values.json ? jsonSafe(r, undefined, 2) : formatInspect(r));
  return 0;
}

/** Looks up checkpoint tensors, for their shapes in the plan listing (the plan's SourceCheckpoint). */
export interface SourceShapes {
  get(name: string): { readonly shape: readonly number[] } | undefined;
}

function splitLabel(f: PlannedFile): string {
  return f.split ? `, part ${f.split.no + 1} of ${f.split.count}` : "";
}

export function formatPlan(files: readonly PlannedFile[], disk?: readonly DiskUsage[], source?: SourceShapes): string {
  const lines: string[] = [];
  for (const f of files) {
    lines.push(`${f.role === "mmproj" ? "mmproj" : "model"}: ${termSafe(f.path)}  (${f.typeLabel}${splitLabel(f)}, ${f.tensors.length} tensors, ${f.kvs.length} keys, ${formatBytes(f.header.fileSize)})`);
    if (f.metadata) {
      const m = f.metadata;
      lines.push(`  name ${jsonSafe(m.name)}${m.basename !== undefined ? `, basename ${jsonSafe(m.basename)}` : ""}${m.sizeLabel !== undefined ? `, size label ${termSafe(m.sizeLabel)}` : ""}${m.finetune !== undefined ? `, finetune ${jsonSafe(m.finetune)}` : ""}${m.version !== undefined ? `, version ${jsonSafe(m.version)}` : ""}`);
    }
    const w = maxOf(f.tensors, (t) => termSafe(t.out.name).length, 4);
    for (const t of f.tensors) {
      const fb = t.fallbackFrom !== undefined ? ` (fallback from ${typeName(t.fallbackFrom)})` : "";
      const src = t.out.sources.map((n) => {
        const st = source?.get(n);
        return st ? `${termSafe(n)} [${st.shape.join(", ")}]` : termSafe(n);
      });
      lines.push(`  ${termSafe(t.out.name).padEnd(w)}  ${typeName(t.type).padEnd(7)} [${t.out.ne.join(", ")}]  ${t.bytes} B  ← ${src.join(" + ") || "(computed)"} (${t.out.encoding})${fb}`);
    }
    const counts = new Map<string, number>();
    for (const t of f.tensors) counts.set(typeName(t.type), (counts.get(typeName(t.type)) ?? 0) + 1);
    lines.push(`  types: ${[...counts].map(([k, n]) => `${n} ${k}`).join(", ") || "none"}; header ${f.header.bytes.length} bytes; file size ${f.header.fileSize} bytes`);
  }
  const total = files.reduce((a, f) => a + f.header.fileSize, 0);
  const tensors = files.reduce((a, f) => a + f.tensors.length, 0);
  lines.push(`total: ${files.length} file(s), ${tensors} tensors, ${total} bytes (${formatBytes(total)})`);
  for (const d of disk ?? []) {
    const verdict = d.free === undefined ? "free space unknown" : `${d.free} bytes (${formatBytes(d.free)}) free${d.needed > d.free ? " — NOT ENOUGH" : ""}`;
    lines.push(`disk: ${termSafe(d.dir)}: needs ${d.needed} bytes (${formatBytes(d.needed)}), ${verdict}`);
  }
  return lines.join("\n");
}

export function planJson(files: readonly PlannedFile[], disk?: readonly DiskUsage[], source?: SourceShapes): unknown {
  return {
    files: files.map((f) => ({
      path: f.path,
      role: f.role,
      type: f.typeLabel,
      fileType: f.fileType,
      bytes: f.header.fileSize,
      headerBytes: f.header.bytes.length,
      keys: f.kvs.length,
      ...(f.split ? { split: { no: f.split.no, count: f.split.count, tensorsTotal: f.split.tensorsTotal } } : {}),
      ...(f.metadata ? { metadata: f.metadata } : {}),
      tensors: f.tensors.map((t) => ({
        name: t.out.name,
        shape: t.out.ne,
        type: typeName(t.type),
        bytes: t.bytes,
        sources: t.out.sources,
        ...(source ? { sourceShapes: t.out.sources.map((n) => source.get(n)?.shape ?? null) } : {}),
        encoding: t.out.encoding,
        ...(t.fallbackFrom !== undefined ? { fallbackFrom: typeName(t.fallbackFrom) } : {}),
      })),
    })),
    totalBytes: files.reduce((a, f) => a + f.header.fileSize, 0),
    ...(disk ? { disk: disk.map((d) => ({ dir: d.dir, needed: d.needed, free: d.free ?? null })) } : {}),
  };
}

export function formatSupportedModels(): string {
  const lines = ["TEXT models:"];
  for (const m of MODELS) for (const a of [...m.hfArchitectures].sort()) lines.push(`  - ${a}  (${m.id})`);
  return lines.join("\n");
}

async function cmdConvert(argv: string[], out: (s: string) => void, err: (s: string) => void, io: CliIO): Promise<number> {
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
        "model-name": { type: "string" },
        metadata: { type: "string" },
        "override-kv": { type: "string", multiple: true },
        "split-max-size": { type: "string" },
        "split-max-tensors": { type: "string" },
        "no-tensor-first-split": { type: "boolean" },
        "vocab-only": { type: "boolean" },
        pre: { type: "string" },
        "print-supported-models": { type: "boolean" },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
        threads: { type: "string" },
        "allow-nonfinite": { type: "boolean" },
        force: { type: "boolean" },
        quiet: { type: "boolean" },
        debug: { type: "boolean" },
      },
    });
  } catch (e) {
    usageError(e);
  }
  const v = parsed.values;
  // warnings (a trimmed vocabulary, special tokens that resolve to nothing …) on stderr, one line each, on a
  // terminal or not: they are not progress
  const warn = (m: string): void => err(`ggufy: warning: ${oneLine(m)}`);
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
  const opts = {
    input,
    ...(v.outtype ? { outtype: v.outtype } : {}),
    ...(v.outfile ? { outfile: v.outfile } : {}),
    ...(v["mmproj-outfile"] ? { mmprojOutfile: v["mmproj-outfile"] } : {}),
    ...(v["mmproj-type"] ? { mmprojType: v["mmproj-type"] } : {}),
    ...(v.pure ? { pure: true } : {}),
    ...(v["output-tensor-type"] ? { outputTensorType: v["output-tensor-type"] } : {}),
    ...(v["token-embedding-type"] ? { tokenEmbeddingType: v["token-embedding-type"] } : {}),
    ...(v["tensor-type"] ? { tensorTypes: v["tensor-type"].map(lowerTensorTypePattern) } : {}),
    ...(v["leave-output-tensor"] ? { leaveOutputTensor: true } : {}),
    ...(v["model-name"] ? { modelName: v["model-name"] } : {}),
    ...(v.metadata ? { metadata: v.metadata } : {}),
    ...(kvOverrides.length ? { kvOverrides } : {}),
    ...(splitMaxSize !== undefined ? { splitMaxSize } : {}),
    ...(splitMaxTensors !== undefined ? { splitMaxTensors } : {}),
    ...(v["no-tensor-first-split"] ? { noTensorFirstSplit: true } : {}),
    ...(v["vocab-only"] ? { vocabOnly: true } : {}),
    ...(v.pre !== undefined ? { pre: v.pre } : {}),
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
  const progress = new ProgressLine(io.stderr, !v.quiet && io.stderr.isTTY === true);
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
}

export { USAGE };
