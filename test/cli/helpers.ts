/** Shared bits of the CLI/library tests: run the CLI in-process, read a GGUF's metadata as plain values. */
import { Writable } from "node:stream";
import { main } from "../../src/cli/main.js";
import { readGguf } from "../../src/formats/gguf/reader.js";
import { GGUFValueType } from "../../src/formats/gguf/types.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** ggufy's main() with captured stdout/stderr. */
export async function cli(argv: string[]): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const sink = (f: (s: string) => void): Writable => new Writable({ write(chunk, _enc, cb) { f(String(chunk)); cb(); } });
  const code = await main(argv, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) as unknown as NodeJS.WriteStream });
  return { code, stdout, stderr };
}

export interface KvRead {
  type: GGUFValueType;
  itemType?: GGUFValueType;
  value: unknown;
}

/** A GGUF's keys in file order, values as plain JS (arrays as arrays, u64 as bigint). */
export async function readKvs(file: string): Promise<{ keys: string[]; kv: Map<string, KvRead>; tensors: { name: string; ne: number[]; type: number; bytes: number }[] }> {
  const g = await readGguf(file);
  const kv = new Map<string, KvRead>();
  for (const k of g.keys) {
    const v = g.kvs.get(k)!;
    kv.set(k, v.type === GGUFValueType.ARRAY ? { type: v.type, itemType: v.itemType, value: Array.from(v.value) } : { type: v.type, value: v.value });
  }
  return { keys: g.keys, kv, tensors: g.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type, bytes: t.bytes })) };
}
