import assert from "node:assert/strict";
import { protobuf } from "../../deps.ts";
import { BadRequestError } from "../../src/errors.ts";
import { H_COUNT, H_SUM, H_ZERO_COUNT } from "../../src/remote_write/data_model.ts";
import { type DecodeLimits, parseWriteRequest } from "../../src/remote_write/decode.ts";
import {
  type DecodedWriteV2,
  decodeWriteRequestV2,
  parseWriteRequestV2,
  scanWriteRequestV2,
} from "../../src/remote_write/decode_v2.ts";
import { snappyCompress, STALE_NAN_BITS, writeRequestBody } from "../helpers/payload.ts";
import {
  bitsOf,
  customHistogram,
  floatHistogram,
  intHistogram,
  type ModelSeriesSpec,
  replaceDouble,
  v2Request,
} from "./build.ts";

const LIMITS: DecodeLimits = { maxDecodedBytes: 32 << 20 };
const T = 1_700_000_000_000;

function decode(series: ModelSeriesSpec[]): DecodedWriteV2 {
  return decodeWriteRequestV2(snappyCompress(v2Request(series)), LIMITS);
}

function refused(raw: Uint8Array, pattern: RegExp): void {
  assert.throws(() => parseWriteRequestV2(raw, LIMITS), (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `not a BadRequestError: ${err}`);
    assert.equal(err.status, 400);
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("decodeWriteRequestV2() resolves labels from the symbol table like 1.0 decodes them", () => {
  const series = Array.from({ length: 50 }, (_, i) => ({
    labels: { __name__: "up", job: `j${i % 3}`, instance: `host-${i}:9100` },
    samples: [{ value: i + 0.5, timestamp: T + i }, { value: -i, timestamp: T + i + 15_000 }],
  }));
  const v2 = decode(series);
  const v1 = parseWriteRequest(
    snappyDecompressed(
      writeRequestBody(series.map((s) => ({ ...s, labels: sortedLabels(s.labels) }))),
    ),
    LIMITS,
  );
  assert.equal(v2.samples, 100);
  assert.equal(v2.histograms, 0);
  assert.deepEqual(
    v2.series.map((s) => ({ labels: s.labels, t: s.timestamps, v: [...s.values] })),
    v1.series.map((s) => ({ labels: s.labels, t: s.timestamps, v: [...s.values] })),
  );
});

function sortedLabels(l: Record<string, string>) {
  return Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, value]) => ({
    name,
    value,
  }));
}

function snappyDecompressed(body: Uint8Array): Uint8Array {
  // The 1.0 helper only builds compressed bodies; decode through the public path instead.
  return protobufRoundTrip(body);
}

import { uncompressSnappyBlock } from "../../src/wire/snappy.ts";
function protobufRoundTrip(body: Uint8Array): Uint8Array {
  return uncompressSnappyBlock(body, 32 << 20, "test");
}

Deno.test("decodeWriteRequestV2() keeps the staleness marker bit for bit", () => {
  const raw = v2Request([{
    labels: { __name__: "up" },
    samples: [{ value: 1.2345e-300, timestamp: T }],
  }]);
  assert.equal(replaceDouble(raw, 1.2345e-300, STALE_NAN_BITS), 1);
  const d = parseWriteRequestV2(raw, LIMITS);
  assert.equal(bitsOf(d.series[0].values, 0), STALE_NAN_BITS);
});

