/**
 * End to end through a running connector on the real PostgreSQL: remote
 * write 1.0 with histograms, exemplars and metadata, and 2.0 requests, read
 * back through SQL and remote read, bit for bit; content negotiation and
 * the 2.0 response headers; hostile 2.0 requests get a 400 with a precise
 * reason, never a 5xx; /metrics counts what was written.
 */
import assert from "node:assert/strict";
import { snappy } from "../../deps.ts";
import { ReadRequest, ReadResponse } from "../../proto/messages.ts";
import type { Connector } from "../../src/app.ts";
import { type DecodedHistogram, parseHistogram } from "../../src/remote_write/data_model.ts";
import { ProtoReader } from "../../src/wire/protowire.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { STALE_NAN_BITS } from "../helpers/payload.ts";
import {
  bitsOf,
  customHistogram,
  floatHistogram,
  intHistogram,
  replaceDouble,
  v1Request,
  v2Request,
} from "./build.ts";

const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const V1 = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };
const V2 = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
  "x-prometheus-remote-write-version": "2.0.0",
};
const PLACEHOLDER = 1.2345e-300;

async function post(c: Connector, headers: Record<string, string>, raw: Uint8Array) {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers,
    body: snappy.compress(raw) as Uint8Array<ArrayBuffer>,
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** Remote read of metric `name` over [T - 1 h, T + 1 h]; the raw response (uncompressed). */
async function remoteRead(c: Connector, name: string): Promise<Uint8Array> {
  const req = ReadRequest.encode(ReadRequest.fromObject({
    queries: [{
      start_timestamp_ms: T - 3_600_000,
      end_timestamp_ms: T + 3_600_000,
      matchers: [{ type: 0, name: "__name__", value: name }],
    }],
  })).finish();
  const res = await fetch(`${c.url}/read`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      "x-prometheus-remote-read-version": "0.1.0",
    },
    body: snappy.compress(req) as Uint8Array<ArrayBuffer>,
  });
  const body = new Uint8Array(await res.arrayBuffer());
  assert.equal(res.status, 200, new TextDecoder().decode(body));
  return snappy.uncompress(body);
}

/** The histograms of a read response, per series, walked by hand (bit for bit). */
function histogramsOf(raw: Uint8Array): { timestamp: number; histogram: DecodedHistogram }[][] {
  const out: { timestamp: number; histogram: DecodedHistogram }[][] = [];
  const r = new ProtoReader(raw);
  const walk = (end: number, depth: number) => {
    while (r.pos < end) {
      const key = r.tag(end);
      if ((key & 7) !== 2) {
        r.skip(key, end);
        continue;
      }
      const e = r.lenEnd(end);
      if (depth < 2 && key >>> 3 === 1) {
        if (depth === 1) out.push([]);
        walk(e, depth + 1); // results → timeseries
      } else if (depth === 2 && key >>> 3 === 4) {
        out[out.length - 1].push(parseHistogram(r, e));
      }
      r.pos = e;
    }
  };
  walk(raw.length, 0);
  return out;
}

async function withConnector(name: string, fn: (c: Connector, db: FreshDatabase) => Promise<void>) {
  const db = await freshDatabase(name);
  const c = await inProcessConnector(db.uri, [], { pool: 4 });
  try {
    await fn(c, db);
  } finally {
    await c.stop();
    await db.drop();
  }
}

