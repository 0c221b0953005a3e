/**
 * Seeded fuzzing of the two parsers that read files from strangers: safetensors headers (and
 * model.safetensors.index.json folders) and GGUF files. Each case is a valid file, mutated — bytes,
 * length fields, JSON structure — then parsed. A case passes when the parser either accepts the
 * file with every tensor inside it, or throws a GgufyError with a one-line message naming the file;
 * it must finish within `caseTimeoutMs` and never ask for an allocation larger than the file.
 *
 * Used by test/hostile/fuzz.test.ts (a few thousand cases) and bench/fuzz.ts (as many as you like).
 */
import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { Rng } from "../../fixtures/rng.js";
import { ERROR_CODES, GgufyError } from "../../src/errors.js";
import { readSafetensorsHeader, ST_MAX_HEADER } from "../../src/formats/safetensors/reader.js";
import { SafetensorsCheckpoint, INDEX_FILE } from "../../src/formats/safetensors/checkpoint.js";
import { safetensorsHeader, type StTensor } from "../../src/formats/safetensors/writer.js";
import { ST_DTYPE_SIZE, type StDtype } from "../../src/formats/safetensors/dtypes.js";
import { encodeGgufHeader, padTo } from "../../src/formats/gguf/writer.js";
import { readGguf, readGgufTensorBytes } from "../../src/formats/gguf/reader.js";
import { GGUFValueType, kv, type GGUFKV, type GGUFScalarType } from "../../src/formats/gguf/types.js";
import { TYPE_INFO, type GGMLType } from "../../src/quant/ggml/types.js";
import { inspect, formatInspect } from "../../src/cli/inspect.js";
import { AllocGuard, type AllocViolation } from "./alloc-guard.js";

export interface FuzzFailure {
  case: number;
  mutation: string;
  problem: string;
  /** the offending input, kept for reproduction */
  file?: string;
}

export interface FuzzStats {
  cases: number;
  accepted: number;
  rejected: number;
  /** rejections per error code */
  codes: Record<string, number>;
  /** the first few messages per code, for eyeballing */
  samples: Record<string, string[]>;
  failures: FuzzFailure[];
  allocViolations: (AllocViolation & { case: number; mutation: string })[];
  slowest: { ms: number; case: number; mutation: string };
  ms: number;
}

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** scratch folder (created, emptied per case) */
  dir: string;
  caseTimeoutMs?: number;
  /** keep failing inputs in dir/failures */
  keepFailures?: boolean;
}

const enc = new TextEncoder();

function newStats(): FuzzStats {
  return { cases: 0, accepted: 0, rejected: 0, codes: {}, samples: {}, failures: [], allocViolations: [], slowest: { ms: 0, case: -1, mutation: "" }, ms: 0 };
}

function pick<T>(r: Rng, xs: readonly T[]): T {
  return xs[r.int(xs.length)]!;
}

function randomBytes(r: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r.u32() & 0xff;
  return b;
}

function timeout(ms: number): { promise: Promise<"timeout">; cancel: () => void } {
  let t: NodeJS.Timeout;
  const promise = new Promise<"timeout">((res) => (t = setTimeout(() => res("timeout"), ms)));
  return { promise, cancel: () => clearTimeout(t) };
}

/**
 * Run `parse` on one input under the allocation guard and a deadline; classify the outcome.
 * `check` validates an accepted result (returns a problem description or undefined).
 */
