/**
 * Opening a model reference (`hf:owner/name[@rev]`, a Hub URL) as a folder every command can read.
 *
 *   const loc = await openModelRef("hf:Qwen/Qwen2.5-0.5B-Instruct", { token });
 *   try { await convert({ input: loc.dir, ... }) } finally { await loc.close() }
 *
 * A local path comes back as it is. For a reference:
 *  1. the revision is resolved once to its commit sha (modelInfo) and every later request names that
 *     sha, so a branch that moves during the run cannot mix two versions; each response's
 *     `x-repo-commit` and ETag are checked against the pinned commit and the listing;
 *  2. when the Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`) already
 *     holds a complete snapshot of that revision (refs/<rev> → snapshots/<commit>/ with config.json and
 *     every shard), that folder is used and nothing is requested;
 *  3. otherwise, streaming (the default): the small files (config, tokenizer, index, preprocessor, model
 *     card, chat templates …) are fetched whole — size and git/LFS hash checked — into a private staging
 *     folder, and a HubStore is mounted on it (formats/store.ts): the `.safetensors` files are read by
 *     range requests as the pipeline asks for them. No weight byte touches the disk;
 *  4. with `download: true`, every file is placed in the cache in huggingface_hub's layout
 *     (blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>, refs/<rev>), each blob written as
 *     `<etag>.incomplete`, checked (size; sha256 for LFS files, the git blob sha1 otherwise) and renamed
 *     into place; the snapshot folder is then read as a local folder.
 *
 * The lead wires this in front of every command that takes a model folder (convert, inspect, verify,
 * dequantize, convert-lora adapters / --base / --lora): `loc.dir` is a real folder for all of them.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { mkdir, mkdtemp, open, readFile, readlink, rename, rm, stat, symlink, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ListFileEntry } from "@huggingface/hub";
import { GgufyError } from "../errors.js";
import { readSmallFile, type SmallFileOptions } from "../formats/files.js";
import { clearDefaultOutputDir, mountStore, nameFolder, setDefaultOutputDir, unmountStore, unnameFolder, type ModelStore } from "../formats/store.js";
import { INDEX_FILE } from "../formats/safetensors/checkpoint.js";
import { makeHubFetch, type HubFetch, type HubFetchOptions, type HubFetchStats } from "./fetch.js";
import { isModelRef, parseModelRef, type ModelRef } from "./ref.js";

export { isModelRef, parseModelRef, type ModelRef };

export interface OpenModelRefOptions {
  /** access token (else HF_TOKEN, else HUGGING_FACE_HUB_TOKEN) */
  token?: string;
  /** the Hub's base URL (else HF_ENDPOINT, else https://huggingface.co) */
  endpoint?: string;
  /** place every file in the cache and read from there (default: stream the weights) */
  download?: boolean;
  /** the cache root (else HF_HUB_CACHE / HF_HOME/hub / ~/.cache/huggingface/hub) */
  cacheDir?: string;
  /** retry tuning, the underlying fetch (tests) */
  fetch?: HubFetchOptions;
  /** progress of --download: bytes of the current file */
  onDownload?: (file: string, done: number, total: number) => void;
}

export interface ModelLocation {
  /** a folder every command reads as a model folder */
  dir: string;
  /** how to name the model to the user */
  label: string;
  /** the reference, when it was one */
  ref?: ModelRef;
  /** the pinned commit (reference only) */
  commit?: string;
  /** "local" folder, "cache" (a complete cached snapshot, no network), "stream" (range reads), "download" */
  mode: "local" | "cache" | "stream" | "download";
  /** network counters (stream/download) */
  stats?: HubFetchStats;
  /** unmount and remove the staging folder (stream); a no-op otherwise */
  close(): Promise<void>;
  /** synchronous removal of the staging folder, for a forced exit on a signal (stream only) */
  removeSync?: () => void;
}

/** Small files fetched whole for the readers (config, tokenizer, index, card, templates …). */
const SMALL_EXT = /\.(json|txt|model|md|jinja|tiktoken|py)$/i;
/** nothing a converter reads is larger (tokenizer.json of 250k-token vocabularies is ~20 MB) */
const SMALL_CAP = 256 << 20;
/** sub-folders whose small files matter (chat templates); model repos also carry onnx/, original/ … */
const SMALL_DIRS = ["additional_chat_templates/"];

