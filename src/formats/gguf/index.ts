export * from "./types.js";
export * from "./writer.js";
export * from "./reader.js";
