/**
 * The samples PromQL reads, fetched from PostgreSQL: the series the
 * matchers select and their samples in a time range, the same rows remote
 * read serves (`src/remote_read/querier.ts`: rows, compressed windows
 * fetched as stored and decoded here by `storage/windows.ts`, with
 * `_prom_catalog.series_samples` for series with native histograms and
 * windows the decoder declines; native histograms where their presence rows
 * are stored; every bit of every value), read faster:
 *
 * - times as `timestamptz_send` (microseconds since 2000, decoded exactly
 *   here) instead of `extract(epoch ...)`, which goes through `numeric`;
 * - the per-series aggregates take the samples in the order the ordered
 *   subquery gives them, without sorting them again (checked here: a
 *   series that came out of order would be sorted);
 * - JIT compilation off (for all the connector's connections, storage/db.ts):
 *   the planner's estimate for one lateral aggregate per series passes the
 *   JIT threshold, and compiling costs more than it saves on a statement
 *   that runs once;
 * - the selected series split into `parallel` parts (by id), fetched at
 *   once on as many connections, each part through the read gate (for
 *   ranges of an hour or more);
 * - with a grid of windows (`pushdown.ts`), only the samples in one of
 *   them (for compressed windows, the grid's condition is applied as they
 *   are decoded).
 *
 * Measured in bench/RESULTS.md ("PromQL: against Prometheus with remote
 * read"). The limit on samples counts over all parts; rows come through
 * cursors, so every part stops soon after it is passed.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import type { Gate } from "../storage/db.ts";
import {
  HISTOGRAM_BYTES_SQL,
  histogramsFromBytes,
  isoTime,
  type ReadQuery,
  type ResultSeries,
  sortedLabels,
} from "../remote_read/querier.ts";
import { matchersToSql } from "../remote_read/matchers.ts";
import {
  decodeWindows,
  mergeSamples,
  NotDecodable,
  windowBytesSql,
  windowsInRangeSql,
} from "../storage/windows.ts";
import type { Grid } from "./pushdown.ts";

/** The shortest time range fetched in parts (`FetchOptions.parallel`). */
export const PARALLEL_MIN_RANGE_MS = 3_600_000;

/** Rows fetched per cursor round trip (each row is a whole series). */
const CURSOR_ROWS = 64;

/** Microseconds between 1970-01-01 and 2000-01-01, in ms. */
const PG_EPOCH_MS = 946_684_800_000;

/** The earliest stored time (0001-01-01), as the write path clamps. */
const MIN_TIMESTAMP_MS = -62135596800000;

/** Thrown when more than the allowed samples are selected. */
export class TooManySamples extends Error {}

/** What {@linkcode fetchSeries} needs. */
export interface FetchOptions {
  sql: Sql;
  gate?: Gate;
  /** Most samples over all queries; beyond that, {@linkcode TooManySamples}. */
  maxSamples: number;
  /** Matchers on this label are dropped (HA mode: the replica label is never stored). */
  replicaLabel?: string;
  /**
   * Statements per query, each for a part of the series (at least 1), when
   * its range is at least {@linkcode PARALLEL_MIN_RANGE_MS} long.
   */
  parallel: number;
}

/** A query, with the grid of windows whose samples alone it needs, if any. */
export type FetchQuery = ReadQuery & { grid?: Grid };

/**
 * One list of series per query, in order, each series with at least one
 * sample or histogram; series within a list in no particular order.
 */
