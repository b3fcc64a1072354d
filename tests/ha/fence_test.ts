/**
 * Fencing on real PostgreSQL: a leader's samples commit only if its lease
 * still stands at commit. A connector that judged a request under one
 * lease and stalls (GC, SIGSTOP, a slow pool) while another connector
 * hands the lease over must get a 503 and store nothing; staged samples of
 * the same request go in or not with them (one transaction).
 */
import { assertEquals, assertRejects } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { Gate } from "../../src/storage/db.ts";
import { SeriesCache } from "../../src/storage/series_cache.ts";
import { PgWriter } from "../../src/storage/writer.ts";
import { FenceError, type WriteSeries } from "../../src/ingest.ts";
import { PgLeaseStore } from "../../src/ha/lease_store.ts";

const timings = { leaseTimeoutMs: 60_000, leaseRefreshMs: 10_000, failoverTimeoutMs: 30_000 };
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

function up(instance: string, t: number): WriteSeries {
  return {
    labels: [
      { name: "__name__", value: "up" },
      { name: "cluster", value: "c1" },
      { name: "instance", value: instance },
    ],
    timestamps: [t],
    values: new Float64Array([1]),
  };
}

Deno.test("A leader write whose lease moved before its commit fails with 503 and stores nothing", async () => {
  const db = await freshDatabase("ha_fence");
  try {
    await migrate(db.sql);
    const store = new PgLeaseStore(db.sql, timings, "cluster");
    const writer = new PgWriter(db.sql, new Gate(2, 8, 5_000), new SeriesCache(100));
    const lease = await store.updateLease("c1", "r1", T0, T0, 0);
    let lost = 0;
    const fence = { cluster: "c1", leader: "r1", start: lease.start, lost: () => lost++ };

    // Under the lease as it stands: committed.
    await writer.write([up("a", T0 + 1000)], { fences: [fence], staged: [up("b", T0 + 900)] });

    // The connector judged its next request under r1's lease, then stalled;
    // meanwhile r1 fell silent and another connector handed the lease to r2.
    await db
      .sql`UPDATE _prom_catalog.ha_leases SET last_heard = clock_timestamp() - interval '1 minute'`;
    const moved = await store.tryChangeLeader("c1", "r2", T0 + 5000);
    assertEquals(moved.leader, "r2");
    const err = await assertRejects(
      () => writer.write([up("a", T0 + 2000)], { fences: [fence], staged: [up("b", T0 + 1900)] }),
      FenceError,
    );
    assertEquals((err as FenceError).status, 503);
    assertEquals(lost, 1, "the filter is told, so it asks the database again");

    const samples = await db.sql<{ ms: number }[]>`
      SELECT (extract(epoch FROM time) * 1000)::float8 AS ms FROM _prom_data.samples
      UNION ALL SELECT (extract(epoch FROM time) * 1000)::float8 FROM _prom_data.ha_stage
      ORDER BY 1`;
    assertEquals(
      samples.map((r) => r.ms - T0),
      [900, 1000],
      "nothing of the fenced request is stored or staged (the takeover re-staged the first)",
    );
  } finally {
    await db.drop();
  }
});
