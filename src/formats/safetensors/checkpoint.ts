/**
 * A safetensors checkpoint: one file, or shards listed by model.safetensors.index.json.
 * Validates that the index and the shards agree and that no shard path leaves the folder.
 */
import { readdir, realpath, access } from "node:fs/promises";
import { MissingFile, readSmallFile } from "../files.js";
import path from "node:path";
import { GgufyError, jsonErrorDetail } from "../../errors.js";
import { readSafetensorsHeader, readSafetensorsHeaderVia, type StTensorInfo } from "./reader.js";
import { storeFor, type ModelStore } from "../store.js";

export const INDEX_FILE = "model.safetensors.index.json";
/** an index lists names and file names only; real ones are well under 10 MB */
export const MAX_INDEX_BYTES = 64 << 20;

export class SafetensorsCheckpoint {
  private constructor(
    /** where the bytes come from: the folder (LocalStore), or a remote store mounted on it (store.ts) */
    private readonly store: ModelStore,
    readonly dir: string,
    /** shard files, absolute, sorted by name */
    readonly files: readonly string[],
    readonly tensors: ReadonlyMap<string, StTensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Tensor names in llama.cpp's converter order: shards sorted by name, names sorted within a shard. */
  names(): string[] {
    const out: string[] = [];
    for (const f of this.files) {
      const inFile = [...this.tensors.values()].filter((t) => t.file === f).map((t) => t.name);
      inFile.sort(compareStrings);
      for (const n of inFile) out.push(n); // no spread: 200,000 names would overflow the call stack
    }
    return out;
  }

  get(name: string): StTensorInfo | undefined {
    return this.tensors.get(name);
  }

  /** Read `length` bytes of a tensor starting at byte `offset` within it. */
  async read(name: string, offset = 0, length?: number, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.tensors.get(name);
    if (!t) throw new GgufyError("E_MISSING_TENSOR", "not in the checkpoint", { file: this.dir, tensor: name });
    const len = length ?? t.byteLength - offset;
    if (offset < 0 || len < 0 || offset + len > t.byteLength) throw new RangeError(`read of ${name} [${offset}, ${offset + len}) outside ${t.byteLength} bytes`);
    return this.store.read(t.file, t.start + offset, len, into);
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  static async open(dir: string): Promise<SafetensorsCheckpoint> {
    const absDir = path.resolve(dir);
    let realDir: string;
    try {
      realDir = await realpath(absDir);
    } catch (e) {
      throw new GgufyError("E_IO", `model folder not found`, { file: absDir, cause: e });
    }
    const store = storeFor(absDir);
    try {
      return await SafetensorsCheckpoint.openIn(store, absDir, realDir);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  private static async openIn(store: ModelStore, absDir: string, realDir: string): Promise<SafetensorsCheckpoint> {
    const indexPath = path.join(absDir, INDEX_FILE);
    // a remote store stages the index (a small file) in its folder with the other small files
    const hasIndex = await exists(indexPath);
    let files: string[];
    let weightMap: Map<string, string> | undefined;
    // remote: the shards exist when the repository listing has them (there is nothing on disk to confine)
    const listed = store.remote ? new Set(await store.list()) : undefined;
    if (hasIndex) {
      weightMap = await readIndex(indexPath);
      const shardNames = [...new Set(weightMap.values())].sort(compareStrings);
      files = [];
      for (const s of shardNames) files.push(listed ? remoteShard(indexPath, absDir, s, weightMap, listed, store.label) : await confineShard(indexPath, absDir, realDir, s, weightMap));
    } else if (listed) {
      files = [...listed].filter((f) => !f.includes("/") && f.endsWith(".safetensors")).sort(compareStrings).map((f) => path.join(absDir, f));
      if (files.length === 0) throw new GgufyError("E_IO", `no .safetensors file and no ${INDEX_FILE}`, { file: store.label });
    } else {
      let entries: string[];
      try {
        entries = await readdir(absDir);
      } catch (e) {
        throw new GgufyError("E_IO", `cannot list the model folder`, { file: absDir, cause: e });
      }
      files = entries.filter((f) => f.endsWith(".safetensors")).sort(compareStrings).map((f) => path.join(absDir, f));
      if (files.length === 0) throw new GgufyError("E_IO", `no .safetensors file and no ${INDEX_FILE}`, { file: absDir });
      // a single model.safetensors (or unindexed shards) is confined like indexed shards
      for (const f of files) await confineFile(f, realDir, { file: f }, path.basename(f));
    }
    const tensors = new Map<string, StTensorInfo>();
    let metadata: Record<string, string> = {};
    for (const f of files) {
      const h = listed ? await readSafetensorsHeaderVia(f, await store.size(f), (pos, len, into) => store.read(f, pos, len, into)) : await readSafetensorsHeader(f);
      if (f === files[0]) metadata = h.metadata;
      for (const [name, info] of h.tensors) {
        const prev = tensors.get(name);
        if (prev) throw new GgufyError("E_DUPLICATE_TENSOR", `also stored in ${path.basename(prev.file)}`, { file: f, tensor: name });
        if (weightMap) {
          const want = weightMap.get(name);
          if (want === undefined) throw new GgufyError("E_INDEX_MISMATCH", `stored in this shard but not listed in ${INDEX_FILE}`, { file: f, tensor: name });
          if (path.join(absDir, want) !== f) throw new GgufyError("E_INDEX_MISMATCH", `stored here but the index places it in ${want}`, { file: f, tensor: name });
        }
        tensors.set(name, info);
      }
    }
    if (weightMap) {
      for (const [name, shard] of weightMap) {
        if (!tensors.has(name)) throw new GgufyError("E_INDEX_MISMATCH", `listed in ${INDEX_FILE} but absent from its shard`, { file: path.join(absDir, shard), tensor: name });
      }
    }
    return new SafetensorsCheckpoint(store, absDir, files, tensors, metadata);
  }
}

/** Python-like code-point string order (what sorted() gives), not locale order. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

async function readIndex(indexPath: string): Promise<Map<string, string>> {
  let json: unknown;
  let text: string;
  try {
    // checked on the descriptor: a FIFO or device is refused without blocking, a huge file by its size
    const bytes = await readSmallFile(indexPath, { code: "E_INDEX", cap: MAX_INDEX_BYTES, what: "the index", confine: true });
    if (bytes.length === 0) throw new GgufyError("E_INDEX", "is empty (an interrupted download?)", { file: indexPath });
    text = bytes.toString("utf8");
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    throw new GgufyError("E_IO", e instanceof MissingFile ? "disappeared while being read" : (e as Error).message, { file: indexPath, cause: e });
  }
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GgufyError("E_INDEX", `not valid JSON: ${jsonErrorDetail(text, e)}`, { file: indexPath });
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== "object" || Array.isArray(wm)) throw new GgufyError("E_INDEX", "has no weight_map object", { file: indexPath });
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof v !== "string" || v.length === 0) throw new GgufyError("E_INDEX", `weight_map value is not a file name`, { file: indexPath, tensor: k });
    m.set(k, v);
  }
  if (m.size === 0) throw new GgufyError("E_INDEX", "weight_map is empty", { file: indexPath });
  return m;
}

async function confineShard(indexPath: string, absDir: string, realDir: string, shard: string, wm: Map<string, string>): Promise<string> {
  const someTensor = [...wm].find(([, v]) => v === shard)?.[0];
  const ctx = { file: indexPath, ...(someTensor ? { tensor: someTensor } : {}) };
  if (path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) throw new GgufyError("E_SHARD_PATH", `shard '${shard}' points outside the model folder`, ctx);
  const p = path.join(absDir, shard);
  await confineFile(p, realDir, ctx, shard);
  return p;
}

/** A shard of a remote store: a plain relative name that the repository listing has. */
function remoteShard(indexPath: string, absDir: string, shard: string, wm: Map<string, string>, listed: ReadonlySet<string>, label: string): string {
  const someTensor = [...wm].find(([, v]) => v === shard)?.[0];
  const ctx = { file: indexPath, ...(someTensor ? { tensor: someTensor } : {}) };
  if (path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..") || shard.includes("\\")) throw new GgufyError("E_SHARD_PATH", `shard '${shard}' points outside the model folder`, ctx);
  if (!listed.has(shard)) throw new GgufyError("E_SHARD_MISSING", `shard '${shard}' is not in the repository ${label}`, ctx);
  return path.join(absDir, shard);
}

/** `p` must resolve (through any links) inside the model folder, or into its Hugging Face cache blobs. */
async function confineFile(p: string, realDir: string, ctx: { file: string; tensor?: string }, shown: string): Promise<void> {
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new GgufyError("E_SHARD_MISSING", `shard '${shown}' does not exist (or is a dangling link)`, ctx);
  }
  if (real !== realDir && !real.startsWith(realDir + path.sep) && !inHfCacheBlobs(realDir, real)) throw new GgufyError("E_SHARD_PATH", `shard '${shown}' resolves (through a link) outside the model folder`, ctx);
}

/**
 * The Hugging Face hub cache keeps files as links from models--org--name/snapshots/<rev>/ into
 * models--org--name/blobs/; a shard resolving there stays inside the same cached repository.
 */
function inHfCacheBlobs(realDir: string, real: string): boolean {
  let d = realDir;
  while (path.basename(path.dirname(d)) !== "snapshots") {
    const up = path.dirname(d);
    if (up === d) return false;
    d = up;
  }
  const blobs = path.join(path.dirname(path.dirname(d)), "blobs");
  return path.basename(path.dirname(path.dirname(d))).startsWith("models--") && path.dirname(real) === blobs;
}
