/**
 * Signals for the command line, handled from the first instant (bin/ggufy.js installs this before it
 * loads anything else): SIGINT, SIGTERM and SIGHUP abort the running command through one
 * AbortSignal; the command then unwinds (removing its temp files) and exits 130 with one error line.
 * A command that cannot unwind in time — blocked in a system call no signal can cancel — or a second
 * signal forces the exit: the registered cleanups (the live temp files) run synchronously and the
 * process exits 130 with the same line. Before a command is running, a signal exits 130 at once
 * (nothing has been written yet).
 *
 * EPIPE on stdout (`ggufy inspect … | head -c 100`) ends the process quietly with exit 0: the reader
 * has what it wanted.
 *
 * This module imports nothing of ggufy, so that installing it costs nothing.
 */
import fs from "node:fs";

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
/** how long an aborted command may take to unwind before the exit is forced */
export const GRACE_MS = 700;

const controller = new AbortController();
const cleanups = new Set<() => void>();
let installed = false;
let running = false;
let forcing = false;
const DEFAULT_LINE = "ggufy: error: E_INTERRUPTED: interrupted; no output was written";
let message = DEFAULT_LINE;
let doneCode: number | undefined;

/** Were the process-wide handlers installed (the real CLI), or is main() running in-process (tests)? */
export function signalsInstalled(): boolean {
  return installed;
}

/** The process-wide interrupt: aborted by the first SIGINT/SIGTERM/SIGHUP. */
export function interruptSignal(): AbortSignal {
  return controller.signal;
}

/** Run `fn` synchronously on a forced exit (remove temp files …). Returns the unregister function. */
export function onForcedExit(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** A command is running (signals abort it) or not (signals exit at once); `line` is what a forced exit prints. */
export function setRunning(on: boolean, line?: string): void {
  running = on;
  message = line ?? DEFAULT_LINE;
}

/**
 * The command has ended with `code` (bin/ggufy.js calls this when main() returns): a signal while the
 * process winds down exits with that code at once, without another line.
 */
export function finished(code: number): void {
  doneCode = code;
}

function forceExit(): never {
  if (doneCode !== undefined) process.exit(doneCode); // the command ended meanwhile: its code, no second line
  forcing = true;
  for (const f of cleanups) {
    try {
      f();
    } catch {
      /* a cleanup never stops the exit */
    }
  }
  try {
    fs.writeSync(2, message + "\n");
  } catch {
    /* stderr gone */
  }
  process.exit(130);
}

function onSignal(): void {
  if (forcing) return;
  if (doneCode !== undefined) process.exit(doneCode);
  if (!running || controller.signal.aborted) forceExit();
  controller.abort(new Error("interrupted"));
  setTimeout(forceExit, GRACE_MS).unref();
}

function onStreamError(e: NodeJS.ErrnoException): void {
  // the reader went away (| head): stop writing, quietly
  if (e.code === "EPIPE" || e.code === "ERR_STREAM_DESTROYED") process.exit(doneCode ?? 0);
  try {
    // eslint-disable-next-line no-control-regex
    fs.writeSync(2, `ggufy: error: E_WRITE: stdout: ${String(e.message).replace(/[\u0000-\u001f\u007f-\u009f]/g, " ")}\n`);
  } catch {
    /* stderr gone too */
  }
  process.exit(2);
}

/** Install the process-wide handlers (idempotent). */
export function installSignals(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.stdout.on("error", onStreamError);
  process.stderr.on("error", () => undefined); // nowhere left to report it
}

/**
 * Run a command that can unwind on an abort: with the process-wide handlers (the real CLI) it gets the
 * process-wide signal, and a forced exit prints `line`; in-process (tests, embedding) it gets its own
 * AbortController aborted by SIGINT/SIGTERM/SIGHUP for its duration.
 */
export async function withInterrupt<T>(line: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (installed) {
    setRunning(true, `ggufy: error: E_INTERRUPTED: ${line}`);
    try {
      return await fn(controller.signal);
    } finally {
      setRunning(false);
    }
  }
  const ac = new AbortController();
  const on = (): void => ac.abort(new Error("interrupted"));
  for (const s of SIGNALS) process.once(s, on);
  try {
    return await fn(ac.signal);
  } finally {
    for (const s of SIGNALS) process.off(s, on);
  }
}
