/**
 * The data model in PostgreSQL: histograms, exemplars, metadata and
 * created timestamps decoded from 2.0 requests, stored by the writers and
 * read back through the SQL surface (views and functions) and the
 * remote-read histogram query, bit for bit. One fresh database per test.
 */
import assert from "node:assert/strict";
import type { Sql } from "../../deps.ts";
import { encodeHistogram, queryHistograms } from "../../src/remote_read/histograms.ts";
import { H_SUM, parseHistogram } from "../../src/remote_write/data_model.ts";
import { parseWriteRequestV2 } from "../../src/remote_write/decode_v2.ts";
import { ProtoReader } from "../../src/wire/protowire.ts";
import { Gate } from "../../src/storage/db.ts";
import { DataModelWriter, type ModelSeries } from "../../src/storage/data_model_writer.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { SeriesCache } from "../../src/storage/series_cache.ts";
import { PgWriter } from "../../src/storage/writer.ts";
import { freshDatabase } from "../helpers/db.ts";
import { STALE_NAN_BITS } from "../helpers/payload.ts";
import {
  bitsOf,
  customHistogram,
  floatHistogram,
  intHistogram,
  type ModelSeriesSpec,
  replaceDouble,
  v2Request,
} from "./build.ts";

const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const LIMITS = { maxDecodedBytes: 32 << 20 };

/** Decodes `raw` and stores it the way the connector does (extras first, then samples). */
async function store(sql: Sql, writer: PgWriter, model: DataModelWriter, raw: Uint8Array) {
  const d = parseWriteRequestV2(raw, LIMITS);
  // The writer creates the series; the extras need their ids.
  const series = d.series as ModelSeries[];
  await writer.write(series.filter((s) => s.timestamps.length));
  const ids = series.map((s) => writer.cache.get(s.labels)!);
  assert.ok(ids.every((id) => id !== undefined));
  await model.write(sql, series, ids, series.length, d.metadata, true);
  return d;
}

async function withStore(
  name: string,
  fn: (sql: Sql, put: (raw: Uint8Array) => ReturnType<typeof store>) => Promise<void>,
) {
  const db = await freshDatabase(name);
  try {
    await migrate(db.sql, () => {});
    const writer = new PgWriter(db.sql, new Gate(4, 64, 10_000), new SeriesCache(1000));
    const model = new DataModelWriter();
    await fn(db.sql, (raw) => store(db.sql, writer, model, raw));
  } finally {
    await db.drop();
  }
}

const SERIES: ModelSeriesSpec[] = [
  {
    labels: { __name__: "rpc_seconds", job: "api", instance: "a:1" },
    histograms: [
      intHistogram(T),
      intHistogram(T + 15_000, { count_int: 9, positive_deltas: [2, -1, -1, 5] }),
    ],
  },
  {
    labels: { __name__: "rpc_seconds", job: "api", instance: "b:1" },
    histograms: [floatHistogram(T)],
  },
  { labels: { __name__: "nhcb_seconds", job: "web" }, histograms: [customHistogram(T)] },
];

Deno.test("histograms are stored and read back bit for bit", async () => {
  await withStore("dm_roundtrip", async (sql, put) => {
    const raw = v2Request([
      ...SERIES,
      {
        labels: { __name__: "rpc_seconds", job: "api", instance: "c:1" },
        histograms: [{ count_int: 0, sum: 1.2345e-300, timestamp: T }],
      },
    ]);
    assert.equal(replaceDouble(raw, 1.2345e-300, STALE_NAN_BITS), 1);
    const d = await put(raw);
    const ids = await sql<{ id: string; labels: Record<string, string> }[]>`
      SELECT id, labels FROM _prom_catalog.series ORDER BY id`;
    for (const s of d.series) {
      const id = ids.find((r) =>
        r.labels.instance === s.labels.find((l) =>
            l.name === "instance"
          )?.value &&
        r.labels.__name__ === s.labels[0].value
      )!.id;
      const stored = await queryHistograms(sql, Number(id), T - 1, T + 60_000);
      assert.equal(stored.length, s.histograms!.length);
      for (let i = 0; i < stored.length; i++) {
        assert.equal(stored[i].timestamp, s.timestamps[i]);
        const bytes = encodeHistogram(stored[i].histogram, stored[i].timestamp);
        const again = parseHistogram(new ProtoReader(bytes), bytes.length);
        assert.deepEqual(again.histogram, s.histograms![i]);
        assert.deepEqual(stored[i].histogram, s.histograms![i]);
        assert.equal(again.timestamp, s.timestamps[i]);
        for (let k = 0; k < 4; k++) {
          assert.equal(bitsOf(stored[i].histogram.scalars, k), bitsOf(s.histograms![i].scalars, k));
        }
      }
    }
    const stale = d.series[3];
    assert.equal(bitsOf(stale.histograms![0].scalars, H_SUM), STALE_NAN_BITS);
  });
});