Deno.test("remote write 1.0 with histograms, exemplars and metadata reads back bit for bit", async () => {
  await withConnector("dm_e2e_v1", async (c, db) => {
    const raw = v1Request([
      {
        labels: { __name__: "rpc_seconds", job: "api" },
        histograms: [intHistogram(T), intHistogram(T + 15_000, { sum: PLACEHOLDER })],
      },
      { labels: { __name__: "rpc_seconds", job: "web" }, histograms: [floatHistogram(T)] },
      { labels: { __name__: "rpc_seconds", job: "nhcb" }, histograms: [customHistogram(T)] },
      {
        labels: { __name__: "requests_total", job: "api" },
        samples: [{ value: 41, timestamp: T }, { value: 42, timestamp: T + 15_000 }],
        exemplars: [{ labels: { trace_id: "4bf92f35" }, value: 0.125, timestamp: T + 3 }],
      },
    ], [
      { type: 3, metric_family_name: "rpc_seconds", help: "RPC latency.", unit: "seconds" },
      { type: 1, metric_family_name: "requests_total", help: "Requests.", unit: "" },
    ]);
    assert.equal(replaceDouble(raw, PLACEHOLDER, STALE_NAN_BITS), 1);
    const res = await post(c, V1, raw);
    assert.equal(res.status, 204, res.text);
    assert.equal(
      res.headers.get("x-prometheus-remote-write-samples-written"),
      null,
      "1.0 unchanged",
    );

    // SQL.
    const rows = await db.sql<{ job: string; count: number; sum: number; q: number }[]>`
      SELECT job, count, sum, prom_api.histogram_quantile(0.5, histogram) AS q
      FROM prom_histogram.rpc_seconds WHERE time = ${new Date(T)} ORDER BY job`;
    assert.deepEqual(rows.map((r) => [r.job, r.count, r.sum, r.q]), [
      ["api", 7, 20.5, 1.5],
      ["nhcb", 6, 30, 1 + 4 / 3],
      ["web", 10.5, -3.25, 0.5 + (Math.SQRT1_2 - 0.5) * (1.75 / 3)],
    ]);
    const floats = await db.sql<{ value: number }[]>`
      SELECT value FROM prom_metric.requests_total ORDER BY time`;
    assert.deepEqual(floats.map((r) => r.value), [41, 42]);
    const ex = await db.sql`SELECT value, exemplar_labels FROM prom_api.exemplars`;
    assert.deepEqual(ex.map((e) => ({ ...e })), [
      { value: 0.125, exemplar_labels: { trace_id: "4bf92f35" } },
    ]);
    const meta = await db
      .sql`SELECT metric_name, type, unit FROM prom_api.metric_metadata ORDER BY 1`;
    assert.deepEqual(meta.map((m) => ({ ...m })), [
      { metric_name: "requests_total", type: "counter", unit: "" },
      { metric_name: "rpc_seconds", type: "histogram", unit: "seconds" },
    ]);

    // The PromQL API's metadata endpoint serves it.
    const meta1 = await (await fetch(`${c.url}/api/v1/metadata?metric=rpc_seconds`)).json();
    assert.deepEqual(meta1, {
      status: "success",
      data: { rpc_seconds: [{ type: "histogram", help: "RPC latency.", unit: "seconds" }] },
    });
    const all = await (await fetch(`${c.url}/api/v1/metadata`)).json();
    assert.deepEqual(Object.keys(all.data), ["requests_total", "rpc_seconds"]);

    // The PromQL API serves them as histograms (Prometheus's JSON shape),
    // not their presence rows as floats; the stale one hides "api" later.
    const q = await (await fetch(
      `${c.url}/api/v1/query?query=rpc_seconds&time=${(T + 1000) / 1000}`,
    )).json();
    assert.equal(q.status, "success");
    interface Item {
      metric: Record<string, string>;
      value?: [number, string];
      histogram?: [number, { count: string; sum: string; buckets?: unknown[] }];
    }
    const items = q.data.result as Item[];
    assert.deepEqual(items[0], {
      metric: { __name__: "rpc_seconds", job: "api" },
      histogram: [(T + 1000) / 1000, {
        count: "7",
        sum: "20.5",
        buckets: [
          [3, "-0.001", "0.001", "1"],
          [0, "0.5", "1", "2"],
          [0, "1", "2", "1"],
          [0, "4", "8", "3"],
        ],
      }],
    });
    assert.deepEqual(
      items.map((r) => [r.metric.job, r.histogram?.[1].count, r.histogram?.[1].sum, r.value]),
      [
        ["api", "7", "20.5", undefined],
        ["nhcb", "6", "30", undefined],
        ["web", "10.5", "-3.25", undefined],
      ],
    );
    const later = await (await fetch(
      `${c.url}/api/v1/query?query=histogram_count(rpc_seconds)&time=${(T + 16_000) / 1000}`,
    )).json();
    assert.deepEqual(
      (later.data.result as Item[]).map((r) => [r.metric.job, r.value?.[1]]),
      [["nhcb", "6"], ["web", "10.5"]],
    );

    // Remote read: histograms as received, no float samples for them.
    const body = await remoteRead(c, "rpc_seconds");
    // deno-lint-ignore no-explicit-any
    const msg = ReadResponse.toObject(ReadResponse.decode(body), { longs: Number }) as any;
    const series = msg.results[0].timeseries;
    assert.equal(series.length, 3);
    for (const s of series) assert.equal(s.samples, undefined, "presence rows are not samples");
    const api = series.find((s: { labels: { value: string }[] }) =>
      s.labels.some((l) => l.value === "api")
    );
    assert.deepEqual(api.histograms[0].positive_deltas, [2, -1, -1, 3]);
    assert.equal(api.histograms[0].count_int, 7);
    assert.equal(api.histograms[0].reset_hint, 2);
    const web = series.find((s: { labels: { value: string }[] }) =>
      s.labels.some((l) => l.value === "web")
    );
    assert.equal(web.histograms[0].count_float, 10.5);
    assert.deepEqual(web.histograms[0].positive_counts, [3, 0, 4]);
    // Bit for bit, the stale sum included.
    const walked = histogramsOf(body).flat();
    const stale = walked.find((h) => h.timestamp === T + 15_000)!;
    assert.equal(bitsOf(stale.histogram.scalars, 1), STALE_NAN_BITS);
    assert.equal(walked.length, 4);

    // Float series read back untouched.
    const f = ReadResponse.toObject(
      ReadResponse.decode(await remoteRead(c, "requests_total")),
      { longs: Number },
    ) as { results: { timeseries: { samples: { value: number }[] }[] }[] };
    assert.deepEqual(f.results[0].timeseries[0].samples.map((s) => s.value), [41, 42]);
  });
});

