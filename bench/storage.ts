/**
 * The storage benchmark: bytes per sample and read times, rows against
 * compressed windows, on the same data in the same run.
 *
 *   deno run -A bench/storage.ts [--series 1000] [--slots 5760] [--scrapes 1440]
 *     [--repeat 5] [--loads synthetic,node_exporter] [--json]
 *   deno run -A bench/storage.ts --compact-only [--rounds 1] [same load flags]
 *
 * `--compact-only` measures compaction alone: per round, the load into two
 * fresh databases, one compacted by the per-row flow the compactor had
 * before (its `legacy` option), one by the current flow (each checked bit
 * for bit); CPU of this process and of PostgreSQL; medians over rounds.
 *
 * Two loads, each into a fresh database, on a UTC day three days ago
 * (sealed, so the compactor takes it at once):
 * - "synthetic": the ingest benchmark's node_exporter-like series
 *   (bench/payloads.ts: 14 metric names, counters and gauges with
 *   fractional values) × `--slots` scrapes 15 s apart (default one day);
 * - "node_exporter": real scrapes of prometheus-node-exporter (all its
 *   default collectors), `--scrapes` of them taken back to back and
 *   stamped 15 s apart (values as scraped: counters grow less per step
 *   than in 15 s, which only favours raw floats over deltas a little).
 *
 * Each load is written twice, into two fresh databases: one with the
 * schema before the read-speed migration (`READ_SPEED_MIGRATION`, version
 * 12; today's reads), one with version 12. In each: the sizes (heap,
 * TOAST, indexes) of the rows and read times through the views,
 * `_prom_catalog.series_samples` and (version 12) `prom_api.metric_samples`;
 * then one compaction pass (time, CPU of the compactor's process and of
 * PostgreSQL); the same sizes and reads again, and a check that every
 * sample reads back bit for bit. Sizes and compaction are reported from
 * the second database. `--loads synthetic` runs only the synthetic load.
 *
 * @module
 */
import { type FreshDatabase, freshDatabase } from "../tests/helpers/db.ts";
import { startNodeExporter } from "../tests/helpers/procs.ts";
import type { Sql } from "../deps.ts";
import { migrate } from "../src/storage/migrate.ts";
import { MIGRATIONS } from "../src/storage/migrations/schema.ts";
import { READ_SPEED_MIGRATION } from "../src/storage/migrations/read_speed.ts";
import { copyIn } from "../src/storage/pg_patches.ts";
import { encodeCopy } from "../src/storage/copy_format.ts";
import type { WriteSeries } from "../src/ingest.ts";
import { Compactor } from "../src/storage/compactor.ts";
import { type ResultSeries, runQueries } from "../src/remote_read/querier.ts";
import { silentLogger } from "../src/telemetry/log.ts";
import { benchLabels, benchValue } from "./payloads.ts";
import { cpuSeconds } from "./proc.ts";

type Label = { name: string; value: string };

/** A load: labels of each series and, per slot, every series' value (NaN: no sample). */
export interface Load {
  name: string;
  labels: Label[][];
  slots: number;
  /** Values of slot `slot`, one per series, bits exact. */
  values(slot: number): Float64Array;
}

/** Sizes in bytes. */
interface Sizes {
  heap: number;
  toast: number;
  index: number;
}

/** Median ms of each read; null where the schema has no such function yet. */
interface Reads {
  /** One series, one day, through its prom_metric view. */
  seriesDayView: number;
  /** The same through series_samples (explicit bounds). */
  seriesDayFn: number;
  /** The same, encoded as remote read and the PromQL API fetch it (int8send/float8send). */
  seriesDayRemote: number;
  /**
   * The same through remote read's querier (`runQueries`): rows and the
   * windows as stored, decoded in TypeScript (src/storage/windows.ts);
   * wall time includes the decoding.
   */
  seriesDayQuerier: number;
  /** One metric's series (node_cpu_seconds_total), 6 h, through its view. */
  metricView: number;
  /** The same through prom_api.metric_samples (version 12). */
  metricFn: number | null;
  /** Every series, 6 h, through _prom_data.all_samples (ad-hoc SQL over everything). */
  dashboardView: number;
  /** The same through series_samples per series. */
  dashboardFn: number;
  /** The same, encoded per series as remote read and the PromQL API fetch it. */
  dashboardRemote: number;
  /** The same through remote read's querier (every series: `__name__=~".+"`). */
  dashboardQuerier: number;
  /** count(*), sum(value) over every sample (_prom_data.all_samples). */
  fullScan: number;
}

