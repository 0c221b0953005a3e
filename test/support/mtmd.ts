/**
 * llama.cpp's multimodal runtime (libmtmd, tools/mtmd) as a test oracle, from the llama.cpp source
 * node-llama-cpp ships (built by test/support/llama-tools.ts; node-llama-cpp's own addon has no mtmd).
 *
 * Two entry points, both in a child process (a GGML_ABORT or a crash in clip.cpp must not take the test
 * runner down; the child's stderr — llama.cpp's and clip.cpp's log — is returned as `log`):
 *
 * 1. `mtmdEncode({ model, mmproj, image, prompt? })` — the image embeddings exactly as llama.cpp hands
 *    them to the LLM. This file, run as a script, loads `libllama.so` + `libmtmd.so` of the tools build
 *    through koffi and calls the public C API of tools/mtmd/mtmd.h:
 *    `llama_model_load_from_file` → `mtmd_init_from_file` (CPU, `flash_attn_type` DISABLED unless
 *    `flashAttn`, no warm-up) → `mtmd_bitmap_init(nx, ny, rgb)` → `mtmd_tokenize` (the prompt with
 *    `mtmd_default_marker()`; default: the marker alone) → for every image chunk `mtmd_encode_chunk` +
 *    `mtmd_get_output_embd` (n_tokens × `llama_model_n_embd_inp` floats, token-major).
 *    It returns every chunk (type, n_tokens, n_pos, the text chunks' token ids, for M-RoPE models each image
 *    token's `mtmd_image_tokens_get_decoder_pos`) and one Float32Array per image chunk.
 *
 *    What pixels the encoder sees. mtmd's public API takes 8-bit RGB only (preprocessed float pixels go
 *    through the internal C++ `mtmd_debug_encode_image`, which discards the embeddings), so tests choose an
 *    image whose preprocessing is the identity resize, and rebuild the encoder input with `clipPixels`:
 *    clip_image_f32::from_u8 (`u / 255.0f`) then normalize (`(x − mean[c]) / std[c]`, float32), the
 *    layout `[3][ny][nx]` (planar, as clip.cpp's inp_raw). When is the resize the identity?
 *    - MiniCPM-V (PROJECTOR_TYPE_MINICPMV, mtmd_image_preprocessor_llava_uhd, tools/mtmd/mtmd-image.cpp):
 *      an image of exactly clip.vision.image_size × image_size (448 for 2.5/2.6/o-2.6/4.x) is not sliced
 *      (`has_slices` needs a side > image_size), its overview size is image_size × image_size, and
 *      `img_tool::resize` of equal sizes is a plain copy: one image chunk of minicpmv_query_num tokens.
 *      (A smaller image would be upscaled bicubically to image_size; a larger one sliced.) A 2·S × S image
 *      (896×448) gives grid 2×1 and a refined size equal to the image: the overview is resized, but the two
 *      slices are plain S × S crops (left, right) — chunks <image> ov </image><slice> L </slice><slice> R </slice>.
 *    - Qwen2-VL / 2.5-VL (mtmd_image_preprocessor_dyn_size): `calc_size_preserved_ratio` with
 *      align = patch_size · n_merge (28) and the min/max pixel bounds: an image whose sides are multiples of
 *      28 and whose area is within the bounds is kept as it is (copy).
 *    In both, the test must check the chunk's n_tokens is what that geometry gives (it is returned).
 *
 * 2. `mtmdCli({ model, mmproj, image, prompt, nPredict })` — the real `llama-mtmd-cli` single-turn run:
 *    greedy (`--temp 0`), CPU, `-fa off`, `--no-warmup`, a fixed seed, `-n nPredict`, log verbosity 4.
 *    Returns the exit code, stdout/stderr, the generated text (mtmd-cli prints each generated piece on stdout;
 *    its log goes to stderr, where mtmd-helper's "decoding image batch 1/1, n_tokens_batch = N" and
 *    "image decoded" lines show the image went in) and `nEval`, the single-token decodes of the generation,
 *    parsed from `llama_perf_context_print`'s "eval time = … / N runs" line (the last sampled token is not
 *    decoded when it ends the generation). `writePpm` writes the image file (binary P6; stb_image reads it).
 *
 * `testImage(nx, ny)` is the fixed test image (a deterministic pattern with gradients, edges and
 * per-channel differences, so that a transposed or mis-ordered input shows).
 *
 * The struct layouts below are those of the bundled llama.cpp (node-llama-cpp 3.21.1, release v0.4.0:
 * include/llama.h llama_model_params, tools/mtmd/mtmd.h mtmd_context_params / mtmd_input_text /
 * mtmd_decoder_pos); re-check them when the pin moves.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { llamaTool, llamaToolsLibDir } from "./llama-tools.js";

export interface MtmdImage {
  nx: number;
  ny: number;
  /** nx·ny·3 bytes, RGBRGB…, row-major from the top-left */
  rgb: Uint8Array;
}

