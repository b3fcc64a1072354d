/**
 * Late writes into compressed windows: a sample arriving after its window
 * was compacted lands in the rows, is read exactly once through the views
 * (a copy of a compressed sample is hidden: the first one stored wins, as
 * for rows), and the next pass merges it. The real write path (the
 * connector, whose partition the compactor dropped) stores it too.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import {
  bitsOf,
  compact,
  forms,
  hex,
  readView,
  type Sample,
  setup,
  store,
  type TestSeries,
} from "./compress_helpers.ts";
import { Compactor } from "../../src/storage/compactor.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const DAY = 86_400_000;
/** A day well in the past (sealed) but within the daily partitions' 60 days. */
const D = Math.floor(Date.now() / DAY) * DAY - 5 * DAY;

Deno.test("a late sample for a compacted window is read once and merged by the next pass", async () => {
  const db = await freshDatabase("compress_late");
  try {
    await setup(db.sql);
    const labels = { __name__: "late_metric", job: "j", instance: "a" };
    const times = Array.from({ length: 200 }, (_, i) => D + 3_600_000 + i * 15_000);
    const s: TestSeries = { labels, times, bits: times.map((_, i) => bitsOf(100 + i)) };
    await store(db.sql, [s]);
    const before = await readView(db.sql, "late_metric");
    assertEquals((await compact(db.sql)).samples, 200);
    assertEquals(await forms(db.sql), { rows: 0, windows: 1 });

    // A copy of a compressed sample with another value (must be hidden),
    // a new sample between two compressed ones, and one in a new window.
    const late: TestSeries = {
      labels,
      times: [times[10], times[10] + 7_000, D + 2 * DAY / 3 + DAY],
      bits: [bitsOf(-1), 0x7ff0000000000002n, bitsOf(42)],
    };
    await store(db.sql, [late]);
    const expected = [...before];
    const row = (t: number, b: bigint): Sample => [before[0][0], String(t), hex(b)];
    expected.splice(11, 0, row(times[10] + 7_000, 0x7ff0000000000002n));
    expected.push(row(D + 2 * DAY / 3 + DAY, bitsOf(42)));
    assertEquals(await readView(db.sql, "late_metric"), expected, "before the merge");
    const [{ n }] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM prom_metric.late_metric WHERE time >= ${
      new Date(D).toISOString()
    }`;
    assertEquals(n, 202);

    const res = await compact(db.sql);
    assertEquals(res.samples, 3, "the three late rows are taken");
    assertEquals(await forms(db.sql), { rows: 0, windows: 2 });
    assertEquals(await readView(db.sql, "late_metric"), expected, "after the merge");
    const [{ total }] = await db.sql<{ total: number }[]>`
      SELECT sum(n)::int AS total FROM _prom_data.compressed`;
    assertEquals(total, 202, "the hidden copy was dropped by the merge");
  } finally {
    await db.drop();
  }
});

Deno.test("the connector stores a late write into a window whose partition was compacted", async () => {
  const db = await freshDatabase("compress_late_conn");
  const c = await inProcessConnector(db.uri, [], { pool: 4 });
  try {
    const post = async (samples: { value: number; timestamp: number }[]) => {
      const res = await fetch(`${c.url}/write`, {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: writeRequestBody([{
          labels: { __name__: "conn_late", job: "x" },
          samples,
        }]) as Uint8Array<
          ArrayBuffer
        >,
      });
      assertEquals(res.status, 204, await res.text());
    };
    await post(Array.from({ length: 100 }, (_, i) => ({ value: i, timestamp: D + i * 15_000 })));
    assertEquals((await compact(db.sql)).droppedPartitions.length, 1);
    // The connector's cached partition is gone: it must find out and make it again.
    await post([{ value: 0.5, timestamp: D + 7_500 }, { value: 99, timestamp: D + 15_000 }]);
    const got = await readView(db.sql, "conn_late");
    assertEquals(got.length, 101);
    assertEquals(got[1][2], hex(bitsOf(0.5)));
    assertEquals(got[2][2], hex(bitsOf(1)), "the compressed sample wins over a later copy");
    await compact(db.sql);
    assertEquals(await readView(db.sql, "conn_late"), got);
    assertEquals((await forms(db.sql)).rows, 0);
  } finally {
    await c.stop();
    await db.drop();
  }
});

Deno.test("series with native histograms stay rows, so their histograms survive", async () => {
  const db = await freshDatabase("compress_histogram");
  try {
    await setup(db.sql);
    const t = D + 3_600_000;
    const [hist, plain] = await store(db.sql, [
      {
        labels: { __name__: "h_metric", job: "h" },
        times: [t, t + 15_000],
        bits: [bitsOf(3), bitsOf(4)],
      },
      {
        labels: { __name__: "f_metric", job: "h" },
        times: [t, t + 15_000],
        bits: [bitsOf(1), bitsOf(2)],
      },
    ]);
    await db.sql`
      INSERT INTO _prom_data.histogram_samples (series_id, time, is_float, schema, reset_hint,
        count, sum, zero_threshold, zero_count, positive_spans, positive_counts, negative_spans,
        negative_counts, custom_values, received_at)
      SELECT ${hist}, s.time, true, 0, 0, s.value, 1, 0, 0, '{}', '{}', '{}', '{}', '{}',
        now() - interval '1 day'
      FROM _prom_data.samples s WHERE s.series_id = ${hist}`;
    await compact(db.sql);
    const rows = await db.sql<{ series_id: string; n: number }[]>`
      SELECT series_id::text, count(*)::int AS n FROM _prom_data.samples GROUP BY 1`;
    assertEquals(
      [...rows],
      [{ series_id: String(hist), n: 2 }],
      "only the histogram series is rows",
    );
    const [{ w }] = await db.sql<{ w: number }[]>`
      SELECT count(*)::int AS w FROM _prom_data.compressed WHERE series_id = ${plain}`;
    assertEquals(w, 1);
    await db.sql`SELECT _prom_catalog.histogram_gc(interval '1 minute', 1000)`;
    const [{ h }] = await db.sql<{ h: number }[]>`
      SELECT count(*)::int AS h FROM _prom_data.histogram_samples`;
    assertEquals(h, 2, "the bodies keep their presence rows");
  } finally {
    await db.drop();
  }
});

Deno.test("a late row that VACUUM FREEZE reached before the partition's final step is merged, not lost", async () => {
  const db = await freshDatabase("compress_late_frozen");
  try {
    await setup(db.sql);
    const all: TestSeries[] = [0, 1, 2].map((s) => {
      const times = Array.from({ length: 100 }, (_, i) => D + i * 15_000);
      return {
        labels: { __name__: "frozen_metric", job: "j", instance: `i${s}` },
        times,
        bits: times.map((_, i) => bitsOf(s * 100 + i)),
      };
    });
    const ids = await store(db.sql, all);
    // A pass that does every series' batch and stops before the final step.
    let batches = 0;
    const first = new Compactor({
      sql: db.sql,
      log: silentLogger,
      delayMs: 0,
      batchSeries: 1,
      onBatch: () => {
        if (++batches === 3) void first.stop();
      },
    });
    const res1 = await first.runOnce();
    assertEquals([res1.samples, res1.droppedPartitions.length], [300, 0]);
    // A late row for a series already compressed, then every row frozen
    // (the final step finds late rows by their inserting transaction).
    const late = D + 10 * 15_000 + 5_000;
    await db.sql`INSERT INTO _prom_data.samples VALUES (${ids[1]}, ${
      new Date(late).toISOString()
    }, 0.5)`;
    const expected = await readView(db.sql, "frozen_metric");
    assertEquals(expected.length, 301);
    const [part] = await db.sql<{ t: string }[]>`
      SELECT table_name AS t FROM _prom_catalog.sample_partitions`;
    const rel = `_prom_data."${part.t}"`;
    await db.sql.unsafe(`VACUUM (FREEZE) ${rel}`);
    const [{ frozen }] = await db.sql.unsafe<{ frozen: boolean }[]>(
      `SELECT (SELECT relfrozenxid FROM pg_class WHERE oid = '${rel}'::regclass)::text::int8
                > max(xmin::text::int8) AS frozen FROM ${rel}`,
    );
    assert(frozen, "VACUUM FREEZE froze every row, the late one included");

    const res2 = await compact(db.sql);
    assertEquals(res2.samples, 1, "the late row is merged");
    assertEquals(res2.droppedPartitions.length, 1);
    assertEquals(await forms(db.sql), { rows: 0, windows: 3 });
    assertEquals(await readView(db.sql, "frozen_metric"), expected);
    assert(expected.some(([, t]) => t === String(late)));
  } finally {
    await db.drop();
  }
});
