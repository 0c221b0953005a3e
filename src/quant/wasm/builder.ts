/**
 * A small WebAssembly module builder for the kernels: named, typed locals, one fluent emitter per
 * instruction of opcodes.ts, structured control with named labels, and a module of exported functions
 * over one exported memory "m". The code is written as a stack machine, in the order of the C it
 * mirrors:
 *
 *   const m = new ModuleBuilder({ pages: 1 });
 *   const f = m.func("sum", { n: "i32" }, "f32");      // (i32 n) → f32, exported as "sum"
 *   const i = f.i32(), s = f.f32();                    // named locals
 *   f.f32.const(0).set(s).i32.const(0).set(i);
 *   f.block((out) => f.loop((top) => {
 *     f.get(i).get(f.p.n).i32.geU().brIf(out);         // if (i >= n) break
 *     f.get(s).get(i).i32.const(2).i32.shl().f32.load(0).f32.add().set(s);  // s += x[i]
 *     f.get(i).i32.const(1).i32.add().set(i).br(top);  // i++; continue
 *   }));
 *   f.get(s);
 *   const bytes = m.bytes();
 *
 * Every f32 / f32x4 arithmetic instruction is one IEEE binary32 operation rounded to nearest even
 * (never fused, never reassociated), so a kernel performs C's float operations one for one.
 */
import { BLOCK_VOID, CONTROL, MODULE, OPS, VALTYPE } from "./opcodes.js";
import type { ImmKind, OpGroups, OpSpec, ValType } from "./opcodes.js";

export type { ValType } from "./opcodes.js";

/** A local variable (or parameter) of one function. */
export class Local<T extends ValType = ValType> {
  constructor(
    readonly index: number,
    readonly type: T,
    readonly name: string,
  ) {}
}

/** A block / loop / if, the target of br / brIf (a loop's label continues it, the others leave them). */
export class Label {
  constructor(readonly depth: number) {}
}

type Emitter<S, R> = S extends { imm: "none" | "zero" }
  ? () => R
  : S extends { imm: "mem" }
    ? (offset?: number) => R
    : S extends { imm: "memLane" }
      ? (offset: number, lane: number) => R
      : S extends { imm: "lane" }
        ? (lane: number) => R
        : S extends { imm: "shuffle" }
          ? (lanes: readonly number[]) => R
          : S extends { imm: "i32" | "f32" }
            ? (value: number) => R
            : S extends { imm: "i32x4" | "f32x4" }
              ? (lanes: readonly [number, number, number, number]) => R
              : never;

/** The fluent emitters of one instruction group: `f.i32.add()` pushes i32.add and returns f. */
export type Group<T, R> = { readonly [K in keyof T]: Emitter<T[K], R> };