async function runCase<T>(
  stats: FuzzStats,
  guard: AllocGuard,
  opts: FuzzOptions,
  info: { n: number; mutation: string; limit: number; file: string; expectFile: string },
  parse: () => Promise<T>,
  check: (v: T) => string | undefined | Promise<string | undefined>,
): Promise<void> {
  stats.cases++;
  const t0 = performance.now();
  const deadline = timeout(opts.caseTimeoutMs ?? 2000);
  guard.reset(info.limit);
  const before = guard.violations.length;
  let outcome: { ok: true; v: T } | { ok: false; e: unknown } | "timeout";
  try {
    const r = await Promise.race([parse().then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e })), deadline.promise]);
    outcome = r;
  } finally {
    guard.reset(Infinity);
    deadline.cancel();
  }
  const ms = performance.now() - t0;
  if (ms > stats.slowest.ms) stats.slowest = { ms, case: info.n, mutation: info.mutation };
  for (const v of guard.violations.slice(before)) stats.allocViolations.push({ ...v, case: info.n, mutation: info.mutation });
  let problem: string | undefined;
  if (outcome === "timeout") problem = `no answer within ${opts.caseTimeoutMs ?? 2000} ms`;
  else if (outcome.ok) {
    problem = await check(outcome.v);
    if (!problem) stats.accepted++;
  } else {
    const e = outcome.e;
    if (!(e instanceof GgufyError)) problem = `not a GgufyError: ${(e as Error)?.stack ?? String(e)}`;
    else if (!(e.code in ERROR_CODES)) problem = `unknown code ${e.code}`;
    else if (/[\n\r]/.test(e.message)) problem = `message is not one line: ${JSON.stringify(e.message)}`;
    else if (!e.message.startsWith(`${e.code}: `)) problem = `message does not start with the code: ${e.message}`;
    else if (e.file === undefined || !e.message.includes(info.expectFile)) problem = `message does not name the file: ${e.message}`;
    else {
      stats.rejected++;
      stats.codes[e.code] = (stats.codes[e.code] ?? 0) + 1;
      const smp = (stats.samples[e.code] ??= []);
      if (smp.length < 4) smp.push(`[${info.mutation}] ${e.message}`);
    }
  }
  if (ms > (opts.caseTimeoutMs ?? 2000) && !problem) problem = `took ${ms.toFixed(0)} ms`;
  if (problem) {
    let kept: string | undefined;
    if (opts.keepFailures) {
      await mkdir(path.join(opts.dir, "failures"), { recursive: true });
      kept = path.join(opts.dir, "failures", `case-${info.n}${path.extname(info.file)}`);
      await writeFile(kept, await import("node:fs/promises").then((m) => m.readFile(info.file))).catch(() => undefined);
    }
    stats.failures.push({ case: info.n, mutation: info.mutation, problem, ...(kept ? { file: kept } : {}) });
  }
}

// ───────────────────────────── safetensors ─────────────────────────────

const ST_DTYPES = Object.keys(ST_DTYPE_SIZE) as StDtype[];

/** A small valid safetensors file: a few tensors of random dtypes and shapes, maybe metadata. */
export function baseSafetensors(r: Rng): { bytes: Uint8Array; headerEnd: number } {
  const n = 1 + r.int(6);
  const names = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "a", "é.ü", "x.bias", "layers.0.q", "", "scalar", "z"];
  const tensors: StTensor[] = [];
  const used = new Set<string>();
  for (let i = 0; i < n; i++) {
    let name = pick(r, names);
    while (used.has(name)) name = name + "_" + i;
    used.add(name);
    const dtype = pick(r, ST_DTYPES);
    const dims = r.int(4);
    const shape = Array.from({ length: dims }, () => r.int(6));
    const size = shape.reduce((a, b) => a * b, 1) * ST_DTYPE_SIZE[dtype];
    tensors.push({ name, dtype, shape, data: randomBytes(r, size) });
  }
  // the writer lays tensors out in list order; shuffle the JSON key order independently
  const header = safetensorsHeader(tensors, r.int(2) ? { format: "pt", note: "ünïcode" } : undefined);
  let json = JSON.parse(Buffer.from(header.subarray(8)).toString("utf8")) as Record<string, unknown>;
  if (r.int(2)) json = Object.fromEntries(Object.entries(json).reverse());
  const body = enc.encode(JSON.stringify(json));
  const data = Buffer.concat(tensors.map((t) => t.data));
  const out = new Uint8Array(8 + body.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  out.set(data, 8 + body.length);
  return { bytes: out, headerEnd: 8 + body.length };
}

const INTERESTING_U64 = [0n, 1n, 2n, 7n, 8n, 0x7fn, 0xffn, 0x7fffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];

function setU64(b: Uint8Array, at: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(at, BigInt.asUintN(64, v), true);
}

/** Replace the JSON body (keeping or not the declared length) → new file bytes. */
function withBody(orig: Uint8Array, headerEnd: number, body: Uint8Array, fixLength: boolean): Uint8Array {
  const data = orig.subarray(headerEnd);
  const out = new Uint8Array(8 + body.length + data.length);
  out.set(orig.subarray(0, 8), 0);
  if (fixLength) setU64(out, 0, BigInt(body.length));
  out.set(body, 8);
  out.set(data, 8 + body.length);
  return out;
}

