/** `ggufy verify <out.gguf> <model-dir>`: the GGUF against a fresh plan and the decoded checkpoint. */
import { parseArgs } from "node:util";
import { HUB_OPTIONS, withModel } from "./hub.js";
import { GgufyError } from "../errors.js";
import { verify, verifyError, type VerifyOptions, type VerifyResult } from "../convert/verify.js";
import { ProgressLine } from "./progress.js";
import { lowerTensorTypePattern } from "./args.js";
import { jsonSafe, maxOf, termSafe } from "./escape.js";
import { takeLoraArgs } from "./lora-args.js";
import { withInterrupt } from "./signals.js";
import { parseMinicpmvVersion } from "../models/minicpmv/versions.js";

/** (the text lives in usage.ts, which `ggufy --help` loads without this command's code) */
export { VERIFY_USAGE } from "./usage.js";
const fmt = (x: number, digits = 3): string => (x === 0 ? "0" : Number.isFinite(x) ? x.toExponential(digits - 1) : String(x));

export function formatVerify(r: VerifyResult, full = true): string {
  const lines: string[] = [];
  lines.push(`verify: ${r.parts.length > 1 ? `${r.parts.length} parts from ` : ""}${termSafe(r.file)} against ${termSafe(r.modelDir)} (planned as ${termSafe(r.outtype)}${r.fileType !== undefined ? `, file type ${r.fileType}` : ""})`);
  if (full && r.tensors.length) {
    const names = r.tensors.map((t) => termSafe(t.name));
    const w = maxOf(names, (n) => n.length, 4);
    const weighted = r.tensors.some((t) => t.weightedRelRmse !== undefined);
    const wcol = (t?: VerifyResult["tensors"][number]): string => (!weighted ? "" : t === undefined ? ` ${"w rel RMSE".padStart(10)}` : ` ${(t.weightedRelRmse === undefined ? "-" : fmt(t.weightedRelRmse)).padStart(10)}`);
    lines.push(`  ${"tensor".padEnd(w)}  ${"type".padEnd(7)} ${"rel RMSE".padStart(9)}${wcol()} ${"max |err|".padStart(9)} ${"cosine".padStart(10)}  status`);
    for (const [i, t] of r.tensors.entries()) {
      const cos = Number.isFinite(t.cosine) ? t.cosine.toFixed(7) : String(t.cosine);
      lines.push(`  ${names[i]!.padEnd(w)}  ${termSafe(t.type).padEnd(7)} ${fmt(t.relRmse).padStart(9)}${wcol(t)} ${fmt(t.maxAbsErr).padStart(9)} ${cos.padStart(10)}  ${t.ok ? (t.exact ? "ok (exact)" : "ok") : "FAIL: " + termSafe(t.problems.join("; "))}`);
    }
  }
  for (const n of r.missing) lines.push(`  ${termSafe(n)}: MISSING from the file`);
  for (const n of r.unexpected) lines.push(`  ${termSafe(n)}: UNEXPECTED (not in the plan)`);
  lines.push("summary by type:");
  for (const s of r.summary) {
    lines.push(`  ${termSafe(s.type).padEnd(7)} ${String(s.tensors).padStart(4)} tensors  rel RMSE mean ${fmt(s.meanRelRmse)} max ${fmt(s.maxRelRmse)}${s.meanWeightedRelRmse !== undefined ? `  weighted (imatrix) mean ${fmt(s.meanWeightedRelRmse)}` : ""}  rel max err ${fmt(s.maxRelMaxAbs)}  min cosine ${Number.isFinite(s.minCosine) ? s.minCosine.toFixed(7) : s.minCosine}${s.failed ? `  ${s.failed} FAILED` : ""}`);
  }
  if (r.kvDifferences.length) {
    lines.push(`metadata differing from the plan (${r.kvDifferences.length}; informational):`);
    for (const d of r.kvDifferences.slice(0, 20)) lines.push(`  ${termSafe(d)}`);
    if (r.kvDifferences.length > 20) lines.push(`  … ${r.kvDifferences.length - 20} more`);
  }
  lines.push(r.ok ? `OK: ${r.tensors.length} tensors match the plan and are within their type's error bounds` : `FAILED: ${r.failures.length} problem(s)`);
  return lines.join("\n");
}

