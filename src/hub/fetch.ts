/**
 * The `fetch` ggufy gives @huggingface/hub (its calls take a `fetch` parameter and do not retry ordinary
 * downloads themselves):
 *
 *  - retries with exponential backoff on 429 and 5xx (waiting at least what `Retry-After` asks, in
 *    seconds or as an HTTP date) and on dropped connections / network errors;
 *  - follows redirects itself (`redirect: "manual"`) so the first hop's `x-repo-commit`,
 *    `x-linked-etag` and `x-linked-size` (the Hub sends them on the 302 to the LFS/CDN host) stay
 *    visible on the response it returns; `Authorization` is not sent to another origin;
 *  - a body that breaks mid-way is resumed: the rest is requested with `Range` from the first byte not
 *    yet delivered, and spliced on only when the new response is a 206 at exactly that offset with the
 *    same ETag (otherwise the read fails: bytes of two versions are never mixed);
 *  - every body byte received is counted (`stats`), for the progress line and the tests;
 *  - the status and `X-Error-Code` of the last failed request are kept (`lastFailure`), since the
 *    library's HubApiError carries the status but not the headers (hub/open.ts hubError words the message).
 */

export interface HubFetchOptions {
  /** attempts per request, the first included (default 8) */
  attempts?: number;
  /** first backoff in ms, doubled each retry (default 500; GGUFY_HUB_RETRY_MS overrides) */
  baseDelayMs?: number;
  /** backoff cap in ms (default 30 s) */
  maxDelayMs?: number;
  /** a Retry-After longer than this (ms) is not waited for: the request fails (default 120 s) */
  maxRetryAfterMs?: number;
  /** no body byte for this long (ms) counts as a dropped connection (default 60 s) */
  idleTimeoutMs?: number;
  /** called before each retry (for --debug / tests) */
  onRetry?: (what: string, attempt: number, delayMs: number) => void;
  /** the underlying fetch (default globalThis.fetch) */
  fetch?: typeof fetch;
}

export interface HubFetchStats {
  /** body bytes received over the network */
  bytes: number;
  /** HTTP requests sent (redirect hops and retries included) */
  requests: number;
  retries: number;
}

export interface HubFailure {
  url: string;
  status: number;
  errorCode: string | undefined;
  errorMessage: string | undefined;
}

export interface HubFetch {
  fetch: typeof fetch;
  stats: HubFetchStats;
  lastFailure: HubFailure | undefined;
}

const RETRY_STATUS = (s: number): boolean => s === 429 || s === 408 || (s >= 500 && s <= 599);
const FORWARDED = ["x-repo-commit", "x-linked-etag", "x-linked-size", "x-error-code", "x-error-message"];

function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });
}

/** Retry-After in ms (delta-seconds or an HTTP date), or undefined. */
export function retryAfterMs(h: string | null, now = Date.now()): number | undefined {
  if (!h) return undefined;
  const s = h.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const d = Date.parse(s);
  return Number.isNaN(d) ? undefined : Math.max(0, d - now);
}

function headersOf(init: RequestInit | undefined): Headers {
  return new Headers(init?.headers ?? {});
}

/** bytes=a-b / bytes=a- of a request, or undefined */
function parseRangeHeader(h: string | null): { start: number; end: number | undefined } | undefined {
  const m = h ? /^bytes=(\d+)-(\d*)$/.exec(h.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: m[2] ? Number(m[2]) : undefined };
}

/** start of a 206's Content-Range */
function contentRangeStart(h: string | null): number | undefined {
  const m = h ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(h.trim()) : null;
  return m ? Number(m[1]) : undefined;
}

