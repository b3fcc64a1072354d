/**
 * The compactor: turns the rows of sealed partitions of
 * `_prom_data.samples` into `_prom_data.compressed` rows (one per series
 * and 2-hour window, see migrations/compressed.ts and docs/storage.md), then
 * drops the emptied partitions.
 *
 * A partition is sealed when it ends `delayMs` (default 1 h) before now.
 * Recent data stays rows: HA takeovers re-stage and the reconciler reads
 * and fills rows up to `keepFilledMs` (20 min by default) back, so the
 * default delay is three times that.
 *
 * One connector at a time (session advisory lock `COMPACTOR_LOCK_KEY`; the
 * others skip the pass). Each batch is ONE transaction: it deletes the
 * rows of a few series from one partition (RETURNING them into a temporary
 * table), merges the compressed windows those series already have there
 * (a late write), encodes, inserts the compressed rows and raises the
 * horizon. A crash (kill -9) at any point rolls the batch back whole:
 * nothing is lost or doubled.
 *
 * Series with native histograms are left as rows: their histogram bodies
 * are found through their rows in `_prom_data.samples` (the "presence
 * rows" of migrations/data_model.ts; histogram_gc removes bodies without
 * one), so those rows must stay; their partition is then not dropped.
 *
 * Encoding happens here (in TypeScript, from the exact bits read through
 * `int8send`/`float8send`); every float8 that is stored as a float8 (raw
 * windows, exceptions) is copied by SQL from the deleted rows, never sent
 * as text, so NaN payloads survive.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import type { Logger } from "../telemetry/log.ts";
import { PARTITION_LOCK_KEY } from "./migrations/schema.ts";
import { COMPRESS_WINDOW } from "./migrations/compressed.ts";

/** Advisory lock key held during a compaction pass (shared by all connectors). */
export const COMPACTOR_LOCK_KEY = 0x636f6d70; // "comp"

/** Default of `CompactorOptions.delayMs`: 1 hour. */
export const DEFAULT_COMPRESS_DELAY_MS = 3_600_000;

/** Default time between passes: 5 minutes. */
export const DEFAULT_COMPACT_INTERVAL_MS = 300_000;

/** Series per batch (transaction). */
const BATCH_SERIES = 200;

/** Options of the compactor. */
export interface CompactorOptions {
  sql: Sql;
  log: Logger;
  /** Partitions ending more than this before now are compacted (default 1 h). */
  delayMs?: number;
  /** Time between passes (default 5 min); the first comes one interval after `start()`. */
  intervalMs?: number;
  /** Series per transaction (default 200). */
  batchSeries?: number;
  /** Longest wait for the lock a partition drop needs (default 5 s). */
  lockTimeoutMs?: number;
  /** Called after partitions were dropped (to forget this connector's partition cache). */
  onPartitionsDropped?: () => void;
  /** Called after each committed batch. */
  onBatch?: (info: { partition: string; series: number; samples: number }) => void;
  /** Awaited inside each batch's transaction, before COMMIT (tests: a kill -9 there). */
  beforeCommit?: () => Promise<void>;
}

/** What a pass did. */
export interface CompactResult {
  /** False when another connector held the lock. */
  ran: boolean;
  batches: number;
  /** Samples moved from rows into compressed windows (merged ones not counted). */
  samples: number;
  /** Compressed windows written (new or merged). */
  windows: number;
  droppedPartitions: string[];
}

/** One window's encoding, as parameters of the INSERT. */
export interface EncodedWindow {
  n: number;
  minMs: number;
  maxMs: number;
  stepMs: number;
  /** Per-sample correction to the step grid, or null when all are 0. */
  tCorr: number[] | null;
  /** Scale of the integer encoding, or null for raw values. */
  scale: number | null;
  base: number;
  deltas: number[] | null;
  /** 1-based positions whose value is kept as a float8 (scaled windows). */
  exceptions: number[];
}

