/**
 * Disk space a plan needs on each file system it writes to. Its own module so that a dry run, which
 * prints it, does not load the pipeline (and with it the encoders and every codec).
 */
import { stat, statfs } from "node:fs/promises";
import path from "node:path";
import type { PlannedFile } from "./plan.js";

export async function statfsFree(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined; // not every platform or file system answers; the write itself still fails cleanly
  }
}

/** Disk space a plan needs on each file system it writes to, and what is free there (undefined if unknown). */
export interface DiskUsage {
  /** the output folder of the first file on that device */
  dir: string;
  /** bytes the outputs on that device will take */
  needed: number;
  free: number | undefined;
  /** the first output on that device */
  first: string;
}

/** Group the planned outputs by device (fs.stat dev) and ask each for its free space (fs.statfs). */
export async function diskUsage(files: readonly PlannedFile[], freeSpace: (dir: string) => Promise<number | undefined> = statfsFree): Promise<DiskUsage[]> {
  const byDev = new Map<string, { dir: string; need: number; first: string }>();
  for (const f of files) {
    const dir = path.dirname(f.path);
    const dev = await stat(dir).then((s) => String(s.dev), () => dir);
    const e = byDev.get(dev) ?? { dir, need: 0, first: f.path };
    e.need += f.header.fileSize;
    byDev.set(dev, e);
  }
  const out: DiskUsage[] = [];
  for (const { dir, need, first } of byDev.values()) {
    // a folder that does not exist yet: its nearest existing parent tells the file system
    let probe = dir;
    while (!(await stat(probe).then(() => true, () => false)) && path.dirname(probe) !== probe) probe = path.dirname(probe);
    out.push({ dir, needed: need, free: await freeSpace(probe), first });
  }
  return out;
}

