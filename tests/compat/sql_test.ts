/**
 * Promscale's SQL documentation runs on a database we wrote (issue 20).
 *
 * A real connector in process receives remote writes of the fixture data of
 * each documentation page; then the queries of that page run in a NEW
 * session (the database's search_path, as Promscale set it, makes
 * `FROM cpu_usage` and bare `val(...)` work) and their answers are checked.
 * Pages:
 * - promscale docs/sql_schema.md (metric and series views, containment,
 *   label matchers, eq, retention, compression, prom_info views);
 * - docs.timescale.com promscale/query-data/query-metrics.md;
 * - docs.timescale.com promscale/query-data/advanced-queries.md;
 * - the SQL API reference (label_cardinality, key_value_array,
 *   is_stale_marker, is_normal_nan, drop_metric, update_lease,
 *   try_change_leader, the chunk-interval setters).
 */
import assert from "node:assert/strict";
import { postgres, type Sql } from "../../deps.ts";
import type { Connector } from "../../src/app.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { MIGRATIONS } from "../../src/storage/migrations/schema.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { type PayloadSeries, STALE_NAN_BITS, writeRequestBody } from "../helpers/payload.ts";

const HEADERS = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf",
  "x-prometheus-remote-write-version": "0.1.0",
};

/** Prometheus's "normal" NaN (value.NormalNaN), as opposed to its staleness marker. */
const NORMAL_NAN_BITS = 0x7ff8000000000001n;

async function write(c: Connector, series: PayloadSeries[]): Promise<void> {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: HEADERS,
    body: new Uint8Array(writeRequestBody(series)),
  });
  const body = await res.text();
  assert.equal(res.status, 204, body);
}

const T = Date.now() - 60_000;

/** One series, samples a second apart from T. */
function s(labels: Record<string, string>, ...values: number[]): PayloadSeries {
  return { labels, samples: values.map((value, i) => ({ value, timestamp: T + i * 1000 })) };
}

/** Fixture data of the documentation pages. */
function fixture(): PayloadSeries[] {
  const gc = (job: string, instance: string, q: string, v: number) =>
    s({ __name__: "go_gc_duration_seconds", job, instance, quantile: q }, v, v, v);
  return [
    // sql_schema.md
    s({ __name__: "cpu_usage", namespace: "production", node: "brain" }, 0.5, 0.6),
    s({ __name__: "cpu_usage", namespace: "dev", node: "pinky" }, 0.1, 0.2),
    s({ __name__: "cpu_usage", namespace: "dev" }, 0.9), // a series without `node`
    s({ __name__: "cpu_total", namespace: "production", node: "brain" }, 5, 6),
    s({ __name__: "cpu_total", namespace: "dev", node: "pinky" }, 1, 2),
    // query-metrics.md, advanced-queries.md
    gc("prometheus", "localhost:9090", "0.5", 0.0001),
    gc("prometheus", "localhost:9090", "1", 0.001),
    gc("node-exporter", "node_exporter:9100", "0.5", 0.0003),
    gc("node-exporter", "node_exporter:9100", "1", 0.003),
    s({ __name__: "container_spec_memory_limit_bytes", container: "big", pod: "p1" }, 1000, 1000),
    s({ __name__: "container_spec_memory_limit_bytes", container: "small", pod: "p2" }, 100, 100),
    s({ __name__: "container_memory_working_set_bytes", container: "big", pod: "p1" }, 10, 20),
    s({ __name__: "container_memory_working_set_bytes", container: "small", pod: "p2" }, 90, 95),
    // Special values
    {
      labels: { __name__: "nan_kinds", job: "j" },
      samples: [
        { value: 0, valueBits: STALE_NAN_BITS, timestamp: T },
        { value: 0, valueBits: NORMAL_NAN_BITS, timestamp: T + 1000 },
        { value: 1, timestamp: T + 2000 },
      ],
    },
  ];
}

