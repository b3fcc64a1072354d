/**
 * Writes decoded series to PostgreSQL: series ids (series_ids.ts: the cache,
 * one database call for all the misses of a request), partitions made sure
 * of (partitions.ts: cached ranges, one call when a new day appears), then
 * all samples of the request in ONE binary COPY (copy_format.ts), which is
 * a single atomic statement: when it returns, the data is committed. This
 * module does the batching: under load, requests that wait for a COPY
 * share the next one (still committed before any of them is answered).
 *
 * COPY cannot skip rows that already exist, so a retried request (the first
 * attempt committed but its answer was lost) makes it fail with a unique
 * violation; it is then written again through a temporary table with
 * `INSERT … ON CONFLICT DO NOTHING`. Retries are rare, so the fast path
 * stays a single statement.
 */
import type { Sql, TransactionSql } from "../../deps.ts";
import {
  type Fence,
  FenceError,
  type SampleWriter,
  type WriteOptions,
  type WriteResult,
  type WriteSeries,
} from "../ingest.ts";
import { isNoPartition, isUniqueViolation, mapDbError } from "../db_errors.ts";
import { combineCopies, countSamples, encodeCopy } from "./copy_format.ts";
import type { Gate } from "./db.ts";
import { PartitionCache } from "./partitions.ts";
import { copyIn } from "./pg_patches.ts";
import type { SeriesCache } from "./series_cache.ts";
import { resolveSeriesIds } from "./series_ids.ts";
import { DataModelWriter } from "./data_model_writer.ts";

/** Rows of one request waiting for a COPY. */
interface PendingRows {
  /** Rows for _prom_data.samples (null when none). */
  rows: Uint8Array | null;
  /** Rows for _prom_data.ha_stage (null when none). */
  stage: Uint8Array | null;
  fences: Fence[];
  guard?: () => void;
  resolve: (deduplicated: boolean) => void;
  reject: (err: unknown) => void;
}

/** Tuning of the writer. */
export interface WriterOptions {
  /**
   * COPY statements running at once; requests beyond wait and go together
   * into the next one. Default: the cores of this machine (at least 2, at
   * most the gate's slots), a stand-in for the database's.
   */
  maxCopies?: number;
}

/** Largest COPY body made by combining requests. */
const MAX_COMBINED_BYTES = 8 << 20;

/** Writes samples to PostgreSQL; see the module comment. */
export class PgWriter implements SampleWriter {
  readonly #partitions: PartitionCache;
  readonly maxCopies: number;
  #queue: PendingRows[] = [];
  #copies = 0;
  /** COPY statements sent into _prom_data.samples (a combined one counts once). */
  copyStatements = 0;
  /** Histogram bodies, exemplars, metadata, created timestamps (data_model_writer.ts). */
  readonly model = new DataModelWriter();

  constructor(
    readonly sql: Sql,
    readonly gate: Gate,
    readonly cache: SeriesCache,
    options: WriterOptions = {},
  ) {
    this.#partitions = new PartitionCache(sql);
    this.maxCopies = Math.max(
      1,
      options.maxCopies ?? Math.min(gate.slots, Math.max(2, navigator.hardwareConcurrency ?? 2)),
    );
  }

