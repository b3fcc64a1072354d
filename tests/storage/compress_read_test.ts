/**
 * Both forms read the same: the views, `series_samples()`,
 * `prom_api.metric_samples()` and remote read's SQL return exactly the
 * same samples, bit for bit, before and after compaction, over ranges that
 * cross the boundary between compressed days and today's rows, cut
 * windows or match a window's first and last sample exactly.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { runQueries } from "../../src/remote_read/querier.ts";
import type { ReadQuery } from "../../src/remote_read/decode.ts";
import {
  assertSameRows,
  bitsOf,
  compact,
  forms,
  readView,
  type Sample,
  setup,
  store,
  type TestSeries,
} from "./compress_helpers.ts";
import type { Sql } from "../../deps.ts";
import { type FetchQuery, fetchSeries } from "../../src/promql/fetch_sql.ts";

const DAY = 86_400_000;
const NOW = Date.now();
/** Three days of 1-minute samples ending now: two days compressed, today in rows. */
const START = Math.floor(NOW / DAY) * DAY - 2 * DAY;

function data(): TestSeries[] {
  return Array.from({ length: 4 }, (_, s) => {
    const times: number[] = [];
    for (let t = START + s * 1000; t < NOW - 60_000; t += 60_000) times.push(t);
    return {
      labels: { __name__: "read_metric", job: "r", instance: `n${s}`, shard: String(s % 2) },
      times,
      bits: times.map((_, i) =>
        i % 97 === 5 ? 0x7ff0000000000002n : bitsOf(s === 3 ? Math.sqrt(i) : i * 0.5 + s)
      ),
    };
  });
}

/** Remote read of `q`, flattened to comparable rows. */
async function remote(sql: Sql, q: ReadQuery): Promise<string[]> {
  const { results } = await runQueries([q], { sql, maxSamples: 10_000_000 });
  const out: string[] = [];
  for (const s of results[0]) {
    const label = s.labels.map((l) => `${l.name}=${l.value}`).join(",");
    for (let i = 0; i < s.timestamps.length; i++) {
      const v = [...s.valuesBE.subarray(i * 8, i * 8 + 8)].map((b) =>
        b.toString(16).padStart(2, "0")
      ).join("");
      out.push(`${label} ${s.timestamps[i]} ${v}`);
    }
  }
  return out;
}

async function fnRead(sql: Sql, lo: number, hi: number): Promise<string[]> {
  const rows = await sql<{ r: string }[]>`
    SELECT s.id || ' ' || floor(extract(epoch FROM x.time) * 1000)::int8 || ' ' ||
      encode(float8send(x.value), 'hex') AS r
    FROM _prom_catalog.series s
    CROSS JOIN LATERAL _prom_catalog.series_samples(s.id, ${new Date(lo).toISOString()},
      ${new Date(hi).toISOString()}) x
    ORDER BY s.id, x.time`;
  return rows.map((r) => r.r);
}

/** metric_samples() of read_metric in [lo, hi], as readView() gives rows. */
async function metricRead(sql: Sql, lo: number, hi: number): Promise<Sample[]> {
  const rows = await sql<{ l: string; t: string; v: string }[]>`
    SELECT labels::text AS l, floor(extract(epoch FROM time) * 1000)::int8::text AS t,
      encode(float8send(value), 'hex') AS v
    FROM prom_api.metric_samples('read_metric', ${new Date(lo).toISOString()},
      ${new Date(hi).toISOString()})
    ORDER BY series_id, time`;
  return rows.map((r): Sample => [r.l, r.t, r.v]);
}

