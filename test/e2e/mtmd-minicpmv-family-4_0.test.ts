/** MiniCPM-V family in llama.cpp's multimodal runtime, release 4.0 (test/support/mtmd-minicpmv-family.ts). */
import { mtmdFamilyTests } from "../support/mtmd-minicpmv-family.js";

mtmdFamilyTests("4.0");
