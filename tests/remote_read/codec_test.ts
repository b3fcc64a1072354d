/**
 * decodeReadRequest() and encodeReadResponse() without a database: requests
 * built with protobufjs, responses read back with protobufjs (structure)
 * and as raw bytes (value bits).
 */
import { protobuf, snappy } from "../../deps.ts";
import { ReadRequest, ReadResponse } from "../../proto/messages.ts";
import { decodeReadRequest } from "../../src/remote_read/decode.ts";
import { encodeReadResponse, type ResultSeries } from "../../src/remote_read/encode.ts";
import { BadRequestError } from "../../src/errors.ts";
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from "../../src/ingest.ts";
import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { STALE_NAN_BITS } from "../helpers/payload.ts";

function body(obj: Record<string, unknown>): Uint8Array {
  return snappy.compress(ReadRequest.encode(ReadRequest.fromObject(obj)).finish());
}

Deno.test("decodeReadRequest() returns queries, matchers and accepted types", () => {
  const decoded = decodeReadRequest(
    body({
      queries: [
        {
          start_timestamp_ms: 1_700_000_000_000,
          end_timestamp_ms: 1_700_000_060_000,
          matchers: [
            { type: 0, name: "__name__", value: "up" },
            { type: 1, name: "job", value: "" },
            { type: 2, name: "instance", value: "a.*" },
            { type: 3, name: "zone", value: "eu|us" },
          ],
          hints: { step_ms: 15_000, func: "rate" },
        },
        // Out-of-range times are clamped to what can be stored; no matchers is allowed.
        { start_timestamp_ms: "-9223372036854775808", end_timestamp_ms: "9223372036854775807" },
      ],
      accepted_response_types: [1, 0],
    }),
    1 << 20,
  );
  assertEquals(decoded, {
    queries: [
      {
        startMs: 1_700_000_000_000,
        endMs: 1_700_000_060_000,
        matchers: [
          { type: "=", name: "__name__", value: "up" },
          { type: "!=", name: "job", value: "" },
          { type: "=~", name: "instance", value: "a.*" },
          { type: "!~", name: "zone", value: "eu|us" },
        ],
      },
      { startMs: MIN_TIMESTAMP_MS, endMs: MAX_TIMESTAMP_MS, matchers: [] },
    ],
    acceptedResponseTypes: [1, 0],
  });
  assertEquals(decodeReadRequest(body({}), 1 << 20), { queries: [], acceptedResponseTypes: [] });
});

Deno.test("decodeReadRequest() refuses bad input with a 400 that says why", () => {
  const bad: [Uint8Array, string][] = [
    [new Uint8Array(0), "snappy header is truncated"],
    [snappy.compress(new Uint8Array(2000)), "snappy length 2000 exceeds limit 1000"],
    [snappy.compress(new Uint8Array([0x0a, 0x10, 0x08])), "invalid protobuf"],
    [
      body({ queries: [{}, { matchers: [{ type: 0 }, { type: 4, name: "x" }] }] }),
      "query 1 matcher 1 has unknown type 4",
    ],
  ];
  for (const [input, says] of bad) {
    const err = assertThrows(() => decodeReadRequest(input, 1000), BadRequestError, says);
    assertEquals(err.message.startsWith("Cannot decode read request: "), true, err.message);
  }
});

Deno.test("encodeReadResponse() writes what protobufjs reads, values bit for bit", () => {
  // Long strings and many samples: lengths that take multi-byte varints.
  const results: ResultSeries[][] = [];
  const bits: bigint[][][] = [];
  for (let q = 0; q < 3; q++) {
    const series: ResultSeries[] = [];
    const qbits: bigint[][] = [];
    for (let s = 0; s < (q === 1 ? 0 : 40); s++) {
      const n = s * 7;
      const timestamps = Array.from({ length: n }, (_, i) => (s % 2 ? -1 : 1) * (i * 1000 + s));
      const values = new Uint8Array(n * 8);
      const dv = new DataView(values.buffer);
      const sb: bigint[] = [];
      for (let i = 0; i < n; i++) {
        const b = i === 3
          ? STALE_NAN_BITS
          : BigInt.asUintN(64, BigInt(s * 1_000_003 + i) * 0x1000000000001n);
        dv.setBigUint64(i * 8, b); // big-endian, as float8send
        sb.push(b);
      }
      series.push({
        labels: [
          { name: "__name__", value: `metric_${q}` },
          { name: "long", value: "\u00e9\u{1F600}x".repeat(s * 20) },
        ],
        timestamps,
        valuesBE: values,
      });
      qbits.push(sb);
    }
    results.push(series);
    bits.push(qbits);
  }
  const raw = encodeReadResponse(results);
  const decoded = ReadResponse.toObject(ReadResponse.decode(raw), { longs: Number }) as {
    results: { timeseries?: { labels: unknown[]; samples?: { timestamp: number }[] }[] }[];
  };
  assertEquals(decoded.results.length, 3);
  for (let q = 0; q < 3; q++) {
    const got = decoded.results[q].timeseries ?? [];
    assertEquals(got.length, results[q].length);
    got.forEach((ts, s) => {
      assertEquals(ts.labels, results[q][s].labels);
      assertEquals((ts.samples ?? []).map((x) => x.timestamp), results[q][s].timestamps);
    });
  }
  // The value bits, read from the raw bytes with a plain protobuf walk.
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const r = protobuf.Reader.create(raw);
  const seen: bigint[] = [];
  const within = (end: number, each: (key: number) => void) => {
    while (r.pos < end) each(r.uint32());
  };
  within(r.len, () => { // ReadResponse.results
    within(r.uint32() + r.pos, () => { // QueryResult.timeseries
      within(r.uint32() + r.pos, (key) => {
        const len = r.uint32();
        if (key === 0x0a) { // labels
          r.skip(len);
          return;
        }
        within(len + r.pos, (k) => { // a Sample
          if (k === 0x09) {
            seen.push(dv.getBigUint64(r.pos, true));
            r.skip(8);
          } else r.int64();
        });
      });
    });
  });
  assertEquals(seen, bits.flat(2));
  assertEquals(encodeReadResponse([]), new Uint8Array(0));
  assertEquals(encodeReadResponse([[]]), new Uint8Array([0x0a, 0x00]));
});
