/**
 * Quantized (bitsandbytes, GPTQ, AWQ, FP8, compressed-tensors) → plain Hugging Face checkpoint ("give users
 * their full-precision checkpoint back").
 *
 *  - `openCheckpoint(dir)`: a checkpoint as decoded logical tensors — every quantized module as its
 *    `weight` [out, in] (values exact in the quant state's dtype), every other tensor as stored; an async
 *    iterable in the converter's order, each tensor readable in row ranges (`rows(r0, n)`) so that no
 *    tensor has to be whole in memory. The same decoders (`DECODERS`) as `convert`, so the values are
 *    the ones the converter sees.
 *  - `planDequantize(opts)` / `dequantize(opts)`: write that checkpoint as transformers' `save_pretrained`
 *    would — shards of at most `maxShardSize` (huggingface_hub's split: tensors in order, a tensor larger
 *    than the limit alone in its shard), `model.safetensors` or `model-0000N-of-0000M.safetensors`, tensors
 *    inside a shard in safetensors' order (dtype descending, then name), `__metadata__ {"format": "pt"}`,
 *    `model.safetensors.index.json` (json.dumps(indent=2, sort_keys=True)) when there is more than one
 *    shard; config.json without `quantization_config`; tokenizer / generation / processor / code files
 *    copied byte for byte. Each shard's header is written first (the plan comes from shapes alone), then
 *    the tensors in row chunks; everything goes to a hidden temp folder beside the output that is renamed
 *    into place at the end and removed on any error or abort.
 */
import { copyFile, mkdir, readdir, readFile, realpath, rename, rm, stat, statfs, writeFile } from "node:fs/promises";
import path from "node:path";
import { GgufyError } from "../errors.js";
import { SafetensorsCheckpoint, INDEX_FILE, safetensorsHeader, compareStrings, ST_DTYPE_SIZE, type StDtype, type StEntry } from "../formats/safetensors/index.js";
import { f32RowToBf16, f32RowToF16 } from "../formats/half.js";
import { SourceCheckpoint, rowGeometry, type DecoderFactory } from "../source/checkpoint.js";
import { DECODERS } from "../source/registry.js";
import { AtomicOutput, type FileOpener } from "./output.js";
import type { ProgressEvent } from "./pipeline.js";
import { isMergedByLora, type LoraMerge, type LoraMergeSummary, type LoraSpec } from "./lora/merge.js";
import { openLoraMerge } from "./lora/open.js";

// ------------------------------------------------------------------------------------------------------------
// reader: openCheckpoint
// ------------------------------------------------------------------------------------------------------------

/** A safetensors dtype in lower case: "f32", "f16", "bf16" for floats, "i64", "u8", "bool" … otherwise. */
export type TensorDtype = Lowercase<StDtype>;

export interface CheckpointTensor {
  readonly name: string;
  /** logical (torch) shape: a bitsandbytes module's [out, in], not its packed storage shape */
  readonly shape: readonly number[];
  /** the dtype every value is exactly representable in (bitsandbytes: the quant state's dtype); for a
   *  plain tensor, its stored dtype */
  readonly dtype: TensorDtype;
  /** f32 / f16 / bf16: readable with rows() */
  readonly float: boolean;
  /** a bitsandbytes (or other decoder's) module, decoded on the fly */
  readonly quantized: boolean;
  /** changed by a LoRA adapter (openCheckpoint's `lora`): rows are merged on the fly */
  readonly merged?: boolean;
  /** how it is stored: "bf16", "i64", "nf4-dq bs64 bf16 (u8 storage)" … */
  readonly encoding: string;
  readonly numel: number;
  /** elements per row (last dim; 1-D: the whole tensor; 0-D: 1) */
  readonly rowLength: number;
  readonly rowCount: number;
  /** rows [row0, row0 + nRows) as float32 (an exact widening), row-major; float tensors only */
  rows(row0: number, nRows: number): Promise<Float32Array>;
  /** raw stored bytes [offset, offset + length) of a plain (not quantized) tensor */
  bytes(offset?: number, length?: number): Promise<Uint8Array>;
}