/**
 * @huggingface/hub is an optional dependency (ggufy installs and converts local folders without it,
 * offline too): loaded on the first Hub request, with one clear line when it is not installed.
 */
type HubLib = typeof import("@huggingface/hub");
let lib: Promise<HubLib> | undefined;
function hubLib(): Promise<HubLib> {
  lib ??= import("@huggingface/hub").catch((e: unknown) => {
    lib = undefined;
    throw new GgufyError("E_HUB", `reading from the Hugging Face Hub needs the package @huggingface/hub (an optional dependency of ggufy that is not installed: npm install @huggingface/hub@2.17.5) — ${(e as Error).message}`);
  });
  return lib;
}

/** An HTTP status the Hub answered (after retries); @huggingface/hub's HubApiError has the same statusCode. */
class HubStatusError extends Error {
  constructor(readonly url: string, readonly statusCode: number) {
    super(`HTTP ${statusCode}`);
  }
}

function isSha(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}

function normEtag(e: string | null | undefined): string | undefined {
  if (!e) return undefined;
  return e.replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}

// ---------------------------------------------------------------- errors

/** One clear line for a failed Hub request. */
function hubError(e: unknown, hf: HubFetch, ref: ModelRef, what: string, base: string): GgufyError {
  if (e instanceof GgufyError) return e;
  const label = ref.text;
  const sc = (e as { statusCode?: unknown } | null)?.statusCode;
  const status = typeof sc === "number" ? sc : undefined;
  const code = hf.lastFailure?.errorCode;
  const page = `${base}/${ref.repo}`;
  const ctx = { file: label, cause: e };
  if (status === 401) {
    if (code === "RepoNotFound") return new GgufyError("E_HUB", `repository '${ref.repo}' not found, or private and no valid token was sent (set HF_TOKEN or pass --token)`, ctx);
    return new GgufyError("E_HUB", `401 Unauthorized (${what}): the repository is private or gated and no valid token was sent; set HF_TOKEN or pass --token with a token from ${base}/settings/tokens`, ctx);
  }
  if (status === 403) return new GgufyError("E_HUB", `403 Forbidden (${what}): the repository is gated and this token has no access to it; request access on ${page} and use a token of an account that has it (HF_TOKEN or --token; a fine-grained token needs read access to gated repositories)`, ctx);
  if (status === 404) {
    if (code === "RevisionNotFound") return new GgufyError("E_HUB", `revision '${ref.revision ?? "main"}' not found in '${ref.repo}'`, ctx);
    if (code === "EntryNotFound") return new GgufyError("E_HUB", `${what}: not found in '${ref.repo}' at this revision`, ctx);
    return new GgufyError("E_HUB", `repository '${ref.repo}' not found (${what}; a private repository needs a token: HF_TOKEN or --token)`, ctx);
  }
  if (status !== undefined) return new GgufyError("E_HUB", `${what}: HTTP ${status} from the Hub after retries`, ctx);
  const msg = (e as Error)?.message ?? String(e);
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  return new GgufyError("E_HUB", `${what}: ${msg}${cause?.message && !msg.includes(cause.message) ? ` (${cause.message})` : ""}`, ctx);
}

async function hubCall<T>(hf: HubFetch, ref: ModelRef, what: string, base: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw hubError(e, hf, ref, what, base);
  }
}

// ---------------------------------------------------------------- the repository at a commit

interface RepoFile {
  path: string;
  size: number;
  /** the blob name in the cache and the expected ETag: sha256 for LFS files, the git blob sha1 otherwise */
  etag: string;
  lfs: boolean;
}

interface Repo {
  ref: ModelRef;
  commit: string;
  files: Map<string, RepoFile>;
  base: string;
  token: string | undefined;
  hf: HubFetch;
}

function resolveUrl(r: Repo, file: string): string {
  return `${r.base}/${r.ref.repo}/resolve/${r.commit}/${file.split("/").map(encodeURIComponent).join("/")}`;
}

/** The checks every file response passes: the pinned commit, the listed file version. */
function checkResponse(r: Repo, file: RepoFile, res: Response): void {
  const commit = res.headers.get("x-repo-commit");
  if (commit !== null && commit !== r.commit) {
    throw new GgufyError("E_HUB", `${file.path}: the repository changed revision during the run (the Hub now serves commit ${commit.slice(0, 40)}, this run pinned ${r.commit}); run again`, { file: r.ref.text });
  }
  const etag = normEtag(res.headers.get("x-linked-etag") ?? res.headers.get("etag"));
  if (etag !== undefined && etag !== file.etag) {
    throw new GgufyError("E_HUB", `${file.path}: the file changed during the run (ETag ${etag.slice(0, 64)}, listed ${file.etag}); run again`, { file: r.ref.text });
  }
}

