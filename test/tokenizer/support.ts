/** Helpers for the tokenizer tests: independent references and Go's JSON encoding. */
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "../../fixtures/paths.js";

/**
 * A file of the llama.cpp source bundled inside node-llama-cpp (llama/gitRelease.bundle, the
 * llama.cpp our GGUFs must load in), extracted with git into a cache under the OS temp folder.
 * Used for `models/ggml-vocab-qwen2.gguf`, which the repository data lacks. Undefined when git or the
 * bundle is unavailable (the test then skips).
 */
export function llamaBundleFile(rel: string): string | undefined {
  const bundle = path.join(repoRoot(), "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
  if (!fs.existsSync(bundle)) return undefined;
  const cache = path.join(os.tmpdir(), "ggufy-test-llama-bundle");
  const out = path.join(cache, "files", rel);
  if (fs.existsSync(out)) return out;
  try {
    const gitDir = path.join(cache, "git");
    if (!fs.existsSync(path.join(gitDir, "HEAD"))) {
      fs.mkdirSync(cache, { recursive: true });
      execFileSync("git", ["init", "-q", "--bare", gitDir], { stdio: "ignore" });
    }
    execFileSync("git", ["--git-dir", gitDir, "fetch", "-q", bundle, "+HEAD:refs/heads/bundled"], { stdio: "ignore" });
    const data = execFileSync("git", ["--git-dir", gitDir, "show", `refs/heads/bundled:${rel}`], { maxBuffer: 1 << 30 });
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, out);
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Go's `json.Marshal` of a string (HTML-safe escaping, as ollama's converter test hashes use):
 * `"` `\` escaped; \n \r \t (and, since Go 1.22, \b \f) short forms; other controls as \u00xx;
 * `<` `>` `&` as \u003c \u003e \u0026; U+2028/U+2029 escaped; everything else raw UTF-8.
 */
export function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029) out += "\\u" + c.toString(16).padStart(4, "0");
    else if (c >= 0xd800 && c <= 0xdfff) out += "\ufffd"; // a lone surrogate: Go would see invalid UTF-8
    else out += ch;
  }
  return out + '"';
}

/** sha256 (hex) of Go's json.Marshal of a []string. */
export function goJsonStringsSha256(list: readonly string[]): string {
  const h = crypto.createHash("sha256");
  h.update("[");
  for (let i = 0; i < list.length; i++) {
    if (i > 0) h.update(",");
    h.update(goJsonString(list[i]!), "utf8");
  }
  h.update("]");
  return h.digest("hex");
}

/** sha256 (hex) of Go's json.Marshal of a []int32. */
export function goJsonIntsSha256(list: ArrayLike<number>): string {
  const parts: string[] = [];
  for (let i = 0; i < list.length; i++) parts.push(String(list[i]));
  return crypto.createHash("sha256").update(`[${parts.join(",")}]`).digest("hex");
}

/** A fresh temporary folder, removed by the returned function. */
export function tempDir(prefix = "ggufy-tok-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Copy `files` from `from` into `to` (names may be renamed with [src, dst] pairs). */
export function copyInto(from: string, to: string, files: (string | [string, string])[]): void {
  for (const f of files) {
    const [src, dst] = typeof f === "string" ? [f, f] : f;
    fs.copyFileSync(path.join(from, src), path.join(to, dst));
  }
}

/** llama.cpp's test-tokenizer-0 input/output pair: test strings and expected token ids. */
export function readVocabTests(inp: string, out: string): { text: string; ids: number[] }[] {
  const raw = fs.readFileSync(inp, "utf8");
  const sep = "\n__ggml_vocab_test__\n";
  const texts: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(sep, pos);
    if (next < 0) {
      texts.push(raw.slice(pos));
      break;
    }
    texts.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  const lines = fs.readFileSync(out, "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length !== texts.length) throw new Error(`${inp}: ${texts.length} tests but ${lines.length} expected outputs`);
  return texts.map((text, i) => ({ text, ids: lines[i]!.trim() === "" ? [] : lines[i]!.trim().split(" ").map(Number) }));
}
