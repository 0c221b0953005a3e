/**
 * A reference forward pass of MiniCPM-V's vision side — the SigLIP ("navit") vision transformer and the
 * perceiver resampler — in plain TypeScript, from the Hugging Face definitions, reading the checkpoint's own
 * tensors (HF names and layouts, not the GGUF's):
 *
 * - vision tower, openbmb's modeling_navit_siglip.py (the same code is MiniCPMVisionEmbeddings /
 *   SiglipAttention / SiglipMLP / SiglipEncoderLayer in transformers' models/minicpm_v_4_5):
 *     patches = Conv2d(3 → V, kernel = stride = patch)(pixels), raster order (row of patches, then column);
 *     position ids (tgt_sizes = (nh, nw)): boundaries = arange(1/S, 1, 1/S) with S = vision image_size / patch
 *       (70), fractional_coords_h = arange(0, 1 − 1e-6, 1/nh), bucket_h = bucketize(…, boundaries, right=True),
 *       likewise w, id = bucket_h·S + bucket_w;
 *     h = patches + position_embedding[id];
 *       (clip.cpp computes the buckets as floor(70·i/n): the same ids, except on grids of 25, 49, 50 and 55 patches
 *       per side, where HF's float32 coordinates put some rows/columns one bucket lower — pick other slice sizes
 *       when comparing with llama.cpp; test/models/minicpmv-vision-reference.test.ts pins the list)
 *     per layer: h += out_proj(MHA(layer_norm1(h))) (q/k/v/out with biases, scale head_dim^−½, softmax);
 *                h += fc2(gelu_pytorch_tanh(fc1(layer_norm2(h))));
 *     h = post_layernorm(h)     (drop_vision_last_layer checkpoints simply store one layer fewer).
 * - resampler, openbmb's resampler.py (Resampler; MiniCPMVResampler in minicpm_v_4_5), with
 *   num_heads = embed_dim // 128 (MiniCPMV.init_resampler) and LayerNorm eps 1e-6:
 *     x = ln_kv(kv_proj(h)) (no bias); q = ln_q(query);
 *     pos = get_2d_sincos_pos_embed(D, (70, 70))[:nh, :nw] flattened h-major; the first D/2 columns encode the
 *       w coordinate (np.meshgrid(grid_w, grid_h) puts w first), the last D/2 the h coordinate; each half is
 *       [sin(p·ω), cos(p·ω)], ω_k = 1/10000^(k/(D/4)) (numpy float32 steps);
 *     out = nn.MultiheadAttention(q, k = x + pos, v = x) (in_proj_weight rows 0:D, D:2D, 2D:3D are q, k, v;
 *       out_proj with bias); y = ln_post(out) @ proj   (proj is used as x @ proj, i.e. not transposed).
 *
 * Sums are accumulated in float64; weights are the checkpoint's values widened exactly to float32.
 *
 * `numerics` selects where the pass reproduces what llama.cpp's CPU backend computes instead of the exact
 * real-number definition (both documented deviations of ggml, not of the model):
 * - `patchF16`: clip.cpp's patch embedding is `ggml_conv_2d` (tools/mtmd/clip.cpp clip_graph::build_inp), which
 *   im2cols the pixels to F16 for a non-BF16 kernel (ggml.c ggml_conv_2d) and multiplies with the kernel in F16
 *   (ggufy writes the 4-D kernel F16, as the legacy image-encoder script does): pixels and kernel are rounded
 *   to F16 before the products;
 * - `geluF16Table`: ggml-cpu's GELU (vec.h ggml_vec_gelu_f32 with GGML_GELU_FP16) rounds its input to F16 and
 *   looks up ggml_table_gelu_f16 (F16 of ggml_gelu_f32), with its ±10 clamps: ggml-f16-tables.ts ggmlGeluTable
 *   (checked against libggml-cpu.so's table entry by entry). SigLIP's MLP is clip.cpp build_ffn FFN_GELU →
 *   ggml_gelu, so the table is on this path as quick GELU is on Qwen2-VL's; here a flipped F16 rounding moves the
 *   embeddings far less (the e2e tests print the error with the table emulation off).
 * With GGML_CPU_NUMERICS the embeddings agree with llama.cpp's to ~1e-6 relative; with EXACT_NUMERICS they
 * differ by the F16 roundings (the e2e test prints both).
 */