/** A new session on the database, as psql or Grafana would open one, collecting notices. */
function session(db: FreshDatabase, notices: string[] = []): Sql {
  return postgres(db.uri, { max: 1, onnotice: (n) => notices.push(n.message) });
}

Deno.test("Promscale's documented SQL runs on data written through the connector", async (t) => {
  const db = await freshDatabase("compat_sql");
  let c: Connector | null = await inProcessConnector(db.uri);
  const notices: string[] = [];
  const sql = session(db, notices);
  try {
    await write(c, fixture());

    await t.step("the search_path includes prom_api and prom_metric (sql_schema.md)", async () => {
      const [{ search_path }] = await sql<{ search_path: string }[]>`SHOW search_path`;
      assert.match(search_path, /prom_api, prom_metric$/);
    });

    await t.step("sql_schema.md, metric views: jsonb(labels), val(<key>_id)", async () => {
      const cols = await sql<{ attname: string; t: string }[]>`
        SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute
        WHERE attrelid = 'prom_metric.cpu_usage'::regclass AND attnum > 0 ORDER BY attnum`;
      assert.deepEqual(cols.map((r) => `${r.attname} ${r.t}`), [
        "time timestamp with time zone",
        "value double precision",
        "series_id bigint",
        "labels jsonb",
        "namespace text",
        "namespace_id integer",
        "node text",
        "node_id integer",
      ]);
      const points = await sql<{ labels: Record<string, string>; value: number }[]>`
        SELECT jsonb(labels) AS labels, value FROM cpu_usage WHERE time < now()
        ORDER BY value`;
      assert.deepEqual(points.map((r) => [r.labels, r.value]), [
        [{ node: "pinky", namespace: "dev" }, 0.1],
        [{ node: "pinky", namespace: "dev" }, 0.2],
        [{ node: "brain", namespace: "production" }, 0.5],
        [{ node: "brain", namespace: "production" }, 0.6],
        [{ namespace: "dev" }, 0.9],
      ]);
      const rollup = await sql<{ node: string | null; avg: number }[]>`
        SELECT val(node_id) AS node, avg(value) FROM cpu_usage WHERE time < now()
        GROUP BY node_id ORDER BY node`;
      assert.deepEqual(rollup.map((r) => [r.node, Number(r.avg.toFixed(6))]), [
        ["brain", 0.55],
        ["pinky", 0.15],
        [null, 0.9], // the series without `node`: its node_id is NULL
      ]);
    });

    await t.step("sql_schema.md, series views and containment (@>)", async () => {
      const all = await sql<{ namespace: string; node: string | null }[]>`
        SELECT * FROM prom_series.cpu_usage ORDER BY namespace, node`;
      assert.deepEqual(all.map((r) => [r.namespace, r.node]), [
        ["dev", "pinky"],
        ["dev", null],
        ["production", "brain"],
      ]);
      const contained = await sql<{ namespace: string; node: string }[]>`
        SELECT * FROM prom_series.cpu_usage u
        WHERE labels @> jsonb '{"namespace":"dev", "node": "pinky"}'`;
      assert.deepEqual(contained.map((r) => [r.namespace, r.node]), [["dev", "pinky"]]);
    });

    await t.step(
      "sql_schema.md, label matchers ==, !==, ==~, !=~ (missing keys as Promscale)",
      async () => {
        const values = async (where: string) =>
          (await sql.unsafe<{ value: number }[]>(
            `SELECT value FROM cpu_usage u WHERE ${where} ORDER BY value`,
          )).map((r) => r.value);
        assert.deepEqual(
          await values(`labels ? ('namespace' == 'dev') AND labels ? ('node' == 'brain')`),
          [],
        );
        assert.deepEqual(
          await values(`labels ? ('namespace' == 'production') AND labels ? ('node' == 'brain')`),
          [0.5, 0.6],
        );
        // A missing key: == and ==~ never match, !== and !=~ always do.
        assert.deepEqual(await values(`labels ? ('node' !== 'pinky')`), [0.5, 0.6, 0.9]);
        assert.deepEqual(await values(`labels ? ('node' ==~ 'pin*')`), [0.1, 0.2]);
        assert.deepEqual(await values(`labels ? ('node' !=~ '^b')`), [0.1, 0.2, 0.9]);
        // Not anchored, unlike PromQL.
        assert.deepEqual(await values(`labels ? ('node' ==~ 'rai')`), [0.5, 0.6]);
        // On a label array too, and containment there.
        assert.deepEqual(await values(`labels(series_id) ? ('node' == 'pinky')`), [0.1, 0.2]);
        assert.deepEqual(
          await values(`labels(series_id) @> jsonb '{"namespace": "dev", "node": "pinky"}'`),
          [0.1, 0.2],
        );
      },
    );

    await t.step("sql_schema.md, eq(): joins across metrics, and against a jsonb", async () => {
      const joined = await sql<{ u: number; t: number }[]>`
        SELECT u.value AS u, t.value AS t
        FROM cpu_usage u
        INNER JOIN cpu_total t ON (u.time = t.time AND eq(u.labels, t.labels))
        WHERE u.labels ? ('namespace' == 'dev') AND u.labels ? ('node' ==~ 'pin*')
        ORDER BY u.time`;
      assert.deepEqual(joined.map((r) => [r.u, r.t]), [[0.1, 1], [0.2, 2]]);
      const exact = await sql<{ value: number }[]>`
        SELECT value FROM cpu_usage
        WHERE eq(labels, jsonb '{"__name__": "other", "namespace": "dev", "node": "pinky"}')
        ORDER BY value`;
      assert.deepEqual(exact.map((r) => r.value), [0.1, 0.2]);
      // eq is not containment: a partial label set does not match.
      const [{ n }] = await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM cpu_usage WHERE eq(labels, jsonb '{"namespace": "dev"}')`;
      assert.equal(n, 1, "only the series whose labels are exactly {namespace: dev}");
    });

    await t.step(
      "query-metrics.md: SELECT *, val(job_id), jsonb(labels), labels(series_id)",
      async () => {
        const rows = await sql<Record<string, unknown>[]>`
        SELECT * FROM go_gc_duration_seconds WHERE time > now() - INTERVAL '5 minutes'`;
        assert.equal(rows.length, 12);
        for (const key of ["instance_id", "job_id", "quantile_id"]) {
          assert.ok(rows.every((r) => typeof r[key] === "number" && (r[key] as number) > 0), key);
        }
        const medians = await sql<{ job: string; median: number }[]>`
        SELECT val(job_id) AS job, percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median
        FROM go_gc_duration_seconds
        WHERE time > now() - INTERVAL '5 minutes'
        GROUP BY job_id ORDER BY job`;
        assert.deepEqual(medians.map((r) => [r.job, r.median]), [
          ["node-exporter", (0.0003 + 0.003) / 2],
          ["prometheus", (0.0001 + 0.001) / 2],
        ]);
        const filtered = await sql<{ labels: Record<string, string> }[]>`
        SELECT time, value, jsonb(labels) AS labels FROM go_gc_duration_seconds
        WHERE labels ? ('job' == 'node-exporter') AND time > now() - INTERVAL '5 minutes'`;
        assert.equal(filtered.length, 6);
        assert.ok(filtered.every((r) => r.labels.job === "node-exporter"));
        const perSeries = await sql<{ labels: Record<string, string>; count: string }[]>`
        SELECT jsonb(labels(series_id)) AS labels, count(*)
        FROM go_gc_duration_seconds GROUP BY series_id`;
        assert.equal(perSeries.length, 4);
        assert.ok(perSeries.every((r) => Number(r.count) === 3));
        assert.deepEqual(
          perSeries.map((r) => r.labels).find((l) => l.job === "prometheus" && l.quantile === "1"),
          {
            __name__: "go_gc_duration_seconds",
            job: "prometheus",
            instance: "localhost:9090",
            quantile: "1",
          },
          "labels(series_id) includes the metric name, as in Promscale",
        );
      },
    );

    await t.step(
      "advanced-queries.md: p99 per instance, and the over-provisioned containers",
      async () => {
        const p99 = await sql<{ app: string; p99: number }[]>`
        SELECT val(instance_id) AS app,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY value) p99
        FROM go_gc_duration_seconds
        WHERE value != 'NaN' AND val(quantile_id) = '1' AND instance_id > 0
        GROUP BY instance_id
        ORDER BY p99 DESC`;
        assert.deepEqual(p99.map((r) => [r.app, r.p99]), [
          ["node_exporter:9100", 0.003],
          ["localhost:9090", 0.001],
        ]);
        // The page's query as written: its GROUP BY names the output column
        // `container`, which here is also the view's text column of that
        // label, and PostgreSQL prefers the input column.
        const memoryQuery = (groupBy: string) => `
        WITH memory_allowed AS (
          SELECT labels(series_id) AS labels, value, min(time) start_time, max(time) AS end_time
          FROM container_spec_memory_limit_bytes total
          WHERE value != 0 AND value != 'NaN'
          GROUP BY series_id, value
        )
        SELECT val(memory_used.container_id) container,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY memory_used.value / memory_allowed.value)
                 AS percent_used_p99,
               max(memory_allowed.value) max_memory_allowed
        FROM container_memory_working_set_bytes AS memory_used
        INNER JOIN memory_allowed
              ON (memory_used.time >= memory_allowed.start_time AND
                  memory_used.time <= memory_allowed.end_time AND
                  eq(memory_used.labels, memory_allowed.labels))
        WHERE memory_used.value != 'NaN'
        GROUP BY ${groupBy}
        ORDER BY percent_used_p99 ASC
        LIMIT 100`;
        await assert.rejects(
          sql.unsafe(memoryQuery("container")),
          /"memory_used.container_id" must appear in the GROUP BY clause/,
        );
        const containers = await sql.unsafe<
          { container: string; percent_used_p99: number; max_memory_allowed: number }[]
        >(memoryQuery("1"));
        assert.deepEqual(
          containers.map((
            r,
          ) => [r.container, Number(r.percent_used_p99.toFixed(4)), r.max_memory_allowed]),
          [["big", 0.0199, 1000], ["small", 0.9495, 100]],
        );
      },
    );

    await t.step("SQL API: key_value_array, label_cardinality, prom_info views", async () => {
      const [kv] = await sql<{ keys: string[]; vals: string[]; jkeys: string[] }[]>`
        SELECT (key_value_array(labels(series_id))).keys, (key_value_array(labels(series_id))).vals,
               (key_value_array(labels)).keys AS jkeys
        FROM cpu_total WHERE val(node_id) = 'brain' LIMIT 1`;
      assert.deepEqual(
        Object.fromEntries(kv.keys.map((k, i) => [k, kv.vals[i]])),
        { __name__: "cpu_total", namespace: "production", node: "brain" },
      );
      assert.deepEqual(kv.jkeys, ["namespace", "node"]);
      const card = await sql<{ ns: string; n: number }[]>`
        SELECT DISTINCT val(namespace_id) AS ns, label_cardinality(namespace_id) AS n
        FROM cpu_usage ORDER BY ns`;
      // namespace="dev": two cpu_usage series and one cpu_total series.
      assert.deepEqual(card.map((r) => [r.ns, r.n]), [["dev", 3], ["production", 2]]);
      const [m] = await sql<
        {
          id: number;
          table_name: string;
          label_keys: string[];
          retention_period: string;
          chunk_interval: string;
          total_chunks: number | null;
        }[]
      >`SELECT * FROM prom_info.metric WHERE metric_name = 'cpu_usage'`;
      assert.equal(m.table_name, "cpu_usage");
      assert.deepEqual(m.label_keys, ["__name__", "namespace", "node"]);
      assert.equal(m.retention_period, "90 days");
      // Daily partitions shared by all metrics: no per-metric chunk counts.
      assert.deepEqual([m.chunk_interval, m.total_chunks], ["1 day", null]);
      assert.ok(m.id > 0);
      const labels = await sql<
        { key: string; value_column_name: string; id_column_name: string; values: string[] }[]
      >`SELECT * FROM prom_info.label WHERE key IN ('node', 'quantile') ORDER BY key`;
      assert.deepEqual(
        labels.map((l) => [l.key, l.value_column_name, l.id_column_name, l.values]),
        [
          ["node", "node", "node_id", ["brain", "pinky"]],
          ["quantile", "quantile", "quantile_id", ["0.5", "1"]],
        ],
      );
    });

    await t.step(
      "SQL API: is_stale_marker and is_normal_nan tell Prometheus's NaNs apart",
      async () => {
        const rows = await sql<{ stale: boolean; nan: boolean; isnan: boolean }[]>`
        SELECT is_stale_marker(value) AS stale, is_normal_nan(value) AS nan, value = 'NaN' AS isnan
        FROM nan_kinds ORDER BY time`;
        assert.deepEqual(rows.map((r) => [r.stale, r.nan, r.isnan]), [
          [true, false, true],
          [false, true, true],
          [false, false, false],
        ]);
      },
    );

    await t.step("sql_schema.md, retention (also schema-qualified) and compression", async () => {
      const [{ ok }] = await sql<{ ok: boolean }[]>`
        SELECT set_default_retention_period(180 * INTERVAL '1 day') AS ok`;
      assert.equal(ok, true);
      await sql`SELECT set_metric_retention_period('prom_data', 'cpu_usage', INTERVAL '1 year')`;
      const [r] = await sql<{ d: string; q: string; i: string; j: string }[]>`
        SELECT get_default_metric_retention_period()::text AS d,
               get_metric_retention_period('prom_data', 'cpu_usage')::text AS q,
               (SELECT retention_period::text FROM prom_info.metric WHERE metric_name = 'cpu_usage') AS i,
               (SELECT retention_period::text FROM prom_info.metric WHERE metric_name = 'cpu_total') AS j`;
      assert.deepEqual([r.d, r.q, r.i, r.j], ["180 days", "1 year", "1 year", "180 days"]);
      await sql`SELECT reset_metric_retention_period('prom_data', 'cpu_usage')`;
      const [{ back }] = await sql<{ back: string }[]>`
        SELECT get_metric_retention_period('cpu_usage')::text AS back`;
      assert.equal(back, "180 days");
      await assert.rejects(
        sql`SELECT set_metric_retention_period('custom', 'cpu_usage', INTERVAL '1 day')`,
        /Metric schema "custom" is not supported/,
      );
      notices.length = 0;
      const [set] = await sql<{ a: boolean; b: boolean; c: boolean; d: string }[]>`
        SELECT set_default_compression_setting(FALSE) AS a,
               set_default_chunk_interval(INTERVAL '8 hours') AS b,
               set_metric_chunk_interval('cpu_usage', INTERVAL '2 hours') AS c,
               get_metric_chunk_interval('cpu_usage')::text AS d`;
      assert.deepEqual([set.a, set.b, set.c, set.d], [true, true, true, "1 day"]);
      assert.equal(notices.length, 3, notices.join("\n"));
      assert.ok(notices.every((n) => n.includes("has no effect here")), notices.join("\n"));
    });

    await t.step(
      "drop_metric waits for the connectors to stop, then deletes the metric",
      async () => {
        await assert.rejects(
          sql`SELECT drop_metric('cpu_usage')`,
          /Cannot drop metric "cpu_usage": \d+ Promscale connector connection/,
        );
        await c!.stop();
        c = null;
        await sql`SELECT drop_metric('cpu_usage')`;
        const [left] = await sql<
          { view: string | null; series: number; samples: number; total: number; pinky: number }[]
        >`
        SELECT to_regclass('prom_metric.cpu_usage')::text AS view,
               (SELECT count(*)::int FROM _prom_catalog.series WHERE metric_name = 'cpu_usage') AS series,
               (SELECT count(*)::int FROM _prom_data.samples x JOIN _prom_catalog.series s
                  ON s.id = x.series_id WHERE s.metric_name = 'cpu_usage') AS samples,
               (SELECT count(*)::int FROM cpu_total) AS total,
               (SELECT count(*)::int FROM _prom_catalog.label WHERE key = 'node' AND value = 'pinky') AS pinky`;
        assert.deepEqual(left, { view: null, series: 0, samples: 0, total: 4, pinky: 1 });
        const [{ name }] = await sql<{ name: number }[]>`
        SELECT count(*)::int AS name FROM _prom_catalog.label
        WHERE key = '__name__' AND value = 'cpu_usage'`;
        assert.equal(name, 0, "label pairs no series uses any more are gone");
        await assert.rejects(sql`SELECT drop_metric('cpu_usage')`, /cpu_usage is not a metric/);
      },
    );
  } finally {
    await c?.stop();
    await sql.end();
    await db.drop();
  }
});

Deno.test("update_lease and try_change_leader with Promscale's signatures, timeouts from _prom_catalog.default", async () => {
  const db = await freshDatabase("compat_sql_ha");
  const c = await inProcessConnector(db.uri, ["--metrics.high-availability"]);
  const sql = session(db);
  try {
    const t0 = Date.now() - 120_000;
    await write(c, [{
      labels: { __name__: "ha_up", cluster: "c1", __replica__: "a", job: "j" },
      samples: [{ value: 1, timestamp: t0 }],
    }]);
    const defaults = await sql<{ key: string; value: string }[]>`
      SELECT key, value FROM _prom_catalog.default ORDER BY key`;
    assert.deepEqual(defaults.map((d) => [d.key, d.value]), [
      ["ha_lease_refresh", "10s"],
      ["ha_lease_timeout", "1m"],
    ]);
    const iso = (ms: number) => new Date(ms).toISOString();
    // The leader extends its lease by the database's lease timeout.
    await sql`UPDATE _prom_catalog.default SET value = '2m' WHERE key = 'ha_lease_timeout'`;
    const [lease] = await sql<{ leader_name: string; lease_until: Date }[]>`
      SELECT * FROM _prom_catalog.update_lease('c1', 'a', ${iso(t0)}, ${iso(t0 + 5_000)})`;
    assert.equal(lease.leader_name, "a");
    assert.equal(lease.lease_until.getTime(), t0 + 5_000 + 120_000);
    // Another replica is told the leader has changed, with Promscale's code.
    await assert.rejects(
      sql`SELECT * FROM _prom_catalog.update_lease('c1', 'b', ${iso(t0)}, ${iso(t0 + 5_000)})`,
      (e: { code?: string; message?: string }) =>
        e.code === "PS010" && e.message === "LEADER_HAS_CHANGED",
    );
    // A lease still running in sample time is kept...
    const [kept] = await sql<{ leader_name: string }[]>`
      SELECT * FROM _prom_catalog.try_change_leader('c1', 'b', ${iso(t0 + 60_000)})`;
    assert.equal(kept.leader_name, "a");
    // ...one that ended by max_time goes to the new leader, starting right
    // after the old leader's newest sample (no samples lost).
    const [changed] = await sql<{ leader_name: string; lease_start: Date }[]>`
      SELECT * FROM _prom_catalog.try_change_leader('c1', 'b', ${iso(t0 + 200_000)})`;
    assert.equal(changed.leader_name, "b");
    assert.equal(changed.lease_start.getTime(), t0 + 5_000 + 1);
    const logs = await sql<{ leader_name: string }[]>`
      SELECT leader_name FROM _prom_catalog.ha_leases_logs ORDER BY lease_start`;
    assert.deepEqual(logs.map((l) => l.leader_name), ["a", "b"]);
  } finally {
    await c.stop();
    await sql.end();
    await db.drop();
  }
});

Deno.test("views made before the migration keep their columns and gain <key>_id columns", async () => {
  const db = await freshDatabase("compat_sql_upgrade");
  try {
    // A database at version 5 (as an older build left it) with a metric.
    await db.sql`CREATE SCHEMA _prom_catalog`;
    await db.sql`CREATE TABLE _prom_catalog.migrations (
      version int PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
    for (const m of MIGRATIONS.filter((m) => m.version <= 5)) {
      await db.sql.unsafe(typeof m.sql === "string" ? m.sql : m.sql({ timescaledb: false }));
      await db.sql`INSERT INTO _prom_catalog.migrations VALUES (${m.version}, ${m.description})`;
    }
    await db.sql`SELECT * FROM _prom_catalog.get_or_create_series(ARRAY[
      '{"__name__": "old_metric", "job": "a", "zone": "z1"}'::jsonb])`;
    await db.sql`SELECT _prom_catalog.ensure_partitions(ARRAY[now()])`;
    await db.sql`INSERT INTO _prom_data.samples SELECT id, now(), 7 FROM _prom_catalog.series`;
    const [{ s }] = await db.sql<
      { s: string }[]
    >`SELECT count(*)::text AS s FROM prom_metric.old_metric`;
    assert.equal(s, "1");

    const c = await inProcessConnector(db.uri);
    const sql = session(db);
    try {
      await write(c, [s_({ __name__: "old_metric", job: "b", zone: "z2", rack: "r1" }, 8)]);
      const cols = await sql<{ attname: string }[]>`
        SELECT attname FROM pg_attribute
        WHERE attrelid = 'prom_metric.old_metric'::regclass AND attnum > 0 ORDER BY attnum`;
      assert.deepEqual(cols.map((r) => r.attname), [
        "time",
        "value",
        "series_id",
        "labels",
        "job",
        "zone",
        "job_id",
        "zone_id",
        "rack",
        "rack_id",
      ]);
      const rows = await sql<{ value: number; job: string; rack: string | null }[]>`
        SELECT value, val(job_id) AS job, val(rack_id) AS rack FROM old_metric ORDER BY value`;
      assert.deepEqual(rows.map((r) => [r.value, r.job, r.rack]), [[7, "a", null], [8, "b", "r1"]]);
    } finally {
      await c.stop();
      await sql.end();
    }
  } finally {
    await db.drop();
  }
});

function s_(labels: Record<string, string>, value: number): PayloadSeries {
  return { labels, samples: [{ value, timestamp: Date.now() - 1000 }] };
}

Deno.test("a Promscale database is refused at the first migration and left as it was", async () => {
  const db = await freshDatabase("compat_sql_promscale_db");
  try {
    // Promscale's catalog: series with label-id arrays.
    await db.sql.unsafe(`
      CREATE SCHEMA _prom_catalog;
      CREATE TABLE _prom_catalog.series (id bigint PRIMARY KEY, metric_id int, labels int[]);
      INSERT INTO _prom_catalog.series VALUES (1, 1, '{1,2}');`);
    await assert.rejects(migrate(db.sql), /relation "series" already exists/);
    const [left] = await db.sql<{ rows: number; views: string | null }[]>`
      SELECT (SELECT count(*)::int FROM _prom_catalog.series WHERE labels = '{1,2}') AS rows,
             to_regnamespace('prom_metric')::text AS views`;
    assert.deepEqual(left, { rows: 1, views: null });
  } finally {
    await db.drop();
  }
});
