/**
 * Model references on the command line: `hf:owner/name[@rev]` or a Hub URL wherever a model folder is
 * taken, with `--token` (else HF_TOKEN) and `--download` (into the Hugging Face cache, then read locally).
 */
import type { ModelLocation } from "../hub/open.js";
import { isModelRef } from "../hub/ref.js";
import { onForcedExit } from "./signals.js";
import { GgufyError } from "../errors.js";

/** Paths inside a model reference's temporary folder, shown as the reference (hf:org/name/config.json). */
export function shownAs(loc: ModelLocation | undefined, s: string): string {
  return loc && loc.mode !== "local" ? s.split(loc.dir).join(loc.label) : s;
}

export { HUB_OPTIONS, HUB_USAGE } from "./usage.js";

/**
 * Run `f` on the folder `input` names (a local folder, or a model reference), releasing it after.
 * A local folder does not load the Hub client (hub/open.ts): its location is the one openModelRef
 * gives a path that is not a reference.
 */
export async function withModel<T>(input: string, v: { token?: string | undefined; download?: boolean | undefined }, f: (loc: ModelLocation) => Promise<T>): Promise<T> {
  const loc: ModelLocation = isModelRef(input)
    ? await (await import("../hub/open.js")).openModelRef(input, { ...(v.token !== undefined ? { token: v.token } : {}), ...(v.download ? { download: true } : {}) })
    : { dir: input, label: input, mode: "local", close: async () => undefined };
  // a forced exit (second signal) still removes a streaming run's staging folder (signals.ts)
  const undo = loc.removeSync ? onForcedExit(loc.removeSync) : () => undefined;
  try {
    return await f(loc);
  } catch (e) {
    if (e instanceof GgufyError && loc.mode !== "local" && e.file?.startsWith(loc.dir)) {
      throw new GgufyError(e.code, shownAs(loc, e.detail), { file: shownAs(loc, e.file), ...(e.tensor !== undefined ? { tensor: e.tensor } : {}), cause: e });
    }
    throw e;
  } finally {
    undo();
    await loc.close();
  }
}