import { fromF16, toF16 } from "../../src/formats/half.js";
import { geluTanh } from "./reference-gemma.js";
import { ggmlGeluTable } from "./ggml-f16-tables.js";

export interface MinicpmvVisionConfig {
  /** vision_config.hidden_size */
  visionHidden: number;
  visionHeads: number;
  visionFfn: number;
  /** vision layers stored in the checkpoint */
  visionLayers: number;
  patch: number;
  /** vision_config.image_size / patch (70 for the SigLIP-400M tower at 980) */
  patchesPerSide: number;
  /** vision_config.layer_norm_eps (SiglipVisionConfig default 1e-6) */
  visionEps: number;
  /** the LLM hidden size = the resampler width D */
  embedDim: number;
  /** config.query_num */
  queryNum: number;
  /** embed_dim // 128 */
  resamplerHeads: number;
  /** the resampler's LayerNorm eps (resampler.py norm_layer: 1e-6) */
  resamplerEps: number;
}

export interface VisionNumerics {
  patchF16: boolean;
  geluF16Table: boolean;
}
export const EXACT_NUMERICS: VisionNumerics = { patchF16: false, geluF16Table: false };
export const GGML_CPU_NUMERICS: VisionNumerics = { patchF16: true, geluF16Table: true };

/** The fields of a MiniCPMV config.json the pass needs (vision layers: from the checkpoint, `storedVisionLayers`). */
export function minicpmvVisionConfigFromHf(c: Record<string, unknown>, storedVisionLayers: number): MinicpmvVisionConfig {
  const vc = (c["vision_config"] ?? {}) as Record<string, unknown>;
  const n = (o: Record<string, unknown>, k: string, d?: number): number => {
    const v = o[k];
    if (typeof v === "number") return v;
    if (d !== undefined) return d;
    throw new Error(`config.json: ${k} is missing`);
  };
  const patch = n(vc, "patch_size", 14);
  const D = n(c, "hidden_size");
  return {
    visionHidden: n(vc, "hidden_size", 1152),
    visionHeads: n(vc, "num_attention_heads", 16),
    visionFfn: n(vc, "intermediate_size", 4304),
    visionLayers: storedVisionLayers,
    patch,
    patchesPerSide: Math.floor(n(vc, "image_size", 980) / patch),
    visionEps: n(vc, "layer_norm_eps", 1e-6),
    embedDim: D,
    queryNum: n(c, "query_num", 64),
    resamplerHeads: Math.floor(D / 128),
    resamplerEps: 1e-6,
  };
}

/** name → the tensor's values (float32) and torch shape; e.g. from SafetensorsCheckpoint + tensorToF32, or a decoded bitsandbytes view. */
export type WeightLoader = (name: string) => Promise<{ data: Float32Array; shape: readonly number[] }>;

interface VisionLayer {
  ln1w: Float32Array; ln1b: Float32Array;
  q: Float32Array; qb: Float32Array; k: Float32Array; kb: Float32Array; v: Float32Array; vb: Float32Array;
  o: Float32Array; ob: Float32Array;
  ln2w: Float32Array; ln2b: Float32Array;
  fc1: Float32Array; fc1b: Float32Array; fc2: Float32Array; fc2b: Float32Array;
}

export interface MinicpmvVisionWeights {
  patchW: Float32Array;
  patchB: Float32Array;
  posEmb: Float32Array;
  layers: VisionLayer[];
  postW: Float32Array;
  postB: Float32Array;
  query: Float32Array;
  kvProj: Float32Array;
  inProjW: Float32Array;
  inProjB: Float32Array;
  outProjW: Float32Array;
  outProjB: Float32Array;
  lnQw: Float32Array; lnQb: Float32Array;
  lnKvw: Float32Array; lnKvb: Float32Array;
  lnPostw: Float32Array; lnPostb: Float32Array;
  proj: Float32Array;
}

