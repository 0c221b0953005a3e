/**
 * `--lora DIR [--lora-scale S]` (repeatable; each --lora-scale applies to the --lora before it) for
 * convert, dequantize and verify: taken out of the arguments before parseArgs, which cannot pair them.
 */
import { GgufyError } from "../errors.js";
import type { LoraMergeSummary, LoraSpec } from "../convert/lora/merge.js";
import { termSafe } from "./escape.js";

export { LORA_USAGE } from "./usage.js";
export function takeLoraArgs(args: readonly string[]): { args: string[]; lora: LoraSpec[] } {
  const rest: string[] = [];
  const lora: LoraSpec[] = [];
  let scaled = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const m = /^--(lora|lora-scale)(?:=(.*))?$/s.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      value = args[i + 1];
      if (value === undefined || (value.startsWith("--") && value !== "--")) throw new GgufyError("E_USAGE", `--${m[1]} needs a value`);
      i++;
    }
    if (m[1] === "lora") {
      if (value === "") throw new GgufyError("E_USAGE", "--lora needs an adapter folder");
      lora.push({ dir: value });
      scaled = false;
    } else {
      if (lora.length === 0) throw new GgufyError("E_USAGE", `--lora-scale ${value}: give it after the --lora it applies to`);
      if (scaled) throw new GgufyError("E_USAGE", `--lora-scale ${value}: the adapter ${lora.at(-1)!.dir} already has a scale`);
      const s = Number(value);
      if (value.trim() === "" || !Number.isFinite(s)) throw new GgufyError("E_USAGE", `--lora-scale ${value}: expected a finite number`);
      lora.at(-1)!.scale = s;
      scaled = true;
    }
  }
  return { args: rest, lora };
}

/** The dry-run listing of a merge: the adapters, then every base tensor they change. */
export function formatLoraSummary(s: LoraMergeSummary): string {
  const lines: string[] = [];
  for (const a of s.adapters) lines.push(`lora: ${termSafe(a.dir)} (scale ${a.scale}): ${a.targets} target(s), ${a.saved} modules_to_save tensor(s)`);
  for (const t of s.tensors) lines.push(`  ${t.kind} ${termSafe(t.tensor)}: ${termSafe(t.detail)}`);
  lines.push(`lora: ${s.tensors.length} base tensor(s) changed`);
  return lines.join("\n");
}