const SCALES = [1, 2, 4, 8, 10, 16, 32, 64, 100, 128, 256, 1000, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/**
 * Encodes one window: `times` in ms, strictly increasing; `values` the
 * exact doubles. Pure; the SQL decoder in compressed.ts is its inverse.
 */
export function encodeWindow(times: ArrayLike<number>, values: Float64Array): EncodedWindow {
  const n = times.length;
  const minMs = times[0];
  const maxMs = times[n - 1];
  // The step: the most common spacing (scrapes are regular; gaps and jitter
  // go into the corrections, which compress when they repeat).
  let stepMs = 0;
  if (n > 1) {
    const counts = new Map<number, number>();
    let best = 0;
    for (let i = 1; i < n; i++) {
      const d = times[i] - times[i - 1];
      const c = (counts.get(d) ?? 0) + 1;
      counts.set(d, c);
      if (c > best || (c === best && d < stepMs)) [best, stepMs] = [c, d];
    }
    if (stepMs > INT32_MAX) stepMs = 0;
  }
  let tCorr: number[] | null = null;
  for (let i = 0; i < n; i++) {
    const c = times[i] - minMs - i * stepMs;
    if (c !== 0 && tCorr === null) tCorr = new Array(n).fill(0);
    if (tCorr) tCorr[i] = c;
  }
  const raw = {
    n,
    minMs,
    maxMs,
    stepMs,
    tCorr,
    scale: null,
    base: 0,
    deltas: null,
    exceptions: [],
  };
  for (const scale of SCALES) {
    const enc = tryScale(values, scale);
    if (enc) return { n, minMs, maxMs, stepMs, tCorr, scale, ...enc };
  }
  return raw;
}

/** The integer encoding at `scale`, or null when more than 1/16 of the finite values do not fit. */
function tryScale(
  values: Float64Array,
  scale: number,
): { base: number; deltas: number[]; exceptions: number[] } | null {
  const n = values.length;
  const maxStray = Math.floor(n / 16);
  let stray = 0;
  const deltas = new Array<number>(n);
  const exceptions: number[] = [];
  let base: number | null = null;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const k = Math.round(v * scale);
    const special = !Number.isFinite(v) || Object.is(v, -0);
    const ok = !special && Math.abs(k) <= Number.MAX_SAFE_INTEGER && k / scale === v;
    let d = 0;
    if (ok) {
      if (base === null) base = prev = k;
      d = k - prev;
      if (d < INT32_MIN || d > INT32_MAX) return null;
      prev = k;
    }
    if (!ok) {
      exceptions.push(i + 1);
      // NaNs (staleness markers), ±Inf and -0 are always exceptions; other
      // values that do not fit the scale only a few.
      if (!special && ++stray > maxStray) return null;
    }
    deltas[i] = d;
  }
  return { base: base ?? 0, deltas, exceptions };
}

/** Runs compaction passes periodically; see the module comment. */
export class Compactor {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<unknown> | null = null;
  #stopped = false;
  readonly intervalMs: number;
  readonly delayMs: number;

  constructor(readonly o: CompactorOptions) {
    this.intervalMs = o.intervalMs ?? DEFAULT_COMPACT_INTERVAL_MS;
    this.delayMs = o.delayMs ?? DEFAULT_COMPRESS_DELAY_MS;
  }

  /** Schedules passes, the first one interval from now. */
  start(): void {
    this.#schedule();
  }