/** Load every vision/resampler tensor by its checkpoint name (`vpm.` / `resampler.` prefixes), checking shapes. */
export async function loadMinicpmvVisionWeights(load: WeightLoader, cfg: MinicpmvVisionConfig, prefix = { vpm: "vpm.", resampler: "resampler." }): Promise<MinicpmvVisionWeights> {
  const get = async (name: string, shape: number[]): Promise<Float32Array> => {
    const t = await load(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new Error(`${name}: shape [${t.shape}] ≠ [${shape}]`);
    return t.data;
  };
  const V = cfg.visionHidden;
  const F = cfg.visionFfn;
  const D = cfg.embedDim;
  const p = prefix.vpm;
  const r = prefix.resampler;
  const layers: VisionLayer[] = [];
  for (let i = 0; i < cfg.visionLayers; i++) {
    const s = `${p}encoder.layers.${i}.`;
    layers.push({
      ln1w: await get(`${s}layer_norm1.weight`, [V]), ln1b: await get(`${s}layer_norm1.bias`, [V]),
      q: await get(`${s}self_attn.q_proj.weight`, [V, V]), qb: await get(`${s}self_attn.q_proj.bias`, [V]),
      k: await get(`${s}self_attn.k_proj.weight`, [V, V]), kb: await get(`${s}self_attn.k_proj.bias`, [V]),
      v: await get(`${s}self_attn.v_proj.weight`, [V, V]), vb: await get(`${s}self_attn.v_proj.bias`, [V]),
      o: await get(`${s}self_attn.out_proj.weight`, [V, V]), ob: await get(`${s}self_attn.out_proj.bias`, [V]),
      ln2w: await get(`${s}layer_norm2.weight`, [V]), ln2b: await get(`${s}layer_norm2.bias`, [V]),
      fc1: await get(`${s}mlp.fc1.weight`, [F, V]), fc1b: await get(`${s}mlp.fc1.bias`, [F]),
      fc2: await get(`${s}mlp.fc2.weight`, [V, F]), fc2b: await get(`${s}mlp.fc2.bias`, [V]),
    });
  }
  return {
    patchW: await get(`${p}embeddings.patch_embedding.weight`, [V, 3, cfg.patch, cfg.patch]),
    patchB: await get(`${p}embeddings.patch_embedding.bias`, [V]),
    posEmb: await get(`${p}embeddings.position_embedding.weight`, [cfg.patchesPerSide ** 2, V]),
    layers,
    postW: await get(`${p}post_layernorm.weight`, [V]),
    postB: await get(`${p}post_layernorm.bias`, [V]),
    query: await get(`${r}query`, [cfg.queryNum, D]),
    kvProj: await get(`${r}kv_proj.weight`, [D, V]),
    inProjW: await get(`${r}attn.in_proj_weight`, [3 * D, D]),
    inProjB: await get(`${r}attn.in_proj_bias`, [3 * D]),
    outProjW: await get(`${r}attn.out_proj.weight`, [D, D]),
    outProjB: await get(`${r}attn.out_proj.bias`, [D]),
    lnQw: await get(`${r}ln_q.weight`, [D]), lnQb: await get(`${r}ln_q.bias`, [D]),
    lnKvw: await get(`${r}ln_kv.weight`, [D]), lnKvb: await get(`${r}ln_kv.bias`, [D]),
    lnPostw: await get(`${r}ln_post.weight`, [D]), lnPostb: await get(`${r}ln_post.bias`, [D]),
    proj: await get(`${r}proj`, [D, D]),
  };
}

// ---------------------------------------------------------------------------------------------
// building blocks (row-major [n, dim] activations in float64)

/** y[n, out] = x[n, in] · Wᵀ + b, W [out, in] (nn.Linear) */
export function linear(x: Float64Array, n: number, inDim: number, w: ArrayLike<number>, outDim: number, b?: ArrayLike<number>, wOffset = 0, bOffset = 0): Float64Array {
  const y = new Float64Array(n * outDim);
  for (let t = 0; t < n; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = wOffset + o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i]! * w[wo + i]!;
      y[t * outDim + o] = s + (b ? b[bOffset + o]! : 0);
    }
  }
  return y;
}

/** nn.LayerNorm over the last dim (biased variance) */
export function layerNorm(x: Float64Array, n: number, dim: number, w: ArrayLike<number>, b: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(n * dim);
  for (let t = 0; t < n; t++) {
    const o = t * dim;
    let m = 0;
    for (let i = 0; i < dim; i++) m += x[o + i]!;
    m /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[o + i]! - m) ** 2;
    v /= dim;
    const r = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < dim; i++) y[o + i] = (x[o + i]! - m) * r * w[i]! + b[i]!;
  }
  return y;
}

/**
 * Scaled dot-product attention of q [nq, H·d] over k, v [nk, H·d] per head (no mask), softmax in float64;
 * returns [nq, H·d] with the heads concatenated (as view(…).transpose(1, 2) … reshape in the HF code).
 */
