/**
 * `ggufy dequantize <model-dir> --outdir <dir>`: a bitsandbytes checkpoint written back as a plain
 * Hugging Face checkpoint (src/convert/dequantize.ts). Progress on a TTY, SIGINT/SIGTERM abort cleanly.
 */
import { parseArgs } from "node:util";
import { HUB_OPTIONS, withModel } from "./hub.js";
import { GgufyError, isGgufyError, oneLine } from "../errors.js";
import { rmSync } from "node:fs";
import path from "node:path";
import { dequantize, planDequantize, tempDirFor, type DequantizeOptions, type DequantizePlan, type DequantizeDtype } from "../convert/dequantize.js";
import { ProgressLine, formatBytes, formatDuration } from "./progress.js";
import type { CliIO } from "./main.js";
import { jsonSafe, maxOf, termSafe } from "./escape.js";
import { takeLoraArgs } from "./lora-args.js";
import { onForcedExit, withInterrupt } from "./signals.js";

/** (the text lives in usage.ts, which `ggufy --help` loads without this command's code) */
export { DEQUANTIZE_USAGE } from "./usage.js";
export function formatDequantizePlan(p: DequantizePlan): string {
  const lines: string[] = [];
  const dt = p.restoredDtypes.length ? p.restoredDtypes.join("/") : "-";
  lines.push(`checkpoint: ${termSafe(p.outdir)}  (${p.shards.reduce((a, s) => a + s.tensors.length, 0)} tensors in ${p.shards.length} shard(s), ${formatBytes(p.totalSize)}; ${p.restored.length} bitsandbytes module(s) restored as ${dt}, ${p.dropped.length} auxiliary key(s) dropped)`);
  for (const s of p.shards) {
    lines.push(`  ${termSafe(s.file)}  (${s.tensors.length} tensors, ${s.bytes} bytes)`);
    const w = maxOf(s.tensors, (t) => termSafe(t.name).length, 4);
    for (const t of s.tensors) lines.push(`    ${termSafe(t.name).padEnd(w)}  ${t.dtype.padEnd(4)} [${t.shape.join(", ")}]  ${t.bytes} B  ← ${t.encoding}${t.mode === "copy" ? " (copied)" : ""}`);
  }
  if (p.indexText !== undefined) lines.push(`  model.safetensors.index.json`);
  lines.push(`  config.json (without quantization_config)`);
  for (const f of p.copied) lines.push(`  ${termSafe(f)} (copied)`);
  return lines.join("\n");
}

export function dequantizePlanJson(p: DequantizePlan): unknown {
  return {
    outdir: p.outdir,
    totalSize: p.totalSize,
    maxShardSize: p.maxShardSize,
    restored: p.restored,
    restoredDtypes: p.restoredDtypes,
    dropped: p.dropped,
    shards: p.shards.map((s) => ({ file: s.file, bytes: s.bytes, tensors: s.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes, mode: t.mode, encoding: t.encoding })) })),
    index: p.indexText !== undefined,
    copied: ["config.json", ...p.copied],
  };
}

export async function cmdDequantize(argv: string[], out: (s: string) => void, err: (s: string) => void, io: CliIO): Promise<number> {
  const { args, lora } = takeLoraArgs(argv);
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        outdir: { type: "string" },
        dtype: { type: "string" },
        "max-shard-size": { type: "string" },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
        force: { type: "boolean" },
        quiet: { type: "boolean" },
        debug: { type: "boolean" },
        ...HUB_OPTIONS,
      },
    });
  } catch (e) {
    throw new GgufyError("E_USAGE", (e as Error).message);
  }
  const v = parsed.values;
  const input = parsed.positionals[0];
  if (!input) throw new GgufyError("E_USAGE", "dequantize needs a model folder");
  if (parsed.positionals.length > 1) throw new GgufyError("E_USAGE", `unexpected argument '${parsed.positionals[1]}'`);
  if (!v.outdir) throw new GgufyError("E_USAGE", "dequantize needs --outdir DIR");
  const dtype = (v.dtype ?? "auto").toLowerCase();
  if (!["auto", "bf16", "f16", "f32"].includes(dtype)) throw new GgufyError("E_USAGE", `--dtype ${v.dtype}: expected bf16, f16, f32 or auto`);
  const outdir = v.outdir;
  return withModel(input, v, async (loc) => {
  const opts: DequantizeOptions = {
    input: loc.dir,
    outdir,
    dtype: dtype as DequantizeDtype,
    ...(v["max-shard-size"] !== undefined ? { maxShardSize: v["max-shard-size"] } : {}),
    ...(v.force ? { force: true } : {}),
    ...(lora.length ? { lora } : {}),
  };
  if (v["dry-run"]) {
    const p = await planDequantize(opts);
    await p.checkpoint.close();
    out(v.json ? jsonSafe(dequantizePlanJson(p), undefined, 2) : formatDequantizePlan(p));
    return 0;
  }
  const progress = new ProgressLine(io.stderr, !v.quiet && io.stderr.isTTY === true);
  const t0 = performance.now();
  // SIGINT/SIGTERM/SIGHUP abort it; the temp folder is removed and the exit code is 130 (signals.ts)
  // a forced exit (a second signal, or no unwinding within the grace time) removes the temp folder too
  const tmp = tempDirFor(path.resolve(outdir));
  const undo = onForcedExit(() => rmSync(tmp, { recursive: true, force: true }));
  return withInterrupt("dequantization interrupted; no output was written", async (signal) => {
    try {
      const r = await dequantize({ ...opts, signal, onProgress: (e) => progress.update(e), onWarning: (m) => err(`ggufy: warning: ${oneLine(m)}`) });
      progress.done();
      if (!v.quiet) {
        const bytes = r.shards.reduce((a, s) => a + s.bytes, 0);
        out(`wrote ${termSafe(r.outdir)} (${r.tensors} tensors in ${r.shards.length} shard(s), ${formatBytes(bytes)}; ${r.copied.length} other file(s))`);
        const dt = r.restoredDtypes.length ? ` as ${r.restoredDtypes.join("/")}` : "";
        // the summary is for people watching a terminal; scripts get only the `wrote` lines and errors
        if (io.stderr.isTTY === true) err(`ggufy: ${r.restored} bitsandbytes module(s) restored${dt}, ${r.dropped} auxiliary key(s) dropped, ${formatDuration((performance.now() - t0) / 1000)}, peak RSS ${formatBytes(process.resourceUsage().maxRSS * 1024)}`);
      }
      return 0;
    } catch (e) {
      progress.done();
      if (signal.aborted && !(isGgufyError(e) && e.code === "E_INTERRUPTED")) throw new GgufyError("E_INTERRUPTED", "dequantization interrupted; no output was written");
      throw e;
    } finally {
      undo();
    }
  });
  });
}
