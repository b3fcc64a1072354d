/**
 * The remote-write HTTP contract as a table (prometheus
 * `storage/remote/write_handler_test.go` style): one row per status the
 * write handler can answer, in the order its checks run (405 method, 415
 * encoding and type, 413 size, 400 snappy/protobuf/labels, 204). Run
 * without a database against writeHandler (tests/remote_write/handler_test.ts)
 * and over raw HTTP against a connector on PostgreSQL (tests/http_contract_test.ts).
 */
import { protobuf } from "../../deps.ts";
import {
  encodeWriteRequest,
  type PayloadSeries,
  snappyCompress,
  writeRequestBody,
} from "./payload.ts";
import { varintBytes } from "../../src/wire/varint.ts";

/** --web.max-request-size of the table. */
export const MAX_REQUEST = 16 * 1024;
/** --web.max-decoded-size of the table. */
export const MAX_DECODED = 64 * 1024;
/** The headers of a remote write 1.0 request. */
export const SNAPPY = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };

const enc = new TextEncoder();

/** The bytes of `parts`, one after the other. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const concat = concatBytes;

/** A protobuf Label with raw bytes (for invalid UTF-8, which protobufjs cannot produce). */
function rawSeries(labels: [Uint8Array, Uint8Array][], timestamp: number): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32(1 << 3 | 2).fork(); // WriteRequest.timeseries
  for (const [name, value] of labels) {
    w.uint32(1 << 3 | 2).fork(); // TimeSeries.labels
    w.uint32(1 << 3 | 2).bytes(name);
    w.uint32(2 << 3 | 2).bytes(value);
    w.ldelim();
  }
  w.uint32(2 << 3 | 2).fork(); // TimeSeries.samples
  w.uint32(1 << 3 | 1).double(1);
  w.uint32(2 << 3 | 0).int64(timestamp);
  w.ldelim();
  w.ldelim();
  return w.finish();
}

/** A snappy varint length header. */
function snappyHeader(length: number): number[] {
  return varintBytes(length);
}

/** Replaces the snappy length header of `compressed` with `length`. */
function withSnappyLength(compressed: Uint8Array, length: number): Uint8Array {
  let i = 0;
  while (compressed[i] & 0x80) i++;
  return concat([Uint8Array.from(snappyHeader(length)), compressed.subarray(i + 1)]);
}

export const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);

/** A valid series of metric `name` with `n` samples one second apart. */
export function series(name: string, n: number, extra: Record<string, string> = {}): PayloadSeries {
  return {
    labels: { __name__: name, job: "contract", ...extra },
    samples: Array.from({ length: n }, (_, i) => ({ value: i, timestamp: T0 + i * 1000 })),
  };
}

// A valid series of a metric that no rejected request may ever store: it
// rides in front of each bad series, so a partial write would show.
const REJECTED = series("contract_rejected", 1);
export const validBody = writeRequestBody([series("contract_ok", 3)]);
const aliasBody = writeRequestBody([series("contract_alias", 2)]);
const truncated = (() => {
  const raw = encodeWriteRequest([REJECTED, series("contract_rejected", 5, { x: "y" })]);
  return snappyCompress(raw.subarray(0, raw.length - 3));
})();
// 200 KB of zeros: snappy compresses it far below the request limit.
const zeros = snappyCompress(new Uint8Array(200_000));
const invalidUtf8 = snappyCompress(concat([
  encodeWriteRequest([REJECTED]),
  rawSeries([
    [enc.encode("__name__"), enc.encode("contract_rejected")],
    [enc.encode("job"), Uint8Array.from([0x63, 0xff, 0xfe])],
  ], T0),
]));

export interface Row {
  name: string;
  method: string;
  path?: string;
  headers: Record<string, string>;
  body?: Uint8Array | Uint8Array[];
  expectedStatus: number;
  bodyIncludes?: string;
}

