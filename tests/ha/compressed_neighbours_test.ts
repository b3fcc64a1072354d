/**
 * A follower sample for a time already compacted (a replica more than
 * `--storage.compress-after` behind) is judged against the leader's
 * compressed samples: copies are dropped, and only the round the leader
 * lacks is filled (migration 15). Real PostgreSQL, the real compactor.
 */
import { assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { PgLeaseStore } from "../../src/ha/lease_store.ts";
import { bitsOf, compact, forms, setup, store } from "../storage/compress_helpers.ts";

const timings = { leaseTimeoutMs: 60_000, leaseRefreshMs: 10_000, failoverTimeoutMs: 30_000 };
const LABELS = { __name__: "up", cluster: "c1", job: "node" };
const STEP = 15_000;
/** 10:00 UTC three days ago: in a sealed partition the compactor takes. */
const T0 = (() => {
  const d = new Date(Date.now() - 3 * 86_400_000);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), 10);
})();

Deno.test("ha_reconcile() judges a follower sample of a compacted time by the compressed leader samples", async () => {
  const db = await freshDatabase("ha_compressed");
  try {
    await setup(db.sql);
    // The leader: 121 rounds at 15 s, all but the one at +10 min.
    const missing = T0 + 600_000;
    const leader = Array.from({ length: 121 }, (_, i) => T0 + i * STEP).filter((t) =>
      t !== missing
    );
    const [sid] = await store(db.sql, [{
      labels: LABELS,
      times: leader,
      bits: leader.map(() => bitsOf(1)),
    }]);
    const pass = await compact(db.sql);
    assertEquals(pass.samples, leader.length);
    assertEquals((await forms(db.sql)).rows, 0, "the leader's samples are compressed only");

    // The follower, 7 s out of phase and late by days, had every round.
    const follower = Array.from({ length: 121 }, (_, i) => T0 + i * STEP + 7_000);
    const iso = follower.map((t) => new Date(t).toISOString());
    await db.sql`SELECT _prom_catalog.ensure_partitions(${iso}::timestamptz[])`;
    await db.sql`INSERT INTO _prom_data.ha_stage (series_id, time, value, staged_at)
                 SELECT ${sid}, t, 2, now() - interval '10 seconds'
                 FROM unnest(${iso}::timestamptz[]) t`;

    const lease = new PgLeaseStore(db.sql, timings, "cluster");
    const r = await lease.reconcile({
      settleMs: 0,
      giveUpMs: 0,
      maxRows: 1000,
      keepFilledMs: 600_000,
    });
    assertEquals(r, { decided: 121, filled: 1, waiting: 0, undone: 0 });

    // Every round once: the leader's 120 and the follower's one in the gap.
    const stored = await db.sql<{ t: Date; v: number }[]>`
      SELECT time AS t, value AS v FROM _prom_data.all_samples WHERE series_id = ${sid} ORDER BY time`;
    assertEquals(stored.length, 121);
    const fills = stored.filter((s) => s.v === 2).map((s) => s.t.getTime() - T0);
    assertEquals(fills, [600_000 + 7_000]);
    const [{ iv }] = await db.sql<{ iv: number }[]>`
      SELECT interval_ms AS iv FROM _prom_data.ha_series_interval WHERE series_id = ${sid}`;
    assertEquals(iv, STEP, "the interval is measured on the compressed samples");
  } finally {
    await db.drop();
  }
});
