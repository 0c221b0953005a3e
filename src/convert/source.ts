/** Moved to src/source/checkpoint.ts (the checkpoint abstraction); kept so `../convert/source.js` imports keep working. */
export * from "../source/checkpoint.js";
