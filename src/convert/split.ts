/**
 * llama.cpp's split GGUF format, as convert_hf_to_gguf writes it with --split-max-size /
 * --split-max-tensors (gguf-py GGUFWriter.add_tensor_info / add_shard_kv_data / format_shard_names):
 *
 * - a new part starts when the current one is non-empty and adding the next tensor would pass the
 *   tensor-count limit or the size limit (sum of unpadded tensor bytes, headers not counted);
 * - parts are named `<stem>-00001-of-0000N.gguf` (llama.cpp's llama_split_path "%s-%05d-of-%05d.gguf");
 * - every KV lives in the first part, followed by `split.no` (UINT16), `split.count` (UINT16) and
 *   `split.tensors.count` (INT32); the other parts hold only those three keys (llama-model-loader reads
 *   split.count/split.no as u16 and split.tensors.count as i32, and checks split.no of every part);
 * - one part only: the file is written unsplit, without split keys ("Model fails split requirements").
 *
 * Each part is an ordinary PlannedFile, so the pipeline streams and commits them like any output.
 */
import path from "node:path";
import { GgufyError } from "../errors.js";
import { GGUFValueType, kv, type GGUFKV } from "../formats/gguf/types.js";
import { plannedHeader } from "../formats/gguf/writer.js";
import type { PlannedFile, PlannedTensor } from "./plan.js";

export const SPLIT_KEYS = { no: "split.no", count: "split.count", tensorsCount: "split.tensors.count" } as const;

export interface SplitOptions {
  /** --split-max-size: bytes of tensor data per part (decimal units: 2G = 2·10⁹) */
  splitMaxSize?: number;
  /** --split-max-tensors */
  splitMaxTensors?: number;
  /** --no-tensor-first-split: the first part holds only the metadata */
  noTensorFirstSplit?: boolean;
}

/** Where a PlannedFile sits in a split output. */
export interface SplitInfo {
  /** 0-based part number (split.no) */
  readonly no: number;
  /** number of parts (split.count) */
  readonly count: number;
  /** tensors over all parts (split.tensors.count) */
  readonly tensorsTotal: number;
  /** the path the unsplit file would have had */
  readonly unsplitPath: string;
}

/** llama_split_path: `<prefix>-%05d-of-%05d.gguf` with 1-based part numbers. */
export function splitPath(prefix: string, no: number, count: number): string {
  return `${prefix}-${String(no + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.gguf`;
}

/** The part paths of an output planned as `file` (gguf-py format_shard_names: the stem keeps its folder). */
export function shardPaths(file: string, count: number): string[] {
  const dir = path.dirname(file);
  const stem = path.basename(file).replace(/\.[^.]*$/, "");
  return Array.from({ length: count }, (_, i) => splitPath(path.join(dir, stem), i, count));
}

/** llama_split_prefix: the prefix of a part path, or undefined if it is not named like part `no` of `count`. */
export function splitPrefix(partPath: string, no: number, count: number): string | undefined {
  const postfix = `-${String(no + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.gguf`;
  if (partPath.length <= postfix.length || !partPath.endsWith(postfix)) return undefined;
  return partPath.slice(0, -postfix.length);
}

const u16 = (key: string, v: number): GGUFKV => ({ key, value: { type: GGUFValueType.UINT16, value: v } });

/** Group tensors into parts by gguf-py's rule. */
export function splitGroups(tensors: readonly PlannedTensor[], o: SplitOptions): PlannedTensor[][] {
  const maxSize = o.splitMaxSize ?? 0;
  const maxTensors = o.splitMaxTensors ?? 0;
  const groups: PlannedTensor[][] = o.noTensorFirstSplit ? [[], []] : [[]];
  let size = 0;
  for (const t of tensors) {
    const cur = groups[groups.length - 1]!;
    if (cur.length > 0 && ((maxTensors !== 0 && cur.length >= maxTensors) || (maxSize !== 0 && size + t.bytes > maxSize))) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1]!.push(t);
    size += t.bytes;
  }
  return groups;
}

export function wantsSplit(o: SplitOptions): boolean {
  return (o.splitMaxSize ?? 0) > 0 || (o.splitMaxTensors ?? 0) > 0 || o.noTensorFirstSplit === true;
}

/** Split one planned file into parts (or return it unchanged when it fits in one). */
export function splitPlannedFile(f: PlannedFile, o: SplitOptions): PlannedFile[] {
  if (!wantsSplit(o)) return [f];
  if (o.splitMaxSize !== undefined && (!Number.isSafeInteger(o.splitMaxSize) || o.splitMaxSize < 0)) throw new GgufyError("E_USAGE", `--split-max-size must be a positive size`);
  if (o.splitMaxTensors !== undefined && (!Number.isSafeInteger(o.splitMaxTensors) || o.splitMaxTensors < 0)) throw new GgufyError("E_USAGE", `--split-max-tensors must be a positive integer`);
  const groups = splitGroups(f.tensors, o);
  if (groups.length === 1) return [f];
  if (groups.length > 65535) throw new GgufyError("E_USAGE", `the split would make ${groups.length} parts; split.count is a UINT16 (at most 65535)`);
  if (f.tensors.length > 0x7fffffff) throw new GgufyError("E_USAGE", "too many tensors for split.tensors.count (INT32)");
  for (const k of Object.values(SPLIT_KEYS)) {
    if (f.kvs.some((x) => x.key === k)) throw new GgufyError("E_USAGE", `the metadata already has ${k}; it cannot be split again`);
  }
  const paths = shardPaths(f.path, groups.length);
  return groups.map((tensors, no) => {
    const splitKvs: GGUFKV[] = [u16(SPLIT_KEYS.no, no), u16(SPLIT_KEYS.count, groups.length), kv.i32(SPLIT_KEYS.tensorsCount, f.tensors.length)];
    const kvs = no === 0 ? [...f.kvs, ...splitKvs] : splitKvs;
    const header = plannedHeader(kvs, tensors.map((t) => ({ name: t.out.name, ne: t.out.ne, type: t.type })));
    const split: SplitInfo = { no, count: groups.length, tensorsTotal: f.tensors.length, unsplitPath: f.path };
    return { ...f, path: paths[no]!, kvs, tensors, header, split };
  });
}
