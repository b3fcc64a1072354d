/**
 * Integration tests of the write path on the real PostgreSQL: requests go
 * through an in-process connector (HTTP → decode → PgWriter → COPY) and
 * are read back the way users read them, through the `prom_metric` views.
 * One fresh database for the file, dropped at the end.
 */
import { inProcessConnector } from "../helpers/connector.ts";
import type { Connector } from "../../src/app.ts";
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from "../../src/ingest.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import {
  nodeExporterSeries,
  type PayloadSeries,
  STALE_NAN_BITS,
  writeRequestBody,
} from "../helpers/payload.ts";

const SNAPPY = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };
/** Far enough in the past for a yearly partition (2024). */
const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
const DAY_MS = 86_400_000;

async function connectorOn(db: FreshDatabase): Promise<Connector> {
  return await inProcessConnector(db.uri, [], { pool: 5 });
}

/** POSTs a remote write body; returns status and body text. */
async function post(c: Connector, series: PayloadSeries[]): Promise<[number, string]> {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
  });
  return [res.status, await res.text()];
}

async function postOk(c: Connector, series: PayloadSeries[]): Promise<void> {
  const [status, body] = await post(c, series);
  assertEquals(status, 204, `write refused: ${status} ${body}`);
}

/** A double-quoted SQL identifier. */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The prom_metric view of `metric`, from the catalog. */
async function viewOf(db: FreshDatabase, metric: string): Promise<string> {
  const rows = await db.sql<{ view_name: string }[]>`
    SELECT view_name FROM _prom_catalog.metric WHERE metric_name = ${metric}`;
  assertEquals(rows.length, 1, `no catalog row for metric ${JSON.stringify(metric)}`);
  return `prom_metric.${ident(rows[0].view_name)}`;
}

/** Columns of a prom_metric view, in order. */
async function viewColumns(db: FreshDatabase, view: string): Promise<string[]> {
  const rows = await db.sql<{ attname: string }[]>`
    SELECT attname FROM pg_attribute
    WHERE attrelid = ${view}::regclass AND attnum > 0 AND NOT attisdropped
    ORDER BY attnum`;
  return rows.map((r) => r.attname);
}

/** The bits of a double as 16 hex digits. */
function hex(bits: bigint): string {
  return bits.toString(16).padStart(16, "0");
}

