/**
 * The two importance-matrix file formats llama.cpp's `llama-imatrix` writes, read and validated (the
 * raw statistics only; normalisation and the mapping to a model's tensors are src/quant/imatrix.ts):
 *
 * - GGUF (tools/imatrix/imatrix.cpp IMatrixCollector::save_imatrix): KVs `general.type = "imatrix"`,
 *   `imatrix.datasets` (string array), `imatrix.chunk_count`, `imatrix.chunk_size` (u32); per matrix
 *   `<name>.in_sum2` F32 [ne0, n_mat] (sums of squared activations, per expert for MoE) and
 *   `<name>.counts` F32 [1, n_mat] (activations seen per expert).
 * - legacy `.dat` (save_imatrix_legacy): i32 n_entries, then per entry i32 name length, the name, i32 ncall,
 *   i32 nval, nval f32 values (already mean·ncall); then optionally i32 chunk count, i32 length and the dataset.
 *
 * common/imatrix-loader.cpp common_imatrix_load tries GGUF first and falls back to the legacy reader; so
 * does this, by the magic. Everything wrong is refused with E_IMATRIX naming the file (and the entry).
 */
import { GgufyError } from "../errors.js";
import { openRegular, MissingFile } from "./files.js";
import { readGguf, readGgufTensorBytes } from "./gguf/reader.js";
import { GGUFValueType } from "./gguf/types.js";
import { GGMLType } from "../quant/ggml/types.js";

export interface ImatrixRawEntry {
  /** sums (GGUF: Σ act², legacy: mean·ncall), n_mat × ne0 */
  readonly sums: Float32Array;
  /** GGUF: per-expert counts (std::lround of the stored floats); legacy: [ncall] */
  readonly counts: readonly number[];
}

export interface ImatrixFile {
  readonly path: string;
  readonly format: "gguf" | "dat";
  /** by name, in std::map (byte) order */
  readonly entries: ReadonlyMap<string, ImatrixRawEntry>;
  readonly datasets: readonly string[];
  readonly chunkCount: number;
  readonly chunkSize: number;
  /** GGUF: imatrix.datasets, chunk_count and chunk_size are all present (llama-quantize refuses a GGUF imatrix without them) */
  readonly hasMetadata: boolean;
}

/** 1 GiB: far above any real imatrix (a 70B model's is ~ 100 MB) */
const CAP = 1 << 30;

function bad(file: string, msg: string, entry?: string): never {
  throw new GgufyError("E_IMATRIX", msg, { file, ...(entry !== undefined ? { tensor: entry } : {}) });
}