Deno.test("views, series_samples(), metric_samples() and remote read return the same samples before and after compaction", async () => {
  const db = await freshDatabase("compress_read");
  try {
    await setup(db.sql);
    await store(db.sql, data());
    const ranges: [number, number][] = [
      [START - DAY, NOW + DAY], // everything
      [START + DAY - 3_600_000, START + 2 * DAY + 3_600_000], // across both boundaries
      [START + 10 * 60_000 + 500, START + 10 * 60_000 + 1500], // one sample, inside a day
      [START + DAY / 2 + 30_000, START + DAY / 2 + 30_000], // an instant with no sample
      // Series 0's window 02:00-04:00, first to last sample (the other series' cut).
      [START + 7_200_000, START + 14_400_000 - 60_000],
      [START + 7_200_000 + 1, START + 5 * 7_200_000 - 1], // cutting windows at both ends
    ];
    const queries: ReadQuery[] = ranges.flatMap(([lo, hi]) => [
      { startMs: lo, endMs: hi, matchers: [{ type: "=", name: "__name__", value: "read_metric" }] },
      {
        startMs: lo,
        endMs: hi,
        matchers: [
          { type: "=", name: "__name__", value: "read_metric" },
          { type: "=", name: "shard", value: "1" },
        ],
      },
    ]);
    const wheres = ranges.map(([lo, hi]) =>
      `time >= '${new Date(lo).toISOString()}' AND time <= '${new Date(hi).toISOString()}'`
    );
    const snapshot = async () => ({
      view: await readView(db.sql, "read_metric"),
      ranged: await Promise.all(wheres.map((w) => readView(db.sql, "read_metric", w))),
      fn: await Promise.all(ranges.map(([lo, hi]) => fnRead(db.sql, lo, hi))),
      metric: await Promise.all(ranges.map(([lo, hi]) => metricRead(db.sql, lo, hi))),
      remote: await Promise.all(queries.map((q) => remote(db.sql, q))),
    });
    const before = await snapshot();
    assert(before.view.length > 4000);
    assertEquals(before.ranged[2].length, 1);
    assertEquals(before.ranged[3].length, 0);
    // metric_samples() is the view with the range.
    before.metric.forEach((r, i) => assertSameRows(r, before.ranged[i], `metric_samples(), ${i}`));

    const res = await compact(db.sql);
    assertEquals(res.windows, 96, "two sealed days × 12 windows × four series");
    const f = await forms(db.sql);
    assert(f.rows > 0 && f.rows < before.view.length / 2, `today stays rows: ${f.rows}`);
    const after = await snapshot();
    assertSameRows(after.view, before.view, "view");
    before.ranged.forEach((r, i) => assertSameRows(after.ranged[i], r, `view, range ${i}`));
    before.fn.forEach((r, i) => assertSameRows(after.fn[i], r, `series_samples(), range ${i}`));
    before.metric.forEach((r, i) =>
      assertSameRows(after.metric[i], r, `metric_samples(), range ${i}`)
    );
    before.remote.forEach((r, i) => assertSameRows(after.remote[i], r, `remote read, query ${i}`));
  } finally {
    await db.drop();
  }
});

/** Every shape of window: hostile values, irregular and raw, integers near 2^53. */
function shapes(): TestSeries[] {
  const hostile = [
    0x7ff0000000000002n, // staleness marker
    0x7ff8000000000001n, // a NaN with a payload
    0xfff8000000000000n, // negative NaN
    bitsOf(Infinity),
    bitsOf(-Infinity),
    0x8000000000000000n, // -0
    1n, // the smallest subnormal
    0x000fffffffffffffn, // the largest subnormal
  ];
  const regular: number[] = [];
  for (let t = START; t < NOW - 60_000; t += 60_000) regular.push(t);
  const irregular: number[] = [];
  for (let t = START + 7, i = 0; t < NOW - 60_000; i++) {
    irregular.push(t);
    t += 15_000 + (i % 7 === 3 ? 1_234 : i % 5) + (i % 211 === 0 ? 600_000 : 0);
  }
  return [
    {
      labels: { __name__: "shape_metric", kind: "scaled" },
      times: regular,
      bits: regular.map((_, i) => i % 61 === 7 ? hostile[(i / 61 | 0) % 8] : bitsOf(i * 0.25 - 90)),
    },
    {
      labels: { __name__: "shape_metric", kind: "raw" },
      times: irregular,
      bits: irregular.map((_, i) =>
        i % 89 === 1 ? hostile[(i / 89 | 0) % 8] : bitsOf(Math.sqrt(i + 2) * Math.PI)
      ),
    },
    {
      labels: { __name__: "shape_metric", kind: "big" },
      times: regular,
      bits: regular.map((_, i) => bitsOf(2 ** 53 - 1 - (i % 1000) * 3)),
    },
    {
      labels: { __name__: "shape_metric", kind: "constant" },
      times: irregular,
      bits: irregular.map(() => bitsOf(1)),
    },
  ];
}

/** Every sample fetchSeries() returns, as comparable rows (series sorted). */
async function promqlRead(sql: Sql, q: FetchQuery): Promise<string[]> {
  const [list] = await fetchSeries([q], { sql, maxSamples: 1e9, parallel: 2 });
  const out: string[] = [];
  for (const s of list) {
    const label = s.labels.map((l) => `${l.name}=${l.value}`).join(",");
    for (let i = 0; i < s.timestamps.length; i++) {
      const v = [...s.valuesBE.subarray(i * 8, i * 8 + 8)].map((b) =>
        b.toString(16).padStart(2, "0")
      ).join("");
      out.push(`${label} ${s.timestamps[i]} ${v}`);
    }
  }
  return out.sort();
}

