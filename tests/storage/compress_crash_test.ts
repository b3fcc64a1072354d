/**
 * kill -9 of a compacting process loses and doubles nothing: a real
 * process runs the compactor and is killed inside a batch's transaction
 * (after two batches committed); every sample reads back once, bit for
 * bit, before and after a later pass finishes the job.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, REPO_ROOT, spawnProcess } from "../helpers/procs.ts";
import {
  bitsOf,
  compact,
  forms,
  readView,
  setup,
  store,
  type TestSeries,
} from "./compress_helpers.ts";

const DAY = 86_400_000;
const D = Math.floor(Date.now() / DAY) * DAY - 4 * DAY;

async function stored(sql: Parameters<typeof forms>[0]): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    SELECT ((SELECT count(*) FROM _prom_data.samples) +
            (SELECT coalesce(sum(n), 0) FROM _prom_data.compressed))::int AS n`;
  return n;
}

Deno.test("kill -9 inside a compaction batch loses and doubles nothing", async () => {
  const db = await freshDatabase("compress_crash");
  try {
    await setup(db.sql);
    const all: TestSeries[] = Array.from({ length: 6 }, (_, s) => {
      const times = Array.from({ length: 300 }, (_, i) => D + i * 15_000 + s);
      return {
        labels: { __name__: "crash_metric", job: "j", instance: `i${s}` },
        times,
        bits: times.map((_, i) => i === 150 ? 0x7ff0000000000002n : bitsOf(s * 1000 + i * 0.25)),
      };
    });
    await store(db.sql, all);
    const before = await readView(db.sql, "crash_metric");
    assertEquals(before.length, 1800);

    const child = spawnProcess("compactor", Deno.execPath(), [
      "run",
      "-A",
      `${REPO_ROOT}/tests/storage/compact_child.ts`,
      db.uri,
      "3",
    ]);
    const deadline = Date.now() + 60_000;
    while (!child.output().includes("holding")) {
      assert(!child.exited, `compactor exited early:\n${child.output()}`);
      assert(Date.now() < deadline, `compactor never reached batch 3:\n${child.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Batch 3 has deleted its rows and inserted its window, uncommitted.
    child.kill9();
    await child.wait();
    assert(child.output().includes("batch 2"));

    const mid = await forms(db.sql);
    assertEquals(mid.windows, 2, "the two committed batches");
    assertEquals(mid.rows, 1200, "the killed batch's rows are back");
    assertEquals(await stored(db.sql), 1800, "nothing lost or doubled in storage");
    assertEquals(await readView(db.sql, "crash_metric"), before);

    // The advisory lock dies with the session (once the server has seen
    // the connection close): a later pass finishes.
    let res = await compact(db.sql);
    for (let i = 0; !res.ran && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      res = await compact(db.sql);
    }
    assert(res.ran);
    assertEquals(res.samples, 1200);
    assertEquals(await forms(db.sql), { rows: 0, windows: 6 });
    assertEquals(await stored(db.sql), 1800);
    assertEquals(await readView(db.sql, "crash_metric"), before);
  } finally {
    await killAll();
    await db.drop();
  }
});
