/**
 * A strict, allocation-light reader for the protobuf wire format
 * (https://protobuf.dev/programming-guides/encoding/). It knows no message
 * schema: `remote_write/decode.ts` walks `prometheus.WriteRequest` with it
 * and `limits.ts` counts its fields. Every read
 * takes the end of the enclosing message, so that no field can run past the
 * message that holds it, and every malformed input raises a
 * {@linkcode ProtoDecodeError} rather than a wrong value.
 *
 * protobufjs's reflection decoder is several times slower, does not bound a
 * sub-message by its parent's length, truncates over-long varints and
 * decodes invalid UTF-8 leniently; hence this.
 *
 * @module
 */

/** Wire type 0: varint (int32, int64, uint32, uint64, sint*, bool, enum). */
export const WIRE_VARINT = 0;
/** Wire type 1: 8 bytes little-endian (fixed64, sfixed64, double). */
export const WIRE_I64 = 1;
/** Wire type 2: length-delimited (string, bytes, messages, packed repeated). */
export const WIRE_LEN = 2;
/** Wire type 3: start of a group (deprecated, never used by Prometheus). */
export const WIRE_SGROUP = 3;
/** Wire type 4: end of a group. */
export const WIRE_EGROUP = 4;
/** Wire type 5: 4 bytes little-endian (fixed32, sfixed32, float). */
export const WIRE_I32 = 5;

const WIRE_TYPE_NAMES = ["VARINT", "I64", "LEN", "SGROUP", "EGROUP", "I32", "6", "7"];

/** Names a wire type for error messages: `2 (LEN)`. */
export function wireTypeName(wireType: number): string {
  return `${wireType} (${WIRE_TYPE_NAMES[wireType & 7]})`;
}

/** The input is not valid protobuf; the message says what and where. */
export class ProtoDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtoDecodeError";
  }
}

/**
 * A cursor over one protobuf buffer. Methods advance {@linkcode pos}; `end`
 * arguments bound the enclosing message.
 */
export class ProtoReader {
  /** Offset of the next byte to read. */
  pos = 0;
  readonly buf: Uint8Array;
  readonly view: DataView;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /**
   * Reads a field key and returns it as `fieldNumber << 3 | wireType` (a
   * uint32 read as a non-negative number). Rejects field number 0, wire
   * types 6 and 7 and keys longer than 5 bytes.
   */
  tag(end: number): number {
    const pos = this.pos;
    if (pos < end) {
      const b = this.buf[pos];
      // One-byte keys (fields 1..15) are the common case; 0 is field 0.
      if (b < 0x80 && b > 7) {
        this.pos = pos + 1;
        if ((b & 7) > 5) this.badWireType(b, pos);
        return b;
      }
    }
    const key = this.uint32(end);
    if (key >>> 3 === 0) throw new ProtoDecodeError(`invalid field number 0 at byte ${pos}`);
    if ((key & 7) > 5) this.badWireType(key, pos);
    return key;
  }