Deno.test("remote read and PromQL's fetch over compressed windows equal them over the same data as rows, bit for bit, late rows included", async () => {
  const rowsDb = await freshDatabase("compress_read_rows");
  const compDb = await freshDatabase("compress_read_comp");
  try {
    const all = shapes();
    // Late rows, written after compaction: at times between compressed
    // samples (shown), and copies of compressed samples with another value
    // (hidden: the compressed one wins).
    const lateTimes = [START + 30_000, START + DAY + 7_200_000 - 30_000, START + 2 * DAY - 1];
    const late: TestSeries[] = all.map((s) => ({
      labels: s.labels,
      times: lateTimes,
      bits: lateTimes.map((_, i) => bitsOf(-1000 - i)),
    }));
    const copies: TestSeries[] = all.map((s) => ({
      labels: s.labels,
      times: [s.times[3], s.times[500], s.times[1500]],
      bits: [bitsOf(7), bitsOf(8), bitsOf(9)],
    }));
    for (const db of [rowsDb, compDb]) await setup(db.sql);
    const ids = await store(rowsDb.sql, all);
    await store(compDb.sql, all);
    const res = await compact(compDb.sql);
    assert(res.windows >= 4 * 24, `windows: ${res.windows}`);
    for (const db of [rowsDb, compDb]) await store(db.sql, late);
    await store(compDb.sql, copies);
    // A row a half millisecond after a compressed sample ("raw"): not a
    // copy, and only microseconds order the two (the decoder leaves that
    // series to series_samples).
    const half = new Date(all[1].times[800]).toISOString().replace("Z", "500Z");
    for (const db of [rowsDb, compDb]) {
      await db.sql`INSERT INTO _prom_data.samples VALUES (${
        ids[1]
      }, ${half}::text::timestamptz, 42.5)`;
    }
    const f = await forms(compDb.sql);
    assert(f.windows >= 96, `windows: ${f.windows}`);

    const w = 7_200_000;
    const ranges: [number, number][] = [
      [START - DAY, NOW + DAY], // everything
      [START + DAY - 3_600_000, START + 2 * DAY + 3_600_000], // across both boundaries
      [START + w, START + 2 * w - 60_000], // one window, its first to last sample
      [START + w + 1, START + 5 * w - 1], // cutting windows at both ends
      [START + 3 * w + 60_000, START + 3 * w + 60_000], // an instant on a sample
      [START + 30_000, START + 30_000], // only a late row
      [all[1].times[800], all[1].times[800]], // the sample and the half-ms row after it
    ];
    for (const [lo, hi] of ranges) {
      const q: ReadQuery = {
        startMs: lo,
        endMs: hi,
        matchers: [{ type: "=", name: "__name__", value: "shape_metric" }],
      };
      const expected = await remote(rowsDb.sql, q);
      const got = await remote(compDb.sql, q);
      assertSameRows(got, expected, `remote read [${lo}, ${hi}]`);
      assertEquals(got.length, expected.length);
      const grids: (FetchQuery["grid"] | undefined)[] = [
        undefined,
        { anchorMs: lo + 17, stepMs: 300_000, widthMs: 60_000 },
        { anchorMs: hi, stepMs: 3_600_000, widthMs: 1_000 },
      ];
      for (const grid of grids) {
        const fq: FetchQuery = { ...q, grid };
        assertSameRows(
          await promqlRead(compDb.sql, fq),
          await promqlRead(rowsDb.sql, fq),
          `PromQL fetch [${lo}, ${hi}] grid ${JSON.stringify(grid)}`,
        );
      }
    }
    // The limit counts the same samples.
    const q: ReadQuery = {
      startMs: START,
      endMs: START + DAY,
      matchers: [{ type: "=", name: "__name__", value: "shape_metric" }],
    };
    const n = (await remote(rowsDb.sql, q)).length;
    for (const db of [rowsDb, compDb]) {
      const ok = await runQueries([q], { sql: db.sql, maxSamples: n });
      assertEquals(ok.samples, n);
      const err = await runQueries([q], { sql: db.sql, maxSamples: n - 1 }).then(
        () => null,
        (e) => e,
      );
      assertEquals(err?.status, 413);
    }
  } finally {
    await rowsDb.drop();
    await compDb.drop();
  }
});