async function readAll(file: string): Promise<Buffer> {
  let opened;
  try {
    opened = await openRegular(file, "E_IMATRIX");
  } catch (e) {
    if (e instanceof MissingFile) bad(file, "does not exist");
    throw e;
  }
  const { fh, size } = opened;
  try {
    if (size > CAP) bad(file, `is ${size} bytes, over the ${CAP}-byte cap for an importance matrix`);
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

function byteOrder(a: string, b: string): number {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return Buffer.compare(x, y);
}

/** common_imatrix_load_legacy, validating every length against the bytes left. */
function parseLegacy(file: string, buf: Buffer): ImatrixFile {
  let pos = 0;
  const left = (): number => buf.length - pos;
  const i32 = (what: string, entry?: string): number => {
    if (left() < 4) bad(file, `truncated: ${what} missing at byte ${pos} of ${buf.length}`, entry);
    const v = buf.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const n = i32("the entry count");
  if (n < 1) bad(file, `entry count ${n}: no data (not an importance matrix?)`);
  // each entry takes at least 4 + 1 + 4 + 4 + 4 bytes
  if (n > left() / 17) bad(file, `entry count ${n} cannot fit in ${buf.length} bytes (not an importance matrix, or truncated)`);
  const entries = new Map<string, ImatrixRawEntry>();
  for (let i = 0; i < n; i++) {
    const len = i32(`the name length of entry ${i + 1}`);
    if (len < 1 || len > 4096 || len > left()) bad(file, `entry ${i + 1}: name length ${len} is invalid${len > left() ? " (truncated)" : ""}`);
    const name = buf.toString("utf8", pos, pos + len);
    pos += len;
    if (name.includes("\0")) bad(file, `entry ${i + 1}: name holds a NUL byte`, name);
    const ncall = i32("the call count", name);
    const nval = i32("the value count", name);
    if (ncall < 0) bad(file, `call count ${ncall} is negative`, name);
    if (nval < 1) bad(file, `value count ${nval} (must be at least 1)`, name);
    if (nval * 4 > left()) bad(file, `truncated: ${nval} values announced, ${Math.floor(left() / 4)} left in the file`, name);
    const sums = new Float32Array(nval);
    for (let j = 0; j < nval; j++) sums[j] = buf.readFloatLE(pos + 4 * j);
    pos += 4 * nval;
    if (entries.has(name)) bad(file, `the entry appears twice`, name);
    entries.set(name, { sums, counts: [ncall] });
  }
  let chunkCount = 0;
  const datasets: string[] = [];
  if (left() > 0) {
    // the optional trailer: chunk count, then the dataset name (save_imatrix_legacy)
    chunkCount = i32("the chunk count of the trailer");
    if (chunkCount < 0) bad(file, `chunk count ${chunkCount} is negative`);
    if (left() > 0) {
      const len = i32("the dataset name length");
      if (len < 0 || len > left()) bad(file, `truncated: dataset name of ${len} bytes, ${left()} left`);
      if (len > 0) datasets.push(buf.toString("utf8", pos, pos + len).split("\0")[0]!);
      pos += len;
    }
    if (left() > 0) bad(file, `${left()} unexpected bytes after the dataset name`);
  }
  const sorted = new Map([...entries].sort((a, b) => byteOrder(a[0], b[0])));
  return { path: file, format: "dat", entries: sorted, datasets, chunkCount, chunkSize: 0, hasMetadata: false };
}

async function parseGguf(file: string): Promise<ImatrixFile> {
  let g;
  try {
    g = await readGguf(file);
  } catch (e) {
    if (e instanceof GgufyError) bad(file, `not a readable GGUF imatrix: ${e.detail}`, e.tensor);
    throw e;
  }
  if (g.tensors.length < 1) bad(file, "holds no tensors: no importance data");
  const u32 = (key: string): number | undefined => {
    const v = g.kvs.get(key);
    if (v === undefined) return undefined;
    if (v.type !== GGUFValueType.UINT32) bad(file, `${key} must be UINT32`);
    return Number(v.value);
  };
  const datasets: string[] = [];
  const ds = g.kvs.get("imatrix.datasets");
  if (ds !== undefined) {
    if (ds.type !== GGUFValueType.ARRAY || ds.itemType !== GGUFValueType.STRING) bad(file, "imatrix.datasets must be an array of strings");
    for (let i = 0; i < ds.value.length; i++) datasets.push(String(ds.value[i]));
  }
  const chunkCount = u32("imatrix.chunk_count");
  const chunkSize = u32("imatrix.chunk_size");
  const pairs = new Map<string, { sums?: (typeof g.tensors)[number]; counts?: (typeof g.tensors)[number] }>();
  for (const t of g.tensors) {
    let base: string | undefined;
    let kind: "sums" | "counts" | undefined;
    if (t.name.endsWith(".in_sum2")) [base, kind] = [t.name.slice(0, -8), "sums"];
    else if (t.name.endsWith(".counts")) [base, kind] = [t.name.slice(0, -7), "counts"];
    if (!base || !kind) continue; // common_imatrix_load skips other tensors
    const p = pairs.get(base) ?? {};
    p[kind] = t;
    pairs.set(base, p);
  }
  const entries = new Map<string, ImatrixRawEntry>();
  for (const [name, p] of [...pairs].sort((a, b) => byteOrder(a[0], b[0]))) {
    if (!p.sums || !p.counts) bad(file, `${p.sums ? ".counts" : ".in_sum2"} is missing (mismatched sums and counts)`, name);
    if (p.sums.type !== GGMLType.F32 || p.counts.type !== GGMLType.F32) bad(file, "sums and counts must be F32", name);
    const nval = p.sums.ne.reduce((a, b) => a * b, 1);
    const ncounts = p.counts.ne.reduce((a, b) => a * b, 1);
    if (ncounts < 1) bad(file, "no counts", name);
    if (nval < 1 || nval % ncounts !== 0) bad(file, `${nval} sums do not split into ${ncounts} equal per-expert rows`, name);
    if (p.sums.ne[0]! * ncounts !== nval) bad(file, `in_sum2 shape [${p.sums.ne.join(", ")}] does not match ${ncounts} counts (expected [ne0, ${ncounts}])`, name);
    const sb = await readGgufTensorBytes(g, p.sums);
    const cb = await readGgufTensorBytes(g, p.counts);
    const sums = new Float32Array(nval);
    new Uint8Array(sums.buffer).set(sb);
    const cf = new Float32Array(ncounts);
    new Uint8Array(cf.buffer).set(cb);
    const counts: number[] = [];
    for (let j = 0; j < ncounts; j++) {
      const c = cf[j]!;
      if (!Number.isFinite(c) || c < 0 || c > 2 ** 53) bad(file, `count ${c} of expert ${j} is not a non-negative number`, name);
      // std::lround: halves away from zero
      counts.push(Math.floor(c + 0.5));
    }
    entries.set(name, { sums, counts });
  }
  return {
    path: file,
    format: "gguf",
    entries,
    datasets,
    chunkCount: chunkCount ?? 0,
    chunkSize: chunkSize ?? 0,
    hasMetadata: ds !== undefined && chunkCount !== undefined && chunkSize !== undefined,
  };
}

/** Read an imatrix file in either format (GGUF by its magic, else legacy). */
export async function readImatrixFile(file: string): Promise<ImatrixFile> {
  const buf = await readAll(file);
  if (buf.length >= 4 && buf.readUInt32LE(0) === 0x46554747) return parseGguf(file);
  return parseLegacy(file, buf);
}
