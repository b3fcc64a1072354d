/**
 * The compactor: turns the rows of sealed partitions of
 * `_prom_data.samples` into `_prom_data.compressed` rows (one per series
 * and 2-hour window, see migrations/compressed.ts and docs/storage.md), then
 * drops the partitions.
 *
 * A partition is sealed when it ends `delayMs` (default 1 h) before now.
 * Recent data stays rows: HA takeovers re-stage and the reconciler reads
 * and fills rows up to `keepFilledMs` (20 min by default) back, so the
 * default delay is three times that.
 *
 * One connector at a time (session advisory lock `COMPACTOR_LOCK_KEY`; the
 * others skip the pass). A partition is taken in batches of series, each
 * ONE transaction that deletes nothing: it reads the rows of a few series
 * (binary COPY, in key order), merges the compressed windows those series
 * already have there (a late write), encodes the windows here, writes them
 * with one binary COPY, raises the horizon and records its progress
 * (migrations/compress_progress.ts). From that commit on, the rows it
 * copied are hidden from readers (a row older than the horizon with a
 * compressed copy is, see compressed.ts), so every sample reads once. When
 * every series is done, a final transaction stops the partition's writers,
 * merges the rows that arrived since the partition was started, and drops
 * the partition. A crash (kill -9) at any point rolls back the open
 * transaction only: nothing is lost or doubled, and the next pass goes on
 * from the recorded progress.
 *
 * Series with native histograms keep their rows: their histogram bodies
 * are found through their rows in `_prom_data.samples` (the "presence
 * rows" of migrations/data_model.ts; histogram_gc removes bodies without
 * one). A partition holding any is compacted by the per-row flow (each
 * batch deletes the rows it compresses, histogram series excepted) and
 * is not dropped.
 *
 * Every value is carried as its exact bits: read with binary COPY, encoded
 * from a Float64Array, written with binary COPY (NaN payloads survive).
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import type { Logger } from "../telemetry/log.ts";
import { PARTITION_LOCK_KEY } from "./migrations/schema.ts";
import { COMPRESS_WINDOW } from "./migrations/compressed.ts";
import { copyIn, copyOut } from "./pg_patches.ts";
import { CopyRows } from "./copy_rows.ts";
import { encodeWindow } from "./windows.ts";

// The window format's encoder lives with its decoder (windows.ts).
export { type EncodedWindow, encodeWindow } from "./windows.ts";

/** Advisory lock key held during a compaction pass (shared by all connectors). */
export const COMPACTOR_LOCK_KEY = 0x636f6d70; // "comp"

/** Default of `CompactorOptions.delayMs`: 1 hour. */
export const DEFAULT_COMPRESS_DELAY_MS = 3_600_000;

/** Longest default time between passes: 5 minutes. */
export const DEFAULT_COMPACT_INTERVAL_MS = 300_000;

/**
 * The default time between passes for a delay: a quarter of it, between
 * 1 s and {@linkcode DEFAULT_COMPACT_INTERVAL_MS} (5 min with the default
 * 1 h), so that a short delay is also honoured within about its length.
 */
export function defaultIntervalMs(delayMs: number): number {
  return Math.min(DEFAULT_COMPACT_INTERVAL_MS, Math.max(1_000, Math.round(delayMs / 4)));
}

/** {@linkcode COMPRESS_WINDOW} in ms (windows are aligned on the epoch). */
const WINDOW_MS = 7_200_000;

/** Default of `CompactorOptions.busyFraction`: a third. */
export const DEFAULT_BUSY_FRACTION = 1 / 3;

/** Most series per batch (transaction). */
const BATCH_SERIES = 200;

/**
 * Most rows per batch: about 8 MB read and 5 MB of arrays here, so that
 * the connector's requests wait little for the synchronous parts (400k
 * cost about as much CPU per sample; 100k a third more).
 */
const BATCH_ROWS = 200_000;

