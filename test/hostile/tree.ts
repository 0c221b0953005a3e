/**
 * File-system witnesses for the issue-15 tests and fuzz: a snapshot of a folder tree (every entry's
 * kind and, for files, sha256), the difference of two snapshots, FIFOs, and the CLI in a child process
 * (the real bin/ggufy.js, so signals, EPIPE and exit codes are those a user sees).
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "../../fixtures/paths.js";

export type Snapshot = Map<string, string>;

/** Every entry under `root` (not following links): "dir", "link → target", "fifo", or "file <sha256>". */
export async function snapshot(root: string): Promise<Snapshot> {
  const out: Snapshot = new Map();
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = path.join(d, n);
      const st = await lstat(p).catch(() => undefined);
      if (!st) continue;
      const rel = path.relative(root, p);
      if (st.isSymbolicLink()) out.set(rel, `link → ${await readlink(p)}`);
      else if (st.isDirectory()) {
        out.set(rel, "dir");
        await walk(p);
      } else if (st.isFIFO()) out.set(rel, "fifo");
      else if (st.isFile()) out.set(rel, `file ${createHash("sha256").update(await readFile(p)).digest("hex")}`);
      else out.set(rel, "other");
    }
  };
  await walk(root);
  return out;
}

/** What changed between two snapshots: added, removed and changed entries. */
export function diff(a: Snapshot, b: Snapshot): { added: string[]; removed: string[]; changed: string[] } {
  const added = [...b.keys()].filter((k) => !a.has(k));
  const removed = [...a.keys()].filter((k) => !b.has(k));
  const changed = [...a.keys()].filter((k) => b.has(k) && a.get(k) !== b.get(k));
  return { added, removed, changed };
}

export function mkfifo(p: string): void {
  execFileSync("mkfifo", [p]);
}

/** Raw terminal-control bytes: C0 except \n and \t, DEL, and C1 as UTF-8 (C2 80–C2 9F) or as bare bytes. */
export function rawControlBytes(b: Buffer): number[] {
  const bad: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if ((c < 0x20 && c !== 0x0a && c !== 0x09) || c === 0x7f) bad.push(i);
    else if (c === 0xc2 && i + 1 < b.length && b[i + 1]! >= 0x80 && b[i + 1]! <= 0x9f) bad.push(i);
  }
  return bad;
}

export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  /** ms from the signal (if one was sent) to the exit */
  exitMs: number;
  ms: number;
}

export interface ChildOptions {
  /** send this signal… */
  signal?: NodeJS.Signals;
  /** …this many ms after the spawn, or when `when()` first holds (polled every 5 ms) */
  after?: number;
  when?: (pid: number) => Promise<boolean> | boolean;
  /** …or this many ms after the child's own handlers are installed (Linux: SIGHUP appears in /proc/PID/status SigCgt) */
  afterReady?: number;
  /** send the signal a second time this many ms after the first */
  repeatAfter?: number;
  /** kill with SIGKILL after this long (the case then fails on its exit status) */
  timeoutMs?: number;
  /** close our end of stdout after this many bytes (EPIPE in the child) */
  stdoutBytes?: number;
  env?: NodeJS.ProcessEnv;
}

/** Run bin/ggufy.js with `args`. */
export function runCli(args: string[], o: ChildOptions = {}): Promise<ChildRun> {
  return runNode([path.join(repoRoot(), "bin", "ggufy.js"), ...args], o);
}

/** Has process `pid` installed a SIGHUP handler (ggufy's signals.ts installs SIGINT, SIGTERM and SIGHUP together)? */
export function handlersInstalled(pid: number): boolean {
  try {
    const m = /SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m !== null && (BigInt(`0x${m[1]}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** Does process `pid` have `file` open (Linux /proc/PID/fd)? */
export function hasOpen(pid: number, file: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

export function runNode(args: string[], o: ChildOptions = {}): Promise<ChildRun> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: o.env ?? process.env });
  const chunks: Buffer[] = [];
  let got = 0;
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    chunks.push(d);
    got += d.length;
    if (o.stdoutBytes !== undefined && got >= o.stdoutBytes) child.stdout.destroy();
  });
  child.stdout.on("error", () => undefined);
  child.stderr.on("data", (d) => (stderr += d));
  let sentAt = 0;
  let exited = false;
  const send = (): void => {
    if (exited || sentAt) return;
    sentAt = performance.now();
    child.kill(o.signal);
    if (o.repeatAfter !== undefined) setTimeout(() => !exited && child.kill(o.signal), o.repeatAfter);
  };
  let timer: NodeJS.Timeout | undefined;
  if (o.signal && o.after !== undefined) timer = setTimeout(send, o.after);
  if (o.signal && o.afterReady !== undefined) {
    const poll = async (): Promise<void> => {
      while (!exited && !sentAt) {
        if (handlersInstalled(child.pid!)) {
          setTimeout(send, o.afterReady);
          return;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    void poll();
  }
  if (o.signal && o.when) {
    const poll = async (): Promise<void> => {
      while (!exited && !sentAt) {
        if (await o.when!(child.pid!)) return send();
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    void poll();
  }
  const killer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 30_000);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = true;
      clearTimeout(killer);
      if (timer) clearTimeout(timer);
      const now = performance.now();
      // let the pipes drain
      setImmediate(() => resolve({ code, signal, stdout: Buffer.concat(chunks), stderr, exitMs: sentAt ? now - sentAt : NaN, ms: now - t0 }));
    });
  });
}
