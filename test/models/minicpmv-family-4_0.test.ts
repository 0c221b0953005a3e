/** MiniCPM-V family, release 4.0: tiny bf16 and int4 checkpoints convert to the exact LLM + mmproj pair (test/support/minicpmv-family.ts). */
import { familyTests } from "../support/minicpmv-family.js";

familyTests("4.0");
