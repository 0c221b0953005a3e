/**
 * verify: check a GGUF against the checkpoint it was made from.
 *
 * The conversion is planned again for the file's output type (general.file_type, or the tensor types
 * when that key is absent; candidates that share a file type — `q8_0` vs llama-quantize's `Q8_0` —
 * are told apart by which plan the file matches best). Then every planned tensor must be in the file
 * with its planned name, shape and type, and nothing else may be; and every tensor is dequantized in
 * row chunks (memory stays a few chunks) and compared with the decoded source read through the same
 * model transforms (the plan's OutputTensor.read): RMSE, relative RMSE, max abs error, cosine.
 * A tensor fails when its error is out of line for its type: above the type's relative-RMSE or
 * relative-max-error bound, or not exact where the type holds the source exactly (F32 always; BF16/F16
 * when the source is stored in that precision).
 *
 * Split outputs (llama.cpp's `-00001-of-0000N.gguf` parts) are verified from their first part.
 */
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { GgufyError } from "../errors.js";
import { GGUFValueType, type GGUFValue } from "../formats/gguf/types.js";
import { readGguf, type GGUFFile, type GGUFTensorEntry } from "../formats/gguf/reader.js";
import { codecFor, supportedTypes } from "../quant/ggml/index.js";
import { GGMLType as G, rowBytes, typeName } from "../quant/ggml/types.js";
import { IMATRIX_PRESETS, LLAMA_FTYPES, PRESETS } from "../quant/presets.js";
import { importanceForRows } from "../quant/imatrix.js";
import { plan, type ConvertOptions, type Plan } from "./convert.js";
import { encodeRows } from "./encode.js";
import { chunkRanges } from "./pipeline.js";
import type { PlanOptions, PlannedFile, PlannedTensor } from "./plan.js";
import { SPLIT_KEYS, splitPath, splitPrefix } from "./split.js";

/** Error bounds of one type: relative RMSE (RMSE / RMS of the source) and max |error| / max |source|. */
export interface ErrorBound {
  relRmse: number;
  relMaxAbs: number;
}

/**
 * Per-type bounds, about 2.5× the worst of what each type gives on Gaussian, Student-t (ν = 3) and
 * outlier-spiked weights (relative RMSE measured with ggufy's codecs: Q8_0 ≈ 0.005–0.009, Q6_K ≈ 0.018–0.026,
 * Q5_K ≈ 0.036–0.047, Q4_K ≈ 0.071–0.093, Q4_0 ≈ 0.086–0.13, IQ4 ≈ 0.076–0.10, Q3_K ≈ 0.15–0.19,
 * Q2_K ≈ 0.29–0.35, F16 ≈ 2e-4, BF16 ≈ 1.7e-3; relative max error is lower still). A damaged block goes
 * far beyond them. TQ1_0/TQ2_0 are ternary: exact on ternary weights, ~0.8 on others, so only garbage fails.
 */
export const ERROR_BOUNDS: Readonly<Partial<Record<G, ErrorBound>>> = {
  [G.F32]: { relRmse: 0, relMaxAbs: 0 },
  [G.F16]: { relRmse: 6e-4, relMaxAbs: 1e-3 },
  [G.BF16]: { relRmse: 5e-3, relMaxAbs: 8e-3 },
  [G.Q8_0]: { relRmse: 0.025, relMaxAbs: 0.015 },
  [G.Q6_K]: { relRmse: 0.07, relMaxAbs: 0.05 },
  [G.Q5_K]: { relRmse: 0.12, relMaxAbs: 0.1 },
  [G.Q5_0]: { relRmse: 0.16, relMaxAbs: 0.1 },
  [G.Q5_1]: { relRmse: 0.12, relMaxAbs: 0.1 },
  [G.Q4_K]: { relRmse: 0.22, relMaxAbs: 0.15 },
  [G.Q4_0]: { relRmse: 0.3, relMaxAbs: 0.2 },
  [G.Q4_1]: { relRmse: 0.25, relMaxAbs: 0.15 },
  [G.IQ4_NL]: { relRmse: 0.25, relMaxAbs: 0.15 },
  [G.IQ4_XS]: { relRmse: 0.25, relMaxAbs: 0.15 },
  [G.Q3_K]: { relRmse: 0.45, relMaxAbs: 0.3 },
  [G.Q2_K]: { relRmse: 0.8, relMaxAbs: 0.5 },
  [G.TQ2_0]: { relRmse: 1.5, relMaxAbs: 1 },
  [G.TQ1_0]: { relRmse: 1.5, relMaxAbs: 1 },
};

