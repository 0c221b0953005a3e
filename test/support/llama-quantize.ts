/**
 * The real llama-quantize as a test oracle: `llama_model_quantize` and the type-only helpers of
 * llama-ext.h (`llama_quant_model_from_metadata`, `llama_quant_init`, `llama_quant_compute_types`,
 * `llama_quant_tensor_allows_quantization`) of node-llama-cpp's bundled `libllama.v0.4.0.so`,
 * called through koffi.
 *
 * Every call runs in a child process (this file, run as a script, with one JSON request on stdin
 * and one JSON answer on stdout): llama.cpp logs every tensor to stderr (captured here and returned
 * as `log`), and a GGML_ABORT would otherwise take the test runner down with it.
 *
 * Struct layouts are those of llama.cpp v0.4.0 `include/llama.h` / `src/llama-ext.h` /
 * `ggml/include/ggml.h` (node-llama-cpp 3.21.1); they must be re-checked when the pin moves.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** GGML_TYPE_COUNT in v0.4.0: "not set" for output_tensor_type / token_embedding_type */
export const GGML_TYPE_COUNT = 43;

export interface LlamaQuantizeParams {
  /** llama_ftype */
  ftype: number;
  /** threads (default 2) */
  nthread?: number;
  /** --output-tensor-type (ggml type id) */
  outputTensorType?: number;
  /** --token-embedding-type (ggml type id) */
  tokenEmbeddingType?: number;
  /** --pure */
  pure?: boolean;
  /** --leave-output-tensor (quantize_output_tensor = false) */
  leaveOutputTensor?: boolean;
  /** --tensor-type PATTERN=TYPE, in order (llama-quantize's CLI lower-cases PATTERN first; this does not) */
  tensorTypes?: readonly (readonly [string, number])[];
  allowRequantize?: boolean;
}

export interface ModelDesc {
  architecture: string;
  nEmbd: number;
  nFf: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nExpert?: number;
  nEmbdHeadK?: number;
  nEmbdHeadV?: number;
}

export interface TypesRequest {
  model: ModelDesc;
  params: LlamaQuantizeParams;
  /** every tensor of the model (also the 1-D ones: they count for the categories), in the order llama-quantize visits them */
  tensors: readonly { name: string; ne: readonly number[] }[];
}

export interface TypesResult {
  /** llama_tensor_get_type per tensor (the tensor's own type, F32, when not quantizable) */
  types: number[];
  /** llama_quant_tensor_allows_quantization per tensor */
  allows: boolean[];
}

/** types requests as sent: tensor lists deduplicated (the same array object is sent once) */
interface WireTypes {
  tensorSets: { name: string; ne: readonly number[] }[][];
  requests: { model: ModelDesc; params: LlamaQuantizeParams; set: number }[];
}

type Request =
  | { kind: "quantize"; input: string; output: string; params: LlamaQuantizeParams }
  | ({ kind: "types" } & WireTypes);

interface Answer {
  rc?: number;
  results?: TypesResult[];
  error?: string;
}

const here = fileURLToPath(import.meta.url);

function runChild(req: Request): Promise<{ answer: Answer; log: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [here], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const log = Buffer.concat(err).toString("utf8");
      const text = Buffer.concat(out).toString("utf8").trim();
      if (code !== 0 || !text) {
        reject(new Error(`llama-quantize child exited with ${signal ?? code}:\n${log.slice(-4000)}`));
        return;
      }
      resolve({ answer: JSON.parse(text.split("\n").at(-1)!) as Answer, log });
    });
    child.stdin.end(JSON.stringify(req));
  });
}

/** Run the real llama_model_quantize(input, output, params). Resolves with its log; rejects when it returns non-zero. */
export async function llamaQuantize(input: string, output: string, params: LlamaQuantizeParams): Promise<{ log: string }> {
  const { answer, log } = await runChild({ kind: "quantize", input, output, params });
  if (answer.error) throw new Error(`${answer.error}\n${log.slice(-4000)}`);
  if (answer.rc !== 0) throw new Error(`llama_model_quantize returned ${answer.rc}:\n${log.slice(-4000)}`);
  return { log };
}