const WEIRD_VALUES: unknown[] = [
  null, 0, -1, 1.5, 2 ** 53, 2 ** 64, -0, "", "F32", "f32", "F128", "__proto__", [], [[]], {}, { a: 1 }, true, [1, 2, 3], [-1], [1.5], [2 ** 53, 2],
  [2 ** 30, 2 ** 30, 2 ** 30], [0, -0], ["1"], [null], "12", "1e400", [1e300, 1e300],
];

function deepArray(depth: number): string {
  return "[".repeat(depth) + "1" + "]".repeat(depth);
}

/** One mutation of a valid safetensors file. Returns the new bytes and a label. */
export function mutateSafetensors(r: Rng, base: { bytes: Uint8Array; headerEnd: number }, byteLevelOnly = false): { bytes: Uint8Array; label: string } {
  const b = base.bytes.slice();
  const headerEnd = Math.min(base.headerEnd, b.length);
  const body = b.subarray(8, headerEnd);
  // structural mutations need the base's JSON intact, so a second, stacked mutation works on bytes
  let kind = byteLevelOnly ? pick(r, [0, 1, 2, 3, 4, 9, 10]) : r.int(12);
  if (b.length < 9 && kind !== 3) kind = 4; // a (stacked) truncation left nothing to mutate in place: grow it

  switch (kind) {
    case 0: {
      // bit flips in the header
      const k = 1 + r.int(4);
      for (let i = 0; i < k; i++) b[r.int(headerEnd)]! ^= 1 << r.int(8);
      return { bytes: b, label: `flip×${k}` };
    }
    case 1: {
      // syntax-relevant characters dropped into the JSON
      const chars = [0x7b, 0x7d, 0x5b, 0x5d, 0x22, 0x3a, 0x2c, 0x2d, 0x30, 0x39, 0x65, 0x2e, 0x5c, 0x00, 0xff, 0xc3, 0x0a, 0x20];
      const k = 1 + r.int(3);
      for (let i = 0; i < k; i++) b[8 + r.int(Math.max(1, body.length))] = pick(r, chars);
      return { bytes: b, label: `char×${k}` };
    }
    case 2: {
      // the 8-byte length
      const hlen = BigInt(body.length);
      const size = BigInt(b.length);
      const v = pick(r, [...INTERESTING_U64, hlen - 1n, hlen + 1n, hlen + 8n, size, size - 8n, size - 7n, BigInt(ST_MAX_HEADER), BigInt(ST_MAX_HEADER) + 1n, BigInt(r.u32()) * BigInt(r.u32())]);
      setU64(b, 0, v);
      return { bytes: b, label: `length=${v}` };
    }
    case 3: {
      const n = r.int(b.length);
      return { bytes: b.slice(0, n), label: `truncate@${n}` };
    }
    case 4: {
      const n = 1 + r.int(64);
      const out = new Uint8Array(b.length + n);
      out.set(b);
      out.set(randomBytes(r, n), b.length);
      return { bytes: out, label: `extend+${n}` };
    }
    case 5:
    case 6:
    case 7: {
      // structural JSON mutation, re-serialized with a correct length
      const json = JSON.parse(Buffer.from(body).toString("utf8")) as Record<string, unknown>;
      const names = Object.keys(json).filter((k) => k !== "__metadata__");
      const name = names.length ? pick(r, names) : "x";
      const entry = (json[name] ?? {}) as Record<string, unknown>;
      const what = r.int(14);
      let label: string;
      switch (what) {
        case 0: entry["dtype"] = pick(r, [...WEIRD_VALUES, ...ST_DTYPES]); label = `dtype=${String(entry["dtype"])}`; break;
        case 1: entry["shape"] = pick(r, WEIRD_VALUES); label = "shape=weird"; break;
        case 2: entry["data_offsets"] = pick(r, WEIRD_VALUES); label = "offsets=weird"; break;
        case 3: {
          const o = (entry["data_offsets"] as number[] | undefined) ?? [0, 0];
          const d = pick(r, [-1, 1, 2, -2, 8, 2 ** 32, 2 ** 53]);
          entry["data_offsets"] = r.int(2) ? [o[0]! + d, o[1]] : [o[0], o[1]! + d];
          label = `offset+${d}`;
          break;
        }
        case 4: delete entry[pick(r, ["dtype", "shape", "data_offsets"])]; label = "field deleted"; break;
        case 5: delete json[name]; label = "entry deleted"; break;
        case 6: json[pick(r, ["copy", "__proto__", "", "a\nb\u001b[31m", "constructor"])] = { ...entry }; label = "entry duplicated"; break;
        case 7: json[name] = pick(r, [null, 1, "x", [], [entry]]); label = "entry not an object"; break;
        case 8: json["__metadata__"] = pick(r, [null, [], 1, { a: 1 }, { a: { b: "c" } }, { __proto__: "x" }, "s"]); label = "metadata weird"; break;
        case 9: {
          const s = (entry["shape"] as number[] | undefined) ?? [];
          entry["shape"] = pick(r, [[...s, 1], s.slice(1), s.map((x) => x * 2), [...s].reverse(), Array(1000).fill(1), [2 ** 26, 2 ** 26, 2 ** 26]]);
          label = "shape changed";
          break;
        }
        case 10: entry["extra"] = pick(r, WEIRD_VALUES); label = "extra field"; break;
        case 11: {
          // the whole header something other than an object
          const alt = pick(r, ["[]", "1", "\"x\"", "null", "{}", "{\"__metadata__\":{}}"]);
          return { bytes: withBody(b, headerEnd, enc.encode(alt), true), label: `header=${alt}` };
        }
        case 12: {
          const d = 10 + r.int(20000);
          const text = `{"t":{"dtype":"F32","shape":${deepArray(d)},"data_offsets":[0,4]}}`;
          return { bytes: withBody(b, headerEnd, enc.encode(text), true), label: `deep shape ${d}` };
        }
        default: {
          // swap the data_offsets of two entries
          const other = (json[pick(r, names)] ?? {}) as Record<string, unknown>;
          const t = entry["data_offsets"];
          entry["data_offsets"] = other["data_offsets"];
          other["data_offsets"] = t;
          label = "offsets swapped";
        }
      }
      if (json[name] === undefined && what !== 5) json[name] = entry;
      let text = JSON.stringify(json);
      if (r.int(4) === 0) text += " ".repeat(r.int(9));
      return { bytes: withBody(b, headerEnd, enc.encode(text), r.int(8) !== 0), label: `json:${label}` };
    }
    case 8: {
      // text-level JSON edits with a fixed length: duplicate keys, BOM, garbage, invalid UTF-8
      const text = Buffer.from(body).toString("utf8");
      const edits: [string, () => Uint8Array][] = [
        ["dup key", () => enc.encode(text.replace(/^\{/, `{"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]},`))],
        ["bom", () => new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode(text)])],
        ["trailing", () => enc.encode(text + pick(r, ["x", "}", ",", "\u0000", "{}"]))],
        ["bad utf8", () => { const e = enc.encode(text); e[1 + r.int(e.length - 1)] = pick(r, [0xff, 0xc0, 0x80, 0xed]); return e; }],
        ["cut", () => enc.encode(text.slice(0, r.int(text.length)))],
        ["lone surrogate", () => enc.encode(text.replace(/"([^"]*)"/, '"\\ud800$1"'))],
        ["huge number", () => enc.encode(text.replace(/\d+/, "1" + "0".repeat(400)))],
        ["nul in name", () => enc.encode(text.replace(/"([^"_]+)":\{/, '"$1\\u0000":{'))],
      ];
      const [label, f] = pick(r, edits);
      return { bytes: withBody(b, headerEnd, f(), true), label: `text:${label}` };
    }
    case 9: {
      // splice: copy a chunk of the file over another place
      const n = 1 + r.int(32);
      const from = r.int(b.length);
      const to = r.int(b.length);
      b.copyWithin(to, from, from + n);
      return { bytes: b, label: `splice ${from}->${to}` };
    }
    case 10: {
      // insert or delete bytes inside the header (shifts everything after)
      const at = 8 + r.int(Math.max(1, body.length));
      if (r.int(2)) {
        const ins = randomBytes(r, 1 + r.int(8));
        const out = new Uint8Array(b.length + ins.length);
        out.set(b.subarray(0, at));
        out.set(ins, at);
        out.set(b.subarray(at), at + ins.length);
        return { bytes: out, label: `insert ${ins.length}@${at}` };
      }
      const n = 1 + r.int(8);
      const out = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]);
      return { bytes: new Uint8Array(out), label: `delete ${n}@${at}` };
    }
    default: {
      // stacked: two mutations
      const m1 = mutateSafetensors(r, base);
      const m2 = mutateSafetensors(r, { bytes: m1.bytes, headerEnd: Math.min(headerEnd, m1.bytes.length) }, true);
      return { bytes: m2.bytes, label: `${m1.label} + ${m2.label}` };
    }
  }
}

