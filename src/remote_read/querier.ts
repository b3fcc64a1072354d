/**
 * Runs the queries of a remote read request against PostgreSQL and returns
 * the series with their samples, bounded by a maximum number of samples per
 * request.
 *
 * One statement per query: the series the matchers select, and for each
 * (LATERAL) its samples in the time range aggregated into two byte strings
 * (`int8send` of the ms timestamps, `float8send` of the values), so a series
 * is one row whatever its length and values keep every bit (postgres.js
 * reads float8 as text, which loses NaN payloads such as the staleness
 * marker). Rows come through a cursor, so the statement stops as soon as
 * the sample limit is passed.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import { HttpError } from "../errors.ts";
import { mapDbError } from "../db_errors.ts";
import type { Gate } from "../storage/db.ts";
import type { ReadQuery } from "./decode.ts";
import { int64sFromBE, type ResultSeries } from "./encode.ts";
import { matchersToSql } from "./matchers.ts";

/** Default of the most samples one read request may return. */
export const DEFAULT_MAX_READ_SAMPLES = 5_000_000;

/** What the querier needs. */
export interface QuerierOptions {
  sql: Sql;
  /** Bounds database work shared with the write path (503 when exhausted). */
  gate?: Gate;
  /** Most samples per request, over all its queries; beyond that, 413. */
  maxSamples: number;
  /**
   * In HA mode, the replica label: matchers on it are dropped (the label is
   * never stored, so Prometheus's external-label matcher on it would
   * otherwise select nothing; Promscale issue #619).
   */
  replicaLabel?: string;
}

/** Rows fetched per cursor round trip (each row is a whole series). */
const CURSOR_ROWS = 64;

/**
 * Runs `queries`; returns one list of series per query, in order, each
 * series with at least one sample.
 *
 * @throws {HttpError} 413 when more than `maxSamples` samples are selected,
 *   400 for matchers that cannot be served, 503 when the database fails.
 */
export async function runQueries(
  queries: ReadQuery[],
  o: QuerierOptions,
): Promise<{ results: ResultSeries[][]; samples: number }> {
  const run = async () => {
    const results: ResultSeries[][] = [];
    let samples = 0;
    for (const q of queries) {
      const series: ResultSeries[] = [];
      results.push(series);
      if (q.startMs > q.endMs) continue;
      const matchers = o.replicaLabel === undefined
        ? q.matchers
        : q.matchers.filter((m) => m.name !== o.replicaLabel);
      const cond = matchersToSql(matchers, 4);
      const text = `
        SELECT ser.labels::text AS labels, x.n::int AS n, x.ts, x.vs
        FROM (SELECT s.id, s.labels FROM _prom_catalog.series s WHERE ${cond.text}) ser
        CROSS JOIN LATERAL (
          SELECT count(*) AS n,
            string_agg(int8send(floor(extract(epoch FROM d.time) * 1000)::int8), ''::bytea
                       ORDER BY d.time) AS ts,
            string_agg(float8send(d.value), ''::bytea ORDER BY d.time) AS vs
          FROM (SELECT time, value FROM _prom_data.samples
                WHERE series_id = ser.id AND time >= $1::timestamptz AND time <= $2::timestamptz
                ORDER BY time LIMIT $3::int8) d
        ) x
        WHERE x.n > 0`;
      const cap = o.maxSamples - samples + 1;
      const params = [isoTime(q.startMs), isoTime(q.endMs), String(cap), ...cond.params];
      const cursor = o.sql.unsafe<Row[]>(text, params as never[]).cursor(CURSOR_ROWS);
      for await (const rows of cursor) {
        for (const row of rows) {
          samples += row.n;
          if (samples > o.maxSamples) {
            throw new HttpError(
              413,
              `Read request selects more than ${o.maxSamples} samples, the limit per request: ` +
                `narrow the matchers or the time range`,
            );
          }
          series.push({
            labels: sortedLabels(row.labels),
            timestamps: int64sFromBE(row.ts),
            valuesBE: row.vs,
          });
        }
      }
    }
    return { results, samples };
  };
  try {
    return o.gate ? await o.gate.run(run) : await run();
  } catch (err) {
    throw mapDbError(err, "Cannot run read query", "Database unavailable");
  }
}

interface Row {
  labels: string;
  n: number;
  ts: Uint8Array;
  vs: Uint8Array;
}

/** A label set from its jsonb text, sorted by name (names are ASCII: `<` is byte order). */
function sortedLabels(json: string): { name: string; value: string }[] {
  const obj = JSON.parse(json) as Record<string, string>;
  return Object.keys(obj).sort().map((name) => ({ name, value: obj[name] }));
}

/** ms → ISO 8601, exact; the caller has clamped to years 0001..9999. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
