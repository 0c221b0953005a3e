/**
 * Adapter from bitsandbytes modules to the converter's TensorDecoder (src/convert/source.ts): register with
 * `DECODERS.push(bnbDecoder)`. Each quantized weight becomes a logical float tensor under its own name;
 * absmax / quant maps / quant_state / SCB / weight_format are consumed.
 */
import type { DecoderFactory, SourceTensor, TensorDecoder } from "../../convert/source.js";
import { detectBnb, describeBnb } from "./detect.js";
import { decodeBnbRows, readBnb4Encoded } from "./rows.js";

export const bnbDecoder: DecoderFactory = async (st, config, dir): Promise<TensorDecoder | undefined> => {
  const mods = await detectBnb(st.tensors, (n) => st.read(n), config, dir);
  if (mods.size === 0) return undefined;
  const read = (n: string, off: number, len: number) => st.read(n, off, len);
  const tensors: SourceTensor[] = [...mods.values()].map((m) => ({ name: m.weight, shape: m.shape, dtype: m.dtype, encoding: describeBnb(m), rowLength: m.cols, rows: m.rows }));
  const consumed = new Set<string>();
  for (const m of mods.values()) for (const k of m.auxKeys) consumed.add(k);
  return {
    tensors: () => tensors,
    consumedKeys: () => consumed,
    readRows: (name, row0, nRows) => {
      const m = mods.get(name);
      if (!m) throw new Error(`bnbDecoder: ${name} is not a bitsandbytes module`);
      return decodeBnbRows(m, read, row0, nRows);
    },
    readEncoded: async (name, row0, nRows) => {
      const m = mods.get(name);
      return m ? readBnb4Encoded(m, read, row0, nRows) : undefined;
    },
  };
};
