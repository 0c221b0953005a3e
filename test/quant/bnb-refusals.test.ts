/**
 * Every refusal: a GgufyError with the right code whose message names the module and the missing or
 * inconsistent part.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { detectBnb } from "../../src/quant/bnb/index.js";
import { GgufyError } from "../../src/errors.js";
import { bnbModuleTensors, memoryCheckpoint, pyJsonDumps, type BnbModuleOptions } from "../../fixtures/bnb.js";
import type { StTensor } from "../../src/formats/safetensors/index.js";

const MOD = "model.layers.2.mlp.gate_proj";
const W = `${MOD}.weight`;

function module(opts: BnbModuleOptions, shape: [number, number] = [8, 96]): StTensor[] {
  const x = new Float32Array(shape[0] * shape[1]).map((_, i) => Math.sin(i * 0.37) * 0.1);
  return bnbModuleTensors(W, x, shape, opts);
}
const without = (ts: StTensor[], name: string) => {
  assert.ok(ts.some((t) => t.name === name), `fixture has ${name}`);
  return ts.filter((t) => t.name !== name);
};
const replace = (ts: StTensor[], name: string, t: Partial<StTensor>) => ts.map((x) => (x.name === name ? { ...x, ...t } : x));
function withJson(ts: StTensor[], kind: string, edit: (j: Record<string, unknown>) => void, newKind = kind): StTensor[] {
  const key = `${W}.quant_state.bitsandbytes__${kind}`;
  const t = ts.find((x) => x.name === key)!;
  const j = JSON.parse(Buffer.from(t.data).toString("utf8")) as Record<string, unknown>;
  edit(j);
  const data = new Uint8Array(Buffer.from(pyJsonDumps(j as never), "utf8"));
  return [...ts.filter((x) => x !== t), { name: `${W}.quant_state.bitsandbytes__${newKind}`, dtype: "U8", shape: [data.length], data }];
}

async function refuses(ts: StTensor[], code: string, parts: (string | RegExp)[], config?: unknown): Promise<void> {
  const mc = memoryCheckpoint(ts);
  await assert.rejects(detectBnb(mc.infos, mc.readSmall, config, "/models/x"), (e: unknown) => {
    assert.ok(e instanceof GgufyError, `GgufyError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `message names '${p}': ${e.message}`);
      else assert.match(e.message, p);
    }
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

test("unknown quant_type (key suffix or JSON field)", async () => {
  const nf4 = module({ method: "nf4" });
  await refuses(withJson(nf4, "nf4", (j) => (j["quant_type"] = "int4"), "int4"), "E_BNB", [MOD, "unknown quant_type 'int4'"]);
  await refuses(withJson(nf4, "nf4", (j) => (j["quant_type"] = "af4")), "E_BNB", [MOD, "unknown quant_type \"af4\""]);
  await refuses(withJson(nf4, "nf4", (j) => (j["quant_type"] = "fp4")), "E_BNB", [MOD, "quant_type 'fp4'", "'__nf4'"]);
});

test("quant_state shape not matching the packed size", async () => {
  const nf4 = module({ method: "nf4" });
  await refuses(withJson(nf4, "nf4", (j) => (j["shape"] = [8, 128])), "E_BNB", [MOD, "shape [8,128]", "needs 512 packed bytes", `'${W}' holds 384`]);
  await refuses(withJson(nf4, "nf4", (j) => (j["shape"] = [8, 64])), "E_BNB", [MOD, "needs 256 packed bytes", "holds 384"]);
  // BF16 quant_storage: the raw byte count is what must match, the element dtype is irrelevant
  const bf = module({ method: "fp4", quantStorage: "bfloat16" });
  await refuses(withJson(bf, "fp4", (j) => (j["shape"] = [9, 96])), "E_BNB", [MOD, "needs 432 packed bytes", "holds 384 (BF16 [192,1])"]);
  await refuses(withJson(nf4, "nf4", (j) => delete j["shape"]), "E_BNB", [MOD, "missing 'shape'"]);
  await refuses(withJson(nf4, "nf4", (j) => (j["dtype"] = "float64")), "E_BNB", [MOD, "dtype \"float64\""]);
  await refuses(withJson(nf4, "nf4", (j) => (j["blocksize"] = 0)), "E_BNB", [MOD, "blocksize 0"]);
  await refuses(withJson(nf4, "nf4", (j) => (j["packing_format_for_cpu"] = true)), "E_BNB", [MOD, 'unknown field "packing_format_for_cpu"']);
  await refuses(without(nf4, W), "E_BNB", [MOD, `packed weight '${W}' is missing`]);
  // hostile values stay short in the message
  const long = withJson(nf4, "nf4", (j) => (j["shape"] = Array.from({ length: 5000 }, () => 1)));
  await refuses(long, "E_BNB", [MOD, /shape \[1,1,1.*…/]);
  const mc = memoryCheckpoint(long);
  const msg = await detectBnb(mc.infos, mc.readSmall).catch((e: Error) => e.message);
  assert.ok(String(msg).length < 600, String(msg));
  const huge = new Uint8Array(70000).fill(0x20);
  huge[0] = 0x7b;
  huge[huge.length - 1] = 0x7d;
  await refuses(replace(nf4, `${W}.quant_state.bitsandbytes__nf4`, { shape: [huge.length], data: huge }), "E_BNB", [MOD, "70000 bytes", "limit"]);
});

test("absmax length or dtype not matching the block count", async () => {
  const nf4 = module({ method: "nf4" }); // 768 values / 64 = 12 blocks
  const abs = nf4.find((t) => t.name === `${W}.absmax`)!;
  await refuses(replace(nf4, `${W}.absmax`, { shape: [11], data: abs.data.subarray(0, 44) }), "E_BNB", [MOD, `'${W}.absmax' has 11 values`, "12 blocks"]);
  await refuses(withJson(nf4, "nf4", (j) => (j["blocksize"] = 128)), "E_BNB", [MOD, "has 12 values", "blocksize 128 has 6 blocks"]);
  await refuses(replace(nf4, `${W}.absmax`, { dtype: "BF16", shape: [24] }), "E_BNB", [MOD, `'${W}.absmax' is BF16`, "expected F32"]);
  const dq = module({ method: "nf4", doubleQuant: true });
  await refuses(replace(dq, `${W}.absmax`, { dtype: "F32", shape: [3] }), "E_BNB", [MOD, "expected U8"]);
  await refuses(without(nf4, `${W}.absmax`), "E_BNB", [MOD, `'${W}.absmax' is missing`]);
  await refuses(without(nf4, `${W}.quant_map`), "E_BNB", [MOD, `'${W}.quant_map' is missing`]);
});

test("a missing nested key (or nested field)", async () => {
  const dq = module({ method: "fp4", doubleQuant: true });
  await refuses(without(dq, `${W}.nested_absmax`), "E_BNB", [MOD, `nested key '${W}.nested_absmax' is missing`]);
  await refuses(without(dq, `${W}.nested_quant_map`), "E_BNB", [MOD, `nested key '${W}.nested_quant_map' is missing`]);
  await refuses(withJson(dq, "fp4", (j) => delete j["nested_offset"]), "E_BNB", [MOD, "no 'nested_offset'"]);
  const na = dq.find((t) => t.name === `${W}.nested_absmax`)!;
  await refuses(replace(dq, `${W}.nested_absmax`, { shape: [2], data: new Uint8Array(8) }), "E_BNB", [MOD, `'${W}.nested_absmax' has 2 values`, "need 1"]);
  assert.equal(na.data.length, 4);
  // nested keys present but the JSON lacks the nested fields
  const plain = module({ method: "fp4" });
  const extra = dq.filter((t) => t.name.includes(".nested_"));
  await refuses([...plain, ...extra], "E_BNB", [MOD, "no 'nested_blocksize'"]);
  // config says double quant but the module has no nested keys
  await refuses(plain, "E_BNB", [MOD, "bnb_4bit_use_double_quant", `'${W}.nested_absmax'`, "missing"], { quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: "fp4", bnb_4bit_use_double_quant: true });
});

test("a 4-bit auxiliary without its quant_state, or a packed weight without one", async () => {
  const nf4 = module({ method: "nf4" });
  await refuses(without(nf4, `${W}.quant_state.bitsandbytes__nf4`), "E_BNB", [MOD, `'${W}.quant_state.bitsandbytes__nf4'`, "incomplete"]);
  const bare = nf4.filter((t) => t.name === W);
  await refuses(bare, "E_BNB", [MOD, "looks like packed 4-bit data", `'${W}.quant_state.bitsandbytes__nf4' is missing`], { quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: "nf4" });
  const k = `${W}.quant_state`;
  await refuses([...nf4, { name: k, dtype: "U8", shape: [2], data: new Uint8Array([123, 125]) }], "E_BNB", [MOD, `'${k}' is not a packed quant state`]);
  await refuses(withJson(nf4, "nf4", () => {}, "fp4").concat(nf4.filter((t) => t.name.endsWith("__nf4"))), "E_BNB", [MOD, "2 quant state keys"]);
});

test("int8 without SCB; non-row weight_format; SCB not matching the rows", async () => {
  const i8 = module({ method: "int8" });
  await refuses(without(i8, `${MOD}.SCB`), "E_BNB", [MOD, `'${MOD}.weight_format'`, `no '${MOD}.SCB'`, "without SCB"]);
  const noFmt = without(without(i8, `${MOD}.SCB`), `${MOD}.weight_format`);
  await refuses(noFmt, "E_BNB", [MOD, `'${MOD}.SCB' is missing`, "without SCB"], { quant_method: "bitsandbytes", load_in_8bit: true });
  for (const [v, name] of [[1, "col32"], [2, "col_turing"], [3, "col_ampere"]] as const) {
    await refuses(replace(i8, `${MOD}.weight_format`, { data: new Uint8Array([v]) }), "E_BNB", [MOD, `weight_format is '${name}'`, "only the 'row' layout"]);
  }
  await refuses(replace(i8, `${MOD}.weight_format`, { data: new Uint8Array([9]) }), "E_BNB", [MOD, "weight_format 9 is unknown"]);
  await refuses(replace(i8, `${MOD}.SCB`, { shape: [4], data: new Uint8Array(16) }), "E_BNB", [MOD, `'${MOD}.SCB' has 4 values`, "8 rows"]);
  await refuses(replace(i8, `${MOD}.SCB`, { dtype: "F16", shape: [16] }), "E_BNB", [MOD, `'${MOD}.SCB' is F16`]);
  await refuses(without(i8, W), "E_BNB", [MOD, `int8 weight '${W}' is missing`]);
});

test("quant_method other than bitsandbytes names the method; config contradicting the keys", async () => {
  const nf4 = module({ method: "nf4" });
  for (const method of ["gptq", "awq", "fp8", "compressed-tensors", "hqq"]) {
    await refuses(nf4, "E_UNSUPPORTED_QUANT", [`quant_method is '${method}'`, `'${method}' checkpoints are not supported`], { quant_method: method, bits: 4 });
    await refuses([], "E_UNSUPPORTED_QUANT", [`'${method}'`], { model_type: "llama", quantization_config: { quant_method: method } });
  }
  await refuses(nf4, "E_BNB", [MOD, "quant state is nf4", "bnb_4bit_quant_type is 'fp4'"], { quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: "fp4" });
  await refuses(nf4, "E_BNB", [MOD, "load_in_8bit", "4-bit nf4"], { quant_method: "bitsandbytes", load_in_8bit: true });
  await refuses(module({ method: "int8" }), "E_BNB", [MOD, "load_in_4bit", "LLM.int8"], { quant_method: "bitsandbytes", load_in_4bit: true });
  // no quantization_config: plain checkpoints give no modules
  const mc = memoryCheckpoint([{ name: "model.norm.weight", dtype: "F32", shape: [4], data: new Uint8Array(16) }]);
  assert.equal((await detectBnb(mc.infos, mc.readSmall, { model_type: "llama", torch_dtype: "float32" })).size, 0);
});

test("errors carry file and tensor", async () => {
  const nf4 = module({ method: "nf4" });
  const mc = memoryCheckpoint(without(nf4, `${W}.absmax`));
  const e = await detectBnb(mc.infos, mc.readSmall, undefined, "/models/x").catch((x: unknown) => x);
  assert.ok(e instanceof GgufyError);
  assert.equal(e.file, "/models/x");
  assert.equal(e.tensor, `${W}.absmax`);
});
