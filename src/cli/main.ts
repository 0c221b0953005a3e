/**
 * The ggufy command line: convert, inspect, dequantize. Errors print as one line (stack with --debug) and
 * exit non-zero with the code documented in the README.
 *
 * Startup: this module loads only the usage texts, the error types and the signal handling; each command's
 * code is imported when that command runs (`--help` and `--version` load nothing else).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { GgufyError, isGgufyError, oneLine } from "../errors.js";
import { usageError } from "./args.js";
import { jsonSafe } from "./escape.js";
import { onForcedExit, signalsInstalled } from "./signals.js";
import { removeLiveTempsSync } from "../convert/output.js";
import { HUB_OPTIONS, withModel } from "./hub.js";
import { COMMAND_HELP, USAGE } from "./usage.js";

export { formatPlan, planJson, type SourceShapes } from "./plan-format.js";

/** `--help` or `-h` among a command's arguments (before a `--` that ends the options). */
function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
  }
  return false;
}

/** The version in ggufy's package.json (dist/src/cli/main.js → ../../../package.json, in the repository and in the installed package). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string") throw new Error("package.json has no version");
  return pkg.version;
}

export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WriteStream;
}

export async function main(argv: string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const debug = argv.includes("--debug");
  const out = (s: string): void => void io.stdout.write(s + "\n");
  const err = (s: string): void => void io.stderr.write(s + "\n");
  // a forced exit on a signal (signals.ts) removes the temp files being written
  if (signalsInstalled()) onForcedExit(removeLiveTempsSync);
  try {
    const [cmd, ...rest] = argv;
    if (cmd !== undefined && COMMAND_HELP[cmd] !== undefined && wantsHelp(rest)) {
      out(COMMAND_HELP[cmd]!);
      return 0;
    }
    switch (cmd) {
      case "convert":
        return await (await import("./convert-cmd.js")).cmdConvert(rest, out, err, io);
      case "inspect":
        return await cmdInspect(rest, out);
      case "verify":
        return await (await import("./verify.js")).cmdVerify(rest, out, err, io);
      case "dequantize":
        return await (await import("./dequantize.js")).cmdDequantize(rest, out, err, io);
      case "convert-lora":
        return await (await import("./convert-lora.js")).cmdConvertLora(rest, out, err, io);
      case "--version":
      case "-V":
        out(packageVersion());
        return 0;
      case "help":
        if (rest[0] !== undefined && COMMAND_HELP[rest[0]] !== undefined) {
          out(COMMAND_HELP[rest[0]]!);
          return 0;
        }
        out(USAGE);
        return 0;
      case undefined:
      case "--help":
      case "-h":
        out(USAGE);
        return cmd === undefined ? 64 : 0;
      default:
        throw new GgufyError("E_USAGE", `unknown command '${cmd}' (commands: convert, inspect, verify, dequantize, convert-lora; see ggufy --help)`);
    }
  } catch (e) {
    if (isGgufyError(e)) {
      err(`ggufy: error: ${e.message}`);
      if (debug && e.stack) err(e.stack);
      return e.exitCode;
    }
    err(`ggufy: internal error: ${oneLine(String((e as Error)?.message ?? e))}${debug ? "" : " (run with --debug for details)"}`);
    if (debug && (e as Error)?.stack) err((e as Error).stack!);
    return 70;
  }
}

async function cmdInspect(args: string[], out: (s: string) => void): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, full: { type: "boolean" }, debug: { type: "boolean" }, ...HUB_OPTIONS } });
  } catch (e) {
    usageError(e);
  }
  const target = parsed.positionals[0];
  if (!target) throw new GgufyError("E_USAGE", "inspect needs a file or folder");
  const { inspect, formatInspect } = await import("./inspect.js");
  const r = await withModel(target, parsed.values, (loc) => inspect(loc.dir, { full: parsed.values.full ?? false }));
  out(parsed.values.json ? jsonSafe(r, undefined, 2) : formatInspect(r));
  return 0;
}

export { USAGE };