/** Read times of the four forms. */
export interface ReadsByForm {
  /** The rows, schema before version 12: today's reads, the baseline. */
  rowsBefore: Reads;
  /** The compressed windows, schema before version 12. */
  compressedBefore: Reads;
  /** The rows with version 12. */
  rows: Reads;
  /** The compressed windows with version 12. */
  compressed: Reads;
}

export interface StorageResult {
  load: string;
  series: number;
  samples: number;
  rows: Sizes;
  compressed: Sizes;
  /** Read times with JIT as the server has it (on, by default). */
  reads: ReadsByForm;
  /** Read times with `SET jit = off`. */
  readsNoJit: ReadsByForm;
  /** The backend's CPU ms per read, `SET jit = off`. */
  cpuNoJit: ReadsByForm;
  compactSeconds: number;
  compactCpu: { connector: number; postgres: number };
  /** The querier's reads return the same samples, bit for bit, in all four databases. */
  querierSame: boolean;
  exact: boolean;
  scaledWindows: number;
  rawWindows: number;
}

const DAY_MS = 86_400_000;
const STEP_MS = 15_000;

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The day the loads are written to: UTC midnight three days ago. */
export function loadDay(): number {
  return Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;
}

export function syntheticLoad(series: number, slots: number): Load {
  const labels = Array.from({ length: series }, (_, i) => benchLabels(i));
  return {
    name: `synthetic node_exporter-like, ${series} series × ${slots} scrapes at 15 s`,
    labels,
    slots,
    values: (slot) => Float64Array.from(labels, (_, i) => benchValue(i, slot)),
  };
}

/** Parses Prometheus text format: series key → value (exact, as Prometheus parses). */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    const key = line.slice(0, cut);
    const raw = line.slice(cut + 1);
    const v = raw === "NaN"
      ? NaN
      : raw === "+Inf"
      ? Infinity
      : raw === "-Inf"
      ? -Infinity
      : Number(raw);
    out.set(key, v);
  }
  return out;
}

function labelsOfKey(key: string): Label[] {
  const brace = key.indexOf("{");
  const name = brace < 0 ? key : key.slice(0, brace);
  const labels: Label[] = [{ name: "__name__", value: name }];
  if (brace >= 0) {
    const body = key.slice(brace + 1, key.lastIndexOf("}"));
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const m of body.matchAll(re)) {
      labels.push({ name: m[1], value: m[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c) });
    }
  }
  labels.push({ name: "instance", value: "node-0000:9100" }, { name: "job", value: "node" });
  return labels.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export async function nodeExporterLoad(scrapes: number): Promise<Load> {
  const ne = await startNodeExporter({
    collectors: [
      "cpu",
      "meminfo",
      "loadavg",
      "diskstats",
      "netdev",
      "filesystem",
      "stat",
      "vmstat",
      "netstat",
      "sockstat",
      "filefd",
      "time",
      "uname",
      "conntrack",
      "entropy",
      "pressure",
      "schedstat",
      "softnet",
    ],
  });
  const taken: Map<string, number>[] = [];
  try {
    for (let i = 0; i < scrapes; i++) {
      const res = await fetch(`${ne.url}/metrics`);
      taken.push(parseExposition(await res.text()));
    }
  } finally {
    await ne.proc.stop(2_000);
  }
  const keys = [...new Set(taken.flatMap((m) => [...m.keys()]))].sort();
  return {
    name:
      `real node_exporter scrapes, ${keys.length} series × ${scrapes} scrapes stamped 15 s apart`,
    labels: keys.map(labelsOfKey),
    slots: scrapes,
    values: (slot) => Float64Array.from(keys, (k) => taken[slot].get(k) ?? NaN),
  };
}