export function attention(q: Float64Array, nq: number, k: Float64Array, v: Float64Array, nk: number, heads: number, d: number): Float64Array {
  const W = heads * d;
  const out = new Float64Array(nq * W);
  const scale = 1 / Math.sqrt(d);
  const s = new Float64Array(nk);
  for (let h = 0; h < heads; h++) {
    const ho = h * d;
    for (let i = 0; i < nq; i++) {
      const qo = i * W + ho;
      let mx = -Infinity;
      for (let j = 0; j < nk; j++) {
        const ko = j * W + ho;
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[qo + e]! * k[ko + e]!;
        s[j] = dot * scale;
        if (s[j]! > mx) mx = s[j]!;
      }
      let sum = 0;
      for (let j = 0; j < nk; j++) {
        s[j] = Math.exp(s[j]! - mx);
        sum += s[j]!;
      }
      const oo = i * W + ho;
      for (let j = 0; j < nk; j++) {
        const p = s[j]! / sum;
        const vo = j * W + ho;
        for (let e = 0; e < d; e++) out[oo + e] += p * v[vo + e]!;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// position helpers (as the HF code computes them)

/** float32 values of torch.arange(start, end, step) (CPU: element i = start + i·step in double, then float32) */
function torchArangeF32(start: number, end: number, step: number): Float32Array {
  const n = Math.ceil((end - start) / step);
  const out = new Float32Array(Math.max(0, n));
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return out;
}

/** torch.bucketize(x, boundaries, right=True): the number of boundaries ≤ x */
function bucketizeRight(x: number, boundaries: Float32Array): number {
  let c = 0;
  while (c < boundaries.length && boundaries[c]! <= x) c++;
  return c;
}

/** MiniCPMVisionEmbeddings' position ids for an nh × nw patch grid (S patches per side of the position table) */
export function navitPositionIds(nh: number, nw: number, S: number): Int32Array {
  const boundaries = torchArangeF32(1 / S, 1.0, 1 / S);
  // 1 / nb_patches (an int tensor) is a float32 tensor in torch
  const fh = torchArangeF32(0, 1 - 1e-6, Math.fround(1 / nh));
  const fw = torchArangeF32(0, 1 - 1e-6, Math.fround(1 / nw));
  if (fh.length !== nh || fw.length !== nw) throw new Error(`navitPositionIds: arange gave ${fh.length}×${fw.length} for ${nh}×${nw}`);
  const ids = new Int32Array(nh * nw);
  for (let i = 0; i < nh; i++) {
    const bh = bucketizeRight(fh[i]!, boundaries);
    for (let j = 0; j < nw; j++) ids[i * nw + j] = bh * S + bucketizeRight(fw[j]!, boundaries);
  }
  return ids;
}

/** get_2d_sincos_pos_embed(D, (70, 70))[:nh, :nw] reshaped (nh·nw, D), numpy float32 steps */
export function resamplerPosEmbed(D: number, nh: number, nw: number): Float64Array {
  const f = Math.fround;
  const quarter = D / 4;
  const omega = new Float32Array(quarter);
  for (let k = 0; k < quarter; k++) omega[k] = f(1 / f(10000 ** f(k / (D / 2 / 2))));
  const out = new Float64Array(nh * nw * D);
  for (let h = 0; h < nh; h++) {
    for (let w = 0; w < nw; w++) {
      const o = (h * nw + w) * D;
      for (let k = 0; k < quarter; k++) {
        const xw = f(w * omega[k]!);
        const xh = f(h * omega[k]!);
        out[o + k] = f(Math.sin(xw));
        out[o + quarter + k] = f(Math.cos(xw));
        out[o + 2 * quarter + k] = f(Math.sin(xh));
        out[o + 3 * quarter + k] = f(Math.cos(xh));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the forward pass

export interface VisionForwardOptions {
  numerics?: VisionNumerics;
}

/**
 * The image embeddings MiniCPM-V feeds its LLM for one slice: `pixels` planar [3][H][W] (normalised, e.g.
 * mtmd.ts clipPixels), H and W multiples of the patch size. Returns [queryNum, embedDim] row-major.
 */
export function minicpmvVisionForward(w: MinicpmvVisionWeights, cfg: MinicpmvVisionConfig, pixels: Float32Array, H: number, W: number, opts: VisionForwardOptions = {}): Float64Array {
  const num = opts.numerics ?? GGML_CPU_NUMERICS;
  const p = cfg.patch;
  if (H % p || W % p) throw new Error(`image ${W}x${H} is not a multiple of the patch size ${p}`);
  if (pixels.length !== 3 * H * W) throw new Error(`pixels: ${pixels.length} values for 3×${H}×${W}`);
  const nh = H / p;
  const nw = W / p;
  const n = nh * nw;
  const V = cfg.visionHidden;
  const r16 = (x: number): number => fromF16(toF16(x));
  const px = num.patchF16 ? Float32Array.from(pixels, r16) : pixels;
  const kern = num.patchF16 ? Float32Array.from(w.patchW, r16) : w.patchW;

  // patch embedding (Conv2d, kernel = stride = p) + learned position embedding
  const pos = navitPositionIds(nh, nw, cfg.patchesPerSide);
  let h: Float64Array = new Float64Array(n * V);
  const K = 3 * p * p;
  const patchVec = new Float64Array(K);
  for (let i = 0; i < nh; i++) {
    for (let j = 0; j < nw; j++) {
      for (let c = 0; c < 3; c++) for (let ky = 0; ky < p; ky++) for (let kx = 0; kx < p; kx++) patchVec[(c * p + ky) * p + kx] = px[c * H * W + (i * p + ky) * W + (j * p + kx)]!;
      const t = i * nw + j;
      const pe = pos[t]! * V;
      for (let o = 0; o < V; o++) {
        let s = 0;
        const ko = o * K;
        for (let e = 0; e < K; e++) s += kern[ko + e]! * patchVec[e]!;
        h[t * V + o] = s + w.patchB[o]! + w.posEmb[pe + o]!;
      }
    }
  }

  const gelu = num.geluF16Table ? ggmlGeluTable : geluTanh;
  const hd = V / cfg.visionHeads;
  for (const L of w.layers) {
    const x = layerNorm(h, n, V, L.ln1w, L.ln1b, cfg.visionEps);
    const q = linear(x, n, V, L.q, V, L.qb);
    const k = linear(x, n, V, L.k, V, L.kb);
    const v = linear(x, n, V, L.v, V, L.vb);
    const a = linear(attention(q, n, k, v, n, cfg.visionHeads, hd), n, V, L.o, V, L.ob);
    for (let i = 0; i < h.length; i++) h[i] += a[i]!;
    const x2 = layerNorm(h, n, V, L.ln2w, L.ln2b, cfg.visionEps);
    const f1 = linear(x2, n, V, L.fc1, cfg.visionFfn, L.fc1b);
    for (let i = 0; i < f1.length; i++) f1[i] = gelu(f1[i]!);
    const f2 = linear(f1, n, cfg.visionFfn, L.fc2, V, L.fc2b);
    for (let i = 0; i < h.length; i++) h[i] += f2[i]!;
  }
  h = layerNorm(h, n, V, w.postW, w.postB, cfg.visionEps);

  // resampler
  const D = cfg.embedDim;
  const Q = cfg.queryNum;
  const xkv = layerNorm(linear(h, n, V, w.kvProj, D), n, D, w.lnKvw, w.lnKvb, cfg.resamplerEps);
  const q0 = layerNorm(Float64Array.from(w.query), Q, D, w.lnQw, w.lnQb, cfg.resamplerEps);
  const pe = resamplerPosEmbed(D, nh, nw);
  const kin = new Float64Array(n * D);
  for (let i = 0; i < kin.length; i++) kin[i] = xkv[i]! + pe[i]!;
  const qp = linear(q0, Q, D, w.inProjW, D, w.inProjB, 0, 0);
  const kp = linear(kin, n, D, w.inProjW, D, w.inProjB, D * D, D);
  const vp = linear(xkv, n, D, w.inProjW, D, w.inProjB, 2 * D * D, 2 * D);
  const att = linear(attention(qp, Q, kp, vp, n, cfg.resamplerHeads, D / cfg.resamplerHeads), Q, D, w.outProjW, D, w.outProjB);
  const post = layerNorm(att, Q, D, w.lnPostw, w.lnPostb, cfg.resamplerEps);
  // x @ proj
  const y = new Float64Array(Q * D);
  for (let t = 0; t < Q; t++) {
    for (let i = 0; i < D; i++) {
      const xi = post[t * D + i]!;
      const po = i * D;
      const yo = t * D;
      for (let j = 0; j < D; j++) y[yo + j] += xi * w.proj[po + j]!;
    }
  }
  return y;
}
