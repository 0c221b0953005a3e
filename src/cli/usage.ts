/**
 * Every usage text of the command line, and the option tables more than one command shares. Nothing
 * here imports code: `ggufy --help` (src/cli/main.ts) prints these without loading any command.
 */

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


export const LORA_USAGE = `  --lora DIR             merge a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) into the
                         base as it is read: W + S·(alpha/r)·B·A in float64, rounded once; repeatable
  --lora-scale S         the factor S of the --lora before it (default 1)`;


export const VERIFY_USAGE = `verify options (ggufy verify <file.gguf> <model-dir>):
  --outtype T            the type the file was converted to (default: from general.file_type)
  --mmproj-type T, --pure, --output-tensor-type T, --token-embedding-type T, --tensor-type REGEX=T,
  --leave-output-tensor  as given to convert, when the file was made with them
  --imatrix FILE, --include-weights NAME, --exclude-weights NAME  as given to convert: the plan uses the imatrix
                         and the report adds the importance-weighted relative RMSE ("w rel RMSE")
  --minicpmv-version N   as given to convert (MiniCPM-V: the clip.minicpmv_version the pair was converted as)
  --exact                also quantize the source again and compare bytes
  --lora DIR [--lora-scale S]  the adapters given to convert --lora (repeatable): check the merged file
  --json                 machine-readable report
  --quiet                only the verdict`;


export const DEQUANTIZE_USAGE = `dequantize options:
  --outdir DIR           output folder (required)
  --dtype T              bf16 | f16 | f32 | auto (default: config.json torch_dtype); an explicit dtype
                         also casts the other floating-point tensors
  --max-shard-size S     largest shard, e.g. 5GB (default), 500MB, 2GiB
  --dry-run              print the shards and tensors without reading weights
  --json                 machine-readable --dry-run
  --force                replace an existing output folder
${LORA_USAGE}
  --quiet                no progress or summary`;


export const CONVERT_LORA_USAGE = `convert-lora options (ggufy convert-lora <adapter-dir> --base <base-model-dir>):
  --base DIR             the base model folder the adapter was trained on (config.json and the
                         checkpoint's tensor names; plain, bitsandbytes, GPTQ … — weights are not read)
  --outtype T            f32 (default) | f16 | bf16 | q8_0 | auto (bf16 or f16 after the adapter's dtype)
  --outfile PATH         output file or folder (default: <name>-<TYPE>-LoRA.gguf in the adapter folder)
  --model-name NAME, --metadata FILE.json, --override-kv KEY=TYPE:VALUE   as for convert
  --dry-run              print the tensors (and what is done to them) without writing
  --json                 machine-readable output
  --force                overwrite an existing output
  --quiet                no progress or summary`;

export const COMMANDS = `usage:
  ggufy convert <model-dir> [--outtype TYPE] [--outfile PATH] [options]
  ggufy inspect <file.gguf|file.safetensors|model-dir> [--json]
  ggufy verify <file.gguf> <model-dir> [--outtype TYPE] [--json] [--exact]
  ggufy dequantize <bnb-model-dir> --outdir DIR [--dtype bf16|f16|f32|auto] [--max-shard-size 5GB]
  ggufy convert-lora <adapter-dir> --base <base-model-dir> [--outtype f32|f16|bf16|q8_0|auto] [--outfile PATH]
  ggufy --version
  ggufy <command> --help`;

export const CONVERT_OPTIONS = `convert options:
  --outtype T            f32 | f16 | bf16 | q8_0 | auto (default) or a llama-quantize preset:
                         Q4_K_M Q4_K_S Q5_K_M Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q3_K_S Q3_K_M Q3_K_L Q2_K IQ4_NL IQ4_XS F16 BF16 F32
  --outfile PATH         output file ({ftype} is replaced by the type)
  --mmproj-outfile PATH  vision projector output (multimodal models)
  --mmproj-type T        f16 (default) | f32 | q8_0
  --minicpmv-version N   MiniCPM-V: convert as this clip.minicpmv_version (2 = 2.5, 3 = 2.6, 4 = o-2.6, 5 = 4.0, 6 = 4.5), overriding config.json (warns)
  --pure                 no k-quant mixture: the preset's type for every quantizable tensor
  --output-tensor-type T, --token-embedding-type T, --tensor-type REGEX=T (repeatable), --leave-output-tensor
  --imatrix FILE         importance matrix from llama-imatrix (GGUF or legacy .dat), as llama-quantize --imatrix;
                         also allows Q2_K_S
  --include-weights NAME, --exclude-weights NAME  use the imatrix only for tensors whose name contains NAME
                         (repeatable; not together)
  --model-name NAME      general.name
  --metadata FILE.json   general.* overrides with llama.cpp's key names ("general.name", "general.tags" …)
  --override-kv KEY=TYPE:VALUE  set a metadata key (TYPE: int, float, bool, str); repeatable
  --split-max-size N     split the output into parts of at most N bytes of tensors (500M, 2G …)
  --split-max-tensors N  split the output into parts of at most N tensors
  --no-tensor-first-split  the first part holds only the metadata
  --vocab-only           only the tokenizer and metadata
${LORA_USAGE}
  --pre NAME             BPE pre-tokenizer name (llama-bpe, qwen2, gpt-2 …) instead of the one read from tokenizer.json
  --print-supported-models  list the architectures ggufy converts
  --dry-run              print the plan (names, shapes, types, bytes) without reading weights
  --json                 machine-readable output: the plan with --dry-run, else the files written; both with "warnings"
  --threads N            worker threads (default: number of cores; capped at min(4 × cores, 64))
  --allow-nonfinite      pass NaN/Inf through instead of refusing
  --force                overwrite existing outputs
  --quiet                no progress or summary
  --debug                stack traces on errors
  --help, -h             this help
${HUB_USAGE}`;

export const INSPECT_OPTIONS = `inspect options (ggufy inspect <file.gguf|file.safetensors|model-dir>):
  --json                 machine-readable output
  --full                 whole arrays (tokens, merges …) instead of their length and first items`;

export const USAGE = `${COMMANDS}

${CONVERT_OPTIONS}

${INSPECT_OPTIONS}

${VERIFY_USAGE}

${DEQUANTIZE_USAGE}

${CONVERT_LORA_USAGE}`;

/** `ggufy <command> --help`: the command's own usage line and options. */
export const COMMAND_HELP: Record<string, string> = {
  convert: `usage: ggufy convert <model-dir> [--outtype TYPE] [--outfile PATH] [options]\n\n${CONVERT_OPTIONS}`,
  inspect: `usage: ggufy inspect <file.gguf|file.safetensors|model-dir> [--json] [--full]\n\n${INSPECT_OPTIONS}`,
  verify: `usage: ggufy verify <file.gguf> <model-dir> [--outtype TYPE] [--json] [--exact]\n\n${VERIFY_USAGE}`,
  "convert-lora": `usage: ggufy convert-lora <adapter-dir> --base <base-model-dir> [--outtype f32|f16|bf16|q8_0|auto] [--outfile PATH]\n\n${CONVERT_LORA_USAGE}`,
  dequantize: `usage: ggufy dequantize <bnb-model-dir> --outdir DIR [--dtype bf16|f16|f32|auto] [--max-shard-size 5GB]\n\n${DEQUANTIZE_USAGE}`,
};