async function openRepo(ref: ModelRef, o: OpenModelRefOptions): Promise<Repo> {
  const base = (o.endpoint ?? process.env["HF_ENDPOINT"] ?? "https://huggingface.co").replace(/\/+$/, "");
  try {
    new URL(base);
  } catch {
    throw new GgufyError("E_USAGE", `HF_ENDPOINT '${base}' is not a URL`);
  }
  const token = o.token ?? process.env["HF_TOKEN"] ?? process.env["HUGGING_FACE_HUB_TOKEN"] ?? undefined;
  if (token !== undefined && !token.startsWith("hf_")) throw new GgufyError("E_USAGE", "the Hugging Face token (--token / HF_TOKEN) does not start with 'hf_'");
  const { modelInfo, listFiles } = await hubLib();
  const hf = makeHubFetch(o.fetch);
  const cred = token ? { accessToken: token } : {};
  const revision = ref.revision ?? "main";
  // the revision → its commit, once; every later request names the commit
  const info = await hubCall(hf, ref, "resolving the revision", base, () => modelInfo({ name: ref.repo, revision, hubUrl: base, fetch: hf.fetch, additionalFields: ["sha"], ...cred }));
  const commit = (info as { sha?: unknown }).sha;
  if (typeof commit !== "string" || !isSha(commit)) throw new GgufyError("E_HUB", `the Hub did not give a commit sha for revision '${revision}'`, { file: ref.text });
  const files = new Map<string, RepoFile>();
  await hubCall(hf, ref, "listing the files", base, async () => {
    for await (const f of listFiles({ repo: { type: "model", name: ref.repo }, revision: commit, recursive: true, hubUrl: base, fetch: hf.fetch, ...cred }) as AsyncGenerator<ListFileEntry>) {
      if (f.type !== "file") continue;
      if (typeof f.path !== "string" || f.path.split("/").some((p) => p === "" || p === "." || p === "..") || f.path.includes("\\") || f.path.startsWith("/")) {
        throw new GgufyError("E_HUB", `the listing names a file '${String(f.path).slice(0, 200)}' that is not a plain relative path`, { file: ref.text });
      }
      const lfs = f.lfs !== undefined;
      const size = lfs ? f.lfs!.size : f.size;
      const etag = lfs ? f.lfs!.oid : f.oid;
      if (!Number.isSafeInteger(size) || size < 0 || typeof etag !== "string" || !/^[0-9a-f]{40,64}$/.test(etag)) throw new GgufyError("E_HUB", `the listing gives '${f.path}' no valid size or object id`, { file: ref.text });
      files.set(f.path, { path: f.path, size, etag, lfs });
    }
  });
  return { ref, commit, files, base, token, hf };
}

/** The files a conversion reads: the small ones whole, the safetensors (and index). */
function wanted(r: Repo): { small: RepoFile[]; weights: RepoFile[] } {
  const small: RepoFile[] = [];
  const weights: RepoFile[] = [];
  for (const f of r.files.values()) {
    const top = !f.path.includes("/");
    if (top && f.path.endsWith(".safetensors")) weights.push(f);
    else if ((top || SMALL_DIRS.some((d) => f.path.startsWith(d))) && SMALL_EXT.test(f.path) && f.size <= SMALL_CAP) small.push(f);
  }
  if (!weights.length) throw new GgufyError("E_IO", `no .safetensors file in the repository (ggufy reads safetensors checkpoints)`, { file: r.ref.text });
  return { small, weights };
}

/** GET one file of the repository with `headers` (hubCall's retries; a bad status cancels the body), its response checked. */
async function fetchChecked(r: Repo, f: RepoFile, headers: Record<string, string>): Promise<Response> {
  const res = await hubCall(r.hf, r.ref, f.path, r.base, async () => {
    const x = await r.hf.fetch(resolveUrl(r, f.path), { headers });
    if (!x.ok) {
      await x.body?.cancel().catch(() => undefined);
      throw new HubStatusError(resolveUrl(r, f.path), x.status);
    }
    return x;
  });
  checkResponse(r, f, res);
  return res;
}

