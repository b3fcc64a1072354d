/**
 * PgWriter combines the rows of requests that wait for a COPY into one,
 * and gives each request its own outcome when a combined COPY fails.
 * Real PostgreSQL; one fresh database for the file.
 */
import { Gate } from "../../src/storage/db.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { SeriesCache } from "../../src/storage/series_cache.ts";
import { combineCopies, encodeCopy } from "../../src/storage/copy_format.ts";
import { PgWriter } from "../../src/storage/writer.ts";
import type { WriteSeries } from "../../src/ingest.ts";
import { UnavailableError } from "../../src/errors.ts";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";

/** Far enough in the past for a yearly partition (2024). */
const T0 = Date.UTC(2024, 2, 1);

function series(job: string, from: number, count: number): WriteSeries[] {
  const out: WriteSeries[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      labels: [{ name: "__name__", value: "up" }, { name: "job", value: job }, {
        name: "i",
        value: String(i),
      }].sort((a, b) => a.name < b.name ? -1 : 1),
      timestamps: [T0 + from * 1000],
      values: new Float64Array([from + i / 1000]),
    });
  }
  return out;
}

Deno.test("combineCopies() makes one COPY body of several, rows in order", () => {
  const a = encodeCopy(series("a", 1, 2), [1, 2], 2);
  const b = encodeCopy(series("b", 2, 3), [3, 4, 5], 3);
  const both = encodeCopy([...series("a", 1, 2), ...series("b", 2, 3)], [1, 2, 3, 4, 5], 5);
  assertEquals(combineCopies([a, b]), both);
  assertEquals(combineCopies([a]), a);
});

Deno.test("PgWriter stores waiting requests together and each keeps its own outcome", async () => {
  const db = await freshDatabase("writer_batch");
  try {
    await migrate(db.sql, () => {});
    // One COPY at a time: while it runs, the next requests queue and share one.
    const writer = new PgWriter(db.sql, new Gate(8, 64, 10_000), new SeriesCache(1000), {
      maxCopies: 1,
    });
    assertEquals(writer.maxCopies, 1);
    const count = async () =>
      Number((await db.sql`SELECT count(*) AS n FROM _prom_data.samples`)[0].n);

    // Ten requests at once, all new: all stored, none deduplicated.
    const first = await Promise.all(
      Array.from({ length: 10 }, (_, k) => writer.write(series(`job${k}`, 10, 50))),
    );
    assertEquals(first.map((r) => r.samples), Array(10).fill(50));
    assert(writer.copyStatements < 10, `${writer.copyStatements} COPYs for 10 requests`);
    assert(first.every((r) => !r.deduplicated));
    assertEquals(await count(), 500);

    // A retried request (already stored) among new ones: the combined COPY
    // fails on the duplicate; each is then stored on its own, and only the
    // retry reports deduplication. (All series are cached: the four reach
    // the queue at once; the first goes alone, the other three together.)
    const before = writer.copyStatements;
    const again = await Promise.all([
      writer.write(series("job0", 11, 50)),
      writer.write(series("job1", 10, 50)), // the retry
      writer.write(series("job2", 11, 50)),
      writer.write(series("job3", 11, 50)),
    ]);
    assertEquals(again.map((r) => r.deduplicated), [false, true, false, false]);
    // job0; the three combined (refused); job1 (refused, then deduplicated), job2, job3.
    assertEquals(writer.copyStatements - before, 5);
    assertEquals(await count(), 650);

    // A request whose guard refuses is answered 503 and its rows are not sent;
    // the others in its batch are stored.
    const refused = () => {
      throw new UnavailableError("Lease lapsed");
    };
    const results = await Promise.allSettled([
      writer.write(series("job0", 12, 50)),
      writer.write(series("job1", 12, 50), { guard: refused }),
      writer.write(series("job2", 12, 50)),
    ]);
    assertEquals(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    await assertRejects(
      () => writer.write(series("job1", 12, 50), { guard: refused }),
      UnavailableError,
    );
    assertEquals(await count(), 750);
    const [{ n }] = await db.sql`SELECT count(*) AS n FROM _prom_data.samples
                                 WHERE time = ${new Date(T0 + 12_000)}`;
    assertEquals(Number(n), 100);
  } finally {
    await db.drop();
  }
});
