/** Reading a checkpoint's tokenizer files, with every failure reported as E_TOKENIZER naming the file. */
import fs from "node:fs";
import { isUtf8 } from "node:buffer";
import path from "node:path";
import { GgufyError, jsonErrorDetail } from "../errors.js";
import { MissingFile, readSmallFileSync, SMALL_FILE_CAPS } from "../formats/files.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function fileIn(dir: string, name: string): string | undefined {
  const p = path.join(dir, name);
  try {
    return fs.statSync(p).isFile() ? p : undefined;
  } catch {
    return undefined;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The whole file, when it is a regular file within the tokenizer size cap (a FIFO, a device or a
 * runaway file is refused by its descriptor's fstat before anything is read).
 */
export function readBytes(file: string): Uint8Array {
  try {
    return readSmallFileSync(file, { code: "E_TOKENIZER", cap: SMALL_FILE_CAPS.tokenizer, what: path.basename(file), confine: true });
  } catch (e) {
    if (e instanceof GgufyError) throw e;
    throw new GgufyError("E_IO", e instanceof MissingFile ? "cannot read: the file disappeared" : `cannot read: ${(e as Error).message}`, { file, cause: e });
  }
}

/** The file as UTF-8 text; invalid UTF-8 is an error (as Python's strict decoding makes it for the converter). */
export function readText(file: string): string {
  const bytes = readBytes(file);
  try {
    return UTF8.decode(bytes);
  } catch (e) {
    throw new GgufyError("E_TOKENIZER", "not valid UTF-8 text", { file, cause: e });
  }
}

/**
 * The file's bytes, checked to be UTF-8 as readText checks them (the same error), for the readers that
 * work on bytes (json-vocab.ts, readMergesUtf8) and never decode most of the file.
 */
export function readUtf8Bytes(file: string): Buffer {
  const bytes = readBytes(file) as Buffer;
  if (!isUtf8(bytes)) {
    // (the decoder's own message, as readText gives it)
    try {
      UTF8.decode(bytes);
    } catch (e) {
      throw new GgufyError("E_TOKENIZER", "not valid UTF-8 text", { file, cause: e });
    }
    throw new GgufyError("E_TOKENIZER", "not valid UTF-8 text", { file });
  }
  return bytes;
}

/** Text of bytes readUtf8Bytes has checked. */
export function utf8Text(bytes: Uint8Array): string {
  return UTF8.decode(bytes);
}

let jsonCache: Map<string, Json> | undefined;

/**
 * Run `fn` with each JSON file parsed at most once (tokenizer.json is read by several steps, and a
 * Llama 3 or Gemma 3 one is 9–33 MB). Callers must not modify what readJson returns.
 */
export function withJsonCache<T>(fn: () => T): T {
  if (jsonCache) return fn();
  jsonCache = new Map();
  try {
    return fn();
  } finally {
    jsonCache = undefined;
  }
}

export function readJson(file: string): Json {
  const cached = jsonCache?.get(file);
  if (cached !== undefined) return cached;
  const v = parseJsonFile(file);
  jsonCache?.set(file, v);
  return v;
}

function parseJsonFile(file: string): Json {
  return parseJsonText(readText(file), file);
}

/** JSON.parse of a file's text, a syntax error reported as E_TOKENIZER naming the file. */
export function parseJsonText(text: string, file: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new GgufyError("E_TOKENIZER", `not valid JSON: ${jsonErrorDetail(text, e)}`, { file, cause: e });
  }
}

export function readJsonObject(file: string): JsonObject {
  const v = readJson(file);
  if (!isObject(v)) throw new GgufyError("E_TOKENIZER", "expected a JSON object at the top level", { file });
  return v;
}

/** Optional JSON object file in `dir` (undefined when absent). */
export function maybeJsonObject(dir: string, name: string): { file: string; json: JsonObject } | undefined {
  const file = fileIn(dir, name);
  return file ? { file, json: readJsonObject(file) } : undefined;
}

/**
 * Python's `int` test as the converter applies it to JSON values: an integer number (JSON `true`
 * would also pass in Python, but no tokenizer file uses booleans for ids).
 */
export function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v);
}

/**
 * Characters Python's `str.isspace()` accepts; `str.strip()` / `str.split()` without arguments use
 * this set, which is not JavaScript's `\s` (no U+FEFF, but U+001C–U+001F and U+0085 are included).
 */
const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, "g");
const PY_SPLIT = new RegExp(`[${PY_WS}]+`);
const PY_TWO_WORDS = new RegExp(`^[^${PY_WS}]+ [^${PY_WS}]+$`);

/**
 * True when `s` is two non-empty runs of non-whitespace joined by one ASCII space: then
 * `" ".join(s.strip().split())` is `s` itself and the split has two parts (one regex test per line
 * instead of strip + split, for the 151k lines of a merges.txt).
 */
export function isPlainPair(s: string): boolean {
  return PY_TWO_WORDS.test(s);
}

export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/** `s.split()` (no separator): split on runs of whitespace, dropping empty ends. */
export function pySplit(s: string): string[] {
  const t = pyStrip(s);
  return t === "" ? [] : t.split(PY_SPLIT);
}

/** Python text-mode line iteration (universal newlines: \r\n, \r and \n all end a line). */
export function pyLines(text: string): string[] {
  // (a file without \r, the usual case, is split on \n alone: the same lines, several times faster)
  const lines = text.includes("\r") ? text.split(/\r\n|\r|\n/) : text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}
