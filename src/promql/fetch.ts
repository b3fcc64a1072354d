/**
 * Data access for PromQL: selectors and time ranges go to PostgreSQL, the
 * rest happens in memory.
 *
 * Samples come by the same SQL as remote read's (`fetch_sql.ts`, tuned for
 * speed: see there), so PromQL sees exactly what remote read serves:
 * matchers translated to SQL (regexes included), every bit of every value (staleness markers too), and
 * in HA mode no replica label (matchers on it are dropped; the `cluster`
 * label is stored and selectable). Native histogram samples come along
 * (`histogram.ts`, `withHistograms`). The metadata endpoints (`series`,
 * `labels`, `label/<name>/values`) query the series catalog with the same
 * matcher translation.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import { mapDbError } from "../db_errors.ts";
import type { Gate } from "../storage/db.ts";
import { matchersToSql } from "../remote_read/matchers.ts";
import type { LabelMatcher } from "./ast.ts";
import type { Grid } from "./pushdown.ts";
import { EvalError } from "./eval.ts";
import { fetchSeries, TooManySamples } from "./fetch_sql.ts";
import { compareLabels, type Labels, type SeriesData } from "./value.ts";
import { withHistograms } from "./histogram.ts";

/** What PromQL reads. */
export interface PromqlStore {
  /**
   * The samples of the series each matcher list selects, in [minMs, maxMs]
   * (inclusive), one list of series per selector, each sorted by labels.
   * Throws an {@linkcode EvalError} beyond `maxSamples` samples in all.
   */
  select(selectors: Selection[], maxSamples: number): Promise<SeriesData[][]>;
  /** Label sets of the series any matcher list selects (with samples in the range, if given). */
  series(sets: LabelMatcher[][], range: OptionalRange, limit: number): Promise<Labels[]>;
  /** Label names, sorted; of the selected series when `sets` is not empty. */
  labelNames(sets: LabelMatcher[][], range: OptionalRange, limit: number): Promise<string[]>;
  /** Values of a label, sorted. */
  labelValues(
    name: string,
    sets: LabelMatcher[][],
    range: OptionalRange,
    limit: number,
  ): Promise<string[]>;
  /**
   * Metric metadata as remote write delivered it (`/api/v1/metadata`): per
   * metric name, its type, help and unit; of `metric` only when not empty.
   * Absent: none is stored.
   */
  metadata?(metric: string, limit: number): Promise<Record<string, MetricMetadata[]>>;
  /**
   * The exemplars of the series any matcher list selects, in [minMs, maxMs]
   * (inclusive), per series sorted by labels, each series' exemplars by
   * time (`/api/v1/query_exemplars`). Absent: none is stored.
   */
  exemplars?(sets: LabelMatcher[][], minMs: number, maxMs: number): Promise<SeriesExemplars[]>;
}

/** What one selector needs. */
export interface Selection {
  matchers: LabelMatcher[];
  minMs: number;
  maxMs: number;
  /** Only the samples in these windows are needed (`pushdown.ts`); all when absent. */
  grid?: Grid;
}

/** One series of `/api/v1/query_exemplars`. */
export interface SeriesExemplars {
  seriesLabels: Labels;
  exemplars: { labels: Labels; value: number; timestampMs: number }[];
}

/** One metadata entry of `/api/v1/metadata`. */
export interface MetricMetadata {
  type: string;
  help: string;
  unit: string;
}

/** A time range in ms; null ends are open. */
export interface OptionalRange {
  minMs: number | null;
  maxMs: number | null;
}

/** Options of the PostgreSQL store. */
export interface PgStoreOptions {
  sql: Sql;
  gate?: Gate;
  /** In HA mode, the replica label (never stored; matchers on it are dropped). */
  replicaLabel?: string;
  /**
   * Statements per selector, each fetching a part of its series on its own
   * connection (default {@linkcode DEFAULT_PARALLEL}; never more than the
   * gate's slots).
   */
  parallel?: number;
}

/** Statements per selector by default: two halves of the series, fetched at once. */
export const DEFAULT_PARALLEL = 2;

/** Stored times are within years 0001..9999 (as the write path clamps them). */
const MIN_TIMESTAMP_MS = -62135596800000;
const MAX_TIMESTAMP_MS = 253402300799999;

