export * from "./dtypes.js";
export * from "./reader.js";
export * from "./checkpoint.js";
export * from "./writer.js";
