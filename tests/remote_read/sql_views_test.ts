/**
 * The SQL surface for dashboards: `prom_series` views (made by schema
 * version 3, also for metrics that existed before it), and every SQL
 * example of the README's "Reading the data" section, run as Grafana would
 * run it (macros expanded) on data written through the real writer.
 */
import { Gate } from "../../src/storage/db.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { MIGRATIONS } from "../../src/storage/migrations/schema.ts";
import { SeriesCache } from "../../src/storage/series_cache.ts";
import { PgWriter } from "../../src/storage/writer.ts";
import type { WriteSeries } from "../../src/ingest.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { REPO_ROOT } from "../helpers/procs.ts";

const T0 = Date.UTC(2026, 0, 10, 8, 0, 0); // on a minute boundary
const STALE = new Float64Array(new BigUint64Array([0x7ff0000000000002n]).buffer)[0];

function series(labels: Record<string, string>, points: [number, number][]): WriteSeries {
  const values = new Float64Array(points.length);
  points.forEach(([, v], i) => values[i] = v);
  return {
    labels: Object.keys(labels).sort().map((name) => ({ name, value: labels[name] })),
    timestamps: points.map(([t]) => t),
    values,
  };
}

async function columns(db: FreshDatabase, view: string): Promise<string[]> {
  const rows = await db.sql<{ attname: string }[]>`
    SELECT attname FROM pg_attribute
    WHERE attrelid = ${view}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`;
  return rows.map((r) => r.attname);
}