export async function write(
  sql: Sql,
  load: Load,
  day: number,
): Promise<{ ids: number[]; samples: number }> {
  const labels = JSON.stringify(
    load.labels.map((ls) => Object.fromEntries(ls.map((l) => [l.name, l.value]))),
  );
  const rows = await sql<{ idx: number; series_id: string }[]>`
    SELECT idx, series_id::text FROM _prom_catalog.get_or_create_series(
      ARRAY(SELECT jsonb_array_elements(${labels}::text::jsonb)))`;
  const ids = new Array<number>(load.labels.length);
  for (const r of rows) ids[r.idx - 1] = Number(r.series_id);
  await sql`SELECT _prom_catalog.ensure_partitions(ARRAY[${
    new Date(day).toISOString()
  }::timestamptz])`;
  let samples = 0;
  const CHUNK = 240;
  for (let s0 = 0; s0 < load.slots; s0 += CHUNK) {
    const slots = Math.min(CHUNK, load.slots - s0);
    const vals = Array.from({ length: slots }, (_, j) => load.values(s0 + j));
    const ws: WriteSeries[] = [];
    const wids: number[] = [];
    let n = 0;
    for (let i = 0; i < load.labels.length; i++) {
      const ts: number[] = [];
      const vs: number[] = [];
      for (let j = 0; j < slots; j++) {
        // A series missing from a scrape (absent key) has no sample.
        if (Number.isNaN(vals[j][i]) && load.name.startsWith("real")) continue;
        ts.push(day + (s0 + j) * STEP_MS);
        vs.push(vals[j][i]);
      }
      if (!ts.length) continue;
      ws.push({ labels: load.labels[i], timestamps: ts, values: Float64Array.from(vs) });
      wids.push(ids[i]);
      n += ts.length;
    }
    const conn = await sql.reserve();
    try {
      await copyIn(
        conn`COPY _prom_data.samples (series_id, time, value) FROM STDIN (FORMAT binary)`,
        encodeCopy(ws, wids, n),
      );
    } finally {
      conn.release();
    }
    samples += n;
  }
  return { ids, samples };
}

async function sizes(sql: Sql): Promise<{ rows: Sizes; compressed: Sizes }> {
  await sql`VACUUM ANALYZE`;
  const [r] = await sql<{ h: string; t: string; i: string }[]>`
    SELECT coalesce(sum(pg_relation_size(c.oid)), 0)::text AS h,
      coalesce(sum(pg_total_relation_size(nullif(c.reltoastrelid, 0))), 0)::text AS t,
      coalesce(sum(pg_indexes_size(c.oid)), 0)::text AS i
    FROM pg_inherits x JOIN pg_class c ON c.oid = x.inhrelid
    WHERE x.inhparent = '_prom_data.samples'::regclass`;
  const [c] = await sql<{ h: string; t: string; i: string }[]>`
    SELECT pg_relation_size(c.oid)::text AS h,
      pg_total_relation_size(c.reltoastrelid)::text AS t,
      pg_indexes_size(c.oid)::text AS i
    FROM pg_class c WHERE c.oid = '_prom_data.compressed'::regclass`;
  const n = (x: { h: string; t: string; i: string }): Sizes => ({
    heap: Number(x.h),
    toast: Number(x.t),
    index: Number(x.i),
  });
  return { rows: n(r), compressed: n(c) };
}

/** A series' samples as src/remote_read/querier.ts aggregates them. */
const REMOTE_COLUMNS = `count(*) AS n,
  string_agg(int8send(floor(extract(epoch FROM p.time) * 1000)::int8), ''::bytea ORDER BY p.time)
    AS ts,
  string_agg(float8send(p.value), ''::bytea ORDER BY p.time) AS vs`;

/** A read: a statement, or a call of the connector's own reader. */
type ReadQuery = { text: string; params: unknown[] } | {
  run: (sql: Sql) => Promise<{ results: ResultSeries[][] }>;
};

/** The read queries: their text and parameters, or null where the schema lacks them. */
type ReadQueries = Record<keyof Reads, ReadQuery | null>;

/**
 * The read queries of a database. The 6-hour range is the middle 6 hours
 * of the load's span (09:00 to 15:00 of a full day: not aligned on the
 * 2-hour windows, as a dashboard's range is not; the whole span when it is
 * 6 hours).
 */
