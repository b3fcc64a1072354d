/**
 * The retention job: every 30 minutes (by default), removes samples older
 * than their metric's retention period, as set with Promscale's SQL API
 * (`prom_api.set_default_retention_period(interval)`, default 90 days, and
 * `prom_api.set_metric_retention_period(metric, interval)`).
 *
 * Whole partitions are dropped, which is cheap, but a partition holds every
 * metric: one may be dropped only when all of its rows are expired for
 * every metric. So partitions are dropped when they end before now minus
 * the LONGEST retention in force (the default or any metric's), and the
 * rows of metrics with a shorter retention that are older than their own
 * cut are deleted in batches. With only the default set (the usual case),
 * that is just dropping partitions.
 *
 * Compressed windows (docs/storage.md) are deleted once their newest
 * sample is older than their metric's retention.
 *
 * With TimescaleDB, `_prom_data.samples` is a hypertable and its chunks are
 * dropped with `drop_chunks` instead (that branch is untested here: the
 * test machines have no TimescaleDB).
 *
 * Safe when several connectors run it at once: a run holds a session
 * advisory lock (`pg_try_advisory_lock`) and a connector that cannot take
 * it skips the run. Partition drops wait at most a few seconds for their
 * lock (a DROP queues every writer behind it), and give up until the next
 * run when that is not enough.
 *
 * Connectors keep a cache of partitions they know exist; writers whose
 * cached partition was dropped here get a "no partition" error on their
 * next write into it and retry after forgetting the cache (writer.ts).
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import { isLockNotAvailable } from "../db_errors.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/log.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import { PARTITION_LOCK_KEY } from "./migrations/schema.ts";

/** Advisory lock key held during a retention run (shared by all connectors). */
export const RETENTION_LOCK_KEY = 0x72657465; // "rete"

/** Default time between runs: 30 minutes, as Promscale's maintenance jobs. */
export const DEFAULT_RETENTION_INTERVAL_MS = 30 * 60 * 1000;

/** Rows deleted per statement when deleting a metric's expired rows. */
export const DEFAULT_DELETE_BATCH = 10_000;

/** What one run did. */
export interface RetentionResult {
  /** False when another connector held the lock and this run did nothing. */
  ran: boolean;
  /** Partitions (or TimescaleDB chunks) dropped. */
  droppedPartitions: string[];
  /** Rows deleted, by metric, for metrics with a retention shorter than the longest. */
  deletedRows: Record<string, number>;
  /** HA clusters forgotten (silent longer than `haForgetAfterMs`). */
  forgottenClusters: number;
}

/** Options of the retention job. */
export interface RetentionOptions {
  sql: Sql;
  log: Logger;
  metrics?: ConnectorMetrics;
  /** Time between runs (default 30 min); the first run comes one interval after `start()`. */
  intervalMs?: number;
  /** Rows per DELETE (default 10,000). */
  deleteBatch?: number;
  /** Longest wait for the lock a partition drop needs (default 5 s). */
  lockTimeoutMs?: number;
  /** Called after partitions were dropped (to forget this connector's partition cache). */
  onPartitionsDropped?: () => void;
  /**
   * HA clusters no connector has heard for this long are forgotten
   * (`_prom_catalog.ha_forget_clusters`; default 7 days).
   */
  haForgetAfterMs?: number;
  /** The HA cluster label (to find a cluster's staged samples; default "cluster"). */
  haClusterLabel?: string;
}

/** Default of `RetentionOptions.haForgetAfterMs`: 7 days. */
export const HA_FORGET_AFTER_MS = 7 * 24 * 3600 * 1000;
/** Clusters forgotten per run, at most. */
const HA_FORGET_PER_RUN = 10_000;

/** Runs retention periodically; see the module comment. */
export class RetentionJob {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<unknown> | null = null;
  #stopped = false;
  readonly intervalMs: number;

  constructor(readonly o: RetentionOptions) {
    this.intervalMs = o.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS;
  }

  /** Schedules runs, the first one interval from now. */
  start(): void {
    this.#schedule();
  }