Deno.test("prom_series views list each metric's series, also for metrics older than the view", async () => {
  const db = await freshDatabase("read_series_views");
  try {
    // A database at schema version 2 that already has a metric...
    await db.sql.unsafe(`
      CREATE SCHEMA _prom_catalog;
      CREATE TABLE _prom_catalog.migrations (
        version int PRIMARY KEY, description text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const m of MIGRATIONS.filter((m) => m.version < 3)) {
      await db.sql.unsafe(typeof m.sql === "string" ? m.sql : m.sql({ timescaledb: false }));
      await db.sql`INSERT INTO _prom_catalog.migrations (version, description)
                   VALUES (${m.version}, ${m.description})`;
    }
    const writer = new PgWriter(db.sql, new Gate(2, 16, 10_000), new SeriesCache(100));
    await writer.write([
      series({ __name__: "up", job: "node", instance: "a:9100" }, [[T0, 1]]),
      series({ __name__: "up", job: "node", instance: "b:9100" }, [[T0, 0]]),
    ]);
    assertEquals(
      (await db.sql`SELECT to_regclass('prom_series.up') AS v`)[0].v,
      null,
    );
    // ...upgraded: the view appears for the existing metric.
    const res = await migrate(db.sql);
    assert(res.applied.includes(3));
    assertEquals(await columns(db, "prom_series.up"), ["series_id", "labels", "instance", "job"]);
    const rows = await db.sql<{ series_id: string; labels: unknown; instance: string }[]>`
      SELECT s.series_id, s.labels, s.instance
      FROM prom_series.up s ORDER BY instance`;
    assertEquals(rows.map((r) => [r.instance, r.labels]), [
      ["a:9100", { instance: "a:9100", job: "node" }],
      ["b:9100", { instance: "b:9100", job: "node" }],
    ]);

    // A new metric gets its view at once; a new key appends a column.
    await writer.write([series({ __name__: "node_load1", instance: "a" }, [[T0, 0.5]])]);
    assertEquals(await columns(db, "prom_series.node_load1"), ["series_id", "labels", "instance"]);
    await writer.write([
      series({ __name__: "node_load1", instance: "b", zone: "eu" }, [[T0, 0.7]]),
      series({ __name__: "up", job: "node", instance: "c:9100", az: "1" }, [[T0, 1]]),
    ]);
    assertEquals(await columns(db, "prom_series.node_load1"), [
      "series_id",
      "labels",
      "instance",
      "zone",
    ]);
    assertEquals(await columns(db, "prom_series.up"), [
      "series_id",
      "labels",
      "instance",
      "job",
      "az",
    ]);
    const zones = await db.sql<{ instance: string; zone: string | null }[]>`
      SELECT instance, zone FROM prom_series.node_load1 ORDER BY instance`;
    assertEquals(zones.map((r) => [r.instance, r.zone]), [["a", null], ["b", "eu"]]);
  } finally {
    await db.drop();
  }
});

/** The ```sql blocks of the README's "Reading the data" section. */
async function readmeQueries(): Promise<string[]> {
  const readme = await Deno.readTextFile(`${REPO_ROOT}/README.md`);
  const start = readme.indexOf("\n## Reading the data\n");
  assert(start >= 0, 'README has no "Reading the data" section');
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Expands the Grafana PostgreSQL data source's macros as Grafana does. */
function grafana(query: string, from: number, to: number): string {
  const iso = (t: number) => `'${new Date(t).toISOString()}'`;
  const seconds = (interval: string) => {
    const m = /^'?(\d+)([smhd])'?$/.exec(interval.trim());
    if (!m) throw new Error(`interval ${interval}`);
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "s"];
  };
  return query
    .replace(/\$__timeFilter\(([^)]+)\)/g, (_, col) => `${col} BETWEEN ${iso(from)} AND ${iso(to)}`)
    .replace(
      /\$__timeGroupAlias\(([^,]+),([^)]+)\)/g,
      (_, col, iv) => `floor(extract(epoch from ${col})/${seconds(iv)})*${seconds(iv)} AS "time"`,
    );
}

Deno.test("the README's SQL examples run and compute what they say", async () => {
  const db = await freshDatabase("read_readme_sql");
  try {
    await migrate(db.sql);
    const writer = new PgWriter(db.sql, new Gate(2, 16, 10_000), new SeriesCache(100));
    // A counter rising 0.5 per second, sampled every 15 s for 5 minutes,
    // reset to 0 at 3 minutes (the sample 15 s later holds 7.5); a staleness
    // marker at the end.
    const counter: [number, number][] = [];
    for (let s = 15; s <= 300; s += 15) {
      const value = s <= 180 ? 100 + 0.5 * s : 0.5 * (s - 180);
      counter.push([T0 + s * 1000, value]);
    }
    counter.push([T0 + 301_000, STALE]);
    // Two gauges by instance, constant, with a staleness marker each.
    const gauge = (v: number): [number, number][] => [
      ...Array.from({ length: 20 }, (_, i): [number, number] => [T0 + (i + 1) * 15_000, v]),
      [T0 + 301_000, STALE],
    ];
    await writer.write([
      series({ __name__: "node_cpu_seconds_total", cpu: "0", mode: "idle" }, counter),
      series({ __name__: "node_cpu_seconds_total", cpu: "0", mode: "user" }, [[T0 + 15_000, 1]]),
      series({ __name__: "node_load1", instance: "a" }, gauge(1.25)),
      series({ __name__: "node_load1", instance: "b" }, gauge(2)),
      series({ __name__: "up", job: "node", instance: "a" }, [[T0, 1]]),
    ]);

    const queries = await readmeQueries();
    assert(queries.length >= 6, `only ${queries.length} SQL examples found`);
    const results = new Map<string, Record<string, unknown>[]>();
    for (const q of queries) {
      const text = grafana(q, T0, T0 + 5 * 60_000);
      try {
        // Statement by statement: the retention block holds several.
        let rows: Record<string, unknown>[] = [];
        for (const stmt of text.split(/;\s*\n/).filter((s) => s.trim())) {
          rows = [...await db.sql.unsafe(stmt)];
        }
        results.set(q, rows);
      } catch (err) {
        throw new Error(`README query failed: ${(err as Error).message}\n${text}`);
      }
    }
    const find = (needle: string) => {
      const q = queries.find((q) => q.includes(needle));
      assert(q !== undefined, `no README query with ${needle}`);
      return results.get(q)!;
    };

    // Rate per minute: 30 (0.5/s) in every minute, across the reset.
    const rate = find("per_minute");
    assertEquals(
      rate.map((r) => [Number(r.time) * 1000 - T0, r.metric, Number(r.per_minute)]),
      // Minutes 0-5: the filter includes the sample at exactly 5 minutes.
      [0, 1, 2, 3, 4, 5].map((m) => [m * 60_000, "0", 30]),
    );
    // The gauge per instance, staleness markers left out of the average.
    const load = find("node_load1\nWHERE");
    const byInstance = new Map<string, number[]>();
    for (const r of load) {
      byInstance.set(String(r.metric), [
        ...byInstance.get(String(r.metric)) ?? [],
        Number(r.value),
      ]);
    }
    assertEquals(Object.fromEntries(byInstance), {
      a: [1.25, 1.25, 1.25, 1.25, 1.25, 1.25],
      b: [2, 2, 2, 2, 2, 2],
    });
    assertEquals(find("DISTINCT instance").map((r) => r.instance), ["a", "b"]);
    assertEquals(find("FROM prom_series.up").map((r) => r.instance), ["a"]);
    assertEquals(find("prom_metric.up").map((r) => r.value), [1]);
    // The retention block ends with a reset: the metric is back on the default.
    assertEquals(
      (await db
        .sql`SELECT prom_api.get_metric_retention_period('node_cpu_seconds_total')::text AS p`)[0]
        .p,
      "30 days",
    );
  } finally {
    await db.drop();
  }
});
