/**
 * Model references: `hf:owner/name[@revision]`, or a Hub URL `https://huggingface.co/owner/name`
 * (`/tree/<revision>` too). Anything else is a local path.
 */
import { GgufyError } from "../errors.js";

export interface ModelRef {
  /** "owner/name" (or a legacy single "name") */
  repo: string;
  /** a branch, tag or commit sha; undefined: the default branch ("main") */
  revision: string | undefined;
  /** how the user wrote it */
  text: string;
}

const PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$/;

function checkRepo(repo: string, text: string): string {
  const parts = repo.split("/");
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => PART.test(p) && !p.includes("--") && !p.includes(".."))) {
    throw new GgufyError("E_USAGE", `'${text}': '${repo}' is not a Hugging Face repository id (owner/name)`);
  }
  return repo;
}

function checkRevision(rev: string, text: string): string {
  if (rev.length === 0 || rev.length > 256 || /[\s\\~^:?*[\]]|\.\.|^\/|\/$/.test(rev) || [...rev].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw new GgufyError("E_USAGE", `'${text}': '${rev}' is not a revision (a branch, tag or commit)`);
  }
  return rev;
}

/** Hosts whose URLs are read as Hub references: huggingface.co and the HF_ENDPOINT host. */
function hubHosts(): string[] {
  const hosts = ["huggingface.co", "www.huggingface.co", "hf.co"];
  const ep = process.env["HF_ENDPOINT"];
  if (ep) {
    try {
      hosts.push(new URL(ep).host);
    } catch {
      /* a bad HF_ENDPOINT is reported when it is used */
    }
  }
  return hosts;
}

/** The reference `s` names, or undefined when `s` is a local path. */
export function parseModelRef(s: string): ModelRef | undefined {
  if (s.startsWith("hf:")) {
    let body = s.slice(3).replace(/^\/\//, "");
    let revision: string | undefined;
    const at = body.indexOf("@");
    if (at >= 0) {
      revision = checkRevision(body.slice(at + 1), s);
      body = body.slice(0, at);
    }
    return { repo: checkRepo(body, s), revision, text: s };
  }
  if (/^https?:\/\//i.test(s)) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new GgufyError("E_USAGE", `'${s}' is not a valid URL`);
    }
    if (!hubHosts().includes(u.host)) throw new GgufyError("E_USAGE", `'${s}': only Hugging Face Hub URLs (https://huggingface.co/owner/name) are model references`);
    const segs = u.pathname.split("/").filter((x) => x.length > 0).map((x) => decodeURIComponent(x));
    if (segs[0] === "models") segs.shift();
    const t = segs.findIndex((x) => x === "tree" || x === "blob" || x === "resolve");
    const repoSegs = t >= 0 ? segs.slice(0, t) : segs;
    const revision = t >= 0 && segs.length > t + 1 ? checkRevision(segs.slice(t + 1).join("/"), s) : undefined;
    if (repoSegs.length === 0) throw new GgufyError("E_USAGE", `'${s}' names no repository`);
    return { repo: checkRepo(repoSegs.join("/"), s), revision, text: s };
  }
  return undefined;
}

export function isModelRef(s: string): boolean {
  return s.startsWith("hf:") || (/^https?:\/\//i.test(s));
}
