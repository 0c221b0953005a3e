/**
 * llama.cpp's command-line tools that node-llama-cpp does not expose (`llama-mtmd-cli`, `llama-imatrix`,
 * `llama-quantize`, `llama-gguf-split` …), built with cmake from the llama.cpp source node-llama-cpp ships
 * (`node_modules/node-llama-cpp/llama/gitRelease.bundle`, release v0.4.0 — the same source as the
 * prebuilt libllama the other oracles load).
 *
 * The build is cached outside the repository, keyed by the bundle's release tag and size, in
 * `$GGUFY_LLAMA_TOOLS_CACHE` or `${XDG_CACHE_HOME:-~/.cache}/ggufy/llama-tools/<key>`; a second run
 * (or a second test file) finds the binaries there and does not rebuild. Concurrent callers (several
 * test processes) serialise on a lock directory; a stale lock (its owner pid gone) is taken over.
 *
 * Run as a script (`node dist/test/support/llama-tools.js [target …]`) it builds and prints the paths.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** repository root (this file is test/support/*.ts, compiled to dist/test/support/*.js) */
const root = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, "../../..") : path.resolve(here, "../..");

/** every target the suite may ask for, built together (one configure, one link of the libraries) */
export const LLAMA_TOOL_TARGETS = ["llama-mtmd-cli", "llama-mtmd-debug", "llama-imatrix", "llama-quantize", "llama-gguf-split"] as const;
export type LlamaTool = (typeof LLAMA_TOOL_TARGETS)[number];

function bundlePath(): string {
  return path.join(root, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
}

/** the cache folder for this bundle */
export function llamaToolsDir(): string {
  const bundle = bundlePath();
  const st = fs.statSync(bundle);
  const rel = JSON.parse(
    fs.readFileSync(path.join(root, "node_modules", "node-llama-cpp", "llama", "binariesGithubRelease.json"), "utf8"),
  ) as { release: string };
  const key = `${rel.release}-${st.size}`;
  const base =
    process.env.GGUFY_LLAMA_TOOLS_CACHE ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "ggufy", "llama-tools");
  return path.join(base, key);
}

function binPath(dir: string, tool: string): string {
  return path.join(dir, "build", "bin", tool);
}

/**
 * The folder holding the build's shared libraries (`libmtmd.so`, `libllama.so`, `libggml*.so`; the tools
 * find them through their build-tree rpath), for callers that load them through koffi. Builds first.
 */
export function llamaToolsLibDir(): string {
  return path.dirname(llamaTool("llama-mtmd-cli"));
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function withLock<T>(dir: string, fn: () => T): T {
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, "lock");
  const started = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lock, "pid"), "utf8"));
      } catch {
        /* being written */
      }
      if (Number.isFinite(owner) && !pidAlive(owner)) {
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - started > 60 * 60_000) throw new Error(`llama-tools: lock ${lock} held for an hour`);
      sleep(2000);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/** how long the last build took, or undefined when the cache was already complete */
export let lastBuildSeconds: number | undefined;

/**
 * The path of a llama.cpp tool, building all of LLAMA_TOOL_TARGETS first when the cache lacks any of them.
 * Needs git, cmake and a C++ compiler (`.ci/run` installs cmake from Debian when it is missing).
 */
export function llamaTool(tool: LlamaTool): string {
  const dir = llamaToolsDir();
  const have = () => LLAMA_TOOL_TARGETS.every((t) => fs.existsSync(binPath(dir, t)));
  if (have()) return binPath(dir, tool);
  withLock(dir, () => {
    if (have()) return;
    const t0 = Date.now();
    const src = path.join(dir, "src");
    if (!fs.existsSync(path.join(src, "CMakeLists.txt"))) {
      fs.rmSync(src, { recursive: true, force: true });
      execFileSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundlePath(), src], { stdio: ["ignore", "ignore", "inherit"] });
    }
    const build = path.join(dir, "build");
    const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
    const run = (args: string[]) => {
      const r = spawnSync("cmake", args, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 256 << 20 });
      if (r.error) throw new Error(`llama-tools: cannot run cmake (${r.error.message}); install cmake and a C++ compiler`);
      if (r.status !== 0) {
        const tail = `${r.stdout}\n${r.stderr}`.split("\n").slice(-40).join("\n");
        throw new Error(`llama-tools: cmake ${args.join(" ")} failed:\n${tail}`);
      }
    };
    run([
      "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
      "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=ON", "-DGGML_OPENMP=OFF",
      "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
      "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
    ]);
    run(["--build", build, "--config", "Release", "-j", jobs, "--target", ...LLAMA_TOOL_TARGETS]);
    lastBuildSeconds = (Date.now() - t0) / 1000;
    fs.writeFileSync(path.join(dir, "build-seconds.txt"), `${lastBuildSeconds.toFixed(1)}\n`);
    process.stderr.write(`llama-tools: built ${LLAMA_TOOL_TARGETS.join(", ")} in ${lastBuildSeconds.toFixed(0)} s (${dir})\n`);
  });
  if (!have()) throw new Error(`llama-tools: build finished but ${binPath(dir, tool)} is missing`);
  return binPath(dir, tool);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const wanted = (process.argv.slice(2) as LlamaTool[]).length ? (process.argv.slice(2) as LlamaTool[]) : [...LLAMA_TOOL_TARGETS];
  for (const t of wanted) process.stdout.write(`${llamaTool(t)}\n`);
}
