/**
 * Reference forward pass of the Qwen2-VL / Qwen2.5-VL vision tower + merger on one still image, in float64, from
 * transformers' definitions (modeling_qwen2_vl.py Qwen2VisionTransformerPretrainedModel, modeling_qwen2_5_vl.py
 * Qwen2_5_VisionTransformerPretrainedModel, and the image processor's patch order):
 *
 *   patches   the image (already a multiple of 28 and within min/max pixels: no resize) cut into p×p patches in
 *             merge-block order: block (by, bx) row-major, inside it (dy, dx) row-major; a still image is
 *             repeated on the temporal axis (temporal_patch_size 2), so Conv3d = (W[:,:,0] + W[:,:,1]) · patch;
 *   rotary    VisionRotaryEmbedding(head_dim/2, θ = 10000): inv[j] = θ^(−2j/(D/2)), j < D/4; a patch at
 *             (row hp, column wp) rotates half-dimension i < D/4 by hp·inv[i] and D/4 ≤ i < D/2 by wp·inv[i − D/4],
 *             pairing i with i + D/2 (apply_rotary_pos_emb_vision, rotate_half);
 *   block     x += proj(attn(norm1(x))); x += mlp(norm2(x)); Qwen2-VL: LayerNorm(eps 1e-6), MLP fc2(quick_gelu(fc1));
 *             2.5: RMSNorm(eps 1e-6), MLP down(silu(gate) · up); attention softmax(q·kᵀ/√D)·v over the image,
 *             for 2.5 only within windows except in fullatt_block_indexes: windows of window_size / merge /
 *             patch = 4×4 merged tokens, tiled from the top-left (get_window_index; the last ones smaller);
 *             computing in image order with a window mask equals HF's reorder + reverse_indices;
 *   merger    ln_q (LayerNorm / RMSNorm), 4 consecutive patches (one merge block) concatenated, mlp.0, GELU, mlp.2.
 *
 * `numerics: "ggml"` reproduces what llama.cpp's CPU backend computes where it deviates from the real-number
 * definition (documented ggml behaviour, not the model's): ggml_conv_2d im2cols the pixels to F16 (ggml.c, for a
 * non-BF16 kernel); quick GELU (the ViT MLP: clip.cpp build_ffn FFN_GELU_QUICK → ggml_gelu_quick) and GELU (the
 * merger: FFN_GELU → ggml_gelu) are ggml-cpu's F16 tables (vec.h GGML_GELU_QUICK_FP16 / GGML_GELU_FP16, always
 * defined: input rounded to F16, the table's F16 result; test/support/ggml-f16-tables.ts, checked entry by entry
 * against libggml-cpu.so's tables; GELU is the tanh form, nn.GELU() the erf one). `numerics: "exact"` is the HF
 * definition; `activations: "exact"` keeps the F16 im2col but evaluates both activations exactly (the table
 * emulation switched off).
 *
 * The F16 tables make "ggml" a near copy, not a bit copy: an input that llama.cpp's float32 arithmetic puts one
 * float32 ulp across an F16 rounding midpoint from this float64 reference reads the neighbouring entry, a whole F16
 * ulp (2^-11 relative) away, and with Qwen2-VL's quick GELU in every block that is enough to move the embeddings of
 * the tiny test model by ~2.5e-4 (see QwenVisionProbe). `f16Ties` settles exactly those inputs: given llama.cpp's
 * own table inputs (captured from libmtmd, test/support/mtmd.ts `capture`), an element whose F16 rounding differs
 * from the reference's while the two values are within `tol` · max |llama.cpp's input| of each other is looked up
 * at llama.cpp's F16 value (a tie), anything else at the reference's own. Nothing else of llama.cpp's is used.
 */
import { fromF16, toF16 } from "../../src/formats/half.js";
import { ggmlGeluTable, ggmlQuickGeluTable } from "./ggml-f16-tables.js";

export type WeightLoader = (name: string) => Promise<{ data: Float32Array; shape: readonly number[] }>;
export type QwenVisionNumerics = "exact" | "ggml";

export interface QwenVisionConfig {
  kind: "qwen2vl" | "qwen25vl";
  embd: number;
  ffn: number;
  heads: number;
  depth: number;
  patch: number;
  outDim: number;
  fullAtt: number[];
  /** merged tokens per window side (2.5) */
  windowMerged: number;
  eps: number;
}