Deno.test("histogram views and SQL functions answer count, sum and quantiles", async () => {
  await withStore("dm_views", async (sql, put) => {
    await put(v2Request(SERIES));
    const rows = await sql<
      {
        instance: string;
        job: string;
        count: number;
        sum: number;
        reset_hint: string;
        q50: number;
        q90: number;
        q0: number;
        q10: number;
        c: number;
        s: number;
      }[]
    >`SELECT instance, job, count, sum, reset_hint,
             prom_api.histogram_quantile(0.5, histogram) AS q50,
             prom_api.histogram_quantile(0.9, histogram) AS q90,
             prom_api.histogram_quantile(0, histogram) AS q0,
             prom_api.histogram_quantile(0.1, histogram) AS q10,
             prom_api.histogram_count(histogram) AS c, prom_api.histogram_sum(histogram) AS s
      FROM prom_histogram.rpc_seconds WHERE time = ${new Date(T)} ORDER BY instance`;
    assert.equal(rows.length, 2);
    const [a, b] = rows;
    assert.deepEqual([a.instance, a.job, a.count, a.sum, a.reset_hint, a.c, a.s], [
      "a:1",
      "api",
      7,
      20.5,
      "no",
      7,
      20.5,
    ]);
    // Buckets: zero [-0.001, 0.001]:1, (0.5,1]:2, (1,2]:1, (4,8]:3.
    assert.equal(a.q50, 1.5); // rank 3.5 in (1,2]
    assert.ok(Math.abs(a.q90 - (4 + 4 * (2.3 / 3))) < 1e-12, `q90 ${a.q90}`);
    assert.equal(a.q0, 0); // zero bucket of a positive-only histogram starts at 0
    assert.ok(Math.abs(a.q10 - 0.0007) < 1e-15, `q10 ${a.q10}`);
    // Float, schema 1: (-2,-√2]:2, (-√2,-1]:1, zero .5, (0.5,√½]:3, (2,2√2]:4.
    assert.equal(b.reset_hint, "gauge");
    assert.equal(b.count, 10.5);
    const expected = 0.5 + (Math.SQRT1_2 - 0.5) * (1.75 / 3);
    assert.ok(Math.abs(b.q50 - expected) < 1e-12, `q50 ${b.q50} want ${expected}`);
    const [c] = await sql<{ q50: number; n: number }[]>`
      SELECT prom_api.histogram_quantile(0.5, histogram) AS q50,
             (SELECT count(*) FROM prom_api.histogram_buckets(histogram))::int AS n
      FROM prom_histogram.nhcb_seconds`;
    assert.ok(Math.abs(c.q50 - (1 + 4 / 3)) < 1e-12, `custom q50 ${c.q50}`);
    // The lowest bucket (-Inf, 1] of positive bounds starts at 0 (as for
    // classic histograms); in the +Inf bucket, its finite lower bound.
    const [ends] = await sql<{ q10: number; q99: number }[]>`
      SELECT prom_api.histogram_quantile(0.1, histogram) AS q10,
             prom_api.histogram_quantile(0.99, histogram) AS q99
      FROM prom_histogram.nhcb_seconds`;
    assert.ok(Math.abs(ends.q10 - 0.3) < 1e-12, `q10 ${ends.q10}`);
    assert.equal(ends.q99, 10);
    assert.equal(c.n, 3);
    // The float view of a histogram metric shows its count (the presence rows).
    const presence = await sql<{ value: number }[]>`
      SELECT value FROM prom_metric.rpc_seconds WHERE instance = 'a:1' ORDER BY time`;
    assert.deepEqual(presence.map((r) => r.value), [7, 9]);
  });
});

