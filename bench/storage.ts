/**
 * The storage benchmark: bytes per sample and read times, rows against
 * compressed windows, on the same data in the same run.
 *
 *   deno run -A bench/storage.ts [--series 1000] [--slots 5760] [--scrapes 1440]
 *     [--repeat 5] [--loads synthetic,node_exporter] [--json]
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
 * For each: the schema up to the version before the read-speed migration
 * (`READ_SPEED_MIGRATION`, version 12), the sizes (heap, TOAST, indexes)
 * of the rows and read times through the views and through
 * `_prom_catalog.series_samples` (today's baseline); then one compaction
 * pass (time, CPU of the compactor's process and of PostgreSQL); the same
 * sizes and reads of the compressed windows with the SQL of before
 * version 12; then version 12 applied and the reads again; every sample
 * checked bit for bit against the rows under both. `--loads synthetic`
 * runs only the synthetic load (the reads of the real one are a few ms).
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { startNodeExporter } from "../tests/helpers/procs.ts";
import type { Sql } from "../deps.ts";
import { migrate } from "../src/storage/migrate.ts";
import { MIGRATIONS } from "../src/storage/migrations/schema.ts";
import { READ_SPEED_MIGRATION } from "../src/storage/migrations/read_speed.ts";
import { copyIn } from "../src/storage/pg_patches.ts";
import { encodeCopy } from "../src/storage/copy_format.ts";
import type { WriteSeries } from "../src/ingest.ts";
import { Compactor } from "../src/storage/compactor.ts";
import { silentLogger } from "../src/telemetry/log.ts";
import { benchLabels, benchValue } from "./payloads.ts";
import { cpuSeconds } from "./proc.ts";

type Label = { name: string; value: string };

/** A load: labels of each series and, per slot, every series' value (NaN: no sample). */
interface Load {
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
  /** One metric's series (node_cpu_seconds_total), 6 h, through its view. */
  metricView: number;
  /** The same through prom_api.metric_samples (version 12). */
  metricFn: number | null;
  /** Every series, 6 h, through _prom_data.all_samples (ad-hoc SQL over everything). */
  dashboardView: number;
  /** The same through series_samples per series. */
  dashboardFn: number;
  /** count(*), sum(value) over every sample (_prom_data.all_samples). */
  fullScan: number;
}

