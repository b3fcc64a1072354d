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
