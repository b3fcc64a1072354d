/**
 * The decoder of compressed windows (`_prom_catalog.decode_window`,
 * migration 12) against samples computed here from the stored format, for
 * every shape a window can have, through `compressed_samples` and
 * `series_samples()` with bounds inside, across and exactly on windows;
 * its plan (inlined, no sort); and an upgrade from version 10 with
 * compressed data: the same queries give the same answers. The TypeScript
 * decoder (`storage/windows.ts`) against the same samples, on the same
 * windows and bounds.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import type { Sql } from "../../deps.ts";
import { MIGRATIONS } from "../../src/storage/migrations/schema.ts";
import { READ_SPEED_MIGRATION } from "../../src/storage/migrations/read_speed.ts";
import { runQueries } from "../../src/remote_read/querier.ts";
import { decodeWindows, windowBytesSql, windowsInRangeSql } from "../../src/storage/windows.ts";
import {
  assertSameRows,
  bitsOf,
  compact,
  hex,
  readView,
  setup,
  store,
  type TestSeries,
} from "./compress_helpers.ts";

/** A compressed row as stored (docs/storage.md), written by hand. */
interface Row {
  name: string;
  minMs: number;
  step: number;
  tCorr: number[] | null;
  scale: number | null;
  base: number | null;
  deltas: number[] | null;
  /** Exceptions by position (text PostgreSQL parses exactly; NaN is canonical). */
  exc: Map<number, string> | null;
  raw: number[] | null;
  n: number;
}

/** Deterministic pseudo-random integers in [-m, m]. */
function rand(seed: number): (m: number) => number {
  let x = seed;
  return (m) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return (x % (2 * m + 1)) - m;
  };
}

function rows(): Row[] {
  const r = rand(7);
  const T = Date.UTC(2025, 0, 6, 2, 0, 0);
  const n1 = 480;
  // Deltas of mixed signs and sizes: a running sum taken in any other order
  // than the stored one gives other values.
  const deltas = (n: number) => Array.from({ length: n }, () => r(1_000_000));
  return [
    {
      name: "regular",
      minMs: T,
      step: 15_000,
      tCorr: null,
      scale: 100,
      base: 123456789,
      deltas: deltas(n1),
      exc: null,
      raw: null,
      n: n1,
    },
    {
      name: "jitter and exceptions",
      minMs: T + 17,
      step: 15_000,
      tCorr: Array.from({ length: 300 }, (_, i) => i % 7 === 0 ? 0 : r(50)),
      scale: 8,
      base: -5,
      deltas: deltas(300),
      exc: new Map([[0, "NaN"], [3, "-0"], [100, "Infinity"], [299, "-Infinity"]]),
      raw: null,
      n: 300,
    },
    {
      name: "exceptions on the step",
      minMs: T,
      step: 30_000,
      tCorr: null,
      scale: 1,
      base: 0,
      deltas: deltas(240),
      exc: new Map([[5, "0.1"], [239, "-0"]]),
      raw: null,
      n: 240,
    },
    {
      name: "raw with corrections",
      minMs: T + 999,
      step: 10_000,
      tCorr: Array.from({ length: 200 }, (_, i) => i === 150 ? -9_990 : r(3)),
      scale: null,
      base: null,
      deltas: null,
      exc: null,
      raw: Array.from({ length: 200 }, (_, i) => Math.sin(i) / 7),
      n: 200,
    },
    {
      name: "raw on the step",
      minMs: T,
      step: 1,
      tCorr: null,
      scale: null,
      base: null,
      deltas: null,
      exc: null,
      raw: Array.from({ length: 50 }, (_, i) => Math.sqrt(i) * 1e-300),
      n: 50,
    },
    {
      name: "one sample",
      minMs: T + 5,
      step: 0,
      tCorr: null,
      scale: 1,
      base: 41,
      deltas: [1],
      exc: null,
      raw: null,
      n: 1,
    },
    {
      name: "step 0, times from the corrections",
      minMs: T,
      step: 0,
      tCorr: [0, 5, 9],
      scale: 2,
      base: 3,
      deltas: [1, -2, 3],
      exc: null,
      raw: null,
      n: 3,
    },
    {
      name: "year 1",
      minMs: YEAR_1,
      step: 1,
      tCorr: null,
      scale: 1000,
      base: 2 ** 52,
      deltas: [0, 1, -1, 5],
      exc: null,
      raw: null,
      n: 4,
    },
  ];
}

