/** The error type itself: codes documented in the README, exit codes, one-line messages, JSON positions. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "../../fixtures/paths.js";
import { ERROR_CODES, GgufyError, brief, jsonErrorDetail, jsonErrorPosition, oneLine, type ErrorCode } from "../../src/errors.js";

test("every error code is documented in the README's Errors section", async () => {
  const readme = await readFile(path.join(repoRoot(), "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Errors"));
  assert.ok(section.length > 0, "README has no Errors section");
  for (const code of Object.keys(ERROR_CODES)) assert.ok(section.includes(`\`${code}\``), `${code} is not in the README`);
  for (const exit of ["| 2 |", "| 3 |", "| 64 |", "| 70 |", "| 130 |"]) assert.ok(section.includes(exit), exit);
});

test("exit codes", () => {
  const exit = (c: ErrorCode): number => new GgufyError(c, "x").exitCode;
  assert.equal(exit("E_INTERRUPTED"), 130);
  assert.equal(exit("E_USAGE"), 64);
  assert.equal(exit("E_VERIFY"), 3);
  for (const c of Object.keys(ERROR_CODES) as ErrorCode[]) if (!["E_INTERRUPTED", "E_USAGE", "E_VERIFY"].includes(c)) assert.equal(exit(c), 2, c);
});

test("messages: code, file, tensor, detail on one printable line", () => {
  const e = new GgufyError("E_ST_DTYPE", "unknown dtype \"X\"\nsecond line", { file: "/m/a\u001b[31m.safetensors", tensor: "w\r\n\u2028x" });
  assert.equal(e.message, "E_ST_DTYPE: /m/a\\u001b[31m.safetensors: tensor 'w\\u000d\\n\\u2028x': unknown dtype \"X\"\\nsecond line");
  assert.equal(e.detail, "unknown dtype \"X\"\nsecond line");
  assert.equal(e.file, "/m/a\u001b[31m.safetensors");
  assert.ok(oneLine("x".repeat(5000)).length < 2100);
});

test("brief renders hostile JSON values without recursion or unbounded length", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(brief(deep), "[[[[[…]]]]]");
  assert.equal(brief(undefined), "(missing)");
  assert.ok(brief(Array(100_000).fill(1)).length <= 81);
  assert.equal(brief({ a: 1, b: 2 }), '{"a","b"}');
});

test("JSON error positions", () => {
  const cases: [string, string | undefined][] = [
    ['{"a":1}', undefined],
    ['{"a":1,}', "line 1, column 8 (character 7)"],
    ['{\n  "a": x\n}', "line 2, column 8 (character 9)"],
    ["[1,2", "line 1, column 5 (character 4)"],
    ['{"a":"\\q"}', "line 1, column 8 (character 7)"],
    ["", "line 1, column 1 (character 0)"],
    ["{} x", "line 1, column 4 (character 3)"],
    ["[".repeat(50_000), "line 1, column 50001 (character 50000)"],
  ];
  for (const [text, want] of cases) {
    assert.equal(jsonErrorPosition(text), want, text.slice(0, 20));
    let ok = true;
    try {
      JSON.parse(text);
    } catch {
      ok = false;
    }
    assert.equal(ok, want === undefined, `scanner and JSON.parse disagree on ${text.slice(0, 20)}`);
  }
  try {
    JSON.parse('{"a": x}');
  } catch (e) {
    assert.match(jsonErrorDetail('{"a": x}', e), /at line 1, column 7/);
  }
});