export interface MtmdEncodeRequest {
  /** the LLM GGUF */
  model: string;
  /** the mmproj GGUF */
  mmproj: string;
  image: MtmdImage;
  /** the text around the image; must contain `<__media__>` (mtmd_default_marker) once. Default: the marker alone. */
  prompt?: string;
  /** threads for the encoder (default 2) */
  threads?: number;
  /** flash attention in the vision encoder (default false: clip.cpp's FA path casts K/V to F16) */
  flashAttn?: boolean;
  /** mtmd_context_params.image_min_tokens / image_max_tokens (default: from the GGUF) */
  imageMinTokens?: number;
  imageMaxTokens?: number;
  /**
   * Names of encoder graph nodes (clip.cpp's `cb(cur, name, il)` names, e.g. "ffn_up_b-0") whose F32 values to
   * copy out while the image chunks are encoded, through mtmd_context_params.cb_eval (ggml_backend_sched's eval
   * callback: asked per node, then called with the computed tensor). Observing a node does not change its value.
   */
  capture?: string[];
}

/** a captured encoder node: ggml's ne[] (ne[0] fastest) and its F32 values, contiguous */
export interface MtmdCapturedTensor {
  ne: number[];
  data: Float32Array;
}

export type MtmdChunkType = "text" | "image" | "audio";

export interface MtmdChunk {
  type: MtmdChunkType;
  nTokens: number;
  /** mtmd_input_chunk_get_n_pos */
  nPos: number;
  /** text chunks: their token ids */
  tokens?: number[];
  /** image chunks of M-RoPE models: mtmd_image_tokens_get_decoder_pos(…, 0, i) for every token, as [t, x, y] */
  decoderPos?: [number, number, number][];
}

export interface MtmdEncodeResult {
  /** llama_model_n_embd_inp: the width of every embedding row */
  nEmbd: number;
  useMrope: boolean;
  chunks: MtmdChunk[];
  /** one per image chunk, in chunk order: nTokens × nEmbd floats, token-major */
  embeddings: Float32Array[];
  /** the nodes asked for in `capture`, by name (the last image chunk's value when several chunks are encoded) */
  captured: Record<string, MtmdCapturedTensor>;
  /** the child's stderr (llama.cpp / clip.cpp log) */
  log: string;
}

interface WireEncodeRequest extends Omit<MtmdEncodeRequest, "image"> {
  image: { nx: number; ny: number; rgb: string };
  libDir: string;
}

interface WireEncodeAnswer {
  nEmbd?: number;
  useMrope?: boolean;
  chunks?: MtmdChunk[];
  embeddings?: string[];
  captured?: Record<string, { ne: number[]; data: string }>;
  error?: string;
}

const here = fileURLToPath(import.meta.url);
const ANSWER = "@@mtmd-answer@@ ";

/** Image embeddings from llama.cpp's multimodal runtime (see the file header). Rejects with the child's log on any failure. */
export async function mtmdEncode(req: MtmdEncodeRequest): Promise<MtmdEncodeResult> {
  const { image } = req;
  if (image.rgb.length !== image.nx * image.ny * 3) throw new Error(`mtmdEncode: ${image.rgb.length} bytes for a ${image.nx}x${image.ny} RGB image`);
  const libDir = llamaToolsLibDir();
  const wire: WireEncodeRequest = {
    ...req,
    image: { nx: image.nx, ny: image.ny, rgb: Buffer.from(image.rgb.buffer, image.rgb.byteOffset, image.rgb.byteLength).toString("base64") },
    libDir,
  };
  const { code, signal, stdout, stderr } = await run(process.execPath, [here], JSON.stringify(wire), {});
  const line = stdout.split("\n").find((l) => l.startsWith(ANSWER));
  if (!line) throw new Error(`mtmd child exited with ${signal ?? code} and no answer:\n${stderr.slice(-6000)}`);
  const a = JSON.parse(line.slice(ANSWER.length)) as WireEncodeAnswer;
  if (a.error) throw new Error(`mtmd: ${a.error}\n${stderr.slice(-6000)}`);
  return {
    nEmbd: a.nEmbd!,
    useMrope: a.useMrope!,
    chunks: a.chunks!,
    embeddings: a.embeddings!.map((b64) => {
      const b = Buffer.from(b64, "base64");
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    }),
    captured: Object.fromEntries(Object.entries(a.captured ?? {}).map(([k, v]) => {
      const b = Buffer.from(v.data, "base64");
      return [k, { ne: v.ne, data: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) }];
    })),
    log: stderr,
  };
}

