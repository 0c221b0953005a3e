/**
 * Merging PEFT LoRA adapters into a base checkpoint while it is read (issue 16, item 2): the base's
 * SourceCheckpoint is wrapped by a view whose rows of every targeted weight are
 *
 *     W + Σ_adapters  S · scale · (B · A)        (linear:    A [r, in],    B [out, r])
 *     W + Σ_adapters  S · scale · (B · A)ᵀ       (embedding: A [r, vocab], B [hidden, r])
 *
 * computed from the exactly decoded base rows (whatever the base format: the view sits on the
 * SourceCheckpoint, below every scheme decoder and above none of the model's transforms), the product
 * and the sum accumulated in float64 and rounded once to float32. The model mappings read the view, so
 * the merge is in Hugging Face space, before the Q/K permutation, Gemma's norm + 1, stacking, splits.
 * A row chunk of `n` output rows needs A whole (small: r × in) and n rows of B; the chunk's own rows
 * are the only full-width buffer. `modules_to_save` tensors replace their base tensor.
 *
 * Orientation as PEFT defines it (peft/tuners/lora/layer.py): Linear.get_delta_weight is
 * `transpose(B @ A, fan_in_fan_out) * scaling`, Embedding.get_delta_weight is
 * `transpose(lora_embedding_B @ lora_embedding_A, True) * scaling`, so for the embedding
 * ΔW[v, h] = scaling · Σ_k B[h, k] · A[k, v]. `merge_and_unload` adds ΔW to the base weight.
 */
import { open, type FileHandle } from "node:fs/promises";
import { GgufyError } from "../../errors.js";
import { bf16RowToF32, f16RowToF32 } from "../../formats/half.js";
import type { SourceCheckpoint, SourceTensor } from "../../source/checkpoint.js";

/** One adapter to merge: its folder and the user's extra factor (--lora-scale, default 1). */
export interface LoraSpec {
  dir: string;
  scale?: number;
}

/** The part of the adapter reader (./adapter.ts, LoraAdapter) the merge uses. */
export interface MergeAdapter<T = unknown> {
  readonly dir: string;
  readonly targets: readonly { baseName: string; a: T; b: T; rank: number; alpha: number; scale: number; embedding: boolean }[];
  readonly saved: readonly { baseName: string; tensor: T }[];
  read(t: T): Promise<Float32Array>;
  close?(): Promise<void>;
}

/** A low-rank update of one base tensor. */
interface Delta {
  adapter: MergeAdapter;
  a: unknown;
  b: unknown;
  rank: number;
  /** S · scale */
  coef: number;
  embedding: boolean;
  /** adapter index, for messages */
  index: number;
}

/** What happens to one base tensor: optionally replaced (modules_to_save), then the deltas after it. */
interface TensorOps {
  replace?: { adapter: MergeAdapter; tensor: unknown; index: number };
  deltas: Delta[];
}

/** One line per affected tensor, for --dry-run and the library. */
export interface LoraMergeEntry {
  tensor: string;
  kind: "merged" | "replaced";
  /** "r8 ×2.0 (adapter-dir)" per adapter */
  detail: string;
}

export interface LoraMergeSummary {
  adapters: { dir: string; scale: number; targets: number; saved: number }[];
  tensors: LoraMergeEntry[];
}

function shapeOf(t: unknown): readonly number[] | undefined {
  const s = (t as { shape?: unknown } | null)?.shape;
  return Array.isArray(s) && s.every((x) => Number.isSafeInteger(x)) ? (s as number[]) : undefined;
}

function nameOf(t: unknown, fallback: string): string {
  const o = t as { name?: unknown; key?: unknown } | null;
  return typeof o?.name === "string" ? o.name : typeof o?.key === "string" ? o.key : fallback;
}

type Matrix = Float64Array | Float32Array;

