/**
 * Native histograms through lease-based HA, judged per series exactly like
 * float samples: two replicas of a cluster send a histogram series and a
 * float series with the same timestamps (1 s interval, the follower 400 ms
 * later in phase); the leader misses two rounds. Stored in the end, for the
 * histogram series as for the float one: every leader round, the
 * follower's two rounds that fill the gap, nothing else.
 */
import assert from "node:assert/strict";
import { snappy } from "../../deps.ts";
import type { Connector } from "../../src/app.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { intHistogram, type ModelSeriesSpec, v1Request } from "./build.ts";

const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  "2s",
  "--metrics.high-availability.lease-refresh",
  "300ms",
  "--metrics.high-availability.lease-timeout",
  "5s",
];
const HEADERS = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };

async function send(c: Connector, replica: string, t: number, k: number): Promise<void> {
  const labels = { cluster: "c1", __replica__: replica, job: "api" };
  const series: ModelSeriesSpec[] = [
    {
      labels: { ...labels, __name__: "lat_seconds" },
      histograms: [intHistogram(t, { count_int: 7 + k, positive_deltas: [2, -1, -1, 3 + k] })],
    },
    { labels: { ...labels, __name__: "reqs_total" }, samples: [{ value: k, timestamp: t }] },
  ];
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: HEADERS,
    body: snappy.compress(v1Request(series)) as Uint8Array<ArrayBuffer>,
  });
  assert.equal(res.status, 204, await res.text());
}

Deno.test({
  name: "histograms follow the per-series HA rules of float samples",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("dm_ha");
    const c = await inProcessConnector(db.uri, HA_ARGS, { pool: 4 });
    try {
      const t0 = Math.floor(Date.now() / 1000) * 1000 - 30_000;
      for (let k = 0; k < 10; k++) {
        if (k !== 5 && k !== 6) await send(c, "r1", t0 + k * 1000, k);
        await send(c, "r2", t0 + k * 1000 + 400, k);
      }
      // Wait for the reconciler to decide every staged sample.
      const deadline = Date.now() + 30_000;
      let staged = -1;
      while (Date.now() < deadline) {
        [{ staged }] = await db.sql<{ staged: number }[]>`
          SELECT count(*)::int AS staged FROM _prom_data.ha_stage`;
        if (staged === 0) break;
        await new Promise((r) => setTimeout(r, 300));
      }
      assert.equal(staged, 0, "the stage was not reconciled");
      const want = [0, 1, 2, 3, 4, 7, 8, 9].map((k) => t0 + k * 1000)
        .concat([t0 + 5400, t0 + 6400]).sort((a, b) => a - b);
      const hist = await db.sql<{ time: Date; count: number }[]>`
        SELECT time, count FROM prom_histogram.lat_seconds ORDER BY time`;
      const floats = await db.sql<{ time: Date }[]>`
        SELECT time FROM prom_metric.reqs_total ORDER BY time`;
      assert.deepEqual(floats.map((r) => r.time.getTime() - t0), want.map((t) => t - t0));
      assert.deepEqual(hist.map((r) => r.time.getTime() - t0), want.map((t) => t - t0));
      // The filled rounds carry the follower's histograms, bodies and all.
      assert.deepEqual(hist.map((r) => r.count), [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
      // The follower's dropped copies left bodies without presence rows: invisible, collectable.
      const [{ gc }] = await db.sql<{ gc: number }[]>`
        SELECT _prom_catalog.histogram_gc('0 seconds', 1000)::int AS gc`;
      assert.equal(gc, 8);
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM prom_histogram.lat_seconds`;
      assert.equal(n, 10);
    } finally {
      await c.stop();
      await db.drop();
    }
  },
});