export interface DecodedCheckpoint extends AsyncIterable<CheckpointTensor> {
  readonly dir: string;
  readonly config: Record<string, unknown>;
  /** the raw checkpoint (shards, stored tensors, metadata) */
  readonly st: SafetensorsCheckpoint;
  /** the same checkpoint as the converter sees it (one object: decoded rows come from here) */
  readonly source: SourceCheckpoint;
  /** names of the decoded (quantized) tensors */
  readonly quantized: readonly string[];
  /** stored keys consumed by the decoders (absmax, quant_map, quant_state, SCB, weight_format …), sorted */
  readonly auxKeys: readonly string[];
  /** with `lora`: the adapters and the tensors they change */
  readonly lora?: LoraMergeSummary;
  /** logical tensor names in the converter's order (shards sorted by name, names sorted within a shard) */
  names(): string[];
  get(name: string): CheckpointTensor | undefined;
  /** every logical tensor, in names() order */
  tensors(): CheckpointTensor[];
  close(): Promise<void>;
}

export interface OpenCheckpointOptions {
  /** decoders for quantized modules (default: the registry's DECODERS, every scheme) */
  decoders?: readonly DecoderFactory[];
  /** PEFT LoRA adapters merged into the rows as they are read (merge_and_unload; src/convert/lora/merge.ts) */
  lora?: readonly LoraSpec[];
}


function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkRange(name: string, rows: number, row0: number, nRows: number): void {
  if (!Number.isSafeInteger(row0) || !Number.isSafeInteger(nRows) || row0 < 0 || nRows < 0 || row0 + nRows > rows) {
    throw new RangeError(`${name}: rows [${row0}, ${row0 + nRows}) outside ${rows}`);
  }
}

async function folderCheck(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new GgufyError("E_IO", st ? "is not a folder (give the model folder, not a file in it)" : "model folder not found", { file: dir });
}

/**
 * Open a model folder as decoded logical tensors. Bitsandbytes modules (NF4/FP4, double quant, any
 * quant_storage, LLM.int8) appear under their weight name with their [out, in] shape; their auxiliary keys
 * are consumed. Unlike the converter, non-float tensors (integer buffers …) are kept, readable as bytes.
 *
 * ```ts
 * const ckpt = await openCheckpoint("path/to/bnb-model");
 * try {
 *   for await (const t of ckpt) {
 *     for (let r = 0; r < t.rowCount; r += 256) use(t.name, await t.rows(r, Math.min(256, t.rowCount - r)));
 *   }
 * } finally { await ckpt.close(); }
 * ```
 */
export async function openCheckpoint(dir: string, opts: OpenCheckpointOptions = {}): Promise<DecodedCheckpoint> {
  const abs = path.resolve(dir);
  await folderCheck(abs);
  // the converter's own source object, with the non-float tensors kept (copied as bytes)
  const base = await SourceCheckpoint.open(abs, opts.decoders ?? DECODERS, { keepNonFloat: true });
  let src = base;
  let lora: LoraMergeSummary | undefined;
  let merge: LoraMerge | undefined;
  if (opts.lora?.length) {
    try {
      merge = await openLoraMerge(base, opts.lora);
      src = merge.view();
      lora = merge.summary();
    } catch (e) {
      await base.close();
      throw e;
    }
  }
  const st = src.st;
  const tensors = new Map<string, CheckpointTensor>();
  for (const name of src.names()) {
    const s = src.get(name);
    const info = st.get(name);
    const quantized = src.isDecoded(name);
    const merged = isMergedByLora(src, name);
    if (s) {
      const t: CheckpointTensor = {
        name,
        shape: s.shape,
        dtype: quantized || merged ? s.dtype : (info!.dtype.toLowerCase() as TensorDtype),
        float: true,
        quantized,
        ...(merged ? { merged } : {}),
        encoding: s.encoding,
        numel: numelOf(s.shape),
        rowLength: s.rowLength,
        rowCount: s.rows,
        rows: async (row0, nRows) => {
          checkRange(name, s.rows, row0, nRows);
          return src.readRows(name, row0, nRows);
        },
        bytes: quantized || merged
          ? async () => {
              throw new GgufyError("E_TYPE", `is ${s.encoding}: decoded tensors have no plain bytes (read rows)`, { file: abs, tensor: name });
            }
          : (offset = 0, length?: number) => st.read(name, offset, length),
      };
      tensors.set(name, t);
      continue;
    }
    const ni = src.nonFloatInfo(name)!;
    const g = rowGeometry(ni.shape);
    tensors.set(name, {
      name,
      shape: ni.shape,
      dtype: ni.dtype.toLowerCase() as TensorDtype,
      float: false,
      quantized: false,
      encoding: ni.dtype.toLowerCase(),
      numel: numelOf(ni.shape),
      rowLength: g.rowLength,
      rowCount: g.rows,
      rows: async () => {
        throw new GgufyError("E_TYPE", `stored as ${ni.dtype}, not a float tensor`, { file: ni.file, tensor: name });
      },
      bytes: (offset = 0, length?: number) => st.read(name, offset, length),
    });
  }
  const order = src.names();
  const quantized = src.decodedTensors();
  const auxKeys = [...src.consumed].filter((k) => !tensors.has(k)).sort(compareStrings);
  return {
    dir: abs,
    config: src.config,
    st,
    source: src,
    quantized,
    auxKeys,
    ...(lora ? { lora } : {}),
    names: () => [...order],
    get: (name) => tensors.get(name),
    tensors: () => order.map((n) => tensors.get(n)!),
    close: async () => {
      await src.close();
      await merge?.close();
    },
    [Symbol.asyncIterator]: async function* () {
      for (const n of order) yield tensors.get(n)!;
    },
  };
}