export async function cmdVerify(argv: string[], out: (s: string) => void, err: (s: string) => void, io: { stderr: NodeJS.WriteStream }): Promise<number> {
  const { args, lora } = takeLoraArgs(argv);
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        outtype: { type: "string" },
        "mmproj-type": { type: "string" },
        pure: { type: "boolean" },
        "output-tensor-type": { type: "string" },
        "token-embedding-type": { type: "string" },
        "tensor-type": { type: "string", multiple: true },
        "leave-output-tensor": { type: "boolean" },
        imatrix: { type: "string" },
        "include-weights": { type: "string", multiple: true },
        "exclude-weights": { type: "string", multiple: true },
        exact: { type: "boolean" },
        "minicpmv-version": { type: "string" },
        json: { type: "boolean" },
        quiet: { type: "boolean" },
        debug: { type: "boolean" },
        ...HUB_OPTIONS,
      },
    });
  } catch (e) {
    throw new GgufyError("E_USAGE", (e as Error).message);
  }
  const v = parsed.values;
  const [gguf, dir, extra] = parsed.positionals;
  if (!gguf || !dir) throw new GgufyError("E_USAGE", "verify needs a GGUF file and the model folder it was converted from");
  if (extra !== undefined) throw new GgufyError("E_USAGE", `unexpected argument '${extra}'`);
  const minicpmvVersion = v["minicpmv-version"] !== undefined ? parseMinicpmvVersion(v["minicpmv-version"]) : undefined;
  const progress = new ProgressLine(io.stderr, !v.quiet && !v.json && io.stderr.isTTY === true);
  const opts = (signal: AbortSignal): VerifyOptions => ({
    ...(v.outtype ? { outtype: v.outtype } : {}),
    ...(v["mmproj-type"] ? { mmprojType: v["mmproj-type"] } : {}),
    ...(v.pure ? { pure: true } : {}),
    ...(v["output-tensor-type"] ? { outputTensorType: v["output-tensor-type"] } : {}),
    ...(v["token-embedding-type"] ? { tokenEmbeddingType: v["token-embedding-type"] } : {}),
    ...(v["tensor-type"] ? { tensorTypes: v["tensor-type"].map(lowerTensorTypePattern) } : {}),
    ...(v["leave-output-tensor"] ? { leaveOutputTensor: true } : {}),
    ...(v.imatrix !== undefined ? { imatrix: v.imatrix } : {}),
    ...(v["include-weights"] ? { includeWeights: v["include-weights"] } : {}),
    ...(v["exclude-weights"] ? { excludeWeights: v["exclude-weights"] } : {}),
    ...(v.exact ? { exact: true } : {}),
    ...(minicpmvVersion !== undefined ? { minicpmvVersion } : {}),
    ...(lora.length ? { lora } : {}),
    signal,
    onProgress: (e) => progress.update({ file: gguf, tensor: e.tensor, tensorIndex: e.tensorIndex, tensorCount: e.tensorCount, bytesDone: e.bytesDone, bytesTotal: e.bytesTotal }),
  });
  // SIGINT/SIGTERM/SIGHUP: exit 130 with one line, like convert (signals.ts)
  const r = await withInterrupt("verification interrupted", async (signal) => {
    try {
      return await withModel(dir, v, (loc) => verify(gguf, loc.dir, opts(signal)));
    } catch (e) {
      if (signal.aborted && !(e instanceof GgufyError && e.code === "E_INTERRUPTED")) throw new GgufyError("E_INTERRUPTED", "verification interrupted");
      throw e;
    } finally {
      progress.done();
    }
  });
  if (v.json) out(jsonSafe(r, (_k, x: unknown) => (typeof x === "number" && !Number.isFinite(x) ? String(x) : x), 2));
  else if (!v.quiet) out(formatVerify(r));
  if (!r.ok) throw verifyError(r);
  if (v.quiet && !v.json) err(`ggufy: verify: OK (${r.tensors.length} tensors)`);
  return 0;
}