export async function fetchSeries(
  queries: FetchQuery[],
  o: FetchOptions,
): Promise<ResultSeries[][]> {
  const results: ResultSeries[][] = [];
  let samples = 0;
  let stop = false;
  for (const q of queries) {
    const series: ResultSeries[] = [];
    results.push(series);
    if (q.startMs > q.endMs) continue;
    const matchers = o.replicaLabel === undefined
      ? q.matchers
      : q.matchers.filter((m) => m.name !== o.replicaLabel);
    const cond = matchersToSql(matchers, 4);
    // A short range has few samples per series: one statement (a part
    // costs a transaction, about a millisecond).
    const parts = q.endMs - q.startMs >= PARALLEL_MIN_RANGE_MS
      ? Math.max(1, Math.floor(o.parallel))
      : 1;
    const cap = String(o.maxSamples - samples + 1);
    const params = [isoTime(q.startMs), isoTime(q.endMs), cap, ...cond.params];
    let inGrid = (_t: string) => "";
    // The grid's condition on a decoded compressed sample (ms, microseconds past it).
    let keep: ((ms: number, us: number) => boolean) | undefined;
    if (q.grid) {
      const g = q.grid;
      // The grid's first point at or before startMs: date_bin() then needs no
      // times before its origin.
      const anchor = g.anchorMs - Math.max(0, Math.ceil((g.anchorMs - q.startMs) / g.stepMs)) *
          g.stepMs;
      if (anchor >= MIN_TIMESTAMP_MS) {
        params.push(
          `${g.stepMs} milliseconds`,
          isoTime(anchor),
          `${g.stepMs - g.widthMs} milliseconds`,
        );
        const [step, origin, gap] = [params.length - 2, params.length - 1, params.length];
        // t is needed when the next grid point at or after it is within widthMs.
        const bin = (t: string) => `date_bin($${step}::interval, ${t}, $${origin}::timestamptz)`;
        inGrid = (t: string) => ` AND (${t} = ${bin(t)} OR ${t} >= ${bin(t)} + $${gap}::interval)`;
        // (t - origin) modulo the step, in microseconds: exact, as t >= startMs >= anchor
        const gapUs = (g.stepMs - g.widthMs) * 1000;
        keep = (ms, us) => {
          const m = ((ms - anchor) % g.stepMs) * 1000 + us;
          return m === 0 || m >= gapUs;
        };
      }
    }
    const part = async (k: number) => {
      const only = parts > 1 ? `AND s.id % ${parts} = ${k}` : "";
      const text = statement(cond.text, only, inGrid, true);
      const add = (row: Row, ts: Float64Array, vs: Uint8Array) => {
        samples += ts.length + row.hn;
        if (samples > o.maxSamples) {
          stop = true;
          throw new TooManySamples();
        }
        series.push({
          labels: sortedLabels(row.labels),
          timestamps: ts,
          valuesBE: vs,
          histograms: row.hn ? histogramsFromBytes(row.hb!) : undefined,
        });
      };
      await o.sql.begin(async (tx) => {
        // Series whose windows the decoder does not take: through series_samples after the cursor.
        const again: string[] = [];
        const cursor = tx.unsafe<Row[]>(text, params as never[]).cursor(CURSOR_ROWS);
        for await (const rows of cursor) {
          if (stop) return;
          for (const row of rows) {
            let ts = timesFromBytes(row.ts);
            let vs = row.vs ?? new Uint8Array(0);
            if (row.wb) {
              try {
                const c = decodeWindows(row.wb, q.startMs, q.endMs, keep);
                ({ timestamps: ts, valuesBE: vs } = mergeSamples(ts, vs, c));
              } catch (err) {
                if (!(err instanceof NotDecodable)) throw err;
                again.push(row.id);
                continue;
              }
              if (ts.length === 0 && row.hn === 0) continue;
            }
            add(row, ts, vs);
          }
        }
        if (again.length === 0) return;
        const one = statement(
          `${cond.text} AND s.id = $${params.length + 1}::int8`,
          "",
          inGrid,
          false,
        );
        for (const id of again) {
          if (stop) return;
          const [row] = await tx.unsafe<Row[]>(one, [...params, id] as never[]);
          if (row) add(row, timesFromBytes(row.ts), row.vs ?? new Uint8Array(0));
        }
      });
    };
    const gated = (k: number) => o.gate ? o.gate.run(() => part(k)) : part(k);
    const settled = await Promise.allSettled(Array.from({ length: parts }, (_, k) => gated(k)));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) {
      // The limit first: a part stopped by another's excess is not a failure.
      const over = settled.find((s) =>
        s.status === "rejected" && s.reason instanceof TooManySamples
      );
      throw (over as PromiseRejectedResult | undefined)?.reason ?? failed.reason;
    }
    if (stop) throw new TooManySamples();
  }
  for (const list of results) for (const s of list) sortIfNeeded(s);
  return results;
}

/**
 * The statement of one part: as the remote-read querier's, with the
 * changes listed in the module's description. `$1`, `$2`: the time range;
 * `$3`: most samples per series; `$4`...: the matchers' parameters, then
 * the grid's; `inGrid(t)`: the grid's condition on a time (or nothing).
 * With `windows`, a series without native histograms gets its rows in
 * `ts`/`vs` (copies of compressed samples hidden, as series_samples does)
 * and its compressed windows overlapping the range in `wb`, as stored
 * (`windowBytesSql`), decoded and merged here; otherwise (and for series
 * with native histograms) `ts`/`vs` are all its samples, through
 * `_prom_catalog.series_samples`.
 */
