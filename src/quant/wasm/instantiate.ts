/**
 * The one instantiation policy of ggufy's WebAssembly kernels:
 *
 * - lazy: a kernel's module is built and instantiated on its first use (not at import time), once per
 *   thread, and cached — also when it is not available;
 * - `GGUFY_NO_WASM` (any non-empty value) turns every kernel off, so the TypeScript reference paths run;
 * - the bytes are checked with `WebAssembly.validate` before instantiation (a runtime without SIMD, or
 *   a kernel bug, gives a clean "does not validate" instead of an exception);
 * - when a kernel is not used, `NODE_DEBUG=ggufy` prints one line to stderr naming the kernel and why;
 *   the reason is also kept (`reason`) for tests and diagnostics.
 *
 * `get()` returns undefined on any failure: the caller then takes its TypeScript path.
 */

/** Whether NODE_DEBUG lists "ggufy" (Node's convention: comma-separated names, `*` wildcards). */
function debugEnabled(): boolean {
  const v = process.env["NODE_DEBUG"];
  if (!v) return false;
  return v.split(/[\s,]+/).some((s) => s !== "" && new RegExp(`^${s.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`, "i").test("ggufy"));
}

/** Writes the one-line fallback message (NODE_DEBUG=ggufy). */
function debugFallback(name: string, reason: string): void {
  if (debugEnabled()) process.stderr.write(`GGUFY ${process.pid}: wasm kernel ${name} not used (${reason}); TypeScript path\n`);
}

export class LazyKernel<T> {
  private state: "new" | "ok" | "off" = "new";
  private value: T | undefined;
  private why: string | undefined;

  constructor(
    /** kernel name for the debug line, e.g. "q4_0" */
    readonly name: string,
    private readonly build: () => Uint8Array<ArrayBuffer>,
    /** wraps the instance's exports (and typed views of its memory "m") into what the caller uses */
    private readonly bind: (exports: WebAssembly.Exports, memory: WebAssembly.Memory) => T,
  ) {}

  /** the kernel, or undefined when WebAssembly is off or unavailable (see `reason`) */
  get(): T | undefined {
    if (this.state === "new") this.load();
    return this.value;
  }

  /** whether the kernel is in use (instantiates it on first call) */
  available(): boolean {
    return this.get() !== undefined;
  }

  /** why the kernel is not used (undefined when it is, or before the first use) */
  get reason(): string | undefined {
    return this.why;
  }

  private load(): void {
    const why = this.tryLoad();
    if (why === undefined) {
      this.state = "ok";
      return;
    }
    this.state = "off";
    this.value = undefined;
    this.why = why;
    debugFallback(this.name, why);
  }

  private tryLoad(): string | undefined {
    const c = compile(this.build);
    if (typeof c === "string") return c;
    try {
      const inst = new WebAssembly.Instance(c, {});
      const mem = inst.exports["m"];
      if (!(mem instanceof WebAssembly.Memory)) return 'the module exports no memory "m"';
      this.value = this.bind(inst.exports, mem);
      return undefined;
    } catch (e) {
      return `instantiation failed: ${(e as Error).message}`;
    }
  }
}

/** The policy's checks and the compilation: the module, or why there is none. */
function compile(build: () => Uint8Array<ArrayBuffer>): WebAssembly.Module | string {
  if (process.env["GGUFY_NO_WASM"]) return "GGUFY_NO_WASM is set";
  if (typeof WebAssembly !== "object") return "no WebAssembly in this runtime";
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = build();
  } catch (e) {
    return `building the module failed: ${(e as Error).message}`;
  }
  if (!WebAssembly.validate(bytes)) return "the module does not validate (WebAssembly SIMD unsupported?)";
  try {
    return new WebAssembly.Module(bytes);
  } catch (e) {
    return `compilation failed: ${(e as Error).message}`;
  }
}

/**
 * A kernel whose memory the caller supplies (ModuleBuilder's `sharedImport`): compiled on first use
 * under the same policy, then instantiated once per memory by `bind(memory)` — undefined when the module
 * is off or unavailable, or that memory cannot be used (the reason is printed once per cause).
 */
export class SharedMemoryKernel<T> {
  private state: "new" | "ok" | "off" = "new";
  private module: WebAssembly.Module | undefined;
  private why: string | undefined;

  constructor(
    readonly name: string,
    private readonly build: () => Uint8Array<ArrayBuffer>,
    private readonly wrap: (exports: WebAssembly.Exports, memory: WebAssembly.Memory) => T,
  ) {}

  /** whether the module compiled (compiles it on first call) */
  available(): boolean {
    if (this.state === "new") {
      const c = compile(this.build);
      if (typeof c === "string") {
        this.state = "off";
        this.why = c;
        debugFallback(this.name, c);
      } else {
        this.state = "ok";
        this.module = c;
      }
    }
    return this.state === "ok";
  }

  get reason(): string | undefined {
    return this.why;
  }

  /** an instance over `memory`, or undefined */
  bind(memory: WebAssembly.Memory): T | undefined {
    if (!this.available()) return undefined;
    try {
      return this.wrap(new WebAssembly.Instance(this.module!, { env: { m: memory } }).exports, memory);
    } catch (e) {
      const why = `instantiation failed: ${(e as Error).message}`;
      if (this.why !== why) debugFallback(this.name, why);
      this.why = why;
      return undefined;
    }
  }
}

/** A kernel built and instantiated on first use; see the file comment for the policy. */
export function lazyKernel<T>(
  name: string,
  build: () => Uint8Array<ArrayBuffer>,
  bind: (exports: WebAssembly.Exports, memory: WebAssembly.Memory) => T,
): LazyKernel<T> {
  return new LazyKernel(name, build, bind);
}