/** A whole file, streamed to `sink`, its size and hash checked. Throws before `sink` is used when the response is bad. */
async function fetchWhole(r: Repo, f: RepoFile, sink: (chunk: Uint8Array) => Promise<void> | void, from = 0, hashPrefix?: Uint8Array[]): Promise<void> {
  const headers: Record<string, string> = {};
  if (r.token) headers["authorization"] = `Bearer ${r.token}`;
  if (from > 0) headers["range"] = `bytes=${from}-`;
  const res = await fetchChecked(r, f, headers);
  const h = f.lfs ? createHash("sha256") : createHash("sha1");
  if (!f.lfs) h.update(`blob ${f.size}\0`);
  for (const c of hashPrefix ?? []) h.update(c);
  let n = from;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      n += chunk.length;
      if (n > f.size) throw new GgufyError("E_HUB", `${f.path}: the Hub sent more than the listed ${f.size} bytes`, { file: r.ref.text });
      h.update(chunk);
      await sink(chunk);
    }
  } catch (e) {
    throw hubError(e, r.hf, r.ref, f.path, r.base);
  }
  if (n !== f.size) throw new GgufyError("E_HUB", `${f.path}: received ${n} bytes, the listing says ${f.size}`, { file: r.ref.text });
  const got = h.digest("hex");
  if (got !== f.etag) throw new GgufyError("E_HUB", `${f.path}: ${f.lfs ? "sha256" : "git blob sha1"} of the download is ${got}, the Hub lists ${f.etag}`, { file: r.ref.text });
}

// ---------------------------------------------------------------- the streaming store

/** At most this many range requests at once per model (the pipeline's read-ahead asks for more). */
const MAX_CONCURRENT = 8;

class HubStore implements ModelStore {
  readonly remote = true;
  readonly label: string;
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  /** shards checked once against fileDownloadInfo (exists at the commit, size, ETag) */
  private readonly probed = new Map<string, Promise<void>>();

  constructor(readonly dir: string, private readonly r: Repo) {
    this.label = r.ref.text;
  }

  private rel(file: string): RepoFile {
    const name = path.relative(this.dir, file).split(path.sep).join("/");
    const f = this.r.files.get(name);
    if (!f) throw new GgufyError("E_IO", `not in the repository`, { file: `${this.label}/${name}` });
    return f;
  }

  async list(): Promise<string[]> {
    return [...this.r.files.keys()];
  }

  readSmall(name: string, o: SmallFileOptions): Promise<Buffer> {
    return readSmallFile(path.join(this.dir, name), o);
  }

  async size(file: string): Promise<number> {
    const f = this.rel(file);
    await this.probe(f);
    return f.size;
  }

  /** fileDownloadInfo: the file is there at the pinned commit, with the listed size and ETag */
  private probe(f: RepoFile): Promise<void> {
    let p = this.probed.get(f.path);
    if (!p) {
      const r = this.r;
      p = hubCall(r.hf, r.ref, f.path, r.base, async () => {
        const { fileDownloadInfo } = await hubLib();
        const info = await fileDownloadInfo({ repo: { type: "model", name: r.ref.repo }, path: f.path, revision: r.commit, hubUrl: r.base, fetch: r.hf.fetch, ...(r.token ? { accessToken: r.token } : {}) });
        if (!info) throw new GgufyError("E_HUB", `${f.path}: not found at commit ${r.commit}`, { file: r.ref.text });
        if (info.size !== f.size) throw new GgufyError("E_HUB", `${f.path}: the Hub gives ${info.size} bytes, the listing ${f.size}; run again`, { file: r.ref.text });
        const etag = normEtag(info.etag);
        if (etag !== f.etag) throw new GgufyError("E_HUB", `${f.path}: the file changed during the run (ETag ${etag}, listed ${f.etag}); run again`, { file: r.ref.text });
      });
      p.catch(() => undefined);
      this.probed.set(f.path, p);
    }
    return p;
  }