// ------------------------------------------------------------------------------------------------------------
// plan
// ------------------------------------------------------------------------------------------------------------

export type DequantizeDtype = "bf16" | "f16" | "f32" | "auto";

export interface DequantizeOptions {
  /** model folder (bitsandbytes checkpoint) */
  input: string;
  /** output folder (must not exist, or be empty, unless `force`) */
  outdir: string;
  /** dtype of the restored weights: "auto" (default) = config.json torch_dtype, like transformers'
   *  `model.dequantize()`; an explicit dtype also casts every other f32/f16/bf16 tensor */
  dtype?: DequantizeDtype;
  /** bytes per shard, or a size like "5GB", "500MB", "2GiB" (default "5GB", as save_pretrained) */
  maxShardSize?: number | string;
  /** replace an existing output folder */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?: (e: ProgressEvent) => void;
  onWarning?: (msg: string) => void;
  /** floats per chunk (default 4 Mi) */
  chunkElements?: number;
  /** open shard files through this (tests inject failures) */
  opener?: FileOpener;
  /** free bytes where `dir` lives, undefined if unknown (tests inject a small disk) */
  freeSpace?: (dir: string) => Promise<number | undefined>;
  /** decoders (default DECODERS) */
  decoders?: readonly DecoderFactory[];
  /** PEFT LoRA adapters to merge (the merged checkpoint: merge_and_unload) */
  lora?: readonly LoraSpec[];
}

export interface DequantizeTensor {
  name: string;
  shape: readonly number[];
  /** output dtype */
  dtype: StDtype;
  bytes: number;
  /** "copy": stored bytes unchanged; "decode": read as floats and written in `dtype` */
  mode: "copy" | "decode";
  /** how the source stores it */
  encoding: string;
}

export interface DequantizeShard {
  /** file name inside the output folder */
  file: string;
  /** in data order (safetensors': dtype descending, then name) */
  tensors: DequantizeTensor[];
  header: Uint8Array;
  /** file size */
  bytes: number;
}

export interface DequantizePlan {
  input: string;
  outdir: string;
  maxShardSize: number;
  shards: DequantizeShard[];
  /** sum of tensor bytes (the index's metadata.total_size) */
  totalSize: number;
  /** model.safetensors.index.json text; undefined for a single shard (save_pretrained writes none) */
  indexText: string | undefined;
  configText: string;
  /** other files copied unchanged (names in the model folder) */
  copied: string[];
  /** bitsandbytes modules restored */
  restored: string[];
  /** auxiliary keys dropped */
  dropped: string[];
  /** output dtype of the restored modules (a set when they differ: auto without torch_dtype) */
  restoredDtypes: StDtype[];
  checkpoint: DecodedCheckpoint;
}

const TORCH_TO_ST: Record<string, StDtype> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const ST_TO_TORCH: Record<string, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };
const DTYPE_FLAG: Record<Exclude<DequantizeDtype, "auto">, StDtype> = { f32: "F32", f16: "F16", bf16: "BF16" };