/** Options of the compactor. */
export interface CompactorOptions {
  sql: Sql;
  log: Logger;
  /** Partitions ending more than this before now are compacted (default 1 h). */
  delayMs?: number;
  /**
   * Time between passes (default {@linkcode defaultIntervalMs} of the
   * delay: 5 min for 1 h); the first comes one interval after `start()`.
   */
  intervalMs?: number;
  /** Most series per transaction (default 200). */
  batchSeries?: number;
  /** Most rows per transaction, except a series that alone has more (default 200,000). */
  batchRows?: number;
  /** Longest wait for the lock a partition drop needs (default 5 s). */
  lockTimeoutMs?: number;
  /** Called after partitions were dropped (to forget this connector's partition cache). */
  onPartitionsDropped?: () => void;
  /** Called after each committed batch. */
  onBatch?: (info: { partition: string; series: number; samples: number }) => void;
  /** Awaited inside each batch's transaction, before COMMIT (tests: a kill -9 there). */
  beforeCommit?: () => Promise<void>;
  /**
   * Awaited in a partition's final transaction, once writers are stopped
   * ("merge", before the late rows are read) and before the DROP ("drop")
   * (tests: late writes, a kill -9 there).
   */
  beforeFinish?: (step: "merge" | "drop") => Promise<void>;
  /**
   * Share of the wall time a pass works; it sleeps the rest after each
   * batch (default 1/3; 1: no sleep, as bench/storage.ts measures).
   */
  busyFraction?: number;
  /** Every partition by the per-row flow (bench/storage.ts's baseline). */
  legacy?: boolean;
}

/** What a pass did. */
export interface CompactResult {
  /** False when another connector held the lock. */
  ran: boolean;
  batches: number;
  /** Rows taken into compressed windows (copies of compressed samples included). */
  samples: number;
  /** Compressed windows written (new or merged). */
  windows: number;
  droppedPartitions: string[];
}

/** Runs compaction passes periodically; see the module comment. */
export class Compactor {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<unknown> | null = null;
  #stopped = false;
  readonly intervalMs: number;
  readonly delayMs: number;