Deno.test("remote write 2.0 is stored, answered with the Written headers, and read back", async () => {
  await withConnector("dm_e2e_v2", async (c, db) => {
    const raw = v2Request([
      {
        labels: { __name__: "up", job: "api" },
        samples: [{ value: 1, timestamp: T }, { value: PLACEHOLDER, timestamp: T + 15_000 }],
        metadata: { type: 2, help: "Target up.", unit: "" },
        exemplars: [{ labels: { trace_id: "x" }, value: 1, timestamp: T }],
        created: T - 60_000,
      },
      {
        labels: { __name__: "lat_seconds", job: "api" },
        histograms: [floatHistogram(T), intHistogram(T + 15_000)],
      },
    ]);
    assert.equal(replaceDouble(raw, PLACEHOLDER, STALE_NAN_BITS), 1);
    const res = await post(c, V2, raw);
    assert.equal(res.status, 204, res.text);
    assert.equal(res.headers.get("x-prometheus-remote-write-samples-written"), "2");
    assert.equal(res.headers.get("x-prometheus-remote-write-histograms-written"), "2");
    assert.equal(res.headers.get("x-prometheus-remote-write-exemplars-written"), "1");
    // A retried request changes nothing.
    assert.equal((await post(c, V2, raw)).status, 204);
    const [{ n, h }] = await db.sql<{ n: number; h: number }[]>`
      SELECT (SELECT count(*) FROM prom_metric.up)::int AS n,
             (SELECT count(*) FROM prom_histogram.lat_seconds)::int AS h`;
    assert.deepEqual([n, h], [2, 2]);
    const [{ bits }] = await db.sql<{ bits: string }[]>`
      SELECT encode(float8send(value), 'hex') AS bits FROM prom_metric.up WHERE time = ${new Date(
      T + 15_000,
    )}`;
    assert.equal(bits, "7ff0000000000002");
    const created = await db.sql`SELECT created FROM _prom_data.created_timestamps`;
    assert.deepEqual(created.map((r) => (r.created as Date).getTime()), [T - 60_000]);
    const walked = histogramsOf(await remoteRead(c, "lat_seconds")).flat();
    assert.deepEqual(walked.map((x) => [x.timestamp, x.histogram.float]), [[T, true], [
      T + 15_000,
      false,
    ]]);
    // /metrics counts what was written.
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    assert.match(metrics, /promscale_ingest_histograms_total 4/);
    assert.match(metrics, /promscale_ingest_requests_by_protocol_total\{protocol="2.0"\} 2/);
    assert.match(metrics, /promscale_ingest_exemplars_total [12]/);
  });
});

