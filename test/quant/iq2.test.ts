/**
 * IQ2_XXS, IQ2_XS, IQ2_S: ggml_quantize_chunk bytes with a random importance vector (and with NULL where ggml
 * allows it), compared through koffi — see iq-cases.ts. Grids and dequantisation are in iq.test.ts.
 */
import { GGMLType } from "../../src/quant/ggml/index.js";
import { quantizeCases } from "./iq-cases.js";

quantizeCases([GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S]);