function checkSt(h: { tensors: Map<string, { start: number; byteLength: number; shape: readonly number[] }>; fileSize: number }, size: number): string | undefined {
  if (h.fileSize !== size) return `accepted with fileSize ${h.fileSize} ≠ ${size}`;
  for (const [name, t] of h.tensors) {
    if (t.start < 8 || t.start + t.byteLength > size) return `accepted tensor ${name} outside the file`;
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return `accepted tensor ${name} with shape ${t.shape}`;
  }
  return undefined;
}

/** Fuzz readSafetensorsHeader over `opts.cases` mutated files. */
export async function fuzzSafetensors(opts: FuzzOptions): Promise<FuzzStats> {
  const stats = newStats();
  const r = new Rng(opts.seed);
  const guard = new AllocGuard();
  await mkdir(opts.dir, { recursive: true });
  const t0 = performance.now();
  guard.install();
  try {
    let base = baseSafetensors(r);
    for (let n = 0; n < opts.cases; n++) {
      if (n % 16 === 0) base = baseSafetensors(r);
      const m = mutateSafetensors(r, base);
      const file = path.join(opts.dir, `st-${n % 4}.safetensors`);
      await writeFile(file, m.bytes);
      const useInspect = n % 8 === 7;
      await runCase(
        stats, guard, opts, { n, mutation: m.label, limit: m.bytes.length, file, expectFile: file },
        async () => (useInspect ? formatInspect(await inspect(file)) : readSafetensorsHeader(file)),
        (h) => (typeof h === "string" ? undefined : checkSt(h, m.bytes.length)),
      );
    }
  } finally {
    guard.uninstall();
  }
  stats.ms = performance.now() - t0;
  return stats;
}

