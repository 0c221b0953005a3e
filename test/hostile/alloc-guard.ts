/**
 * An allocation guard for the fuzz tests: while installed, every sized allocation made through the
 * public constructors — Buffer.alloc / allocUnsafe / allocUnsafeSlow, `new ArrayBuffer(n)`,
 * `new <TypedArray>(n)` and `new Array(n)` / `Array(n)` — is compared with a limit (the size of the
 * input file being parsed). The parsers under test reference these globals at call time, so a
 * header-declared length that reaches an allocation before being checked against the file size
 * shows up here as a violation, whatever the parser does afterwards.
 *
 * Not counted: strings (JSON.parse, toString) and allocations inside Node's own C++ — both are
 * proportional to bytes actually read, never to a declared length.
 */

export interface AllocViolation {
  what: string;
  /** bytes requested (Array: elements) */
  size: number;
  limit: number;
}

const TYPED = [
  "Uint8Array", "Int8Array", "Uint8ClampedArray", "Uint16Array", "Int16Array", "Uint32Array", "Int32Array",
  "Float32Array", "Float64Array", "BigUint64Array", "BigInt64Array",
] as const;

type AnyCtor = new (...args: unknown[]) => unknown;

export class AllocGuard {
  private limit = Infinity;
  /** largest request seen since the last reset */
  largest = 0;
  readonly violations: AllocViolation[] = [];
  private restore: (() => void)[] = [];

  /** Start watching (idempotent). */
  install(): void {
    if (this.restore.length) return;
    const g = globalThis as unknown as Record<string, AnyCtor>;
    for (const fn of ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const) {
      const orig = Buffer[fn] as (...a: unknown[]) => Buffer;
      const self = this;
      (Buffer as unknown as Record<string, unknown>)[fn] = function (this: unknown, size: unknown, ...rest: unknown[]) {
        self.note(`Buffer.${fn}`, size);
        return orig.call(this, size, ...rest);
      };
      this.restore.push(() => ((Buffer as unknown as Record<string, unknown>)[fn] = orig));
    }
    const wrap = (name: string, perElement: number, callable = false): void => {
      const orig = g[name]!;
      const self = this;
      const proxy: AnyCtor = new Proxy(orig, {
        construct(target, args, newTarget): object {
          if (typeof args[0] === "number" && (name !== "Array" || args.length === 1)) self.note(`new ${name}`, args[0] * perElement);
          return Reflect.construct(target, args, newTarget === proxy ? target : newTarget);
        },
        ...(callable
          ? {
              apply(target: AnyCtor, thisArg: unknown, args: unknown[]) {
                if (typeof args[0] === "number" && args.length === 1) self.note(`${name}()`, args[0] * perElement);
                return Reflect.apply(target as unknown as (...a: unknown[]) => unknown, thisArg, args);
              },
            }
          : {}),
      });
      g[name] = proxy;
      this.restore.push(() => (g[name] = orig));
    };
    wrap("ArrayBuffer", 1);
    for (const t of TYPED) wrap(t, (g[t] as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
    wrap("Array", 1, true);
  }

  uninstall(): void {
    for (const r of this.restore.reverse()) r();
    this.restore = [];
  }

  /** Set the limit for the next case and clear the running maximum. */
  reset(limit: number): void {
    this.limit = limit;
    this.largest = 0;
  }

  private note(what: string, size: unknown): void {
    if (typeof size !== "number" || !(size >= 0)) return;
    if (size > this.largest) this.largest = size;
    if (size > this.limit) this.violations.push({ what, size, limit: this.limit });
  }
}
