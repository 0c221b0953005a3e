/** MiniCPM-V family in llama.cpp's multimodal runtime, release 2.5 (test/support/mtmd-minicpmv-family.ts). */
import { mtmdFamilyTests } from "../support/mtmd-minicpmv-family.js";

mtmdFamilyTests("2.5");