async function readQueries(sql: Sql, day: number, spanMs: number): Promise<ReadQueries> {
  const [one] = await sql<{ id: string; view: string; labels: string }[]>`
    SELECT s.id::text AS id, m.view_name AS view, s.labels::text AS labels
    FROM _prom_catalog.series s
    JOIN _prom_catalog.metric m USING (metric_name)
    WHERE s.metric_name = 'node_cpu_seconds_total' ORDER BY s.id LIMIT 1`;
  const [{ v12 }] = await sql<{ v12: boolean }[]>`
    SELECT to_regprocedure('prom_api.metric_samples(text, timestamptz, timestamptz)') IS NOT NULL
      AS v12`;
  const lo = new Date(day).toISOString();
  const hi = new Date(day + DAY_MS - 1).toISOString();
  const dashStart = day + Math.max(0, Math.floor(spanMs / 2) - 3 * 3_600_000);
  const dashLo = new Date(dashStart).toISOString();
  const dashHi = new Date(dashStart + 6 * 3_600_000 - 1).toISOString();
  return {
    seriesDayView: {
      text: `SELECT count(*), sum(value) FROM prom_metric."${one.view}"
             WHERE series_id = $1 AND time >= $2 AND time <= $3`,
      params: [one.id, lo, hi],
    },
    seriesDayFn: {
      text: `SELECT count(*), sum(value) FROM _prom_catalog.series_samples($1, $2, $3)`,
      params: [one.id, lo, hi],
    },
    seriesDayRemote: {
      text: `SELECT ${REMOTE_COLUMNS} FROM _prom_catalog.series_samples($1, $2, $3) p`,
      params: [one.id, lo, hi],
    },
    seriesDayQuerier: {
      run: (sql) =>
        runQueries([{
          startMs: day,
          endMs: day + DAY_MS - 1,
          matchers: Object.entries(JSON.parse(one.labels) as Record<string, string>).map((
            [name, value],
          ) => ({ type: "=" as const, name, value })),
        }], { sql, maxSamples: 1e9 }),
    },
    metricView: {
      text: `SELECT series_id, max(value) FROM prom_metric."${one.view}"
             WHERE time >= $1 AND time <= $2 GROUP BY series_id`,
      params: [dashLo, dashHi],
    },
    metricFn: v12
      ? {
        text: `SELECT series_id, max(value)
               FROM prom_api.metric_samples('node_cpu_seconds_total', $1, $2) GROUP BY series_id`,
        params: [dashLo, dashHi],
      }
      : null,
    dashboardView: {
      text: `SELECT series_id, max(value) FROM _prom_data.all_samples
             WHERE time >= $1 AND time <= $2 GROUP BY series_id`,
      params: [dashLo, dashHi],
    },
    dashboardFn: {
      text: `SELECT s.id, max(x.value) FROM _prom_catalog.series s
             CROSS JOIN LATERAL _prom_catalog.series_samples(s.id, $1, $2) x GROUP BY s.id`,
      params: [dashLo, dashHi],
    },
    dashboardRemote: {
      text: `SELECT s.id, x.* FROM _prom_catalog.series s CROSS JOIN LATERAL (
               SELECT ${REMOTE_COLUMNS} FROM _prom_catalog.series_samples(s.id, $1, $2) p) x`,
      params: [dashLo, dashHi],
    },
    dashboardQuerier: {
      run: (sql) =>
        runQueries([{
          startMs: dashStart,
          endMs: dashStart + 6 * 3_600_000 - 1,
          matchers: [{ type: "=~", name: "__name__", value: ".+" }],
        }], { sql, maxSamples: 1e9 }),
    },
    fullScan: { text: `SELECT count(*), sum(value) FROM _prom_data.all_samples`, params: [] },
  };
}

/** Every sample, in order, as one digest string (bits exact). */
async function digest(sql: Sql): Promise<string> {
  const [r] = await sql<{ d: string }[]>`
    SELECT md5(string_agg(series_id::text || ' ' || int8send(floor(extract(epoch FROM time) * 1000)::int8)::text
      || ' ' || float8send(value)::text, ',' ORDER BY series_id, time)) AS d,
      count(*) AS n
    FROM _prom_data.all_samples`;
  return r.d;
}

