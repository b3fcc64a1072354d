/**
 * Retention on the real PostgreSQL: Promscale's SQL API, the job that drops
 * partitions and deletes rows, its behaviour beside writers and other
 * connectors. Periods are short (minutes, days) and samples are written
 * with old timestamps through the real writer.
 */
import { postgres } from "../deps.ts";
import { Gate } from "../src/storage/db.ts";
import { migrate } from "../src/storage/migrate.ts";
import { RETENTION_LOCK_KEY, RetentionJob } from "../src/storage/retention.ts";
import { SeriesCache } from "../src/storage/series_cache.ts";
import { PgWriter } from "../src/storage/writer.ts";
import type { WriteSeries } from "../src/ingest.ts";
import { Logger } from "../src/telemetry/log.ts";
import { ConnectorMetrics } from "../src/telemetry/metrics.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "./helpers/db.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function series(metric: string, times: number[]): WriteSeries {
  return {
    labels: [{ name: "__name__", value: metric }, { name: "job", value: "retention" }],
    timestamps: times,
    values: new Float64Array(times.map((_, i) => i)),
  };
}

/** Sample timestamps of a metric, oldest first, read through its prom_metric view. */
async function stored(db: FreshDatabase, metric: string): Promise<number[]> {
  const rows = await db.sql<{ t: string }[]>`
    SELECT (extract(epoch FROM s.time) * 1000)::int8::text AS t
    FROM _prom_data.samples s JOIN _prom_catalog.series ser ON ser.id = s.series_id
    WHERE ser.metric_name = ${metric} ORDER BY s.time`;
  const view = await db.sql.unsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM prom_metric.${metric}`,
  );
  assertEquals(view[0].n, rows.length);
  return rows.map((r) => Number(r.t));
}

/** Name of the partition holding time `t`, or undefined. */
async function partitionOf(db: FreshDatabase, t: number): Promise<string | undefined> {
  const rows = await db.sql<{ table_name: string }[]>`
    SELECT table_name FROM _prom_catalog.sample_partitions
    WHERE range_start <= ${new Date(t)} AND ${new Date(t)} < range_end`;
  return rows[0]?.table_name;
}

async function tableExists(db: FreshDatabase, name: string): Promise<boolean> {
  const [{ present }] = await db.sql<{ present: boolean }[]>`
    SELECT to_regclass(${`_prom_data."${name}"`}) IS NOT NULL AS present`;
  return present;
}

Deno.test("retention drops expired partitions and rows, per metric", async (t) => {
  const db = await freshDatabase("retention");
  const other = { sql: undefined as ReturnType<typeof postgres> | undefined };
  try {
    await migrate(db.sql);
    const writer = new PgWriter(db.sql, new Gate(2, 16, 10_000), new SeriesCache(100));
    const now = Date.now();
    const at = {
      d40: now - 40 * DAY,
      d10: now - 10 * DAY,
      d3: now - 3 * DAY,
      h1: now - HOUR,
      m1: now - MINUTE,
    };
    const all = [at.d40, at.d10, at.d3, at.h1, at.m1];
    await writer.write([
      series("m_default", all),
      series("m_short", all),
      series("m_long", all),
    ]);
    const lines: string[] = [];
    const log = new Logger("info", "logfmt", (l) => lines.push(l));
    const metrics = new ConnectorMetrics();
    let forgotten = 0;
    const job = new RetentionJob({
      sql: db.sql,
      log,
      metrics,
      deleteBatch: 2,
      onPartitionsDropped: () => forgotten++,
    });

    await t.step("Promscale's SQL functions set and read retention periods", async () => {
      const [d] = await db.sql<
        { p: string }[]
      >`SELECT prom_api.get_default_retention_period()::text AS p`;
      assertEquals(d.p, "90 days");
      await db.sql`SELECT prom_api.set_default_retention_period(interval '2 days')`;
      await db.sql`SELECT prom_api.set_metric_retention_period('m_short', interval '5 minutes')`;
      await db.sql`SELECT prom_api.set_metric_retention_period('m_long', interval '1 day')`;
      await db.sql`SELECT prom_api.set_metric_retention_period('m_long', interval '20 days')`;
      const rows = await db.sql<{ m: string; p: string }[]>`
        SELECT m, prom_api.get_metric_retention_period(m)::text AS p
        FROM unnest(ARRAY['m_default', 'm_short', 'm_long', 'never_written']) m`;
      assertEquals(rows.map((r) => [r.m, r.p]), [
        ["m_default", "2 days"],
        ["m_short", "00:05:00"],
        ["m_long", "20 days"],
        ["never_written", "2 days"],
      ]);
      for (const bad of ["0", "-1 day"]) {
        const err = await assertRejects(
          () => db.sql`SELECT prom_api.set_default_retention_period(${bad}::interval)`,
          Error,
          "must be greater than 0",
        );
        assertEquals((err as { code?: string }).code, "22023");
      }
    });

    await t.step(
      "a run drops partitions past the longest retention, deletes rows past shorter ones",
      async () => {
        const oldest = (await partitionOf(db, at.d40))!;
        const res = await job.runOnce();
        assertEquals(res, {
          ran: true,
          droppedPartitions: [oldest],
          deletedRows: { m_default: 2, m_short: 3 },
          forgottenClusters: 0,
        });
        assertEquals(await stored(db, "m_default"), [at.h1, at.m1]);
        assertEquals(await stored(db, "m_short"), [at.m1]);
        assertEquals(await stored(db, "m_long"), [at.d10, at.d3, at.h1, at.m1]);
        assertEquals(await tableExists(db, oldest), false);
        assertEquals(await partitionOf(db, at.d40), undefined);
        assertEquals(metrics.retentionDropped.get(), 1);
        assertEquals(forgotten, 1);
        assert(
          lines.some((l) => l.includes("Retention dropped expired partitions")),
          lines.join("\n"),
        );
        assert(lines.some((l) => l.includes("metric=m_short rows=3")), lines.join("\n"));
        assert(
          metrics.registry.render().includes("promscale_retention_partitions_dropped_total 1"),
        );
      },
    );

    await t.step("a second run finds nothing to do", async () => {
      assertEquals(await job.runOnce(), {
        ran: true,
        droppedPartitions: [],
        deletedRows: {},
        forgottenClusters: 0,
      });
    });

    await t.step("a writer whose cached partition was dropped retries and stores", async () => {
      assertEquals(await tableExists(db, (await partitionOf(db, at.d10))!), true);
      // This writer still believes in the partition of at.d40 (another
      // connector's retention dropped it): COPY fails, it forgets and retries.
      await writer.write([series("m_long", [at.d40])]);
      assertEquals(await stored(db, "m_long"), [at.d40, at.d10, at.d3, at.h1, at.m1]);
      assert((await partitionOf(db, at.d40)) !== undefined);
    });

    await t.step(
      "resetting the longest retention lets the next run drop what it kept",
      async () => {
        await db.sql`SELECT prom_api.reset_metric_retention_period('m_long')`;
        const expired = [
          await partitionOf(db, at.d40),
          await partitionOf(db, at.d10),
          await partitionOf(db, at.d3),
        ];
        const res = await job.runOnce();
        assertEquals(res.droppedPartitions, expired);
        assertEquals(await stored(db, "m_long"), [at.h1, at.m1]);
        assertEquals(metrics.retentionDropped.get(), 4);
      },
    );

    await t.step("a connector that cannot take the lock skips the run", async () => {
      const holder = await db.sql.reserve();
      try {
        await holder`SELECT pg_advisory_lock(${RETENTION_LOCK_KEY})`;
        await writer.write([series("m_default", [at.d10])]);
        assertEquals(await job.runOnce(), {
          ran: false,
          droppedPartitions: [],
          deletedRows: {},
          forgottenClusters: 0,
        });
        assertEquals(await stored(db, "m_default"), [at.d10, at.h1, at.m1]);
        await holder`SELECT pg_advisory_unlock(${RETENTION_LOCK_KEY})`;
      } finally {
        holder.release();
      }
      assertEquals((await job.runOnce()).droppedPartitions.length, 1);
      assertEquals(await stored(db, "m_default"), [at.h1, at.m1]);
    });

    await t.step("a partition in use is left for the next run rather than waited on", async () => {
      await writer.write([series("m_default", [at.d10])]);
      const name = (await partitionOf(db, at.d10))!;
      const reader = await db.sql.reserve();
      const impatient = new RetentionJob({ sql: db.sql, log, metrics, lockTimeoutMs: 100 });
      try {
        await reader`BEGIN`;
        await reader.unsafe(`SELECT count(*) FROM _prom_data."${name}"`);
        const res = await impatient.runOnce();
        assertEquals(res.droppedPartitions, []);
        assert(lines.some((l) => l.includes("could not lock a partition in time")));
      } finally {
        await reader`ROLLBACK`;
        reader.release();
      }
      assertEquals((await impatient.runOnce()).droppedPartitions, [name]);
    });

    await t.step("connectors running it at once drop each partition once", async () => {
      await writer.write([series("m_default", [now - 30 * DAY, now - 20 * DAY])]);
      const expired = [
        await partitionOf(db, now - 30 * DAY),
        await partitionOf(db, now - 20 * DAY),
      ];
      other.sql = postgres(db.uri, { max: 2, onnotice: () => {} });
      const jobs = [
        new RetentionJob({ sql: db.sql, log, metrics }),
        new RetentionJob({ sql: other.sql, log, metrics }),
      ];
      const results = await Promise.all(jobs.map((j) => j.runOnce()));
      const dropped = results.flatMap((r) => r.droppedPartitions).sort();
      assertEquals(dropped, expired.sort());
    });

    await t.step("started, the job runs on its interval until stopped", async () => {
      await writer.write([series("m_default", [now - 15 * DAY])]);
      const name = (await partitionOf(db, now - 15 * DAY))!;
      const counter = new ConnectorMetrics();
      const periodic = new RetentionJob({ sql: db.sql, log, metrics: counter, intervalMs: 20 });
      periodic.start();
      try {
        const deadline = Date.now() + 15_000;
        while (counter.retentionDropped.get() === 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await periodic.stop();
      }
      assertEquals(counter.retentionDropped.get(), 1);
      assertEquals(await tableExists(db, name), false);
    });
  } finally {
    await other.sql?.end({ timeout: 5 });
    await db.drop();
  }
});

Deno.test("retention forgets HA clusters no connector heard for a week, and only those", async () => {
  const db = await freshDatabase("retention_ha_forget");
  try {
    await migrate(db.sql);
    const lease = async (cluster: string, heardAgo: string) => {
      await db.sql`
        INSERT INTO _prom_catalog.ha_leases
          (cluster_name, leader_name, lease_start, lease_until, max_time, last_heard)
        VALUES (${cluster}, 'r1', now() - interval '30 days', now() - interval '29 days',
                now() - interval '29 days', now() - ${heardAgo}::interval)`;
      await db.sql`
        INSERT INTO _prom_catalog.ha_leases_logs VALUES
          (${cluster}, 'r1', now() - interval '30 days', now() - interval '29 days')`;
    };
    await lease("gone", "8 days");
    await lease("recent", "6 days");
    await lease("staged", "8 days");
    await lease("busy", "8 days");
    // A staged sample of cluster "staged" keeps it (the reconciler has not decided it).
    const [{ series_id }] = await db.sql<{ series_id: string }[]>`
      SELECT series_id FROM _prom_catalog.get_or_create_series(
        ARRAY[${JSON.stringify({ __name__: "up", cluster: "staged" })}::text]::jsonb[])`;
    await db.sql`INSERT INTO _prom_data.ha_stage (series_id, time, value)
                 VALUES (${series_id}, now(), 1)`;
    // A fenced write in flight on cluster "busy" holds its fence lock shared.
    const writer = await db.sql.reserve();
    const lines: string[] = [];
    try {
      await writer`BEGIN`;
      await writer`SELECT * FROM _prom_catalog.ha_fence(ARRAY['busy'])`;
      const job = new RetentionJob({
        sql: db.sql,
        log: new Logger("info", "logfmt", (l) => lines.push(l)),
      });
      const res = await job.runOnce();
      assertEquals(res.forgottenClusters, 1);
    } finally {
      await writer`ROLLBACK`;
      writer.release();
    }
    const left = async (table: string) =>
      (await db.sql.unsafe<{ c: string }[]>(
        `SELECT cluster_name AS c FROM ${table} ORDER BY 1`,
      )).map((r) => r.c);
    assertEquals(await left("_prom_catalog.ha_leases"), ["busy", "recent", "staged"]);
    assertEquals(await left("_prom_catalog.ha_leases_logs"), ["busy", "recent", "staged"]);
    assert(lines.some((l) => l.includes("Forgot HA clusters")), lines.join("\n"));
    // Once the write is over, the next run forgets "busy" too.
    const job = new RetentionJob({ sql: db.sql, log: new Logger("info", "logfmt", () => {}) });
    assertEquals((await job.runOnce()).forgottenClusters, 1);
    assertEquals(await left("_prom_catalog.ha_leases"), ["recent", "staged"]);
  } finally {
    await db.drop();
  }
});

Deno.test("retention reaches exemplars, created timestamps and orphaned histogram rows", async () => {
  const db = await freshDatabase("retention_data_model");
  try {
    await migrate(db.sql);
    await db.sql`SELECT prom_api.set_default_retention_period(interval '2 days')`;
    const [{ series_id: id }] = await db.sql<{ series_id: string }[]>`
      SELECT series_id FROM _prom_catalog.get_or_create_series(
        ARRAY[${JSON.stringify({ __name__: "h_metric", job: "retention" })}::text]::jsonb[])`;
    const old = "now() - interval '10 days'";
    await db.sql.unsafe(
      `INSERT INTO _prom_data.exemplars (series_id, time, value, labels) VALUES
         ($1, ${old}, 1, '{"trace_id":"old"}'), ($1, now(), 2, '{"trace_id":"new"}')`,
      [id],
    );
    await db.sql.unsafe(
      `INSERT INTO _prom_data.created_timestamps (series_id, created) VALUES
         ($1, ${old}), ($1, now() - interval '1 hour')`,
      [id],
    );
    // Histogram rows: one whose count row is gone and that is two hours old
    // (removed), one with its count row (kept), one without that is new
    // (kept: its count row may still be on its way through HA).
    const hist = (t: string, receivedAgo: string) =>
      db.sql.unsafe(
        `INSERT INTO _prom_data.histogram_samples (series_id, time, is_float, schema, reset_hint,
           count, sum, zero_threshold, zero_count, positive_spans, positive_counts,
           negative_spans, negative_counts, custom_values, received_at)
         VALUES ($1, ${t}, false, 0, 0, 1, 1, 0, 0, '{}', '{}', '{}', '{}', '{}',
                 now() - interval '${receivedAgo}')`,
        [id],
      );
    await hist("now() - interval '3 hours'", "2 hours");
    await hist("now() - interval '2 hours'", "2 hours");
    await db.sql`SELECT _prom_catalog.ensure_partitions(ARRAY[now() - interval '2 hours'])`;
    await db.sql`INSERT INTO _prom_data.samples (series_id, time, value)
                 SELECT ${id}, time, 1 FROM _prom_data.histogram_samples
                 WHERE time > now() - interval '150 minutes'`;
    await hist("now() - interval '1 hour'", "1 minute");
    const lines: string[] = [];
    const job = new RetentionJob({
      sql: db.sql,
      log: new Logger("info", "logfmt", (l) => lines.push(l)),
      deleteBatch: 1,
    });
    await job.runOnce();
    const count = async (q: string) => (await db.sql.unsafe<{ n: number }[]>(q))[0].n;
    assertEquals(
      await count(
        `SELECT count(*)::int AS n FROM _prom_data.exemplars WHERE labels->>'trace_id' = 'new'`,
      ),
      1,
    );
    assertEquals(await count(`SELECT count(*)::int AS n FROM _prom_data.exemplars`), 1);
    assertEquals(await count(`SELECT count(*)::int AS n FROM _prom_data.created_timestamps`), 1);
    const left = await db.sql<{ ago: string }[]>`
      SELECT (now() - time)::text AS ago FROM _prom_data.histogram_samples ORDER BY time`;
    assertEquals(left.map((r) => r.ago.slice(0, 2)), ["02", "01"]);
    assert(lines.some((l) => l.includes("Retention deleted expired exemplars")), lines.join("\n"));
    assert(lines.some((l) => l.includes("expired histogram samples")), lines.join("\n"));
  } finally {
    await db.drop();
  }
});