/** safetensors' Dtype enum order (the on-disk order sorts by it, descending, then by name). */
const DTYPE_RANK: Record<StDtype, number> = { BOOL: 0, U8: 1, I8: 2, F8_E5M2: 3, F8_E4M3: 4, F8_E8M0: 5, I16: 6, U16: 7, F16: 8, BF16: 9, I32: 10, U32: 11, F32: 12, F64: 13, I64: 14, U64: 15 };

export const DEFAULT_MAX_SHARD_SIZE = 5_000_000_000;

/** transformers' sizes: an integer number of bytes, or "5GB" (10^9), "5GiB" (2^30), "500MB", "100KB", "1TB". */
export function parseShardSize(v: number | string): number {
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 1) throw new GgufyError("E_USAGE", `max shard size ${v}: expected a positive number of bytes`);
    return v;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(|B|K|KB|KIB|M|MB|MIB|G|GB|GIB|T|TB|TIB)\s*$/i.exec(v);
  if (!m) throw new GgufyError("E_USAGE", `--max-shard-size ${v}: expected a size like 5GB, 500MB, 2GiB or a number of bytes`);
  const u = m[2]!.toUpperCase();
  const mult = u.endsWith("IB") ? 2 ** (10 * (" KMGT".indexOf(u[0]!))) : 10 ** (3 * Math.max(0, " KMGT".indexOf(u[0] ?? " ")));
  const n = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n < 1) throw new GgufyError("E_USAGE", `--max-shard-size ${v}: expected a positive size`);
  return n;
}

/** huggingface_hub's split_state_dict_into_shards: in order; a tensor over the limit gets a shard of its own. */
export function splitIntoShards<T extends { bytes: number }>(items: readonly T[], maxShardSize: number): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let curSize = 0;
  for (const it of items) {
    if (it.bytes > maxShardSize) {
      shards.push([it]);
      continue;
    }
    if (curSize + it.bytes > maxShardSize) {
      shards.push(cur);
      cur = [];
      curSize = 0;
    }
    cur.push(it);
    curSize += it.bytes;
  }
  if (cur.length > 0) shards.push(cur);
  return shards;
}

export function shardFileName(k: number, n: number): string {
  return n === 1 ? "model.safetensors" : `model-${String(k + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`;
}

/** Python's json.dumps(v, indent=2, sort_keys=True) for plain JSON values (ensure_ascii escapes). */
export function pyJsonDump(v: unknown): string {
  const sortDeep = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sortDeep);
    if (x !== null && typeof x === "object") {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort(compareStrings)) o[k] = sortDeep((x as Record<string, unknown>)[k]);
      return o;
    }
    return x;
  };
  return JSON.stringify(sortDeep(v), null, 2)
    .replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Files of a model folder that are weights (never copied into the plain checkpoint). */
const WEIGHT_FILE = /(\.safetensors|\.safetensors\.index\.json|\.bin\.index\.json|\.gguf|\.pt|\.pth|\.ckpt|\.h5|\.msgpack|\.onnx)$|^pytorch_model.*\.bin$|^(tf_model|flax_model|model)\.(h5|msgpack|ckpt.*)$/i;

async function sideFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new GgufyError("E_IO", `cannot list the model folder (${(e as Error).message})`, { file: dir, cause: e });
  }
  const out: string[] = [];
  for (const n of names.sort(compareStrings)) {
    if (n.startsWith(".") || n === "config.json" || WEIGHT_FILE.test(n)) continue;
    const s = await stat(path.join(dir, n)).catch(() => undefined);
    if (s?.isFile()) out.push(n);
  }
  return out;
}

interface Member {
  key: string;
  start: number;
  valueStart: number;
  valueEnd: number;
}