async function backendPids(sql: Sql): Promise<number[]> {
  const conns = await Promise.all([0, 1, 2, 3].map(() => sql.reserve()));
  const pids: number[] = [];
  for (const c of conns) {
    const [{ pid }] = await c<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    pids.push(pid);
    c.release();
  }
  return pids;
}

/** Compaction measured: wall time and CPU (this process, PostgreSQL). */
export interface CompactionRun {
  seconds: number;
  cpu: { connector: number; postgres: number };
}

/** One compaction pass over everything stored (sealed), timed, with its CPU. */
async function measureCompaction(
  sql: Sql,
  samples: number,
  legacy: boolean,
): Promise<{ compactSeconds: number; compactCpu: CompactionRun["cpu"] }> {
  const pids = await backendPids(sql);
  const pg0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const me0 = cpuSeconds("self");
  const t0 = performance.now();
  const res = await new Compactor({
    sql,
    log: silentLogger,
    delayMs: 3_600_000,
    legacy,
    busyFraction: 1,
  }).runOnce();
  const compactSeconds = (performance.now() - t0) / 1000;
  const compactCpu = {
    connector: cpuSeconds("self") - me0,
    postgres: pids.reduce((a, p) => a + cpuSeconds(p), 0) - pg0,
  };
  if (res.samples !== samples) throw new Error(`compacted ${res.samples} of ${samples}`);
  const [{ rows }] = await sql<{ rows: number }[]>`
    SELECT count(*)::int AS rows FROM _prom_data.samples`;
  if (rows !== 0) throw new Error(`${rows} rows left after compaction`);
  return { compactSeconds, compactCpu };
}

/** Compaction only, per-row flow (`legacy`) against the current one. */
export interface CompactionResult {
  load: string;
  samples: number;
  legacy: CompactionRun;
  current: CompactionRun;
  exact: boolean;
}

/**
 * Compaction only (`--compact-only`): the load into two fresh databases,
 * one compacted by the per-row flow (`legacy`), the other by the current
 * one, alternating which goes first per round; each checked bit for bit.
 */
export async function runCompaction(load: Load, rounds: number): Promise<CompactionResult> {
  const runs: Record<"legacy" | "current", CompactionRun[]> = { legacy: [], current: [] };
  let samples = 0;
  let exact = true;
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? ["current", "legacy"] as const : ["legacy", "current"] as const;
    for (const mode of order) {
      const db = await freshDatabase("bench_compact");
      try {
        await migrate(db.sql);
        const day = loadDay();
        samples = (await write(db.sql, load, day)).samples;
        await db.sql`VACUUM ANALYZE`;
        const d0 = await digest(db.sql);
        const m = await measureCompaction(db.sql, samples, mode === "legacy");
        exact &&= d0 === await digest(db.sql);
        runs[mode].push({ seconds: m.compactSeconds, cpu: m.compactCpu });
      } finally {
        await db.drop();
      }
    }
  }
  const med = (xs: CompactionRun[]): CompactionRun => {
    const total = (x: CompactionRun) => x.cpu.connector + x.cpu.postgres;
    return [...xs].sort((a, b) => total(a) - total(b))[Math.floor(xs.length / 2)];
  };
  return { load: load.name, samples, legacy: med(runs.legacy), current: med(runs.current), exact };
}

/** The Markdown report of `--compact-only`. */
export function compactionReport(results: CompactionResult[]): string {
  const lines = [
    "| load | flow | wall s | CPU compactor s | CPU PostgreSQL s | samples per CPU second |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    for (const mode of ["legacy", "current"] as const) {
      const x = r[mode];
      lines.push(
        `| ${r.load} | ${mode} | ${f2(x.seconds)} | ${f2(x.cpu.connector)} | ${
          f2(x.cpu.postgres)
        } | ${Math.round(r.samples / (x.cpu.connector + x.cpu.postgres)).toLocaleString("en")} |`,
      );
    }
    const per = (x: CompactionRun) => x.cpu.connector + x.cpu.postgres;
    lines.push(
      `| ${r.load} | current / legacy CPU | | | | ${f2(per(r.current) / per(r.legacy))} ` +
        `(bit for bit: ${r.exact ? "yes" : "NO"}) |`,
    );
  }
  return lines.join("\n");
}