  private async slot(): Promise<void> {
    if (this.active < MAX_CONCURRENT) {
      this.active++;
      return;
    }
    await new Promise<void>((res) => this.waiting.push(res));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  async read(file: string, position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const f = this.rel(file);
    const buf = into && into.length >= length ? into.subarray(0, length) : new Uint8Array(length);
    if (length === 0) return buf;
    if (position < 0 || position + length > f.size) throw new GgufyError("E_ST_TRUNCATED", `read of bytes [${position}, ${position + length}) past the end (${f.size} bytes)`, { file: `${this.label}/${f.path}` });
    await this.probe(f);
    const r = this.r;
    await this.slot();
    try {
      const headers: Record<string, string> = { range: `bytes=${position}-${position + length - 1}` };
      if (r.token) headers["authorization"] = `Bearer ${r.token}`;
      const res = await fetchChecked(r, f, headers);
      let n = 0;
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          if (n + chunk.length > length) throw new Error(`the server sent more than the ${length} bytes asked for`);
          buf.set(chunk, n);
          n += chunk.length;
        }
      } catch (e) {
        throw hubError(e, r.hf, r.ref, f.path, r.base);
      }
      if (n !== length) throw new GgufyError("E_HUB", `${f.path}: range [${position}, ${position + length}) returned ${n} bytes`, { file: r.ref.text });
      return buf;
    } finally {
      this.release();
    }
  }

  async close(): Promise<void> {
    /* shared by every checkpoint opened on the mount; the location's close() ends it */
  }
}

// ---------------------------------------------------------------- the cache

/**
 * The cache root as huggingface_hub (constants.py HF_HUB_CACHE) and @huggingface/hub
 * (lib/cache-management.ts getHFHubCachePath) find it: $HF_HUB_CACHE, else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. Computed here so that a cached snapshot
 * is found without loading the optional client library.
 */
export function hubCacheRoot(o: { cacheDir?: string } = {}): string {
  if (o.cacheDir) return o.cacheDir;
  const env = process.env;
  if (env["HF_HUB_CACHE"]) return env["HF_HUB_CACHE"];
  return path.join(env["HF_HOME"] ?? path.join(env["XDG_CACHE_HOME"] ?? path.join(os.homedir(), ".cache"), "huggingface"), "hub");
}

function repoCacheDir(root: string, repo: string): string {
  return path.join(root, `models--${repo.split("/").join("--")}`);
}

