/**
 * A local stand-in for the Hugging Face Hub (no test touches the Internet), serving model folders under
 * the Hub's URL layout as @huggingface/hub calls it (node_modules/@huggingface/hub/src/lib/model-info.ts,
 * list-files.ts, file-download-info.ts):
 *
 *   GET /api/models/<repo>/revision/<rev>?expand=…     model info, `sha` = the commit
 *   GET /api/models/<repo>/tree/<rev>?recursive=true   the listing: {type, path, size, oid, lfs?}
 *   GET /<repo>/resolve/<rev>/<file>                   the file (Range honoured); LFS files (*.safetensors)
 *       answer 302 to a second server (another port: the "CDN"), with x-repo-commit, x-linked-etag,
 *       x-linked-size on the redirect, as the Hub does; small files are served directly with ETag
 *       (the git blob sha1) and x-repo-commit.
 *
 * Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound); with `token` set, a request
 * without `Authorization: Bearer <token>` gets 401. Counters: requests per host and body bytes sent.
 * Faults are injected per test through `fault`.
 */
import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { AddressInfo } from "node:net";

export interface ServedFile {
  path: string;
  bytes: Buffer;
  sha1: string;
  sha256: string;
  lfs: boolean;
}

export interface Repo {
  commit: string;
  files: Map<string, ServedFile>;
}

export type Fault =
  /** cut the connection after `after` bytes of this response */
  | { kind: "reset"; after: number }
  /** answer this status (with headers) instead */
  | { kind: "status"; status: number; headers?: Record<string, string> }
  /** send the body in `chunk`-byte pieces, `delayMs` apart */
  | { kind: "slow"; chunk: number; delayMs: number }
  /** serve with another x-repo-commit and ETag (the repository moved on) */
  | { kind: "moved" }
  /** one byte of the body flipped (a corrupted transfer) */
  | { kind: "corrupt" };

export interface RequestInfo {
  host: "hub" | "cdn";
  method: string;
  url: string;
  range: string | undefined;
  /** the file served (resolve / cdn), if any */
  file: string | undefined;
  /** ms since the server started */
  t: number;
  status?: number;
}

export class FakeHub {
  readonly repos = new Map<string, Repo>();
  readonly log: RequestInfo[] = [];
  /** file bytes sent (resolve + cdn bodies) */
  fileBytes = 0;
  /** connections cut by a "reset" fault */
  resets = 0;
  token: string | undefined;
  /** gated: the token is valid but its account has no access to the files (403 on resolve) */
  gatedDeny = false;
  /** decide a fault for a request (called for resolve and cdn requests) */
  fault: ((r: RequestInfo, nth: number) => Fault | undefined) | undefined;
  private hub!: http.Server;
  private cdn!: http.Server;
  private t0 = Date.now();
  private nth = 0;

