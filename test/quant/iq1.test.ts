/**
 * IQ1_S, IQ1_M: ggml_quantize_chunk bytes with a random importance vector (and with NULL where ggml
 * allows it), compared through koffi — see iq-cases.ts. Grids and dequantisation are in iq.test.ts.
 */
import { GGMLType } from "../../src/quant/ggml/index.js";
import { quantizeCases } from "./iq-cases.js";

quantizeCases([GGMLType.IQ1_S, GGMLType.IQ1_M]);