/** A tiny cache of whole adapter matrices, bounded in elements (at least the last one is kept). */
class MatrixCache {
  private readonly m = new Map<unknown, Promise<Matrix>>();
  private sizes = new Map<unknown, number>();
  private total = 0;
  constructor(private readonly maxElements: number) {}
  get<M extends Matrix>(key: unknown, load: () => Promise<M>, size: number): Promise<M> {
    const hit = this.m.get(key) as Promise<M> | undefined;
    if (hit) {
      this.m.delete(key);
      this.m.set(key, hit); // most recent last
      return hit;
    }
    const p = load();
    this.m.set(key, p);
    this.sizes.set(key, size);
    this.total += size;
    p.catch(() => this.drop(key));
    while (this.total > this.maxElements && this.m.size > 1) this.drop(this.m.keys().next().value);
    return p;
  }
  private drop(key: unknown): void {
    if (!this.m.has(key)) return;
    this.m.delete(key);
    this.total -= this.sizes.get(key) ?? 0;
    this.sizes.delete(key);
  }
}

export class LoraMerge {
  /** the base tensors that change, with what changes them */
  private readonly ops = new Map<string, TensorOps>();
  /** A and B as read (float32; an embedding's B transposed), a few tensors at a time (16 MB) */
  private readonly cache = new MatrixCache(4 << 20);

  private constructor(
    readonly base: SourceCheckpoint,
    readonly adapters: readonly MergeAdapter[],
    readonly scales: readonly number[],
  ) {}

  /**
   * Check every adapter against the base (every target and saved tensor present with fitting shapes;
   * ranks consistent) — before anything is written — and return the merge.
   */
  static create(base: SourceCheckpoint, adapters: readonly MergeAdapter[], scales: readonly number[]): LoraMerge {
    const m = new LoraMerge(base, adapters, scales);
    adapters.forEach((ad, index) => {
      const s = scales[index] ?? 1;
      if (!Number.isFinite(s)) throw new GgufyError("E_USAGE", `--lora-scale ${s}: expected a finite number`, { file: ad.dir });
      for (const sv of ad.saved) {
        const bt = m.requireBase(sv.baseName, ad, nameOf(sv.tensor, sv.baseName));
        const shape = shapeOf(sv.tensor);
        if (shape && !sameShape(shape, bt.shape)) {
          throw new GgufyError("E_LORA", `modules_to_save tensor has shape [${shape.join(", ")}], the base's ${sv.baseName} is [${bt.shape.join(", ")}]`, { file: ad.dir, tensor: nameOf(sv.tensor, sv.baseName) });
        }
        // a replacement makes every earlier update of that tensor moot
        m.ops.set(sv.baseName, { replace: { adapter: ad, tensor: sv.tensor, index }, deltas: [] });
      }
      for (const t of ad.targets) {
        const aName = nameOf(t.a, `${t.baseName} lora_A`);
        const bName = nameOf(t.b, `${t.baseName} lora_B`);
        const bt = m.requireBase(t.baseName, ad, aName);
        if (bt.shape.length !== 2) throw new GgufyError("E_LORA", `targets ${t.baseName}, which has shape [${bt.shape.join(", ")}]: LoRA merges only into 2-D weights`, { file: ad.dir, tensor: aName });
        if (!Number.isSafeInteger(t.rank) || t.rank < 1) throw new GgufyError("E_LORA", `rank ${t.rank} is not a positive integer`, { file: ad.dir, tensor: aName });
        if (!Number.isFinite(t.scale)) throw new GgufyError("E_LORA", `scaling ${t.scale} is not finite`, { file: ad.dir, tensor: aName });
        const [rows, cols] = [bt.shape[0]!, bt.shape[1]!];
        // linear: A [r, in], B [out, r]; embedding: A [r, vocab], B [hidden, r] (the base is [vocab, hidden])
        const wantA = t.embedding ? [t.rank, rows] : [t.rank, cols];
        const wantB = t.embedding ? [cols, t.rank] : [rows, t.rank];
        const sa = shapeOf(t.a);
        const sb = shapeOf(t.b);
        if (sa && sa.length === 2 && sa[0] !== t.rank) throw new GgufyError("E_LORA", `rank mismatch: lora_A has ${sa[0]} rows but the adapter's rank for ${t.baseName} is ${t.rank}`, { file: ad.dir, tensor: aName });
        if (sb && sb.length === 2 && sb[1] !== t.rank) throw new GgufyError("E_LORA", `rank mismatch: lora_B has ${sb[1]} columns but the adapter's rank for ${t.baseName} is ${t.rank}`, { file: ad.dir, tensor: bName });
        if (sa && !sameShape(sa, wantA)) throw new GgufyError("E_LORA", `has shape [${sa.join(", ")}], expected [${wantA.join(", ")}] for the base's ${t.baseName} [${bt.shape.join(", ")}] (an adapter for another model?)`, { file: ad.dir, tensor: aName });
        if (sb && !sameShape(sb, wantB)) throw new GgufyError("E_LORA", `has shape [${sb.join(", ")}], expected [${wantB.join(", ")}] for the base's ${t.baseName} [${bt.shape.join(", ")}] (an adapter for another model?)`, { file: ad.dir, tensor: bName });
        const ops = m.ops.get(t.baseName) ?? { deltas: [] };
        ops.deltas.push({ adapter: ad, a: t.a, b: t.b, rank: t.rank, coef: s * t.scale, embedding: t.embedding, index });
        m.ops.set(t.baseName, ops);
      }
    });
    return m;
  }

