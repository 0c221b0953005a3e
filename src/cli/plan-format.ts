/**
 * The plan listing of `convert --dry-run` (text and --json), shared with `convert-lora --dry-run`.
 * Light on purpose: only types and formatting, so that it loads with src/cli/main.ts.
 */
import { typeName } from "../quant/ggml/types.js";
import type { PlannedFile } from "../convert/plan.js";
import type { DiskUsage } from "../convert/disk.js";
import { formatBytes } from "./progress.js";
import { jsonSafe, maxOf, termSafe } from "./escape.js";

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
    lines.push(`  types: ${[...counts].map(([k, n]) => `${n} ${k}`).join(", ") || "none"}; header ${f.header.size} bytes; file size ${f.header.fileSize} bytes`);
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
      headerBytes: f.header.size,
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