function uleb(out: number[], n: number): void {
  n >>>= 0;
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

function sleb(out: number[], n: number): void {
  n |= 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

const f32Bytes = new Uint8Array(16);
const f32View = new DataView(f32Bytes.buffer);

function lanes4(out: number[], lanes: readonly number[], float: boolean): void {
  if (lanes.length !== 4) throw new Error(`wasm builder: a v128 constant takes 4 lanes, got ${lanes.length}`);
  for (let i = 0; i < 4; i++) {
    if (float) f32View.setFloat32(4 * i, lanes[i]!, true);
    else f32View.setInt32(4 * i, lanes[i]! | 0, true);
  }
  for (let i = 0; i < 16; i++) out.push(f32Bytes[i]!);
}

/** Writes one instruction with its immediates. */
function encode(out: number[], s: OpSpec, args: readonly unknown[]): void {
  if (s.prefix >= 0) {
    out.push(s.prefix);
    uleb(out, s.code);
  } else out.push(s.code);
  const kind: ImmKind = s.imm;
  switch (kind) {
    case "none":
      return;
    case "zero":
      out.push(0);
      return;
    case "mem":
    case "memLane": {
      const offset = (args[0] as number | undefined) ?? 0;
      if (!(offset >= 0 && Number.isInteger(offset))) throw new Error(`wasm builder: bad memory offset ${offset}`);
      uleb(out, s.align);
      uleb(out, offset);
      if (kind === "memLane") out.push(args[1] as number);
      return;
    }
    case "lane":
      out.push(args[0] as number);
      return;
    case "shuffle": {
      const l = args[0] as readonly number[];
      if (l.length !== 16) throw new Error("wasm builder: i8x16.shuffle takes 16 lane indices");
      for (const x of l) out.push(x);
      return;
    }
    case "i32":
      sleb(out, args[0] as number);
      return;
    case "f32":
      f32View.setFloat32(0, args[0] as number, true);
      for (let i = 0; i < 4; i++) out.push(f32Bytes[i]!);
      return;
    case "i32x4":
    case "f32x4":
      lanes4(out, args[0] as readonly number[], kind === "f32x4");
      return;
  }
}

type Params = Record<string, ValType>;

/** One function: its named parameters `p`, locals, and code. Emitters return the builder (chainable). */
export class FuncBuilder<P extends Params = Params> {
  /** the parameters by name */
  readonly p: { readonly [K in keyof P]: Local<P[K]> };
  /** i32 instructions; `f.i32("name")` declares an i32 local */
  readonly i32: Group<OpGroups["i32"], FuncBuilder<P>> & ((name?: string) => Local<"i32">);
  /** f32 instructions; `f.f32("name")` declares an f32 local */
  readonly f32: Group<OpGroups["f32"], FuncBuilder<P>> & ((name?: string) => Local<"f32">);
  /** v128 instructions (loads, stores, bitwise); `f.v128("name")` declares a v128 local */
  readonly v128: Group<OpGroups["v128"], FuncBuilder<P>> & ((name?: string) => Local<"v128">);
  readonly memory: Group<OpGroups["memory"], FuncBuilder<P>>;
  readonly i8x16: Group<OpGroups["i8x16"], FuncBuilder<P>>;
  readonly i16x8: Group<OpGroups["i16x8"], FuncBuilder<P>>;
  readonly i32x4: Group<OpGroups["i32x4"], FuncBuilder<P>>;
  readonly f32x4: Group<OpGroups["f32x4"], FuncBuilder<P>>;
  /** the code bytes so far (without the local declarations and the final end) */
  readonly code: number[] = [];
  private readonly nParams: number;
  private readonly localTypes: ValType[] = [];
  /** open blocks: for each, whether it is a loop (for the debug message of an unbalanced end) */
  private readonly open: string[] = [];

  constructor(
    readonly name: string,
    readonly index: number,
    params: P,
    readonly results: readonly ValType[],
  ) {
    const names = Object.keys(params);
    this.nParams = names.length;
    const p: Record<string, Local> = {};
    names.forEach((n, i) => (p[n] = new Local(i, params[n]!, n)));
    this.p = p as FuncBuilder<P>["p"];
    // a group is callable to declare a local of its type: f.i32("x"), f.v128("acc")
    const group = <T extends Record<string, OpSpec>>(ops: T, type?: ValType): Group<T, FuncBuilder<P>> => {
      const g = (type ? (name?: string) => this.local(type, name) : {}) as Record<string, unknown>;
      for (const k of Object.keys(ops)) {
        const s = ops[k]!;
        g[k] = (...args: unknown[]) => {
          encode(this.code, s, args);
          return this;
        };
      }
      return g as unknown as Group<T, FuncBuilder<P>>;
    };
    this.i32 = group(OPS.i32, "i32") as unknown as FuncBuilder<P>["i32"];
    this.f32 = group(OPS.f32, "f32") as unknown as FuncBuilder<P>["f32"];
    this.v128 = group(OPS.v128, "v128") as unknown as FuncBuilder<P>["v128"];
    this.memory = group(OPS.memory);
    this.i8x16 = group(OPS.i8x16);
    this.i16x8 = group(OPS.i16x8);
    this.i32x4 = group(OPS.i32x4);
    this.f32x4 = group(OPS.f32x4);
  }

  /** A new local of `type` (zero-initialised, as wasm does). */
  local<T extends ValType>(type: T, name = `${type}_${this.localTypes.length}`): Local<T> {
    this.localTypes.push(type);
    return new Local(this.nParams + this.localTypes.length - 1, type, name);
  }

  /** `count` new locals of `type`. */
  locals<T extends ValType>(type: T, count: number, name: string = type): Local<T>[] {
    return Array.from({ length: count }, (_, i) => this.local(type, `${name}${i}`));
  }

  private raw(s: OpSpec, ...args: unknown[]): this {
    encode(this.code, s, args);
    return this;
  }

  private localOp(s: OpSpec, x: Local): this {
    this.raw(s);
    uleb(this.code, x.index);
    return this;
  }

  /** local.get */
  get(x: Local): this {
    return this.localOp(CONTROL.localGet, x);
  }
  /** local.set (pops) */
  set(x: Local): this {
    return this.localOp(CONTROL.localSet, x);
  }
  /** local.tee (stores and keeps the value) */
  tee(x: Local): this {
    return this.localOp(CONTROL.localTee, x);
  }

  private openBlock(s: OpSpec, kind: string, body: ((l: Label) => void) | undefined, result: ValType | undefined): Label {
    this.raw(s);
    this.code.push(result ? VALTYPE[result] : BLOCK_VOID);
    this.open.push(kind);
    const label = new Label(this.open.length);
    if (body) {
      body(label);
      this.end();
    }
    return label;
  }

  /** block … end: `br(label)` leaves it. With `body`, the end is emitted after it. */
  block(body?: (out: Label) => void, result?: ValType): Label {
    return this.openBlock(CONTROL.block, "block", body, result);
  }
  /** loop … end: `br(label)` jumps back to its start. With `body`, the end is emitted after it. */
  loop(body?: (top: Label) => void, result?: ValType): Label {
    return this.openBlock(CONTROL.loop, "loop", body, result);
  }
  /**
   * if (pops an i32) … [else …] end. With `then` (and `otherwise`), emits both arms and the end;
   * without, call else() / end() yourself.
   */
  if(then?: () => void, otherwise?: () => void, result?: ValType): this {
    this.openBlock(CONTROL.if, "if", undefined, result);
    if (then) {
      then();
      if (otherwise) {
        this.else();
        otherwise();
      }
      this.end();
    }
    return this;
  }
  else(): this {
    if (this.open[this.open.length - 1] !== "if") throw new Error(`wasm builder (${this.name}): else outside an if`);
    return this.raw(CONTROL.else);
  }
  end(): this {
    if (this.open.length === 0) throw new Error(`wasm builder (${this.name}): end without an open block`);
    this.open.pop();
    return this.raw(CONTROL.end);
  }
  private depth(l: Label | number): number {
    if (typeof l === "number") return l;
    if (l.depth > this.open.length) throw new Error(`wasm builder (${this.name}): branch to a closed block`);
    return this.open.length - l.depth;
  }
  /** br: to a label (or a relative depth) */
  br(l: Label | number): this {
    this.raw(CONTROL.br);
    uleb(this.code, this.depth(l));
    return this;
  }
  /** br_if: pops an i32, branches when it is not 0 */
  brIf(l: Label | number): this {
    this.raw(CONTROL.brIf);
    uleb(this.code, this.depth(l));
    return this;
  }
  /** select: pops c, b, a; pushes c ? a : b */
  select(): this {
    return this.raw(CONTROL.select);
  }
  drop(): this {
    return this.raw(CONTROL.drop);
  }
  return(): this {
    return this.raw(CONTROL.return);
  }
  unreachable(): this {
    return this.raw(CONTROL.unreachable);
  }
  /** call another function of the same module */
  call(fn: FuncBuilder): this {
    this.raw(CONTROL.call);
    uleb(this.code, fn.index);
    return this;
  }

  /** push the v128 at the constant address `addr` (i32.const 0, v128.load offset=addr) */
  v128At(addr: number): this {
    return this.i32.const(0).v128.load(addr) as unknown as this;
  }

  /** Run `emit` (a helper that emits code) and return the builder, to keep a chain going. */
  with(emit: (f: this) => void): this {
    emit(this);
    return this;
  }

  /** The code section entry: local declarations (runs of one type), code, end. */
  body(): number[] {
    if (this.open.length !== 0) throw new Error(`wasm builder (${this.name}): ${this.open.length} block(s) not closed (${this.open.join(", ")})`);
    const runs: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    const out: number[] = [];
    uleb(out, runs.length);
    for (const [n, t] of runs) {
      uleb(out, n);
      out.push(VALTYPE[t]);
    }
    for (const b of this.code) out.push(b);
    out.push(CONTROL.end.code);
    return out;
  }

  /** the parameter and result types, encoded as a function type */
  signature(): number[] {
    const out: number[] = [MODULE.funcType];
    uleb(out, this.nParams);
    for (const l of Object.values(this.p) as Local[]) out.push(VALTYPE[l.type]);
    uleb(out, this.results.length);
    for (const r of this.results) out.push(VALTYPE[r]);
    return out;
  }
}

/**
 * A module: one memory (exported as "m") and exported functions, encoded by bytes(). The memory is the
 * module's own, or with `sharedImport` a shared memory imported as "env"."m" (at least `pages`, at most
 * `maxPages` pages): the instantiating thread supplies it, so that one WebAssembly.Memory can be the
 * buffer several threads read into, convert in and write from.
 */
export class ModuleBuilder {
  private readonly funcs: FuncBuilder[] = [];
  readonly pages: number;
  readonly sharedImport: { maxPages: number } | undefined;

  constructor(opts: { pages: number; sharedImport?: { maxPages: number } }) {
    if (!(opts.pages >= 1 && Number.isInteger(opts.pages))) throw new Error(`wasm builder: bad page count ${opts.pages}`);
    const max = opts.sharedImport?.maxPages;
    if (max !== undefined && !(Number.isInteger(max) && max >= opts.pages && max <= 65536)) throw new Error(`wasm builder: bad maximum page count ${max}`);
    this.pages = opts.pages;
    this.sharedImport = opts.sharedImport;
  }

  /** memory pages needed for `bytes` bytes */
  static pagesFor(bytes: number): number {
    return Math.max(1, Math.ceil(bytes / 65536));
  }

  /** A new function exported as `name`, with named parameters and the result type(s). */
  func<P extends Params>(name: string, params: P, results: ValType | readonly ValType[] = []): FuncBuilder<P> {
    if (this.funcs.some((f) => f.name === name) || name === "m") throw new Error(`wasm builder: duplicate export ${name}`);
    const f = new FuncBuilder(name, this.funcs.length, params, typeof results === "string" ? [results] : results);
    this.funcs.push(f as unknown as FuncBuilder);
    return f;
  }

  bytes(): Uint8Array<ArrayBuffer> {
    const S = MODULE.section;
    const out: number[] = [...MODULE.header];
    const section = (id: number, content: number[]): void => {
      out.push(id);
      uleb(out, content.length);
      for (const b of content) out.push(b);
    };
    const str = (dst: number[], s: string): void => {
      uleb(dst, s.length);
      for (let i = 0; i < s.length; i++) dst.push(s.charCodeAt(i));
    };
    // types: one per distinct signature
    const sigs: string[] = [];
    const typeOf = this.funcs.map((f) => {
      const key = f.signature().join(",");
      let i = sigs.indexOf(key);
      if (i < 0) i = sigs.push(key) - 1;
      return i;
    });
    const types: number[] = [];
    uleb(types, sigs.length);
    for (const k of sigs) for (const b of k.split(",")) types.push(Number(b));
    section(S.type, types);
    if (this.sharedImport) {
      const imports: number[] = [1];
      str(imports, "env");
      str(imports, "m");
      imports.push(MODULE.importMemory, MODULE.limitsSharedMinMax);
      uleb(imports, this.pages);
      uleb(imports, this.sharedImport.maxPages);
      section(S.import, imports);
    }
    const fns: number[] = [];
    uleb(fns, this.funcs.length);
    for (const t of typeOf) uleb(fns, t);
    section(S.function, fns);
    if (!this.sharedImport) {
      const memory: number[] = [1, MODULE.limitsMin];
      uleb(memory, this.pages);
      section(S.memory, memory);
    }
    const exports: number[] = [];
    uleb(exports, this.funcs.length + 1);
    for (const f of this.funcs) {
      str(exports, f.name);
      exports.push(MODULE.exportFunc);
      uleb(exports, f.index);
    }
    str(exports, "m");
    exports.push(MODULE.exportMemory, 0);
    section(S.export, exports);
    const code: number[] = [];
    uleb(code, this.funcs.length);
    for (const f of this.funcs) {
      const b = f.body();
      uleb(code, b.length);
      for (const x of b) code.push(x);
    }
    section(S.code, code);
    return new Uint8Array(out);
  }
}
