/**
 * llama-quantize's importance matrix: loaded as tools/quantize/quantize.cpp load_imatrix / prepare_imatrix
 * do (normalised per expert, filtered by --include-weights / --exclude-weights, checked for non-finite
 * values as llama_model_quantize_impl does), matched to the tensors being quantized as
 * src/llama-quant.cpp does (entry length = ne0 · n_expert; the importance vector of row r of a stacked
 * expert tensor is the slice of expert r / ne1, llama_tensor_quantize_impl imatrix_for_row), and the
 * `quantize.imatrix.*` KVs llama-quantize writes.
 */
import { GgufyError } from "../errors.js";
import { kv, type GGUFKV } from "../formats/gguf/types.js";
import { readImatrixFile, type ImatrixFile } from "../formats/imatrix.js";

export interface ImatrixOptions {
  /** --include-weights NAME (repeatable): keep only entries whose name contains one of these */
  include?: readonly string[];
  /** --exclude-weights NAME (repeatable): drop entries whose name contains one of these */
  exclude?: readonly string[];
}

export interface Imatrix {
  /** the path as given (written to quantize.imatrix.file) */
  readonly file: string;
  readonly format: ImatrixFile["format"];
  /** normalised importance per entry name: n_expert × ne0 floats */
  readonly entries: ReadonlyMap<string, Float32Array>;
  readonly datasets: readonly string[];
  /** load_imatrix's return value (m_last_call): the chunk count */
  readonly chunkCount: number;
}

const F = Math.fround;

/** load_imatrix: the raw statistics → importance vectors. */
function normalise(raw: ImatrixFile): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, e] of raw.entries) {
    const v = new Float32Array(e.sums.length);
    if (raw.format === "gguf") {
      const nc = e.counts.length;
      const ne0 = e.sums.length / nc;
      for (let j = 0; j < nc; j++) {
        const count = F(e.counts[j]!); // (float) int64
        for (let i = 0; i < ne0; i++) v[j * ne0 + i] = count > 0 ? F(e.sums[j * ne0 + i]! / count) : 1;
      }
    } else {
      const ncall = e.counts[0] ?? 0;
      const d = F(ncall);
      for (let i = 0; i < v.length; i++) v[i] = ncall > 0 ? F(e.sums[i]! / d) : e.sums[i]!;
    }
    out.set(name, v);
  }
  return out;
}

/** Read, normalise and filter an importance matrix as llama-quantize does. */
export async function loadImatrix(file: string, opts: ImatrixOptions = {}): Promise<Imatrix> {
  if (opts.include?.length && opts.exclude?.length) throw new GgufyError("E_USAGE", "--include-weights and --exclude-weights cannot be used together");
  const raw = await readImatrixFile(file);
  if (raw.format === "gguf" && !raw.hasMetadata) throw new GgufyError("E_IMATRIX", "missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size): not an imatrix written by llama-imatrix", { file });
  let entries = normalise(raw);
  if (opts.exclude?.length) for (const name of [...entries.keys()]) if (opts.exclude.some((s) => name.includes(s))) entries.delete(name);
  if (opts.include?.length) entries = new Map([...entries].filter(([name]) => opts.include!.some((s) => name.includes(s))));
  for (const [name, v] of entries) {
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) throw new GgufyError("E_IMATRIX", `non-finite importance ${v[i]} at index ${i}`, { file, tensor: name });
  }
  return { file, format: raw.format, entries, datasets: raw.datasets, chunkCount: raw.chunkCount };
}

/** strncpy(val_str, s, 127): the first 127 bytes */
function cap127(s: string): string {
  const b = Buffer.from(s, "utf8");
  return b.length <= 127 ? s : b.subarray(0, 127).toString("utf8");
}

/**
 * The KVs llama-quantize adds for an imatrix (quantize.cpp main: kv_overrides; written by
 * llama_model_quantize_impl, integers as UINT32). None when no entry is left after filtering
 * (llama-quantize then quantizes without an imatrix).
 */
export function imatrixKvs(im: Imatrix): GGUFKV[] {
  if (im.entries.size === 0) return [];
  const out = [kv.str("quantize.imatrix.file", cap127(im.file))];
  if (im.datasets.length) out.push(kv.str("quantize.imatrix.dataset", cap127(im.datasets[0]!)));
  out.push(kv.u32("quantize.imatrix.entries_count", im.entries.size));
  if (im.chunkCount > 0) out.push(kv.u32("quantize.imatrix.chunks_count", im.chunkCount));
  return out;
}

export interface ImatrixTensor {
  readonly name: string;
  readonly ne: readonly number[];
  /** whether this tensor is quantized with the preset (llama-quantize's `quantize` flag) */
  readonly quantized: boolean;
  /** tensor_requires_imatrix for its target type */
  readonly requiresImatrix: boolean;
}

/**
 * The importance vector of every quantized tensor (undefined where there is none), checked as
 * llama_model_quantize_impl checks it: an entry whose length is not ne0 · ne2 is refused (except for
 * token_embd, which is then quantized without one), a tensor whose target type requires an imatrix
 * and has no entry is refused. In addition (ggufy, not llama-quantize), an entry naming a tensor the
 * model does not have is refused: the imatrix was made for another model.
 */
export function matchImatrix(im: Imatrix, tensors: readonly ImatrixTensor[]): (Float32Array | undefined)[] {
  const byName = new Map(tensors.map((t) => [t.name, t] as const));
  for (const name of im.entries.keys()) {
    if (!byName.has(name)) {
      throw new GgufyError("E_IMATRIX", `names tensor '${name}', which this model does not have (${tensors.length} tensors): an imatrix for another model? (--exclude-weights drops entries)`, { file: im.file });
    }
  }
  return tensors.map((t) => {
    if (!t.quantized) return undefined;
    const v = im.entries.get(t.name);
    let use = v;
    if (v) {
      const want = t.ne[0]! * (t.ne[2] ?? 1);
      if (v.length !== want) {
        if (t.name === "token_embd.weight" || t.name === "per_layer_token_embd.weight") use = undefined;
        else throw new GgufyError("E_IMATRIX", `importance vector of ${v.length} values, but the tensor [${t.ne.join(", ")}] needs ${want} (ne0 × experts): an imatrix for another model?`, { file: im.file, tensor: t.name });
      }
    }
    if (!use && t.requiresImatrix && im.entries.size > 0) {
      throw new GgufyError("E_IMATRIX_REQUIRED", `no importance vector in ${im.file} for this tensor, whose type needs one (llama-quantize: "Missing importance matrix for tensor in a very low-bit quantization")`, { tensor: t.name });
    }
    return use;
  });
}

/** The importance vector for rows [r0, r0 + n) of a tensor (all within one expert), or undefined. */
export function importanceForRows(qw: Float32Array | undefined, ne: readonly number[], r0: number, n: number): Float32Array | undefined {
  if (!qw) return undefined;
  const ne0 = ne[0]!;
  if (qw.length === ne0) return qw;
  const perExpert = ne[1]!;
  const e = Math.floor(r0 / perExpert);
  if (Math.floor((r0 + n - 1) / perExpert) !== e) throw new Error(`internal: rows [${r0}, ${r0 + n}) cross an expert boundary`);
  return qw.subarray(e * ne0, (e + 1) * ne0);
}