export interface VerifyProgress {
  tensor: string;
  tensorIndex: number;
  tensorCount: number;
  /** output bytes checked so far, and the total */
  bytesDone: number;
  bytesTotal: number;
}

export interface VerifyOptions extends Omit<PlanOptions, "outfile" | "mmprojOutfile" | "splitMaxSize" | "splitMaxTensors" | "noTensorFirstSplit"> {
  /** floats per chunk on each side (default 1 Mi) */
  chunkElements?: number;
  /** replace some per-type bounds (keys: ggml type names, e.g. "q4_K") */
  bounds?: Readonly<Record<string, Partial<ErrorBound>>>;
  /** also quantize the source again and compare bytes (ggufy's quantizers are deterministic) */
  exact?: boolean;
  onProgress?: (e: VerifyProgress) => void;
  signal?: AbortSignal;
}

export interface TensorCheck {
  name: string;
  /** the file's shape and type */
  shape: number[];
  type: string;
  plannedShape?: number[];
  plannedType?: string;
  sources: string[];
  elements: number;
  rmse: number;
  /** RMSE / RMS(source) (0 when both are zero, Infinity when only the source is) */
  relRmse: number;
  maxAbsErr: number;
  /** max |error| / max |source| */
  relMaxAbs: number;
  /**
   * with --imatrix, for tensors quantized with an importance vector: the importance-weighted relative RMSE,
   * sqrt(Σ qw[col]·err² / Σ qw[col]·src²) — the error as the imatrix's activations see it
   */
  weightedRelRmse?: number;
  cosine: number;
  /** values the output holds as NaN/Inf where the source is finite (or the other way round) */
  nonFinite: number;
  /** the type must reproduce the source exactly */
  exact: boolean;
  bound: ErrorBound;
  /** with `exact`: bytes that differ from a fresh quantization of the source */
  bytesDiffering?: number;
  ok: boolean;
  problems: string[];
}

export interface TypeSummary {
  type: string;
  tensors: number;
  elements: number;
  meanRelRmse: number;
  /** mean of the tensors' weightedRelRmse (with --imatrix; over the tensors that have one) */
  meanWeightedRelRmse?: number;
  maxRelRmse: number;
  maxRelMaxAbs: number;
  minCosine: number;
  failed: number;
}

export interface VerifyResult {
  ok: boolean;
  /** the file given, and every part read (one unless split) */
  file: string;
  parts: string[];
  modelDir: string;
  /** the output type the conversion was re-planned for */
  outtype: string;
  fileType: number | undefined;
  role: "model" | "mmproj";
  tensors: TensorCheck[];
  /** planned tensors the file lacks */
  missing: string[];
  /** tensors in the file the plan does not have */
  unexpected: string[];
  /** metadata that differs from the plan (informational: --override-kv and --metadata change it legitimately) */
  kvDifferences: string[];
  summary: TypeSummary[];
  /** one line per problem, naming the tensor */
  failures: string[];
}

const CONVERT_FTYPES: Record<number, string> = { 0: "f32", 1: "f16", 32: "bf16", 7: "q8_0", 36: "tq1_0", 37: "tq2_0" };
const MMPROJ_FTYPES: Record<number, string> = { 0: "f32", 1: "f16", 7: "q8_0" };

interface OpenedGguf {
  parts: GGUFFile[];
  kvs: Map<string, GGUFValue>;
  keys: string[];
  tensors: Map<string, { part: number; entry: GGUFTensorEntry }>;
  order: string[];
}

function scalar(v: GGUFValue | undefined): number | string | boolean | bigint | undefined {
  return v && v.type !== GGUFValueType.ARRAY ? v.value : undefined;
}