// ───────────────────────── sharded checkpoints ─────────────────────────

/**
 * Fuzz SafetensorsCheckpoint.open over folders of three valid shards whose index is mutated:
 * paths outside the folder (.., absolute, links), missing shards, names moved between shards,
 * duplicated or dropped entries, broken JSON.
 */
export async function fuzzIndex(opts: FuzzOptions & { outside: string }): Promise<FuzzStats> {
  const stats = newStats();
  const r = new Rng(opts.seed);
  const guard = new AllocGuard();
  const dir = path.join(opts.dir, "ckpt");
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await mkdir(opts.outside, { recursive: true });
  // three shards; shard 3 also stores a tensor of shard 1 under the same name (a duplicate) in a spare file
  const shardTensors: Record<string, string[]> = {
    "model-00001-of-00003.safetensors": ["a.weight", "b.weight"],
    "model-00002-of-00003.safetensors": ["c.weight"],
    "model-00003-of-00003.safetensors": ["d.weight", "e.bias"],
    "spare-dup.safetensors": ["a.weight"],
  };
  let largest = 0;
  for (const [f, names] of Object.entries(shardTensors)) {
    const bytes = await writeShard(path.join(dir, f), names, r);
    largest = Math.max(largest, bytes);
  }
  await writeShard(path.join(opts.outside, "secret.safetensors"), ["s.weight"], r);
  await symlink(path.join(opts.outside, "secret.safetensors"), path.join(dir, "link-out.safetensors")).catch(() => undefined);
  await symlink(path.join(dir, "model-00002-of-00003.safetensors"), path.join(dir, "link-in.safetensors")).catch(() => undefined);
  await symlink(path.join(dir, "nowhere.safetensors"), path.join(dir, "link-dangling.safetensors")).catch(() => undefined);
  const good: Record<string, string> = {};
  for (const [f, names] of Object.entries(shardTensors)) if (!f.startsWith("spare")) for (const n of names) good[n] = f;
  const indexPath = path.join(dir, INDEX_FILE);
  const t0 = performance.now();
  guard.install();
  try {
    for (let n = 0; n < opts.cases; n++) {
      const wm: Record<string, unknown> = { ...good };
      const names = Object.keys(wm);
      const k = 1 + r.int(2);
      const labels: string[] = [];
      let text: string | undefined;
      for (let i = 0; i < k; i++) {
        const name = pick(r, names);
        switch (r.int(9)) {
          case 0: wm[name] = pick(r, ["../" + "x.safetensors", "../../etc/passwd", "/etc/passwd", path.join(opts.outside, "secret.safetensors"), "sub/../model-00002-of-00003.safetensors", "..\\x.safetensors", "."]); labels.push("escape"); break;
          case 1: wm[name] = pick(r, ["link-out.safetensors", "link-in.safetensors", "link-dangling.safetensors"]); labels.push(`link:${wm[name]}`); break;
          case 2: wm[name] = pick(r, ["model-00009-of-00009.safetensors", "", "config.json", INDEX_FILE]); labels.push(`missing:${wm[name]}`); break;
          case 3: delete wm[name]; labels.push("dropped"); break;
          case 4: wm[pick(r, ["ghost.weight", "a.weight.", "__proto__"])] = pick(r, Object.values(good)); labels.push("extra entry"); break;
          case 5: wm[name] = pick(r, Object.values(good)); labels.push("moved"); break;
          case 6: wm[name] = pick(r, [null, 1, [], {}]); labels.push("not a string"); break;
          case 7: wm["a.weight"] = "spare-dup.safetensors"; wm["x"] = "model-00001-of-00003.safetensors"; labels.push("duplicate across shards"); break;
          default: {
            const t = JSON.stringify({ metadata: { total_size: 1 }, weight_map: wm });
            text = pick(r, [t.slice(0, r.int(t.length)), t.replace("weight_map", "weightmap"), "[]", "{\"weight_map\":[]}", "{\"weight_map\":{}}", t + ",", "\u0000"]);
            labels.push("broken json");
          }
        }
      }
      text ??= JSON.stringify({ metadata: { total_size: 1 }, weight_map: wm });
      await writeFile(indexPath, text);
      await runCase(
        stats, guard, opts, { n, mutation: labels.join(" + "), limit: Math.max(largest, Buffer.byteLength(text)), file: indexPath, expectFile: dir },
        async () => {
          const c = await SafetensorsCheckpoint.open(dir);
          await c.close();
          return c;
        },
        (c) => {
          for (const f of c.files) if (!f.startsWith(dir + path.sep)) return `accepted shard ${f} outside the folder`;
          for (const name of c.tensors.keys()) if (!(name in good) && name !== "x") return `accepted unexpected tensor ${name}`;
          return undefined;
        },
      );
    }
  } finally {
    guard.uninstall();
  }
  stats.ms = performance.now() - t0;
  return stats;
}