/** A complete snapshot of `revision` in the cache, without a request: its folder, or undefined. */
export async function cachedSnapshot(root: string, ref: ModelRef): Promise<{ dir: string; commit: string } | undefined> {
  const repoDir = repoCacheDir(root, ref.repo);
  const rev = ref.revision ?? "main";
  let commit: string;
  if (isSha(rev)) commit = rev;
  else {
    try {
      commit = (await readSmallFile(path.join(repoDir, "refs", ...rev.split("/")), { cap: 4096 })).toString("utf8").trim();
    } catch {
      return undefined;
    }
    if (!isSha(commit)) return undefined;
  }
  const snap = path.join(repoDir, "snapshots", commit);
  const isFile = (p: string): boolean => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (!isFile(path.join(snap, "config.json"))) return undefined;
  // every shard the index names, or at least one .safetensors
  {
    if (isFile(path.join(snap, INDEX_FILE))) {
      try {
        const wm = (JSON.parse(await readFile(path.join(snap, INDEX_FILE), "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
        const shards = new Set(Object.values(wm));
        if (shards.size === 0 || ![...shards].every((s) => typeof s === "string" && isFile(path.join(snap, s)))) return undefined;
      } catch {
        return undefined;
      }
    } else if (!fs.readdirSync(snap).some((f) => f.endsWith(".safetensors") && isFile(path.join(snap, f)))) return undefined;
  }
  return { dir: snap, commit };
}

/** Place one file in the cache: blobs/<etag> (written as .incomplete, checked, renamed), then the snapshot link. */
async function cacheFile(r: Repo, repoDir: string, f: RepoFile, onDownload?: (file: string, done: number, total: number) => void): Promise<void> {
  const blob = path.join(repoDir, "blobs", f.etag);
  const snapFile = path.join(repoDir, "snapshots", r.commit, ...f.path.split("/"));
  await mkdir(path.dirname(blob), { recursive: true });
  await mkdir(path.dirname(snapFile), { recursive: true });
  const have = await stat(blob).catch(() => undefined);
  if (!have || have.size !== f.size) {
    const part = `${blob}.incomplete`;
    // an .incomplete left by an interrupted run (ours or huggingface_hub's) is resumed
    let from = (await stat(part).catch(() => undefined))?.size ?? 0;
    if (from > f.size) {
      await unlink(part);
      from = 0;
    }
    const prefix = from > 0 ? [await readFile(part)] : [];
    const fh = await open(part, from > 0 ? "a" : "w");
    let done = from;
    try {
      await fetchWhole(r, f, async (c) => {
        await fh.write(c);
        done += c.length;
        onDownload?.(f.path, done, f.size);
      }, from, prefix);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      // a bad hash: the partial file is useless
      if (e instanceof GgufyError && /sha|bytes/.test(e.detail)) await unlink(part).catch(() => undefined);
      throw e;
    }
    await fh.close();
    await rename(part, blob);
  }
  const target = path.relative(path.dirname(snapFile), blob);
  const cur = await readlink(snapFile).catch(() => undefined);
  if (cur !== target) {
    const tmp = `${snapFile}.${process.pid}.tmp`;
    await rm(tmp, { force: true });
    await symlink(target, tmp);
    await rename(tmp, snapFile);
  }
}

// ---------------------------------------------------------------- the entry point

/**
 * Resolve a model argument to a folder (see the module comment). A local path: returned unchanged
 * (mode "local"). Close the location when done (it removes a streaming run's staging folder).
 */
export async function openModelRef(input: string, o: OpenModelRefOptions = {}): Promise<ModelLocation> {
  const ref = parseModelRef(input);
  if (!ref) return { dir: input, label: input, mode: "local", close: async () => undefined };
  const root = hubCacheRoot(o);
  const cached = await cachedSnapshot(root, ref);
  // a snapshot folder is named after its commit: the metadata names the model after the repository;
  // and it is the cache's, not the user's: outputs go to the working folder by default, as for streaming
  const named = (dir: string): (() => Promise<void>) => {
    nameFolder(dir, ref.repo.split("/").pop()!);
    setDefaultOutputDir(dir, process.cwd());
    return async () => {
      unnameFolder(dir);
      clearDefaultOutputDir(dir);
    };
  };
  if (cached) return { dir: cached.dir, label: ref.text, ref, commit: cached.commit, mode: "cache", close: named(cached.dir) };
  const r = await openRepo(ref, o);
  const { small, weights } = wanted(r);
  if (o.download) {
    const repoDir = repoCacheDir(root, ref.repo);
    for (const f of [...small, ...weights]) await cacheFile(r, repoDir, f, o.onDownload);
    const snap = path.join(repoDir, "snapshots", r.commit);
    const rev = ref.revision ?? "main";
    if (!isSha(rev)) {
      const refFile = path.join(repoDir, "refs", ...rev.split("/"));
      await mkdir(path.dirname(refFile), { recursive: true });
      await writeFile(`${refFile}.tmp`, r.commit);
      await rename(`${refFile}.tmp`, refFile);
    }
    return { dir: snap, label: ref.text, ref, commit: r.commit, mode: "download", stats: r.hf.stats, close: named(snap) };
  }
  // streaming: the small files into a private staging folder named after the repository (the metadata's
  // fallback name is the folder name, as for a local clone), the weights by range
  const stage = await mkdtemp(path.join(os.tmpdir(), "ggufy-hf-"));
  const dir = path.join(stage, ref.repo.split("/").pop()!);
  try {
    await mkdir(dir);
    for (const f of small) {
      const p = path.join(dir, ...f.path.split("/"));
      await mkdir(path.dirname(p), { recursive: true });
      const chunks: Uint8Array[] = [];
      await fetchWhole(r, f, (c) => void chunks.push(c));
      await writeFile(p, Buffer.concat(chunks));
    }
  } catch (e) {
    await rm(stage, { recursive: true, force: true });
    throw e;
  }
  const store = new HubStore(dir, r);
  // the pipeline keeps `threads + 1` chunks in flight for a local folder; two more hide the round trips
  // (each chunk is at most chunkElements values, so memory stays bounded)
  mountStore(dir, { store, outputDir: process.cwd(), readAhead: 2 });
  void weights;
  return {
    dir,
    label: ref.text,
    ref,
    commit: r.commit,
    mode: "stream",
    stats: r.hf.stats,
    close: async () => {
      unmountStore(dir);
      await rm(stage, { recursive: true, force: true });
    },
    removeSync: () => fs.rmSync(stage, { recursive: true, force: true }),
  };
}