Deno.test("decodeWriteRequestV2() decodes integer, float and custom-bucket histograms", () => {
  const d = decode([
    { labels: { __name__: "h_int", job: "a" }, histograms: [intHistogram(T), intHistogram(T + 1)] },
    { labels: { __name__: "h_float" }, histograms: [floatHistogram(T)] },
    { labels: { __name__: "h_custom" }, histograms: [customHistogram(T)] },
  ]);
  assert.equal(d.samples, 0);
  assert.equal(d.histograms, 4);
  const [a, b, c] = d.series;
  assert.deepEqual(a.timestamps, [T, T + 1]);
  const h = a.histograms![0];
  assert.equal(h.float, false);
  assert.equal(h.schema, 0);
  assert.equal(h.resetHint, 2);
  assert.equal(h.scalars[H_COUNT], 7);
  assert.equal(h.scalars[H_SUM], 20.5);
  assert.equal(h.scalars[H_ZERO_COUNT], 1);
  assert.deepEqual([...h.positiveSpans], [0, 4]);
  assert.deepEqual([...h.positiveCounts], [2, 1, 0, 3]);
  assert.deepEqual([...a.values], [7, 7], "presence values are the counts");
  const f = b.histograms![0];
  assert.equal(f.float, true);
  assert.equal(f.schema, 1);
  assert.equal(f.resetHint, 3);
  assert.deepEqual([...f.scalars], [10.5, -3.25, 0.01, 0.5]);
  assert.deepEqual([...f.negativeSpans], [1, 2]);
  assert.deepEqual([...f.negativeCounts], [1, 2]);
  assert.deepEqual([...f.positiveSpans], [-1, 1, 2, 2]);
  assert.deepEqual([...f.positiveCounts], [3, 0, 4]);
  const x = c.histograms![0];
  assert.equal(x.schema, -53);
  assert.deepEqual([...x.customValues], [1, 5, 10]);
  assert.deepEqual([...x.positiveCounts], [2, 3, 1]);
});

Deno.test("decodeWriteRequestV2() gives a stale histogram the staleness marker as presence value", () => {
  const raw = v2Request([{
    labels: { __name__: "h" },
    histograms: [{ count_int: 0, sum: 1.2345e-300, timestamp: T }],
  }]);
  assert.equal(replaceDouble(raw, 1.2345e-300, STALE_NAN_BITS), 1);
  const s = parseWriteRequestV2(raw, LIMITS).series[0];
  assert.equal(bitsOf(s.histograms![0].scalars, H_SUM), STALE_NAN_BITS);
  assert.equal(bitsOf(s.values, 0), STALE_NAN_BITS);
});

Deno.test("decodeWriteRequestV2() decodes exemplars, metadata and created timestamps", () => {
  const d = decode([
    {
      labels: { __name__: "http_requests_total", job: "api" },
      samples: [{ value: 5, timestamp: T, start_timestamp: T - 60_000 }],
      exemplars: [{ labels: { trace_id: "abc", span_id: "" }, value: 0.25, timestamp: T - 5 }],
      metadata: { type: 1, help: "Requests served.", unit: "" },
      created: T - 120_000,
    },
    {
      labels: { __name__: "temp_celsius" },
      samples: [{ value: 21, timestamp: T }],
      metadata: { type: 2, help: "Temperature.", unit: "celsius" },
    },
  ]);
  assert.equal(d.exemplars, 1);
  const s = d.series[0];
  assert.deepEqual(s.exemplars, [{
    labels: [{ name: "trace_id", value: "abc" }],
    timestamp: T - 5,
  }]);
  assert.deepEqual([...s.exemplarValues!], [0.25]);
  assert.deepEqual(s.created!.sort(), [T - 120_000, T - 60_000]);
  assert.deepEqual(d.metadata, [
    { metric: "http_requests_total", type: "counter", help: "Requests served.", unit: "" },
    { metric: "temp_celsius", type: "gauge", help: "Temperature.", unit: "celsius" },
  ]);
});

