/**
 * ggufy's library API. The CLI is a thin layer over these functions.
 */
export { convert, plan, DECODERS, type ConvertOptions, type ConvertResult, type Plan } from "./convert/convert.js";
export type { PlanOptions, PlannedFile, PlannedTensor } from "./convert/plan.js";
export type { ProgressEvent, RunOptions, RunResult, DiskUsage } from "./convert/pipeline.js";
export { diskUsage } from "./convert/pipeline.js";
export { verify, verifyError, ERROR_BOUNDS, type VerifyOptions, type VerifyResult, type VerifyProgress, type TensorCheck, type TypeSummary, type ErrorBound } from "./convert/verify.js";
export { loadMetadata, metadataKvs, parseKvOverride, resolveKvOverride, type ModelMetadata, type KvOverride, type LinkedEntry, type SamplingMetadata } from "./convert/metadata.js";
export { conventionalName, sizeLabel, idToTitle, modelIdComponents, fillTemplatedFilename, type NameParts } from "./convert/naming.js";
export { splitPlannedFile, shardPaths, SPLIT_KEYS, type SplitOptions, type SplitInfo } from "./convert/split.js";
export { inspect, type InspectResult } from "./cli/inspect.js";
export { SourceCheckpoint, type SourceTensor } from "./convert/source.js";
export { dequantize, planDequantize, runDequantize, openCheckpoint, type DequantizeOptions, type DequantizeResult, type DequantizePlan, type DequantizeDtype, type CheckpointTensor, type DecodedCheckpoint, type TensorDtype } from "./convert/dequantize.js";
export { GgufyError, ERROR_CODES, type ErrorCode } from "./errors.js";
export { readGguf, readGgufTensorBytes, type GGUFFile, type GGUFTensorEntry } from "./formats/gguf/reader.js";
export { GGMLType, typeName } from "./quant/ggml/types.js";
export { codecFor } from "./quant/ggml/index.js";
export { MODELS } from "./models/registry.js";
export { LoraMerge, type LoraSpec, type LoraMergeSummary, type LoraMergeEntry } from "./convert/lora/merge.js";
export { openLoraAdapter, matchAdapterToBase, parseLoraConfig, type LoraAdapter, type LoraConfig, type LoraTarget, type LoraSaved, type TensorRef } from "./convert/lora/adapter.js";
export { convertLora, planLora, type ConvertLoraOptions, type ConvertLoraResult, type LoraPlan, type LoraTensorPlan, type LoraOuttype } from "./convert/lora/gguf.js";
