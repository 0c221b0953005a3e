/**
 * Self time per function of a V8 .cpuprofile (from `node --cpu-prof`), heaviest first.
 *
 *   node dist/bench/prof-summary.js FILE.cpuprofile [--top 25]
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

const file = process.argv[2];
if (!file) {
  console.error("usage: prof-summary FILE.cpuprofile [--top N]");
  process.exit(64);
}
const i = process.argv.indexOf("--top");
const top = i >= 0 ? Number(process.argv[i + 1]) : 25;
const prof = JSON.parse(readFileSync(file, "utf8")) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n] as const));
const self = new Map<string, number>();
let total = 0;
for (let k = 0; k < prof.samples.length; k++) {
  const n = byId.get(prof.samples[k]!)!;
  const dt = prof.timeDeltas[k] ?? 0;
  const f = n.callFrame;
  const key = `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(dist|node_modules)\//, "$1/")}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
  total += dt;
}
console.log(`total ${(total / 1e6).toFixed(1)} s sampled`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1e6).toFixed(2).padStart(7)} s  ${k}`);