/** Read a GGUF, or all parts of a split GGUF given its first part. */
export async function openGgufParts(file: string): Promise<OpenedGguf> {
  const first = await readGguf(path.resolve(file));
  const parts = [first];
  const count = Number(scalar(first.kvs.get(SPLIT_KEYS.count)) ?? 0);
  if (count > 1) {
    const no = Number(scalar(first.kvs.get(SPLIT_KEYS.no)) ?? -1);
    if (no !== 0) throw new GgufyError("E_USAGE", `this is part ${no + 1} of a split GGUF; give the first part`, { file: first.path });
    const prefix = splitPrefix(first.path, 0, count);
    if (prefix === undefined) throw new GgufyError("E_GGUF_FORMAT", `split.count is ${count} but the file is not named like the first of ${count} parts (-00001-of-${String(count).padStart(5, "0")}.gguf)`, { file: first.path });
    for (let i = 1; i < count; i++) {
      const g = await readGguf(splitPath(prefix, i, count));
      const gno = Number(scalar(g.kvs.get(SPLIT_KEYS.no)) ?? -1);
      if (gno !== i) throw new GgufyError("E_GGUF_FORMAT", `split.no is ${gno}, expected ${i}`, { file: g.path });
      parts.push(g);
    }
  }
  const tensors = new Map<string, { part: number; entry: GGUFTensorEntry }>();
  const order: string[] = [];
  parts.forEach((g, i) => {
    for (const t of g.tensors) {
      if (tensors.has(t.name)) throw new GgufyError("E_GGUF_FORMAT", "tensor appears in two parts", { file: g.path, tensor: t.name });
      tensors.set(t.name, { part: i, entry: t });
      order.push(t.name);
    }
  });
  if (count > 1) {
    const total = Number(scalar(first.kvs.get(SPLIT_KEYS.tensorsCount)) ?? -1);
    if (total !== tensors.size) throw new GgufyError("E_GGUF_FORMAT", `split.tensors.count is ${total} but the parts hold ${tensors.size} tensors`, { file: first.path });
  }
  return { parts, kvs: first.kvs, keys: first.keys, tensors, order };
}

/** Output types whose plan could have produced this file, most likely first. */
function candidateOuttypes(g: OpenedGguf, role: "model" | "mmproj", imatrix = false): string[] {
  // with an imatrix the imatrix-only presets (Q2_K_S …) are candidates too
  const presets = imatrix ? [...PRESETS, ...LLAMA_FTYPES.filter((p) => IMATRIX_PRESETS.includes(p.name))] : PRESETS;
  const ft = scalar(g.kvs.get("general.file_type"));
  const out: string[] = [];
  if (ft !== undefined) {
    const n = Number(ft);
    if (role === "mmproj") {
      if (MMPROJ_FTYPES[n]) out.push(MMPROJ_FTYPES[n]!);
    } else {
      if (CONVERT_FTYPES[n]) out.push(CONVERT_FTYPES[n]!);
      for (const p of presets) if (p.ftype === n) out.push(p.name);
    }
  }
  if (out.length === 0) {
    // no (known) general.file_type: the most common type among the ≥2-D tensors
    const counts = new Map<G, number>();
    for (const { entry } of g.tensors.values()) if (entry.ne.length >= 2) counts.set(entry.type, (counts.get(entry.type) ?? 0) + 1);
    const top = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
    if (top !== undefined) {
      const name = typeName(top).toLowerCase();
      if (role === "mmproj") out.push(Object.values(MMPROJ_FTYPES).includes(name) ? name : "f16");
      else {
        if (Object.values(CONVERT_FTYPES).includes(name)) out.push(name);
        for (const p of presets) if (p.defaultType === top) out.push(p.name);
      }
    }
  }
  if (out.length === 0) out.push(role === "mmproj" ? "f16" : "auto");
  return [...new Set(out)];
}