Deno.test("the write path stores what Prometheus sends, exactly once", async (t) => {
  const db = await freshDatabase("storage_writer");
  let c: Connector | undefined;
  try {
    c = await connectorOn(db);
    const connector = c;

    await t.step("every sample sent is read back through prom_metric views", async () => {
      const batches = [0, 15_000, 30_000].map((dt) => nodeExporterSeries(128, T0 + dt));
      for (const b of batches) await postOk(connector, b);
      const http: PayloadSeries[] = [];
      for (let s = 0; s < 5; s++) {
        http.push({
          labels: {
            __name__: "http_requests_total",
            code: String(200 + s),
            empty: "", // an empty value means "no such label"
            job: "api",
          },
          samples: Array.from({ length: 10 }, (_, i) => ({
            value: s * 1000 + i + 0.25,
            timestamp: T0 + i * 1000,
          })),
        });
      }
      await postOk(connector, http);

      const cpu = await db.sql<
        {
          time: Date;
          value: number;
          series_id: string;
          labels: Record<string, string>;
          cpu: string;
          mode: string;
          instance: string;
          __replica__: string;
        }[]
      >`SELECT * FROM prom_metric.node_cpu_seconds_total`;
      assertEquals(cpu.length, 3 * 128);
      const expected = new Map<string, number>();
      for (const b of batches) {
        for (const s of b) {
          const { __name__: _, ...rest } = s.labels as Record<string, string>;
          expected.set(`${JSON.stringify(rest)}@${s.samples[0].timestamp}`, s.samples[0].value);
        }
      }
      const seen = new Set<string>();
      const idOf = new Map<string, string>();
      for (const r of cpu) {
        const sorted = Object.fromEntries(Object.entries(r.labels).sort());
        const key = `${JSON.stringify(sorted)}@${r.time.getTime()}`;
        assert(expected.has(key), `unexpected row ${key}`);
        assertEquals(r.value, expected.get(key), key);
        assert(!seen.has(key), `row twice: ${key}`);
        seen.add(key);
        // Per-label text columns agree with the labels column.
        assertEquals(
          [r.cpu, r.mode, r.instance, r.__replica__],
          [r.labels.cpu, r.labels.mode, r.labels.instance, r.labels.__replica__],
        );
        assert(!("__name__" in r.labels), "labels column must not hold __name__");
        const prev = idOf.get(JSON.stringify(sorted));
        if (prev) assertEquals(r.series_id, prev, "one series id per label set");
        idOf.set(JSON.stringify(sorted), r.series_id);
      }
      assertEquals(idOf.size, 128);

      const reqs = await db.sql<{ code: string; job: string; labels: unknown; values: number[] }[]>`
        SELECT code, job, labels, array_agg(value ORDER BY time) AS values
        FROM prom_metric.http_requests_total GROUP BY code, job, labels ORDER BY code`;
      assertEquals(reqs.length, 5);
      reqs.forEach((r, s) => {
        assertEquals(r.code, String(200 + s));
        assertEquals(r.labels, { code: String(200 + s), job: "api" });
        assertEquals(r.values, Array.from({ length: 10 }, (_, i) => s * 1000 + i + 0.25));
      });
      assertEquals(
        await viewColumns(db, "prom_metric.http_requests_total"),
        ["time", "value", "series_id", "labels", "code", "code_id", "job", "job_id"],
      );

      const [{ series }] = await db.sql<{ series: number }[]>`
        SELECT count(*)::int AS series FROM _prom_catalog.series`;
      assertEquals(series, 133);
      assertEquals(connector.metrics.samplesIngested.get(), 3 * 128 + 50);
      assertEquals(connector.metrics.seriesCreated.get(), 133);
    });

    await t.step("a retried request adds nothing and counts as a duplicate write", async () => {
      const count = async () =>
        (await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM prom_metric.node_cpu_seconds_total`)[0].n;
      const before = await count();
      const dupBefore = connector.metrics.duplicateWrites.get();
      await postOk(connector, nodeExporterSeries(128, T0 + 15_000));
      assertEquals(await count(), before);
      assertEquals(connector.metrics.duplicateWrites.get(), dupBefore + 1);

      // A retry that overlaps: 8 samples already stored (sent again with
      // other values) and 8 new ones. The new ones are stored, the old ones
      // keep their first value.
      const overlap = nodeExporterSeries(16, T0 + 30_000).map((s, i) =>
        i < 8
          ? { ...s, samples: [{ value: -1, timestamp: T0 + 30_000 }] }
          : { ...s, samples: [{ value: -2, timestamp: T0 + 45_000 }] }
      );
      await postOk(connector, overlap);
      assertEquals(await count(), before + 8);
      assertEquals(connector.metrics.duplicateWrites.get(), dupBefore + 2);
      const [{ minus1, minus2 }] = await db.sql<{ minus1: number; minus2: number }[]>`
        SELECT count(*) FILTER (WHERE value = -1)::int AS minus1,
               count(*) FILTER (WHERE value = -2)::int AS minus2
        FROM prom_metric.node_cpu_seconds_total`;
      assertEquals([minus1, minus2], [0, 8]);
    });

    await t.step("NaN payloads, infinities and -0 round-trip bit for bit", async () => {
      const patterns = [
        STALE_NAN_BITS, // Prometheus's staleness marker
        0x7ff8000000000000n, // canonical quiet NaN
        0xfff8000000000000n, // negative quiet NaN
        0x7ff0000000000001n, // smallest signalling NaN
        0x7fffffffffffffffn, // NaN with every payload bit set
        0x7ff0000000000000n, // +Inf
        0xfff0000000000000n, // -Inf
        0x8000000000000000n, // -0
        0x0000000000000001n, // smallest subnormal
        0x7fefffffffffffffn, // largest finite
      ];
      const bitsSeries = (from: number, to: number): PayloadSeries => ({
        labels: { __name__: "special_values", job: "bits" },
        samples: patterns.slice(from, to).map((valueBits, i) => ({
          value: 0,
          valueBits,
          timestamp: T0 + (from + i) * 1000,
        })),
      });
      await postOk(connector, [bitsSeries(0, 5)]);
      // The second request repeats the first five: the COPY fails on them
      // and the de-duplicating path stores the other five; it must keep
      // bits too.
      const dup = connector.metrics.duplicateWrites.get();
      await postOk(connector, [bitsSeries(0, 10)]);
      assertEquals(connector.metrics.duplicateWrites.get(), dup + 1);
      const rows = await db.sql<{ bits: string }[]>`
        SELECT encode(float8send(value), 'hex') AS bits
        FROM prom_metric.special_values ORDER BY time`;
      assertEquals(rows.map((r) => r.bits), patterns.map(hex));
      const [{ stale }] = await db.sql<{ stale: number }[]>`
        SELECT count(*)::int AS stale FROM prom_metric.special_values
        WHERE float8send(value) = '\\x7ff0000000000002'::bytea`;
      assertEquals(stale, 1);
    });

    await t.step("a new label key on an existing metric adds a column to its view", async () => {
      await postOk(connector, [{
        labels: { __name__: "label_growth", job: "g" },
        samples: [{ value: 1, timestamp: T0 }],
      }]);
      const view = await viewOf(db, "label_growth");
      assertEquals(await viewColumns(db, view), [
        "time",
        "value",
        "series_id",
        "labels",
        "job",
        "job_id",
      ]);
      const longKey = "k".repeat(80);
      await postOk(connector, [{
        labels: { __name__: "label_growth", job: "g", zone: "eu" },
        samples: [{ value: 2, timestamp: T0 }],
      }, {
        // Keys that clash with the view's fixed columns, and one too long
        // for an identifier, still get (other) columns.
        labels: {
          __name__: "label_growth",
          job: "g",
          time: "t",
          value: "v",
          labels: "l",
          series_id: "s",
          [longKey]: "long",
        },
        samples: [{ value: 3, timestamp: T0 }],
      }]);
      const cols = await viewColumns(db, view);
      assertEquals(cols.slice(0, 5), ["time", "value", "series_id", "labels", "job"]);
      assertEquals(cols.length, 4 + 2 * 7); // a text and an id column per key
      assert(cols.includes("zone"), cols.join(","));
      assert(cols.every((c) => new TextEncoder().encode(c).length <= 63), cols.join(","));
      assertEquals(new Set(cols).size, cols.length);

      const [m] = await db.sql<{ label_keys: string[]; column_names: string[] }[]>`
        SELECT label_keys, column_names FROM _prom_catalog.metric
        WHERE metric_name = 'label_growth'`;
      const col = (key: string) => ident(m.column_names[m.label_keys.indexOf(key)]);
      const rows = await db.sql.unsafe<{ value: number; zone: string | null; t: string | null }[]>(
        `SELECT value, zone, ${col("time")} AS t, ${col("value")} AS v, ${col("labels")} AS l,
                ${col("series_id")} AS s, ${col(longKey)} AS long, time, series_id, labels
         FROM ${view} ORDER BY value`,
      );
      assertEquals(rows.map((r) => [r.value, r.zone, r.t]), [
        [1, null, null],
        [2, "eu", null],
        [3, null, "t"],
      ]);
      const last = rows[2] as unknown as Record<string, unknown>;
      assertEquals([last.v, last.l, last.s, last.long], ["v", "l", "s", "long"]);
      assertEquals((last.time as Date).getTime(), T0);
    });

    await t.step("a metric with more label keys than a view can hold is still stored", async () => {
      // A view has at most 1600 columns; keys past that live in `labels` only.
      const labels: Record<string, string> = { __name__: "very_wide" };
      for (let i = 0; i < 1700; i++) labels[`l${String(i).padStart(4, "0")}`] = `v${i}`;
      await postOk(connector, [{ labels, samples: [{ value: 1, timestamp: T0 }] }]);
      await postOk(connector, [{
        labels: { __name__: "very_wide", late_key: "x" },
        samples: [{ value: 2, timestamp: T0 }],
      }]);
      const view = await viewOf(db, "very_wide");
      const cols = await viewColumns(db, view);
      assertEquals(cols.length, 1600);
      assertEquals(cols[4], "l0000");
      const rows = await db.sql.unsafe<{ value: number; keys: number; l0000: string | null }[]>(
        `SELECT value, (SELECT count(*)::int FROM jsonb_object_keys(labels)) AS keys, l0000
         FROM ${view} ORDER BY value`,
      );
      assertEquals(rows.map((r) => [r.value, r.keys, r.l0000]), [[1, 1700, "v0"], [2, 1, null]]);
    });

    await t.step("metric names that are not identifiers get distinct, working views", async () => {
      const names = [
        'say "cheese"',
        "semi;colon'; DROP TABLE _prom_data.samples; --",
        "ünïcødé_メトリクス_名前",
        "a".repeat(100),
        "a".repeat(100) + "b",
        "a".repeat(63),
        "UPPER_case",
        "upper_case",
      ];
      await postOk(
        connector,
        names.map((name, i) => ({
          labels: { __name__: name, job: "names" },
          samples: Array.from({ length: i + 1 }, (_, k) => ({
            value: i,
            timestamp: T0 + k * 1000,
          })),
        })),
      );
      const views = await db.sql<{ metric_name: string; view_name: string }[]>`
        SELECT metric_name, view_name FROM _prom_catalog.metric
        WHERE metric_name = ANY(${names})`;
      assertEquals(views.length, names.length);
      assertEquals(new Set(views.map((v) => v.view_name)).size, names.length);
      for (const v of views) {
        assert(new TextEncoder().encode(v.view_name).length <= 63, v.view_name);
        const i = names.indexOf(v.metric_name);
        const [row] = await db.sql.unsafe<{ n: number; min: number; max: number }[]>(
          `SELECT count(*)::int AS n, min(value) AS min, max(value) AS max
           FROM prom_metric.${ident(v.view_name)}`,
        );
        assertEquals(row, { n: i + 1, min: i, max: i }, v.metric_name);
      }
      const [{ samples }] = await db.sql<{ samples: string }[]>`
        SELECT to_regclass('_prom_data.samples')::text AS samples`;
      assertEquals(samples, "_prom_data.samples");
    });

    await t.step("timestamps far from now land in yearly partitions", async () => {
      const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
      const far = [
        MIN_TIMESTAMP_MS, // 0001-01-01
        -1, // 1969-12-31T23:59:59.999
        0,
        Date.UTC(1975, 2, 1),
        Date.UTC(1975, 8, 30, 23, 59, 59, 999),
        Date.UTC(2080, 0, 1),
        Date.UTC(2080, 11, 31, 12),
        MAX_TIMESTAMP_MS, // 9999-12-31T23:59:59.999
      ];
      const near = [today - DAY_MS + 1234, today + 5678]; // yesterday, today
      const times = [...far, ...near].sort((a, b) => a - b);
      await postOk(connector, [{
        labels: { __name__: "far_times", job: "time" },
        samples: times.map((timestamp, i) => ({ value: i, timestamp })),
      }]);
      const rows = await db.sql<{ ms: string; value: number }[]>`
        SELECT (extract(epoch FROM time) * 1000)::bigint::text AS ms, value
        FROM prom_metric.far_times ORDER BY time`;
      assertEquals(rows.map((r) => Number(r.ms)), times);
      assertEquals(rows.map((r) => r.value), times.map((_, i) => i));

      const parts = await db.sql<{ ms: string; days: number }[]>`
        SELECT (extract(epoch FROM x.t) * 1000)::bigint::text AS ms,
               extract(epoch FROM p.range_end - p.range_start)::float8 / 86400 AS days
        FROM unnest(${times.map((t) => new Date(t).toISOString())}::timestamptz[]) AS x(t)
        JOIN _prom_catalog.sample_partitions p ON p.range_start <= x.t AND x.t < p.range_end
        ORDER BY x.t`;
      assertEquals(parts.length, times.length);
      for (const p of parts) {
        const t = Number(p.ms);
        if (near.includes(t)) assertEquals(p.days, 1, `near now: ${new Date(t).toISOString()}`);
        else assert(p.days >= 365, `far from now: ${t} has a ${p.days}-day partition`);
      }
      // One partition per year (0001, 1969, 1970, 1975, 2080, 9999) and per
      // day near now (yesterday, today).
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(DISTINCT p.table_name)::int AS n
        FROM unnest(${times.map((t) => new Date(t).toISOString())}::timestamptz[]) AS x(t)
        JOIN _prom_catalog.sample_partitions p ON p.range_start <= x.t AND x.t < p.range_end`;
      assertEquals(n, 8);
      // The catalog and PostgreSQL agree on the partitions.
      const [{ catalog, attached }] = await db.sql<{ catalog: number; attached: number }[]>`
        SELECT (SELECT count(*)::int FROM _prom_catalog.sample_partitions) AS catalog,
               (SELECT count(*)::int FROM pg_inherits
                WHERE inhparent = '_prom_data.samples'::regclass) AS attached`;
      assertEquals(catalog, attached);
    });

    await t.step("label order and repeats within a request make no duplicates", async () => {
      const labels = [
        { name: "zone", value: "z" },
        { name: "__name__", value: "repeats" },
        { name: "job", value: "rep" },
      ];
      await postOk(connector, [
        { labels, samples: [{ value: 1, timestamp: T0 }, { value: 1, timestamp: T0 }] },
        { labels: [...labels].reverse(), samples: [{ value: 2, timestamp: T0 + 1000 }] },
        {
          labels: { __name__: "repeats", job: "rep", zone: "z" },
          samples: [{ value: 1, timestamp: T0 }],
        },
      ]);
      const rows = await db.sql<{ value: number; labels: unknown }[]>`
        SELECT value, labels FROM prom_metric.repeats ORDER BY time`;
      assertEquals([...rows], [
        { value: 1, labels: { job: "rep", zone: "z" } },
        { value: 2, labels: { job: "rep", zone: "z" } },
      ]);
    });

    await t.step("yearly partitions are clipped around daily ones", async () => {
      // Around now there are daily partitions (the previous step made
      // today's); a yearly partition for a time in the same year must stop
      // where they start, or PostgreSQL refuses the overlap.
      const now = Date.now();
      const times = [-400, -90, -61, -1, 0, 8, 30, 400].map((d) => now + d * DAY_MS)
        .sort((a, b) => a - b);
      await postOk(connector, [{
        labels: { __name__: "clipped_times", job: "time" },
        samples: times.map((timestamp, i) => ({ value: i, timestamp })),
      }]);
      const rows = await db.sql<{ ms: string }[]>`
        SELECT (extract(epoch FROM time) * 1000)::bigint::text AS ms
        FROM prom_metric.clipped_times ORDER BY time`;
      assertEquals(rows.map((r) => Number(r.ms)), times);
      const [{ overlaps }] = await db.sql<{ overlaps: number }[]>`
        SELECT count(*)::int AS overlaps
        FROM _prom_catalog.sample_partitions a JOIN _prom_catalog.sample_partitions b
          ON a.table_name < b.table_name
         AND tstzrange(a.range_start, a.range_end) && tstzrange(b.range_start, b.range_end)`;
      assertEquals(overlaps, 0);
    });

    await t.step("concurrent requests creating the same new series all succeed", async () => {
      const make = (k: number) =>
        Array.from({ length: 50 }, (_, s) => ({
          labels: { __name__: "concurrent_new", job: "race", shard: String(s) },
          samples: [{ value: k, timestamp: T0 + k * 1000 }],
        }));
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, k) => post(connector, make(k))),
      );
      assertEquals(results.map((r) => r[0]), Array(8).fill(204), JSON.stringify(results));
      const [{ n, series }] = await db.sql<{ n: number; series: number }[]>`
        SELECT count(*)::int AS n, count(DISTINCT series_id)::int AS series
        FROM prom_metric.concurrent_new`;
      assertEquals([n, series], [400, 50]);
    });

    await t.step("known series and partitions are not looked up again", async () => {
      const size = () => {
        const m = /^promscale_series_cache_size (\d+)$/m.exec(connector.metrics.registry.render());
        return Number(m?.[1]);
      };
      const [{ series }] = await db.sql<{ series: number }[]>`
        SELECT count(*)::int AS series FROM _prom_catalog.series`;
      assertEquals(size(), series);

      // Take the lookup functions away: a write that needed either fails.
      await db.sql`ALTER FUNCTION _prom_catalog.get_or_create_series(jsonb[])
                   RENAME TO get_or_create_series_away`;
      await db.sql`ALTER FUNCTION _prom_catalog.ensure_partitions(timestamptz[])
                   RENAME TO ensure_partitions_away`;
      try {
        // Known series, in a known (2024) partition: no lookup at all.
        await postOk(connector, nodeExporterSeries(128, T0 + 60_000));
        // A new series needs get_or_create_series…
        const [s1, b1] = await post(connector, [{
          labels: { __name__: "cache_probe", job: "new" },
          samples: [{ value: 1, timestamp: T0 + 60_000 }],
        }]);
        assertEquals(s1, 503, b1);
        // …and a known series in a new partition needs ensure_partitions.
        const [s2, b2] = await post(connector, nodeExporterSeries(1, Date.UTC(1990, 5, 1)));
        assertEquals(s2, 503, b2);
      } finally {
        await db.sql`ALTER FUNCTION _prom_catalog.get_or_create_series_away(jsonb[])
                     RENAME TO get_or_create_series`;
        await db.sql`ALTER FUNCTION _prom_catalog.ensure_partitions_away(timestamptz[])
                     RENAME TO ensure_partitions`;
      }
      await postOk(connector, [{
        labels: { __name__: "cache_probe", job: "new" },
        samples: [{ value: 1, timestamp: T0 + 60_000 }],
      }]);
      await postOk(connector, nodeExporterSeries(1, Date.UTC(1990, 5, 1)));
      assertEquals(size(), series + 1);
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM prom_metric.node_cpu_seconds_total
        WHERE time = ${new Date(T0 + 60_000)}`;
      assertEquals(n, 128);
    });
  } finally {
    await c?.stop();
    await db.drop();
  }
});
