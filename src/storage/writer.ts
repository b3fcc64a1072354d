/**
 * Writes decoded series to PostgreSQL: series ids from the cache (one
 * database call for all the misses of a request), partitions made sure of
 * (cached ranges; one call when a new day appears), then all samples of the
 * request in ONE binary COPY, which is a single atomic statement: when it
 * returns, the data is committed. Under load, requests that wait for a COPY
 * share the next one (still committed before any of them is answered).
 *
 * Binary COPY is both the fastest path into PostgreSQL and the only one of
 * postgres.js's that carries float8 bits exactly (text parameters turn every
 * NaN into the canonical one; Prometheus's staleness marker is a NaN with a
 * payload).
 *
 * COPY cannot skip rows that already exist, so a retried request (the first
 * attempt committed but its answer was lost) makes it fail with a unique
 * violation; it is then written again through a temporary table with
 * `INSERT … ON CONFLICT DO NOTHING`. Retries are rare, so the fast path
 * stays a single statement.
 */
import type { Sql, TransactionSql } from "../../deps.ts";
import { UnavailableError } from "../errors.ts";
import {
  type Fence,
  FenceError,
  type SampleWriter,
  type WriteOptions,
  type WriteResult,
  type WriteSeries,
} from "../ingest.ts";
import { isNoPartition, isUniqueViolation, mapDbError } from "../db_errors.ts";
import type { Gate } from "./db.ts";
import type { SeriesCache } from "./series_cache.ts";

// Moved to ingest.ts; re-exported for existing importers.
export type { Fence, SampleWriter, WriteOptions, WriteResult, WriteSeries } from "../ingest.ts";
export { FenceError } from "../ingest.ts";

const DAY_MS = 86_400_000;
/** Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
// "PGCOPY\n\377\r\n\0", then 32-bit flags and header-extension length (both 0).
// deno-fmt-ignore
const COPY_HEADER = new Uint8Array([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00,
  0, 0, 0, 0,
  0, 0, 0, 0,
]);
const ROW_BYTES = 2 + 3 * (4 + 8);

/** The canonical cache key of a sorted label set. NUL cannot occur in labels (decode refuses it). */
export function seriesKey(labels: { name: string; value: string }[]): string {
  let key = "";
  for (let i = 0; i < labels.length; i++) {
    key += labels[i].name + "\u0000" + labels[i].value + "\u0000";
  }
  return key;
}

