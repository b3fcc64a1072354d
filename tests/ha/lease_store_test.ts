/**
 * The lease SQL functions on the real database: first replica wins under a
 * race, extension, failover exactly when the database's clock says the
 * leader is silent for the timeout, and where the new lease starts.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { PgLeaseStore } from "../../src/ha/lease_store.ts";

const timings = { leaseTimeoutMs: 60_000, leaseRefreshMs: 10_000, failoverTimeoutMs: 30_000 };
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

async function withStore(
  fn: (store: PgLeaseStore, sql: Awaited<ReturnType<typeof freshDatabase>>["sql"]) => Promise<void>,
) {
  const db = await freshDatabase("ha_lease_store");
  try {
    await migrate(db.sql);
    await fn(new PgLeaseStore(db.sql, timings, "cluster"), db.sql);
  } finally {
    await db.drop();
  }
}

/** Makes the database believe the leader was last heard `agoMs` ago. */
async function heardAgo(sql: Awaited<ReturnType<typeof freshDatabase>>["sql"], agoMs: number) {
  await sql`UPDATE _prom_catalog.ha_leases
            SET last_heard = clock_timestamp() - ${`${agoMs} milliseconds`}::interval`;
}

/** Stores samples of one series of cluster `c1` at `times` (ms). */
async function storeSamples(
  sql: Awaited<ReturnType<typeof freshDatabase>>["sql"],
  times: number[],
  metric = "up",
) {
  const labels = JSON.stringify({ __name__: metric, cluster: "c1", job: "node" });
  const [{ series_id }] = await sql<{ series_id: string }[]>`
    SELECT series_id FROM _prom_catalog.get_or_create_series(ARRAY[${labels}::text]::jsonb[])`;
  const iso = times.map((t) => new Date(t).toISOString());
  await sql`SELECT _prom_catalog.ensure_partitions(${iso}::timestamptz[])`;
  await sql`INSERT INTO _prom_data.samples (series_id, time, value)
            SELECT ${series_id}, t, 1 FROM unnest(${iso}::timestamptz[]) t`;
}

Deno.test("update_lease() makes exactly one of many racing replicas the leader", async () => {
  await withStore(async (store, sql) => {
    const rows = await Promise.all(
      Array.from({ length: 12 }, (_, i) => store.updateLease("c1", `r${i}`, T0, T0 + 1000, 0)),
    );
    const leaders = new Set(rows.map((r) => r.leader));
    assertEquals(leaders.size, 1, "every caller sees the same leader");
    const logs = await sql`SELECT * FROM _prom_catalog.ha_leases_logs`;
    assertEquals(logs.length, 1);
  });
});

Deno.test("update_lease() extends the leader's lease and ignores a follower", async () => {
  await withStore(async (store) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    const extended = await store.updateLease("c1", "r1", T0, T0 + 5000, 0);
    assertEquals(extended.maxTime, T0 + 5000);
    assertEquals(extended.until, T0 + 5000 + timings.leaseTimeoutMs);
    const ignored = await store.updateLease("c1", "r2", T0, T0 + 9000, 0);
    assertEquals([ignored.leader, ignored.maxTime], ["r1", T0 + 5000]);
  });
});

Deno.test("try_change_leader() refuses before the failover timeout and hands over after it", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    await heardAgo(sql, timings.failoverTimeoutMs - 2_000);
    const refused = await store.tryChangeLeader("c1", "r2", T0 + 3000);
    assertEquals(refused.leader, "r1");
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const changed = await store.tryChangeLeader("c1", "r2", T0 + 3000);
    assertEquals(changed.leader, "r2");
    assertEquals(changed.start, T0 + 1000 + 1, "right after r1's last sample (no interval known)");
    assert(changed.heardAgeMs < 1_000, "the new leader counts as heard now");
  });
});

