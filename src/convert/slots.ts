/**
 * Float slots for the worker pool (quant/ggml/float-wasm.ts): shared WebAssembly memories that a
 * plain-float chunk is read into, converted in by a worker (f16 output, or the non-finite scan of an
 * unchanged copy) and written from — no copy through a kernel memory on either side. A fixed number
 * per conversion, allocated on demand and never dropped before the end: a wasm memory is not counted
 * as V8 external memory, so dropped ones would wait for an unrelated GC (session 5's chunk buffers).
 */
import { floatSlotsAvailable, newFloatSlotMemory, slotFits } from "../quant/ggml/float-wasm.js";
import { GGMLType } from "../quant/ggml/types.js";
import { unchangedCopy } from "./chunk.js";

export interface Slot {
  readonly id: number;
  readonly memory: WebAssembly.Memory;
  /** this thread's view of the whole memory */
  readonly u8: Uint8Array;
}

/** Whether a chunk of `n` values stored as `dtype`, encoded as `type`, is one a slot serves. */
export function slotServes(type: GGMLType, dtype: "f32" | "f16" | "bf16", n: number): boolean {
  const size = dtype === "f32" ? 4 : 2;
  const same = unchangedCopy(type, dtype);
  if (type === GGMLType.F32 && dtype === "bf16") return slotFits(2, n, 4);
  return (same || (type === GGMLType.F16 && dtype !== "f16")) && slotFits(size, n);
}

export class SlotPool {
  private readonly all: Slot[] = [];
  private readonly free: Slot[] = [];
  private usable: boolean | undefined;

  constructor(readonly max: number) {}

  /** a free slot, a new one while fewer than `max` exist, else undefined (the caller uses a plain buffer) */
  take(): Slot | undefined {
    const s = this.free.pop();
    if (s) return s;
    if (this.all.length >= this.max) return undefined;
    this.usable ??= floatSlotsAvailable();
    if (!this.usable) return undefined;
    const memory = newFloatSlotMemory();
    if (!memory) {
      this.usable = false;
      return undefined;
    }
    const slot: Slot = { id: this.all.length, memory, u8: new Uint8Array(memory.buffer) };
    this.all.push(slot);
    return slot;
  }

  /** the slot whose memory `b` views (in this thread), or undefined */
  of(b: Uint8Array): Slot | undefined {
    for (const s of this.all) if (s.u8.buffer === b.buffer) return s;
    return undefined;
  }

  /** `s` is free again (its bytes are neither read nor written any more) */
  release(s: Slot): void {
    if (!this.free.includes(s)) this.free.push(s);
  }

  /** slots allocated (tests, GGUFY_PROFILE) */
  get allocated(): number {
    return this.all.length;
  }

  /** slots free now (tests) */
  get idle(): number {
    return this.free.length;
  }
}