/** Applies the migrations before `version` (as `migrate` would, without the lock). */
async function migrateBefore(sql: Sql, version: number): Promise<void> {
  await sql`SET client_min_messages TO warning`;
  await sql`CREATE SCHEMA IF NOT EXISTS _prom_catalog`;
  await sql`CREATE TABLE IF NOT EXISTS _prom_catalog.migrations (
    version int PRIMARY KEY, description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`;
  for (const m of MIGRATIONS.filter((m) => m.version < version)) {
    await sql.begin(async (tx) => {
      await tx.unsafe(typeof m.sql === "string" ? m.sql : m.sql({ timescaledb: false }));
      await tx`INSERT INTO _prom_catalog.migrations VALUES (${m.version}, ${m.description})`;
    });
  }
}

/** A database holding a load, in one of the four forms the reads compare. */
interface Built {
  db: FreshDatabase;
  queries: ReadQueries;
  samples: number;
  sizes: { rows: Sizes; compressed: Sizes };
  compactSeconds: number;
  compactCpu: { connector: number; postgres: number };
  exact: boolean;
  scaledWindows: number;
  rawWindows: number;
}

/**
 * Writes `load` into a fresh database with version 12 or the schema
 * before it, and compacts it when `compacted`.
 */
async function build(load: Load, v12: boolean, compacted: boolean): Promise<Built> {
  const db = await freshDatabase("bench_storage");
  try {
    if (v12) await migrate(db.sql);
    else await migrateBefore(db.sql, READ_SPEED_MIGRATION.version);
    const day = loadDay();
    const { samples } = await write(db.sql, load, day);
    const before = await sizes(db.sql);
    const built: Built = {
      db,
      queries: await readQueries(db.sql, day, load.slots * STEP_MS),
      samples,
      sizes: before,
      compactSeconds: 0,
      compactCpu: { connector: 0, postgres: 0 },
      exact: true,
      scaledWindows: 0,
      rawWindows: 0,
    };
    if (!compacted) return built;
    const d0 = await digest(db.sql);
    const m = await measureCompaction(db.sql, samples, false);
    built.compactSeconds = m.compactSeconds;
    built.compactCpu = m.compactCpu;
    built.sizes = { rows: before.rows, compressed: (await sizes(db.sql)).compressed };
    built.exact = d0 === await digest(db.sql);
    const [k] = await db.sql<{ scaled: number; raw: number }[]>`
      SELECT count(*) FILTER (WHERE v_scale IS NOT NULL)::int AS scaled,
             count(*) FILTER (WHERE v_scale IS NULL)::int AS raw FROM _prom_data.compressed`;
    built.scaledWindows = k.scaled;
    built.rawWindows = k.raw;
    return built;
  } catch (err) {
    await db.drop();
    throw err;
  }
}

/**
 * Median ms of each read in each database, JIT as configured and JIT off,
 * and the backend's CPU ms per run (from /proc, JIT off). The databases take
 * turns query by query (one run of a query in each, then the next run), so
 * a busy machine weighs on all of them alike; the CPU time is what a busy
 * machine changes least. A read whose first run takes under 20 ms runs 10
 * times as often (the CPU clock ticks every 10 ms).
 */
