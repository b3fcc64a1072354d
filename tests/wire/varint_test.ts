import { assertEquals } from "../helpers/assert.ts";
import { ProtoReader } from "../../src/wire/protowire.ts";
import {
  int64VarintSize,
  putInt64Varint,
  putVarint,
  varintBytes,
  varintSize,
} from "../../src/wire/varint.ts";

const VALUES = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];

Deno.test("varint writers agree with each other and with ProtoReader", () => {
  for (const v of VALUES) {
    const buf = new Uint8Array(10);
    const end = putVarint(buf, 0, v);
    assertEquals(end, varintSize(v), `size of ${v}`);
    assertEquals([...buf.subarray(0, end)], varintBytes(v), `bytes of ${v}`);
    const r = new ProtoReader(buf.subarray(0, end));
    // int64() reads the same encoding (values here are below 2^53).
    assertEquals(r.int64(end), v, `read back ${v}`);
  }
});

Deno.test("varintBytes() encodes known values as protobuf does", () => {
  assertEquals(varintBytes(1), [0x01]);
  assertEquals(varintBytes(150), [0x96, 0x01]);
  assertEquals(varintBytes(300), [0xac, 0x02]);
});

Deno.test("putInt64Varint() writes a negative int64 as ten bytes of two's complement", () => {
  const buf = new Uint8Array(10);
  assertEquals(putInt64Varint(buf, 0, -1), 10);
  assertEquals(int64VarintSize(-1), 10);
  assertEquals([...buf], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assertEquals(varintBytes(-1), [...buf]);
  assertEquals(new ProtoReader(buf).int64(10), -1);
  assertEquals(varintBytes(-2n), [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
});