function statement(
  cond: string,
  part: string,
  inGrid: (t: string) => string,
  windows: boolean,
): string {
  const viaSql = `
    SELECT p.time, p.value
    FROM _prom_catalog.series_samples(ser.id, $1::timestamptz, $2::timestamptz) p
    WHERE ${windows ? "ser.has_h AND " : ""}(NOT ser.has_h OR NOT EXISTS (
      SELECT 1 FROM _prom_data.histogram_samples h
      WHERE h.series_id = ser.id AND h.time = p.time))${inGrid("p.time")}`;
  const rows = `
    SELECT r.time, r.value FROM _prom_data.samples r
    WHERE NOT ser.has_h AND r.series_id = ser.id AND r.time >= $1::timestamptz
      AND r.time <= $2::timestamptz
      AND (r.time >= (SELECT horizon FROM _prom_catalog.compress_state)
           OR NOT _prom_catalog.compressed_has(r.series_id, r.time))${inGrid("r.time")}`;
  const w = windows
    ? `CROSS JOIN LATERAL (
      SELECT string_agg(${windowBytesSql("c")}, ''::bytea ORDER BY c.window_start) AS wb
      FROM _prom_data.compressed c
      WHERE NOT ser.has_h AND ${
      windowsInRangeSql("c", "ser.id", "$1::timestamptz", "$2::timestamptz")
    }
    ) w`
    : "";
  return `
    SELECT ser.id::text AS id, ser.labels::text AS labels, x.n::int AS n, x.ts, x.vs,
      ${windows ? "w.wb" : "NULL::bytea AS wb"}, y.n::int AS hn, y.hb
    FROM (SELECT s.id, s.labels,
            EXISTS (SELECT 1 FROM _prom_data.histogram_samples h WHERE h.series_id = s.id)
              AS has_h
          FROM _prom_catalog.series s WHERE ${cond} ${part}) ser
    CROSS JOIN LATERAL (
      SELECT count(*) AS n, string_agg(timestamptz_send(d.time), ''::bytea) AS ts,
        string_agg(float8send(d.value), ''::bytea) AS vs
      FROM (${windows ? `${viaSql} UNION ALL ${rows}` : viaSql}
            ORDER BY 1 LIMIT $3::int8) d
    ) x
    ${w}
    CROSS JOIN LATERAL (
      SELECT count(*) AS n, string_agg(int4send(octet_length(z.b)) || z.b, ''::bytea
                                       ORDER BY z.t) AS hb
      FROM (SELECT h.time AS t, ${HISTOGRAM_BYTES_SQL} AS b
            FROM _prom_data.histogram_samples h
            JOIN _prom_data.samples p ON p.series_id = h.series_id AND p.time = h.time
            WHERE ser.has_h AND h.series_id = ser.id AND h.time >= $1::timestamptz
              AND h.time <= $2::timestamptz${inGrid("h.time")}
            ORDER BY h.time LIMIT $3::int8) z
    ) y
    WHERE x.n > 0 OR y.n > 0${windows ? " OR w.wb IS NOT NULL" : ""}`;
}

interface Row {
  id: string;
  labels: string;
  wb: Uint8Array | null;
  n: number;
  ts: Uint8Array | null;
  vs: Uint8Array | null;
  hn: number;
  hb: Uint8Array | null;
}

/**
 * `timestamptz_send` values (int8 microseconds since 2000-01-01, big-endian)
 * as ms since 1970, rounded down as `floor(extract(epoch ...) * 1000)`
 * does. Exact: with `us = hi * 2^32 + lo`, `us / 1000 = hi * 4294967 +
 * (hi * 296 + lo) / 1000`, whose second part is an exact double.
 */
export function timesFromBytes(b: Uint8Array | null): Float64Array {
  if (!b) return new Float64Array(0);
  const n = b.length >>> 3;
  const out = new Float64Array(n);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < n; i++) {
    const hi = dv.getInt32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    out[i] = hi * 4294967 + Math.floor((hi * 296 + lo) / 1000) + PG_EPOCH_MS;
  }
  return out;
}

/** Sorts a series' samples by time if they did not come sorted (values move with their times). */
function sortIfNeeded(s: ResultSeries): void {
  const ts = s.timestamps as Float64Array;
  let sorted = true;
  for (let i = 1; i < ts.length && sorted; i++) sorted = ts[i - 1] <= ts[i];
  if (sorted) return;
  const order = Array.from(ts.keys()).sort((a, b) => ts[a] - ts[b]);
  const vs = new Uint8Array(s.valuesBE.length);
  order.forEach((from, to) => vs.set(s.valuesBE.subarray(from * 8, from * 8 + 8), to * 8));
  s.timestamps = Float64Array.from(order, (i) => ts[i]);
  s.valuesBE = vs;
}