  /** Cancels future runs and waits for one in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running?.catch(() => {});
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.runOnce()
        .catch((err) => {
          this.o.log.warn("Retention run failed, will retry at the next run", {
            err: errorMessage(err),
          });
        })
        .finally(() => {
          this.#running = null;
          this.#schedule();
        });
    }, this.intervalMs);
  }

  /** One run, now. Resolves with what it did; throws when the database fails. */
  async runOnce(): Promise<RetentionResult> {
    const result: RetentionResult = {
      ran: false,
      droppedPartitions: [],
      deletedRows: {},
      forgottenClusters: 0,
    };
    const conn = await this.o.sql.reserve();
    try {
      const [{ locked }] = await conn<{ locked: boolean }[]>`
        SELECT pg_try_advisory_lock(${RETENTION_LOCK_KEY}) AS locked`;
      if (!locked) {
        this.o.log.debug("Retention run skipped: another connector is running it");
        return result;
      }
      try {
        result.ran = true;
        await this.#dropExpired(conn, result);
        await this.#deleteExpiredRows(conn, result);
        await this.#deleteExpiredCompressed(conn);
        await this.#deleteExpiredDataModel(conn);
        await this.#forgetClusters(conn, result);
      } finally {
        await conn`SELECT pg_advisory_unlock(${RETENTION_LOCK_KEY})`.catch(() => {});
      }
    } finally {
      conn.release();
    }
    return result;
  }

