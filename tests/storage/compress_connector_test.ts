/**
 * The connector compacts by itself: a real connector process (main.ts,
 * spawned as users run it) compacts sealed data older than
 * `--storage.compress-after` with no call from the test, and does not
 * with `--storage.compress-after 0`.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, type Service, startConnector } from "../helpers/procs.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { forms, readView } from "./compress_helpers.ts";

const DAY = 86_400_000;
/** A sealed day (its partition ended days ago). */
const D = Math.floor(Date.now() / DAY) * DAY - 4 * DAY;

async function post(svc: Service, instance: string, from: number): Promise<void> {
  const res = await fetch(`${svc.url}/write`, {
    method: "POST",
    headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
    body: writeRequestBody([{
      labels: { __name__: "auto_compact", job: "j", instance },
      samples: Array.from({ length: 240 }, (_, i) => ({
        value: i * 0.5,
        timestamp: D + (from + i) * 15_000,
      })),
    }]) as Uint8Array<ArrayBuffer>,
  });
  assertEquals(res.status, 204, await res.text());
}

Deno.test("the connector compacts sealed data by itself, and not with --storage.compress-after 0", async () => {
  const db = await freshDatabase("compress_connector");
  try {
    // Off: nothing is compacted, however long it runs. 4 s is four passes
    // of a connector with a 4 s delay (a pass every second, see below).
    let svc = await startConnector({ dbUri: db.uri, args: ["--storage.compress-after", "0"] });
    await post(svc, "a", 0);
    await post(svc, "b", 0);
    await new Promise((r) => setTimeout(r, 4_000));
    assertEquals(await forms(db.sql), { rows: 480, windows: 0 }, "compactor off");
    const before = await readView(db.sql, "auto_compact");
    await svc.proc.stop(5_000);

    // A 4 s delay: passes every second (a quarter of the delay), the day
    // is sealed, so it is compacted within seconds without any call here.
    svc = await startConnector({ dbUri: db.uri, args: ["--storage.compress-after", "4s"] });
    const deadline = Date.now() + 30_000;
    let f = await forms(db.sql);
    while (f.rows > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      f = await forms(db.sql);
    }
    assertEquals(f, { rows: 0, windows: 2 }, "compacted by the connector's own compactor");
    assertEquals(await readView(db.sql, "auto_compact"), before);
    const [{ parts }] = await db.sql<{ parts: number }[]>`
      SELECT count(*)::int AS parts FROM _prom_catalog.sample_partitions
      WHERE range_start <= ${new Date(D).toISOString()}`;
    assertEquals(parts, 0, "its partition was dropped");

    // A late write into the compacted day: the connector makes the
    // partition again and a later pass of its own merges the sample.
    await post(svc, "a", 1_000);
    const late = Date.now() + 30_000;
    f = await forms(db.sql);
    while (f.rows > 0 && Date.now() < late) {
      await new Promise((r) => setTimeout(r, 250));
      f = await forms(db.sql);
    }
    assertEquals(f.rows, 0, "merged by a later pass");
    const after = await readView(db.sql, "auto_compact");
    assertEquals(after.length, 720);
    assert(after.some(([, t]) => t === String(D + 1_000 * 15_000)));
    await svc.proc.stop(5_000);
  } finally {
    await killAll();
    await db.drop();
  }
});