export interface MtmdCliRequest {
  model: string;
  mmproj: string;
  /** an image file (PNG/JPEG/BMP/PPM: stb_image) */
  image: string;
  /** the user message; mtmd-cli puts the image marker in front when it has none, then applies the GGUF's chat template */
  prompt: string;
  /** tokens to generate (default 8) */
  nPredict?: number;
  threads?: number;
  /** more llama-mtmd-cli arguments */
  extraArgs?: string[];
  /** kill after this many ms (default 300 000) */
  timeoutMs?: number;
}

export interface MtmdCliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** what llama-mtmd-cli printed as the generated text (pieces, trimmed of the trailing newlines) */
  text: string;
  /** tokens generated and decoded ("eval time = … / N runs"), or undefined when the line is missing */
  nEval: number | undefined;
  /** "prompt eval time = … / N tokens" (the text tokens decoded; image embeddings are decoded by mtmd's helper) */
  nPromptEval: number | undefined;
  /** the argument vector used */
  args: string[];
}

/** Run llama-mtmd-cli once (single turn, greedy, CPU). Resolves whatever the exit status; the caller asserts. */
export async function mtmdCli(req: MtmdCliRequest): Promise<MtmdCliResult> {
  const bin = llamaTool("llama-mtmd-cli");
  const args = [
    "-m", req.model, "--mmproj", req.mmproj, "--image", req.image, "-p", req.prompt,
    "-n", String(req.nPredict ?? 8), "--temp", "0", "--seed", "1", "-t", String(req.threads ?? 2),
    "-c", "2048", "-fa", "off", "--no-warmup", "--no-mmproj-offload", "-ngl", "0",
    // verbosity 4: the info lines (mtmd's "image decoded", llama_perf_context_print) are printed at it
    "-lv", "4",
    ...(req.extraArgs ?? []),
  ];
  const r = await run(bin, args, undefined, { timeoutMs: req.timeoutMs ?? 300_000 });
  const perf = (re: RegExp): number | undefined => {
    const m = re.exec(r.stderr) ?? re.exec(r.stdout);
    return m ? Number(m[1]) : undefined;
  };
  return {
    ...r,
    text: r.stdout.replace(/\n+$/, "").replace(/^\n+/, ""),
    nEval: perf(/llama_perf_context_print:\s+eval time\s*=.*\/\s*(\d+) runs/),
    nPromptEval: perf(/llama_perf_context_print:\s+prompt eval time\s*=.*\/\s*(\d+) tokens/),
    args,
  };
}

/** Write an RGB image as binary PPM (P6, maxval 255), which stb_image (mtmd-helper) reads. */
export async function writePpm(file: string, image: MtmdImage): Promise<void> {
  const head = Buffer.from(`P6\n${image.nx} ${image.ny}\n255\n`, "ascii");
  await writeFile(file, Buffer.concat([head, Buffer.from(image.rgb.buffer, image.rgb.byteOffset, image.rgb.byteLength)]));
}

/**
 * The fixed test image: R a horizontal ramp, G a vertical ramp, B a checkerboard of 16-pixel squares mixed with
 * a hash of (x, y) — every channel different, not symmetric under transposition or flips.
 */
export function testImage(nx: number, ny: number): MtmdImage {
  const rgb = new Uint8Array(nx * ny * 3);
  for (let y = 0; y < ny; y++) {
    for (let x = 0; x < nx; x++) {
      const o = (y * nx + x) * 3;
      rgb[o] = Math.round((255 * x) / Math.max(1, nx - 1));
      rgb[o + 1] = Math.round((255 * y) / Math.max(1, ny - 1));
      const h = (Math.imul(x + 1, 0x9e3779b1) ^ Math.imul(y + 7, 0x85ebca6b)) >>> 0;
      rgb[o + 2] = (((x >> 4) + (y >> 4)) & 1 ? 192 : 48) + ((h >>> 27) - 16);
    }
  }
  return { nx, ny, rgb };
}

