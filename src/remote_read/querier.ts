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
 * the sample limit is passed. A series' rows come as those byte strings
 * (copies of compressed samples hidden, as `_prom_catalog.series_samples`
 * hides them), its compressed windows in the range as stored, one byte
 * string per window, decoded and merged with the rows here
 * (`storage/windows.ts`; docs/storage.md, "Remote read and the PromQL API:
 * decoded in TypeScript"). Series with native histograms, and series whose
 * windows the decoder declines (`NotDecodable`), read through
 * `series_samples`, which decodes in SQL.
 *
 * With `exemplars`, one more statement per request (not per series) fetches
 * the exemplars of every returned series in its query's time range
 * (`float8send` again, for every bit of the value); a series is returned
 * for its samples, and its exemplars come with it.
 *
 * @module
 */
import { HISTOGRAM_BYTES_SQL, histogramFromBytes, type StoredHistogram } from "./histograms.ts";
import type { Sql } from "../../deps.ts";
import { HttpError } from "../errors.ts";
import { mapDbError } from "../db_errors.ts";
import type { Gate } from "../storage/db.ts";
import type { ReadQuery } from "./decode.ts";
import { int64sFromBE, type ResultExemplar, type ResultSeries } from "./encode.ts";
import { matchersToSql } from "./matchers.ts";
import {
  decodeWindows,
  mergeSamples,
  NotDecodable,
  windowBytesSql,
  windowsInRangeSql,
} from "../storage/windows.ts";

// What PromQL's own fetch SQL (src/promql/fetch_sql.ts, which reads the
// same rows) shares with this querier: this module is the stage's published one.
export { HISTOGRAM_BYTES_SQL, histogramFromBytes } from "./histograms.ts";
export type { StoredHistogram } from "./histograms.ts";
export type { ReadQuery } from "./decode.ts";
export type { ResultSeries } from "./encode.ts";

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
  /** Also fetch each returned series' exemplars (`ResultSeries.exemplars`). */
  exemplars?: boolean;
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
    // Per returned series (for exemplars): its id and its query's range.
    const ids: string[] = [];
    const from: string[] = [];
    const to: string[] = [];
    const returned: ResultSeries[] = [];
    const idOf = new Map<ResultSeries, string>();
    let samples = 0;
    for (const q of queries) {
      const series: ResultSeries[] = [];
      results.push(series);
      if (q.startMs > q.endMs) continue;
      const matchers = o.replicaLabel === undefined
        ? q.matchers
        : q.matchers.filter((m) => m.name !== o.replicaLabel);
      const cond = matchersToSql(matchers, 4);
      const cap = o.maxSamples - samples + 1;
      const params = [isoTime(q.startMs), isoTime(q.endMs), String(cap), ...cond.params];
      // Series whose windows the decoder does not take (NotDecodable): read
      // again through series_samples once the cursor is done, in their place.
      const again: { id: string; at: number }[] = [];
      const add = (row: Row, ts: ArrayLike<number>, vs: Uint8Array, n: number) => {
        samples += n + row.hn;
        if (samples > o.maxSamples) {
          throw new HttpError(
            413,
            `Read request selects more than ${o.maxSamples} samples, the limit per request: ` +
              `narrow the matchers or the time range`,
          );
        }
        const rs: ResultSeries = {
          labels: sortedLabels(row.labels),
          timestamps: ts,
          valuesBE: vs,
          histograms: row.hn ? histogramsFromBytes(row.hb!) : undefined,
        };
        idOf.set(rs, row.id);
        return rs;
      };
      const text = statement(cond.text, true);
      const cursor = o.sql.unsafe<Row[]>(text, params as never[]).cursor(CURSOR_ROWS);
      for await (const rows of cursor) {
        for (const row of rows) {
          let ts: ArrayLike<number> = int64sFromBE(row.ts ?? new Uint8Array(0));
          let vs = row.vs ?? new Uint8Array(0);
          if (row.wb) {
            try {
              ({ timestamps: ts, valuesBE: vs } = mergeSamples(
                ts,
                vs,
                decodeWindows(row.wb, q.startMs, q.endMs),
              ));
            } catch (err) {
              if (!(err instanceof NotDecodable)) throw err;
              again.push({ id: row.id, at: series.length });
              series.push(undefined as unknown as ResultSeries);
              continue;
            }
            if (ts.length === 0 && row.hn === 0) continue;
          }
          series.push(add(row, ts, vs, ts.length));
        }
      }
      if (again.length) {
        const one = statement(`${cond.text} AND s.id = $${params.length + 1}::int8`, false);
        for (const a of again) {
          const [row] = await o.sql.unsafe<Row[]>(one, [...params, a.id] as never[]);
          series[a.at] = row
            ? add(
              row,
              int64sFromBE(row.ts ?? new Uint8Array(0)),
              row.vs ?? new Uint8Array(0),
              row.n,
            )
            : undefined as unknown as ResultSeries;
        }
        const kept = series.filter((s) => s !== undefined);
        series.splice(0, series.length, ...kept);
      }
      if (o.exemplars) {
        for (const rs of series) {
          ids.push(idOf.get(rs)!);
          from.push(isoTime(q.startMs));
          to.push(isoTime(q.endMs));
          returned.push(rs);
        }
      }
    }
    if (returned.length) await addExemplars(o.sql, returned, ids, from, to);
    return { results, samples };
  };
  try {
    return o.gate ? await o.gate.run(run) : await run();
  } catch (err) {
    throw mapDbError(err, "Cannot run read query", "Database unavailable");
  }
}