/** The jsonb text of a label set, as stored in `_prom_catalog.series.labels`. */
export function labelsJson(labels: { name: string; value: string }[]): string {
  let out = "{";
  for (let i = 0; i < labels.length; i++) {
    if (i) out += ",";
    out += JSON.stringify(labels[i].name) + ":" + JSON.stringify(labels[i].value);
  }
  return out + "}";
}

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
  /** Sorted, disjoint partition ranges known to exist: [start, end) in ms. */
  #partitions: [number, number][] = [];
  readonly maxCopies: number;
  #queue: PendingRows[] = [];
  #copies = 0;
  /** COPY statements sent into _prom_data.samples (a combined one counts once). */
  copyStatements = 0;

  constructor(
    readonly sql: Sql,
    readonly gate: Gate,
    readonly cache: SeriesCache,
    options: WriterOptions = {},
  ) {
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
    if (samples + stagedSamples === 0) return { samples: 0, newSeries: 0, deduplicated: false };
    const all = staged.length ? series.concat(staged) : series;
    return await this.gate.run(async () => {
      try {
        const { ids, created } = await this.#seriesIds(all);
        // Staged samples get their partitions too: the reconciler may store them.
        await this.#ensurePartitions(all);
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
          await this.#ensurePartitions(all);
          deduplicated = await this.#submit(pending);
        }
        return { samples, newSeries: created, deduplicated };
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
    this.#partitions = [];
  }

  async #seriesIds(series: WriteSeries[]): Promise<{ ids: number[]; created: number }> {
    const ids = new Array<number>(series.length);
    let missJson: string[] | undefined;
    let missIdx: number[][] | undefined;
    let missPos: Map<string, number> | undefined;
    for (let i = 0; i < series.length; i++) {
      const id = this.cache.get(series[i].labels);
      if (id !== undefined) {
        ids[i] = id;
        continue;
      }
      // A miss: the canonical key only dedupes the misses of this request.
      const key = seriesKey(series[i].labels);
      missJson ??= [];
      missIdx ??= [];
      missPos ??= new Map();
      const at = missPos.get(key);
      if (at !== undefined) {
        missIdx[at].push(i);
        continue;
      }
      missPos.set(key, missJson.length);
      missJson.push(labelsJson(series[i].labels));
      missIdx.push([i]);
    }
    if (!missJson) return { ids, created: 0 };
    const rows = await this.sql<{ idx: number; series_id: string; created: boolean }[]>`
      SELECT idx, series_id, created
      FROM _prom_catalog.get_or_create_series(${missJson}::text[]::jsonb[])`;
    if (rows.length !== missJson.length) {
      throw new UnavailableError(
        `Cannot resolve series: ${missJson.length} asked, ${rows.length} returned`,
      );
    }
    let created = 0;
    for (const r of rows) {
      const at = r.idx - 1;
      const id = Number(r.series_id);
      if (r.created) created++;
      this.cache.set(series[missIdx![at][0]].labels, id);
      for (const i of missIdx![at]) ids[i] = id;
    }
    return { ids, created };
  }

  async #ensurePartitions(series: WriteSeries[]): Promise<void> {
    let missing: Set<number> | undefined;
    let lastDay = NaN;
    for (const s of series) {
      const ts = s.timestamps;
      for (let i = 0; i < ts.length; i++) {
        const day = Math.floor(ts[i] / DAY_MS) * DAY_MS;
        if (day === lastDay) continue;
        lastDay = day;
        if (this.#covered(ts[i])) continue;
        (missing ??= new Set()).add(day);
      }
    }
    if (!missing) return;
    const times = [...missing].map((d) => new Date(d).toISOString());
    const rows = await this.sql<{ range_start: Date; range_end: Date }[]>`
      SELECT range_start, range_end FROM _prom_catalog.ensure_partitions(${times}::timestamptz[])`;
    for (const r of rows) {
      this.#addRange(toMs(r.range_start, -Infinity), toMs(r.range_end, Infinity));
    }
  }

  #covered(t: number): boolean {
    const p = this.#partitions;
    let lo = 0, hi = p.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (t < p[mid][0]) hi = mid - 1;
      else if (t >= p[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  #addRange(start: number, end: number): void {
    if (this.#partitions.some(([s, e]) => s === start && e === end)) return;
    this.#partitions.push([start, end]);
    this.#partitions.sort((a, b) => a[0] - b[0]);
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

function countSamples(series: WriteSeries[]): number {
  let n = 0;
  for (const s of series) n += s.timestamps.length;
  return n;
}

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

/** The parts of a postgres.js query that a COPY needs. */
interface CopyQuery {
  reject: (err: unknown) => void;
  writable(): Promise<NodeJS.WritableStream>;
}

/**
 * Runs `COPY … FROM STDIN` with `data` and resolves when the server has
 * committed it. postgres.js settles a COPY's stream only on success: an
 * error reported after the last byte (a unique violation, a dropped
 * connection) reaches the query's `reject`, which has already resolved
 * with the stream, and the stream never finishes. Hooking `reject` makes
 * that error reject here instead of hanging.
 */
export async function copyIn(query: unknown, data: Uint8Array): Promise<void> {
  const q = query as CopyQuery;
  const failed = Promise.withResolvers<never>();
  const reject = q.reject;
  q.reject = (err) => {
    failed.reject(err);
    reject(err);
  };
  failed.promise.catch(() => {});
  const stream = await Promise.race([q.writable(), failed.promise]);
  // postgres.js's COPY stream destroys itself after 'finish' (autoDestroy)
  // and its destroy() sends a CopyFail: harmless while the connection is
  // idle, but it aborts the next COPY when that one was already sent on
  // the same connection. The stream is done once it has finished.
  const state = (stream as unknown as { _writableState?: { autoDestroy?: boolean } })
    ._writableState;
  if (state) state.autoDestroy = false;
  const done = new Promise<void>((resolve, rejectDone) => {
    stream.once("error", rejectDone);
    stream.once("finish", resolve);
  });
  stream.end(data);
  await Promise.race([done, failed.promise]);
}

function toMs(d: Date, ifInfinite: number): number {
  const t = d instanceof Date ? d.getTime() : NaN;
  return Number.isFinite(t) ? t : ifInfinite;
}

/** One binary COPY body with the rows of several (each: header, rows, trailer). */
export function combineCopies(parts: Uint8Array[]): Uint8Array {
  const frame = COPY_HEADER.length + 2;
  let size = frame;
  for (const p of parts) size += p.length - frame;
  const out = new Uint8Array(size);
  out.set(COPY_HEADER, 0);
  let o = COPY_HEADER.length;
  for (const p of parts) {
    out.set(p.subarray(COPY_HEADER.length, p.length - 2), o);
    o += p.length - frame;
  }
  out[o] = 0xff; // file trailer: int16 -1
  out[o + 1] = 0xff;
  return out;
}

/** Encodes rows in PostgreSQL's binary COPY format: (int8, timestamptz, float8). */
export function encodeCopy(series: WriteSeries[], ids: number[], samples: number): Uint8Array {
  const buf = new Uint8Array(COPY_HEADER.length + samples * ROW_BYTES + 2);
  buf.set(COPY_HEADER, 0);
  const dv = new DataView(buf.buffer);
  let o = COPY_HEADER.length;
  // Values are copied as bytes (little-endian in memory, big-endian on the
  // wire) so that NaN payloads such as the staleness marker survive. The
  // series of a decoded request share one buffer: one byte view for all.
  let lastBuffer: ArrayBufferLike | undefined;
  let vb: Uint8Array = buf;
  for (let s = 0; s < series.length; s++) {
    const id = ids[s];
    const idHi = Math.floor(id / TWO_32);
    const idLo = id - idHi * TWO_32;
    const ts = series[s].timestamps;
    const vs = series[s].values;
    if (vs.buffer !== lastBuffer) {
      lastBuffer = vs.buffer;
      vb = new Uint8Array(lastBuffer);
    }
    const vbase = vs.byteOffset;
    for (let i = 0; i < ts.length; i++) {
      dv.setInt16(o, 3);
      dv.setInt32(o + 2, 8);
      dv.setInt32(o + 6, idHi);
      dv.setUint32(o + 10, idLo);
      dv.setInt32(o + 14, 8);
      // Microseconds since 2000-01-01 as int64, without leaving exact
      // float arithmetic: d < 2^53, split into 32-bit halves, times 1000.
      const d = ts[i] - PG_EPOCH_MS;
      const hi = Math.floor(d / TWO_32);
      const lo = (d - hi * TWO_32) * 1000;
      const carry = Math.floor(lo / TWO_32);
      dv.setInt32(o + 18, hi * 1000 + carry);
      dv.setUint32(o + 22, lo - carry * TWO_32);
      dv.setInt32(o + 26, 8);
      const b = vbase + i * 8;
      buf[o + 30] = vb[b + 7];
      buf[o + 31] = vb[b + 6];
      buf[o + 32] = vb[b + 5];
      buf[o + 33] = vb[b + 4];
      buf[o + 34] = vb[b + 3];
      buf[o + 35] = vb[b + 2];
      buf[o + 36] = vb[b + 1];
      buf[o + 37] = vb[b];
      o += ROW_BYTES;
    }
  }
  dv.setInt16(o, -1); // file trailer
  return buf;
}
