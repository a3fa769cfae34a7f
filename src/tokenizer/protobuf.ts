/**
 * The protobuf wire format, read-only and schema-less: enough to walk a message's fields (varint,
 * 64-bit, length-delimited, 32-bit) and decode the scalar types a SentencePiece model uses.
 * Unknown fields are skipped, as protobuf readers must; malformed input is an error naming where.
 */
export interface ProtoField {
  field: number;
  wireType: number;
  /** Varint / fixed values as numbers (varints beyond 2^53 lose precision; none we read are), or the bytes of a length-delimited field. */
  value: number | Uint8Array;
  /** The low 32 bits of a varint, exact (int32 and enum fields are these, sign included). */
  low32: number;
  /** Offset of the field's tag in the message. */
  at: number;
}

/** The fields of one message, in order; `what` names the message in errors ("trainer_spec"). */
export function* protoFields(buf: Uint8Array, what: string): Generator<ProtoField> {
  let pos = 0;
  let low32 = 0;
  const varint = (): number => {
    let result = 0;
    let scale = 1;
    low32 = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.byteLength) throw new Error(`${what}: truncated varint at byte ${pos}`);
      const b = buf[pos++]!;
      result += (b & 0x7f) * scale;
      if (i < 5) low32 = (low32 | ((b & 0x7f) << (7 * i))) >>> 0;
      if (!(b & 0x80)) return result;
      scale *= 128;
    }
    throw new Error(`${what}: varint longer than 10 bytes at byte ${pos}`);
  };
  const need = (n: number) => {
    if (pos + n > buf.byteLength) throw new Error(`${what}: field at byte ${pos} runs past the end, at byte ${buf.byteLength}`);
  };
  while (pos < buf.byteLength) {
    const at = pos;
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) throw new Error(`${what}: field number 0 at byte ${at} (not a protobuf message)`);
    switch (wireType) {
      case 0: {
        const value = varint();
        yield { field, wireType, value, low32, at };
        break;
      }
      case 1: {
        need(8);
        const v = new DataView(buf.buffer, buf.byteOffset + pos, 8).getFloat64(0, true);
        pos += 8;
        yield { field, wireType, value: v, low32: 0, at };
        break;
      }
      case 2: {
        const len = varint();
        need(len);
        yield { field, wireType, value: buf.subarray(pos, pos + len), low32: 0, at };
        pos += len;
        break;
      }
      case 5: {
        need(4);
        const v = new DataView(buf.buffer, buf.byteOffset + pos, 4).getUint32(0, true);
        yield { field, wireType, value: v, low32: v, at };
        pos += 4;
        break;
      }
      default:
        throw new Error(`${what}: unsupported wire type ${wireType} at byte ${at} (not a protobuf message, or a corrupt one)`);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const f32 = new DataView(new ArrayBuffer(4));

/** Field readers that check the wire type matches the schema. */
export const proto = {
  string(f: ProtoField, what: string): string {
    if (!(f.value instanceof Uint8Array)) throw new Error(`${what}: field ${f.field} should be a string`);
    try {
      return utf8.decode(f.value);
    } catch {
      throw new Error(`${what}: field ${f.field} is not valid UTF-8`);
    }
  },
  bytes(f: ProtoField, what: string): Uint8Array {
    if (!(f.value instanceof Uint8Array)) throw new Error(`${what}: field ${f.field} should be bytes`);
    return f.value;
  },
  /** A float: fixed32 holding IEEE single bits. */
  float(f: ProtoField, what: string): number {
    if (f.wireType !== 5) throw new Error(`${what}: field ${f.field} should be a float`);
    f32.setUint32(0, f.value as number, true);
    return f32.getFloat32(0, true);
  },
  /** int32 / enum: the low 32 bits, signed (negative values arrive sign-extended to 10-byte varints). */
  int(f: ProtoField, what: string): number {
    if (f.wireType !== 0) throw new Error(`${what}: field ${f.field} should be a varint`);
    return f.low32 | 0;
  },
  bool(f: ProtoField, what: string): boolean {
    return proto.int(f, what) !== 0;
  },
};