async function measure(
  dbs: Built[],
  repeat: number,
): Promise<{ on: Reads[]; off: Reads[]; cpu: Reads[] }> {
  const conns = await Promise.all(dbs.map((b) => b.db.sql.reserve()));
  try {
    const pids = await Promise.all(
      conns.map(async (c) => (await c<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0].pid),
    );
    const none = () => dbs.map(() => ({}) as Reads);
    const out = { on: none(), off: none(), cpu: none() };
    const set = (r: Reads, key: keyof Reads, v: number | null) =>
      (r as unknown as Record<string, number | null>)[key] = v;
    for (const jit of ["on", "off"] as const) {
      for (const c of conns) {
        if (jit === "off") await c`SET jit = off`;
        else await c`RESET jit`;
      }
      for (const key of Object.keys(dbs[0].queries) as (keyof Reads)[]) {
        const times: number[][] = dbs.map(() => []);
        const cpu = dbs.map(() => 0);
        let n = key === "fullScan" ? Math.max(1, Math.ceil(repeat / 2)) : repeat;
        let scaled = false;
        // One run first: it warms the caches (the compressed table was just written).
        for (let i = -1; i < n; i++) {
          for (const [d, c] of conns.entries()) {
            const q = dbs[d].queries[key];
            if (!q) continue;
            const c0 = cpuSeconds(pids[d]);
            const t0 = performance.now();
            if ("run" in q) await q.run(c);
            else await c.unsafe(q.text, q.params as never[]);
            const ms = performance.now() - t0;
            if (i >= 0) {
              times[d].push(ms);
              cpu[d] += cpuSeconds(pids[d]) - c0;
            } else if (!scaled && ms < 20) [n, scaled] = [n * 10, true];
          }
        }
        for (const [d, r] of out[jit].entries()) {
          set(r, key, times[d].length ? median(times[d]) : null);
          if (jit === "off") set(out.cpu[d], key, times[d].length ? cpu[d] * 1000 / n : null);
        }
      }
    }
    return out;
  } finally {
    for (const c of conns) c.release();
  }
}

/** Whether the querier's reads give the same series and samples in every database. */
async function querierSame(dbs: Built[]): Promise<boolean> {
  const flat = (r: { results: ResultSeries[][] }) =>
    r.results[0].map((s) =>
      JSON.stringify(s.labels) + " " + Array.from(s.timestamps).join(",") + " " +
      Array.from(s.valuesBE).join(",")
    ).sort().join("\n");
  for (const key of ["seriesDayQuerier", "dashboardQuerier"] as const) {
    const got: string[] = [];
    for (const b of dbs) {
      const q = b.queries[key];
      if (q && "run" in q) got.push(flat(await q.run(b.db.sql)));
    }
    if (got.length !== dbs.length || got.some((g) => g !== got[0]) || got[0].length === 0) {
      return false;
    }
  }
  return true;
}

/**
 * The same load four times, each in its own database: rows and compressed
 * windows, with the schema before version 12 (today's reads) and with
 * version 12; then the reads, taking turns.
 */
export async function runStorage(load: Load, repeat: number): Promise<StorageResult> {
  const dbs: Built[] = [];
  try {
    dbs.push(await build(load, false, false));
    dbs.push(await build(load, false, true));
    dbs.push(await build(load, true, false));
    dbs.push(await build(load, true, true));
    const r = await measure(dbs, repeat);
    const now = dbs[3];
    const pick = (x: Reads[]): ReadsByForm => ({
      rowsBefore: x[0],
      compressedBefore: x[1],
      rows: x[2],
      compressed: x[3],
    });
    return {
      load: load.name,
      series: load.labels.length,
      samples: now.samples,
      rows: now.sizes.rows,
      compressed: now.sizes.compressed,
      reads: pick(r.on),
      readsNoJit: pick(r.off),
      cpuNoJit: pick(r.cpu),
      compactSeconds: now.compactSeconds,
      compactCpu: now.compactCpu,
      exact: dbs[1].exact && now.exact,
      querierSame: await querierSame(dbs),
      scaledWindows: now.scaledWindows,
      rawWindows: now.rawWindows,
    };
  } finally {
    for (const b of dbs) await b.db.drop();
  }
}

const f2 = (x: number) => x.toFixed(2);
const f1 = (x: number) => x.toFixed(1);

const READ_LABELS = [
  ["one series, one day, view", "seriesDayView"],
  ["one series, one day, series_samples()", "seriesDayFn"],
  ["one series, one day, as remote read encodes it", "seriesDayRemote"],
  ["one series, one day, remote read's querier (TypeScript decode)", "seriesDayQuerier"],
  ["one metric, 6 h, view", "metricView"],
  ["one metric, 6 h, metric_samples()", "metricFn"],
  ["all series, 6 h, all_samples", "dashboardView"],
  ["all series, 6 h, series_samples()", "dashboardFn"],
  ["all series, 6 h, as remote read encodes them", "dashboardRemote"],
  ["all series, 6 h, remote read's querier (TypeScript decode)", "dashboardQuerier"],
  ["full scan", "fullScan"],
] as const;

