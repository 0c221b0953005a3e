// The plan's static list of writable types (src/quant/ggml/writable.ts) against the codec registry:
// a codec added or removed in index.ts without the list following fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { supportedTypes, typeName } from "../../src/quant/ggml/index.js";
import { WRITABLE_TYPES } from "../../src/quant/ggml/writable.js";

test("WRITABLE_TYPES is the codec registry's supportedTypes(), in order", () => {
  assert.deepEqual(WRITABLE_TYPES.map(typeName), supportedTypes().map(typeName));
});