  constructor(readonly o: CompactorOptions) {
    this.delayMs = o.delayMs ?? DEFAULT_COMPRESS_DELAY_MS;
    this.intervalMs = o.intervalMs ?? defaultIntervalMs(this.delayMs);
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
        // Progress of partitions that retention dropped meanwhile.
        await conn`DELETE FROM _prom_catalog.compress_progress p WHERE NOT EXISTS (
          SELECT 1 FROM _prom_catalog.sample_partitions s WHERE s.table_name = p.table_name)`;
        const parts = await conn<
          { table_name: string; range_start: string; range_end: string; hist: boolean }[]
        >`
          SELECT p.table_name, p.range_start::text, p.range_end::text,
            EXISTS (SELECT 1 FROM _prom_data.histogram_samples h
                    WHERE h.time >= p.range_start AND h.time < p.range_end) AS hist
          FROM _prom_catalog.sample_partitions p
          WHERE p.range_end <= now() - ${`${Math.round(this.delayMs)} milliseconds`}::interval
          ORDER BY p.range_start`;
        for (const p of parts) {
          if (this.#stopped) break;
          try {
            let dropped: boolean;
            if (p.hist || this.o.legacy) {
              // Native histograms find their bodies through their rows
              // (module comment): those rows stay, so the partition does
              // too, and the others leave it one by one.
              await this.#legacyPartition(conn, p.table_name, p.range_end, result);
              dropped = !this.#stopped && await this.#dropIfEmpty(conn, p.table_name);
            } else {
              dropped = await this.#compactPartition(conn, p, result);
            }
            if (dropped) result.droppedPartitions.push(p.table_name);
          } catch (err) {
            // Dropped meanwhile (retention): nothing left to compact there.
            if ((err as { code?: string }).code !== "42P01") throw err;
            await conn`DELETE FROM _prom_catalog.compress_progress
                       WHERE table_name = ${p.table_name}`;
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

  /**
   * The rows of one partition → compressed windows, then the partition is
   * dropped; true when it was. Readers see every sample once at every
   * commit: a batch's windows and the raised horizon commit together, and
   * from then on the rows they copy are hidden (compressed.ts); the final
   * step merges the rows that arrived meanwhile and drops the partition in
   * one transaction.
   */
  async #compactPartition(
    conn: Sql,
    p: { table_name: string; range_start: string; range_end: string },
    result: CompactResult,
  ): Promise<boolean> {
    const table = p.table_name;
    const rel = `_prom_data.${quoteIdent(table)}`;
    const batch = this.o.batchSeries ?? BATCH_SERIES;
    // The first transaction still running now: rows of older ones are all
    // visible to every batch below (migrations/compress_progress.ts).
    await conn`
      INSERT INTO _prom_catalog.compress_progress (table_name, first_xid, after_series)
      VALUES (${table}, pg_snapshot_xmin(pg_current_snapshot())::text::int8, -1)
      ON CONFLICT (table_name) DO NOTHING`;
    const [prog] = await conn<{ first_xid: string; after_series: string }[]>`
      SELECT first_xid::text, after_series::text FROM _prom_catalog.compress_progress
      WHERE table_name = ${table}`;
    const firstXid = BigInt(prog.first_xid);
    let after = Number(prog.after_series);
    const maxRows = this.o.batchRows ?? BATCH_ROWS;
    while (true) {
      if (this.#stopped) return false;
      const t0 = performance.now();
      const moved = await this.#inTransaction(conn, async () => {
        // In key order straight from the primary key: a bitmap scan and a
        // sort of the batch cost about three times as much (and spill to
        // disk at the default work_mem).
        await conn`SELECT set_config('enable_bitmapscan', 'off', true),
          set_config('enable_seqscan', 'off', true)`;
        // The next rows in key order, cut after the last whole series
        // (and after `batchSeries` series).
        let rows = parseSamples(
          await copyOut(
            conn,
            `COPY (SELECT series_id, time, value FROM ${rel} WHERE series_id > ${after}
                   ORDER BY series_id, time LIMIT ${maxRows}) TO STDOUT (FORMAT binary)`,
          ),
        );
        if (!rows.n) return null;
        let series = 0;
        let cut = rows.n;
        for (let i = 0; i < rows.n; i++) {
          if (i > 0 && rows.sid[i] === rows.sid[i - 1]) continue;
          if (series === batch) {
            cut = i;
            break;
          }
          series++;
        }
        if (cut === rows.n && rows.n === maxRows) {
          // The last series may go on past the limit: it waits for the
          // next batch, unless it is the only one (then it is read whole).
          cut = rows.n - 1;
          while (cut > 0 && rows.sid[cut - 1] === rows.sid[rows.n - 1]) cut--;
          if (cut > 0) series--;
          else {
            rows = parseSamples(
              await copyOut(
                conn,
                `COPY (SELECT series_id, time, value FROM ${rel}
                       WHERE series_id = ${rows.sid[0]} ORDER BY time) TO STDOUT (FORMAT binary)`,
              ),
            );
            cut = rows.n;
          }
        }
        rows.n = cut;
        const upTo = rows.sid[cut - 1];
        result.windows += (await this.#writeWindows(conn, rows, false)).windows;
        await conn`
          UPDATE _prom_catalog.compress_state
          SET horizon = greatest(horizon, ${p.range_end}::timestamptz)`;
        await conn`UPDATE _prom_catalog.compress_progress SET after_series = ${upTo}
                   WHERE table_name = ${table}`;
        await this.o.beforeCommit?.();
        return { samples: rows.n, series, upTo };
      });
      if (!moved) break;
      after = moved.upTo;
      result.batches++;
      result.samples += moved.samples;
      this.o.onBatch?.({ partition: table, series: moved.series, samples: moved.samples });
      await this.#rest(t0);
    }
    const t0 = performance.now();
    const dropped = await this.#finish(conn, table, firstXid, result);
    await this.#rest(t0);
    return dropped;
  }

  /**
   * The final step of a partition, one transaction: writers are stopped
   * (EXCLUSIVE: readers go on), the rows that may have arrived after their
   * series' batch are merged into their windows, then the partition is
   * dropped (ACCESS EXCLUSIVE on it and, for an instant, on
   * `_prom_data.samples` itself, as any partition drop; at most
   * `lockTimeoutMs` of waiting, during which new writers queue behind it;
   * when busy, the next pass does this step again).
   */
  async #finish(conn: Sql, table: string, firstXid: bigint, result: CompactResult) {
    const rel = `_prom_data.${quoteIdent(table)}`;
    const lockTimeout = `${Math.max(1, Math.round(this.o.lockTimeoutMs ?? 5000))}ms`;
    try {
      return await this.#inTransaction(conn, async () => {
        await conn`SELECT set_config('lock_timeout', ${lockTimeout}, true)`;
        await conn`SELECT pg_advisory_xact_lock(${PARTITION_LOCK_KEY})`;
        await conn.unsafe(`LOCK TABLE ${rel} IN EXCLUSIVE MODE`);
        await this.o.beforeFinish?.("merge");
        // Late candidates: rows whose inserting transaction is `firstXid`
        // or younger. age(xmin) counts back from this transaction's id
        // (assigned just below, after the lock), modulo 2^32 as xids wrap.
        // Freezing keeps a row's xmin (PostgreSQL 9.4 and later mark the
        // row frozen instead), so a VACUUM FREEZE hides no late row.
        const [{ cur }] = await conn<{ cur: string }[]>`
          SELECT pg_current_xact_id()::text AS cur`;
        const span = BigInt(cur) - firstXid;
        const late = parseSamples(
          await copyOut(
            conn,
            `COPY (SELECT series_id, time, value FROM ${rel}
                   WHERE age(xmin) <= ${span}
                   ORDER BY series_id, time) TO STDOUT (FORMAT binary)`,
          ),
        );
        const w = await this.#writeWindows(conn, late, true);
        result.windows += w.windows;
        result.samples += w.added;
        await this.o.beforeFinish?.("drop");
        await conn.unsafe(`LOCK TABLE ${rel} IN ACCESS EXCLUSIVE MODE`);
        await conn.unsafe(`DROP TABLE ${rel}`);
        await conn`DELETE FROM _prom_catalog.sample_partitions WHERE table_name = ${table}`;
        await conn`DELETE FROM _prom_catalog.compress_progress WHERE table_name = ${table}`;
        await this.o.beforeCommit?.();
        return true;
      });
    } catch (err) {
      if ((err as { code?: string }).code === "55P03") return false;
      throw err;
    }
  }

