/**
 * The one WebAssembly opcode table of ggufy: every instruction the kernels may emit, by its name in the
 * text format (camelCased: `i32.trunc_sat_f32_s` → `i32.truncSatF32S`), with its encoding and the kind
 * of its immediates. This is the only file that holds literal opcode bytes; builder.ts turns each entry
 * into a fluent emitter (`f.i32.add()`, `f.f32x4.mul()`, `f.v128.load(16)`).
 *
 * Source: the WebAssembly core specification 2.0, "Binary Format › Instructions" (including the fixed-
 * width SIMD instructions, prefix 0xFD, and the 0xFC saturating truncations / bulk memory).
 */

/** How an instruction's immediates are written (and so what its emitter takes). */
export type ImmKind =
  | "none" // no immediate: f.i32.add()
  | "mem" // memarg (align hint, offset): f.i32.load(offset?)
  | "memLane" // memarg then a lane index: f.v128.load32Lane(offset, lane)
  | "lane" // one lane index byte: f.i32x4.extractLane(2)
  | "shuffle" // 16 lane index bytes: f.i8x16.shuffle([...])
  | "i32" // signed LEB128: f.i32.const(-1)
  | "f32" // 4 bytes IEEE little-endian: f.f32.const(0.5)
  | "i32x4" // 16 bytes, given as 4 i32 lanes: f.i32x4.const([a, b, c, d])
  | "f32x4" // 16 bytes, given as 4 f32 lanes: f.f32x4.const([a, b, c, d])
  | "zero"; // one reserved 0x00 byte (memory index): memory.size / memory.grow

/** One instruction: optional prefix byte (0xFC / 0xFD), the opcode (LEB128 after a prefix), immediates. */
export interface OpSpec {
  readonly prefix: number;
  readonly code: number;
  readonly imm: ImmKind;
  /** natural alignment, log2 bytes (memory instructions) */
  readonly align: number;
}

const op = <K extends ImmKind = "none">(code: number, imm?: K, align = 0): OpSpec & { imm: K } => ({ prefix: -1, code, imm: (imm ?? "none") as K, align });
const fc = <K extends ImmKind = "none">(code: number, imm?: K): OpSpec & { imm: K } => ({ prefix: 0xfc, code, imm: (imm ?? "none") as K, align: 0 });
const v = <K extends ImmKind = "none">(code: number, imm?: K, align = 0): OpSpec & { imm: K } => ({ prefix: 0xfd, code, imm: (imm ?? "none") as K, align });
const mem = (code: number, align: number): OpSpec & { imm: "mem" } => op(code, "mem", align);
const vmem = (code: number, align: number): OpSpec & { imm: "mem" } => v(code, "mem", align);
const vlane = (code: number, align: number): OpSpec & { imm: "memLane" } => v(code, "memLane", align);

/** Control and variable instructions; builder.ts emits these through its own methods (block, br, get…). */
export const CONTROL = {
  unreachable: op(0x00),
  nop: op(0x01),
  block: op(0x02),
  loop: op(0x03),
  if: op(0x04),
  else: op(0x05),
  end: op(0x0b),
  br: op(0x0c),
  brIf: op(0x0d),
  return: op(0x0f),
  call: op(0x10),
  drop: op(0x1a),
  select: op(0x1b),
  localGet: op(0x20),
  localSet: op(0x21),
  localTee: op(0x22),
} as const;

/** The block type of a block/loop/if without a result. */
export const BLOCK_VOID = 0x40;

/** Value types. */
export const VALTYPE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b } as const;
export type ValType = keyof typeof VALTYPE;

