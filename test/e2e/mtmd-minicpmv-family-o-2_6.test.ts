/** MiniCPM-V family in llama.cpp's multimodal runtime, release o-2.6 (test/support/mtmd-minicpmv-family.ts). */
import { mtmdFamilyTests } from "../support/mtmd-minicpmv-family.js";

mtmdFamilyTests("o-2.6");