  private requireBase(name: string, ad: MergeAdapter, adapterTensor: string): SourceTensor {
    const t = this.base.get(name);
    if (!t) throw new GgufyError("E_LORA", `targets ${name}, which the base checkpoint ${this.base.dir} does not have (an adapter for another architecture?)`, { file: ad.dir, tensor: adapterTensor });
    return t;
  }

  /** release the adapters' files */
  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.then((f) => f.close(), () => undefined);
    this.handles.clear();
    for (const a of this.adapters) await a.close?.();
  }

  /** base tensor names the adapters change */
  affected(): string[] {
    return [...this.ops.keys()];
  }

  summary(): LoraMergeSummary {
    const tensors: LoraMergeEntry[] = [];
    for (const name of this.base.names()) {
      const o = this.ops.get(name);
      if (!o) continue;
      const parts = [
        ...(o.replace ? [`replaced by ${nameOf(o.replace.tensor, name)} (${o.replace.adapter.dir})`] : []),
        ...o.deltas.map((d) => `+ r${d.rank} ×${fmtNum(d.coef)} (${d.adapter.dir})`),
      ];
      tensors.push({ tensor: name, kind: o.replace && o.deltas.length === 0 ? "replaced" : "merged", detail: parts.join(", ") });
    }
    return {
      adapters: this.adapters.map((a, i) => ({ dir: a.dir, scale: this.scales[i] ?? 1, targets: a.targets.length, saved: a.saved.length })),
      tensors,
    };
  }

  /**
   * The base seen with the adapters merged: readRows of a changed tensor gives merged float32 rows, its
   * stored bytes are never offered (readRawRows → undefined, so the pipeline reads rows), and its
   * SourceTensor says f32 and "+ lora" in its encoding. Every other tensor is the base's, unchanged.
   */
  view(): SourceCheckpoint {
    const base = this.base;
    const ops = this.ops;
    const described = new Map<string, SourceTensor>();
    for (const [name, o] of ops) {
      const t = base.get(name)!;
      const enc = o.replace ? "modules_to_save" : t.encoding;
      const lora = o.deltas.length ? ` + lora r${[...new Set(o.deltas.map((d) => d.rank))].join("/")}` : "";
      described.set(name, { ...t, dtype: "f32", encoding: `${enc}${lora}` });
    }
    const v = Object.create(base) as SourceCheckpoint & Record<string, unknown>;
    v["get"] = (name: string): SourceTensor | undefined => described.get(name) ?? base.get(name);
    v["require"] = (name: string): SourceTensor => described.get(name) ?? base.require(name);
    v["readRows"] = (name: string, row0: number, nRows: number): Promise<Float32Array> => (ops.has(name) ? this.readMerged(name, row0, nRows) : base.readRows(name, row0, nRows));
    v["readRawRows"] = (name: string, row0: number, nRows: number, into?: Uint8Array) => (ops.has(name) ? Promise.resolve(undefined) : base.readRawRows(name, row0, nRows, into));
    v["readAll"] = (name: string): Promise<Float32Array> => {
      const t = base.require(name);
      return ops.has(name) ? this.readMerged(name, 0, t.rows) : base.readAll(name);
    };
    v["readPlainElements"] = (name: string, e0: number, n: number): Promise<Float32Array> => {
      if (ops.has(name)) throw new GgufyError("E_TYPE", "changed by a LoRA adapter: read it in rows", { file: base.dir, tensor: name });
      return base.readPlainElements(name, e0, n);
    };
    v["isMergedByLora"] = (name: string): boolean => ops.has(name);
    return v;
  }

  /** rows [row0, row0 + n) of a changed tensor, merged (float64 accumulation, one rounding). */
  async readMerged(name: string, row0: number, n: number): Promise<Float32Array> {
    const o = this.ops.get(name)!;
    const t = this.base.require(name);
    if (row0 < 0 || n < 0 || row0 + n > t.rows) throw new RangeError(`${name}: rows [${row0}, ${row0 + n}) outside ${t.rows}`);
    const cols = t.rowLength;
    const start = o.replace ? await this.readSaved(o.replace, name, row0, n, cols) : await this.base.readRows(name, row0, n);
    if (o.deltas.length === 0) return start;
    const prepared = await Promise.all(o.deltas.map((d) => this.prepare(d, name, t.shape[0]!, cols, row0, n)));
    // in place (each element is read once, before it is written): no second chunk-sized buffer. Columns
    // in tiles of TILE so that the rank × TILE slice of each M stays in cache across the chunk's rows;
    // the order of the sums per element (k ascending, adapters in order) does not depend on the tiling.
    const out = start;
    const TILE = 512;
    const acc = new Float64Array(TILE);
    const prod = new Float64Array(TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const w = Math.min(TILE, cols - c0);
      for (let r = 0; r < n; r++) {
        const off = r * cols + c0;
        for (let i = 0; i < w; i++) acc[i] = out[off + i]!;
        for (const p of prepared) {
          prod.fill(0);
          const rank = p.rank;
          const M = p.M;
          // prod = Σ_k coeff[r, k] · M[k, c0 …] — M is A (linear) or Bᵀ (embedding), both [rank, cols]
          for (let k = 0; k < rank; k++) {
            const c = p.coeff[r * rank + k]!;
            if (c === 0) continue;
            const base = k * cols + c0;
            for (let i = 0; i < w; i++) prod[i] += c * M[base + i]!;
          }
          const s = p.coef;
          for (let i = 0; i < w; i++) acc[i] += s * prod[i]!;
        }
        for (let i = 0; i < w; i++) out[off + i] = acc[i]!; // the one rounding to float32
      }
    }
    return out;
  }

  /**
   * The two factors of a delta for rows [row0, row0+n): `M` [rank, cols] (linear: A; embedding: Bᵀ) and
   * `coeff` [n, rank] (linear: B's rows; embedding: A's columns row0…, transposed), float64.
   */
  private async prepare(d: Delta, name: string, rows: number, cols: number, row0: number, n: number): Promise<{ M: Matrix; coeff: Matrix; rank: number; coef: number }> {
    const r = d.rank;
    const aName = nameOf(d.a, `${name} lora_A`);
    const bName = nameOf(d.b, `${name} lora_B`);
    const readChecked = async (ref: unknown, label: string, want: number): Promise<Float32Array> => {
      const v = await d.adapter.read(ref);
      if (v.length !== want) throw new GgufyError("E_LORA", `holds ${v.length} values, expected ${want} for rank ${r} on ${name} [${rows}, ${cols}]`, { file: d.adapter.dir, tensor: label });
      return v;
    };
    if (!d.embedding) {
      // float32 values, each product and sum in float64 (a float32 element reads as an exact double)
      const M = await this.cache.get(d.a, () => readChecked(d.a, aName, r * cols), r * cols);
      const B = await this.cache.get(d.b, () => readChecked(d.b, bName, rows * r), rows * r);
      return { M, coeff: B.subarray(row0 * r, (row0 + n) * r), rank: r, coef: d.coef };
    }
    // embedding: base [vocab = rows, hidden = cols]; A [r, vocab], B [hidden, r]
    const M = await this.cache.get(d.b, async () => {
      const B = await readChecked(d.b, bName, cols * r);
      const bt = new Float32Array(r * cols);
      for (let h = 0; h < cols; h++) for (let k = 0; k < r; k++) bt[k * cols + h] = B[h * r + k]!;
      return bt;
    }, r * cols);
    const A = await this.cache.get(d.a, () => readChecked(d.a, aName, r * rows), r * rows);
    const coeff = new Float32Array(n * r);
    for (let v = 0; v < n; v++) for (let k = 0; k < r; k++) coeff[v * r + k] = A[k * rows + row0 + v]!;
    return { M, coeff, rank: r, coef: d.coef };
  }

  private async readSaved(rep: NonNullable<TensorOps["replace"]>, name: string, row0: number, n: number, cols: number): Promise<Float32Array> {
    const t = this.base.require(name);
    const ref = rep.tensor as { file?: unknown; start?: unknown; dtype?: unknown; byteLength?: unknown; name?: unknown };
    const size = ref.dtype === "F32" ? 4 : ref.dtype === "F16" || ref.dtype === "BF16" ? 2 : 0;
    if (typeof ref.file === "string" && typeof ref.start === "number" && ref.byteLength === t.rows * cols * size && size > 0) {
      // a safetensors entry: only rows [row0, row0 + n) are read (an lm_head replacement is vocab × hidden)
      const fh = await this.handle(ref.file);
      const bytes = new Uint8Array(n * cols * size);
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, ref.start + row0 * cols * size);
      if (bytesRead !== bytes.length) throw new GgufyError("E_LORA", "the file ends inside this tensor", { file: ref.file, tensor: nameOf(ref, name) });
      if (size === 4) return new Float32Array(bytes.buffer);
      const out = new Float32Array(n * cols);
      (ref.dtype === "F16" ? f16RowToF32 : bf16RowToF32)(new Uint16Array(bytes.buffer), out);
      return out;
    }
    const total = t.rows * cols;
    const all = await this.cache.get(rep.tensor, async () => {
      const v = await rep.adapter.read(rep.tensor);
      if (v.length !== total) throw new GgufyError("E_LORA", `modules_to_save tensor holds ${v.length} values, the base's ${name} has ${total}`, { file: rep.adapter.dir, tensor: nameOf(rep.tensor, name) });
      return v;
    }, total);
    return all.slice(row0 * cols, (row0 + n) * cols);
  }

  private readonly handles = new Map<string, Promise<FileHandle>>();
  private handle(file: string): Promise<FileHandle> {
    let h = this.handles.get(file);
    if (!h) {
      h = open(file, "r");
      this.handles.set(file, h);
    }
    return h;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function fmtNum(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(Number(x.toPrecision(6)));
}

/** Whether a view's tensor is changed by an adapter (false for a plain SourceCheckpoint). */
export function isMergedByLora(src: SourceCheckpoint, name: string): boolean {
  const f = (src as unknown as { isMergedByLora?: (n: string) => boolean }).isMergedByLora;
  return typeof f === "function" ? f(name) : false;
}

/**
 * Refuse an adapter whose changes the conversion would not write: every changed base tensor must be the
 * source of some output tensor (a target on a tensor the converter drops would be silently lost).
 */
export function checkMergeWritten(merge: LoraMerge, outputs: readonly { tensors: readonly { sources: readonly string[] }[] }[]): void {
  const used = new Set<string>();
  for (const f of outputs) for (const t of f.tensors) for (const s of t.sources) used.add(s);
  for (const name of merge.affected()) {
    if (!used.has(name)) {
      const who = merge.adapters.find((a) => a.targets.some((t) => t.baseName === name) || a.saved.some((s) => s.baseName === name))!;
      throw new GgufyError("E_LORA", `changes ${name}, which the conversion does not write to any GGUF tensor`, { file: who.dir, tensor: name });
    }
  }
}
