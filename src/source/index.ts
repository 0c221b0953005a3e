export * from "./checkpoint.js";
export { DECODERS, SCHEMES, decodeEncoded, openSource, type Scheme } from "./registry.js";