/** llama.cpp's own per-tensor type choice (llama_quant_compute_types on a mock model), without any tensor data. */
export async function llamaComputeTypes(requests: readonly TypesRequest[]): Promise<TypesResult[]> {
  const sets = new Map<TypesRequest["tensors"], number>();
  const wire: WireTypes = { tensorSets: [], requests: [] };
  for (const r of requests) {
    let set = sets.get(r.tensors);
    if (set === undefined) {
      set = wire.tensorSets.length;
      sets.set(r.tensors, set);
      wire.tensorSets.push(r.tensors.map((t) => ({ name: t.name, ne: t.ne })));
    }
    wire.requests.push({ model: r.model, params: r.params, set });
  }
  const { answer, log } = await runChild({ kind: "types", ...wire });
  if (answer.error) throw new Error(`${answer.error}\n${log.slice(-4000)}`);
  return answer.results!;
}

// ---------------------------------------------------------------------------------------------
// child side

async function childMain(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Request;
  const { default: koffi } = await import("koffi");
  const { llamaBinDir } = await import("./ggml-oracle.js");
  const dir = llamaBinDir();
  const ggml = koffi.load(path.join(dir, "libggml-base.so"));
  const llama = koffi.load(path.join(dir, "libllama.v0.4.0.so"));

  const Params = koffi.struct("llama_model_quantize_params", {
    nthread: "int32_t",
    ftype: "int",
    output_tensor_type: "int",
    token_embedding_type: "int",
    allow_requantize: "bool",
    quantize_output_tensor: "bool",
    only_copy: "bool",
    pure: "bool",
    keep_split: "bool",
    dry_run: "bool",
    imatrix: "void *",
    kv_overrides: "void *",
    tt_overrides: "void *",
    prune_layers: "void *",
    max_buf_size: "size_t",
  });
  // struct llama_model_tensor_override { const char * pattern; enum ggml_type type; }
  const TTO = koffi.struct("llama_model_tensor_override", { pattern: "void *", type: "int" });

  const backendInit = llama.func("void llama_backend_init(void)");
  const defaultParams = llama.func("llama_model_quantize_params llama_model_quantize_default_params(void)");
  const quantize = llama.func("uint32_t llama_model_quantize(const char *fname_inp, const char *fname_out, const llama_model_quantize_params *params)");
  backendInit();

  /** persistent (never freed: the child exits) C string */
  const cString = (s: string): unknown => {
    const bytes = Buffer.from(s + "\0", "utf8");
    const p = koffi.alloc("uint8_t", bytes.length);
    koffi.encode(p, koffi.array("uint8_t", bytes.length), [...bytes]);
    return p;
  };

  /** persistent params, with a persistent tt_overrides array */
  const makeParams = (q: LlamaQuantizeParams): unknown => {
    const p = defaultParams() as Record<string, unknown>;
    p.ftype = q.ftype;
    p.nthread = q.nthread ?? 2;
    p.output_tensor_type = q.outputTensorType ?? GGML_TYPE_COUNT;
    p.token_embedding_type = q.tokenEmbeddingType ?? GGML_TYPE_COUNT;
    p.pure = q.pure ?? false;
    p.quantize_output_tensor = !(q.leaveOutputTensor ?? false);
    p.allow_requantize = q.allowRequantize ?? false;
    if (q.tensorTypes?.length) {
      const n = q.tensorTypes.length + 1;
      const arr = koffi.alloc(TTO, n);
      koffi.encode(arr, koffi.array(TTO, n), [...q.tensorTypes.map(([pattern, type]) => ({ pattern: cString(pattern), type })), { pattern: null, type: GGML_TYPE_COUNT }]);
      p.tt_overrides = arr;
    }
    const mem = koffi.alloc(Params, 1);
    koffi.encode(mem, Params, p);
    return mem;
  };

  let answer: Answer;
  try {
    if (req.kind === "quantize") {
      const rc = Number(quantize(req.input, req.output, makeParams(req.params) as never));
      answer = { rc };
    } else {
      const Desc = koffi.struct("llama_quant_model_desc", {
        architecture: "const char *",
        n_embd: "uint32_t",
        n_ff: "uint32_t",
        n_layer: "uint32_t",
        n_head: "uint32_t",
        n_head_kv: "uint32_t",
        n_expert: "uint32_t",
        n_embd_head_k: "uint32_t",
        n_embd_head_v: "uint32_t",
      });
      const InitParams = koffi.struct("ggml_init_params", { mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });
      const ggmlInit = ggml.func("void *ggml_init(ggml_init_params params)");
      const ggmlFree = ggml.func("void ggml_free(void *ctx)");
      const newTensor = ggml.func("void *ggml_new_tensor(void *ctx, int type, int n_dims, const int64_t *ne)");
      const setName = ggml.func("void *ggml_set_name(void *tensor, const char *name)");
      // C++ linkage (llama-ext.h): mangled names
      const modelFromMetadata = llama.func("_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc", "void *", [koffi.pointer(Desc)]);
      const quantInit = llama.func("_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params", "void *", ["void *", "void *"]);
      const quantFree = llama.func("_Z16llama_quant_freeP19quantize_state_impl", "void", ["void *"]);
      const allowsQ = llama.func("_Z38llama_quant_tensor_allows_quantizationPK19quantize_state_implPK11ggml_tensor", "bool", ["void *", "void *"]);
      const computeTypes = llama.func("_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem", "void", ["void *", "int", "void *", koffi.out(koffi.pointer("int")), "size_t"]);
      const modelFree = llama.func("void llama_model_free(void *model)");
      const results: TypesResult[] = [];
      const ctx = ggmlInit({ mem_size: 256 * 1024 * 1024, mem_buffer: null, no_alloc: true });
      const sets = req.tensorSets.map((tensors) => {
        const ptrs = tensors.map((t) => {
          const ne = BigInt64Array.from(t.ne.map((d) => BigInt(d)));
          const p = newTensor(ctx, 0, ne.length, ne);
          setName(p, t.name);
          return p;
        });
        const arr = koffi.alloc("void *", ptrs.length);
        koffi.encode(arr, koffi.array("void *", ptrs.length), ptrs);
        return { ptrs, arr };
      });
      const allowsCache = new Map<string, boolean[]>();
      for (const r of req.requests) {
        const m = r.model;
        const headDim = Math.trunc(m.nEmbd / m.nHead);
        const model = modelFromMetadata({
          architecture: m.architecture, n_embd: m.nEmbd, n_ff: m.nFf, n_layer: m.nLayer, n_head: m.nHead, n_head_kv: m.nHeadKv,
          n_expert: m.nExpert ?? 0, n_embd_head_k: m.nEmbdHeadK ?? headDim, n_embd_head_v: m.nEmbdHeadV ?? headDim,
        });
        if (!model) throw new Error(`llama_quant_model_from_metadata failed for ${m.architecture}`);
        const params = makeParams(r.params);
        const qs = quantInit(model, params);
        const { ptrs, arr } = sets[r.set]!;
        const n = ptrs.length;
        const types = new Array<number>(n).fill(-1);
        computeTypes(qs, r.params.ftype, arr, types, n);
        // depends on the names, dims and quantize_output_tensor only
        const key = `${r.set}:${r.params.leaveOutputTensor ?? false}`;
        let allows = allowsCache.get(key);
        if (!allows) allowsCache.set(key, (allows = ptrs.map((p) => Boolean(allowsQ(qs, p)))));
        results.push({ types, allows });
        quantFree(qs);
        modelFree(model);
      }
      ggmlFree(ctx);
      answer = { results };
    }
  } catch (e) {
    answer = { error: (e as Error).stack ?? String(e) };
  }
  process.stdout.write("\n" + JSON.stringify(answer) + "\n");
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  childMain().catch((e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + "\n");
    process.exit(1);
  });
}

/**
 * Write an all-zero F32 GGUF (a sparse file: header, then a hole) for the real loader: enough for
 * llama_model_quantize, which reads hparams but neither the vocabulary nor the tensor list's
 * completeness. Quantizing zeros is fast, so real type choices of big layer counts are cheap.
 */
export async function writeZeroGguf(file: string, kvs: readonly import("../../src/formats/gguf/types.js").GGUFKV[], tensors: readonly { name: string; ne: readonly number[] }[]): Promise<void> {
  const { encodeGgufHeader } = await import("../../src/formats/gguf/writer.js");
  const fs = await import("node:fs/promises");
  const h = encodeGgufHeader(kvs, tensors.map((t) => ({ name: t.name, ne: t.ne, type: 0 })));
  await fs.writeFile(file, h.bytes);
  await fs.truncate(file, h.fileSize);
}
