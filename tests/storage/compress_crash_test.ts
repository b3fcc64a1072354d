/**
 * kill -9 of a compacting process loses and doubles nothing: a real
 * process runs the compactor and is killed inside a batch's transaction,
 * or inside a partition's final transaction (late rows merged, DROP
 * next); every sample reads back once, bit for bit, right after the kill
 * and after a later pass finishes the job.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, REPO_ROOT, spawnProcess } from "../helpers/procs.ts";
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
import type { Sql } from "../../deps.ts";

const DAY = 86_400_000;
const D = Math.floor(Date.now() / DAY) * DAY - 4 * DAY;

/** Six series of 300 samples, a NaN with a payload in each. */
function series(): TestSeries[] {
  return Array.from({ length: 6 }, (_, s) => {
    const times = Array.from({ length: 300 }, (_, i) => D + i * 15_000 + s);
    return {
      labels: { __name__: "crash_metric", job: "j", instance: `i${s}` },
      times,
      bits: times.map((_, i) => i === 150 ? 0x7ff0000000000002n : bitsOf(s * 1000 + i * 0.25)),
    };
  });
}

/** Samples as readers count them (each form, hidden copies left out). */
async function readable(sql: Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM _prom_data.all_samples`;
  return n;
}

/** Runs tests/storage/compact_child.ts and kills it with SIGKILL once it holds. */
async function killWhenHolding(args: string[]): Promise<string> {
  const child = spawnProcess("compactor", Deno.execPath(), [
    "run",
    "-A",
    `${REPO_ROOT}/tests/storage/compact_child.ts`,
    ...args,
  ]);
  const deadline = Date.now() + 60_000;
  while (!child.output().includes("holding")) {
    assert(!child.exited, `compactor exited early:\n${child.output()}`);
    assert(Date.now() < deadline, `compactor never held:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill9();
  await child.wait();
  return child.output();
}

/** A pass once the killed session's advisory lock is gone (the server notices the close). */
async function compactAfterKill(sql: Sql) {
  let res = await compact(sql);
  for (let i = 0; !res.ran && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    res = await compact(sql);
  }
  assert(res.ran);
  return res;
}

Deno.test("kill -9 inside a compaction batch loses and doubles nothing", async () => {
  const db = await freshDatabase("compress_crash");
  try {
    await setup(db.sql);
    const ids = await store(db.sql, series());
    const before = await readView(db.sql, "crash_metric");
    assertEquals(before.length, 1800);

    const out = await killWhenHolding([db.uri, "3"]);
    // Batch 3 has read its rows and written its window, uncommitted.
    assert(out.includes("batch 2") && !out.includes("batch 3"), out);

    assertEquals(await forms(db.sql), { rows: 1800, windows: 2 }, "rows stay until the drop");
    const [prog] = await db.sql<{ after: number }[]>`
      SELECT after_series::int AS after FROM _prom_catalog.compress_progress`;
    const sorted = [...ids].sort((a, b) => a - b);
    assertEquals(prog.after, sorted[1], "progress: the two committed batches (series order)");
    assertEquals(await readable(db.sql), 1800, "each sample once: the compressed copies hide rows");
    assertEquals(await readView(db.sql, "crash_metric"), before);

    const res = await compactAfterKill(db.sql);
    assertEquals(res.samples, 1200, "the pass goes on from the third series");
    assertEquals(res.droppedPartitions.length, 1);
    assertEquals(await forms(db.sql), { rows: 0, windows: 6 });
    assertEquals(await readable(db.sql), 1800);
    assertEquals(await readView(db.sql, "crash_metric"), before);
    const [{ left }] = await db.sql<{ left: number }[]>`
      SELECT count(*)::int AS left FROM _prom_catalog.compress_progress`;
    assertEquals(left, 0);
  } finally {
    await killAll();
    await db.drop();
  }
});

Deno.test("kill -9 in the final step, late rows merged and the DROP next, loses and doubles nothing", async () => {
  const db = await freshDatabase("compress_crash_drop");
  try {
    await setup(db.sql);
    const all = series();
    const ids = await store(db.sql, all);
    const before = await readView(db.sql, "crash_metric");
    // Written while batch 6 is open, for series 1 (compressed by batch 1):
    // a new sample between two stored ones, and a copy of a stored time
    // with another value (the row is still there: its key keeps it out).
    const newMs = all[0].times[20] + 5_000;
    const late = [[ids[0], newMs, 0.125], [ids[0], all[0].times[40], -7]];
    const expected: Sample[] = [...before];
    const at = before.findIndex(([l, t]) => l.includes('"i0"') && t === String(all[0].times[20]));
    assert(at >= 0);
    expected.splice(at + 1, 0, [before[at][0], String(newMs), hex(bitsOf(0.125))]);

    const out = await killWhenHolding([db.uri, "drop", "6", JSON.stringify(late)]);
    assert(out.includes("late rows stored") && out.includes("batch 6"), out);

    assertEquals(await forms(db.sql), { rows: 1801, windows: 6 }, "the DROP was rolled back");
    assertEquals(await readable(db.sql), 1801, "the late sample once");
    assertEquals(await readView(db.sql, "crash_metric"), expected);

    const res = await compactAfterKill(db.sql);
    assertEquals(res.samples, 1, "the late sample is merged");
    assertEquals(res.droppedPartitions.length, 1);
    assertEquals(await forms(db.sql), { rows: 0, windows: 6 });
    assertEquals(await readable(db.sql), 1801);
    assertEquals(await readView(db.sql, "crash_metric"), expected);
    const [{ total }] = await db.sql<{ total: number }[]>`
      SELECT sum(n)::int AS total FROM _prom_data.compressed`;
    assertEquals(total, 1801);
  } finally {
    await killAll();
    await db.drop();
  }
});