async function writeShard(file: string, names: string[], r: Rng): Promise<number> {
  const tensors: StTensor[] = names.map((name) => ({ name, dtype: "F32", shape: [2, 2], data: randomBytes(r, 16) }));
  const bytes = Buffer.concat([safetensorsHeader(tensors, { format: "pt" }), ...tensors.map((t) => t.data)]);
  await writeFile(file, bytes);
  return bytes.length;
}

// ───────────────────────────────── GGUF ─────────────────────────────────

const SCALAR_TYPES: GGUFScalarType[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12];

function randomScalar(r: Rng, t: GGUFScalarType): number | bigint | boolean | string {
  switch (t) {
    case GGUFValueType.UINT8: return r.int(256);
    case GGUFValueType.INT8: return r.int(256) - 128;
    case GGUFValueType.UINT16: return r.int(65536);
    case GGUFValueType.INT16: return r.int(65536) - 32768;
    case GGUFValueType.UINT32: return r.u32();
    case GGUFValueType.INT32: return r.u32() | 0;
    case GGUFValueType.FLOAT32: return Math.fround(r.normal());
    case GGUFValueType.BOOL: return r.int(2) === 1;
    case GGUFValueType.STRING: return pick(r, ["", "llama", "ünï", "<s>", "a".repeat(r.int(40)), "\u0000x"]);
    case GGUFValueType.UINT64: return BigInt(r.u32()) << BigInt(r.int(32));
    case GGUFValueType.INT64: return BigInt(r.u32() | 0) << BigInt(r.int(31));
    default: return r.normal();
  }
}

/** Byte offsets of the length/count/type fields of a valid GGUF, for targeted mutations. */
interface GgufFields {
  u64: number[];
  u32: number[];
  headerEnd: number;
}