  /**
   * Sleeps after a batch that began at `since` so that the pass works
   * `busyFraction` of the time: with the default third, a pass at full
   * speed uses about a third of a core (its own and PostgreSQL's CPU
   * together, which alternate). Wakes early when stopped.
   */
  async #rest(since: number): Promise<void> {
    const f = this.o.busyFraction ?? DEFAULT_BUSY_FRACTION;
    if (!(f > 0 && f < 1)) return;
    const until = performance.now() + (performance.now() - since) * (1 / f - 1);
    while (!this.#stopped && performance.now() < until) {
      await new Promise((r) => setTimeout(r, Math.min(100, until - performance.now())));
    }
  }

  /** Runs `fn` in a transaction on `conn` (a reserved connection). */
  async #inTransaction<T>(conn: Sql, fn: () => Promise<T>): Promise<T> {
    await conn`BEGIN`;
    try {
      const out = await fn();
      await conn`COMMIT`;
      return out;
    } catch (err) {
      await conn`ROLLBACK`.catch(() => {});
      throw err;
    }
  }

  /**
   * Writes the windows of `rows` (sorted by series and time), merged with
   * the compressed windows they already have: a compressed sample wins
   * over a row at the same time (it was stored first, as `ON CONFLICT DO
   * NOTHING` keeps the first row). With `onlyNew`, windows to which the
   * rows add nothing are left as they are. Returns the windows written and
   * the rows added to them (copies of compressed samples not counted).
   */
  async #writeWindows(
    conn: Sql,
    rows: Samples,
    onlyNew: boolean,
  ): Promise<{ windows: number; added: number }> {
    if (!rows.n) return { windows: 0, added: 0 };
    // Windows of the rows: [start, end) index ranges.
    const wins: { sid: number; win: number; lo: number; hi: number }[] = [];
    for (let i = 0; i < rows.n;) {
      const sid = rows.sid[i];
      const win = Math.floor(rows.ms[i] / WINDOW_MS) * WINDOW_MS;
      let j = i + 1;
      while (j < rows.n && rows.sid[j] === sid && rows.ms[j] < win + WINDOW_MS) j++;
      wins.push({ sid, win, lo: i, hi: j });
      i = j;
    }
    // Compressed windows these already have (a late write, a window over
    // two partitions, a pass resumed in a final step).
    const [{ lo: minW, hi: maxW }] = wins.reduce(
      ([a], w) => [{ lo: Math.min(a.lo, w.win), hi: Math.max(a.hi, w.win) }],
      [{ lo: Infinity, hi: -Infinity }],
    );
    const have = new Set(
      (await conn<{ k: string }[]>`
        SELECT series_id::text || ' ' ||
          (extract(epoch FROM window_start) * 1000)::int8::text AS k
        FROM _prom_data.compressed
        WHERE series_id >= ${rows.sid[0]} AND series_id <= ${rows.sid[rows.n - 1]}
          AND window_start >= timestamptz 'epoch' + ${minW}::int8 * interval '1 millisecond'
          AND window_start <= timestamptz 'epoch' + ${maxW}::int8 * interval '1 millisecond'`)
        .map((r) => r.k),
    );
    const old = wins.filter((w) => have.has(`${w.sid} ${w.win}`));
    const out = new CopyRows();
    const merged = new Map<string, { ms: number[]; vals: Float64Array }>();
    let total = 0;
    if (old.length) {
      const sids = `'{${old.map((w) => w.sid).join(",")}}'::int8[]`;
      const starts = `'{${old.map((w) => w.win).join(",")}}'::int8[]`;
      const keys = `unnest(${sids}, ${starts}) AS k(s, w)`;
      const dec = parseSamples(
        await copyOut(
          conn,
          `COPY (SELECT c.series_id, ${DECODE_TIME}, ${DECODE_VALUE}
                 FROM _prom_data.compressed c
                 JOIN ${keys} ON c.series_id = k.s
                   AND c.window_start = timestamptz 'epoch' + k.w * interval '1 millisecond'
                 CROSS JOIN LATERAL ${DECODE_LATERAL}
                 ORDER BY 1, 2) TO STDOUT (FORMAT binary)`,
        ),
      );
      // Per old window: its compressed samples with the rows that are not
      // copies, in time order.
      let d = 0;
      for (const w of old) {
        while (d < dec.n && (dec.sid[d] < w.sid || (dec.sid[d] === w.sid && dec.ms[d] < w.win))) {
          d++;
        }
        const ms: number[] = [];
        const bits: number[] = [];
        let r = w.lo;
        let added = 0;
        while (d < dec.n && dec.sid[d] === w.sid && dec.ms[d] < w.win + WINDOW_MS) {
          while (r < w.hi && rows.ms[r] < dec.ms[d]) {
            ms.push(rows.ms[r]);
            bits.push(r, 0);
            r++;
            added++;
          }
          if (r < w.hi && rows.ms[r] === dec.ms[d]) r++; // a copy: the compressed one stays
          ms.push(dec.ms[d]);
          bits.push(d, 1);
          d++;
        }
        for (; r < w.hi; r++, added++) {
          ms.push(rows.ms[r]);
          bits.push(r, 0);
        }
        if (onlyNew && !added) continue;
        total += added;
        const vals = new Float64Array(ms.length);
        for (let i = 0; i < ms.length; i++) {
          vals[i] = bits[2 * i + 1] ? dec.vals[bits[2 * i]] : rows.vals[bits[2 * i]];
        }
        merged.set(`${w.sid} ${w.win}`, { ms, vals });
      }
      if (merged.size) {
        const ks = [...merged.keys()].map((k) => k.split(" "));
        await conn.unsafe(
          `DELETE FROM _prom_data.compressed c
           USING unnest('{${ks.map((k) => k[0]).join(",")}}'::int8[],
                        '{${ks.map((k) => k[1]).join(",")}}'::int8[]) AS k(s, w)
           WHERE c.series_id = k.s
             AND c.window_start = timestamptz 'epoch' + k.w * interval '1 millisecond'`,
        );
      }
    }
    let written = 0;
    for (const w of wins) {
      // The connector's requests are served on this thread too: let them
      // in between windows (a batch encodes about a million samples).
      if (written % 16 === 15) await new Promise((r) => setTimeout(r, 0));
      const key = `${w.sid} ${w.win}`;
      if (have.has(key)) {
        const m = merged.get(key);
        if (!m) continue;
        windowRow(out, w.sid, w.win, m.ms, m.vals);
      } else {
        windowRow(out, w.sid, w.win, rows.ms.subarray(w.lo, w.hi), rows.vals.subarray(w.lo, w.hi));
        total += w.hi - w.lo;
      }
      written++;
    }
    if (written) {
      await copyIn(
        conn`COPY _prom_data.compressed (series_id, window_start, min_time, max_time, n, step_ms,
          t_corr, v_scale, v_base, v_delta, v_exc, v_raw, toast_pad) FROM STDIN (FORMAT binary)`,
        out.finish(),
      );
    }
    return { windows: written, added: total };
  }

  /**
   * The per-row flow (the only one before version 11): each batch deletes
   * its series' rows (`DELETE … RETURNING`) and writes their windows, in
   * SQL; the emptied partition is dropped afterwards. Kept for partitions
   * with native histograms, whose rows must stay, and as the baseline of
   * bench/storage.ts (`legacy`).
   */
  async #legacyPartition(
    conn: Sql,
    table: string,
    rangeEnd: string,
    result: CompactResult,
  ): Promise<void> {
    // One row per window of the batch: exact bytes for the encoder and
    // the values as float8[] for the INSERT (bits kept).
    await conn`CREATE TEMP TABLE IF NOT EXISTS compact_win (
      series_id bigint, win timestamptz, ts bytea, vs bytea, vals float8[]
    ) ON COMMIT DELETE ROWS`;
    // Stored as they are: compressing them here would only cost CPU.
    await conn`ALTER TABLE compact_win ALTER ts SET STORAGE EXTERNAL,
      ALTER vs SET STORAGE EXTERNAL, ALTER vals SET STORAGE EXTERNAL`;
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
      const t0 = performance.now();
      const samples = await this.#legacyBatch(conn, rel, chosen, rangeEnd, result);
      this.o.onBatch?.({ partition: table, series: chosen.length, samples });
      await this.#rest(t0);
    }
  }

  /** The per-row flow's batch, one transaction: rows of `ids` in `rel` → compressed windows. */
  async #legacyBatch(
    conn: Sql,
    rel: string,
    ids: string[],
    rangeEnd: string,
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
        UPDATE _prom_catalog.compress_state
        SET horizon = greatest(horizon, ${rangeEnd}::timestamptz)`;
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

// The decoding of a compressed row (migrations/compressed.ts), for the
// windows a batch merges: `c` the row, `x` one sample of it.
const DECODE_LATERAL = `(
  SELECT u.i, u.tc, u.e, u.r, sum(u.d) OVER (ORDER BY u.i ROWS UNBOUNDED PRECEDING) AS k
  FROM unnest(c.v_delta, c.t_corr, c.v_exc, c.v_raw) WITH ORDINALITY AS u(d, tc, e, r, i)) x`;
const DECODE_TIME =
  `c.min_time + ((x.i - 1) * c.step_ms + coalesce(x.tc, 0)) * interval '1 millisecond'`;
const DECODE_VALUE =
  `CASE WHEN c.v_scale IS NULL THEN x.r ELSE coalesce(x.e, (c.v_base + x.k)::float8 / c.v_scale) END`;

/** Samples read with binary COPY: series id, time in ms, exact value; `n` of them. */
interface Samples {
  n: number;
  sid: Float64Array;
  ms: Float64Array;
  vals: Float64Array;
}

/**
 * Parses a binary COPY of (int8, timestamptz, float8) rows, none NULL
 * (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format").
 * Times are floored to ms exactly (µs since 2000 split in two halves: a
 * year-1 time is beyond 2^53 µs); values keep their bits.
 */
function parseSamples(b: Uint8Array): Samples {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 19 + dv.getInt32(15); // signature, flags, header extension
  const cap = Math.max(0, Math.floor((b.length - p) / 38));
  const out: Samples = {
    n: 0,
    sid: new Float64Array(cap),
    ms: new Float64Array(cap),
    vals: new Float64Array(cap),
  };
  const vb = new Uint8Array(out.vals.buffer);
  let n = 0;
  while (p < b.length && dv.getInt16(p) !== -1) {
    // 2: field count; then each field: 4 bytes length (8), 8 bytes value.
    out.sid[n] = dv.getInt32(p + 6) * 4294967296 + dv.getUint32(p + 10);
    const hi = dv.getInt32(p + 18);
    const lo = dv.getUint32(p + 22);
    // hi · 2^32 + lo µs = hi · 4294967 · 1000 + (hi · 296 + lo) µs.
    out.ms[n] = PG_EPOCH_MS + hi * 4294967 + Math.floor((hi * 296 + lo) / 1000);
    const q = p + 30;
    for (let j = 0; j < 8; j++) vb[n * 8 + j] = b[q + 7 - j];
    p += 38;
    n++;
  }
  out.n = n;
  return out;
}

const PG_EPOCH_MS = 946_684_800_000;
/** `toast_pad` (migrations/compressed.ts): 2 kB of zeros. */
const TOAST_PAD_BYTES = 2048;

/** Appends one `_prom_data.compressed` row to `out`: times in ms (increasing), values (exact bits). */
function windowRow(
  out: CopyRows,
  sid: number,
  win: number,
  ms: ArrayLike<number>,
  vals: Float64Array,
): void {
  const e = encodeWindow(ms, vals);
  out.row(13).int8(sid).time(win).time(e.minMs).time(e.maxMs).int4(e.n).int4(e.stepMs);
  if (e.tCorr) out.int4Array(e.tCorr);
  else out.null();
  if (e.scale === null) {
    // v_scale, v_base, v_delta, v_exc NULL; v_raw
    out.null().null().null().null().float8Array(vals);
  } else {
    out.float8Value(e.scale).int8(e.base).int4Array(e.deltas!);
    if (e.exceptions.length) out.float8Array(vals, e.exceptions);
    else out.null();
    out.null(); // v_raw
  }
  out.zeros(TOAST_PAD_BYTES);
}