  /**
   * Reads a varint of at most 5 bytes that fits in 32 bits (a key or a
   * length). Longer encodings are legal but never produced by real encoders;
   * refusing them keeps every decoder (protobufjs truncates them) in
   * agreement.
   */
  uint32(end: number): number {
    const buf = this.buf;
    const start = this.pos;
    let pos = start;
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 5; i++) {
      if (pos >= end) throw this.truncated("varint", start, end);
      const b = buf[pos++];
      if (i === 4 && b > 0x0f) {
        throw new ProtoDecodeError(`varint at byte ${start} overflows 32 bits`);
      }
      value += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        return value;
      }
      mul *= 128;
    }
    // Unreachable: the 5th byte is either > 0x0f (thrown above) or < 0x80.
    throw new ProtoDecodeError(`varint at byte ${start} overflows 32 bits`);
  }

  /**
   * Reads the length prefix of a LEN field and checks it against the bytes
   * left in the enclosing message. Returns the end offset of the field.
   */
  lenEnd(end: number): number {
    let len: number;
    const pos = this.pos;
    if (pos < end && this.buf[pos] < 0x80) {
      len = this.buf[pos];
      this.pos = pos + 1;
    } else {
      len = this.uint32(end);
    }
    const left = end - this.pos;
    if (len > left) {
      throw new ProtoDecodeError(
        `truncated field at byte ${pos}: length ${len} exceeds the ${left} bytes left`,
      );
    }
    return this.pos + len;
  }

  /**
   * Reads an int64 varint (two's complement, so negative values take 10
   * bytes). Exact for |value| < 2^53; larger magnitudes come back rounded,
   * which callers that range-check need not care about (use
   * {@linkcode int64TextAt} to print the exact value).
   */
  int64(end: number): number {
    const buf = this.buf;
    let pos = this.pos;
    // Fast path: up to 7 bytes (49 bits), positive, exact in a double. A
    // millisecond timestamp of this century takes 6.
    const fastEnd = Math.min(end, pos + 7);
    let value = 0;
    let mul = 1;
    while (pos < fastEnd) {
      const b = buf[pos++];
      value += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        return value;
      }
      mul *= 128;
    }
    // Longer, negative or truncated: the exact 64-bit path from the start.
    const [lo, hi] = this.varint64(end);
    // hi as signed is the high word: hi * 2^32 + lo is exact when |hi| < 2^21.
    return (hi | 0) * 4294967296 + lo;
  }

  /**
   * Prints the int64 varint that starts at `start` exactly, for error
   * messages about values {@linkcode int64} could only round.
   */
  int64TextAt(start: number, end: number): string {
    const saved = this.pos;
    this.pos = start;
    const [lo, hi] = this.varint64(end);
    this.pos = saved;
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
  }

  /**
   * Reads a varint of up to 10 bytes as two uint32 words [lo, hi]. Rejects
   * longer encodings and a 10th byte above 1 (more than 64 bits), as Go's
   * protowire does.
   */
  varint64(end: number): [number, number] {
    const buf = this.buf;
    const start = this.pos;
    let pos = start;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw this.truncated("varint", start, end);
      const b = buf[pos++];
      if (i < 4) {
        lo |= (b & 0x7f) << (7 * i);
      } else if (i === 4) {
        lo |= (b & 0x7f) << 28;
        hi = (b & 0x7f) >>> 4;
      } else if (i < 9) {
        hi |= (b & 0x7f) << (7 * i - 32);
      } else if (b > 1) {
        throw new ProtoDecodeError(
          b >= 0x80
            ? `varint at byte ${start} is longer than 10 bytes`
            : `varint at byte ${start} overflows 64 bits`,
        );
      } else {
        hi |= b << 31;
      }
      if (b < 0x80) {
        this.pos = pos;
        return [lo >>> 0, hi >>> 0];
      }
    }
    // Unreachable: the 10th byte is either > 1 (thrown above) or < 0x80.
    throw new ProtoDecodeError(`varint at byte ${start} is longer than 10 bytes`);
  }

  /**
   * Copies the 8 bytes of an I64 field (a double's IEEE 754 bits) into
   * `words` at `index * 2` as two uint32 words, low word first. Integer
   * copies keep every bit: V8 quiets signalling NaNs (such as Prometheus's
   * staleness marker 0x7ff0000000000002) when a double passes through a JS
   * array or `DataView.setFloat64`.
   */
  fixed64Into(end: number, words: Uint32Array, index: number): void {
    const pos = this.pos;
    if (end - pos < 8) throw this.truncated("fixed64", pos, end);
    words[index * 2] = this.view.getUint32(pos, true);
    words[index * 2 + 1] = this.view.getUint32(pos + 4, true);
    this.pos = pos + 8;
  }

  /**
   * Skips the value of a field whose key has just been read. Groups are
   * refused: Prometheus never sends them and skipping them needs a stack.
   */
  skip(key: number, end: number): void {
    const wireType = key & 7;
    const start = this.pos;
    switch (wireType) {
      case WIRE_VARINT:
        this.varint64(end);
        return;
      case WIRE_I64:
        if (end - start < 8) throw this.truncated("fixed64", start, end);
        this.pos = start + 8;
        return;
      case WIRE_LEN:
        this.pos = this.lenEnd(end);
        return;
      case WIRE_I32:
        if (end - start < 4) throw this.truncated("fixed32", start, end);
        this.pos = start + 4;
        return;
      case WIRE_SGROUP:
      case WIRE_EGROUP:
        throw new ProtoDecodeError(
          `field ${key >>> 3} at byte ${start} uses wire type ${
            wireTypeName(wireType)
          }: groups are not supported`,
        );
      default:
        this.badWireType(key, start);
    }
  }

  private badWireType(key: number, pos: number): never {
    throw new ProtoDecodeError(
      `invalid wire type ${key & 7} for field ${key >>> 3} at byte ${pos}`,
    );
  }

  private truncated(what: string, start: number, end: number): ProtoDecodeError {
    return new ProtoDecodeError(
      `truncated ${what} at byte ${start} (${end - start} bytes left in its message)`,
    );
  }
}

/**
 * Decodes `buf[start..end)` as UTF-8 text without U+0000, or returns
 * undefined when the bytes are not valid UTF-8 or contain a NUL (valid in
 * protobuf strings, but PostgreSQL text cannot hold it; look at the bytes to
 * tell the two apart).
 *
 * Short ASCII, nearly all label names and values, skips TextDecoder, whose
 * per-call cost (~300 ns) dominates for short strings: String.fromCharCode
 * with several arguments builds a flat one-byte string, and chunks of 8 keep
 * the intermediate strings few.
 */
export function decodeText(buf: Uint8Array, start: number, end: number): string | undefined {
  if (end - start > 64) return decodeLong(buf, start, end);
  // `b | (b - 1)` has bit 7 set for b >= 0x80 and every high bit set for 0.
  let bad = 0;
  let s = "";
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const b0 = buf[i];
    const b1 = buf[i + 1];
    const b2 = buf[i + 2];
    const b3 = buf[i + 3];
    const b4 = buf[i + 4];
    const b5 = buf[i + 5];
    const b6 = buf[i + 6];
    const b7 = buf[i + 7];
    bad |= b0 | (b0 - 1) | b1 | (b1 - 1) | b2 | (b2 - 1) | b3 | (b3 - 1) | b4 | (b4 - 1) |
      b5 | (b5 - 1) | b6 | (b6 - 1) | b7 | (b7 - 1);
    s += String.fromCharCode(b0, b1, b2, b3, b4, b5, b6, b7);
  }
  for (; i + 2 <= end; i += 2) {
    const b0 = buf[i];
    const b1 = buf[i + 1];
    bad |= b0 | (b0 - 1) | b1 | (b1 - 1);
    s += String.fromCharCode(b0, b1);
  }
  if (i < end) {
    const b0 = buf[i];
    bad |= b0 | (b0 - 1);
    s += String.fromCharCode(b0);
  }
  return (bad & ~0x7f) === 0 ? s : decodeLong(buf, start, end);
}

// fatal: invalid UTF-8 throws instead of turning into U+FFFD, as Go's
// protobuf runtime rejects it in proto3 strings.
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Non-ASCII or long text: one native call beats many small ones. */
function decodeLong(buf: Uint8Array, start: number, end: number): string | undefined {
  const bytes = buf.subarray(start, end);
  if (bytes.includes(0)) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}
