/**
 * The npm package as a user gets it (issue 12): `npm pack` on a copy of the project's sources (the
 * `prepack` script builds dist/src), the tarball installed into an empty project with `--offline` (ggufy
 * has no runtime dependency, so no registry is involved), then — from that project only, never the source
 * tree — `npx ggufy --version`, `npx ggufy convert` on the bundled stories260K checkpoint (the GGUF read
 * back with @huggingface/gguf and compared byte for byte with the in-tree library's output), a script
 * that imports the library API from "ggufy", and a TypeScript consumer type-checked against the shipped
 * typings.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdir, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { gguf } from "@huggingface/gguf";
import { convert } from "../../src/index.js";
import { scratchDir } from "../../fixtures/qwen2.js";
import { repoRoot } from "../../fixtures/paths.js";
import { STORIES260K_HF_DIR } from "../support/reference-llama.js";

const run = promisify(execFile);
const root = repoRoot();
const pkgJson = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as { name: string; version: string; devDependencies: Record<string, string>; dependencies?: Record<string, string> };

let tmp = "";
let app = "";
let tarball = "";
/** A clean environment: no npm_* variables of a surrounding `npm test`, no repository node_modules/.bin on PATH, a private npm cache. */
let env: NodeJS.ProcessEnv = {};

async function sh(cmd: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(cmd, args, { cwd, env, maxBuffer: 64 << 20 });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed: ${x.message}\n${x.stdout ?? ""}\n${x.stderr ?? ""}`);
  }
}

before(async () => {
  tmp = await scratchDir("ggufy-package-");
  env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  env["PATH"] = (process.env["PATH"] ?? "").split(path.delimiter).filter((p) => !p.startsWith(path.join(root, "node_modules"))).join(path.delimiter);
  env["npm_config_cache"] = path.join(tmp, "npm-cache");
  env["npm_config_update_notifier"] = "false";
  // the project's sources and build configuration only: prepack has to build dist/src itself
  const proj = path.join(tmp, "project");
  await mkdir(proj);
  for (const f of ["package.json", "tsconfig.json", "tsconfig.build.json", "README.md", "src", "bin"]) await cp(path.join(root, f), path.join(proj, f), { recursive: true });
  await symlink(path.join(root, "node_modules"), path.join(proj, "node_modules"), "dir"); // typescript for prepack
  const packed = await sh("npm", ["pack", "--json", "--pack-destination", tmp], proj);
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(tmp, info[0]!.filename);
  assert.equal(info[0]!.filename, `${pkgJson.name}-${pkgJson.version}.tgz`);
  app = path.join(tmp, "app");
  await mkdir(app);
  await sh("npm", ["init", "-y"], app);
  await sh("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], app);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test("the tarball holds bin, dist/src's .js and .d.ts, README and package.json — no tests, fixtures, sources or maps", async () => {
  const { stdout } = await sh("tar", ["-tzf", tarball], tmp);
  const files = stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
  assert.ok(files.includes("bin/ggufy.js"));
  assert.ok(files.includes("dist/src/index.js") && files.includes("dist/src/index.d.ts"));
  assert.ok(files.includes("dist/src/convert/worker.js"), "the worker thread's entry");
  assert.ok(files.includes("README.md") && files.includes("package.json"));
  const stray = files.filter((f) => !(f === "README.md" || f === "package.json" || f.startsWith("bin/") || /^dist\/src\/.*\.(js|d\.ts)$/.test(f)));
  assert.deepEqual(stray, []);
  // every src module is shipped compiled, with its typings
  const { stdout: srcList } = await sh("find", ["src", "-name", "*.ts"], root);
  for (const f of srcList.split("\n").filter(Boolean)) {
    const js = "dist/" + f.replace(/\.ts$/, ".js");
    assert.ok(files.includes(js) && files.includes(js.replace(/\.js$/, ".d.ts")), js);
  }
});

test("installed offline: only ggufy in node_modules, no dependencies, engines >=20, types point at a shipped file", async () => {
  assert.deepEqual((await readdir(path.join(app, "node_modules"))).filter((n) => !n.startsWith(".")), ["ggufy"]);
  const installed = JSON.parse(await readFile(path.join(app, "node_modules", "ggufy", "package.json"), "utf8")) as Record<string, unknown>;
  assert.equal(installed["dependencies"], undefined);
  assert.equal((installed["engines"] as Record<string, string>)["node"], ">=20");
  const types = (installed["exports"] as Record<string, Record<string, string>>)["."]!["types"]!;
  await readFile(path.join(app, "node_modules", "ggufy", types)); // exists
  const appPkg = JSON.parse(await readFile(path.join(app, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  assert.match(appPkg.dependencies["ggufy"]!, /^file:/);
});

test("npx ggufy --version, --help and convert from the installed package; the GGUF equals the in-tree library's", async () => {
  const v = await sh("npx", ["--no-install", "ggufy", "--version"], app);
  assert.equal(v.stdout, pkgJson.version + "\n");
  const h = await sh("npx", ["--no-install", "ggufy", "convert", "--help"], app);
  assert.match(h.stdout, /^usage: ggufy convert /);
  const outfile = path.join(app, "stories-q8_0.gguf");
  const c = await sh("npx", ["--no-install", "ggufy", "convert", STORIES260K_HF_DIR(), "--outtype", "q8_0", "--outfile", outfile], app);
  assert.match(c.stdout, new RegExp(`^wrote ${outfile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(47 tensors`));
  const { metadata, tensorInfos } = await gguf(outfile, { allowLocalFile: true });
  assert.equal(metadata["general.architecture"], "llama");
  assert.equal(tensorInfos.length, 47, "5 layers × 9 + token_embd + output_norm (tied output)");
  assert.equal(tensorInfos.find((t) => t.name === "blk.0.attn_q.weight")!.dtype, 8 /* Q8_0 */);
  const ref = path.join(tmp, "ref-q8_0.gguf");
  await convert({ input: STORIES260K_HF_DIR(), outtype: "q8_0", outfile: ref });
  assert.ok((await readFile(outfile)).equals(await readFile(ref)), "the installed CLI writes the same bytes as the source tree's convert()");
});

test("import { convert, plan, readGguf } from \"ggufy\" in the installed project", async () => {
  await writeFile(
    path.join(app, "use.mjs"),
    `import { convert, plan, readGguf, GgufyError } from "ggufy";
const [input, outfile] = process.argv.slice(2);
const p = await plan({ input, outtype: "f16" });
await p.close();
const r = await convert({ input, outtype: "Q4_K_M", outfile });
const g = await readGguf(outfile);
let refused = "";
try { await plan({ input: "/nonexistent-ggufy-model" }); } catch (e) { refused = e instanceof GgufyError ? e.code : "other"; }
console.log(JSON.stringify({ resolved: import.meta.resolve("ggufy"), planned: p.files.map((f) => f.tensors.length), wrote: r.files.map((f) => f.path), warnings: r.warnings, fileType: Number(g.kvs.get("general.file_type").value), tensors: g.tensors.length, refused }));
`,
  );
  const outfile = path.join(app, "lib-Q4_K_M.gguf");
  const { stdout } = await sh(process.execPath, ["use.mjs", STORIES260K_HF_DIR(), outfile], app);
  const r = JSON.parse(stdout) as { resolved: string; planned: number[]; wrote: string[]; warnings: string[]; fileType: number; tensors: number; refused: string };
  assert.ok(r.resolved.startsWith(new URL(`file://${path.join(app, "node_modules", "ggufy")}/`).href), `resolved from the installed package: ${r.resolved}`);
  assert.deepEqual(r.planned, [47]);
  assert.deepEqual(r.wrote, [outfile]);
  assert.deepEqual(r.warnings, []);
  assert.equal(r.fileType, 15, "general.file_type MOSTLY_Q4_K_M");
  assert.equal(r.tensors, 47);
  assert.equal(r.refused, "E_IO");
});

test("the shipped typings type-check a TypeScript consumer (and reject a wrong option)", async () => {
  const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
  const cfg = { compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, skipLibCheck: true, types: [] }, include: ["consumer.ts"] };
  await writeFile(path.join(app, "tsconfig.json"), JSON.stringify(cfg));
  const good = `import { convert, type ConvertOptions, type ConvertResult } from "ggufy";
const opts: ConvertOptions = { input: "m", outtype: "Q4_K_M", splitMaxSize: 2e9 };
export const r: Promise<ConvertResult> = convert(opts);
export const n: Promise<number> = r.then((x) => x.files[0]!.bytes + x.warnings.length);
`;
  await writeFile(path.join(app, "consumer.ts"), good);
  await sh(process.execPath, [tsc, "-p", "."], app);
  await writeFile(path.join(app, "consumer.ts"), good.replace('outtype: "Q4_K_M"', "outtype: 4"));
  await assert.rejects(sh(process.execPath, [tsc, "-p", "."], app), /consumer\.ts.*TS2322/s);
});