/** Spans of the top-level members of a JSON object text (undefined when the text is not a plain object). */
function topLevelMembers(text: string): Member[] | undefined {
  const n = text.length;
  let i = 0;
  const ws = (): void => {
    while (i < n && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  };
  const str = (): boolean => {
    if (text[i] !== '"') return false;
    i++;
    while (i < n) {
      const c = text[i];
      if (c === "\\") i += 2;
      else if (c === '"') {
        i++;
        return true;
      } else i++;
    }
    return false;
  };
  const value = (): boolean => {
    const c = text[i];
    if (c === '"') return str();
    if (c === "{" || c === "[") {
      let depth = 0;
      while (i < n) {
        const d = text[i];
        if (d === '"') {
          if (!str()) return false;
          continue;
        }
        if (d === "{" || d === "[") depth++;
        else if (d === "}" || d === "]") {
          depth--;
          if (depth === 0) {
            i++;
            return true;
          }
        }
        i++;
      }
      return false;
    }
    const s = i;
    while (i < n && !",}] \t\n\r".includes(text[i]!)) i++;
    return i > s;
  };
  ws();
  if (text[i] !== "{") return undefined;
  i++;
  ws();
  const members: Member[] = [];
  if (text[i] === "}") return members;
  for (;;) {
    ws();
    const start = i;
    if (!str()) return undefined;
    let key: string;
    try {
      key = JSON.parse(text.slice(start, i)) as string;
    } catch {
      return undefined;
    }
    ws();
    if (text[i] !== ":") return undefined;
    i++;
    ws();
    const valueStart = i;
    if (!value()) return undefined;
    members.push({ key, start, valueStart, valueEnd: i });
    ws();
    if (text[i] === ",") {
      i++;
      continue;
    }
    if (text[i] === "}") return members;
    return undefined;
  }
}

/**
 * config.json with top-level keys removed and/or set, keeping the original text (Python's float spellings,
 * key order, indentation) everywhere else; falls back to a fresh dump if the text cannot be edited safely.
 */
export function editConfigText(text: string, remove: readonly string[], set: Readonly<Record<string, unknown>> = {}): string {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const expected: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) if (!remove.includes(k)) expected[k] = k in set ? set[k] : v;
  for (const [k, v] of Object.entries(set)) if (!(k in expected)) expected[k] = v;
  const members = topLevelMembers(text);
  if (members && members.length > 0) {
    const kept = members.filter((m) => !remove.includes(m.key));
    const sep = members.length > 1 ? text.slice(members[0]!.valueEnd, members[1]!.start) : ",\n  ";
    const parts = kept.map((m) => text.slice(m.start, m.valueStart) + (m.key in set ? JSON.stringify(set[m.key]) : text.slice(m.valueStart, m.valueEnd)));
    const present = new Set(members.map((m) => m.key));
    for (const [k, v] of Object.entries(set)) if (!present.has(k)) parts.push(`${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    if (parts.length > 0) {
      const out = text.slice(0, members[0]!.start) + parts.join(sep) + text.slice(members[members.length - 1]!.valueEnd);
      try {
        if (JSON.stringify(JSON.parse(out)) === JSON.stringify(expected)) return out;
      } catch {
        /* fall through */
      }
    }
  }
  return JSON.stringify(expected, null, 2) + "\n";
}

function outputDtypeFor(t: CheckpointTensor, target: DequantizeDtype, autoDtype: StDtype | undefined): StDtype {
  const stored = t.dtype.toUpperCase() as StDtype;
  // a merged tensor (float32 rows): like merge_and_unload, the model's dtype (torch_dtype) unless told
  if (t.quantized || t.merged) {
    if (target !== "auto") return DTYPE_FLAG[target];
    return autoDtype ?? stored;
  }
  if (t.float && target !== "auto") return DTYPE_FLAG[target];
  return stored;
}

function resolveTarget(d: string | undefined): DequantizeDtype {
  const v = (d ?? "auto").toLowerCase();
  if (v === "auto" || v === "bf16" || v === "f16" || v === "f32") return v;
  if (v === "bfloat16") return "bf16";
  if (v === "float16") return "f16";
  if (v === "float32") return "f32";
  throw new GgufyError("E_USAGE", `--dtype ${d}: expected bf16, f16, f32 or auto`);
}

/**
 * Everything `dequantize` will write, from headers and shapes alone (no weight is read). The returned
 * plan holds the open checkpoint: close it (`plan.checkpoint.close()`) or pass the plan to `runDequantize`.
 */
export async function planDequantize(opts: DequantizeOptions): Promise<DequantizePlan> {
  const target = resolveTarget(opts.dtype);
  const maxShardSize = parseShardSize(opts.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE);
  if (!opts.outdir) throw new GgufyError("E_USAGE", "dequantize needs an output folder (--outdir)");
  const input = path.resolve(opts.input);
  const outdir = path.resolve(opts.outdir);
  const ckpt = await openCheckpoint(input, { ...(opts.decoders ? { decoders: opts.decoders } : {}), ...(opts.lora ? { lora: opts.lora } : {}) });
  try {
    await refuseOverlap(input, outdir);
    const td = ckpt.config["torch_dtype"] ?? ckpt.config["dtype"];
    const autoDtype = typeof td === "string" ? TORCH_TO_ST[td] : undefined;
    const items: DequantizeTensor[] = [];
    const restoredDtypes = new Set<StDtype>();
    for (const t of ckpt.tensors()) {
      const dtype = outputDtypeFor(t, target, autoDtype);
      const stored = t.dtype.toUpperCase() as StDtype;
      const mode = !t.quantized && !t.merged && dtype === stored ? "copy" : "decode";
      if (t.quantized) restoredDtypes.add(dtype);
      items.push({ name: t.name, shape: t.shape, dtype, bytes: t.numel * ST_DTYPE_SIZE[dtype], mode, encoding: t.encoding });
    }
    const groups = splitIntoShards(items, maxShardSize);
    if (groups.length === 0) groups.push([]);
    const shards: DequantizeShard[] = groups.map((g, k) => {
      const tensors = [...g].sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareStrings(a.name, b.name));
      const header = safetensorsHeader(tensors.map((t): StEntry => ({ name: t.name, dtype: t.dtype, shape: t.shape })), { format: "pt" });
      return { file: shardFileName(k, groups.length), tensors, header, bytes: header.length + tensors.reduce((a, t) => a + t.bytes, 0) };
    });
    const totalSize = items.reduce((a, t) => a + t.bytes, 0);
    let indexText: string | undefined;
    if (shards.length > 1) {
      const weightMap: Record<string, string> = {};
      for (const s of shards) for (const t of s.tensors) weightMap[t.name] = s.file;
      indexText = pyJsonDump({ metadata: { total_size: totalSize }, weight_map: weightMap }) + "\n";
    }
    // config.json: no quantization_config (as transformers' model.dequantize()); an explicit --dtype is the new torch_dtype
    const configText0 = await readFile(path.join(input, "config.json"), "utf8");
    const set: Record<string, unknown> = {};
    if (target !== "auto") {
      const torch = ST_TO_TORCH[DTYPE_FLAG[target]]!;
      let any = false;
      for (const k of ["torch_dtype", "dtype"]) {
        if (k in ckpt.config) {
          any = true;
          if (ckpt.config[k] !== torch) set[k] = torch;
        }
      }
      if (!any) set["torch_dtype"] = torch;
    }
    const remove = ["quantization_config", "_pre_quantization_dtype"].filter((k) => k in ckpt.config);
    const configText = remove.length > 0 || Object.keys(set).length > 0 ? editConfigText(configText0, remove, set) : configText0;
    return {
      input,
      outdir,
      maxShardSize,
      shards,
      totalSize,
      indexText,
      configText,
      copied: await sideFiles(input),
      restored: [...ckpt.quantized],
      dropped: [...ckpt.auxKeys],
      restoredDtypes: [...restoredDtypes].sort(),
      checkpoint: ckpt,
    };
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}

async function realOrResolved(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(await realOrResolved(parent), path.basename(p));
  }
}

/** The output folder may not be the model folder or one of its ancestors (--force would delete the input). */
async function refuseOverlap(input: string, outdir: string): Promise<void> {
  const a = await realOrResolved(input);
  const b = await realOrResolved(outdir);
  if (a === b || a.startsWith(b.endsWith(path.sep) ? b : b + path.sep)) {
    throw new GgufyError("E_USAGE", "the output folder is the model folder or contains it; choose another --outdir", { file: outdir });
  }
}

// ------------------------------------------------------------------------------------------------------------
// run
// ------------------------------------------------------------------------------------------------------------

export interface DequantizeResult {
  outdir: string;
  /** shard files written (absolute paths), their sizes and tensor counts */
  shards: { path: string; bytes: number; tensors: number }[];
  tensors: number;
  totalSize: number;
  /** bitsandbytes modules restored, and the dtype(s) they were written in */
  restored: number;
  restoredDtypes: StDtype[];
  /** auxiliary keys dropped */
  dropped: number;
  /** files copied besides the weights (config.json included) */
  copied: string[];
}

const COPY_BYTES = 16 << 20;

function encodeFloats(v: Float32Array, dtype: StDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const h = new Uint16Array(v.length);
  if (dtype === "BF16") f32RowToBf16(v, h);
  else if (dtype === "F16") f32RowToF16(v, h);
  else throw new Error(`internal: cannot encode floats as ${dtype}`);
  return new Uint8Array(h.buffer);
}

async function statfsFree(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

function gb(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function isEmptyDir(p: string): Promise<boolean> {
  const s = await stat(p).catch(() => undefined);
  if (!s?.isDirectory()) return false;
  return (await readdir(p).catch(() => ["?"])).length === 0;
}

export function tempDirFor(outdir: string, kind = "tmp"): string {
  return path.join(path.dirname(outdir), `.${path.basename(outdir)}.ggufy-${kind}-${process.pid}`);
}

/** Write a plan (from planDequantize) into its output folder. Closes nothing: the caller closes the checkpoint. */
export async function runDequantize(p: DequantizePlan, opts: Omit<DequantizeOptions, "input" | "outdir" | "dtype" | "maxShardSize" | "decoders"> = {}): Promise<DequantizeResult> {
  const interrupted = (): GgufyError => new GgufyError("E_INTERRUPTED", "dequantization interrupted; no output was written");
  const abortCheck = (): void => {
    if (opts.signal?.aborted) throw interrupted();
  };
  abortCheck();
  const outdir = p.outdir;
  if (!opts.force && (await exists(outdir)) && !(await isEmptyDir(outdir))) {
    throw new GgufyError("E_OUTPUT_EXISTS", "output folder already exists; pass --force to replace it", { file: outdir });
  }
  const parent = path.dirname(outdir);
  const tmp = tempDirFor(outdir);
  try {
    await mkdir(parent, { recursive: true });
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
  } catch (e) {
    throw new GgufyError("E_WRITE", `cannot create the output folder (${(e as Error).message})`, { file: outdir, cause: e });
  }
  const ckpt = p.checkpoint;
  const chunkElements = Math.max(1, opts.chunkElements ?? 4 << 20);
  const tensorCount = p.shards.reduce((a, s) => a + s.tensors.length, 0);
  const bytesTotal = p.shards.reduce((a, s) => a + s.bytes, 0);
  let bytesDone = 0;
  let tensorIndex = 0;
  let out: AtomicOutput | undefined;
  const written: DequantizeResult["shards"] = [];
  try {
    // room for the shards, the index, config and copied files
    let need = bytesTotal + Buffer.byteLength(p.indexText ?? "") + Buffer.byteLength(p.configText);
    for (const f of p.copied) need += (await stat(path.join(p.input, f))).size;
    const free = await (opts.freeSpace ?? statfsFree)(parent);
    if (free !== undefined && need > free) {
      throw new GgufyError("E_DISK_SPACE", `the output needs ${gb(need)} (${need} bytes) but only ${gb(free)} is free in ${parent}`, { file: outdir });
    }
    for (const shard of p.shards) {
      abortCheck();
      const target = path.join(outdir, shard.file);
      out = await AtomicOutput.create(path.join(tmp, shard.file), opts.opener ? { opener: opts.opener } : {});
      await out.write(shard.header);
      bytesDone += shard.header.length;
      for (const pt of shard.tensors) {
        const t = ckpt.get(pt.name)!;
        // chunk producers; read one ahead of the write
        const chunks: (() => Promise<Uint8Array>)[] = [];
        if (pt.mode === "copy") {
          for (let off = 0; off < pt.bytes; off += COPY_BYTES) {
            const o = off;
            chunks.push(() => t.bytes(o, Math.min(COPY_BYTES, pt.bytes - o)));
          }
        } else if (t.quantized || t.merged) {
          const per = Math.max(1, Math.floor(chunkElements / Math.max(1, t.rowLength)));
          for (let r = 0; r < t.rowCount; r += per) {
            const r0 = r;
            chunks.push(async () => encodeFloats(await t.rows(r0, Math.min(per, t.rowCount - r0)), pt.dtype));
          }
        } else {
          // plain floats cast to another dtype: element ranges, so that a long 1-D tensor is chunked too
          for (let e = 0; e < t.numel; e += chunkElements) {
            const e0 = e;
            chunks.push(async () => encodeFloats(await ckpt.source.readPlainElements(pt.name, e0, Math.min(chunkElements, t.numel - e0)), pt.dtype));
          }
        }
        let n = 0;
        let next: Promise<Uint8Array> | undefined = chunks.length > 0 ? chunks[0]!() : undefined;
        next?.catch(() => undefined);
        for (let i = 0; i < chunks.length; i++) {
          abortCheck();
          const bytes = await next!;
          next = i + 1 < chunks.length ? chunks[i + 1]!() : undefined;
          next?.catch(() => undefined); // surfaces when awaited
          await out.write(bytes);
          n += bytes.length;
          bytesDone += bytes.length;
          opts.onProgress?.({ file: target, tensor: pt.name, tensorIndex, tensorCount, bytesDone, bytesTotal });
        }
        if (n !== pt.bytes) throw new Error(`internal: ${pt.name}: wrote ${n} bytes, planned ${pt.bytes}`);
        tensorIndex++;
      }
      await out.commit();
      written.push({ path: target, bytes: shard.bytes, tensors: shard.tensors.length });
      out = undefined;
    }
    abortCheck();
    try {
      if (p.indexText !== undefined) await writeFile(path.join(tmp, INDEX_FILE), p.indexText);
      await writeFile(path.join(tmp, "config.json"), p.configText);
    } catch (e) {
      throw new GgufyError("E_WRITE", `writing failed: ${(e as Error).message}`, { file: outdir, cause: e });
    }
    for (const f of p.copied) {
      abortCheck();
      try {
        await copyFile(path.join(p.input, f), path.join(tmp, f));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new GgufyError(code === "ENOSPC" ? "E_WRITE" : "E_IO", `cannot copy ${f}: ${code === "ENOSPC" ? "the disk is full" : (e as Error).message}`, { file: path.join(p.input, f), cause: e });
      }
    }
    abortCheck();
    await commitDir(tmp, outdir, opts.force === true);
    return {
      outdir,
      shards: written,
      tensors: tensorCount,
      totalSize: p.totalSize,
      restored: p.restored.length,
      restoredDtypes: p.restoredDtypes,
      dropped: p.dropped.length,
      copied: ["config.json", ...p.copied],
    };
  } catch (e) {
    await out?.abort();
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
}

/** Rename the finished temp folder over `outdir` (an existing one is replaced only with force, or when empty). */
async function commitDir(tmp: string, outdir: string, force: boolean): Promise<void> {
  const fail = (e: unknown): never => {
    throw new GgufyError("E_WRITE", `cannot move the finished checkpoint into place (${(e as Error).message})`, { file: outdir, cause: e });
  };
  if (!(await exists(outdir))) {
    await rename(tmp, outdir).catch(fail);
    return;
  }
  if (await isEmptyDir(outdir)) {
    await rename(tmp, outdir).catch(fail); // rename(2) replaces an empty folder
    return;
  }
  if (!force) throw new GgufyError("E_OUTPUT_EXISTS", "output folder appeared while writing; pass --force to replace it", { file: outdir });
  const old = tempDirFor(outdir, "old");
  await rm(old, { recursive: true, force: true });
  await rename(outdir, old).catch(fail);
  try {
    await rename(tmp, outdir);
  } catch (e) {
    await rename(old, outdir).catch(() => undefined);
    fail(e);
  }
  await rm(old, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Write a bitsandbytes checkpoint back as a plain Hugging Face checkpoint (see the file comment).
 * Throws GgufyError with the converter's codes (E_IO, E_CONFIG, E_ST_*, E_INDEX*, E_BNB, E_UNSUPPORTED_QUANT,
 * E_OUTPUT_EXISTS, E_DISK_SPACE, E_WRITE, E_INTERRUPTED, E_USAGE); on any error nothing is left behind.
 */
export async function dequantize(opts: DequantizeOptions): Promise<DequantizeResult> {
  const p = await planDequantize(opts);
  try {
    if (p.restored.length === 0) opts.onWarning?.("no bitsandbytes module in the checkpoint: its tensors are written unchanged");
    return await runDequantize(p, opts);
  } finally {
    await p.checkpoint.close();
  }
}
