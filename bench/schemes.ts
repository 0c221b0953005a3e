/**
 * Scheme throughput end to end: the same Llama-shaped checkpoint (stories260K's tokenizer, random
 * N(0, 0.02²) weights, --hidden/--ffn/--layers, default 1024/2816/4) stored as bitsandbytes NF4
 * (blocksize 64), GPTQ 4-bit (g128, act-order, asymmetric) and FP8 E4M3 (128×128 blocks) by the fixture
 * encoders, then converted with `convert` (--threads, default 2): NF4 → Q4_K_M, GPTQ-4bit → Q4_K_M,
 * FP8-block → Q8_0. Prints wall seconds, parameters per second and each scheme's ratio to NF4 → Q4_K_M.
 * Every scheme decodes in the worker threads (its rows travel encoded: EncodedRows).
 *
 *   npx tsc -p . && node dist/bench/schemes.js [--hidden 1024] [--ffn 2816] [--layers 4] [--threads 2]
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { convert } from "../src/index.js";
import { Rng } from "../fixtures/rng.js";
import { bnbModuleTensors, bnbQuantizationConfig } from "../fixtures/bnb.js";
import { gptqEncode, gptqModuleTensors, gptqQuantizationConfig } from "../fixtures/gptq.js";
import { fp8EncodeWeight, fp8ModuleTensors } from "../fixtures/fp8.js";
import { SafetensorsCheckpoint, writeSafetensors, type StTensor } from "../src/formats/safetensors/index.js";
import { readFile, writeFile, mkdir, copyFile } from "node:fs/promises";
import { STORIES_DIR } from "../fixtures/quantized-stories.js";

function arg(name: string, d: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
}

/** A plain F16 Llama of the requested size with stories260K's tokenizer (the encoders read it back). */
async function writePlain(dir: string, hidden: number, ffn: number, layers: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const rng = new Rng(1);
  const heads = hidden / 64;
  const kv = (heads / 2) * 64;
  const t: StTensor[] = [];
  const f32 = (name: string, shape: number[], norm = false): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = norm ? rng.normals(n, 1, 0.05) : rng.normals(n, 0, 0.02);
    t.push({ name, dtype: "F32", shape, data: new Uint8Array(v.buffer) });
  };
  f32("model.embed_tokens.weight", [512, hidden]);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    f32(p + "self_attn.q_proj.weight", [hidden, hidden]);
    f32(p + "self_attn.k_proj.weight", [kv, hidden]);
    f32(p + "self_attn.v_proj.weight", [kv, hidden]);
    f32(p + "self_attn.o_proj.weight", [hidden, hidden]);
    f32(p + "mlp.gate_proj.weight", [ffn, hidden]);
    f32(p + "mlp.up_proj.weight", [ffn, hidden]);
    f32(p + "mlp.down_proj.weight", [hidden, ffn]);
    f32(p + "input_layernorm.weight", [hidden], true);
    f32(p + "post_attention_layernorm.weight", [hidden], true);
  }
  f32("model.norm.weight", [hidden], true);
  await writeSafetensors(path.join(dir, "model.safetensors"), t.sort((a, b) => (a.name < b.name ? -1 : 1)));
  const cfg = JSON.parse(await readFile(path.join(STORIES_DIR(), "config.json"), "utf8")) as Record<string, unknown>;
  Object.assign(cfg, { hidden_size: hidden, intermediate_size: ffn, num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: heads / 2 });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(cfg));
  for (const f of ["tokenizer.model", "tokenizer_config.json"]) await copyFile(path.join(STORIES_DIR(), f), path.join(dir, f));
}

async function main(): Promise<void> {
  const hidden = arg("hidden", 1024);
  const ffn = arg("ffn", 2816);
  const layers = arg("layers", 4);
  const threads = arg("threads", 2);
  const root = await mkdtemp(path.join(os.tmpdir(), "ggufy-bench-schemes-"));
  try {
    const plain = path.join(root, "plain");
    await writePlain(plain, hidden, ffn, layers);
    const st = await SafetensorsCheckpoint.open(plain);
    const params = [...st.tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    await st.close();
    const rng = new Rng(2);
    // each scheme's encoder over every Linear of the plain model
    const build = async (dir: string, cfg: Record<string, unknown>, q: (m: string, w: Float32Array, r: number, c: number) => StTensor[]): Promise<void> => {
      const s = await SafetensorsCheckpoint.open(plain);
      const out: StTensor[] = [];
      for (const n of s.names()) {
        const info = s.get(n)!;
        const b = await s.read(n);
        const v = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
        if (/proj\.weight$/.test(n)) out.push(...q(n.replace(/\.weight$/, ""), v, info.shape[0]!, info.shape[1]!));
        else out.push({ name: n, dtype: "F32", shape: [...info.shape], data: new Uint8Array(v.buffer) });
      }
      await s.close();
      await mkdir(dir, { recursive: true });
      await writeSafetensors(path.join(dir, "model.safetensors"), out.sort((a, b) => (a.name < b.name ? -1 : 1)));
      const c = JSON.parse(await readFile(path.join(plain, "config.json"), "utf8")) as Record<string, unknown>;
      c["quantization_config"] = cfg;
      await writeFile(path.join(dir, "config.json"), JSON.stringify(c));
      for (const f of ["tokenizer.model", "tokenizer_config.json"]) await copyFile(path.join(plain, f), path.join(dir, f));
    };
    const runs = [
      { id: "NF4 → Q4_K_M", out: "Q4_K_M", cfg: bnbQuantizationConfig({ method: "nf4", doubleQuant: false, quantStorage: "uint8", computeDtype: "float32", skipModules: null }) as Record<string, unknown>, q: (m: string, w: Float32Array, r: number, c: number) => bnbModuleTensors(`${m}.weight`, w, [r, c], { method: "nf4", blocksize: 64 }) },
      { id: "GPTQ-4bit g128 act-order → Q4_K_M", out: "Q4_K_M", cfg: gptqQuantizationConfig({ bits: 4, groupSize: 128, descAct: true, sym: false, format: "gptq" }), q: (m: string, w: Float32Array, r: number, c: number) => gptqModuleTensors(m, gptqEncode(w, r, c, { bits: 4, groupSize: 128, descAct: true, sym: false, format: "gptq", rng }), r, c, 4) },
      { id: "FP8-block 128x128 → Q8_0", out: "Q8_0", cfg: { quant_method: "fp8", fmt: "e4m3", activation_scheme: "dynamic", weight_block_size: [128, 128] }, q: (m: string, w: Float32Array, r: number, c: number) => fp8ModuleTensors(m, fp8EncodeWeight(w, r, c, "e4m3", { block: [128, 128] }), r, c, "e4m3") },
    ];
    const secs: number[] = [];
    console.log(`Llama hidden ${hidden}, ffn ${ffn}, ${layers} layers: ${(params / 1e6).toFixed(1)} M parameters; --threads ${threads}; load ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    for (const r of runs) {
      const dir = path.join(root, r.id.replace(/\W+/g, "-"));
      await build(dir, r.cfg, r.q);
      const t0 = performance.now();
      await convert({ input: dir, outtype: r.out, outfile: path.join(root, "out.gguf"), force: true, threads });
      const s = (performance.now() - t0) / 1000;
      secs.push(s);
      console.log(`${r.id.padEnd(36)} ${s.toFixed(2)} s  ${(params / s / 1e6).toFixed(1)} M params/s  ×${(secs[0]! / s).toFixed(2)} of NF4 → Q4_K_M speed`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