Deno.test("try_change_leader() starts at the reported newest sample (or the new leader's earlier time) and re-stages the old leader's samples from the overlap on", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    // A connector wrote two more scrapes but died before reporting them.
    await storeSamples(sql, [T0 - 60_000, T0, T0 + 1000, T0 + 2000, T0 + 3000]);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const changed = await store.tryChangeLeader("c1", "r2", T0 + 5000);
    assertEquals(changed.start, T0 + 1001);
    const logs = await sql<{ leader_name: string; s: Date; u: Date }[]>`
      SELECT leader_name, lease_start AS s, lease_until AS u FROM _prom_catalog.ha_leases_logs
      ORDER BY lease_start`;
    assertEquals(logs.map((l) => [l.leader_name, l.s.getTime(), l.u.getTime()]), [
      ["r1", T0, T0 + 1001],
      ["r2", T0 + 1001, T0 + 1001 + timings.leaseTimeoutMs],
    ]);
    const ms = (rows: { t: Date }[]) => rows.map((r) => r.t.getTime());
    assertEquals(
      ms(await sql<{ t: Date }[]>`SELECT time AS t FROM _prom_data.samples ORDER BY time`),
      [T0 - 60_000],
      "samples from 30 s (the overlap) before the new lease on leave the stored data",
    );
    assertEquals(
      ms(await sql<{ t: Date }[]>`SELECT time AS t FROM _prom_data.ha_stage ORDER BY time`),
      [T0, T0 + 1000, T0 + 2000, T0 + 3000],
      "and are staged, to be reconciled against the new leader's",
    );
    // A hint earlier than the reported newest sample wins.
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const again = await store.tryChangeLeader("c1", "r3", T0 + 500);
    assertEquals(again.start, T0 + 1001, "never before the current lease's start");
  });
});

Deno.test("try_change_leader() waits for fenced writes in flight, and later writes see the new leader", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    // A write of r1 that took its fence and then stalled (GC, SIGSTOP).
    const conn = await sql.reserve();
    try {
      await conn`BEGIN`;
      const [fenced] = await conn`SELECT * FROM _prom_catalog.ha_fence(${["c1"]})`;
      assertEquals(fenced.leader_name, "r1");
      const err = await store.tryChangeLeader("c1", "r2", T0 + 5000).then(() => null, (e) => e);
      assertEquals(err?.code, "55P03", "the takeover gives up after its wait (lock timeout)");
      assertEquals((await store.getLease("c1"))?.leader, "r1");
      await conn`COMMIT`;
    } finally {
      conn.release();
    }
    const changed = await store.tryChangeLeader("c1", "r2", T0 + 5000);
    assertEquals(
      changed.leader,
      "r2",
      "once the stalled write committed, the takeover goes through",
    );
    const [after] = await sql`SELECT * FROM _prom_catalog.ha_fence(${["c1"]})`;
    assertEquals(after.leader_name, "r2", "a later write's fence sees the new leader");
  });
});

/** Stages samples of the series of `storeSamples`, staged `agoMs` ago. */
async function stage(
  sql: Awaited<ReturnType<typeof freshDatabase>>["sql"],
  times: number[],
  agoMs = 10_000,
) {
  const labels = JSON.stringify({ __name__: "up", cluster: "c1", job: "node" });
  const [{ series_id }] = await sql<{ series_id: string }[]>`
    SELECT series_id FROM _prom_catalog.get_or_create_series(ARRAY[${labels}::text]::jsonb[])`;
  const iso = times.map((t) => new Date(t).toISOString());
  await sql`SELECT _prom_catalog.ensure_partitions(${iso}::timestamptz[])`;
  await sql`INSERT INTO _prom_data.ha_stage (series_id, time, value, staged_at)
            SELECT ${series_id}, t, 2, now() - ${`${agoMs} milliseconds`}::interval
            FROM unnest(${iso}::timestamptz[]) t`;
}

const storedTimes = async (sql: Awaited<ReturnType<typeof freshDatabase>>["sql"]) =>
  (await sql<{ t: Date }[]>`SELECT time AS t FROM _prom_data.samples ORDER BY time`)
    .map((r) => r.t.getTime() - T0);

