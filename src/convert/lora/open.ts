/**
 * Opening the adapters of `--lora DIR [--lora-scale S]` for a merge: each folder through the PEFT
 * reader (./adapter.ts), checked against the base (./merge.ts LoraMerge.create).
 */
import type { SourceCheckpoint } from "../../source/checkpoint.js";
import { openLoraAdapter } from "./adapter.js";
import { LoraMerge, type LoraSpec } from "./merge.js";

export async function openLoraMerge(base: SourceCheckpoint, specs: readonly LoraSpec[]): Promise<LoraMerge> {
  const adapters: Awaited<ReturnType<typeof openLoraAdapter>>[] = [];
  try {
    for (const s of specs) adapters.push(await openLoraAdapter(s.dir));
    return LoraMerge.create(base, adapters, specs.map((s) => s.scale ?? 1));
  } catch (e) {
    for (const a of adapters) await a.close().catch(() => undefined);
    throw e;
  }
}