  /** Cancels future passes and waits for one in progress (it stops after its batch). */
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
          this.o.log.warn("Compaction pass failed, will retry at the next pass", {
            err: (err as Error).message,
          });
        })
        .finally(() => {
          this.#running = null;
          this.#schedule();
        });
    }, this.intervalMs);
  }

  /** One pass, now. */
  async runOnce(): Promise<CompactResult> {
    const result: CompactResult = {
      ran: false,
      batches: 0,
      samples: 0,
      windows: 0,
      droppedPartitions: [],
    };
    const conn = await this.o.sql.reserve();
    try {
      const [{ locked }] = await conn<{ locked: boolean }[]>`
        SELECT pg_try_advisory_lock(${COMPACTOR_LOCK_KEY}) AS locked`;
      if (!locked) return result;
      try {
        result.ran = true;
        await conn`SET client_min_messages TO warning`;
        // One row per window of the batch: exact bytes for the encoder and
        // the values as float8[] for the INSERT (bits kept).
        await conn`CREATE TEMP TABLE IF NOT EXISTS compact_win (
          series_id bigint, win timestamptz, ts bytea, vs bytea, vals float8[]
        ) ON COMMIT DELETE ROWS`;
        // Stored as they are: compressing them here would only cost CPU.
        await conn`ALTER TABLE compact_win ALTER ts SET STORAGE EXTERNAL,
          ALTER vs SET STORAGE EXTERNAL, ALTER vals SET STORAGE EXTERNAL`;
        const parts = await conn<{ table_name: string; range_end: Date }[]>`
          SELECT table_name, range_end FROM _prom_catalog.sample_partitions
          WHERE range_end <= now() - ${`${Math.round(this.delayMs)} milliseconds`}::interval
          ORDER BY range_start`;
        for (const p of parts) {
          if (this.#stopped) break;
          try {
            await this.#compactPartition(conn, p.table_name, p.range_end, result);
            if (await this.#dropIfEmpty(conn, p.table_name)) {
              result.droppedPartitions.push(p.table_name);
            }
          } catch (err) {
            // Dropped meanwhile (retention): nothing left to compact there.
            if ((err as { code?: string }).code !== "42P01") throw err;
          }
        }
        if (result.droppedPartitions.length) this.o.onPartitionsDropped?.();
        if (result.samples) {
          this.o.log.info("Compacted sealed samples", {
            samples: result.samples,
            windows: result.windows,
            partitions_dropped: result.droppedPartitions.length,
          });
        }
      } finally {
        await conn`SELECT pg_advisory_unlock(${COMPACTOR_LOCK_KEY})`.catch(() => {});
      }
    } finally {
      conn.release();
    }
    return result;
  }

  async #compactPartition(
    conn: Sql,
    table: string,
    rangeEnd: Date,
    result: CompactResult,
  ): Promise<void> {
    const rel = `_prom_data.${quoteIdent(table)}`;
    const batch = this.o.batchSeries ?? BATCH_SERIES;
    let after = -1;
    while (!this.#stopped) {
      // The next series that have rows here (PK index, in series order).
      const ids = (await conn.unsafe<{ id: string }[]>(
        `SELECT series_id::text AS id FROM (
           SELECT DISTINCT series_id FROM (
             SELECT series_id FROM ${rel} WHERE series_id > $1 ORDER BY series_id LIMIT $2) x) y
         ORDER BY series_id`,
        [String(after), String(batch * 2000)] as never[],
      )).map((r) => r.id);
      if (!ids.length) return;
      const chosen = ids.slice(0, batch);
      after = Number(chosen[chosen.length - 1]);
      const samples = await this.#batch(conn, rel, chosen, rangeEnd, result);
      this.o.onBatch?.({ partition: table, series: chosen.length, samples });
    }
  }

  /** One transaction: rows of `ids` in `rel` → compressed windows. */
  async #batch(
    conn: Sql,
    rel: string,
    ids: string[],
    rangeEnd: Date,
    result: CompactResult,
  ): Promise<number> {
    await conn`BEGIN`;
    try {
      // The per-window sorts stay in memory.
      await conn`SELECT set_config('work_mem', '64MB', true)`;
      // In one statement: the rows of these series leave the partition;
      // the windows they already have compressed (a late write, or a
      // window spread over two partitions) are taken out and decoded; a
      // row at the time of a compressed sample is dropped (the compressed
      // one was stored first, as ON CONFLICT DO NOTHING would keep it);
      // what remains is grouped per window: times and values as exact
      // bytes for the encoder, and the values as float8[] for the INSERT.
      const [{ moved }] = await conn.unsafe<{ moved: number }[]>(
        `WITH gone AS (
           DELETE FROM ${rel} WHERE series_id = ANY($1::int8[])
             -- Series with native histograms stay rows: a histogram exists
             -- where its presence row does (migrations/data_model.ts).
             AND series_id <> ALL(ARRAY(
               SELECT DISTINCT h.series_id FROM _prom_data.histogram_samples h
               WHERE h.series_id = ANY($1::int8[])))
           RETURNING series_id, time, value
         ), keys AS (
           SELECT DISTINCT series_id, date_bin('${COMPRESS_WINDOW}', time, 'epoch') AS win FROM gone
         ), old AS (
           DELETE FROM _prom_data.compressed c USING keys k
           WHERE c.series_id = k.series_id AND c.window_start = k.win
           RETURNING c.*
         ), dec AS (
           SELECT z.series_id, z.time, z.value
           FROM old c CROSS JOIN LATERAL (
             SELECT c.series_id,
               c.min_time + ((x.i - 1) * c.step_ms + coalesce(x.tc, 0)) * interval '1 millisecond'
                 AS time,
               CASE WHEN c.v_scale IS NULL THEN x.r
                    ELSE coalesce(x.e, (c.v_base + x.k)::float8 / c.v_scale) END AS value
             FROM (SELECT u.i, u.tc, u.e, u.r,
                     sum(u.d) OVER (ORDER BY u.i ROWS UNBOUNDED PRECEDING) AS k
                   FROM unnest(c.v_delta, c.t_corr, c.v_exc, c.v_raw)
                     WITH ORDINALITY AS u(d, tc, e, r, i)) x
           ) z
         ), merged AS (
           SELECT series_id, time, value FROM dec
           UNION ALL
           SELECT g.series_id, g.time, g.value FROM gone g
           WHERE NOT EXISTS (SELECT 1 FROM dec d WHERE d.series_id = g.series_id AND d.time = g.time)
         ), ins AS (
           INSERT INTO compact_win (series_id, win, ts, vs, vals)
           SELECT series_id, date_bin('${COMPRESS_WINDOW}', time, 'epoch'),
             string_agg(int8send(floor(extract(epoch FROM time) * 1000)::int8), ''::bytea
                        ORDER BY time),
             string_agg(float8send(value), ''::bytea ORDER BY time),
             array_agg(value ORDER BY time)
           FROM merged GROUP BY 1, 2
         )
         SELECT count(*)::int AS moved FROM gone`,
        [`{${ids.join(",")}}`] as never[],
      );
      // Times go as text both ways: postgres.js parses and serializes early
      // years wrongly (new Date("0001-01-01 …") is 2001).
      const wins = await conn<{ series_id: string; win: string; ts: Uint8Array; vs: Uint8Array }[]>`
        SELECT series_id::text, win::text AS win, ts, vs FROM compact_win`;
      const p = {
        sid: [] as string[],
        win: [] as string[],
        n: [] as number[],
        minT: [] as string[],
        maxT: [] as string[],
        step: [] as number[],
        tCorr: [] as (string | null)[],
        scale: [] as (number | null)[],
        base: [] as string[],
        deltas: [] as (string | null)[],
        exc: [] as (string | null)[],
      };
      for (const w of wins) {
        const e = encodeWindow(int64s(w.ts), float64s(w.vs));
        p.sid.push(w.series_id);
        p.win.push(w.win);
        p.n.push(e.n);
        p.minT.push(new Date(e.minMs).toISOString());
        p.maxT.push(new Date(e.maxMs).toISOString());
        p.step.push(e.stepMs);
        p.tCorr.push(e.tCorr ? `{${e.tCorr.join(",")}}` : null);
        p.scale.push(e.scale);
        p.base.push(String(e.base));
        p.deltas.push(e.deltas ? `{${e.deltas.join(",")}}` : null);
        p.exc.push(e.exceptions.length ? `{${e.exceptions.join(",")}}` : null);
      }
      await conn.unsafe(
        `INSERT INTO _prom_data.compressed
           (series_id, window_start, min_time, max_time, n, step_ms, t_corr, v_scale, v_base,
            v_delta, v_exc, v_raw, toast_pad)
         SELECT w.sid, w.win::timestamptz, w.min_t::timestamptz, w.max_t::timestamptz, w.n,
           w.step, w.t_corr::int4[], w.scale,
           CASE WHEN w.scale IS NULL THEN NULL ELSE w.base END,
           w.deltas::int4[],
           CASE WHEN w.exc IS NOT NULL THEN
             ARRAY(SELECT CASE WHEN u.i = ANY(w.exc::int4[]) THEN u.v END
                   FROM unnest(cw.vals) WITH ORDINALITY AS u(v, i) ORDER BY u.i) END,
           CASE WHEN w.scale IS NULL THEN cw.vals END,
           decode(repeat('00', 2048), 'hex')
         FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], $5::text[],
                     $6::int4[], $7::text[], $8::float8[], $9::int8[], $10::text[], $11::text[])
           AS w(sid, win, n, min_t, max_t, step, t_corr, scale, base, deltas, exc)
         JOIN compact_win cw ON cw.series_id = w.sid AND cw.win = w.win::timestamptz`,
        [
          p.sid,
          p.win,
          p.n,
          p.minT,
          p.maxT,
          p.step,
          p.tCorr,
          p.scale,
          p.base,
          p.deltas,
          p.exc,
        ] as never[],
      );
      await conn`
        UPDATE _prom_catalog.compress_state SET horizon = greatest(horizon, ${rangeEnd})`;
      await this.o.beforeCommit?.();
      await conn`COMMIT`;
      result.batches++;
      result.samples += moved;
      result.windows += wins.length;
      return moved;
    } catch (err) {
      await conn`ROLLBACK`.catch(() => {});
      throw err;
    }
  }

  /** Drops an emptied partition (as retention does); false when not empty or busy. */
  async #dropIfEmpty(conn: Sql, table: string): Promise<boolean> {
    const rel = `_prom_data.${quoteIdent(table)}`;
    const lockTimeout = `${Math.max(1, Math.round(this.o.lockTimeoutMs ?? 5000))}ms`;
    await conn`BEGIN`;
    try {
      await conn`SELECT set_config('lock_timeout', ${lockTimeout}, true)`;
      await conn`SELECT pg_advisory_xact_lock(${PARTITION_LOCK_KEY})`;
      await conn.unsafe(`LOCK TABLE ${rel} IN ACCESS EXCLUSIVE MODE`);
      const [{ empty }] = await conn.unsafe<{ empty: boolean }[]>(
        `SELECT NOT EXISTS (SELECT 1 FROM ${rel}) AS empty`,
      );
      if (!empty) {
        await conn`ROLLBACK`;
        return false;
      }
      await conn.unsafe(`DROP TABLE ${rel}`);
      await conn`DELETE FROM _prom_catalog.sample_partitions WHERE table_name = ${table}`;
      await conn`COMMIT`;
      return true;
    } catch (err) {
      await conn`ROLLBACK`.catch(() => {});
      if ((err as { code?: string }).code === "55P03") return false;
      throw err;
    }
  }
}

/** Big-endian int64s (ms, within ±2^53) → numbers. */
function int64s(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Array<number>(b.byteLength / 8);
  for (let i = 0; i < out.length; i++) {
    out[i] = dv.getInt32(i * 8) * 4294967296 + dv.getUint32(i * 8 + 4);
  }
  return out;
}

/** Big-endian float8s → doubles, bits kept (in a Float64Array). */
function float64s(b: Uint8Array): Float64Array {
  const out = new Float64Array(b.byteLength / 8);
  const u8 = new Uint8Array(out.buffer);
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < 8; j++) u8[i * 8 + j] = b[i * 8 + 7 - j];
  }
  return out;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