export const ROWS: Row[] = [
  {
    name: "GET /write is 405",
    method: "GET",
    headers: {},
    expectedStatus: 405,
    bodyIncludes: "Method GET not allowed",
  },
  {
    name: "PUT with a valid body is 405 (method is checked first)",
    method: "PUT",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 405,
  },
  {
    name: "missing Content-Encoding is 415",
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: "Content-Encoding",
  },
  {
    name: "Content-Encoding gzip is 415",
    method: "POST",
    headers: { "content-encoding": "gzip", "content-type": "application/x-protobuf" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: '"gzip"',
  },
  {
    name: "Content-Type application/json is 415",
    method: "POST",
    headers: { "content-encoding": "snappy", "content-type": "application/json" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: '"application/json"',
  },
  {
    name: "missing Content-Type is 415",
    method: "POST",
    headers: { "content-encoding": "snappy" },
    body: validBody,
    expectedStatus: 415,
  },
  {
    // 2.0 is taken (tests/data_model/); a message type we do not take is 415.
    name: "an unknown protobuf message (proto=io.prometheus.write.v3.Request) is 415",
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: "io.prometheus.write.v3.Request",
  },
  {
    name: "an oversized body with a wrong encoding is 415 (headers before size)",
    method: "POST",
    headers: { "content-type": "application/x-protobuf", "content-length": "100000000" },
    body: new Uint8Array(10),
    expectedStatus: 415,
  },
  {
    name: "Content-Length over --web.max-request-size is 413 before the body is read",
    method: "POST",
    headers: { ...SNAPPY, "content-length": "100000000" },
    body: new Uint8Array(10),
    expectedStatus: 413,
    bodyIncludes: "100000000",
  },
  {
    name: "a chunked body growing over --web.max-request-size is 413",
    method: "POST",
    headers: SNAPPY,
    body: [new Uint8Array(MAX_REQUEST / 2), new Uint8Array(MAX_REQUEST / 2), new Uint8Array(8)],
    expectedStatus: 413,
    bodyIncludes: String(MAX_REQUEST),
  },
  {
    name: "a body of exactly --web.max-request-size is read (400 for its content, not 413)",
    method: "POST",
    headers: SNAPPY,
    body: new Uint8Array(MAX_REQUEST).fill(0xff),
    expectedStatus: 400,
  },
  {
    name: "a snappy header declaring 4 GiB is 400 before decompressing",
    method: "POST",
    headers: SNAPPY,
    body: Uint8Array.from([...snappyHeader(4 * 1024 ** 3), 0x00, 0x00, 0x00]),
    expectedStatus: 400,
    bodyIncludes: "4294967296",
  },
  {
    name: "a snappy header over --web.max-decoded-size is 400",
    method: "POST",
    headers: SNAPPY,
    body: zeros,
    expectedStatus: 400,
    bodyIncludes: `limit ${MAX_DECODED}`,
  },
  {
    name: "a snappy body expanding past its (small) declared length is 400",
    method: "POST",
    headers: SNAPPY,
    body: withSnappyLength(zeros, 100),
    expectedStatus: 400,
    bodyIncludes: "snappy",
  },
  {
    name: "a body that is not snappy is 400",
    method: "POST",
    headers: SNAPPY,
    body: enc.encode("this is not snappy at all, not even close"),
    expectedStatus: 400,
  },
  {
    name: "a truncated protobuf is 400",
    method: "POST",
    headers: SNAPPY,
    body: truncated,
    expectedStatus: 400,
    bodyIncludes: "Cannot decode write request",
  },
  {
    name: "an empty label name is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: [{ name: "__name__", value: "contract_rejected" }, { name: "", value: "v" }],
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: "series 1 has an empty label name",
  },
  {
    name: "a duplicate label name is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: [
        { name: "__name__", value: "contract_rejected" },
        { name: "job", value: "a" },
        { name: "job", value: "b" },
      ],
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: 'duplicate label name "job"',
  },
  {
    name: "a series without __name__ is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: { job: "contract" },
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: "series 1 has no __name__ label",
  },
  {
    name: "a label value that is not UTF-8 is 400",
    method: "POST",
    headers: SNAPPY,
    body: invalidUtf8,
    expectedStatus: 400,
    bodyIncludes: "not valid UTF-8",
  },
  {
    name: "a valid request is 204",
    method: "POST",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 204,
  },
  {
    name: "a valid request with Content-Type parameters (proto=prometheus.WriteRequest) is 204",
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf; proto=prometheus.WriteRequest",
    },
    body: validBody,
    expectedStatus: 204,
  },
  {
    name: "an empty WriteRequest is 204",
    method: "POST",
    headers: SNAPPY,
    body: snappyCompress(new Uint8Array(0)),
    expectedStatus: 204,
  },
  {
    name: "a valid request sent chunked is 204",
    method: "POST",
    headers: SNAPPY,
    body: [validBody.subarray(0, 10), validBody.subarray(10)],
    expectedStatus: 204,
  },
  {
    name: "POST /api/v1/write is an alias of /write",
    method: "POST",
    path: "/api/v1/write",
    headers: SNAPPY,
    body: aliasBody,
    expectedStatus: 204,
  },
  {
    name: "an unknown path is 404",
    method: "POST",
    path: "/api/v1/push",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 404,
    bodyIncludes: "/api/v1/push",
  },
];
