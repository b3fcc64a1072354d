/**
 * Helpers of the compressed-storage tests: store exact samples (binary
 * COPY, as the writer does), read them back bit for bit through the views
 * and remote read's SQL, run the compactor.
 */
import type { Sql } from "../../deps.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { copyIn } from "../../src/storage/pg_patches.ts";
import { encodeCopy } from "../../src/storage/copy_format.ts";
import type { WriteSeries } from "../../src/ingest.ts";
import { Compactor, type CompactResult } from "../../src/storage/compactor.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

/** A series to store: labels (with __name__), ms times, exact value bits. */
export interface TestSeries {
  labels: Record<string, string>;
  times: number[];
  bits: bigint[];
}

/** A stored sample as compared: series labels text, ms, value bits in hex. */
export type Sample = [string, string, string];

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** The bits of a double. */
export function bitsOf(v: number): bigint {
  f64[0] = v;
  return u64[0];
}

/** Migrates the database. */
export async function setup(sql: Sql): Promise<void> {
  await migrate(sql);
}

/** Stores `series` with one binary COPY (partitions made first). Returns series ids. */
export async function store(sql: Sql, series: TestSeries[]): Promise<number[]> {
  const labels = JSON.stringify(series.map((s) => s.labels));
  const rows = await sql<{ idx: number; series_id: string }[]>`
    SELECT idx, series_id::text FROM _prom_catalog.get_or_create_series(
      ARRAY(SELECT jsonb_array_elements(${labels}::text::jsonb)))`;
  const ids = new Array<number>(series.length);
  for (const r of rows) ids[r.idx - 1] = Number(r.series_id);
  const times = series.flatMap((s) => s.times.map((t) => new Date(t).toISOString()));
  await sql`SELECT _prom_catalog.ensure_partitions(${times}::timestamptz[])`;
  const ws: WriteSeries[] = series.map((s) => {
    const values = new Float64Array(s.bits.length);
    new BigUint64Array(values.buffer).set(s.bits);
    const sorted = Object.keys(s.labels).sort().map((name) => ({ name, value: s.labels[name] }));
    return { labels: sorted, timestamps: s.times, values };
  });
  const n = series.reduce((a, s) => a + s.times.length, 0);
  const conn = await sql.reserve();
  try {
    await copyIn(
      conn`COPY _prom_data.samples (series_id, time, value) FROM STDIN (FORMAT binary)`,
      encodeCopy(ws, ids, n),
    );
  } finally {
    conn.release();
  }
  return ids;
}

/** Every sample of metric view `view`, sorted, bits exact. */
export async function readView(sql: Sql, view: string, where = "true"): Promise<Sample[]> {
  const rows = await sql.unsafe<{ l: string; t: string; v: string }[]>(
    `SELECT labels::text AS l, floor(extract(epoch FROM time) * 1000)::int8::text AS t,
       encode(float8send(value), 'hex') AS v
     FROM prom_metric."${view}" WHERE ${where} ORDER BY series_id, time`,
  );
  return rows.map((r) => [r.l, r.t, r.v]);
}

/** Counts of rows and compressed windows. */
export async function forms(sql: Sql): Promise<{ rows: number; windows: number }> {
  const [r] = await sql<{ rows: number; windows: number }[]>`
    SELECT (SELECT count(*) FROM _prom_data.samples)::int AS rows,
           (SELECT count(*) FROM _prom_data.compressed)::int AS windows`;
  return r;
}

/** One compaction pass with no delay (every partition that ended before now). */
export async function compact(sql: Sql, batchSeries = 200): Promise<CompactResult> {
  const c = new Compactor({ sql, log: silentLogger, delayMs: 0, batchSeries });
  return await c.runOnce();
}

/** Hex of bits, as float8send gives them. */
export function hex(b: bigint): string {
  return b.toString(16).padStart(16, "0");
}

/**
 * Asserts two long lists are equal, reporting the first difference
 * (node:assert's diff of thousands of rows takes minutes).
 */
export function assertSameRows<T>(actual: T[], expected: T[], msg = ""): void {
  const a = actual.map((x) => JSON.stringify(x));
  const e = expected.map((x) => JSON.stringify(x));
  const n = Math.min(a.length, e.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== e[i]) {
      throw new Error(`${msg}: row ${i} differs: got ${a[i]}, expected ${e[i]}`);
    }
  }
  if (a.length !== e.length) {
    throw new Error(
      `${msg}: ${a.length} rows, expected ${e.length} (first extra: ${a[n] ?? e[n]})`,
    );
  }
}