/**
 * The encoder input clip.cpp builds from an 8-bit image that needs no resize: clip_image_f32::from_u8
 * (`(float) u / 255.0f`) and normalize (`(x − mean[c]) / std[c]`), each step in float32 (mean/std are the
 * GGUF's float32 clip.vision.image_mean / image_std), as planar `[3][ny][nx]`.
 */
export function clipPixels(image: MtmdImage, mean: readonly number[], std: readonly number[]): Float32Array {
  const { nx, ny, rgb } = image;
  const out = new Float32Array(3 * nx * ny);
  const m = mean.map(Math.fround);
  const s = std.map(Math.fround);
  for (let i = 0; i < nx * ny; i++) {
    for (let c = 0; c < 3; c++) {
      const x = Math.fround(rgb[i * 3 + c]! / 255);
      out[c * nx * ny + i] = Math.fround(Math.fround(x - m[c]!) / s[c]!);
    }
  }
  return out;
}

/** max |a − b| / max |b| over all elements (the embeddings' error measure used by the tests) */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxRelError: lengths ${a.length} and ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= num)) num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : num / den;
}

// ---------------------------------------------------------------------------------------------
// process helper

function run(
  cmd: string,
  args: string[],
  stdin: string | undefined,
  opts: { timeoutMs?: number },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

// ---------------------------------------------------------------------------------------------
// child side: libllama + libmtmd through koffi

async function childMain(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString("utf8")) as WireEncodeRequest;
  let answer: WireEncodeAnswer;
  try {
    answer = await encodeInChild(req);
  } catch (e) {
    answer = { error: (e as Error).stack ?? String(e) };
  }
  process.stdout.write("\n" + ANSWER + JSON.stringify(answer) + "\n");
}

