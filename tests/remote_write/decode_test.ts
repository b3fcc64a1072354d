import assert from "node:assert/strict";
import { protobuf, snappy } from "../../deps.ts";
import { WriteRequest } from "../../proto/messages.ts";
import { REMOTE_PROTO } from "../../proto/remote_proto.ts";
import { BadRequestError } from "../../src/errors.ts";
import { varintBytes } from "../../src/wire/varint.ts";
import {
  type DecodeLimits,
  decodeWriteRequest,
  parseWriteRequest,
} from "../../src/remote_write/decode.ts";
import { type DecodedWrite, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from "../../src/ingest.ts";
import {
  encodeWriteRequest,
  nodeExporterSeries,
  type PayloadSeries,
  snappyCompress,
  STALE_NAN_BITS,
  writeRequestBody,
} from "../helpers/payload.ts";

const LIMITS: DecodeLimits = { maxDecodedBytes: 32 << 20 };
const enc = new TextEncoder();

// ---------------------------------------------------------------------------
// Hand-built protobuf, for inputs protobufjs will not produce.

type Part = Uint8Array | number[] | string;

function bytes(...parts: Part[]): Uint8Array {
  const arrays = parts.map((p) =>
    typeof p === "string" ? enc.encode(p) : p instanceof Uint8Array ? p : Uint8Array.from(p)
  );
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

/** A varint of a non-negative value or of an int64 (negative: 10 bytes). */
const varint = varintBytes;

function key(field: number, wireType: number): number[] {
  return varint(field << 3 | wireType);
}

/** A LEN field. */
function len(field: number, ...parts: Part[]): Uint8Array {
  const body = bytes(...parts);
  return bytes(key(field, 2), varint(body.length), body);
}

function f64(value: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, value, true);
  return [...b];
}

const label = (name: Part, value: Part) => len(1, len(1, name), len(2, value));
const sample = (value: number, timestamp: number | bigint) =>
  len(2, key(1, 1), f64(value), key(2, 0), varint(timestamp));
const series = (...parts: Part[]) => len(1, ...parts);
const up = label("__name__", "up");
const oneSample = sample(1, 1000);

/** The bits of every value, as hex, for exact comparison. */
function valueBits(values: Float64Array): string[] {
  const view = new DataView(values.buffer, values.byteOffset, values.byteLength);
  const out: string[] = [];
  for (let i = 0; i < values.length; i++) {
    out.push(view.getBigUint64(i * 8, true).toString(16).padStart(16, "0"));
  }
  return out;
}

function decodeRaw(raw: Uint8Array, limits = LIMITS): DecodedWrite {
  return decodeWriteRequest(snappyCompress(raw), limits);
}

function plain(d: DecodedWrite) {
  return d.series.map((s) => ({
    labels: Object.fromEntries(s.labels.map((l) => [l.name, l.value])),
    timestamps: s.timestamps,
    values: valueBits(s.values),
  }));
}

// ---------------------------------------------------------------------------

Deno.test("REMOTE_PROTO embeds proto/remote.proto byte for byte", async () => {
  const file = await Deno.readTextFile(new URL("../../proto/remote.proto", import.meta.url));
  assert.equal(REMOTE_PROTO, file);
});

Deno.test("decodeWriteRequest() round-trips labels, timestamps and exact value bits", () => {
  const body = writeRequestBody([
    {
      labels: { job: "node", __name__: "up", instance: "a:9100" },
      samples: [
        { value: 0, timestamp: 1_700_000_000_000, valueBits: STALE_NAN_BITS },
        { value: Infinity, timestamp: -1 },
        { value: -Infinity, timestamp: MIN_TIMESTAMP_MS },
        { value: -0, timestamp: MAX_TIMESTAMP_MS },
        { value: 0.1, timestamp: 0 },
        { value: NaN, timestamp: 2 ** 40 },
        { value: 0, timestamp: 5, valueBits: 0xfff0000000000001n },
        { value: 5e-324, timestamp: -(2 ** 45) },
      ],
    },
    { labels: [{ name: "__name__", value: "b" }], samples: [{ value: 2, timestamp: 7 }] },
  ]);
  const d = decodeWriteRequest(body, LIMITS);
  assert.equal(d.samples, 9);
  assert.deepEqual(plain(d), [
    {
      labels: { __name__: "up", instance: "a:9100", job: "node" },
      timestamps: [
        1_700_000_000_000,
        -1,
        MIN_TIMESTAMP_MS,
        MAX_TIMESTAMP_MS,
        0,
        2 ** 40,
        5,
        -(2 ** 45),
      ],
      values: [
        "7ff0000000000002",
        "7ff0000000000000",
        "fff0000000000000",
        "8000000000000000",
        "3fb999999999999a",
        "7ff8000000000000",
        "fff0000000000001",
        "0000000000000001",
      ],
    },
    { labels: { __name__: "b" }, timestamps: [7], values: ["4000000000000000"] },
  ]);
  // Sorted output: the order of names, not of the request.
  assert.deepEqual(d.series[0].labels.map((l) => l.name), ["__name__", "instance", "job"]);
});

Deno.test("decodeWriteRequest() keeps the staleness marker's bits once optimised", () => {
  // The same body decoded many times, so that the optimising compilers
  // handle the value path: V8 quiets signalling NaNs in some paths there.
  const body = writeRequestBody([{
    labels: { __name__: "up" },
    samples: [{ value: 0, timestamp: 1, valueBits: STALE_NAN_BITS }],
  }, ...nodeExporterSeries(20)]);
  for (let i = 0; i < 3000; i++) {
    const values = decodeWriteRequest(body, LIMITS).series[0].values;
    const bits = new DataView(values.buffer, values.byteOffset).getBigUint64(0, true);
    if (bits !== STALE_NAN_BITS) assert.fail(`iteration ${i}: ${bits.toString(16)}`);
  }
});

Deno.test("decodeWriteRequest() values copied byte-wise keep the staleness marker", () => {
  const body = writeRequestBody([{
    labels: { __name__: "up" },
    samples: [{ value: 0, timestamp: 1, valueBits: STALE_NAN_BITS }],
  }]);
  const { values } = decodeWriteRequest(body, LIMITS).series[0];
  // What a writer does: copy the bytes (little-endian float8) out.
  const out = new Uint8Array(8);
  out.set(new Uint8Array(values.buffer, values.byteOffset, 8));
  assert.equal(new DataView(out.buffer).getBigUint64(0, true), STALE_NAN_BITS);
  // Float64Array to Float64Array element copies keep it too.
  const copy = new Float64Array(1);
  copy[0] = values[0];
  assert.deepEqual(valueBits(copy), ["7ff0000000000002"]);
});

Deno.test("encodeWriteRequest() agrees with protobufjs's WriteRequest decoder", () => {
  const input: PayloadSeries[] = [
    { labels: { __name__: "m", "é": "日本", z: "" }, samples: [{ value: 1.5, timestamp: -5 }] },
    { labels: [{ name: "__name__", value: "n" }], samples: [] },
  ];
  const decoded = WriteRequest.toObject(WriteRequest.decode(encodeWriteRequest(input)), {
    longs: String,
  });
  assert.deepEqual(JSON.parse(JSON.stringify(decoded)), {
    timeseries: [
      {
        labels: [
          { name: "__name__", value: "m" },
          { name: "é", value: "日本" },
          { name: "z", value: "" },
        ],
        samples: [{ value: 1.5, timestamp: "-5" }],
      },
      { labels: [{ name: "__name__", value: "n" }] },
    ],
  });
});

Deno.test("decodeWriteRequest() decodes a node_exporter-like request", () => {
  const input = nodeExporterSeries(2000);
  const d = decodeWriteRequest(writeRequestBody(input), LIMITS);
  assert.equal(d.samples, 2000);
  assert.equal(d.series.length, 2000);
  for (let i = 0; i < input.length; i += 97) {
    const want = input[i];
    assert.deepEqual(
      Object.fromEntries(d.series[i].labels.map((l) => [l.name, l.value])),
      want.labels,
    );
    assert.equal(d.series[i].labels.length, 9);
    assert.deepEqual(d.series[i].timestamps, [want.samples[0].timestamp]);
    assert.equal(d.series[i].values[0], want.samples[0].value);
  }
});

Deno.test("decodeWriteRequest() sorts unsorted labels", () => {
  const d = decodeRaw(
    series(label("zeta", "1"), label("alpha", "2"), up, label("Beta", "3"), oneSample),
  );
  assert.deepEqual(d.series[0].labels, [
    { name: "Beta", value: "3" },
    { name: "__name__", value: "up" },
    { name: "alpha", value: "2" },
    { name: "zeta", value: "1" },
  ]);
});

Deno.test("decodeWriteRequest() drops labels with an empty value", () => {
  const d = decodeRaw(series(up, label("a", ""), label("b", "x"), len(1, len(1, "c")), oneSample));
  assert.deepEqual(d.series[0].labels, [{ name: "__name__", value: "up" }, {
    name: "b",
    value: "x",
  }]);
});

Deno.test("decodeWriteRequest() drops series without samples but counts them in messages", () => {
  const raw = bytes(
    series(up),
    series(up, oneSample),
    series(label("__name__", "x"), label("__name__", "y"), oneSample),
  );
  assert.throws(() => decodeRaw(raw), {
    name: "BadRequestError",
    message: 'Cannot decode write request: series 2 has duplicate label name "__name__"',
  });
  const d = decodeRaw(bytes(series(up), series(up, oneSample)));
  assert.equal(d.series.length, 1);
  assert.equal(d.samples, 1);
});

Deno.test("decodeWriteRequest() accepts an empty request", () => {
  assert.deepEqual(decodeRaw(new Uint8Array(0)), { series: [], samples: 0 });
});

Deno.test("decodeWriteRequest() keeps samples in wire order", () => {
  const d = decodeRaw(series(up, sample(3, 30), sample(1, 10), sample(2, 20)));
  assert.deepEqual(d.series[0].timestamps, [30, 10, 20]);
  assert.deepEqual([...d.series[0].values], [3, 1, 2]);
});

Deno.test("decodeWriteRequest() decodes UTF-8 and long labels", () => {
  const ascii = Array.from({ length: 1000 }, (_, i) => String.fromCharCode(32 + i % 95)).join("");
  const d = decodeRaw(
    series(
      up,
      label("é", "日本語 ✓"),
      label("emoji", "🦕 deno"),
      label("long", "ü".repeat(300)),
      label("long_ascii", ascii),
      label("x".repeat(9), "y".repeat(17)),
      oneSample,
    ),
  );
  assert.deepEqual(d.series[0].labels.slice(1), [
    { name: "emoji", value: "🦕 deno" },
    { name: "long", value: "ü".repeat(300) },
    { name: "long_ascii", value: ascii },
    { name: "xxxxxxxxx", value: "yyyyyyyyyyyyyyyyy" },
    { name: "é", value: "日本語 ✓" },
  ]);
});

Deno.test("decodeWriteRequest() reuses nothing wrongly between series", () => {
  // Same lengths, different bytes, slot by slot; and same bytes in other slots.
  const d = decodeRaw(bytes(
    series(up, label("aa", "xy"), label("bb", "zz"), oneSample),
    series(up, label("ab", "xz"), label("bb", "zy"), oneSample),
    series(label("__name__", "bb"), label("up", "aa"), oneSample),
  ));
  assert.deepEqual(d.series.map((s) => s.labels.map((l) => `${l.name}=${l.value}`).join(",")), [
    "__name__=up,aa=xy,bb=zz",
    "__name__=up,ab=xz,bb=zy",
    "__name__=bb,up=aa",
  ]);
});

Deno.test("decodeWriteRequest() applies proto3 defaults to empty samples", () => {
  const d = decodeRaw(series(up, len(2)));
  assert.deepEqual(d.series[0].timestamps, [0]);
  assert.deepEqual(valueBits(d.series[0].values), ["0000000000000000"]);
});

Deno.test("decodeWriteRequest() takes the last of repeated scalar fields", () => {
  const d = decodeRaw(series(
    len(1, len(1, "__name__"), len(2, "a"), len(2, "b")),
    len(2, key(1, 1), f64(1), key(2, 0), varint(5), key(1, 1), f64(2), key(2, 0), varint(6)),
  ));
  assert.deepEqual(plain(d), [{
    labels: { __name__: "b" },
    timestamps: [6],
    values: ["4000000000000000"],
  }]);
});

Deno.test("decodeWriteRequest() accepts non-minimal keys and lengths", () => {
  // 0x8a 0x00 is key 0x0a in two bytes, 0x88 0x00 is length 8 in two bytes.
  const twoBytes = (n: number) => [0x80 | n, 0x00];
  const nonMinimalLen = (k: number, body: Uint8Array) =>
    bytes(twoBytes(k), twoBytes(body.length), body);
  const lbl = bytes(twoBytes(0x0a), twoBytes(8), "__name__", [0x12, 0x01], "u");
  const smp = bytes(twoBytes(0x09), f64(4), [0x10, 0x87, 0x80, 0x80, 0x80, 0x00]); // 7 in 5 bytes
  const d = decodeRaw(
    nonMinimalLen(0x0a, bytes(nonMinimalLen(0x0a, lbl), nonMinimalLen(0x12, smp))),
  );
  assert.deepEqual(plain(d), [{
    labels: { __name__: "u" },
    timestamps: [7],
    values: ["4010000000000000"],
  }]);
});

Deno.test("decodeWriteRequest() skips unknown fields of every wire type, and reads metadata, exemplars and histograms", () => {
  const unknown = bytes(
    key(15, 0),
    varint(2n ** 64n - 1n),
    key(16, 1),
    f64(1),
    len(17, "abc"),
    key(18, 5),
    [1, 2, 3, 4],
    key(1000, 0),
    [0],
  );
  const raw = bytes(
    unknown,
    len(3, key(1, 0), [1], len(2, "up"), len(4, "help"), len(5, "unit")), // metadata
    series(
      unknown,
      len(1, unknown, len(1, "__name__"), unknown, len(2, "up"), unknown),
      len(3, label("trace_id", "abc"), key(2, 1), f64(1), key(3, 0), varint(5)), // exemplar
      len(4, key(1, 0), [3], key(2, 1), f64(2)), // native histogram
      len(2, unknown, key(1, 1), f64(3), unknown, key(2, 0), varint(9), unknown),
      unknown,
    ),
    unknown,
  );
  const d = decodeRaw(raw);
  assert.deepEqual(plain(d), [{
    labels: { __name__: "up" },
    timestamps: [9],
    values: ["4008000000000000"],
  }, {
    // The histogram's entry: count_int 3 then count_float 2 (a oneof: the
    // last wins), no timestamp (0); its presence value is its count.
    labels: { __name__: "up" },
    timestamps: [0],
    values: ["4000000000000000"],
  }]);
  assert.deepEqual(d.series[0].exemplars, [{
    labels: [{ name: "trace_id", value: "abc" }],
    timestamp: 5,
  }]);
  assert.equal(d.series[1].histograms![0].float, true);
  assert.deepEqual(d.metadata, [{ metric: "up", type: "counter", help: "help", unit: "unit" }]);
  assert.equal(d.samples, 1);
  assert.equal(d.histograms, 1);
  assert.equal(d.exemplars, 1);
});

Deno.test("parseWriteRequest() decodes an uncompressed WriteRequest", () => {
  const d = parseWriteRequest(series(up, oneSample), LIMITS);
  assert.equal(d.samples, 1);
});

// ---------------------------------------------------------------------------
// Refusals. Each row: a body (compressed unless `raw`), limits, message.

interface Row {
  name: string;
  raw?: Uint8Array;
  compressed?: Uint8Array;
  limits?: DecodeLimits;
  message: string | RegExp;
}

const P = "Cannot decode write request: ";
const validRaw = encodeWriteRequest(nodeExporterSeries(50));
const validBody = snappyCompress(validRaw);

function withHeader(header: number[], rest: Uint8Array): Uint8Array {
  let i = 0;
  while (rest[i] >= 0x80) i++;
  return bytes(header, rest.subarray(i + 1));
}

const rows: Row[] = [
  // snappy
  {
    name: "rejects a snappy header above the limit",
    compressed: withHeader(varint(40_000_000), validBody),
    message: `${P}snappy length 40000000 exceeds limit 33554432`,
  },
  {
    name: "rejects a snappy header declaring 4 GiB without allocating",
    compressed: bytes(varint(2 ** 32), [0, 0x41]),
    limits: { maxDecodedBytes: 2 ** 40 },
    message: `${P}snappy length 4294967296 exceeds limit 2147483647`,
  },
  {
    name: "rejects a snappy header declaring 4 GiB - 1",
    compressed: bytes(varint(2 ** 32 - 1), [0, 0x41]),
    message: `${P}snappy length 4294967295 exceeds limit 33554432`,
  },
  { name: "rejects an empty body", compressed: bytes(), message: `${P}snappy header is truncated` },
  {
    name: "rejects a truncated snappy header",
    compressed: bytes([0x80, 0x80]),
    message: `${P}snappy header is truncated`,
  },
  {
    name: "rejects a snappy header longer than 5 bytes",
    compressed: bytes([0x81, 0x80, 0x80, 0x80, 0x80, 0x00]),
    message: `${P}snappy header is longer than 5 bytes`,
  },
  {
    name: "rejects snappy data that expands past its declared length",
    compressed: withHeader(varint(validRaw.length - 1), validBody),
    message: `${P}snappy data expands past its declared length ${validRaw.length - 1}`,
  },
  {
    name: "rejects snappy data that expands past the limit",
    compressed: withHeader(varint(1000), validBody),
    limits: { maxDecodedBytes: 1000 },
    message: `${P}snappy data expands past its declared length 1000`,
  },
  {
    name: "rejects snappy data shorter than declared",
    compressed: withHeader(varint(validRaw.length + 1), validBody),
    message: `${P}invalid snappy data: ${validRaw.length} bytes decoded, header declares ${
      validRaw.length + 1
    }`,
  },
  {
    name: "rejects a snappy copy before the start of the output",
    compressed: bytes([10, 0x04, 0x61, 0x62, 0x0d, 0x03]),
    message: `${P}invalid snappy data: copy offset 3 at byte 4 with 2 bytes decoded`,
  },
  {
    name: "rejects a snappy literal past the end of the input",
    compressed: bytes([10, 0x0c, 0x61]),
    message: `${P}invalid snappy data: literal of 4 bytes at byte 1 runs past the end`,
  },
  {
    name: "rejects a snappy literal with a 2^32 length",
    compressed: bytes([10, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x61]),
    message: `${P}invalid snappy data: literal of 4294967296 bytes at byte 1 runs past the end`,
  },
  {
    name: "rejects a truncated snappy copy",
    compressed: bytes([10, 0x04, 0x61, 0x62, 0x02, 0x01]),
    message: `${P}invalid snappy data: truncated copy at byte 4`,
  },
  // protobuf structure
  {
    name: "rejects a truncated protobuf",
    raw: validRaw.subarray(0, validRaw.length - 3),
    message: /^Cannot decode write request: truncated field at byte \d+: length \d+ exceeds/,
  },
  {
    name: "rejects a field running past its sub-message",
    raw: series(len(1, len(1, "__name__"), key(2, 2), [10], "u")),
    message: `${P}series 0: truncated field at byte 15: length 10 exceeds the 1 bytes left`,
  },
  {
    name: "rejects a truncated varint",
    raw: series(up, len(2, key(2, 0), [0x80, 0x80])),
    message: `${P}series 0: truncated varint at byte 21 (2 bytes left in its message)`,
  },
  {
    name: "rejects a varint longer than 10 bytes",
    raw: bytes(key(15, 0), Array(10).fill(0xff), [0x01]),
    message: `${P}varint at byte 1 is longer than 10 bytes`,
  },
  {
    name: "rejects a varint above 64 bits",
    raw: bytes(key(15, 0), Array(9).fill(0xff), [0x02]),
    message: `${P}varint at byte 1 overflows 64 bits`,
  },
  {
    name: "rejects a key longer than 5 bytes",
    raw: bytes([0x8a, 0x80, 0x80, 0x80, 0x80, 0x00]),
    message: `${P}varint at byte 0 overflows 32 bits`,
  },
  {
    name: "rejects a length above 32 bits",
    raw: bytes([0x0a, 0xff, 0xff, 0xff, 0xff, 0x1f]),
    message: `${P}varint at byte 1 overflows 32 bits`,
  },
  {
    name: "rejects field number 0",
    raw: bytes([0x00, 0x00]),
    message: `${P}invalid field number 0 at byte 0`,
  },
  {
    name: "rejects wire type 7",
    raw: series(up, [0x2f]),
    message: `${P}series 0: invalid wire type 7 for field 5 at byte 18`,
  },
  {
    name: "rejects a start group",
    raw: bytes(key(5, 3), key(5, 4)),
    message: `${P}field 5 at byte 1 uses wire type 3 (SGROUP): groups are not supported`,
  },
  {
    name: "rejects an end group",
    raw: series(up, key(9, 4)),
    message: `${P}series 0: field 9 at byte 19 uses wire type 4 (EGROUP): groups are not supported`,
  },
  {
    name: "rejects timeseries with the wrong wire type",
    raw: bytes(key(1, 0), [1]),
    message: `${P}WriteRequest.timeseries (field 1) has wire type 0 (VARINT), want 2 (LEN)`,
  },
  {
    name: "rejects labels with the wrong wire type",
    raw: series(key(1, 5), [0, 0, 0, 0]),
    message: `${P}series 0: TimeSeries.labels (field 1) has wire type 5 (I32), want 2 (LEN)`,
  },
  {
    name: "rejects a label name with the wrong wire type",
    raw: series(len(1, key(1, 0), [1])),
    message: `${P}series 0: Label.name (field 1) has wire type 0 (VARINT), want 2 (LEN)`,
  },
  {
    name: "rejects a sample value with the wrong wire type",
    raw: series(up, len(2, key(1, 0), [1])),
    message: `${P}series 0: Sample.value (field 1) has wire type 0 (VARINT), want 1 (I64)`,
  },
  {
    name: "rejects a sample timestamp with the wrong wire type",
    raw: series(up, len(2, key(2, 1), f64(1))),
    message: `${P}series 0: Sample.timestamp (field 2) has wire type 1 (I64), want 0 (VARINT)`,
  },
  {
    name: "rejects a truncated sample value",
    raw: series(up, len(2, key(1, 1), [0, 0, 0, 0])),
    message: `${P}series 0: truncated fixed64 at byte 21 (4 bytes left in its message)`,
  },
  {
    name: "rejects metadata with the wrong wire type",
    raw: bytes(key(3, 0), [1]),
    message: `${P}WriteRequest.metadata (field 3) has wire type 0 (VARINT), want 2 (LEN)`,
  },
  // strings
  {
    name: "rejects a label name that is not valid UTF-8",
    raw: series(up, label([0x6a, 0xff], "x"), oneSample),
    message: `${P}series 0 has a label name that is not valid UTF-8`,
  },
  {
    name: "rejects a label value that is not valid UTF-8",
    raw: series(up, label("job", [0xc3, 0x28]), oneSample),
    message: `${P}series 0 has a label value of label "job" that is not valid UTF-8`,
  },
  {
    name: "rejects an overlong UTF-8 encoding",
    raw: series(up, label("job", [0xc0, 0x80]), oneSample),
    message: `${P}series 0 has a label value of label "job" that is not valid UTF-8`,
  },
  {
    name: "rejects a UTF-8 encoded surrogate",
    raw: series(up, label("job", [0xed, 0xa0, 0x80]), oneSample),
    message: `${P}series 0 has a label value of label "job" that is not valid UTF-8`,
  },
  {
    name: "rejects NUL in a label name",
    raw: series(up, label("a\0b", "x"), oneSample),
    message: `${P}series 0 has a label name that contains a NUL character`,
  },
  {
    name: "rejects NUL in a long ASCII label value",
    raw: series(up, label("job", "a".repeat(100) + "\0"), oneSample),
    message: `${P}series 0 has a label value of label "job" that contains a NUL character`,
  },
  {
    name: "rejects NUL in a long non-ASCII label value",
    raw: series(up, label("job", "é".repeat(20) + "\0"), oneSample),
    message: `${P}series 0 has a label value of label "job" that contains a NUL character`,
  },
  // label rules
  {
    name: "rejects an empty label name",
    raw: series(up, label("", "x"), oneSample),
    message: `${P}series 0 has an empty label name`,
  },
  {
    name: "rejects a label without a name field",
    raw: series(up, len(1, len(2, "x")), oneSample),
    message: `${P}series 0 has an empty label name`,
  },
  {
    name: "rejects a duplicate label name",
    raw: bytes(series(up, oneSample), series(up, label("job", "a"), label("job", "b"), oneSample)),
    message: `${P}series 1 has duplicate label name "job"`,
  },
  {
    name: "rejects a duplicate label name among unsorted labels",
    raw: series(label("job", "a"), up, label("job", "b"), oneSample),
    message: `${P}series 0 has duplicate label name "job"`,
  },
  {
    name: "rejects a duplicate label name when one value is empty",
    raw: series(up, label("job", ""), label("job", "b"), oneSample),
    message: `${P}series 0 has duplicate label name "job"`,
  },
  {
    name: "rejects a series without __name__",
    raw: series(label("job", "a"), oneSample),
    message: `${P}series 0 has no __name__ label`,
  },
  {
    name: "rejects a series without labels",
    raw: series(oneSample),
    message: `${P}series 0 has no __name__ label`,
  },
  {
    name: "rejects an empty __name__",
    raw: series(label("__name__", ""), label("job", "a"), oneSample),
    message: `${P}series 0 has an empty __name__ label`,
  },
  {
    name: "rejects too many labels",
    raw: series(up, label("a", "1"), label("b", "2"), label("c", "3"), oneSample),
    limits: { ...LIMITS, maxLabelsPerSeries: 3 },
    message: `${P}series 0 has more than 3 labels`,
  },
  {
    name: "rejects more than 4096 labels by default",
    raw: series(
      up,
      ...Array.from({ length: 4096 }, (_, i) => label(`l${String(i).padStart(4, "0")}`, "v")),
      oneSample,
    ),
    message: `${P}series 0 has more than 4096 labels`,
  },
  {
    name: "rejects a label name longer than the limit",
    raw: series(up, label("abcdefghi", "x"), oneSample),
    limits: { ...LIMITS, maxLabelBytes: 8 },
    message: `${P}series 0 has a label name of 9 bytes, limit 8`,
  },
  {
    name: "rejects a label value longer than 64 KiB by default",
    raw: series(up, label("big", "x".repeat(65537)), oneSample),
    message: `${P}series 0 has a label value of label "big" of 65537 bytes, limit 65536`,
  },
  // timestamps
  {
    name: "rejects a timestamp after year 9999",
    raw: series(up, sample(1, MAX_TIMESTAMP_MS + 1)),
    message: `${P}series 0 has timestamp 253402300800000 outside years 0001..9999`,
  },
  {
    name: "rejects a timestamp before year 0001",
    raw: series(up, sample(1, MIN_TIMESTAMP_MS - 1)),
    message: `${P}series 0 has timestamp -62135596800001 outside years 0001..9999`,
  },
  {
    name: "rejects the largest int64 timestamp, printed exactly",
    raw: series(up, sample(1, 2n ** 63n - 1n)),
    message: `${P}series 0 has timestamp 9223372036854775807 outside years 0001..9999`,
  },
  {
    name: "rejects the smallest int64 timestamp, printed exactly",
    raw: series(up, sample(1, -(2n ** 63n))),
    message: `${P}series 0 has timestamp -9223372036854775808 outside years 0001..9999`,
  },
  {
    name: "rejects a timestamp just above 2^53, printed exactly",
    raw: series(up, sample(1, 2n ** 53n + 1n)),
    message: `${P}series 0 has timestamp 9007199254740993 outside years 0001..9999`,
  },
];

for (const row of rows) {
  Deno.test(`decodeWriteRequest() ${row.name}`, () => {
    const body = row.compressed ?? snappyCompress(row.raw!);
    assert.throws(
      () => decodeWriteRequest(body, row.limits ?? LIMITS),
      (err: unknown) => {
        assert.ok(err instanceof BadRequestError, `not a BadRequestError: ${err}`);
        assert.equal(err.status, 400);
        if (typeof row.message === "string") assert.equal(err.message, row.message);
        else assert.match(err.message, row.message);
        return true;
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Differential fuzzing against protobufjs's reflection decoder.

/** mulberry32: a small seeded PRNG, so that failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  let buf: Uint8Array = Uint8Array.from(input);
  const rounds = int(4) === 0 ? 2 : 1;
  for (let r = 0; r < rounds; r++) {
    switch (int(6)) {
      case 0: // bit flip
        if (buf.length > 0) buf[int(buf.length)] ^= 1 << int(8);
        break;
      case 1: // truncation
        buf = buf.slice(0, int(buf.length + 1));
        break;
      case 2: { // insertion of 1..4 random bytes
        const at = int(buf.length + 1);
        const ins = Array.from({ length: 1 + int(4) }, () => int(256));
        buf = bytes(buf.subarray(0, at), ins, buf.subarray(at));
        break;
      }
      case 3: // random byte
        if (buf.length > 0) buf[int(buf.length)] = int(256);
        break;
      case 4: { // deletion of a range
        const at = int(buf.length + 1);
        buf = bytes(buf.subarray(0, at), buf.subarray(at + 1 + int(8)));
        break;
      }
      default: { // interesting byte
        const interesting = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x09, 0x10, 0x1a];
        if (buf.length > 0) buf[int(buf.length)] = interesting[int(interesting.length)];
      }
    }
  }
  return buf;
}

/**
 * The reference decoder: protobufjs reflection over remote.proto with
 * metadata, exemplars and histograms declared as `bytes`: only the samples
 * are compared here (the data-model tests check the rest); protobufjs
 * does not bound a sub-message by its parent's length, so a mangled
 * exemplar would make it swallow the fields that follow.
 */
const OpaqueWriteRequest = protobuf.parse(
  [
    ["repeated MetricMetadata metadata = 3;", "repeated bytes metadata = 3;"],
    ["repeated Exemplar exemplars = 3;", "repeated bytes exemplars = 3;"],
    ["repeated Histogram histograms = 4;", "repeated bytes histograms = 4;"],
  ].reduce((text, [from, to]) => replaceOnce(text, from, to), REMOTE_PROTO),
  { keepCase: true },
).root.lookupType("prometheus.WriteRequest");

function replaceOnce(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `remote.proto no longer has ${from}`);
  return text.replace(from, to);
}

/** protobufjs's view of a WriteRequest, normalised to what we promise. */
function reference(raw: Uint8Array) {
  // deno-lint-ignore no-explicit-any
  const msg = OpaqueWriteRequest.decode(raw) as any;
  // deno-lint-ignore no-explicit-any
  return (msg.timeseries as any[]).map((ts) => ({
    labels: (ts.labels as { name: string; value: string }[])
      .filter((l) => l.value !== "")
      .map((l) => ({ name: l.name, value: l.value }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    // deno-lint-ignore no-explicit-any
    timestamps: (ts.samples as any[]).map((s) => Number(String(s.timestamp))),
    // deno-lint-ignore no-explicit-any
    values: (ts.samples as any[]).map((s) => s.value as number),
  })).filter((s) => s.timestamps.length > 0);
}

function checkInvariants(d: DecodedWrite) {
  let samples = 0;
  for (const s of d.series) {
    // A series without samples carries exemplars; histogram entries are not samples.
    assert.ok(s.timestamps.length > 0 || (s.exemplars?.length ?? 0) > 0);
    assert.equal(s.values.length, s.timestamps.length);
    if (s.histograms) assert.equal(s.histograms.length, s.timestamps.length);
    else samples += s.timestamps.length;
    assert.ok(s.labels.some((l) => l.name === "__name__"));
    for (let i = 0; i < s.labels.length; i++) {
      const l = s.labels[i];
      assert.ok(l.name !== "" && l.value !== "");
      assert.ok(!l.name.includes("\0") && !l.value.includes("\0"));
      if (i > 0) assert.ok(s.labels[i - 1].name < l.name);
    }
    for (const t of s.timestamps) {
      assert.ok(Number.isSafeInteger(t) && t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS);
    }
  }
  assert.equal(d.samples, samples);
}

function seeds(): Uint8Array[] {
  const special: PayloadSeries[] = [
    {
      labels: { job: "api", __name__: "http_requests_total", "é": "ü", empty: "", code: "200" },
      samples: [
        { value: 1, timestamp: 1_700_000_000_000 },
        { value: -0, timestamp: -1 },
        { value: Infinity, timestamp: MAX_TIMESTAMP_MS },
        { value: 0, timestamp: 3, valueBits: STALE_NAN_BITS },
      ],
    },
    { labels: { __name__: "no_samples" }, samples: [] },
    {
      labels: [{ name: "z", value: "1" }, { name: "__name__", value: "m" }, {
        name: "a",
        value: "🦕",
      }],
      samples: [{ value: 0.5, timestamp: MIN_TIMESTAMP_MS }],
    },
  ];
  return [
    encodeWriteRequest(nodeExporterSeries(4)),
    encodeWriteRequest(special),
    bytes(
      len(3, key(1, 0), [1], len(2, "up")),
      series(
        up,
        label("job", "x"),
        len(3, label("trace_id", "abc"), key(2, 1), f64(1)),
        len(4, key(1, 0), [3]),
        key(15, 5),
        [1, 2, 3, 4],
        oneSample,
        sample(2, -5),
      ),
      series(label("__name__", "b"), sample(3, 2 ** 45)),
    ),
  ];
}

Deno.test("decodeWriteRequest() agrees with protobufjs or refuses, on 3000 mutated payloads", () => {
  const rand = prng(0x5eed);
  const bases = seeds();
  const stats = { compared: 0, refused: 0 };
  for (let n = 0; n < 3000; n++) {
    const base = bases[n % bases.length];
    // Two thirds mutate the protobuf (then compress), one third the snappy body.
    let body: Uint8Array;
    if (n % 3 === 2) {
      body = mutate(snappyCompress(base), rand);
    } else {
      body = snappyCompress(mutate(base, rand));
    }
    const limits: DecodeLimits = { maxDecodedBytes: 1 << 16 };
    let ours: DecodedWrite;
    try {
      ours = decodeWriteRequest(body, limits);
    } catch (err) {
      if (!(err instanceof BadRequestError)) {
        throw new Error(`mutation ${n}: ${err} is not a BadRequestError`, { cause: err });
      }
      assert.ok(!err.message.includes("\n"), `mutation ${n}: message is not one line`);
      stats.refused++;
      continue;
    }
    checkInvariants(ours);
    // Whatever we accept, protobufjs must decode too, and to the same.
    const raw: Uint8Array = snappy.uncompress(body);
    const theirs = reference(raw);
    stats.compared++;
    // protobufjs's reference reads float samples only.
    const mine = ours.series.filter((s) => !s.histograms && s.timestamps.length).map((s) => ({
      labels: s.labels.map((l) => ({ name: l.name, value: l.value })),
      timestamps: s.timestamps,
      values: [...s.values],
    }));
    // NaN payloads are compared elsewhere (protobufjs reads values through a
    // JS number); here NaN equals NaN, and -0 differs from 0.
    assert.deepEqual(mine, theirs, `mutation ${n} decodes differently`);
  }
  // The mutations must exercise both outcomes.
  console.log(`  ${JSON.stringify(stats)}`);
  assert.ok(stats.compared > 300, JSON.stringify(stats));
  assert.ok(stats.refused > 300, JSON.stringify(stats));
});