  get url(): string {
    return `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
  }
  get cdnUrl(): string {
    return `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  /** Serve the folder `dir` as `repo`; *.safetensors are LFS files. */
  async addRepo(repo: string, dir: string, commit = randomBytes(20).toString("hex")): Promise<Repo> {
    const files = new Map<string, ServedFile>();
    const walk = async (d: string, prefix: string): Promise<void> => {
      for (const e of (await readdir(d)).sort()) {
        const p = path.join(d, e);
        const st = await stat(p);
        if (st.isDirectory()) await walk(p, `${prefix}${e}/`);
        else if (st.isFile()) {
          const bytes = await readFile(p);
          files.set(prefix + e, {
            path: prefix + e,
            bytes,
            sha1: createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex"),
            sha256: createHash("sha256").update(bytes).digest("hex"),
            lfs: e.endsWith(".safetensors"),
          });
        }
      }
    };
    await walk(dir, "");
    const r = { commit, files };
    this.repos.set(repo, r);
    return r;
  }

  resetCounters(): void {
    this.log.length = 0;
    this.fileBytes = 0;
    this.resets = 0;
    this.nth = 0;
  }

  async start(): Promise<void> {
    this.hub = http.createServer((q, s) => void this.onHub(q, s).catch((e) => { s.destroy(); console.error(e); }));
    this.cdn = http.createServer((q, s) => void this.onCdn(q, s).catch((e) => { s.destroy(); console.error(e); }));
    await Promise.all([new Promise<void>((r) => this.hub.listen(0, "127.0.0.1", r)), new Promise<void>((r) => this.cdn.listen(0, "127.0.0.1", r))]);
  }

  async stop(): Promise<void> {
    this.hub.closeAllConnections();
    this.cdn.closeAllConnections();
    await Promise.all([new Promise((r) => this.hub.close(r)), new Promise((r) => this.cdn.close(r))]);
  }

  private info(host: "hub" | "cdn", q: http.IncomingMessage, file?: string): RequestInfo {
    const i: RequestInfo = { host, method: q.method ?? "GET", url: q.url ?? "", range: q.headers.range, file, t: Date.now() - this.t0 };
    this.log.push(i);
    return i;
  }

  private error(s: http.ServerResponse, i: RequestInfo, status: number, code?: string, msg = "error"): void {
    i.status = status;
    s.writeHead(status, { "content-type": "application/json", ...(code ? { "x-error-code": code } : {}) });
    s.end(JSON.stringify({ error: msg }));
  }

  private async onHub(q: http.IncomingMessage, s: http.ServerResponse): Promise<void> {
    const u = new URL(q.url ?? "/", "http://x");
    const p = decodeURIComponent(u.pathname);
    let m: RegExpExecArray | null;
    const authOk = this.token === undefined || q.headers.authorization === `Bearer ${this.token}`;
    if ((m = /^\/api\/models\/(.+?)\/revision\/(.+)$/.exec(p))) {
      const i = this.info("hub", q);
      const repo = this.repos.get(m[1]!);
      if (!authOk) return this.error(s, i, 401, undefined, "Invalid credentials");
      if (!repo) return this.error(s, i, 404, "RepoNotFound", "Repository not found");
      if (m[2] !== "main" && m[2] !== "HEAD" && m[2] !== repo.commit) return this.error(s, i, 404, "RevisionNotFound", "Revision Not Found");
      i.status = 200;
      s.writeHead(200, { "content-type": "application/json" });
      s.end(JSON.stringify({ _id: "0123", id: m[1], sha: repo.commit, private: this.token !== undefined, gated: false, downloads: 0, likes: 0, lastModified: "2026-01-01T00:00:00.000Z", pipeline_tag: "text-generation", siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })) }));
      return;
    }
    if ((m = /^\/api\/models\/(.+?)\/tree\/([^/]+)(\/.*)?$/.exec(p))) {
      const i = this.info("hub", q);
      const repo = this.repos.get(m[1]!);
      if (!authOk) return this.error(s, i, 401, undefined, "Invalid credentials");
      if (!repo) return this.error(s, i, 404, "RepoNotFound", "Repository not found");
      if (m[2] !== "main" && m[2] !== repo.commit) return this.error(s, i, 404, "RevisionNotFound", "Revision Not Found");
      i.status = 200;
      s.writeHead(200, { "content-type": "application/json" });
      s.end(JSON.stringify([...repo.files.values()].map((f) => ({ type: "file", path: f.path, size: f.lfs ? f.bytes.length : f.bytes.length, oid: f.lfs ? createHash("sha1").update(f.sha256).digest("hex") : f.sha1, ...(f.lfs ? { lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: 134 } } : {}) }))));
      return;
    }
    if ((m = /^\/(.+?\/.+?)\/resolve\/([^/]+)\/(.+)$/.exec(p))) {
      const i = this.info("hub", q, m[3]);
      const repo = this.repos.get(m[1]!);
      if (!authOk) return this.error(s, i, 401, undefined, "Invalid credentials");
      if (!repo) return this.error(s, i, 404, "RepoNotFound", "Repository not found");
      if (m[2] !== "main" && m[2] !== repo.commit) return this.error(s, i, 404, "RevisionNotFound", "Revision Not Found");
      const f = repo.files.get(m[3]!);
      if (!f) return this.error(s, i, 404, "EntryNotFound", "Entry not found");
      if (this.gatedDeny) return this.error(s, i, 403, "GatedRepo", "Access to this model is restricted");
      const fault = this.fault?.(i, this.nth++);
      if (fault?.kind === "status") {
        i.status = fault.status;
        s.writeHead(fault.status, fault.headers ?? {});
        s.end();
        return;
      }
      const moved = fault?.kind === "moved";
      const commit = moved ? "f".repeat(40) : repo.commit;
      if (f.lfs) {
        const etag = moved ? "e".repeat(64) : f.sha256;
        i.status = 302;
        s.writeHead(302, { location: `${this.cdnUrl}/lfs/${f.sha256}?repo=${encodeURIComponent(m[1]!)}`, "x-repo-commit": commit, "x-linked-etag": `"${etag}"`, "x-linked-size": String(f.bytes.length), etag: `"${etag}"` });
        s.end();
        return;
      }
      await this.serveBytes(q, s, i, f.bytes, { etag: `"${moved ? "d".repeat(40) : f.sha1}"`, "x-repo-commit": commit }, fault);
      return;
    }
    const i = this.info("hub", q);
    this.error(s, i, 404, undefined, "Not found");
  }

  private async onCdn(q: http.IncomingMessage, s: http.ServerResponse): Promise<void> {
    const u = new URL(q.url ?? "/", "http://x");
    const m = /^\/lfs\/([0-9a-f]{64})$/.exec(u.pathname);
    const repo = this.repos.get(u.searchParams.get("repo") ?? "");
    const f = m && repo ? [...repo.files.values()].find((x) => x.sha256 === m[1]) : undefined;
    const i = this.info("cdn", q, f?.path);
    // the CDN must not see the Hub token
    if (q.headers.authorization) return this.error(s, i, 400, undefined, "Authorization sent to the CDN");
    if (!f) return this.error(s, i, 404, undefined, "NoSuchKey");
    const fault = this.fault?.(i, this.nth++);
    if (fault?.kind === "status") {
      i.status = fault.status;
      s.writeHead(fault.status, fault.headers ?? {});
      s.end();
      return;
    }
    await this.serveBytes(q, s, i, f.bytes, { etag: `"${f.sha256}"` }, fault);
  }

  private async serveBytes(q: http.IncomingMessage, s: http.ServerResponse, i: RequestInfo, bytes: Buffer, headers: Record<string, string>, fault: Fault | undefined): Promise<void> {
    let start = 0;
    let end = bytes.length - 1;
    let status = 200;
    const r = q.headers.range ? /^bytes=(\d+)-(\d*)$/.exec(q.headers.range) : null;
    if (q.headers.range && !r) return this.error(s, i, 416, undefined, "bad range");
    if (r) {
      start = Number(r[1]);
      end = r[2] ? Math.min(Number(r[2]), bytes.length - 1) : bytes.length - 1;
      if (start >= bytes.length || end < start) {
        i.status = 416;
        s.writeHead(416, { "content-range": `bytes */${bytes.length}` });
        s.end();
        return;
      }
      status = 206;
    }
    let body = bytes.subarray(start, end + 1);
    if (fault?.kind === "corrupt" && body.length > 0) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0x40;
    }
    i.status = status;
    s.writeHead(status, { "content-type": "application/octet-stream", "content-length": String(body.length), "accept-ranges": "bytes", ...(status === 206 ? { "content-range": `bytes ${start}-${end}/${bytes.length}` } : {}), ...headers });
    if (fault?.kind === "reset") {
      this.resets++;
      const n = Math.min(fault.after, body.length - 1);
      this.fileBytes += n;
      s.write(body.subarray(0, n));
      await new Promise((res) => setTimeout(res, 10));
      s.socket?.destroy();
      return;
    }
    if (fault?.kind === "slow") {
      for (let o = 0; o < body.length; o += fault.chunk) {
        const c = body.subarray(o, o + fault.chunk);
        this.fileBytes += c.length;
        if (!s.write(c)) await new Promise((res) => s.once("drain", res));
        await new Promise((res) => setTimeout(res, fault.delayMs));
      }
      s.end();
      return;
    }
    this.fileBytes += body.length;
    s.end(body);
  }
}