/** How far a plan is from the file: missing, unexpected and mistyped/mis-shaped tensors (+ a fraction for order). */
function mismatchScore(f: PlannedFile, g: OpenedGguf): number {
  let score = 0;
  const planned = new Set<string>();
  for (const t of f.tensors) {
    planned.add(t.out.name);
    const e = g.tensors.get(t.out.name);
    if (!e) score++;
    else if (e.entry.type !== t.type || e.entry.ne.join(",") !== t.out.ne.join(",")) score++;
  }
  for (const n of g.tensors.keys()) if (!planned.has(n)) score++;
  // tensor order breaks ties (convert's `q8_0` and llama-quantize's `Q8_0` choose the same types, in different orders)
  const names = f.tensors.map((t) => t.out.name);
  let moved = 0;
  g.order.forEach((n, i) => void (names[i] !== n && moved++));
  return score + moved / (names.length + g.order.length + 1);
}

function fmtValue(v: GGUFValue | undefined): string {
  if (!v) return "(absent)";
  if (v.type === GGUFValueType.ARRAY) return `[${v.value.length} × ${GGUFValueType[v.itemType]}]`;
  return `${GGUFValueType[v.type]} ${JSON.stringify(typeof v.value === "bigint" ? v.value.toString() : v.value)}`;
}

function sameValue(a: GGUFValue, b: GGUFValue): boolean {
  if (a.type !== b.type) return false;
  if (a.type === GGUFValueType.ARRAY) {
    if (b.type !== GGUFValueType.ARRAY || a.itemType !== b.itemType || a.value.length !== b.value.length) return false;
    for (let i = 0; i < a.value.length; i++) if (!same(a.value[i], b.value[i], a.itemType)) return false;
    return true;
  }
  return same(a.value, b.value as typeof a.value, a.type);
}

function same(x: unknown, y: unknown, t: GGUFValueType): boolean {
  if (t === GGUFValueType.FLOAT32) return Math.fround(Number(x)) === Math.fround(Number(y)) || (Number.isNaN(Number(x)) && Number.isNaN(Number(y)));
  if (typeof x === "bigint" || typeof y === "bigint") return BigInt(x as bigint) === BigInt(y as bigint);
  return x === y || (typeof x === "number" && Number.isNaN(x) && typeof y === "number" && Number.isNaN(y));
}

function boundFor(type: G, overrides?: VerifyOptions["bounds"]): ErrorBound {
  const base = ERROR_BOUNDS[type] ?? { relRmse: 1, relMaxAbs: 1 };
  const o = overrides?.[typeName(type)] ?? overrides?.[typeName(type).toLowerCase()] ?? overrides?.[typeName(type).toUpperCase()];
  return { relRmse: o?.relRmse ?? base.relRmse, relMaxAbs: o?.relMaxAbs ?? base.relMaxAbs };
}

/** The type holds every source value exactly: F32 always, F16/BF16 when the source is in that precision. */
function exactType(type: G, t: PlannedTensor): boolean {
  return type === G.F32 || (type === G.BF16 && t.out.dtype === "bf16") || (type === G.F16 && t.out.dtype === "f16");
}

const fmt = (x: number): string => (x === 0 ? "0" : Number.isFinite(x) ? x.toPrecision(3) : String(x));

