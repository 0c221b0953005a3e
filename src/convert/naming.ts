/** GGUF naming convention and general.* metadata helpers (gguf-py utility.naming_convention). */

/** "7.6B", "260K", "35M": parameter count rounded to 2 significant-ish digits like gguf-py. */
export function sizeLabel(params: number): string {
  const units: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [scale, suffix] of units) {
    if (params >= scale) return `${formatScaled(params / scale)}${suffix}`;
  }
  return `${params}`;
}

function formatScaled(v: number): string {
  // gguf-py: round to min_digits=2 significant digits before the point, keeping one decimal when < 10
  if (v >= 10) return `${Math.round(v)}`;
  return `${Math.round(v * 10) / 10}`.replace(/\.0$/, "");
}

/** "my-model_dir" → "My Model Dir" (gguf-py id_to_title). */
export function idToTitle(s: string): string {
  return s
    .replace(/[-_]+/g, " ")
    .split(" ")
    .filter(Boolean)
    .map((w) => (/^[a-z]/.test(w) && !/\d/.test(w) ? w[0]!.toUpperCase() + w.slice(1) : w))
    .join(" ");
}

export interface NameParts {
  baseName: string;
  sizeLabel?: string;
  fineTune?: string;
  version?: string;
  encoding: string;
}

/** <BaseName>-<SizeLabel>-<FineTune>-<Version>-<Encoding>, spaces turned into dashes. */
export function conventionalName(p: NameParts): string {
  const parts = [p.baseName, p.sizeLabel, p.fineTune, p.version, p.encoding].filter((x): x is string => !!x && x.length > 0);
  return parts.map((s) => s.trim().replace(/\s+/g, "-")).join("-");
}