const STALE_HI = 0x7ff00000;
const STALE_LO = 0x00000002;

/** The PromQL store over our PostgreSQL schema. */
export class PgPromqlStore implements PromqlStore {
  constructor(private readonly o: PgStoreOptions) {}

  async select(selectors: Selection[], maxSamples: number): Promise<SeriesData[][]> {
    let results;
    try {
      results = await fetchSeries(
        selectors.map((s) => ({
          matchers: s.matchers,
          startMs: clamp(s.minMs),
          endMs: clamp(s.maxMs),
          grid: s.grid,
        })),
        {
          sql: this.o.sql,
          gate: this.o.gate,
          maxSamples,
          replicaLabel: this.o.replicaLabel,
          // No more parts than the gate lets run at once.
          parallel: Math.min(this.o.parallel ?? DEFAULT_PARALLEL, this.o.gate?.slots ?? Infinity),
        },
      );
    } catch (err) {
      if (err instanceof TooManySamples) {
        throw new EvalError(
          "query processing would load too many samples into memory in query execution",
        );
      }
      throw mapDbError(err, "Cannot run read query", "Database unavailable");
    }
    return results.map((list) =>
      list.map((r) => {
        const labels: Labels = {};
        for (const l of r.labels) labels[l.name] = l.value;
        const n = r.timestamps.length;
        const view = new DataView(r.valuesBE.buffer, r.valuesBE.byteOffset, r.valuesBE.byteLength);
        const vs = new Float64Array(n);
        const stale = new Uint8Array(n);
        for (let i = 0; i < n; i++) {
          vs[i] = view.getFloat64(i * 8, false);
          if (
            view.getUint32(i * 8, false) === STALE_HI &&
            view.getUint32(i * 8 + 4, false) === STALE_LO
          ) {
            stale[i] = 1;
          }
        }
        const ts = r.timestamps instanceof Float64Array
          ? r.timestamps
          : Float64Array.from(r.timestamps);
        return withHistograms({ labels, ts, vs, stale }, r.histograms);
      }).sort((a, b) => compareLabels(a.labels, b.labels))
    );
  }

  series(sets: LabelMatcher[][], range: OptionalRange, limit: number): Promise<Labels[]> {
    return this.run(async (sql) => {
      const { where, params } = this.where(sets, range);
      const rows = await sql.unsafe<{ labels: string }[]>(
        `SELECT s.labels::text AS labels FROM _prom_catalog.series s WHERE ${where}` +
          (limit > 0 ? ` LIMIT ${limit}` : ""),
        params as never[],
      );
      return rows.map((r) => JSON.parse(r.labels) as Labels);
    });
  }

  labelNames(sets: LabelMatcher[][], range: OptionalRange, limit: number): Promise<string[]> {
    return this.run(async (sql) => {
      const { where, params } = this.where(sets, range);
      const rows = await sql.unsafe<{ k: string }[]>(
        `SELECT DISTINCT k COLLATE "C" AS k FROM _prom_catalog.series s, jsonb_object_keys(s.labels) k
         WHERE ${where} ORDER BY 1` + (limit > 0 ? ` LIMIT ${limit}` : ""),
        params as never[],
      );
      return rows.map((r) => r.k).filter((k) => k !== this.o.replicaLabel);
    });
  }

  labelValues(
    name: string,
    sets: LabelMatcher[][],
    range: OptionalRange,
    limit: number,
  ): Promise<string[]> {
    if (name === this.o.replicaLabel) return Promise.resolve([]);
    return this.run(async (sql) => {
      const { where, params } = this.where(sets, range);
      params.push(name);
      const rows = await sql.unsafe<{ v: string }[]>(
        `SELECT DISTINCT (s.labels ->> $${params.length}::text) COLLATE "C" AS v
         FROM _prom_catalog.series s
         WHERE s.labels ? $${params.length}::text AND ${where} ORDER BY 1` +
          (limit > 0 ? ` LIMIT ${limit}` : ""),
        params as never[],
      );
      return rows.map((r) => r.v);
    });
  }

