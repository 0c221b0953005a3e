/**
 * A minimal protobuf wire-format reader: enough to walk a SentencePiece ModelProto.
 * Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 (groups 3/4 are rejected).
 * Every read is bounds-checked; a malformed buffer throws ProtobufError.
 */

export class ProtobufError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = "ProtobufError";
  }
}

export const enum WireType {
  VARINT = 0,
  I64 = 1,
  LEN = 2,
  I32 = 5,
}

export interface Field {
  /** field number */
  no: number;
  wire: WireType;
  /** varint value (wire 0) as a bigint, so 64-bit values survive */
  varint?: bigint;
  /** raw bytes for LEN / I32 / I64 fields (a view into the source buffer) */
  bytes?: Uint8Array;
  /** offset of the field's key in the buffer, for error messages */
  offset: number;
}

export class ProtoReader {
  private pos: number;
  private readonly end: number;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array, start = 0, end = buf.length) {
    this.pos = start;
    this.end = end;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private varint(): bigint {
    let result = 0n;
    let shift = 0n;
    const at = this.pos;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtobufError("truncated varint", at);
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtobufError("varint longer than 10 bytes", at);
  }

  private take(n: number, at: number): Uint8Array {
    if (n < 0 || this.pos + n > this.end) throw new ProtobufError(`field of ${n} bytes runs past the end`, at);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Next field, or undefined at the end of the message. */
  next(): Field | undefined {
    if (this.done) return undefined;
    const offset = this.pos;
    const key = this.varint();
    const no = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (no === 0) throw new ProtobufError("field number 0", offset);
    switch (wire) {
      case WireType.VARINT:
        return { no, wire, varint: this.varint(), offset };
      case WireType.I64:
        return { no, wire, bytes: this.take(8, offset), offset };
      case WireType.I32:
        return { no, wire, bytes: this.take(4, offset), offset };
      case WireType.LEN: {
        const len = this.varint();
        if (len > BigInt(this.end - this.pos)) throw new ProtobufError(`length ${len} runs past the end`, offset);
        return { no, wire, bytes: this.take(Number(len), offset), offset };
      }
      default:
        throw new ProtobufError(`unsupported wire type ${wire} (field ${no})`, offset);
    }
  }

  /** Iterate all fields of this message. */
  *fields(): Generator<Field> {
    for (let f = this.next(); f; f = this.next()) yield f;
  }
}

// ignoreBOM: a piece may be exactly U+FEFF (Llama 2 has one), which a default TextDecoder would strip
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function fieldString(f: Field): string {
  if (f.wire !== WireType.LEN || !f.bytes) throw new ProtobufError(`field ${f.no} is not a string`, f.offset);
  try {
    return utf8.decode(f.bytes);
  } catch {
    throw new ProtobufError(`field ${f.no} is not valid UTF-8`, f.offset);
  }
}

export function fieldFloat(f: Field): number {
  if (f.wire !== WireType.I32 || !f.bytes) throw new ProtobufError(`field ${f.no} is not a float`, f.offset);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

/** int32 / enum / bool fields: varints, sign-interpreted as int32 the way protobuf does. */
export function fieldInt32(f: Field): number {
  if (f.wire !== WireType.VARINT || f.varint === undefined) throw new ProtobufError(`field ${f.no} is not a varint`, f.offset);
  return Number(BigInt.asIntN(32, f.varint));
}

export function fieldBool(f: Field): boolean {
  return fieldInt32(f) !== 0;
}

export function subReader(f: Field): ProtoReader {
  if (f.wire !== WireType.LEN || !f.bytes) throw new ProtobufError(`field ${f.no} is not a message`, f.offset);
  return new ProtoReader(f.bytes);
}