export interface StorageResult {
  load: string;
  series: number;
  samples: number;
  rows: Sizes;
  compressed: Sizes;
  /** The rows, with the schema before version 12 (today's baseline). */
  readsRows: Reads;
  /** The compressed windows with the SQL before version 12. */
  readsCompressedBefore: Reads;
  /** The compressed windows with version 12. */
  readsCompressed: Reads;
  compactSeconds: number;
  compactCpu: { connector: number; postgres: number };
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

async function timed(sql: Sql, text: string, params: unknown[], repeat: number): Promise<number> {
  const ms: number[] = [];
  // One run first: it warms the caches (the compressed table was just written).
  await sql.unsafe(text, params as never[]);
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    await sql.unsafe(text, params as never[]);
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/**
 * The read times. The 6-hour range is the middle 6 hours of the load's
 * span (09:00 to 15:00 of a full day: not aligned on the 2-hour windows, as
 * a dashboard's range is not; the whole span when it is 6 hours).
 */
async function reads(sql: Sql, day: number, spanMs: number, repeat: number): Promise<Reads> {
  const [one] = await sql<{ id: string; view: string }[]>`
    SELECT s.id::text AS id, m.view_name AS view FROM _prom_catalog.series s
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
    seriesDayView: await timed(
      sql,
      `SELECT count(*), sum(value) FROM prom_metric."${one.view}"
       WHERE series_id = $1 AND time >= $2 AND time <= $3`,
      [one.id, lo, hi],
      repeat,
    ),
    seriesDayFn: await timed(
      sql,
      `SELECT count(*), sum(value) FROM _prom_catalog.series_samples($1, $2, $3)`,
      [one.id, lo, hi],
      repeat,
    ),
    metricView: await timed(
      sql,
      `SELECT series_id, max(value) FROM prom_metric."${one.view}"
       WHERE time >= $1 AND time <= $2 GROUP BY series_id`,
      [dashLo, dashHi],
      repeat,
    ),
    metricFn: v12
      ? await timed(
        sql,
        `SELECT series_id, max(value)
         FROM prom_api.metric_samples('node_cpu_seconds_total', $1, $2) GROUP BY series_id`,
        [dashLo, dashHi],
        repeat,
      )
      : null,
    dashboardView: await timed(
      sql,
      `SELECT series_id, max(value) FROM _prom_data.all_samples
       WHERE time >= $1 AND time <= $2 GROUP BY series_id`,
      [dashLo, dashHi],
      repeat,
    ),
    dashboardFn: await timed(
      sql,
      `SELECT s.id, max(x.value) FROM _prom_catalog.series s
       CROSS JOIN LATERAL _prom_catalog.series_samples(s.id, $1, $2) x GROUP BY s.id`,
      [dashLo, dashHi],
      repeat,
    ),
    fullScan: await timed(
      sql,
      `SELECT count(*), sum(value) FROM _prom_data.all_samples`,
      [],
      Math.max(1, Math.ceil(repeat / 2)),
    ),
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

export async function runStorage(load: Load, repeat: number): Promise<StorageResult> {
  const db = await freshDatabase("bench_storage");
  try {
    await migrateBefore(db.sql, READ_SPEED_MIGRATION.version);
    const day = loadDay();
    const span = load.slots * STEP_MS;
    const { samples } = await write(db.sql, load, day);
    const before = await sizes(db.sql);
    const readsRows = await reads(db.sql, day, span, repeat);
    const d0 = await digest(db.sql);
    const pids = await backendPids(db.sql);
    const pg0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
    const me0 = cpuSeconds("self");
    const t0 = performance.now();
    const res = await new Compactor({ sql: db.sql, log: silentLogger, delayMs: 3_600_000 })
      .runOnce();
    const compactSeconds = (performance.now() - t0) / 1000;
    const compactCpu = {
      connector: cpuSeconds("self") - me0,
      postgres: pids.reduce((a, p) => a + cpuSeconds(p), 0) - pg0,
    };
    if (res.samples !== samples) throw new Error(`compacted ${res.samples} of ${samples}`);
    const after = await sizes(db.sql);
    const readsCompressedBefore = await reads(db.sql, day, span, repeat);
    const d1 = await digest(db.sql);
    await migrate(db.sql);
    const readsCompressed = await reads(db.sql, day, span, repeat);
    const d2 = await digest(db.sql);
    const [k] = await db.sql<{ scaled: number; raw: number }[]>`
      SELECT count(*) FILTER (WHERE v_scale IS NOT NULL)::int AS scaled,
             count(*) FILTER (WHERE v_scale IS NULL)::int AS raw FROM _prom_data.compressed`;
    return {
      load: load.name,
      series: load.labels.length,
      samples,
      rows: before.rows,
      compressed: after.compressed,
      readsRows,
      readsCompressedBefore,
      readsCompressed,
      compactSeconds,
      compactCpu,
      exact: d0 === d1 && d0 === d2,
      scaledWindows: k.scaled,
      rawWindows: k.raw,
    };
  } finally {
    await db.drop();
  }
}

const f2 = (x: number) => x.toFixed(2);
const f1 = (x: number) => x.toFixed(1);

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
      "| read (median ms) | rows | compressed, before v12 | / rows | compressed, v12 | / rows |",
      "| --- | ---: | ---: | ---: | ---: | ---: |",
      ...([
        ["one series, one day, view", "seriesDayView"],
        ["one series, one day, series_samples()", "seriesDayFn"],
        ["one metric, 6 h, view", "metricView"],
        ["one metric, 6 h, metric_samples()", "metricFn"],
        ["all series, 6 h, all_samples", "dashboardView"],
        ["all series, 6 h, series_samples()", "dashboardFn"],
        ["full scan", "fullScan"],
      ] as const).map(([label, key]) => {
        // metric_samples() is new in v12: its rows figure is the view's.
        const base = r.readsRows[key] ?? r.readsRows.metricView;
        const cell = (x: number | null) => x === null ? "— | —" : `${f1(x)} | ${f2(x / base)}`;
        return `| ${label} | ${f1(base)} | ${cell(r.readsCompressedBefore[key])} | ` +
          `${cell(r.readsCompressed[key])} |`;
      }),
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

if (import.meta.main) {
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