  async write(series: WriteSeries[], options: WriteOptions = {}): Promise<WriteResult> {
    const staged = options.staged ?? [];
    const fences = options.fences ?? [];
    const samples = countSamples(series);
    const stagedSamples = countSamples(staged);
    const extras = DataModelWriter.has(series, options.metadata) || DataModelWriter.has(staged);
    if (samples + stagedSamples === 0 && !extras) {
      return { samples: 0, newSeries: 0, deduplicated: false };
    }
    const all = staged.length ? series.concat(staged) : series;
    return await this.gate.run(async () => {
      try {
        const { ids, created } = await resolveSeriesIds(this.sql, this.cache, all);
        // Histogram bodies (and the rest) before the samples: a body is
        // invisible until its presence row (a sample) is committed.
        const model = extras
          ? await this.model.write(this.sql, all, ids, series.length, options.metadata, created > 0)
          : undefined;
        // Presence rows of histograms are not float samples.
        let histograms = 0;
        for (const s of series) if (s.histograms) histograms += s.histograms.length;
        if (samples + stagedSamples === 0) {
          return { samples: 0, newSeries: created, deduplicated: false, ...model };
        }
        // Staged samples get their partitions too: the reconciler may store them.
        await this.#partitions.ensure(all);
        const pending = {
          rows: samples ? encodeCopy(series, ids, samples) : null,
          stage: stagedSamples ? encodeCopy(staged, ids.slice(series.length), stagedSamples) : null,
          fences: samples ? fences : [],
          guard: options.guard,
        };
        let deduplicated: boolean;
        try {
          deduplicated = await this.#submit(pending);
        } catch (err) {
          // "No partition of relation found for row": the retention job
          // (maybe another connector's) dropped a partition this writer
          // still had cached. Forget the cache, make sure again, retry once.
          if (!isNoPartition(err)) throw err;
          this.forgetPartitions();
          await this.#partitions.ensure(all);
          deduplicated = await this.#submit(pending);
        }
        return {
          samples: samples - histograms,
          newSeries: created,
          deduplicated,
          ...model,
          histograms: model ? histograms : undefined,
        };
      } catch (err) {
        if (err instanceof FenceError) throw err;
        throw mapDbError(err, "Cannot store samples", "Database unavailable");
      }
    });
  }

  /**
   * Stores the rows of one request: at once when fewer than `maxCopies`
   * COPYs are running, else together with the other requests that arrive
   * meanwhile, in the next COPY (one transaction for all: when the database
   * is the bottleneck, fewer and larger transactions cost it less; measured
   * in bench/RESULTS.md). The request's guard runs right before its rows
   * are sent, and it is answered once they are committed. When a combined
   * COPY fails, each request is stored again on its own, so that its
   * outcome (a duplicate, bad data, a dropped partition) is its own.
   */
  #submit(p: Omit<PendingRows, "resolve" | "reject">): Promise<boolean> {
    const { promise, resolve, reject } = Promise.withResolvers<boolean>();
    this.#queue.push({ ...p, resolve, reject });
    if (this.#copies < this.maxCopies) this.#drain();
    return promise;
  }

  /** Sends what is queued, batch after batch, until the queue is empty. */
  async #drain(): Promise<void> {
    this.#copies++;
    try {
      while (this.#queue.length) {
        let n = 1;
        let bytes = pendingBytes(this.#queue[0]);
        while (
          n < this.#queue.length && bytes + pendingBytes(this.#queue[n]) <= MAX_COMBINED_BYTES
        ) {
          bytes += pendingBytes(this.#queue[n++]);
        }
        const batch = this.#queue.splice(0, n).filter((p) => {
          try {
            p.guard?.();
            return true;
          } catch (err) {
            p.reject(err);
            return false;
          }
        });
        if (batch.length === 1) {
          await this.#store(batch[0]).then(batch[0].resolve, batch[0].reject);
          continue;
        }
        if (batch.length === 0) continue;
        let combined = true;
        try {
          await this.#storeOnce(combinePending(batch), false);
        } catch {
          combined = false;
        }
        for (const p of batch) {
          if (combined) p.resolve(false);
          else await this.#store(p).then(p.resolve, p.reject);
        }
      }
    } finally {
      this.#copies--;
    }
  }

  /** COPY; on a unique violation (a retried request) the slow path. True when that ran. */
  async #store(p: PendingParts): Promise<boolean> {
    try {
      await this.#storeOnce(p, false);
      return false;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      await this.#storeOnce(p, true);
      return true;
    }
  }

  /**
   * One attempt: a plain COPY when only samples go in, else one
   * transaction with the fence check, the samples (deduplicated or not)
   * and the staged rows.
   */
  async #storeOnce(p: PendingParts, deduplicate: boolean): Promise<void> {
    if (!p.stage && p.fences.length === 0 && p.rows) {
      if (deduplicate) await this.#copyDeduplicated(p.rows);
      else await this.#copy(p.rows);
      return;
    }
    this.copyStatements++;
    await this.sql.begin(async (tx) => {
      if (p.fences.length) await checkFences(tx, p.fences);
      if (p.rows && deduplicate) await insertDeduplicated(tx, p.rows);
      else if (p.rows) {
        await copyIn(
          tx`COPY _prom_data.samples (series_id, time, value) FROM STDIN (FORMAT binary)`,
          p.rows,
        );
      }
      if (p.stage) {
        await copyIn(
          tx`COPY _prom_data.ha_stage (series_id, time, value) FROM STDIN (FORMAT binary)`,
          p.stage,
        );
      }
    });
  }

  /** Drops what the writer remembers about partitions (after retention dropped some). */
  forgetPartitions(): void {
    this.#partitions.forget();
  }

  async #copy(rows: Uint8Array): Promise<void> {
    // On a reserved connection: postgres.js pipelines other queries onto a
    // busy connection, and one that lands behind a COPY fails
    // (COPY_IN_PROGRESS) or, worse, is itself a COPY that a stray CopyFail
    // aborts. The gate keeps a connection free for everything else.
    this.copyStatements++;
    const conn = await this.sql.reserve();
    try {
      await copyIn(
        conn`COPY _prom_data.samples (series_id, time, value) FROM STDIN (FORMAT binary)`,
        rows,
      );
    } finally {
      conn.release();
    }
  }

  async #copyDeduplicated(rows: Uint8Array): Promise<void> {
    await this.sql.begin((tx) => insertDeduplicated(tx, rows));
  }
}

