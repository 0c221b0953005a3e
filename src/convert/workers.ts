/**
 * Chunk encoders. One thread for now: the worker pool plugs in here behind the same interface.
 */
import { inlineEncoder, type ChunkEncoder } from "./pipeline.js";

export async function makeEncoder(_threads?: number): Promise<ChunkEncoder> {
  return inlineEncoder;
}
