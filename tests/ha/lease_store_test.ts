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

Deno.test("try_change_leader() starts the new lease after the newest sample actually stored, half a scrape interval on", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    // A connector wrote two more scrapes but died before reporting them.
    await storeSamples(sql, [T0, T0 + 1000, T0 + 2000, T0 + 3000]);
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const changed = await store.tryChangeLeader("c1", "r2", T0 + 5000);
    assertEquals(changed.start, T0 + 3000 + 500);
    const logs = await sql<{ leader_name: string; s: Date; u: Date }[]>`
      SELECT leader_name, lease_start AS s, lease_until AS u FROM _prom_catalog.ha_leases_logs
      ORDER BY lease_start`;
    assertEquals(logs.map((l) => [l.leader_name, l.s.getTime(), l.u.getTime()]), [
      ["r1", T0, T0 + 3500],
      ["r2", T0 + 3500, T0 + 5000 + timings.leaseTimeoutMs],
    ]);
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

Deno.test("try_change_leader() goes back to the first scrape round the old leader did not finish", async () => {
  await withStore(async (store, sql) => {
    await store.updateLease("c1", "r1", T0, T0 + 1000, 0);
    // The leader died mid-round: node_load1 got round T0+3000, up did not.
    await storeSamples(sql, [T0, T0 + 1000, T0 + 2000, T0 + 3000], "node_load1");
    await storeSamples(sql, [T0, T0 + 1000, T0 + 2000], "up");
    await heardAgo(sql, timings.failoverTimeoutMs + 10);
    const changed = await store.tryChangeLeader("c1", "r2", T0 + 5000);
    assertEquals(changed.start, T0 + 2000 + 500, "after up's last round, half an interval on");
    const left = await sql<{ n: string }[]>`
      SELECT count(*) AS n FROM _prom_data.samples WHERE time >= ${new Date(T0 + 2500)}`;
    assertEquals(Number(left[0].n), 0, "the unfinished round is left to the new leader");
    const kept = await sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
    assertEquals(Number(kept[0].n), 6);
  });
});
