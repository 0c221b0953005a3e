/**
 * Opening the adapters of `--lora DIR [--lora-scale S]` for a merge: each folder through the PEFT
 * reader (./adapter.ts), checked against the base (./merge.ts LoraMerge.create).
 */
import type { SourceCheckpoint } from "../../source/checkpoint.js";
import { openLoraAdapter } from "./adapter.js";
import { LoraMerge, type LoraSpec } from "./merge.js";
import { openModelRef, type OpenModelRefOptions } from "../../hub/open.js";

/** `hub`: for adapters given as model references (hf:owner/name), downloaded into the Hub cache (they are small). */
export async function openLoraMerge(base: SourceCheckpoint, specs: readonly LoraSpec[], hub: OpenModelRefOptions = {}): Promise<LoraMerge> {
  const adapters: Awaited<ReturnType<typeof openLoraAdapter>>[] = [];
  try {
    for (const s of specs) {
      const loc = await openModelRef(s.dir, { ...hub, download: true });
      let a;
      try {
        a = await openLoraAdapter(loc.dir);
      } catch (e) {
        await loc.close();
        throw e;
      }
      const close = a.close.bind(a);
      a.close = async () => {
        try {
          await close();
        } finally {
          await loc.close();
        }
      };
      adapters.push(a);
    }
    return LoraMerge.create(base, adapters, specs.map((s) => s.scale ?? 1));
  } catch (e) {
    for (const a of adapters) await a.close().catch(() => undefined);
    throw e;
  }
}