export function qwenVisionConfigFromHf(c: Record<string, unknown>): QwenVisionConfig {
  const vc = c["vision_config"] as Record<string, number & unknown[]>;
  const kind = c["model_type"] === "qwen2_vl" ? "qwen2vl" : "qwen25vl";
  const patch = (vc["patch_size"] as number) ?? 14;
  if (kind === "qwen2vl") {
    const E = vc["embed_dim"] as number;
    return { kind, embd: E, ffn: E * ((vc["mlp_ratio"] as number) ?? 4), heads: vc["num_heads"] as number, depth: vc["depth"] as number, patch, outDim: vc["hidden_size"] as number, fullAtt: [], windowMerged: 0, eps: 1e-6 };
  }
  return {
    kind, embd: vc["hidden_size"] as number, ffn: vc["intermediate_size"] as number, heads: vc["num_heads"] as number, depth: vc["depth"] as number, patch,
    outDim: vc["out_hidden_size"] as number, fullAtt: [...(vc["fullatt_block_indexes"] as unknown as number[])], windowMerged: (vc["window_size"] as number) / 2 / patch, eps: 1e-6,
  };
}

interface Block {
  n1w: Float32Array; n1b?: Float32Array; n2w: Float32Array; n2b?: Float32Array;
  qkv: Float32Array; qkvb: Float32Array; proj: Float32Array; projb: Float32Array;
  up: Float32Array; upb: Float32Array; down: Float32Array; downb: Float32Array;
  gate?: Float32Array; gateb?: Float32Array;
}

export interface QwenVisionWeights {
  /** W[:,:,0] + W[:,:,1] is not formed: both frames kept, [E][3][2][p][p] */
  patch: Float32Array;
  blocks: Block[];
  lnq: Float32Array; lnqb?: Float32Array;
  mm0: Float32Array; mm0b: Float32Array; mm2: Float32Array; mm2b: Float32Array;
}

export async function loadQwenVisionWeights(load: WeightLoader, cfg: QwenVisionConfig): Promise<QwenVisionWeights> {
  const get = async (name: string): Promise<Float32Array> => (await load(name)).data;
  const q2 = cfg.kind === "qwen2vl";
  const blocks: Block[] = [];
  for (let i = 0; i < cfg.depth; i++) {
    const p = `visual.blocks.${i}.`;
    const b: Block = {
      n1w: await get(p + "norm1.weight"), n2w: await get(p + "norm2.weight"),
      qkv: await get(p + "attn.qkv.weight"), qkvb: await get(p + "attn.qkv.bias"),
      proj: await get(p + "attn.proj.weight"), projb: await get(p + "attn.proj.bias"),
      up: await get(p + (q2 ? "mlp.fc1.weight" : "mlp.up_proj.weight")), upb: await get(p + (q2 ? "mlp.fc1.bias" : "mlp.up_proj.bias")),
      down: await get(p + (q2 ? "mlp.fc2.weight" : "mlp.down_proj.weight")), downb: await get(p + (q2 ? "mlp.fc2.bias" : "mlp.down_proj.bias")),
    };
    if (q2) {
      b.n1b = await get(p + "norm1.bias");
      b.n2b = await get(p + "norm2.bias");
    } else {
      b.gate = await get(p + "mlp.gate_proj.weight");
      b.gateb = await get(p + "mlp.gate_proj.bias");
    }
    blocks.push(b);
  }
  const w: QwenVisionWeights = {
    patch: await get("visual.patch_embed.proj.weight"), blocks,
    lnq: await get("visual.merger.ln_q.weight"),
    mm0: await get("visual.merger.mlp.0.weight"), mm0b: await get("visual.merger.mlp.0.bias"),
    mm2: await get("visual.merger.mlp.2.weight"), mm2b: await get("visual.merger.mlp.2.bias"),
  };
  if (q2) w.lnqb = await get("visual.merger.ln_q.bias");
  return w;
}

const r16 = (x: number): number => fromF16(toF16(Math.fround(x)));

function erf(x: number): number {
  // W. J. Cody's rational approximations would do; a series / continued fraction with |error| < 1e-15 is enough here
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = 0;
    let term = t;
    for (let n = 0; n < 200; n++) {
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
      term *= (-t * t) / (n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for large |x|
  let f = t;
  let C = t;
  let D = 0;
  for (let n = 1; n < 300; n++) {
    const a = n / 2;
    D = t + a * D;
    D = 1 / D;
    C = t + a / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-t * t) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

const quickGelu = (x: number): number => x / (1 + Math.exp(-1.702 * x));
const geluErf = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));

function linear(w: Float32Array, b: Float32Array | undefined, x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = b ? b[r]! : 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) s += w[o + c]! * x[c]!;
    out[r] = s;
  }
  return out;
}

function norm(x: Float64Array, w: Float32Array, b: Float32Array | undefined, rms: boolean, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  if (!rms) {
    for (let i = 0; i < n; i++) mean += x[i]!;
    mean /= n;
  }
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i]! - mean) ** 2;
  const s = 1 / Math.sqrt(v / n + eps);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (x[i]! - mean) * s * w[i]! + (b ? b[i]! : 0);
  return out;
}