/** Module encoding: magic + version, section ids, the function type tag and export kinds. */
export const MODULE = {
  header: [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  section: { type: 1, import: 2, function: 3, memory: 5, export: 7, code: 10 },
  funcType: 0x60,
  limitsMin: 0x00,
  /** limits of a shared memory: min and max (threads proposal) */
  limitsSharedMinMax: 0x03,
  importMemory: 0x02,
  exportFunc: 0x00,
  exportMemory: 0x02,
} as const;

/** The instruction groups, by their text-format prefix. */
export const OPS = {
  i32: {
    const: op(0x41, "i32"),
    load: mem(0x28, 2), load8S: mem(0x2c, 0), load8U: mem(0x2d, 0), load16S: mem(0x2e, 1), load16U: mem(0x2f, 1),
    store: mem(0x36, 2), store8: mem(0x3a, 0), store16: mem(0x3b, 1),
    eqz: op(0x45), eq: op(0x46), ne: op(0x47), ltS: op(0x48), ltU: op(0x49), gtS: op(0x4a), gtU: op(0x4b),
    leS: op(0x4c), leU: op(0x4d), geS: op(0x4e), geU: op(0x4f),
    clz: op(0x67), ctz: op(0x68), popcnt: op(0x69),
    add: op(0x6a), sub: op(0x6b), mul: op(0x6c), divS: op(0x6d), divU: op(0x6e), remS: op(0x6f), remU: op(0x70),
    and: op(0x71), or: op(0x72), xor: op(0x73), shl: op(0x74), shrS: op(0x75), shrU: op(0x76), rotl: op(0x77), rotr: op(0x78),
    truncF32S: op(0xa8), truncF32U: op(0xa9), reinterpretF32: op(0xbc), extend8S: op(0xc0), extend16S: op(0xc1),
    truncSatF32S: fc(0x00), truncSatF32U: fc(0x01),
  },
  f32: {
    const: op(0x43, "f32"),
    load: mem(0x2a, 2), store: mem(0x38, 2),
    eq: op(0x5b), ne: op(0x5c), lt: op(0x5d), gt: op(0x5e), le: op(0x5f), ge: op(0x60),
    abs: op(0x8b), neg: op(0x8c), ceil: op(0x8d), floor: op(0x8e), trunc: op(0x8f), nearest: op(0x90), sqrt: op(0x91),
    add: op(0x92), sub: op(0x93), mul: op(0x94), div: op(0x95), min: op(0x96), max: op(0x97), copysign: op(0x98),
    convertI32S: op(0xb2), convertI32U: op(0xb3), reinterpretI32: op(0xbe),
  },
  memory: {
    size: op(0x3f, "zero"), grow: op(0x40, "zero"),
  },
  v128: {
    load: vmem(0x00, 4), load8x8S: vmem(0x01, 3), load8x8U: vmem(0x02, 3), load16x4S: vmem(0x03, 3), load16x4U: vmem(0x04, 3),
    load32x2S: vmem(0x05, 3), load32x2U: vmem(0x06, 3),
    load8Splat: vmem(0x07, 0), load16Splat: vmem(0x08, 1), load32Splat: vmem(0x09, 2), load64Splat: vmem(0x0a, 3),
    store: vmem(0x0b, 4),
    not: v(0x4d), and: v(0x4e), andnot: v(0x4f), or: v(0x50), xor: v(0x51), bitselect: v(0x52), anyTrue: v(0x53),
    load8Lane: vlane(0x54, 0), load16Lane: vlane(0x55, 1), load32Lane: vlane(0x56, 2), load64Lane: vlane(0x57, 3),
    store8Lane: vlane(0x58, 0), store16Lane: vlane(0x59, 1), store32Lane: vlane(0x5a, 2), store64Lane: vlane(0x5b, 3),
    load32Zero: vmem(0x5c, 2), load64Zero: vmem(0x5d, 3),
  },
  i8x16: {
    shuffle: v(0x0d, "shuffle"), swizzle: v(0x0e), splat: v(0x0f),
    extractLaneS: v(0x15, "lane"), extractLaneU: v(0x16, "lane"), replaceLane: v(0x17, "lane"),
    eq: v(0x23), ne: v(0x24), ltS: v(0x25), ltU: v(0x26), gtS: v(0x27), gtU: v(0x28), leS: v(0x29), leU: v(0x2a), geS: v(0x2b), geU: v(0x2c),
    abs: v(0x60), neg: v(0x61), popcnt: v(0x62), allTrue: v(0x63), bitmask: v(0x64),
    narrowI16x8S: v(0x65), narrowI16x8U: v(0x66),
    shl: v(0x6b), shrS: v(0x6c), shrU: v(0x6d), add: v(0x6e), addSatS: v(0x6f), addSatU: v(0x70),
    sub: v(0x71), subSatS: v(0x72), subSatU: v(0x73), minS: v(0x76), minU: v(0x77), maxS: v(0x78), maxU: v(0x79), avgrU: v(0x7b),
  },
  i16x8: {
    splat: v(0x10), extractLaneS: v(0x18, "lane"), extractLaneU: v(0x19, "lane"), replaceLane: v(0x1a, "lane"),
    eq: v(0x2d), ne: v(0x2e), ltS: v(0x2f), ltU: v(0x30), gtS: v(0x31), gtU: v(0x32), leS: v(0x33), leU: v(0x34), geS: v(0x35), geU: v(0x36),
    extaddPairwiseI8x16S: v(0x7c), extaddPairwiseI8x16U: v(0x7d),
    abs: v(0x80), neg: v(0x81), q15mulrSatS: v(0x82), allTrue: v(0x83), bitmask: v(0x84),
    narrowI32x4S: v(0x85), narrowI32x4U: v(0x86),
    extendLowI8x16S: v(0x87), extendHighI8x16S: v(0x88), extendLowI8x16U: v(0x89), extendHighI8x16U: v(0x8a),
    shl: v(0x8b), shrS: v(0x8c), shrU: v(0x8d), add: v(0x8e), addSatS: v(0x8f), addSatU: v(0x90),
    sub: v(0x91), subSatS: v(0x92), subSatU: v(0x93), mul: v(0x95), minS: v(0x96), minU: v(0x97), maxS: v(0x98), maxU: v(0x99), avgrU: v(0x9b),
    extmulLowI8x16S: v(0x9c), extmulHighI8x16S: v(0x9d), extmulLowI8x16U: v(0x9e), extmulHighI8x16U: v(0x9f),
  },
  i32x4: {
    const: v(0x0c, "i32x4"), splat: v(0x11), extractLane: v(0x1b, "lane"), replaceLane: v(0x1c, "lane"),
    eq: v(0x37), ne: v(0x38), ltS: v(0x39), ltU: v(0x3a), gtS: v(0x3b), gtU: v(0x3c), leS: v(0x3d), leU: v(0x3e), geS: v(0x3f), geU: v(0x40),
    extaddPairwiseI16x8S: v(0x7e), extaddPairwiseI16x8U: v(0x7f),
    abs: v(0xa0), neg: v(0xa1), allTrue: v(0xa3), bitmask: v(0xa4),
    extendLowI16x8S: v(0xa7), extendHighI16x8S: v(0xa8), extendLowI16x8U: v(0xa9), extendHighI16x8U: v(0xaa),
    shl: v(0xab), shrS: v(0xac), shrU: v(0xad), add: v(0xae), sub: v(0xb1), mul: v(0xb5),
    minS: v(0xb6), minU: v(0xb7), maxS: v(0xb8), maxU: v(0xb9), dotI16x8S: v(0xba),
    extmulLowI16x8S: v(0xbc), extmulHighI16x8S: v(0xbd), extmulLowI16x8U: v(0xbe), extmulHighI16x8U: v(0xbf),
    truncSatF32x4S: v(0xf8), truncSatF32x4U: v(0xf9),
  },
  f32x4: {
    const: v(0x0c, "f32x4"), splat: v(0x13), extractLane: v(0x1f, "lane"), replaceLane: v(0x20, "lane"),
    eq: v(0x41), ne: v(0x42), lt: v(0x43), gt: v(0x44), le: v(0x45), ge: v(0x46),
    ceil: v(0x67), floor: v(0x68), trunc: v(0x69), nearest: v(0x6a),
    abs: v(0xe0), neg: v(0xe1), sqrt: v(0xe3), add: v(0xe4), sub: v(0xe5), mul: v(0xe6), div: v(0xe7),
    min: v(0xe8), max: v(0xe9), pmin: v(0xea), pmax: v(0xeb),
    convertI32x4S: v(0xfa), convertI32x4U: v(0xfb),
  },
} as const;

export type OpGroups = typeof OPS;