/** The samples of `row` as [ms, value bits in hex], computed from the format. */
function expected(row: Row): [string, string][] {
  const out: [string, string][] = [];
  let k = 0;
  for (let i = 0; i < row.n; i++) {
    const t = row.minMs + i * row.step + (row.tCorr ? row.tCorr[i] : 0);
    let v: number;
    if (row.raw) v = row.raw[i];
    else {
      k += row.deltas![i];
      const e = row.exc?.get(i);
      v = e === undefined ? (row.base! + k) / row.scale! : Number(e === "-0" ? -0 : e);
    }
    out.push([String(t), hex(bitsOf(v))]);
  }
  return out;
}

/** Writes `rs` as series 1, 2, … (one window each). */
async function insert(sql: Sql, rs: Row[]): Promise<void> {
  for (const [i, r] of rs.entries()) {
    const t = r.tCorr ? r.tCorr : Array(r.n).fill(0);
    const maxMs = r.minMs + (r.n - 1) * r.step + t[r.n - 1];
    const exc = r.exc
      ? `{${Array.from({ length: r.n }, (_, j) => r.exc!.get(j) ?? "NULL").join(",")}}`
      : null;
    await sql`INSERT INTO _prom_data.compressed
      (series_id, window_start, min_time, max_time, n, step_ms, t_corr, v_scale, v_base, v_delta,
       v_exc, v_raw)
      VALUES (${i + 1}, ${new Date(r.minMs).toISOString()}, ${new Date(r.minMs).toISOString()},
        ${new Date(maxMs).toISOString()}, ${r.n}, ${r.step},
        ${r.tCorr ? `{${r.tCorr.join(",")}}` : null}::int4[], ${r.scale}, ${r.base},
        ${r.deltas ? `{${r.deltas.join(",")}}` : null}::int4[], ${exc}::float8[],
        ${r.raw ? `{${r.raw.map(String).join(",")}}` : null}::float8[])`;
  }
}

