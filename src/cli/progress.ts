/** A one-line progress display on stderr when it is a terminal; silent otherwise. */
import type { ProgressEvent } from "../convert/pipeline.js";
import { termSafe } from "./escape.js";

export function formatBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : v < 10 ? 2 : 1)} ${u[i]}`;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
}

export class ProgressLine {
  private last = 0;
  private readonly start = performance.now();
  private shown = false;
  /** `network`: bytes received from the network so far (a model read from the Hub), shown with its rate */
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly enabled = stream.isTTY === true, private readonly network?: () => number) {}

  update(e: ProgressEvent): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 100 && e.bytesDone < e.bytesTotal) return;
    this.last = now;
    const secs = (now - this.start) / 1000;
    const rate = e.bytesDone / Math.max(secs, 1e-3);
    const eta = (e.bytesTotal - e.bytesDone) / Math.max(rate, 1);
    const pct = ((100 * e.bytesDone) / Math.max(1, e.bytesTotal)).toFixed(1).padStart(5);
    const net = this.network ? `  net ${formatBytes(this.network())} ${formatBytes(this.network() / Math.max(secs, 1e-3))}/s` : "";
    const line = `${pct}%  ${formatBytes(e.bytesDone)}/${formatBytes(e.bytesTotal)}  ${formatBytes(rate)}/s${net}  ETA ${formatDuration(eta)}  [${e.tensorIndex + 1}/${e.tensorCount}] ${termSafe(e.tensor)}`;
    const width = this.stream.columns ?? 120;
    this.stream.write(`\r${line.slice(0, width - 1).padEnd(Math.min(width - 1, line.length + 2))}`);
    this.shown = true;
  }

  done(): void {
    if (this.shown) this.stream.write("\r\x1b[K");
    this.shown = false;
  }
}