/**
 * Sensitivity probe (not a model behaviour): `quickGeluInputUlps: k` moves every quick-GELU input by k float32
 * ulps (sign alternating with patch + channel) before the activation. llama.cpp computes those inputs in float32
 * in its own summation order, so they differ from this float64 reference by about that much; the distance
 * between the probed and the plain reference is the floor no emulation of the F16 table can get under.
 */
export interface QwenVisionProbe {
  quickGeluInputUlps?: number;
  /** "exact": both activations by their definition even with numerics "ggml" (the F16-table emulation off) */
  activations?: "table" | "exact";
  f16Ties?: QwenVisionTies;
  /** called with each patch's quick-GELU input (fc1 output, F values) of block `layer` before the activation; may change it in place */
  quickGeluInput?: (layer: number, patch: number, u: Float64Array) => void;
}

/**
 * llama.cpp's inputs to the F16 activation tables, from libmtmd's encoder graph (Qwen2-VL: no window reordering,
 * so its rows are in the reference's patch / merged-token order): `quickGelu[l]` = "ffn_up_b-l" ([N patches][F]),
 * `gelu` = the merger's "ffn_up_b" ([tokens][4·E]). `ties` / `far` are counted by the forward pass.
 */
export interface QwenVisionTies {
  quickGelu: Float32Array[];
  gelu?: Float32Array;
  /** how close (relative to the tensor's max |value|) two inputs must be for a differing F16 rounding to count as a tie */
  tol: number;
  ties: number;
  /** elements whose F16 rounding differs and whose inputs are farther apart than tol (left at the reference's) */
  far: number;
}