/** A small valid GGUF (random KVs of every type, a few tensors of random ggml types) with its field map. */
export function baseGguf(r: Rng): { bytes: Uint8Array; fields: GgufFields } {
  const kvs: GGUFKV[] = [kv.str("general.architecture", "llama")];
  let alignment = 32;
  if (r.int(3) === 0) {
    alignment = pick(r, [1, 8, 16, 64, 256]);
    kvs.push(kv.u32("general.alignment", alignment));
  }
  const nKv = r.int(8);
  for (let i = 0; i < nKv; i++) {
    const key = `k.${i}`;
    if (r.int(3) === 0) {
      const it = pick(r, SCALAR_TYPES);
      const len = r.int(12);
      kvs.push({ key, value: { type: GGUFValueType.ARRAY, itemType: it, value: Array.from({ length: len }, () => randomScalar(r, it)) } });
    } else {
      const t = pick(r, SCALAR_TYPES);
      kvs.push({ key, value: { type: t, value: randomScalar(r, t) } });
    }
  }
  const types = [...TYPE_INFO.values()];
  const nT = r.int(5);
  const tensors = Array.from({ length: nT }, (_, i) => {
    const info = pick(r, types);
    const dims = 1 + r.int(3);
    const ne = [info.blockSize * (1 + r.int(2)), ...Array.from({ length: dims - 1 }, () => 1 + r.int(3))];
    return { name: pick(r, ["token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight", "t"]) + `.${i}`, ne, type: info.type as GGMLType };
  });
  const h = encodeGgufHeader(kvs, tensors, alignment);
  const total = h.fileSize;
  const bytes = new Uint8Array(total);
  bytes.set(h.bytes);
  bytes.set(randomBytes(r, total - h.bytes.length), h.bytes.length);
  return { bytes, fields: mapGgufFields(bytes) };
}

/** Walk a valid GGUF, recording where each count, length and type field is. */
function mapGgufFields(b: Uint8Array): GgufFields {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u64: number[] = [8, 16];
  const u32: number[] = [4];
  let p = 24;
  const rd64 = (): number => { u64.push(p); const v = Number(dv.getBigUint64(p, true)); p += 8; return v; };
  const rd32 = (): number => { u32.push(p); const v = dv.getUint32(p, true); p += 4; return v; };
  const str = (): void => { const n = rd64(); p += n; };
  const size: Record<number, number> = { 0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8 };
  const nT = Number(dv.getBigUint64(8, true));
  const nKv = Number(dv.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    str();
    const t = rd32();
    if (t === GGUFValueType.ARRAY) {
      const it = rd32();
      const n = rd64();
      for (let j = 0; j < n; j++) {
        if (it === GGUFValueType.STRING) str();
        else p += size[it]!;
      }
    } else if (t === GGUFValueType.STRING) str();
    else p += size[t]!;
  }
  for (let i = 0; i < nT; i++) {
    str();
    const nd = rd32();
    for (let d = 0; d < nd; d++) rd64();
    rd32();
    rd64();
  }
  return { u64, u32, headerEnd: p };
}

