/**
 * ProtoReader and decodeText (src/wire/protowire.ts) on hand-built bytes:
 * every malformed input is a ProtoDecodeError that says where, never a
 * wrong value.
 */
import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  decodeText,
  ProtoDecodeError,
  ProtoReader,
  WIRE_I32,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
  wireTypeName,
} from "../../src/wire/protowire.ts";
import { varintBytes } from "../../src/wire/varint.ts";

const reader = (bytes: number[]) => new ProtoReader(Uint8Array.from(bytes));

Deno.test("ProtoReader.tag() reads keys and refuses field 0 and wire types 6 and 7", () => {
  const r = reader([0x0a, ...varintBytes(100 << 3 | WIRE_VARINT)]);
  assertEquals(r.tag(r.buf.length), 1 << 3 | WIRE_LEN);
  assertEquals(r.tag(r.buf.length), 100 << 3 | WIRE_VARINT);
  assertThrows(() => reader([0x02]).tag(1), ProtoDecodeError, "field number 0");
  assertThrows(() => reader([0x0e]).tag(1), ProtoDecodeError);
  assertThrows(() => reader([0x0f]).tag(1), ProtoDecodeError);
});

Deno.test("ProtoReader.uint32() refuses truncated and over-long varints", () => {
  assertEquals(reader(varintBytes(2 ** 32 - 1)).uint32(5), 2 ** 32 - 1);
  assertThrows(() => reader([0x80, 0x80]).uint32(2), ProtoDecodeError, "truncated");
  assertThrows(() => reader(varintBytes(2 ** 32)).uint32(5), ProtoDecodeError, "overflows 32 bits");
});

Deno.test("ProtoReader.lenEnd() keeps a field inside its enclosing message", () => {
  const r = reader([0x03, 1, 2, 3, 4]);
  assertEquals(r.lenEnd(5), 4);
  assertThrows(() => reader([0x05, 1, 2]).lenEnd(3), ProtoDecodeError, "exceeds");
  // The bound is the enclosing message's end, not the buffer's.
  assertThrows(() => reader([0x03, 1, 2, 3, 4]).lenEnd(3), ProtoDecodeError, "exceeds");
});

Deno.test("ProtoReader.int64() reads negatives as ten-byte two's complement", () => {
  for (const v of [0, 1, 1_700_000_000_000, -1, -1_700_000_000_000]) {
    const bytes = varintBytes(v);
    assertEquals(reader(bytes).int64(bytes.length), v);
  }
  assertThrows(() => reader([0xff, 0xff]).int64(2), ProtoDecodeError);
});

Deno.test("ProtoReader.skip() skips each wire type and refuses a truncated one", () => {
  const bytes = [
    ...varintBytes(300),
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    0x02,
    9,
    9,
    1,
    2,
    3,
    4,
  ];
  const r = reader(bytes);
  r.skip(1 << 3 | WIRE_VARINT, bytes.length);
  r.skip(2 << 3 | WIRE_I64, bytes.length);
  r.skip(3 << 3 | WIRE_LEN, bytes.length);
  r.skip(4 << 3 | WIRE_I32, bytes.length);
  assertEquals(r.pos, bytes.length);
  assertThrows(() => reader([1, 2, 3]).skip(1 << 3 | WIRE_I64, 3), ProtoDecodeError, "truncated");
  assertEquals(wireTypeName(WIRE_LEN), "2 (LEN)");
});

Deno.test("decodeText() decodes UTF-8 and refuses invalid bytes and NUL", () => {
  const enc = new TextEncoder();
  for (const s of ["", "job", "ünïcødé", "x".repeat(100), "日本語".repeat(30)]) {
    const b = enc.encode(`..${s}..`);
    assertEquals(decodeText(b, 2, b.length - 2), s);
  }
  assertEquals(decodeText(Uint8Array.from([0x63, 0xff, 0xfe]), 0, 3), undefined);
  assertEquals(decodeText(Uint8Array.from([0x61, 0x00, 0x62]), 0, 3), undefined);
  const long = Uint8Array.from([...enc.encode("y".repeat(80)), 0xc3]);
  assertEquals(decodeText(long, 0, long.length), undefined);
});