const absMax = (a: Float32Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** settle the F16 ties of `u` (row `row` of a [rows][u.length] table input) with llama.cpp's values `g` */
function settleTies(u: Float64Array, g: Float32Array, row: number, scale: number, ties: QwenVisionTies): void {
  const o = row * u.length;
  for (let i = 0; i < u.length; i++) {
    const y = g[o + i]!;
    if (toF16(Math.fround(u[i]!)) === toF16(y)) continue;
    if (Math.abs(u[i]! - y) <= ties.tol * scale) {
      u[i] = y;
      ties.ties++;
    } else ties.far++;
  }
}

const f32a = new Float32Array(1);
const u32a = new Uint32Array(f32a.buffer);
/** x rounded to float32, then moved k ulps (k > 0: away from zero) */
function nudgeF32(x: number, k: number): number {
  f32a[0] = x;
  if (f32a[0] === 0) return 0;
  u32a[0] = u32a[0]! + k;
  return f32a[0]!;
}

/**
 * Image embeddings (merged tokens × outDim, token-major, row-major blocks) of `pixels` — planar [3][ny][nx]
 * normalised floats (test/support/mtmd.ts clipPixels).
 */
export function qwenVisionForward(w: QwenVisionWeights, cfg: QwenVisionConfig, pixels: Float32Array, nx: number, ny: number, numerics: QwenVisionNumerics = "ggml", probe: QwenVisionProbe = {}): Float64Array {
  const { embd: E, heads, patch: p, ffn: F } = cfg;
  const D = E / heads;
  const gh = ny / p;
  const gw = nx / p;
  const bh = gh / 2;
  const bw = gw / 2;
  const N = gh * gw;
  const ggml = numerics === "ggml";
  const px = ggml ? Float32Array.from(pixels, r16) : pixels;
  // patch order and positions
  const pos: [number, number][] = [];
  for (let by = 0; by < bh; by++) for (let bx = 0; bx < bw; bx++) for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) pos.push([by * 2 + dy, bx * 2 + dx]);
  // patch embedding: both temporal frames of the kernel see the same pixels
  let xs: Float64Array[] = pos.map(([hp, wp]) => {
    const out = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let c = 0; c < 3; c++) {
        for (let t = 0; t < 2; t++) {
          const wo = (((e * 3 + c) * 2 + t) * p) * p;
          for (let y = 0; y < p; y++) {
            const ro = c * nx * ny + (hp * p + y) * nx + wp * p;
            for (let x = 0; x < p; x++) s += w.patch[wo + y * p + x]! * px[ro + x]!;
          }
        }
      }
      out[e] = s;
    }
    return out;
  });
  // rotary tables
  const q4 = D / 4;
  const inv = Array.from({ length: q4 }, (_, j) => 1 / Math.pow(10000, (2 * j) / (D / 2)));
  const rope = (v: Float64Array, o: number, [hp, wp]: [number, number]): void => {
    for (let i = 0; i < D / 2; i++) {
      const a = (i < q4 ? hp : wp) * inv[i % q4]!;
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x1 = v[o + i]!;
      const x2 = v[o + i + D / 2]!;
      v[o + i] = x1 * c - x2 * s;
      v[o + i + D / 2] = x2 * c + x1 * s;
    }
  };
  // window of each patch (2.5): merged-token tiles of windowMerged × windowMerged
  const win = pos.map(([hp, wp]) => (cfg.windowMerged > 0 ? Math.floor(hp / 2 / cfg.windowMerged) * 1e6 + Math.floor(wp / 2 / cfg.windowMerged) : 0));
  const rms = cfg.kind === "qwen25vl";
  const tables = ggml && probe.activations !== "exact";
  const act = cfg.kind === "qwen2vl" ? (tables ? ggmlQuickGeluTable : quickGelu) : undefined;
  const ties = probe.f16Ties;
  if (ties && (ties.quickGelu.length !== (act ? cfg.depth : 0) || ties.quickGelu.some((g) => g.length !== N * F))) throw new Error("f16Ties.quickGelu: one [N][F] input per quick-GELU block expected");
  const tieScale = ties?.quickGelu.map(absMax) ?? [];
  for (let l = 0; l < cfg.depth; l++) {
    const b = w.blocks[l]!;
    const full = cfg.kind === "qwen2vl" || cfg.fullAtt.includes(l);
    const qkv = xs.map((x, n) => {
      const y = linear(b.qkv, b.qkvb, norm(x, b.n1w, b.n1b, rms, cfg.eps), 3 * E, E);
      for (let hh = 0; hh < heads; hh++) {
        rope(y, hh * D, pos[n]!);
        rope(y, E + hh * D, pos[n]!);
      }
      return y;
    });
    const next: Float64Array[] = [];
    for (let n = 0; n < N; n++) {
      const att = new Float64Array(E);
      for (let hh = 0; hh < heads; hh++) {
        const sc = new Float64Array(N);
        let mx = -Infinity;
        for (let m = 0; m < N; m++) {
          if (!full && win[m] !== win[n]) {
            sc[m] = -Infinity;
            continue;
          }
          let d = 0;
          for (let i = 0; i < D; i++) d += qkv[n]![hh * D + i]! * qkv[m]![E + hh * D + i]!;
          sc[m] = d / Math.sqrt(D);
          mx = Math.max(mx, sc[m]!);
        }
        let sum = 0;
        for (let m = 0; m < N; m++) sum += sc[m] = sc[m] === -Infinity ? 0 : Math.exp(sc[m]! - mx);
        for (let m = 0; m < N; m++) {
          if (sc[m] === 0) continue;
          const a = sc[m]! / sum;
          for (let i = 0; i < D; i++) att[hh * D + i] += a * qkv[m]![2 * E + hh * D + i]!;
        }
      }
      const x = xs[n]!.slice();
      const o = linear(b.proj, b.projb, att, E, E);
      for (let i = 0; i < E; i++) x[i] += o[i]!;
      const h = norm(x, b.n2w, b.n2b, rms, cfg.eps);
      const u = linear(b.up, b.upb, h, F, E);
      if (act) {
        probe.quickGeluInput?.(l, n, u);
        if (ties) settleTies(u, ties.quickGelu[l]!, n, tieScale[l]!, ties);
        const k = probe.quickGeluInputUlps ?? 0;
        for (let i = 0; i < F; i++) u[i] = act(k === 0 ? u[i]! : nudgeF32(u[i]!, (n + i) % 2 === 0 ? k : -k));
      }
      else {
        const g = linear(b.gate!, b.gateb!, h, F, E);
        for (let i = 0; i < F; i++) u[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      }
      const dn = linear(b.down, b.downb, u, E, F);
      for (let i = 0; i < E; i++) x[i] += dn[i]!;
      next.push(x);
    }
    xs = next;
  }
  // merger
  const gelu = tables ? ggmlGeluTable : geluErf;
  const T = N / 4;
  if (ties?.gelu && ties.gelu.length !== T * 4 * E) throw new Error("f16Ties.gelu: a [tokens][4E] input expected");
  const geluScale = ties?.gelu ? absMax(ties.gelu) : 0;
  const out = new Float64Array(T * cfg.outDim);
  for (let t = 0; t < T; t++) {
    const cat = new Float64Array(4 * E);
    for (let k = 0; k < 4; k++) cat.set(norm(xs[t * 4 + k]!, w.lnq, w.lnqb, rms, cfg.eps), k * E);
    const h = linear(w.mm0, w.mm0b, cat, 4 * E, 4 * E);
    if (ties?.gelu) settleTies(h, ties.gelu, t, geluScale, ties);
    for (let i = 0; i < h.length; i++) h[i] = gelu(h[i]!);
    out.set(linear(w.mm2, w.mm2b, h, cfg.outDim, 4 * E), t * cfg.outDim);
  }
  return out;
}
