/**
 * Model references on the command line: `hf:owner/name[@rev]` or a Hub URL wherever a model folder is
 * taken, with `--token` (else HF_TOKEN) and `--download` (into the Hugging Face cache, then read locally).
 */
import { openModelRef, type ModelLocation } from "../hub/open.js";
import { onForcedExit } from "./signals.js";
import { GgufyError } from "../errors.js";

/** Paths inside a model reference's temporary folder, shown as the reference (hf:org/name/config.json). */
export function shownAs(loc: ModelLocation | undefined, s: string): string {
  return loc && loc.mode !== "local" ? s.split(loc.dir).join(loc.label) : s;
}

/** parseArgs options every command that takes a model folder accepts */
export const HUB_OPTIONS = {
  token: { type: "string" },
  download: { type: "boolean" },
} as const;

export const HUB_USAGE = `model references (instead of a model folder):
  hf:owner/name[@revision], https://huggingface.co/owner/name[/tree/revision]
                         read from the Hugging Face Hub: small files fetched, weights streamed by range requests
                         (HF_ENDPOINT: another endpoint or mirror; a complete cached snapshot is used offline)
  --token TOKEN          access token for private or gated repositories (default: HF_TOKEN)
  --download             place the files in the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub,
                         ~/.cache/huggingface/hub) and convert from there`;

/** Run `f` on the folder `input` names (a local folder, or a model reference), releasing it after. */
export async function withModel<T>(input: string, v: { token?: string | undefined; download?: boolean | undefined }, f: (loc: ModelLocation) => Promise<T>): Promise<T> {
  const loc = await openModelRef(input, { ...(v.token !== undefined ? { token: v.token } : {}), ...(v.download ? { download: true } : {}) });
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