Deno.test("decodeWriteRequestV2() reads symbols that come after the series", () => {
  // Hand-built: timeseries (field 5) first, then symbols (field 4).
  const w = protobuf.Writer.create();
  w.uint32(5 << 3 | 2).fork();
  w.uint32(1 << 3 | 2).fork().uint32(1).uint32(2).ldelim();
  w.uint32(2 << 3 | 2).fork().uint32(1 << 3 | 1).double(3).uint32(2 << 3).int64(T).ldelim();
  w.ldelim();
  for (const s of ["", "__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  const d = parseWriteRequestV2(w.finish(), LIMITS);
  assert.deepEqual(d.series[0].labels, [{ name: "__name__", value: "up" }]);
  assert.deepEqual([...d.series[0].values], [3]);
});

// ---------------------------------------------------------------------------
// Hostile and malformed requests: 400 with a precise reason.

Deno.test("decodeWriteRequestV2() refuses a label reference outside the symbol table", () => {
  const w = protobuf.Writer.create();
  for (const s of ["", "__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  w.uint32(5 << 3 | 2).fork();
  w.uint32(1 << 3 | 2).fork().uint32(1).uint32(4_000_000_000).ldelim();
  w.uint32(2 << 3 | 2).fork().uint32(2 << 3).int64(T).ldelim();
  w.ldelim();
  refused(
    w.finish(),
    /series 0: a label value refers to symbol 4000000000 but the table has 3 symbols/,
  );
});

Deno.test("decodeWriteRequestV2() refuses an odd number of label references", () => {
  const w = protobuf.Writer.create();
  for (const s of ["", "__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  w.uint32(5 << 3 | 2).fork();
  w.uint32(1 << 3 | 2).fork().uint32(1).uint32(2).uint32(1).ldelim();
  w.uint32(2 << 3 | 2).fork().uint32(2 << 3).int64(T).ldelim();
  w.ldelim();
  refused(w.finish(), /series 0: the series has an odd number \(3\) of label references/);
});

Deno.test("decodeWriteRequestV2() refuses a symbol table that does not begin with the empty string", () => {
  const w = protobuf.Writer.create();
  for (const s of ["__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  refused(w.finish(), /symbol table must begin with the empty string, not "__name__"/);
});

Deno.test("decodeWriteRequestV2() refuses a huge label count without allocating it", () => {
  const w = protobuf.Writer.create();
  for (const s of ["", "__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  w.uint32(5 << 3 | 2).fork();
  w.uint32(1 << 3 | 2).fork();
  for (let i = 0; i < 20_000; i++) w.uint32(1);
  w.ldelim();
  w.ldelim();
  refused(w.finish(), /series 0: the series has more than 4096 labels/);
});

Deno.test("decodeWriteRequestV2() refuses samples and histograms in one series", () => {
  refused(
    v2Request([{
      labels: { __name__: "x" },
      samples: [{ value: 1, timestamp: T }],
      histograms: [intHistogram(T)],
    }]),
    /series 0: has both samples and histograms/,
  );
});

Deno.test("decodeWriteRequestV2() refuses inconsistent histograms with a precise reason", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { positive_deltas: [2, -1, -1] },
      /histogram 0: histogram positive spans cover 4 buckets but 3 positive deltas were sent/,
    ],
    [
      { positive_spans: [{ offset: 0, length: 4_000_000_000 }] },
      /span length 4000000000 exceeds 2\^31-1/,
    ],
    [{ positive_deltas: [2, -3, 0, 0] }, /positive bucket 1 has negative count -1/],
    [{ count_int: 3 }, /histogram count 3 is less than the 7 observations in its buckets/],
    [{ count_int: 2 ** 60 }, /count 1152921504606846976 exceeds 2\^53/],
    [{ schema: 9 }, /histogram schema 9 is not -4..8 or -53/],
    [{ positive_counts: [1, 2, 3, 4] }, /integer histogram has float positive bucket counts/],
    [{ custom_values: [1, 2] }, /histogram of schema 0 has custom bucket bounds/],
    [
      { positive_spans: [{ offset: 0, length: 2 }, { offset: -1, length: 2 }] },
      /positive span 1 has negative offset -1/,
    ],
    [
      { timestamp: 300_000_000_000_000 },
      /histogram timestamp 300000000000000 is outside years 0001..9999/,
    ],
  ];
  for (const [change, pattern] of cases) {
    refused(
      v2Request([{ labels: { __name__: "h" }, histograms: [intHistogram(T, change)] }]),
      pattern,
    );
  }
  refused(
    v2Request([{
      labels: { __name__: "h" },
      histograms: [{ ...customHistogram(T), custom_values: [1, 1, 10] }],
    }]),
    /custom bucket bound 1 \(1\) is not finite and above the one before/,
  );
  refused(
    v2Request([{
      labels: { __name__: "h" },
      histograms: [{ ...customHistogram(T), custom_values: [1] }],
    }]),
    /custom-bucket histogram refers to bucket 3 but has 1 bounds/,
  );
  refused(
    v2Request([{
      labels: { __name__: "h" },
      histograms: [floatHistogram(T, { zero_count_int: 1, zero_count_float: undefined })],
    }]),
    /float count but an integer zero count/,
  );
});

Deno.test("decodeWriteRequestV2() refuses a metadata reference outside the symbol table", () => {
  const w = protobuf.Writer.create();
  for (const s of ["", "__name__", "up"]) w.uint32(4 << 3 | 2).string(s);
  w.uint32(5 << 3 | 2).fork();
  w.uint32(1 << 3 | 2).fork().uint32(1).uint32(2).ldelim();
  w.uint32(2 << 3 | 2).fork().uint32(2 << 3).int64(T).ldelim();
  w.uint32(5 << 3 | 2).fork().uint32(1 << 3).uint32(1).uint32(3 << 3).uint32(77).ldelim();
  w.ldelim();
  refused(
    w.finish(),
    /series 0: the metadata help refers to symbol 77 but the table has 3 symbols/,
  );
});

Deno.test("decodeWriteRequestV2() refuses truncated and mistyped fields", () => {
  const good = v2Request([{ labels: { __name__: "up" }, samples: [{ value: 1, timestamp: T }] }]);
  refused(good.subarray(0, good.length - 3), /truncated/);
  const w = protobuf.Writer.create();
  w.uint32(4 << 3 | 0).uint32(1);
  refused(w.finish(), /Request.symbols \(field 4\) has wire type 0 \(VARINT\), want 2 \(LEN\)/);
});

Deno.test("decodeWriteRequestV2() survives random corruption with 400s only", () => {
  const base = v2Request([
    { labels: { __name__: "a", job: "x" }, samples: [{ value: 1, timestamp: T }] },
    { labels: { __name__: "h", job: "y" }, histograms: [intHistogram(T), floatHistogram(T)] },
    {
      labels: { __name__: "c" },
      samples: [{ value: 2, timestamp: T }],
      exemplars: [{ labels: { trace_id: "t" }, value: 1, timestamp: T }],
      metadata: { type: 1, help: "h", unit: "u" },
    },
  ]);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 5000; i++) {
    const b = base.slice();
    const n = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < n; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    try {
      parseWriteRequestV2(b, LIMITS);
    } catch (err) {
      assert.ok(err instanceof BadRequestError, `corruption ${i} threw ${err}`);
    }
  }
});

Deno.test("scanWriteRequestV2() counts series, labels and samples without decoding", () => {
  const raw = v2Request([
    {
      labels: { __name__: "a", job: "x" },
      samples: [{ value: 1, timestamp: T }, { value: 2, timestamp: T + 1 }],
    },
    { labels: { __name__: "b", job: "y", instance: "z" }, samples: [{ value: 1, timestamp: T }] },
  ]);
  assert.deepEqual(scanWriteRequestV2(raw), {
    series: 2,
    labels: 5,
    samples: 3,
    histograms: 0,
    exemplars: 0,
  });
  const h = scanWriteRequestV2(
    v2Request([{ labels: { __name__: "h" }, histograms: [intHistogram(T)] }]),
  );
  assert.equal(h.series, 1);
  assert.equal(h.histograms, 1);
});