  /** Drops partitions (or chunks) that end before now minus the longest retention. */
  async #dropExpired(conn: Sql, result: RetentionResult): Promise<void> {
    const [plan] = await conn<{ cut: Date; longest: string; partitioned: boolean }[]>`
      WITH longest AS (
        SELECT greatest(
          (SELECT retention_period FROM _prom_catalog.default_retention),
          (SELECT max(retention_period) FROM _prom_catalog.metric_retention)) AS r
      )
      SELECT now() - r AS cut, r::text AS longest,
             (SELECT relkind = 'p' FROM pg_class
              WHERE oid = '_prom_data.samples'::regclass) AS partitioned
      FROM longest`;
    if (!plan.partitioned) {
      // TimescaleDB hypertable (untested: no TimescaleDB on the test machines).
      const rows = await conn<{ chunk: string }[]>`
        SELECT drop_chunks('_prom_data.samples', older_than => ${plan.cut}::timestamptz)::text
          AS chunk`;
      for (const r of rows) result.droppedPartitions.push(r.chunk);
      if (rows.length) this.#dropped(rows.map((r) => r.chunk), plan.longest);
      return;
    }
    const expired = await conn<{ table_name: string }[]>`
      SELECT table_name FROM _prom_catalog.sample_partitions
      WHERE range_end <= ${plan.cut}::timestamptz ORDER BY range_start`;
    const lockTimeout = `${Math.max(1, Math.round(this.o.lockTimeoutMs ?? 5000))}ms`;
    for (const { table_name } of expired) {
      try {
        await conn`BEGIN`;
        try {
          await conn`SELECT set_config('lock_timeout', ${lockTimeout}, true)`;
          // Serialises with ensure_partitions(), which creates partitions
          // under the same lock.
          await conn`SELECT pg_advisory_xact_lock(${PARTITION_LOCK_KEY})`;
          await conn.unsafe(`DROP TABLE IF EXISTS _prom_data.${quoteIdent(table_name)}`);
          await conn`DELETE FROM _prom_catalog.sample_partitions WHERE table_name = ${table_name}`;
          await conn`COMMIT`;
        } catch (err) {
          await conn`ROLLBACK`.catch(() => {});
          throw err;
        }
        result.droppedPartitions.push(table_name);
      } catch (err) {
        if (!isLockNotAvailable(err)) throw err;
        this.o.log.warn(
          "Retention could not lock a partition in time, will retry at the next run",
          {
            partition: table_name,
            lock_timeout: lockTimeout,
          },
        );
        break;
      }
    }
    if (result.droppedPartitions.length) this.#dropped(result.droppedPartitions, plan.longest);
  }

  /**
   * Deletes the compressed windows (docs/storage.md) whose newest sample is
   * older than their metric's retention, in batches.
   */
  async #deleteExpiredCompressed(conn: Sql): Promise<void> {
    const batch = this.o.deleteBatch ?? DEFAULT_DELETE_BATCH;
    const total: Record<string, number> = {};
    while (true) {
      const rows = await conn<{ metric_name: string; windows: string }[]>`
        SELECT metric_name, windows::text FROM _prom_catalog.drop_expired_compressed(${batch})`;
      let n = 0;
      for (const r of rows) {
        total[r.metric_name] = (total[r.metric_name] ?? 0) + Number(r.windows);
        n += Number(r.windows);
      }
      if (n < batch) break;
    }
    for (const [metric, windows] of Object.entries(total)) {
      this.o.log.info("Retention deleted expired compressed windows", { metric, windows });
    }
  }

  /**
   * Deletes expired exemplars and created timestamps, and the native
   * histogram rows whose count row is gone (dropped with its partition
   * above, or judged an HA copy) once they are an hour old (migration 9).
   */
  async #deleteExpiredDataModel(conn: Sql): Promise<void> {
    const batch = this.o.deleteBatch ?? DEFAULT_DELETE_BATCH;
    const total = new Map<string, number>();
    const add = (what: string, metric: string, n: number) => {
      const key = `${what}\u0000${metric}`;
      total.set(key, (total.get(key) ?? 0) + n);
    };
    while (true) {
      const rows = await conn<{ what: string; metric_name: string; removed: string }[]>`
        SELECT what, metric_name, removed::text
        FROM _prom_catalog.drop_expired_data_model(${batch})`;
      let most = 0;
      for (const r of rows) {
        add(r.what, r.metric_name, Number(r.removed));
        most = Math.max(most, Number(r.removed));
      }
      if (most < batch) break;
    }
    while (true) {
      const [{ n }] = await conn<{ n: string }[]>`
        SELECT _prom_catalog.histogram_gc(interval '1 hour', ${batch})::text AS n`;
      if (Number(n) > 0) add("histogram samples", "", Number(n));
      if (Number(n) < batch) break;
    }
    for (const [key, n] of total) {
      const [what, metric] = key.split("\u0000");
      this.o.log.info(
        `Retention deleted expired ${what}`,
        metric ? { metric, rows: n } : { rows: n },
      );
    }
  }

  /** Forgets the HA clusters silent longer than `haForgetAfterMs` (migration 5). */
  async #forgetClusters(conn: Sql, result: RetentionResult): Promise<void> {
    const afterMs = this.o.haForgetAfterMs ?? HA_FORGET_AFTER_MS;
    const [{ n }] = await conn<{ n: string }[]>`
      SELECT _prom_catalog.ha_forget_clusters(
        ${`${Math.round(afterMs)} milliseconds`}::interval,
        ${this.o.haClusterLabel ?? "cluster"}, ${HA_FORGET_PER_RUN}) AS n`;
    result.forgottenClusters = Number(n);
    if (result.forgottenClusters) {
      this.o.log.info("Forgot HA clusters no connector heard lately", {
        count: result.forgottenClusters,
        silent_for: `${Math.round(afterMs / 3_600_000)}h`,
      });
    }
  }

  #dropped(names: string[], longest: string): void {
    this.o.metrics?.retentionDropped.inc({}, names.length);
    this.o.log.info("Retention dropped expired partitions", {
      count: names.length,
      partitions: names.join(","),
      older_than: longest,
    });
    this.o.onPartitionsDropped?.();
  }

  /**
   * Deletes, in batches, the rows older than their metric's cut for every
   * metric whose retention is shorter than the longest (those rows survive
   * the partition drops).
   */
  async #deleteExpiredRows(conn: Sql, result: RetentionResult): Promise<void> {
    const shorter = await conn<{ metric_name: string; cut: Date }[]>`
      WITH d AS (SELECT retention_period AS r FROM _prom_catalog.default_retention),
      longest AS (
        SELECT greatest((SELECT r FROM d),
                        (SELECT max(retention_period) FROM _prom_catalog.metric_retention)) AS r
      ),
      metrics AS (
        SELECT metric_name FROM _prom_catalog.metric
        UNION SELECT metric_name FROM _prom_catalog.metric_retention
      )
      SELECT m.metric_name, now() - coalesce(o.retention_period, d.r) AS cut
      FROM metrics m
      LEFT JOIN _prom_catalog.metric_retention o USING (metric_name)
      CROSS JOIN d CROSS JOIN longest
      WHERE coalesce(o.retention_period, d.r) < longest.r
      ORDER BY m.metric_name`;
    const batch = this.o.deleteBatch ?? DEFAULT_DELETE_BATCH;
    for (const { metric_name, cut } of shorter) {
      let total = 0;
      while (true) {
        const res = await conn`
          WITH doomed AS (
            SELECT d.series_id, d.time FROM _prom_data.samples d
            WHERE d.series_id IN (SELECT id FROM _prom_catalog.series WHERE metric_name = ${metric_name})
              AND d.time < ${cut}::timestamptz
            LIMIT ${batch}
          )
          DELETE FROM _prom_data.samples x USING doomed
          WHERE x.series_id = doomed.series_id AND x.time = doomed.time`;
        total += res.count;
        if (res.count < batch) break;
      }
      if (total > 0) {
        result.deletedRows[metric_name] = total;
        this.o.log.info("Retention deleted expired samples", {
          metric: metric_name,
          rows: total,
          older_than: cut.toISOString(),
        });
      }
    }
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