/** The parts of a pending write that go to the database. */
type PendingParts = Pick<PendingRows, "rows" | "stage" | "fences">;

function pendingBytes(p: PendingParts): number {
  return (p.rows?.length ?? 0) + (p.stage?.length ?? 0);
}

/** Several pending writes as one. */
function combinePending(batch: PendingParts[]): PendingParts {
  const rows = batch.flatMap((p) => (p.rows ? [p.rows] : []));
  const stage = batch.flatMap((p) => (p.stage ? [p.stage] : []));
  return {
    rows: rows.length ? combineCopies(rows) : null,
    stage: stage.length ? combineCopies(stage) : null,
    fences: batch.flatMap((p) => p.fences),
  };
}

/** A transaction of postgres.js (what `sql.begin` hands its callback). */
type Tx = TransactionSql;

/**
 * Takes the fence locks of the clusters (shared) and checks that each
 * lease still stands as the filter judged it; a FenceError otherwise, so
 * that nothing of the write commits (the lease moved: 503, Prometheus
 * resends, and the samples are judged again).
 */
async function checkFences(tx: Tx, fences: Fence[]): Promise<void> {
  const clusters = [...new Set(fences.map((f) => f.cluster))].sort();
  const rows = await tx<{ cluster_name: string; leader_name: string; lease_start: Date }[]>`
    SELECT cluster_name, leader_name, lease_start FROM _prom_catalog.ha_fence(${clusters})`;
  const now = new Map(rows.map((r) => [r.cluster_name, r]));
  for (const f of fences) {
    const r = now.get(f.cluster);
    if (r && r.leader_name === f.leader && r.lease_start.getTime() === f.start) continue;
    f.lost?.();
    throw new FenceError(
      `HA cluster "${f.cluster}": the lease of replica "${f.leader}" ended before its samples ` +
        `were committed (now led by "${r?.leader_name ?? "nobody"}"); retry`,
    );
  }
}

/** Inserts rows that may exist already (a retried request) through a temporary table. */
async function insertDeduplicated(tx: Tx, rows: Uint8Array): Promise<void> {
  await tx`CREATE TEMP TABLE IF NOT EXISTS promscale_incoming
           (series_id bigint, time timestamptz, value double precision)
           ON COMMIT DELETE ROWS`;
  await copyIn(
    tx`COPY promscale_incoming (series_id, time, value) FROM STDIN (FORMAT binary)`,
    rows,
  );
  await tx`INSERT INTO _prom_data.samples (series_id, time, value)
           SELECT series_id, time, value FROM promscale_incoming
           ON CONFLICT (series_id, time) DO NOTHING`;
}
