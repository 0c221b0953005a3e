/**
 * Per-stage timers of a conversion, for `GGUFY_PROFILE=1` (a breakdown on stderr at the end; see
 * bench/README.md, issue 19). Off by default: without a StageTimes object nothing is measured.
 *
 * Main-thread stages are wall time spent awaiting that stage (reads and writes overlap the workers,
 * so they do not add up to the total); worker stages are the workers' compute time summed over the
 * jobs; "messaging" is, per job, the time from postMessage to the answer's arrival minus the worker's
 * compute time (structured clone, transfer, thread wake-up).
 */
import { performance } from "node:perf_hooks";

interface Stage {
  ms: number;
  n: number;
  bytes: number;
}

/** Compute time of one job in a worker (or inline), by kind. */
export interface JobTimes {
  /** widen (bf16/f16 → f32) or a scheme's decode */
  decode: number;
  /** quantize / encode (including a fused bf16 → f16 pass) */
  encode: number;
  /** the NaN/Inf scan of a plain copy */
  scan: number;
}

export function newJobTimes(): JobTimes {
  return { decode: 0, encode: 0, scan: 0 };
}

export class StageTimes {
  private readonly stages = new Map<string, Stage>();
  private readonly order: string[] = [];
  /** event-loop utilisation of each worker at its end (filled by the worker pool) */
  readonly workerElu: { busyMs: number; idleMs: number }[] = [];
  private eluStart = performance.eventLoopUtilization();

  /** `n`: how many events this adds (default 1) */
  add(stage: string, ms: number, bytes = 0, n = 1): void {
    let s = this.stages.get(stage);
    if (!s) {
      s = { ms: 0, n: 0, bytes: 0 };
      this.stages.set(stage, s);
      this.order.push(stage);
    }
    s.ms += ms;
    s.n += n;
    s.bytes += bytes;
  }

  addJob(t: JobTimes, bytes: number): void {
    if (t.decode) this.add("worker: widen / decode", t.decode, bytes);
    if (t.encode) this.add("worker: quantize / encode", t.encode, bytes);
    if (t.scan) this.add("worker: NaN/Inf scan (plain copy)", t.scan, bytes);
  }

  async time<T>(stage: string, f: () => Promise<T>, bytes = 0): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.add(stage, performance.now() - t0, bytes);
    }
  }

  /** restart the main thread's event-loop utilisation window (at the start of the run) */
  markRunStart(): void {
    this.eluStart = performance.eventLoopUtilization();
  }

  report(): string {
    const lines = [`ggufy profile (GGUFY_PROFILE): ${(performance.now() / 1000).toFixed(2)} s since process start`];
    for (const name of this.order) {
      const s = this.stages.get(name)!;
      const rate = s.bytes > 0 && s.ms > 0 ? `  ${(s.bytes / 1e6 / (s.ms / 1000)).toFixed(0)} MB/s` : "";
      lines.push(`  ${name.padEnd(44)} ${(s.ms / 1000).toFixed(3).padStart(8)} s  ×${String(s.n).padEnd(6)}${s.bytes ? ` ${(s.bytes / 1e6).toFixed(0)} MB` : ""}${rate}`);
    }
    const elu = performance.eventLoopUtilization(this.eluStart);
    lines.push(`  main thread event loop during the run: busy ${(elu.active / 1000).toFixed(2)} s of ${((elu.active + elu.idle) / 1000).toFixed(2)} s (${(elu.utilization * 100).toFixed(0)} %)`);
    this.workerElu.forEach((w, i) => lines.push(`  worker ${i} event loop: busy ${(w.busyMs / 1000).toFixed(2)} s of ${((w.busyMs + w.idleMs) / 1000).toFixed(2)} s (${((100 * w.busyMs) / Math.max(1e-9, w.busyMs + w.idleMs)).toFixed(0)} %)`));
    const cpu = process.cpuUsage();
    lines.push(`  process CPU: user ${(cpu.user / 1e6).toFixed(2)} s, system ${(cpu.system / 1e6).toFixed(2)} s`);
    return lines.join("\n");
  }
}

/** A StageTimes when GGUFY_PROFILE is set (and not "0"), else undefined. */
export function profileFromEnv(): StageTimes | undefined {
  const v = process.env["GGUFY_PROFILE"];
  return v !== undefined && v !== "" && v !== "0" ? new StageTimes() : undefined;
}