/** Check one GGUF (or split GGUF) against the model folder it was converted from. */
export async function verify(gguf: string, modelDir: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const g = await openGgufParts(gguf);
  const arch = scalar(g.kvs.get("general.architecture"));
  if (typeof arch !== "string") throw new GgufyError("E_GGUF_FORMAT", "general.architecture is missing", { file: g.parts[0]!.path });
  const role: "model" | "mmproj" = arch === "clip" ? "mmproj" : "model";
  const ft = scalar(g.kvs.get("general.file_type"));
  const fileType = ft === undefined ? undefined : Number(ft);
  const { chunkElements, bounds, exact, onProgress, signal, ...planOpts } = opts;
  const candidates = role === "mmproj" ? (opts.mmprojType ? [opts.mmprojType] : candidateOuttypes(g, role)) : opts.outtype ? [opts.outtype] : candidateOuttypes(g, role, opts.imatrix !== undefined);

  // re-plan for each candidate; keep the plan the file matches best
  let best: { p: Plan; f: PlannedFile; score: number; outtype: string } | undefined;
  const vocabOnly = g.tensors.size === 0;
  for (const c of candidates) {
    const copts: ConvertOptions = { ...planOpts, input: modelDir, ...(role === "mmproj" ? { mmprojType: c } : { outtype: c }), ...(vocabOnly ? { vocabOnly: true } : {}) };
    let p: Plan;
    try {
      p = await plan(copts);
    } catch (e) {
      if (candidates.length > 1 && e instanceof GgufyError && (e.code === "E_USAGE" || e.code === "E_TYPE" || e.code === "E_IMATRIX_REQUIRED")) continue;
      throw e;
    }
    const f = p.files.find((x) => x.role === role && (x.split === undefined || x.split.no === 0));
    const archOf = (x: PlannedFile): unknown => x.kvs.find((k) => k.key === "general.architecture")?.value.value;
    if (!f || archOf(f) !== arch) {
      await p.close();
      throw new GgufyError("E_VERIFY", `the file is a '${arch}' GGUF but converting ${modelDir} gives ${p.files.map((x) => `'${String(archOf(x))}'`).join(" and ")}`, { file: g.parts[0]!.path });
    }
    // a candidate planned with --imatrix whose type choice cannot use one (f16 …) was refused above; an mmproj never takes it
    const score = mismatchScore(f, g);
    if (!best || score < best.score) {
      if (best) await best.p.close();
      best = { p, f, score, outtype: c };
    } else await p.close();
    if (score === 0) break; // a perfect match
  }
  if (!best) throw new GgufyError("E_VERIFY", `no conversion of ${modelDir} could be planned for output types ${candidates.join(", ")}`, { file: g.parts[0]!.path });

  const { p, f } = best;
  const handles: FileHandle[] = [];
  try {
    for (const part of g.parts) handles.push(await open(part.path, "r"));
    const failures: string[] = [];
    const planned = new Map(f.tensors.map((t) => [t.out.name, t]));
    const missing = f.tensors.filter((t) => !g.tensors.has(t.out.name)).map((t) => t.out.name);
    const unexpected = g.order.filter((n) => !planned.has(n));
    for (const n of missing) failures.push(`${n}: missing from the file`);
    for (const n of unexpected) failures.push(`${n}: not in the plan (unexpected tensor)`);

    // metadata differences (informational)
    const kvDifferences: string[] = [];
    const plannedKvs = new Map(f.kvs.filter((k) => !k.key.startsWith("split.")).map((k) => [k.key, k.value]));
    for (const [k, v] of plannedKvs) {
      const got = g.kvs.get(k);
      if (!got || !sameValue(v, got)) kvDifferences.push(`${k}: planned ${fmtValue(v)}, file ${fmtValue(got)}`);
    }
    for (const k of g.keys) if (!k.startsWith("split.") && !plannedKvs.has(k)) kvDifferences.push(`${k}: not planned, file ${fmtValue(g.kvs.get(k))}`);

    const present = f.tensors.filter((t) => g.tensors.has(t.out.name));
    const bytesTotal = present.reduce((a, t) => a + g.tensors.get(t.out.name)!.entry.bytes, 0);
    let bytesDone = 0;
    const chunk = chunkElements ?? 1 << 20;
    const checks: TensorCheck[] = [];
    for (let ti = 0; ti < present.length; ti++) {
      if (signal?.aborted) throw new GgufyError("E_INTERRUPTED", "verification interrupted");
      const t = present[ti]!;
      const { part, entry } = g.tensors.get(t.out.name)!;
      const problems: string[] = [];
      const check: TensorCheck = {
        name: t.out.name,
        shape: entry.ne,
        type: typeName(entry.type),
        plannedShape: [...t.out.ne],
        plannedType: typeName(t.type),
        sources: [...t.out.sources],
        elements: entry.ne.reduce((a, b) => a * b, 1),
        rmse: NaN,
        relRmse: NaN,
        maxAbsErr: NaN,
        relMaxAbs: NaN,
        cosine: NaN,
        nonFinite: 0,
        exact: exactType(entry.type, t),
        bound: boundFor(entry.type, bounds),
        ok: false,
        problems,
      };
      checks.push(check);
      if (entry.type !== t.type) problems.push(`type ${typeName(entry.type)}, planned ${typeName(t.type)}`);
      if (entry.ne.join(",") !== t.out.ne.join(",")) {
        problems.push(`shape [${entry.ne.join(", ")}], planned [${t.out.ne.join(", ")}]`);
      } else if (!supportedTypes().includes(entry.type)) {
        problems.push(`type ${typeName(entry.type)} cannot be dequantized by ggufy`);
      } else {
        await compareTensor(t, entry, handles[part]!, check, chunk, exact === true && entry.type === t.type, signal);
        bytesDone += entry.bytes;
        onProgress?.({ tensor: t.out.name, tensorIndex: ti, tensorCount: present.length, bytesDone, bytesTotal });
        if (check.nonFinite > 0) problems.push(`${check.nonFinite} value(s) non-finite in the file but not in the source (or the other way round)`);
        if (check.exact) {
          if (check.maxAbsErr !== 0) problems.push(`${typeName(entry.type)} must reproduce the ${t.out.dtype} source exactly, max abs error ${fmt(check.maxAbsErr)}`);
        } else {
          if (!(check.relRmse <= check.bound.relRmse)) problems.push(`relative RMSE ${fmt(check.relRmse)} > ${fmt(check.bound.relRmse)} for ${typeName(entry.type)}`);
          // an importance vector moves error onto the columns it deems unimportant: the max-error bound doubles there,
          // and the weighted error must meet the type's RMSE bound
          const maxBound = t.imatrix ? 2 * check.bound.relMaxAbs : check.bound.relMaxAbs;
          if (!(check.relMaxAbs <= maxBound)) problems.push(`relative max error ${fmt(check.relMaxAbs)} > ${fmt(maxBound)} for ${typeName(entry.type)}${t.imatrix ? " with an imatrix" : ""}`);
          if (check.weightedRelRmse !== undefined && !(check.weightedRelRmse <= check.bound.relRmse)) problems.push(`importance-weighted relative RMSE ${fmt(check.weightedRelRmse)} > ${fmt(check.bound.relRmse)} for ${typeName(entry.type)}`);
        }
        if (check.bytesDiffering) problems.push(`${check.bytesDiffering} byte(s) differ from a fresh quantization of the source`);
      }
      check.ok = problems.length === 0;
      for (const pr of problems) failures.push(`${t.out.name}: ${pr}`);
    }

    const byType = new Map<string, TensorCheck[]>();
    for (const c of checks) byType.set(c.type, [...(byType.get(c.type) ?? []), c]);
    const summary: TypeSummary[] = [...byType].map(([type, cs]) => {
      const measured = cs.filter((c) => Number.isFinite(c.relRmse));
      const weighted = cs.filter((c) => c.weightedRelRmse !== undefined && Number.isFinite(c.weightedRelRmse));
      return {
        type,
        tensors: cs.length,
        elements: cs.reduce((a, c) => a + c.elements, 0),
        meanRelRmse: measured.length ? measured.reduce((a, c) => a + c.relRmse, 0) / measured.length : NaN,
        ...(weighted.length ? { meanWeightedRelRmse: weighted.reduce((a, c) => a + c.weightedRelRmse!, 0) / weighted.length } : {}),
        maxRelRmse: Math.max(...cs.map((c) => (Number.isNaN(c.relRmse) ? -Infinity : c.relRmse))),
        maxRelMaxAbs: Math.max(...cs.map((c) => (Number.isNaN(c.relMaxAbs) ? -Infinity : c.relMaxAbs))),
        minCosine: Math.min(...cs.map((c) => (Number.isNaN(c.cosine) ? Infinity : c.cosine))),
        failed: cs.filter((c) => !c.ok).length,
      };
    });
    return {
      ok: failures.length === 0,
      file: path.resolve(gguf),
      parts: g.parts.map((x) => x.path),
      modelDir: path.resolve(modelDir),
      outtype: best.outtype,
      fileType,
      role,
      tensors: checks,
      missing,
      unexpected,
      kvDifferences,
      summary,
      failures,
    };
  } finally {
    for (const h of handles) await h.close().catch(() => undefined);
    await p.close();
  }
}

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, length - done, offset + done);
    if (bytesRead === 0) throw new GgufyError("E_GGUF_FORMAT", "unexpected end of file");
    done += bytesRead;
  }
  return out;
}

