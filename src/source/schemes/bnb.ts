/**
 * bitsandbytes as a checkpoint scheme (detection, validation and the kernels are src/quant/bnb):
 * each quantized weight becomes a logical float tensor under its own name; absmax / quant maps /
 * quant_state / SCB / weight_format are consumed. 4-bit rows travel encoded (packed bytes from
 * floor(elem0 / 2) and the blocks' float32 absmax, the nested absmax already reconstructed on the main
 * thread) and are decoded by `dequantize4bit` in the worker; LLM.int8 rows are decoded where read.
 */
import type { DecoderFactory, EncodedRows, SchemeDecoder, SourceTensor, TensorDecoder } from "../types.js";
import { quantMethodOf } from "../checkpoint.js";
import { detectBnb, describeBnb } from "../../quant/bnb/detect.js";
import { decodeBnbRows, readBnb4Encoded, type Bnb4Encoded } from "../../quant/bnb/rows.js";
import { dequantize4bit, scalesKeepFinite } from "../../quant/bnb/decode.js";

type Bnb4Meta = Omit<Bnb4Encoded, "packed" | "count">;

const open = async (st: Parameters<DecoderFactory>[0], config: Record<string, unknown>, dir: string): Promise<TensorDecoder | undefined> => {
  const method = quantMethodOf(config);
  if (method !== undefined && method !== "bitsandbytes") return undefined; // another scheme's (or unknown: the registry refuses it)
  const mods = await detectBnb(st.tensors, (n) => st.read(n), config, dir);
  if (mods.size === 0) return undefined;
  const read = (n: string, off: number, len: number, into?: Uint8Array) => st.read(n, off, len, into);
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight, shape: m.shape, dtype: m.dtype, encoding: describeBnb(m), rowLength: m.cols, rows: m.rows }));
  const consumed = new Set<string>();
  for (const m of mods.values()) for (const k of m.auxKeys) consumed.add(k);
  return {
    scheme: "bitsandbytes",
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readRows: (name, row0, nRows) => {
      const m = mods.get(name);
      if (!m) throw new Error(`bnbDecoder: ${name} is not a bitsandbytes module`);
      return decodeBnbRows(m, read, row0, nRows);
    },
    readEncoded: async (name, row0, nRows, into): Promise<EncodedRows | undefined> => {
      const m = mods.get(name);
      const e = m ? await readBnb4Encoded(m, read, row0, nRows, into) : undefined;
      if (!e) return undefined;
      const { packed, count, ...meta } = e;
      return { scheme: BNB4_DECODER.id, count, bytes: packed, meta, transfer: [meta.absmax.buffer as ArrayBuffer] };
    },
    modules: function* () {
      for (const m of mods.values()) {
        yield m.kind === "int8"
          ? { tensor: m.weight, scheme: "bitsandbytes", bits: 8, detail: `LLM.int8 row-wise ${m.dtype}`, zeroPoints: "none" }
          : { tensor: m.weight, scheme: "bitsandbytes", bits: 4, groupSize: m.blocksize, zeroPoints: "none", detail: `${m.kind}${m.doubleQuant ? " double-quant" : ""} ${m.dtype}` };
      }
    },
  };
};

/** The DecoderFactory of bitsandbytes checkpoints (quant_method "bitsandbytes", or none and bnb keys). */
export const bnbDecoder: DecoderFactory = Object.assign(open, { methods: ["bitsandbytes"] as const });

/** Worker side: 4-bit NF4/FP4 rows. */
export const BNB4_DECODER: SchemeDecoder = {
  id: "bnb4",
  decode(enc, out) {
    const q = enc.meta as Bnb4Meta;
    return dequantize4bit(enc.bytes, q.elem0, enc.count, q.absmax, q.block0, q.blocksize, q.quantType, q.dtype, out ? out.subarray(0, enc.count) : undefined);
  },
  decodeRange(enc, v0, m, out) {
    // the packed bytes start at byte floor(elem0 / 2); element elem0 + v0 is in byte floor((elem0 + v0) / 2)
    const q = enc.meta as Bnb4Meta;
    const e0 = q.elem0 + v0;
    return dequantize4bit(enc.bytes.subarray(Math.floor(e0 / 2) - Math.floor(q.elem0 / 2)), e0, m, q.absmax, q.block0, q.blocksize, q.quantType, q.dtype, out.subarray(0, m));
  },
  rangeFinite(enc, v0, m) {
    const q = enc.meta as Bnb4Meta;
    return scalesKeepFinite(q.elem0 + v0, m, q.absmax, q.block0, q.blocksize, q.quantType, q.dtype);
  },
};