export function makeHubFetch(o: HubFetchOptions = {}): HubFetch {
  const base = o.fetch ?? globalThis.fetch;
  const attempts = o.attempts ?? 8;
  const envDelay = Number(process.env["GGUFY_HUB_RETRY_MS"]);
  const baseDelay = o.baseDelayMs ?? (Number.isFinite(envDelay) && envDelay >= 0 ? envDelay : 500);
  const maxDelay = o.maxDelayMs ?? 30_000;
  const maxRetryAfter = o.maxRetryAfterMs ?? 120_000;
  const idle = o.idleTimeoutMs ?? 60_000;
  const stats: HubFetchStats = { bytes: 0, requests: 0, retries: 0 };
  const self: HubFetch = { fetch: undefined as unknown as typeof fetch, stats, lastFailure: undefined };

  const backoff = (attempt: number): number => Math.min(maxDelay, baseDelay * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);

  /** one request, redirects followed by hand; network errors thrown */
  async function once(url: string, init: RequestInit, headers: Headers, signal: AbortSignal): Promise<Response> {
    let u = url;
    const carried = new Headers();
    for (let hop = 0; hop < 10; hop++) {
      stats.requests++;
      const r = await base(u, { ...init, headers, redirect: "manual", signal });
      if (r.status >= 300 && r.status < 400 && r.headers.get("location")) {
        for (const k of FORWARDED) {
          const v = r.headers.get(k);
          if (v !== null && !carried.has(k)) carried.set(k, v);
        }
        await r.body?.cancel().catch(() => undefined);
        const next = new URL(r.headers.get("location")!, u);
        if (next.origin !== new URL(u).origin) headers.delete("authorization");
        u = next.href;
        continue;
      }
      if (carried.keys().next().done) return r;
      const h = new Headers(r.headers);
      for (const [k, v] of carried) if (!h.has(k)) h.set(k, v);
      return new Response(r.body, { status: r.status, statusText: r.statusText, headers: h });
    }
    throw new Error(`too many redirects from ${url}`);
  }

  /** retries until a response that is not 429/5xx, or out of attempts */
  async function withRetries(url: string, init: RequestInit, headerInit: Headers, attempt0: number, what: string): Promise<{ r: Response; attempt: number; abort: AbortController }> {
    let attempt = attempt0;
    for (;;) {
      attempt++;
      const abort = new AbortController();
      const outer = init.signal;
      if (outer) {
        if (outer.aborted) throw outer.reason;
        outer.addEventListener("abort", () => abort.abort(outer.reason), { once: true });
      }
      let r: Response;
      try {
        r = await once(url, init, new Headers(headerInit), abort.signal);
      } catch (e) {
        if (outer?.aborted || attempt >= attempts) throw e;
        const d = backoff(attempt);
        stats.retries++;
        o.onRetry?.(`${what}: ${(e as Error).message}`, attempt, d);
        await sleep(d, outer);
        continue;
      }
      if (RETRY_STATUS(r.status) && attempt < attempts) {
        const ra = retryAfterMs(r.headers.get("retry-after"));
        await r.body?.cancel().catch(() => undefined);
        if (ra !== undefined && ra > maxRetryAfter) return { r: new Response(null, { status: r.status, headers: r.headers }), attempt, abort };
        const d = Math.max(ra ?? 0, backoff(attempt));
        stats.retries++;
        o.onRetry?.(`${what}: HTTP ${r.status}`, attempt, d);
        await sleep(d, outer);
        continue;
      }
      return { r, attempt, abort };
    }
  }

  self.fetch = (async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const method = (init.method ?? "GET").toUpperCase();
    const headerInit = headersOf(init);
    const range = parseRangeHeader(headerInit.get("range"));
    let { r, attempt, abort } = await withRetries(url, init, headerInit, 0, url);
    if (!r.ok) {
      self.lastFailure = { url, status: r.status, errorCode: r.headers.get("x-error-code") ?? undefined, errorMessage: r.headers.get("x-error-message") ?? undefined };
      return r;
    }
    if (method !== "GET" || !r.body) return r;
    if (range && r.status !== 206) {
      await r.body.cancel().catch(() => undefined);
      throw new Error(`${url}: the server ignored the Range request (HTTP ${r.status} instead of 206)`);
    }
    // the body, counted and resumable
    const etag = r.headers.get("etag");
    const first = range ? range.start : 0;
    const wantEnd = range?.end; // inclusive, or to the end
    let delivered = 0;
    let progressAt = 0;
    let reader = r.body.getReader();
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => abort.abort(new Error(`no data for ${idle / 1000} s`)), idle);
      timer.unref?.();
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          arm();
          try {
            const { done, value } = await reader.read();
            clearTimeout(timer);
            if (done) {
              controller.close();
              return;
            }
            delivered += value.length;
            stats.bytes += value.length;
            controller.enqueue(value);
            return;
          } catch (e) {
            clearTimeout(timer);
            if (init.signal?.aborted) throw e;
            // a connection that keeps delivering gets a fresh budget: only failures without progress count
            if (delivered > progressAt) {
              progressAt = delivered;
              attempt = 0;
            }
            if (attempt >= attempts) throw e;
            // resume from the first byte not delivered
            const h = new Headers(headerInit);
            h.set("range", `bytes=${first + delivered}-${wantEnd ?? ""}`);
            const next = await withRetries(url, init, h, attempt, `${url} (resuming at byte ${first + delivered})`);
            attempt = next.attempt;
            abort = next.abort;
            const nr = next.r;
            const start = contentRangeStart(nr.headers.get("content-range"));
            if (nr.status !== 206 || start !== first + delivered || !nr.body || (etag !== null && nr.headers.get("etag") !== etag)) {
              await nr.body?.cancel().catch(() => undefined);
              throw new Error(`${url}: cannot resume at byte ${first + delivered} (HTTP ${nr.status}${nr.headers.get("etag") !== etag ? ", the file changed" : ""}) after: ${(e as Error).message}`);
            }
            stats.retries++;
            o.onRetry?.(`${url}: resumed at byte ${first + delivered}`, attempt, 0);
            reader = nr.body.getReader();
          }
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: r.status, statusText: r.statusText, headers: r.headers });
  }) as typeof fetch;
  return self;
}
