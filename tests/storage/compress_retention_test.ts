/**
 * Retention deletes compressed windows too: whole windows whose newest
 * sample is older than the metric's retention (the default or its own),
 * and nothing newer; rows of the same age went with their partitions.
 */
import { assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { RetentionJob } from "../../src/storage/retention.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { bitsOf, compact, readView, setup, store, type TestSeries } from "./compress_helpers.ts";

const DAY = 86_400_000;
const TODAY = Math.floor(Date.now() / DAY) * DAY;

function series(metric: string, daysAgo: number[]): TestSeries {
  const times = daysAgo.flatMap((d) =>
    Array.from({ length: 10 }, (_, i) => TODAY - d * DAY + 3_600_000 + i * 60_000)
  );
  return { labels: { __name__: metric, job: "ret" }, times, bits: times.map((_, i) => bitsOf(i)) };
}

Deno.test("retention deletes expired compressed windows, per metric", async () => {
  const db = await freshDatabase("compress_retention");
  try {
    await setup(db.sql);
    await store(db.sql, [series("ret_default", [10, 5, 1]), series("ret_short", [10, 5, 1])]);
    await compact(db.sql);
    await db.sql`SELECT prom_api.set_default_retention_period(interval '7 days')`;
    await db.sql`SELECT prom_api.set_metric_retention_period('ret_short', interval '3 days')`;
    // A late row in an expired, compacted day: its partition is expired too.
    await store(db.sql, [{
      ...series("ret_default", [10]),
      times: [TODAY - 10 * DAY + 30_000],
      bits: [1n],
    }]);
    const res = await new RetentionJob({ sql: db.sql, log: silentLogger, deleteBatch: 1 })
      .runOnce();
    assertEquals(res.ran, true);
    const days = async (metric: string) =>
      [...new Set((await readView(db.sql, metric)).map((r) => Math.floor(Number(r[1]) / DAY)))]
        .map((d) => (TODAY / DAY) - d);
    assertEquals(await days("ret_default"), [5, 1]);
    assertEquals(await days("ret_short"), [1]);
    const [{ n }] = await db.sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM _prom_data.compressed`;
    assertEquals(n, 3);
  } finally {
    await db.drop();
  }
});

Deno.test("prom_api.drop_metric() drops the metric's compressed windows too", async () => {
  const db = await freshDatabase("compress_drop_metric");
  try {
    await setup(db.sql);
    await store(db.sql, [series("dropped", [3, 2]), series("kept", [3, 2])]);
    await compact(db.sql);
    await db.sql`SELECT prom_api.drop_metric('dropped')`;
    const rows = await db.sql<{ metric_name: string; n: number }[]>`
      SELECT s.metric_name, count(*)::int AS n FROM _prom_data.compressed c
      JOIN _prom_catalog.series s ON s.id = c.series_id GROUP BY 1`;
    assertEquals([...rows], [{ metric_name: "kept", n: 2 }]);
    const [{ n }] = await db.sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM _prom_data.compressed`;
    assertEquals(n, 2, "no orphaned windows");
  } finally {
    await db.drop();
  }
});