/** The j-th 8 bytes of `b` in hex. */
function hexAt(b: Uint8Array, j: number): string {
  return [...b.subarray(j * 8, j * 8 + 8)].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** The earliest time stored (Prometheus and PostgreSQL both have year 1). */
const YEAR_1 = -62135596800000;

const MS = `floor(extract(epoch FROM time) * 1000)::int8::text`;

Deno.test("decode_window() gives back every shape of window exactly, through compressed_samples and series_samples()", async () => {
  const db = await freshDatabase("compress_decode");
  try {
    await setup(db.sql);
    const rs = rows();
    await insert(db.sql, rs);
    for (const [i, r] of rs.entries()) {
      const want = expected(r);
      // The harness: the expected times are distinct and sorted.
      assert(want.every((w, j) => j === 0 || Number(w[0]) > Number(want[j - 1][0])), r.name);
      const all = await db.sql.unsafe<{ t: string; v: string }[]>(
        `SELECT ${MS} AS t, encode(float8send(value), 'hex') AS v
         FROM _prom_data.compressed_samples WHERE series_id = $1 ORDER BY time`,
        [i + 1],
      );
      assertEquals(all.map((x) => [x.t, x.v]), want, `${r.name}: compressed_samples`);
      // Bounds: everything, exactly the window, cutting it, one instant, none.
      const first = Number(want[0][0]);
      const last = Number(want[want.length - 1][0]);
      const mid = Number(want[Math.floor(want.length / 2)][0]);
      const ranges: [number, number][] = [
        [first - 86_400_000, last + 86_400_000],
        [first, last],
        [first + 1, last - 1],
        [mid, last + 5],
        [first - 5, mid - 1],
        [mid, mid],
        [last + 1, last + 10],
        [first + 1, first + 1 + 7 * r.step], // a slice from the second sample
        [first + r.step * 3 - 1, Infinity], // a slice to the end, open
        [-Infinity, Math.max(first, last - r.step * 2 - 1)], // from the start, open
      ];
      const iso = (ms: number) =>
        ms === Infinity ? "infinity" : ms === -Infinity ? "-infinity" : new Date(ms).toISOString();
      for (
        const [lo, hi] of ranges.map(([a, b]) => [a === -Infinity ? a : Math.max(a, YEAR_1), b])
      ) {
        const got = await db.sql.unsafe<{ t: string; v: string }[]>(
          `SELECT ${MS} AS t, encode(float8send(value), 'hex') AS v
           FROM _prom_catalog.series_samples($1, $2::text::timestamptz, $3::text::timestamptz)
           ORDER BY time`,
          [i + 1, iso(lo), iso(hi)],
        );
        assertEquals(
          got.map((x) => [x.t, x.v]),
          want.filter((w) => Number(w[0]) >= lo && Number(w[0]) <= hi),
          `${r.name}: series_samples in [${lo}, ${hi}]`,
        );
        // The TypeScript decoder (remote read, PromQL) on the windows as stored.
        const [b] = await db.sql.unsafe<{ wb: Uint8Array | null }[]>(
          `SELECT string_agg(${windowBytesSql("c")}, ''::bytea ORDER BY c.window_start) AS wb
           FROM _prom_data.compressed c
           WHERE ${windowsInRangeSql("c", "$1", "$2::text::timestamptz", "$3::text::timestamptz")}`,
          [i + 1, iso(lo), iso(hi)],
        );
        const d = b.wb ? decodeWindows(b.wb, lo, hi) : null;
        assertEquals(
          d ? Array.from(d.timestamps, (t, j) => [String(t), hexAt(d.valuesBE, j)]) : [],
          want.filter((w) => Number(w[0]) >= lo && Number(w[0]) <= hi),
          `${r.name}: decodeWindows() in [${lo}, ${hi}]`,
        );
      }
    }
  } finally {
    await db.drop();
  }
});

/** EXPLAIN (VERBOSE) text of `query`. */
async function plan(sql: Sql, query: string): Promise<string> {
  // The test's table is a few rows, which a sequential scan reads best:
  // ask for the plan an index would give, as with a real table.
  return await sql.begin(async (tx) => {
    await tx`SET LOCAL enable_seqscan = off`;
    const rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(
      `EXPLAIN (VERBOSE, COSTS OFF) ${query}`,
    );
    return rows.map((r) => r["QUERY PLAN"]).join("\n");
  });
}

Deno.test("the decoder is inlined, sorts nothing, and bounded reads reach the windows' key", async () => {
  const db = await freshDatabase("compress_decode_plan");
  try {
    await setup(db.sql);
    const T = Date.UTC(2025, 0, 6);
    await store(db.sql, [{
      labels: { __name__: "plan_metric", job: "p", instance: "a" },
      times: Array.from({ length: 100 }, (_, i) => T + i * 60_000),
      bits: Array.from({ length: 100 }, (_, i) => bitsOf(i * 1.5)),
    }]);
    await compact(db.sql);
    await db.sql`ANALYZE`;
    const [lo, hi] = [new Date(T + 3_600_000).toISOString(), new Date(T + 5_400_000).toISOString()];
    const queries = {
      series: `SELECT * FROM _prom_catalog.series_samples(1, '${lo}', '${hi}')`,
      metric: `SELECT * FROM prom_api.metric_samples('plan_metric', '${lo}', '${hi}')`,
      view: `SELECT * FROM prom_metric.plan_metric WHERE time >= '${lo}'`,
      all: `SELECT * FROM _prom_data.all_samples`,
    };
    for (const [name, q] of Object.entries(queries)) {
      const p = await plan(db.sql, q);
      // Inlined: the body's nodes, no call of the function.
      assert(!p.includes("decode_window"), `${name}: decode_window() not inlined:\n${p}`);
      assert(p.includes("ProjectSet") && p.includes("WindowAgg"), `${name}:\n${p}`);
      assert(!p.includes("Sort"), `${name}: a sort in the plan:\n${p}`);
      if (name === "series" || name === "metric") {
        assert(
          /Index Cond: \(\(c(_\d+)?\.series_id = [^\n]*window_start >=/.test(p),
          `${name}: the bounds do not reach compressed_pkey:\n${p}`,
        );
      }
    }
  } finally {
    await db.drop();
  }
});

Deno.test("upgrading to version 12 with compressed data: the same queries give the same answers", async () => {
  const db = await freshDatabase("compress_decode_upgrade");
  try {
    await db.sql`CREATE SCHEMA _prom_catalog`;
    await db.sql`CREATE TABLE _prom_catalog.migrations (
      version int PRIMARY KEY, description text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`;
    for (const m of MIGRATIONS.filter((m) => m.version < READ_SPEED_MIGRATION.version)) {
      await db.sql.begin(async (tx) => {
        await tx.unsafe(typeof m.sql === "string" ? m.sql : m.sql({ timescaledb: false }));
        await tx`INSERT INTO _prom_catalog.migrations VALUES (${m.version}, ${m.description})`;
      });
    }
    const DAY = 86_400_000;
    const start = Math.floor(Date.now() / DAY) * DAY - 2 * DAY;
    const end = Date.now() - 60_000;
    const data: TestSeries[] = Array.from({ length: 3 }, (_, s) => {
      const times: number[] = [];
      for (let t = start + s * 7; t < end; t += 30_000 + (s === 2 ? (t % 3) : 0)) times.push(t);
      return {
        labels: { __name__: "up_metric", job: "u", instance: `i${s}` },
        times,
        bits: times.map((_, i) =>
          i % 101 === 7
            ? 0x7ff0000000000002n
            : bitsOf(s === 1 ? Math.cos(i) : (i * 7919) % 1000 / 4 - 100)
        ),
      };
    });
    await store(db.sql, data);
    const res = await compact(db.sql);
    assert(res.windows > 50, `compacted ${res.windows} windows`);
    const lo = new Date(start + DAY - 4_321_000).toISOString();
    const hi = new Date(start + 2 * DAY + 1_234_000).toISOString();
    const snapshot = async () => ({
      view: await readView(db.sql, "up_metric"),
      ranged: await readView(db.sql, "up_metric", `time >= '${lo}' AND time <= '${hi}'`),
      fn: (await db.sql<{ r: string }[]>`
        SELECT s.id || ' ' || floor(extract(epoch FROM x.time) * 1000)::int8 || ' ' ||
          encode(float8send(x.value), 'hex') AS r
        FROM _prom_catalog.series s
        CROSS JOIN LATERAL _prom_catalog.series_samples(s.id, ${lo}, ${hi}) x
        ORDER BY s.id, x.time`).map((r) => r.r),
      all: (await db.sql<{ d: string; n: number }[]>`
        SELECT md5(string_agg(series_id || ' ' || floor(extract(epoch FROM time) * 1000)::int8
          || ' ' || encode(float8send(value), 'hex'), ',' ORDER BY series_id, time)) AS d,
          count(*)::int AS n
        FROM _prom_data.all_samples`)[0],
      remote: (await runQueries([{
        startMs: Date.parse(lo),
        endMs: Date.parse(hi),
        matchers: [{ type: "=", name: "__name__", value: "up_metric" }],
      }], { sql: db.sql, maxSamples: 10_000_000 })).results[0].map((s) =>
        `${JSON.stringify(s.labels)} ${Array.from(s.timestamps).join(",")} ${hex8(s.valuesBE)}`
      ),
    });
    const before = await snapshot();
    assertEquals(before.all.n, data.reduce((a, s) => a + s.times.length, 0));
    await setup(db.sql);
    const [{ v }] = await db.sql<{ v: number }[]>`
      SELECT max(version)::int AS v FROM _prom_catalog.migrations`;
    assert(v >= READ_SPEED_MIGRATION.version);
    const after = await snapshot();
    assertSameRows(after.view, before.view, "view");
    assertSameRows(after.ranged, before.ranged, "view with a time range");
    assertSameRows(after.fn, before.fn, "series_samples()");
    assertEquals(after.all, before.all, "all_samples");
    assertSameRows(after.remote, before.remote, "remote read");
    // metric_samples() is the view with the range.
    const m = await db.sql<{ l: string; t: string; v: string }[]>`
      SELECT labels::text AS l, floor(extract(epoch FROM time) * 1000)::int8::text AS t,
        encode(float8send(value), 'hex') AS v
      FROM prom_api.metric_samples('up_metric', ${lo}, ${hi}) ORDER BY series_id, time`;
    assertSameRows(m.map((r) => [r.l, r.t, r.v]), before.ranged, "metric_samples()");
  } finally {
    await db.drop();
  }
});

function hex8(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