async function encodeInChild(req: WireEncodeRequest): Promise<WireEncodeAnswer> {
  const { default: koffi } = await import("koffi");
  const dir = req.libDir;
  // load order: ggml, then llama, then mtmd (each finds the previous through its rpath as well)
  const ggml = koffi.load(path.join(dir, "libggml.so"));
  const ggmlBase = koffi.load(path.join(dir, "libggml-base.so"));
  const llama = koffi.load(path.join(dir, "libllama.so"));
  const mtmd = koffi.load(path.join(dir, "libmtmd.so"));

  // include/llama.h struct llama_model_params (v0.4.0)
  const ModelParams = koffi.struct("ggufy_llama_model_params", {
    devices: "void *",
    tensor_buft_overrides: "void *",
    n_gpu_layers: "int32_t",
    split_mode: "int",
    load_mode: "int",
    lazy_mode: "int",
    main_gpu: "int32_t",
    tensor_split: "void *",
    progress_callback: "void *",
    progress_callback_user_data: "void *",
    kv_overrides: "void *",
    vocab_only: "bool",
    check_tensors: "bool",
    use_extra_bufts: "bool",
    no_host: "bool",
    no_alloc: "bool",
    load_mtp: "bool",
  });
  // tools/mtmd/mtmd.h struct mtmd_context_params
  const CtxParams = koffi.struct("ggufy_mtmd_context_params", {
    use_gpu: "bool",
    device: "void *",
    print_timings: "bool",
    n_threads: "int",
    image_marker: "void *",
    media_marker: "void *",
    flash_attn_type: "int",
    warmup: "bool",
    image_min_tokens: "int",
    image_max_tokens: "int",
    cb_eval: "void *",
    cb_eval_user_data: "void *",
    batch_max_tokens: "int32_t",
    progress_callback: "void *",
    progress_callback_user_data: "void *",
  });
  const InputText = koffi.struct("ggufy_mtmd_input_text", {
    text: "void *",
    text_len: "size_t",
    add_special: "bool",
    parse_special: "bool",
  });
  const DecoderPos = koffi.struct("ggufy_mtmd_decoder_pos", { t: "uint32_t", x: "uint32_t", y: "uint32_t", z: "uint32_t" });

  const backendLoadAll = ggml.func("void ggml_backend_load_all(void)");
  const backendInit = llama.func("void llama_backend_init(void)");
  const modelDefault = llama.func("ggufy_llama_model_params llama_model_default_params(void)");
  const modelLoad = llama.func("void *llama_model_load_from_file(const char *path, ggufy_llama_model_params params)");
  const modelFree = llama.func("void llama_model_free(void *model)");
  const nEmbdInp = llama.func("int32_t llama_model_n_embd_inp(void *model)");

  const defaultMarker = mtmd.func("const char *mtmd_default_marker(void)");
  const ctxDefault = mtmd.func("ggufy_mtmd_context_params mtmd_context_params_default(void)");
  const initFromFile = mtmd.func("void *mtmd_init_from_file(const char *fname, void *model, ggufy_mtmd_context_params params)");
  const mtmdFree = mtmd.func("void mtmd_free(void *ctx)");
  const supportVision = mtmd.func("bool mtmd_support_vision(void *ctx)");
  const useMrope = mtmd.func("bool mtmd_decode_use_mrope(void *ctx)");
  const bitmapInit = mtmd.func("void *mtmd_bitmap_init(uint32_t nx, uint32_t ny, const uint8_t *data)");
  const bitmapFree = mtmd.func("void mtmd_bitmap_free(void *bitmap)");
  const chunksInit = mtmd.func("void *mtmd_input_chunks_init(void)");
  const chunksSize = mtmd.func("size_t mtmd_input_chunks_size(void *chunks)");
  const chunksGet = mtmd.func("void *mtmd_input_chunks_get(void *chunks, size_t idx)");
  const chunksFree = mtmd.func("void mtmd_input_chunks_free(void *chunks)");
  const chunkType = mtmd.func("int mtmd_input_chunk_get_type(void *chunk)");
  const chunkTokensText = mtmd.func("void *mtmd_input_chunk_get_tokens_text(void *chunk, _Out_ size_t *n)");
  const chunkTokensImage = mtmd.func("void *mtmd_input_chunk_get_tokens_image(void *chunk)");
  const chunkNTokens = mtmd.func("size_t mtmd_input_chunk_get_n_tokens(void *chunk)");
  const chunkNPos = mtmd.func("int32_t mtmd_input_chunk_get_n_pos(void *chunk)");
  const decoderPos = mtmd.func("ggufy_mtmd_decoder_pos mtmd_image_tokens_get_decoder_pos(void *image_tokens, int32_t pos_0, size_t i)");
  const tokenize = mtmd.func("int32_t mtmd_tokenize(void *ctx, void *output, const ggufy_mtmd_input_text *text, void *bitmaps, size_t n_bitmaps)");
  const encodeChunk = mtmd.func("int32_t mtmd_encode_chunk(void *ctx, void *chunk)");
  const outputEmbd = mtmd.func("void *mtmd_get_output_embd(void *ctx)");

  backendLoadAll();
  backendInit();
  const mp = modelDefault() as Record<string, unknown>;
  mp.n_gpu_layers = 0;
  const model = modelLoad(req.model, mp);
  if (!model) throw new Error(`llama_model_load_from_file failed for ${req.model}`);
  const nEmbd = Number(nEmbdInp(model));

  const cp = ctxDefault() as Record<string, unknown>;
  cp.use_gpu = false;
  cp.print_timings = false;
  cp.n_threads = req.threads ?? 2;
  cp.flash_attn_type = req.flashAttn ? 1 : 0; // LLAMA_FLASH_ATTN_TYPE_ENABLED / _DISABLED
  cp.warmup = false;
  if (req.imageMinTokens !== undefined) cp.image_min_tokens = req.imageMinTokens;
  if (req.imageMaxTokens !== undefined) cp.image_max_tokens = req.imageMaxTokens;
  const captured: Record<string, { ne: number[]; data: string }> = {};
  let captureError: string | undefined;
  if (req.capture?.length) {
    // ggml/include/ggml-backend.h ggml_backend_sched_eval_callback; ggml.h struct ggml_tensor: type (int) at 0,
    // buffer at 8, int64_t ne[4] at 16
    const want = new Set(req.capture);
    const getName = ggmlBase.func("const char *ggml_get_name(const void *t)");
    const nbytes = ggmlBase.func("size_t ggml_nbytes(const void *t)");
    const isContiguous = ggmlBase.func("bool ggml_is_contiguous(const void *t)");
    const tensorGet = ggmlBase.func("void ggml_backend_tensor_get(const void *t, _Out_ uint8_t *data, size_t offset, size_t size)");
    const EvalCb = koffi.proto("bool ggufy_eval_cb(void *t, bool ask, void *user_data)");
    const cb = koffi.register((t: unknown, ask: boolean): boolean => {
      const name = getName(t) as string;
      if (ask) return want.has(name);
      if (!want.has(name)) return true;
      const type = koffi.decode(t, 0, "int32_t") as number;
      const ne = (koffi.decode(t, 16, "int64_t", 4) as ArrayLike<number | bigint>);
      if (type !== 0 || !isContiguous(t)) {
        captureError ??= `captured node ${name} is not a contiguous F32 tensor (type ${type})`;
        return false; // cancels the graph compute; reported below
      }
      const buf = new Uint8Array(Number(nbytes(t)));
      tensorGet(t, buf, 0, buf.length);
      captured[name] = { ne: Array.from(ne, Number), data: Buffer.from(buf).toString("base64") };
      return true;
    }, koffi.pointer(EvalCb));
    cp.cb_eval = cb;
    cp.cb_eval_user_data = null;
  }
  const ctx = initFromFile(req.mmproj, model, cp);
  if (!ctx) throw new Error(`mtmd_init_from_file failed for ${req.mmproj}`);
  if (!supportVision(ctx)) throw new Error(`${req.mmproj}: mtmd_support_vision is false`);
  const mrope = Boolean(useMrope(ctx));

  const rgb = Buffer.from(req.image.rgb, "base64");
  const bitmap = bitmapInit(req.image.nx, req.image.ny, rgb);
  if (!bitmap) throw new Error("mtmd_bitmap_init failed");
  const marker = defaultMarker() as string;
  const prompt = req.prompt ?? marker;
  const textBytes = Buffer.from(prompt + "\0", "utf8");
  const textMem = koffi.alloc("uint8_t", textBytes.length);
  koffi.encode(textMem, koffi.array("uint8_t", textBytes.length), [...textBytes]);
  const bitmaps = koffi.alloc("void *", 1);
  koffi.encode(bitmaps, koffi.array("void *", 1), [bitmap]);
  const list = chunksInit();
  const rc = Number(tokenize(ctx, list, { text: textMem, text_len: textBytes.length - 1, add_special: false, parse_special: true }, bitmaps, 1));
  if (rc !== 0) throw new Error(`mtmd_tokenize returned ${rc} (1: markers ≠ bitmaps, 2: preprocessing error)`);

  const outChunks: MtmdChunk[] = [];
  const embeddings: string[] = [];
  const n = Number(chunksSize(list));
  for (let i = 0; i < n; i++) {
    const ch = chunksGet(list, i);
    const t = Number(chunkType(ch));
    const type: MtmdChunkType = t === 0 ? "text" : t === 1 ? "image" : "audio";
    const nTokens = Number(chunkNTokens(ch));
    const c: MtmdChunk = { type, nTokens, nPos: Number(chunkNPos(ch)) };
    if (type === "text") {
      const nOut = [0];
      const p = chunkTokensText(ch, nOut);
      const k = Number(nOut[0]);
      c.tokens = k ? Array.from(koffi.decode(p, "int32_t", k) as ArrayLike<number>) : [];
    } else {
      if (type === "image" && mrope) {
        const it = chunkTokensImage(ch);
        const pos: [number, number, number][] = [];
        for (let j = 0; j < nTokens; j++) {
          const d = decoderPos(it, 0, j) as { t: number; x: number; y: number };
          pos.push([d.t, d.x, d.y]);
        }
        c.decoderPos = pos;
      }
      const erc = Number(encodeChunk(ctx, ch));
      if (captureError) throw new Error(captureError);
      if (erc !== 0) throw new Error(`mtmd_encode_chunk returned ${erc} for chunk ${i}`);
      const p = outputEmbd(ctx);
      if (!p) throw new Error("mtmd_get_output_embd returned NULL");
      const bytes = Buffer.from(koffi.view(p, nTokens * nEmbd * 4)).toString("base64");
      embeddings.push(bytes);
    }
    outChunks.push(c);
  }
  chunksFree(list);
  bitmapFree(bitmap);
  mtmdFree(ctx);
  modelFree(model);
  for (const name of req.capture ?? []) if (!captured[name]) throw new Error(`no encoder node named ${name} was computed`);
  return { nEmbd, useMrope: mrope, chunks: outChunks, embeddings, captured };
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  childMain().catch((e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + "\n");
    process.exit(1);
  });
}
