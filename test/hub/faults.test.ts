/**
 * Faults injected by the stand-in Hub (server.ts) — a connection reset mid-range, 503s, a slow server, a
 * 429 with Retry-After — and the converted file is still byte-identical to the local conversion.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { type Fault } from "./server.js";
import { convertHub, dirs, hub, sameBytes, safetensorsBytes, setupHub, smallBytes, teardownHub, tmp } from "./setup.js";

before(() => setupHub(["model"], { small: true }));
after(teardownHub);

describe("faults: the same file", () => {
  const cases: [string, (r: { host: string; range: string | undefined; file: string | undefined }, nth: number) => Fault | undefined][] = [
    // every big range response on the LFS host is cut half-way once
    ["connection reset mid-range", (() => {
      const cut = new Set<string>();
      return (r) => {
        const m = r.range ? /bytes=(\d+)-(\d+)/.exec(r.range) : null;
        if (r.host !== "cdn" || !m || Number(m[2]) - Number(m[1]) < 16384 || cut.has(r.range!)) return undefined;
        cut.add(r.range!);
        return { kind: "reset", after: (Number(m[2]) - Number(m[1])) >> 1 };
      };
    })()],
    ["503 then success", (_r, nth) => (nth % 3 === 0 ? { kind: "status", status: 503 } : undefined)],
    ["a slow server", (r) => (r.host === "cdn" ? { kind: "slow", chunk: 256 << 10, delayMs: 2 } : undefined)],
    ["429 with Retry-After", (_r, nth) => (nth === 0 ? { kind: "status", status: 429, headers: { "retry-after": "1" } } : undefined)],
  ];
  for (const [name, fault] of cases) {
    test(name, async () => {
      hub.resetCounters();
      hub.fault = fault;
      const out = path.join(tmp, `fault-${name.replace(/\W+/g, "-")}.gguf`);
      try {
        const r = await convertHub("hf:test/model", out);
        assert.equal(r.code, 0, r.stderr);
      } finally {
        hub.fault = undefined;
      }
      await sameBytes(path.join(tmp, "model-local.gguf"), out);
      const faulted = hub.log.filter((x) => x.status === 503 || x.status === 429);
      if (name.startsWith("503")) assert.ok(faulted.length >= 2, "503s were served");
      if (name.startsWith("429")) {
        const i = hub.log.findIndex((x) => x.status === 429);
        assert.ok(i >= 0);
        assert.ok(hub.log[i + 1]!.t - hub.log[i]!.t >= 950, `retried ${hub.log[i + 1]!.t - hub.log[i]!.t} ms after a Retry-After: 1`);
      }
      if (name.startsWith("connection")) {
        assert.ok(hub.resets >= 3, `connections were cut (${hub.resets})`);
        const st = await safetensorsBytes(dirs["model"]!);
        const small = smallBytes("test/model");
        assert.ok(hub.fileBytes - small <= st * 1.05, `resumed, not re-fetched: ${hub.fileBytes - small} bytes for ${st}`);
      }
    });
  }
});