Deno.test("exemplars, metadata and created timestamps are readable by SQL, once per retry", async () => {
  await withStore("dm_extras", async (sql, put) => {
    const raw = v2Request([
      {
        labels: { __name__: "http_requests_total", job: "api" },
        samples: [{ value: 5, timestamp: T, start_timestamp: T - 60_000 }],
        exemplars: [
          { labels: { trace_id: "abc" }, value: 0.25, timestamp: T - 5 },
          { labels: { trace_id: "def" }, value: 0.5, timestamp: T - 5 },
        ],
        metadata: { type: 1, help: "Requests served.", unit: "" },
      },
      {
        labels: { __name__: "rpc_seconds", job: "api" },
        histograms: [intHistogram(T)],
        metadata: { type: 3, help: "RPC latency.", unit: "seconds" },
      },
    ]);
    await put(raw);
    await put(raw); // a retried request
    const ex = await sql<
      {
        metric_name: string;
        value: number;
        exemplar_labels: unknown;
        series_labels: unknown;
        time: Date;
      }[]
    >`
      SELECT metric_name, value, exemplar_labels, series_labels, time FROM prom_api.exemplars ORDER BY value`;
    assert.deepEqual(
      ex.map((e) => [e.metric_name, e.value, e.exemplar_labels, e.series_labels, e.time.getTime()]),
      [
        ["http_requests_total", 0.25, { trace_id: "abc" }, { job: "api" }, T - 5],
        ["http_requests_total", 0.5, { trace_id: "def" }, { job: "api" }, T - 5],
      ],
    );
    const meta =
      await sql`SELECT metric_name, type, help, unit FROM prom_api.metric_metadata ORDER BY 1`;
    assert.deepEqual(meta.map((m) => ({ ...m })), [
      { metric_name: "http_requests_total", type: "counter", help: "Requests served.", unit: "" },
      { metric_name: "rpc_seconds", type: "histogram", help: "RPC latency.", unit: "seconds" },
    ]);
    const created = await sql<
      { created: Date }[]
    >`SELECT created FROM _prom_data.created_timestamps`;
    assert.deepEqual(created.map((c) => c.created.getTime()), [T - 60_000]);
    const [{ n }] = await sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM prom_histogram.rpc_seconds`;
    assert.equal(n, 1);
  });
});

Deno.test("a histogram view gains the label columns of new series", async () => {
  await withStore("dm_newcols", async (sql, put) => {
    await put(v2Request([{ labels: { __name__: "h", a: "1" }, histograms: [intHistogram(T)] }]));
    await put(
      v2Request([{ labels: { __name__: "h", a: "2", b: "x" }, histograms: [intHistogram(T)] }]),
    );
    const rows = await sql<
      { a: string; b: string | null }[]
    >`SELECT a, b FROM prom_histogram.h ORDER BY a`;
    assert.deepEqual(rows.map((r) => [r.a, r.b]), [["1", null], ["2", "x"]]);
  });
});

Deno.test("histogram_gc() removes bodies without a presence row, keeps the others", async () => {
  await withStore("dm_gc", async (sql, put) => {
    await put(
      v2Request([{
        labels: { __name__: "h" },
        histograms: [intHistogram(T), intHistogram(T + 1000)],
      }]),
    );
    // What the HA reconciler does to a follower's copy: its presence row goes.
    await sql`DELETE FROM _prom_data.samples WHERE time = ${new Date(T + 1000)}`;
    const [{ gc }] = await sql<
      { gc: number }[]
    >`SELECT _prom_catalog.histogram_gc('0 seconds', 100)::int AS gc`;
    assert.equal(gc, 1);
    const left = await sql<{ time: Date }[]>`SELECT time FROM _prom_data.histogram_samples`;
    assert.deepEqual(left.map((r) => r.time.getTime()), [T]);
  });
});