/** The reads table: ratios against the rows before version 12 (today). */
function readTable(r: ReadsByForm, title: string, what = "median ms"): string[] {
  const ms = (x: number | null) => x === null ? "—" : f1(x);
  return [
    `| read (${what}), ${title} | rows, before v12 | compressed, before v12 | / rows | ` +
    "rows, v12 | compressed, v12 | / rows before v12 |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...READ_LABELS.map(([label, key]) => {
      // metric_samples() is new in v12: compared with the view's rows before.
      const base = r.rowsBefore[key] ?? r.rowsBefore.metricView;
      const ratio = (x: number | null) => x === null ? "—" : f2(x / base);
      const [c0, c1] = [r.compressedBefore[key], r.compressed[key]];
      return `| ${label} | ${f1(base)} | ${ms(c0)} | ${ratio(c0)} | ${ms(r.rows[key])} | ` +
        `${ms(c1)} | ${ratio(c1)} |`;
    }),
  ];
}

/** The Markdown report of `results`. */
export function storageReport(results: StorageResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const per = (s: Sizes) => (s.heap + s.toast + s.index) / r.samples;
    lines.push(
      `### ${r.load}`,
      "",
      `${r.samples.toLocaleString("en")} samples; ${r.scaledWindows} windows scaled-integer, ` +
        `${r.rawWindows} raw; read back bit for bit after compaction: **${
          r.exact ? "yes" : "NO"
        }**; remote read's querier returns the same samples from all four databases: **${
          r.querierSame ? "yes" : "NO"
        }**.`,
      "",
      "| form | heap B/sample | TOAST B/sample | index B/sample | total B/sample |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...(["rows", "compressed"] as const).map((f) =>
        `| ${f} | ${f2(r[f].heap / r.samples)} | ${f2(r[f].toast / r.samples)} | ` +
        `${f2(r[f].index / r.samples)} | **${f2(per(r[f]))}** |`
      ),
      `| ratio | | | | ${f1(per(r.rows) / per(r.compressed))}× smaller |`,
      "",
      ...readTable(r.reads, "JIT as configured (on)"),
      "",
      ...readTable(r.readsNoJit, "JIT off"),
      "",
      ...readTable(r.cpuNoJit, "JIT off", "backend CPU ms, mean"),
      "",
      `Compaction: ${f2(r.compactSeconds)} s wall, ${
        Math.round(r.samples / r.compactSeconds).toLocaleString("en")
      } samples/s; CPU ${f2(r.compactCpu.connector)} s in the compactor's process, ` +
        `${f2(r.compactCpu.postgres)} s in PostgreSQL (${
          Math.round(r.samples / (r.compactCpu.connector + r.compactCpu.postgres)).toLocaleString(
            "en",
          )
        } samples per CPU second).`,
      "",
    );
  }
  return lines.join("\n");
}

if (import.meta.main && Deno.args.includes("--compact-only")) {
  const rounds = Number(arg("rounds", "1"));
  const results: CompactionResult[] = [];
  const loads = arg("loads", "synthetic,node_exporter").split(",");
  if (loads.includes("synthetic")) {
    results.push(
      await runCompaction(
        syntheticLoad(Number(arg("series", "1000")), Number(arg("slots", "5760"))),
        rounds,
      ),
    );
  }
  if (loads.includes("node_exporter")) {
    results.push(
      await runCompaction(await nodeExporterLoad(Number(arg("scrapes", "1440"))), rounds),
    );
  }
  if (Deno.args.includes("--json")) console.log(JSON.stringify(results));
  else console.log(compactionReport(results));
} else if (import.meta.main) {
  const repeat = Number(arg("repeat", "5"));
  const results: StorageResult[] = [];
  const loads = arg("loads", "synthetic,node_exporter").split(",");
  if (loads.includes("synthetic")) {
    results.push(
      await runStorage(
        syntheticLoad(Number(arg("series", "1000")), Number(arg("slots", "5760"))),
        repeat,
      ),
    );
  }
  if (loads.includes("node_exporter")) {
    results.push(await runStorage(await nodeExporterLoad(Number(arg("scrapes", "1440"))), repeat));
  }
  if (Deno.args.includes("--json")) console.log(JSON.stringify(results));
  else console.log(storageReport(results));
}
