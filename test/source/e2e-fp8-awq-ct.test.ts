/** FP8 (E4M3 block 128, E5M2 per-channel), AWQ GEMM and compressed-tensors pack-quantized end to end (see e2e-support.ts). */
import { fp8Variant, awqVariant, ctVariant, runVariants } from "./e2e-support.js";

runVariants([
  fp8Variant("fp8-block128", "e4m3", { block: [128, 128] }, true, /fp8 e4m3 block 128x128 \(f32 weight_scale_inv\)/),
  awqVariant("awq-gemm-g32", 32, true, /awq 4-bit g32 gemm asym \(f16 scales\)/),
  ctVariant("ct-pack-int4-asym", true, /compressed-tensors pack-quantized int4 g32 asym \(bf16 scales\)/),
  fp8Variant("fp8-e5m2-channel", "e5m2", "channel", false, /fp8 e5m2 per-channel \(f32 weight_scale\)/),
]);