export function mutateGguf(r: Rng, base: { bytes: Uint8Array; fields: GgufFields }): { bytes: Uint8Array; label: string } {
  const b = base.bytes.slice();
  const dv = new DataView(b.buffer);
  const size = b.length;
  const u64 = base.fields.u64.filter((at) => at + 8 <= size);
  const u32 = base.fields.u32.filter((at) => at + 4 <= size);
  const headerEnd = Math.min(base.fields.headerEnd, size);
  if (size < 8) return { bytes: b, label: "tiny" };
  let kind = r.int(10);
  if ((kind <= 1 && !u64.length) || (kind >= 2 && kind <= 3 && !u32.length)) kind = 4;
  switch (kind) {
    case 0:
    case 1: {
      const at = pick(r, u64);
      const cur = dv.getBigUint64(at, true);
      const v = pick(r, [...INTERESTING_U64, cur + 1n, cur - 1n, cur * 2n, BigInt(size), BigInt(size - at), BigInt(r.u32())]);
      dv.setBigUint64(at, BigInt.asUintN(64, v), true);
      return { bytes: b, label: `u64@${at}=${BigInt.asUintN(64, v)}` };
    }
    case 2:
    case 3: {
      const at = pick(r, u32);
      const cur = dv.getUint32(at, true);
      const v = pick(r, [0, 1, 2, 3, 4, 5, 8, 9, 10, 12, 13, 14, 31, 39, 40, 41, 0x7fffffff, 0x80000000, 0xffffffff, cur + 1, cur - 1, r.u32()]) >>> 0;
      dv.setUint32(at, v, true);
      return { bytes: b, label: `u32@${at}=${v}` };
    }
    case 4: {
      const k = 1 + r.int(4);
      for (let i = 0; i < k; i++) b[r.int(Math.max(1, headerEnd))]! ^= 1 << r.int(8);
      return { bytes: b, label: `flip×${k}` };
    }
    case 5: {
      const n = r.int(size);
      return { bytes: b.slice(0, n), label: `truncate@${n}` };
    }
    case 6: {
      const n = 1 + r.int(100);
      const out = new Uint8Array(size + n);
      out.set(b);
      out.set(randomBytes(r, n), size);
      return { bytes: out, label: `extend+${n}` };
    }
    case 7: {
      const at = 4 + r.int(Math.max(1, headerEnd - 4));
      if (r.int(2)) {
        const ins = randomBytes(r, 1 + r.int(8));
        const out = new Uint8Array(size + ins.length);
        out.set(b.subarray(0, at));
        out.set(ins, at);
        out.set(b.subarray(at), at + ins.length);
        return { bytes: out, label: `insert ${ins.length}@${at}` };
      }
      const n = Math.min(1 + r.int(8), size - at);
      const out = new Uint8Array(size - n);
      out.set(b.subarray(0, at));
      out.set(b.subarray(at + n), at);
      return { bytes: out, label: `delete ${n}@${at}` };
    }
    case 8: {
      const n = 1 + r.int(32);
      const from = r.int(size);
      const to = r.int(Math.max(1, headerEnd));
      b.copyWithin(to, from, from + n);
      return { bytes: b, label: `splice ${from}->${to}` };
    }
    default: {
      // magic and version
      const at = pick(r, [0, 4]);
      const v = pick(r, [0x46554747, 0x47475546, 1, 2, 3, 4, 0x03000000, r.u32()]) >>> 0;
      dv.setUint32(at, v, true);
      return { bytes: b, label: `${at === 0 ? "magic" : "version"}=${v}` };
    }
  }
}

/** Fuzz readGguf (and every 4th case inspect + a tensor read) over mutated GGUF files. */
export async function fuzzGguf(opts: FuzzOptions): Promise<FuzzStats> {
  const stats = newStats();
  const r = new Rng(opts.seed);
  const guard = new AllocGuard();
  await mkdir(opts.dir, { recursive: true });
  const t0 = performance.now();
  guard.install();
  try {
    let base = baseGguf(r);
    for (let n = 0; n < opts.cases; n++) {
      if (n % 16 === 0) base = baseGguf(r);
      let m = mutateGguf(r, base);
      if (r.int(5) === 0) m = (({ bytes, label }) => ({ bytes: mutateGguf(r, { bytes, fields: base.fields }).bytes, label: label + " + another" }))(m);
      const file = path.join(opts.dir, `g-${n % 4}.gguf`);
      await writeFile(file, m.bytes);
      const deep = n % 4 === 3;
      await runCase(
        stats, guard, opts, { n, mutation: m.label, limit: m.bytes.length, file, expectFile: file },
        async () => {
          if (deep) formatInspect(await inspect(file, { full: true }));
          const g = await readGguf(file);
          if (deep && g.tensors.length) await readGgufTensorBytes(g, g.tensors[g.tensors.length - 1]!);
          return g;
        },
        (g) => {
          if (g.fileSize !== m.bytes.length) return `fileSize ${g.fileSize} ≠ ${m.bytes.length}`;
          for (const t of g.tensors) {
            if (t.fileOffset < 0 || t.fileOffset + t.bytes > g.fileSize) return `accepted tensor ${t.name} outside the file`;
            if (t.fileOffset % g.alignment !== 0 && g.dataStart % g.alignment === 0) return `accepted misaligned tensor ${t.name}`;
          }
          if (g.tensors.length && padTo(g.dataStart, g.alignment) !== g.dataStart) return "data section not aligned";
          return undefined;
        },
      );
    }
  } finally {
    guard.uninstall();
  }
  stats.ms = performance.now() - t0;
  return stats;
}

export function summary(name: string, s: FuzzStats): string {
  const codes = Object.entries(s.codes).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(", ");
  return `${name}: ${s.cases} cases in ${(s.ms / 1000).toFixed(1)} s — ${s.accepted} accepted, ${s.rejected} rejected (${codes}); ` +
    `${s.failures.length} failures, ${s.allocViolations.length} allocations over the file size; slowest case ${s.slowest.ms.toFixed(1)} ms (#${s.slowest.case} ${s.slowest.mutation})`;
}
