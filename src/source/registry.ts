/**
 * The scheme registry: every quantization scheme ggufy decodes, by `quant_method`, and every worker
 * decoder, by id. This is the one place that names schemes; the generic code (checkpoint, pipeline,
 * workers, encode, dequantize, verify, inspect) reaches them only through DECODERS and decodeEncoded.
 */
import { GgufyError } from "../errors.js";
import type { DecoderFactory, EncodedRows, SchemeDecoder } from "./types.js";
import { SourceCheckpoint, type OpenOptions } from "./checkpoint.js";
import { bnbDecoder, BNB4_DECODER } from "./schemes/bnb.js";
import { gptqDecoder, GPTQ_DECODER } from "./schemes/gptq.js";
import { fp8Decoder, FP8_DECODER } from "./schemes/fp8.js";
import { awqDecoder, AWQ_DECODER } from "./schemes/awq.js";
import { compressedTensorsDecoder, CT_PACK_DECODER, CT_INT8_DECODER } from "./schemes/compressed-tensors.js";

export interface Scheme {
  /** quant_method values it handles */
  readonly methods: readonly string[];
  readonly open: DecoderFactory;
  /** its worker decoders */
  readonly decoders: readonly SchemeDecoder[];
}

export const SCHEMES: readonly Scheme[] = [
  { methods: bnbDecoder.methods!, open: bnbDecoder, decoders: [BNB4_DECODER] },
  { methods: gptqDecoder.methods!, open: gptqDecoder, decoders: [GPTQ_DECODER] },
  { methods: fp8Decoder.methods!, open: fp8Decoder, decoders: [FP8_DECODER] },
  { methods: awqDecoder.methods!, open: awqDecoder, decoders: [AWQ_DECODER] },
  { methods: compressedTensorsDecoder.methods!, open: compressedTensorsDecoder, decoders: [CT_PACK_DECODER, CT_INT8_DECODER] },
];

/** The decoders the converter, dequantize, verify and inspect open checkpoints with, in order of preference. */
export const DECODERS: DecoderFactory[] = SCHEMES.map((s) => s.open);

const BY_ID = new Map<string, SchemeDecoder>(SCHEMES.flatMap((s) => s.decoders.map((d) => [d.id, d] as const)));

/** The worker decoder of encoded rows, by its id. */
function decoderOf(enc: EncodedRows): SchemeDecoder {
  const d = BY_ID.get(enc.scheme);
  if (!d) throw new GgufyError("E_UNSUPPORTED_QUANT", `no decoder for encoded rows of scheme '${enc.scheme}' (known: ${[...BY_ID.keys()].join(", ")})`);
  return d;
}

/** Decode rows a scheme read encoded (in a worker, or inline), by the scheme decoder's id. */
export function decodeEncoded(enc: EncodedRows, out?: Float32Array): Float32Array {
  const d = decoderOf(enc);
  const v = d.decode(enc, out);
  if (v.length !== enc.count) throw new Error(`internal: ${enc.scheme} decoder returned ${v.length} values, expected ${enc.count}`);
  return v;
}

/** Open a model folder with every registered scheme. */
export function openSource(dir: string, opts: OpenOptions = {}): Promise<SourceCheckpoint> {
  return SourceCheckpoint.open(dir, DECODERS, opts);
}

/**
 * Values [v0, v0 + m) of encoded rows, into `out`, or undefined when the scheme decodes only whole
 * chunks (SchemeDecoder.decodeRange).
 */
export function decodeEncodedRange(enc: EncodedRows, v0: number, m: number, out: Float32Array): Float32Array | undefined {
  const d = decoderOf(enc);
  if (!d.decodeRange) return undefined;
  if (v0 < 0 || m < 0 || v0 + m > enc.count) throw new RangeError(`internal: ${enc.scheme} values [${v0}, ${v0 + m}) outside ${enc.count}`);
  const v = d.decodeRange(enc, v0, m, out);
  if (v.length !== m) throw new Error(`internal: ${enc.scheme} decoder returned ${v.length} values, expected ${m}`);
  return v;
}

/** true when values [v0, v0 + m) of encoded rows are certainly finite without a scan (SchemeDecoder.rangeFinite) */
export function encodedRangeFinite(enc: EncodedRows, v0: number, m: number): boolean {
  return decoderOf(enc).rangeFinite?.(enc, v0, m) === true;
}