  metadata(metric: string, limit: number): Promise<Record<string, MetricMetadata[]>> {
    return this.run(async (sql) => {
      const rows = await sql<{ metric_name: string; type: string; help: string; unit: string }[]>`
        SELECT metric_name, type, help, unit FROM _prom_catalog.metric_metadata
        WHERE ${metric} = '' OR metric_name = ${metric}
        ORDER BY metric_name LIMIT ${limit > 0 ? limit : null}`;
      const out: Record<string, MetricMetadata[]> = {};
      for (const r of rows) out[r.metric_name] = [{ type: r.type, help: r.help, unit: r.unit }];
      return out;
    });
  }

  exemplars(sets: LabelMatcher[][], minMs: number, maxMs: number): Promise<SeriesExemplars[]> {
    if (minMs > maxMs || sets.length === 0) return Promise.resolve([]);
    return this.run(async (sql) => {
      const { where, params } = this.where(sets, { minMs: null, maxMs: null });
      params.push(new Date(clamp(minMs)).toISOString(), new Date(clamp(maxMs)).toISOString());
      const n = params.length;
      // float8send: every bit of the value (postgres.js reads float8 as text).
      const rows = await sql.unsafe<
        { id: string; labels: string; el: string; v: Uint8Array; ms: number }[]
      >(
        `SELECT s.id::text AS id, s.labels::text AS labels, e.labels::text AS el,
                float8send(e.value) AS v,
                floor(extract(epoch FROM e.time) * 1000)::float8 AS ms
         FROM _prom_catalog.series s JOIN _prom_data.exemplars e ON e.series_id = s.id
         WHERE ${where} AND e.time >= $${n - 1}::timestamptz AND e.time <= $${n}::timestamptz
         ORDER BY s.id, e.time, e.labels::text`,
        params as never[],
      );
      const out: SeriesExemplars[] = [];
      let last: string | null = null;
      for (const r of rows) {
        if (r.id !== last) {
          out.push({ seriesLabels: JSON.parse(r.labels) as Labels, exemplars: [] });
          last = r.id;
        }
        const dv = new DataView(r.v.buffer, r.v.byteOffset, r.v.byteLength);
        out[out.length - 1].exemplars.push({
          labels: JSON.parse(r.el) as Labels,
          value: dv.getFloat64(0, false),
          timestampMs: Number(r.ms),
        });
      }
      return out.sort((a, b) => compareLabels(a.seriesLabels, b.seriesLabels));
    });
  }

  /** The condition for "any matcher set matches, and there are samples in the range". */
  private where(
    sets: LabelMatcher[][],
    range: OptionalRange,
  ): { where: string; params: (string | string[])[] } {
    const params: (string | string[])[] = [];
    const parts: string[] = [];
    for (const set of sets) {
      const ms = this.o.replicaLabel === undefined
        ? set
        : set.filter((m) => m.name !== this.o.replicaLabel);
      const c = matchersToSql(ms, params.length + 1);
      params.push(...c.params);
      parts.push(`(${c.text})`);
    }
    let where = parts.length ? `(${parts.join(" OR ")})` : "true";
    if (range.minMs !== null || range.maxMs !== null) {
      params.push(new Date(clamp(range.minMs ?? MIN_TIMESTAMP_MS)).toISOString());
      params.push(new Date(clamp(range.maxMs ?? MAX_TIMESTAMP_MS)).toISOString());
      // Rows, or a compressed window (docs/storage.md) overlapping the range.
      const [from, to] = [`$${params.length - 1}::timestamptz`, `$${params.length}::timestamptz`];
      where += ` AND (EXISTS (SELECT 1 FROM _prom_data.samples d WHERE d.series_id = s.id
        AND d.time >= ${from} AND d.time <= ${to})
        OR EXISTS (SELECT 1 FROM _prom_data.compressed c WHERE c.series_id = s.id
        AND c.max_time >= ${from} AND c.min_time <= ${to}))`;
    }
    return { where, params };
  }

  private async run<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      return this.o.gate ? await this.o.gate.run(() => fn(this.o.sql)) : await fn(this.o.sql);
    } catch (err) {
      throw mapDbError(err, "Cannot run query", "Database unavailable");
    }
  }
}

function clamp(ms: number): number {
  return Math.min(MAX_TIMESTAMP_MS, Math.max(MIN_TIMESTAMP_MS, ms));
}
