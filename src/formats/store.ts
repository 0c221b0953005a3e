/**
 * Where a checkpoint's files come from: a *model store*. Three operations — list the files, read a small
 * file whole, read a byte range of a big one — are all the safetensors reader needs.
 *
 *  - LocalStore: a model folder on disk. It is exactly the behaviour ggufy always had (files.ts:
 *    regular files only, opened without blocking, size caps, links confined to the folder or its
 *    Hugging Face cache blobs).
 *  - A remote store (src/hub/store.ts, the Hugging Face Hub): small files fetched whole into a private
 *    staging folder, the `.safetensors` files read by HTTP range requests as the pipeline asks for them.
 *
 * A remote store is *mounted* on its staging folder (mountStore): the rest of ggufy keeps passing folder
 * paths around (plan, convert, inspect, verify, dequantize, the tokenizer loaders, the metadata reader
 * all read the small files there), and SafetensorsCheckpoint.open asks storeFor(dir) where the weights
 * are. Nothing but the shards goes through the network path.
 */
import path from "node:path";
import { readdir } from "node:fs/promises";
import { openRegular, readSmallFile, type SmallFileOptions } from "./files.js";
import { FileReaderPool } from "./safetensors/reader.js";

export interface ModelStore {
  /** the folder the small files are read from (a real folder: the model folder, or a staging folder) */
  readonly dir: string;
  /** how the model is named to the user ("models/x", "hf:org/name@sha") */
  readonly label: string;
  /** true: big files are not on disk (no realpath/confinement checks: names come from the listing) */
  readonly remote: boolean;
  /** file names relative to dir, "/"-separated (sub-folders included for a remote store) */
  list(): Promise<string[]>;
  /** a small file whole (MissingFile when absent) */
  readSmall(name: string, o: SmallFileOptions): Promise<Buffer>;
  /** size of a big file in bytes (remote: from the listing) */
  size(file: string): Promise<number>;
  /** `length` bytes of `file` (a path as the checkpoint names it) from `position`, into `into` when given */
  read(file: string, position: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** open handles / connections released */
  close(): Promise<void>;
}

/** Stores mounted on staging folders (resolved paths). */
const MOUNTS = new Map<string, MountedModel>();

export interface MountedModel {
  /** the remote store (its close() is a no-op: the mount's owner releases it) */
  store: ModelStore;
  /** where outputs go by default (the model folder for local input; the working folder for a remote one) */
  outputDir: string;
  /** extra chunks to keep in flight beyond the workers, to hide network latency */
  readAhead: number;
}

export function mountStore(dir: string, m: MountedModel): void {
  MOUNTS.set(path.resolve(dir), m);
}

export function unmountStore(dir: string): void {
  MOUNTS.delete(path.resolve(dir));
}

/** The remote store mounted on `dir`, if any. */
export function mountedAt(dir: string): MountedModel | undefined {
  return MOUNTS.get(path.resolve(dir));
}

/** Default output folders of model folders that are not the user's (a Hub cache snapshot: openModelRef). */
const OUTPUT_DIRS = new Map<string, string>();

export function setDefaultOutputDir(dir: string, out: string): void {
  OUTPUT_DIRS.set(path.resolve(dir), out);
}

export function clearDefaultOutputDir(dir: string): void {
  OUTPUT_DIRS.delete(path.resolve(dir));
}

/** Where outputs go by default for a model read from `dir` (plan.ts): never inside a Hub cache snapshot. */
export function defaultOutputDir(dir: string): string {
  return mountedAt(dir)?.outputDir ?? OUTPUT_DIRS.get(path.resolve(dir)) ?? dir;
}

/** Extra read-ahead (chunks in flight) for a model read from `dir` (convert.ts): 0 for a local folder. */
export function extraReadAhead(dir: string): number {
  return mountedAt(dir)?.readAhead ?? 0;
}

/** The local implementation (see the module comment): today's folder reading, unchanged. */
export class LocalStore implements ModelStore {
  readonly remote = false;
  readonly label: string;
  private readonly pool = new FileReaderPool();
  constructor(readonly dir: string) {
    this.label = dir;
  }
  async list(): Promise<string[]> {
    return readdir(this.dir);
  }
  readSmall(name: string, o: SmallFileOptions): Promise<Buffer> {
    return readSmallFile(path.join(this.dir, name), o);
  }
  async size(file: string): Promise<number> {
    const { fh, size } = await openRegular(file);
    await fh.close();
    return size;
  }
  read(file: string, position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.pool.read(file, position, length, into);
  }
  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The store for a model folder: the mounted remote one, else a new LocalStore on the folder (close it). */
export function storeFor(dir: string): ModelStore {
  return mountedAt(dir)?.store ?? new LocalStore(dir);
}

/** Folder names standing in for a model's name (a Hub snapshot folder is named after its commit). */
const NAMES = new Map<string, string>();

/** Name the model read from `dir` `name` for the metadata's folder-name fallback (openModelRef: the repository name). */
export function nameFolder(dir: string, name: string): void {
  NAMES.set(path.resolve(dir), name);
}

export function unnameFolder(dir: string): void {
  NAMES.delete(path.resolve(dir));
}

/** The folder name the metadata falls back to: path.basename, or the name openModelRef gave the folder. */
export function modelFolderName(dir: string): string {
  return NAMES.get(path.resolve(dir)) ?? path.basename(path.resolve(dir));
}
