/**
 * config.json read typed. Every hyper-parameter ggufy uses goes through here: a key may be absent
 * (then the caller's default or an error if required), but a key that is present with the wrong
 * type, a non-finite number, or a value out of range is refused by name — never skipped, never
 * guessed. (llama.cpp's converter would write e.g. `"rms_norm_eps": "1e-5"` as a string KV that
 * llama.cpp then refuses to load, or silently fall back to a default.)
 */
import { GgufyError } from "../errors.js";

type Json = Record<string, unknown>;

export interface NumberOpts {
  /** refuse values ≤ this (default: none) */
  gt?: number;
  /** refuse values < this */
  min?: number;
  /** refuse values > this */
  max?: number;
}

const U32_MAX = 0xffffffff;

export class HfConfig {
  /** `where` is how a key is named in messages ("" for the top level, "rope_scaling." for a sub-object) */
  constructor(
    readonly json: Json,
    readonly file: string,
    readonly where = "",
  ) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  private fail(key: string, msg: string): never {
    throw new GgufyError("E_CONFIG", `${this.where}${key} ${msg}`, { file: this.file });
  }

  /** The first present key of `keys` (gguf-py find_hparam order), or undefined. */
  private first(keys: readonly string[]): string | undefined {
    return keys.find((k) => this.has(k));
  }

  /** A finite number (JSON number only: "1e-5" as a string is refused). */
  num(keys: string | readonly string[], opts: NumberOpts = {}): number | undefined {
    const k = this.first(typeof keys === "string" ? [keys] : keys);
    if (k === undefined) return undefined;
    const v = this.json[k];
    if (typeof v !== "number") this.fail(k, `is ${JSON.stringify(v)}; expected a number`);
    if (!Number.isFinite(v)) this.fail(k, `is ${v}; expected a finite number`);
    if (opts.gt !== undefined && !(v > opts.gt)) this.fail(k, `is ${v}; expected a number above ${opts.gt}`);
    if (opts.min !== undefined && v < opts.min) this.fail(k, `is ${v}; expected at least ${opts.min}`);
    if (opts.max !== undefined && v > opts.max) this.fail(k, `is ${v}; expected at most ${opts.max}`);
    return v;
  }

  reqNum(keys: string | readonly string[], opts: NumberOpts = {}): number {
    const v = this.num(keys, opts);
    if (v === undefined) this.fail(typeof keys === "string" ? keys : keys.join(" / "), "is missing");
    return v;
  }

  /** A non-negative integer that fits a u32 (`positive`: at least 1). */
  int(keys: string | readonly string[], positive = true): number | undefined {
    const k = this.first(typeof keys === "string" ? [keys] : keys);
    if (k === undefined) return undefined;
    const v = this.num(k);
    if (!Number.isInteger(v) || v! < (positive ? 1 : 0) || v! > U32_MAX) this.fail(k, `is ${v}; expected a ${positive ? "positive" : "non-negative"} integer`);
    return v;
  }

  reqInt(keys: string | readonly string[], positive = true): number {
    const v = this.int(keys, positive);
    if (v === undefined) this.fail(typeof keys === "string" ? keys : keys.join(" / "), "is missing");
    return v;
  }

  bool(key: string): boolean | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== "boolean") this.fail(key, `is ${JSON.stringify(v)}; expected true or false`);
    return v;
  }

  str(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== "string") this.fail(key, `is ${JSON.stringify(v)}; expected a string`);
    return v;
  }

  /** A sub-object (`rope_scaling`, `text_config` …) as its own reader. */
  obj(key: string): HfConfig | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, `is ${JSON.stringify(v)}; expected an object`);
    return new HfConfig(v as Json, this.file, `${this.where}${key}.`);
  }

  /** An array of integers (`layer_types` indices, `mrope_section` …). */
  ints(key: string): number[] | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isInteger(x))) this.fail(key, `is ${JSON.stringify(v)}; expected a list of integers`);
    return v as number[];
  }

  /** An array of finite numbers (Phi-3's long/short RoPE factors). */
  nums(key: string): number[] | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isFinite(x))) this.fail(key, `is ${JSON.stringify(v)}; expected a list of numbers`);
    return v as number[];
  }

  strs(key: string): string[] | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) this.fail(key, `is ${JSON.stringify(v)}; expected a list of strings`);
    return v as string[];
  }

  /** Refuse a value the caller cannot represent, by name. */
  refuse(key: string, msg: string): never {
    this.fail(key, msg);
  }
}