/**
 * The statement of one query: `$1`, `$2` the time range, `$3` the most
 * samples per series, `$4`... the matchers' parameters (`cond`). With
 * `windows`, a series without native histograms gets its rows in `ts`/`vs`
 * (copies of compressed samples hidden, as series_samples does) and its
 * compressed windows overlapping the range in `wb`, as they are stored
 * (`windowBytesSql`), to be decoded and merged here; without, or for a
 * series with native histograms, `ts`/`vs` are all its samples, through
 * `_prom_catalog.series_samples`.
 */
function statement(cond: string, windows: boolean): string {
  // A series with native histograms: its histograms (those whose presence
  // row is stored, histograms.ts), and not those presence rows as float
  // samples.
  const viaSql = `
    SELECT p.time, p.value
    FROM _prom_catalog.series_samples(ser.id, $1::timestamptz, $2::timestamptz) p
    WHERE ${windows ? "ser.has_h AND " : ""}(NOT ser.has_h OR NOT EXISTS (
      SELECT 1 FROM _prom_data.histogram_samples h
      WHERE h.series_id = ser.id AND h.time = p.time))`;
  const rows = `
    SELECT r.time, r.value FROM _prom_data.samples r
    WHERE NOT ser.has_h AND r.series_id = ser.id AND r.time >= $1::timestamptz
      AND r.time <= $2::timestamptz
      AND (r.time >= (SELECT horizon FROM _prom_catalog.compress_state)
           OR NOT _prom_catalog.compressed_has(r.series_id, r.time))`;
  return `
    SELECT ser.id::text AS id, ser.labels::text AS labels, x.n::int AS n, x.ts, x.vs,
      ${windows ? "w.wb" : "NULL::bytea AS wb"}, y.n::int AS hn, y.hb
    FROM (SELECT s.id, s.labels,
            EXISTS (SELECT 1 FROM _prom_data.histogram_samples h WHERE h.series_id = s.id)
              AS has_h
          FROM _prom_catalog.series s WHERE ${cond}) ser
    CROSS JOIN LATERAL (
      SELECT count(*) AS n,
        string_agg(int8send(floor(extract(epoch FROM d.time) * 1000)::int8), ''::bytea
                   ORDER BY d.time) AS ts,
        string_agg(float8send(d.value), ''::bytea ORDER BY d.time) AS vs
      FROM (${windows ? `${viaSql} UNION ALL ${rows}` : viaSql}
            ORDER BY 1 LIMIT $3::int8) d
    ) x
    ${
    windows
      ? `CROSS JOIN LATERAL (
      SELECT string_agg(${windowBytesSql("c")}, ''::bytea ORDER BY c.window_start) AS wb
      FROM _prom_data.compressed c
      WHERE NOT ser.has_h AND ${
        windowsInRangeSql("c", "ser.id", "$1::timestamptz", "$2::timestamptz")
      }
    ) w`
      : ""
  }
    CROSS JOIN LATERAL (
      SELECT count(*) AS n, string_agg(int4send(octet_length(z.b)) || z.b, ''::bytea
                                       ORDER BY z.t) AS hb
      FROM (SELECT h.time AS t, ${HISTOGRAM_BYTES_SQL} AS b
            FROM _prom_data.histogram_samples h
            JOIN _prom_data.samples p ON p.series_id = h.series_id AND p.time = h.time
            WHERE ser.has_h AND h.series_id = ser.id AND h.time >= $1::timestamptz
              AND h.time <= $2::timestamptz
            ORDER BY h.time LIMIT $3::int8) z
    ) y
    WHERE x.n > 0 OR y.n > 0${windows ? " OR w.wb IS NOT NULL" : ""}`;
}

/**
 * The exemplars of `series[k]` (id `ids[k]`, times `from[k]`..`to[k]`
 * inclusive), in one statement for all of them.
 */
async function addExemplars(
  sql: Sql,
  series: ResultSeries[],
  ids: string[],
  from: string[],
  to: string[],
): Promise<void> {
  const rows = await sql.unsafe<{ k: string; labels: string; v: Uint8Array; ms: number }[]>(
    `SELECT q.k::text AS k, e.labels::text AS labels, float8send(e.value) AS v,
            floor(extract(epoch FROM e.time) * 1000)::float8 AS ms
     FROM unnest($1::int8[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY
            AS q(id, lo, hi, k)
     JOIN _prom_data.exemplars e ON e.series_id = q.id AND e.time >= q.lo AND e.time <= q.hi
     ORDER BY q.k, e.time, e.labels::text`,
    [ids, from, to] as never[],
  );
  for (const r of rows) {
    const s = series[Number(r.k) - 1];
    const e: ResultExemplar = {
      labels: sortedLabels(r.labels),
      valueBE: r.v,
      timestamp: Number(r.ms),
    };
    (s.exemplars ??= []).push(e);
  }
}

interface Row {
  id: string;
  labels: string;
  n: number;
  ts: Uint8Array | null;
  vs: Uint8Array | null;
  wb: Uint8Array | null;
  hn: number;
  hb: Uint8Array | null;
}

/** The histograms of one series: each its length (int4) then its bytes. */
export function histogramsFromBytes(b: Uint8Array): StoredHistogram[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: StoredHistogram[] = [];
  for (let p = 0; p < b.length;) {
    const n = dv.getInt32(p);
    out.push(histogramFromBytes(b.subarray(p + 4, p + 4 + n)));
    p += 4 + n;
  }
  return out;
}

/** A label set from its jsonb text, sorted by name (names are ASCII: `<` is byte order). */
export function sortedLabels(json: string): { name: string; value: string }[] {
  const obj = JSON.parse(json) as Record<string, string>;
  return Object.keys(obj).sort().map((name) => ({ name, value: obj[name] }));
}

/** ms → ISO 8601, exact; the caller has clamped to years 0001..9999. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