/** Dequantize the file's tensor chunk by chunk and accumulate the error statistics against the source. */
async function compareTensor(t: PlannedTensor, entry: GGUFTensorEntry, fh: FileHandle, c: TensorCheck, chunkElements: number, exactBytes: boolean, signal?: AbortSignal): Promise<void> {
  const ne0 = entry.ne[0]!;
  const rb = rowBytes(entry.type, ne0);
  const codec = codecFor(entry.type);
  const floatType = entry.type === G.F32 || entry.type === G.F16 || entry.type === G.BF16;
  let sumSqErr = 0;
  let sumSqRef = 0;
  let sumSqOut = 0;
  let dot = 0;
  let maxErr = 0;
  let maxRef = 0;
  let nonFinite = 0;
  let differing = 0;
  let wErr = 0;
  let wRef = 0;
  let out = new Float32Array(0);
  for (const [r0, n] of chunkRanges(t, chunkElements)) {
    if (signal?.aborted) throw new GgufyError("E_INTERRUPTED", "verification interrupted");
    const ref = await t.out.read(r0, n);
    if (ref.length !== n * ne0) throw new Error(`${t.out.name}: read of rows [${r0}, ${r0 + n}) returned ${ref.length} values, expected ${n * ne0}`);
    const bytes = await readAt(fh, entry.fileOffset + r0 * rb, n * rb);
    if (out.length !== n * ne0) out = new Float32Array(n * ne0);
    codec.dequantize(bytes, out);
    const qw = importanceForRows(t.imatrix, t.out.ne, r0, n);
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i]!;
      const o = out[i]!;
      if (r - r !== 0) {
        // a NaN/Inf source value (--allow-nonfinite): float types must carry it, quantized ones are not measured there
        if (floatType && !(Number.isNaN(r) ? Number.isNaN(o) : o === r)) nonFinite++;
        continue;
      }
      if (o - o !== 0) {
        nonFinite++;
        continue;
      }
      const d = o - r;
      if (qw) {
        const w = qw[i % ne0]!;
        wErr += w * d * d;
        wRef += w * r * r;
      }
      sumSqErr += d * d;
      sumSqRef += r * r;
      sumSqOut += o * o;
      dot += r * o;
      const ad = Math.abs(d);
      if (ad > maxErr) maxErr = ad;
      const ar = Math.abs(r);
      if (ar > maxRef) maxRef = ar;
    }
    if (exactBytes) {
      const again = encodeRows(entry.type, ref, ne0, undefined, qw);
      for (let i = 0; i < again.length; i++) if (again[i] !== bytes[i]) differing++;
    }
  }
  const nEl = c.elements;
  c.rmse = Math.sqrt(sumSqErr / Math.max(1, nEl));
  c.relRmse = sumSqRef > 0 ? Math.sqrt(sumSqErr / sumSqRef) : sumSqErr === 0 ? 0 : Infinity;
  c.maxAbsErr = maxErr;
  c.relMaxAbs = maxRef > 0 ? maxErr / maxRef : maxErr === 0 ? 0 : Infinity;
  c.cosine = sumSqRef > 0 && sumSqOut > 0 ? dot / Math.sqrt(sumSqRef * sumSqOut) : sumSqRef === 0 && sumSqOut === 0 ? 1 : 0;
  c.nonFinite = nonFinite;
  if (t.imatrix) c.weightedRelRmse = wRef > 0 ? Math.sqrt(wErr / wRef) : wErr === 0 ? 0 : Infinity;
  if (exactBytes) c.bytesDiffering = differing;
}

/** The E_VERIFY error for a failed result: one line naming the tensors (the first 8 problems). */
export function verifyError(r: VerifyResult): GgufyError {
  const shown = r.failures.slice(0, 8);
  const more = r.failures.length - shown.length;
  const names = [...new Set(r.failures.map((x) => x.slice(0, x.indexOf(":"))))];
  return new GgufyError("E_VERIFY", `${names.length} tensor(s) failed verification: ${shown.join("; ")}${more > 0 ? `; … and ${more} more` : ""}`, { file: r.file });
}