Deno.test("hostile remote write 2.0 requests get a 400 naming what is wrong, never a 5xx", async () => {
  await withConnector("dm_e2e_hostile", async (c) => {
    const enc = new TextEncoder();
    const bytes = (...parts: number[][]) => new Uint8Array(parts.flat());
    const str = (field: number, s: string) => [field << 3 | 2, s.length, ...enc.encode(s)];
    const symbols = [...str(4, ""), ...str(4, "__name__"), ...str(4, "up")];
    const sample = [2 << 3 | 2, 2, 2 << 3, 1];
    const rows: [string, Uint8Array, RegExp][] = [
      [
        "label reference out of range",
        bytes(
          symbols,
          [5 << 3 | 2, 2 + 3 + sample.length, 1 << 3 | 2, 3, 1, 0x80 + 0x7f, 0x7f],
          sample,
        ),
        /a label value refers to symbol 16383 but the table has 3 symbols/,
      ],
      [
        "huge span length",
        v2Request([{
          labels: { __name__: "h" },
          histograms: [intHistogram(T, { positive_spans: [{ offset: 0, length: 2 ** 31 + 5 }] })],
        }]),
        /histogram 0: histogram span length 2147483653 exceeds 2\^31-1/,
      ],
      [
        "huge count",
        v2Request([{
          labels: { __name__: "h" },
          histograms: [intHistogram(T, { count_int: 2 ** 62 })],
        }]),
        /count 4611686018427387904 exceeds 2\^53/,
      ],
      [
        "spans that do not cover the buckets",
        v2Request([{
          labels: { __name__: "h" },
          histograms: [intHistogram(T, { positive_deltas: [1] })],
        }]),
        /positive spans cover 4 buckets but 1 positive deltas were sent/,
      ],
      ["truncated", bytes(symbols.slice(0, 5)), /truncated/],
    ];
    for (const [name, raw, want] of rows) {
      const res = await post(c, V2, raw);
      assert.equal(res.status, 400, `${name}: ${res.status} ${res.text}`);
      assert.match(res.text, want, name);
      assert.ok(!res.text.trim().includes("\n"), `${name}: one line`);
    }
    // Two million empty histograms (2 bytes each on the wire, a kilobyte
    // each once decoded) in one 1.0 series: refused before decoding, as
    // more than the memory all requests may hold (1 GiB by default).
    const n = 2_000_000;
    const label = [1 << 3 | 2, 13, 1 << 3 | 2, 8, ...enc.encode("__name__"), 2 << 3 | 2, 1, 0x68];
    const series = new Uint8Array(label.length + 2 * n);
    series.set(label, 0);
    for (let i = 0; i < n; i++) series.set([4 << 3 | 2, 0], label.length + 2 * i);
    const varint = (v: number) => {
      const out: number[] = [];
      while (v >= 0x80) {
        out.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      out.push(v);
      return out;
    };
    const bomb = new Uint8Array([1 << 3 | 2, ...varint(series.length), ...series]);
    const refused = await post(c, V1, bomb);
    assert.equal(refused.status, 413, refused.text);
    assert.match(refused.text, /1 series/);

    const wrong = await post(
      c,
      { ...V2, "content-type": "application/x-protobuf;proto=io.prometheus.write.v3.Request" },
      new Uint8Array(0),
    );
    assert.equal(wrong.status, 415);
    assert.match(wrong.text, /Unsupported protobuf message "io.prometheus.write.v3.Request"/);
  });
});