const RECONCILE = { settleMs: 0, giveUpMs: 60_000, maxRows: 1000, keepFilledMs: 600_000 };

Deno.test("ha_reconcile() fills exactly the rounds the stored series lacks and drops the copies", async () => {
  await withStore(async (store, sql) => {
    await storeSamples(sql, [0, 1000, 3000, 4000, 5000].map((t) => T0 + t));
    // The follower, 600 ms out of phase, had every round; its last one is
    // not yet passed by the stored series (it waits).
    await stage(sql, [600, 1600, 2600, 3600, 4600, 5600].map((t) => T0 + t));
    const r = await store.reconcile(RECONCILE);
    assertEquals(r, { decided: 5, filled: 1, waiting: 1, undone: 0 });
    assertEquals(await storedTimes(sql), [0, 1000, 1600, 3000, 4000, 5000]);
    const r2 = await store.reconcile({ ...RECONCILE, giveUpMs: 0 });
    assertEquals([r2.decided, r2.filled], [1, 1], "given up on, the last one fills the gap");
    assertEquals(await storedTimes(sql), [0, 1000, 1600, 3000, 4000, 5000, 5600]);
    const [{ n }] = await sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.ha_stage`;
    assertEquals(Number(n), 0, "the stage is empty");
  });
});

Deno.test("ha_reconcile() undoes a fill that a late leader sample doubles", async () => {
  await withStore(async (store, sql) => {
    await storeSamples(sql, [0, 1000, 2000, 3000].map((t) => T0 + t));
    // The leader lags on this series: after the give-up the follower's
    // samples beyond the stored ones are filled.
    await stage(sql, [4300, 5300].map((t) => T0 + t));
    const r = await store.reconcile({ ...RECONCILE, giveUpMs: 0 });
    assertEquals([r.filled, r.undone], [2, 0]);
    // Then the leader's lagging samples arrive, straight into storage.
    await storeSamples(sql, [4000, 5000, 6000].map((t) => T0 + t));
    const r2 = await store.reconcile(RECONCILE);
    assertEquals(r2.undone, 2);
    assertEquals(await storedTimes(sql), [0, 1000, 2000, 3000, 4000, 5000, 6000]);
  });
});

Deno.test("try_change_leader() voids the lease of a leader that wrote nothing in it", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const r2 = await store.tryChangeLeader("c1", "r2", T0 + 2000);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const r3 = await store.tryChangeLeader("c1", "r3", T0 + 4000);
    assertEquals([r3.leader, r3.start], ["r3", r2.start], "r2's empty lease is replaced");
    const logs = await sql<{ leader_name: string }[]>`
      SELECT leader_name FROM _prom_catalog.ha_leases_logs ORDER BY lease_start`;
    assertEquals(logs.map((l) => l.leader_name), ["r1", "r3"]);
  });
});

Deno.test("pastLeases() returns earlier intervals newest first", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const r2 = await store.tryChangeLeader("c1", "r2", T0 + 2000);
    const past = await store.pastLeases("c1", r2.start, 10);
    assertEquals(past, [{ leader: "r1", start: T0, until: r2.start }]);
  });
});

Deno.test("seriesIntervals() reads the intervals a reconcile pass measured well, since a time", async () => {
  await withStore(async (store, sql) => {
    // Four rounds stored: three agreeing spacings, a well supported measure.
    await storeSamples(sql, [0, 1000, 2000, 3000, 4000].map((t) => T0 + t));
    await stage(sql, [4600].map((t) => T0 + t));
    const before = await store.seriesIntervals(0);
    assertEquals(before.intervals, [], "nothing measured yet");
    await store.reconcile(RECONCILE);
    const after = await store.seriesIntervals(0);
    assertEquals(after.intervals.map(([, ms]) => ms), [1000]);
    assertEquals((await store.seriesIntervals(after.at)).intervals, [], "nothing new since");
  });
});
