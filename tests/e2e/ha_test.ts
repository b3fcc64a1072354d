/**
 * End to end: two real Prometheus replicas (r1, r2 of cluster c1, 1 s
 * scrapes of node_exporter) remote-write through HAProxy (round robin) to
 * two connectors in HA mode sharing one database. The leader Prometheus is
 * killed with -9, the follower takes over; the killed one is restarted;
 * then one connector is killed with -9 and restarted. From prom_metric.up
 * no 1-second scrape slot may be missing or doubled.
 *
 * Short timeouts (flags) keep it quick: failover 3 s, lease refresh 1 s,
 * lease timeout 10 s. Prometheus: batch_send_deadline 1 s, max_backoff 1 s.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import {
  killAll,
  type Service,
  startConnector,
  startHaproxy,
  startNodeExporter,
} from "../helpers/procs.ts";
import { type Prometheus, startPrometheus } from "../helpers/prometheus.ts";
import { analyseSlots } from "./slots.ts";

const FAILOVER = "3s";
const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  FAILOVER,
  "--metrics.high-availability.lease-refresh",
  "1s",
  "--metrics.high-availability.lease-timeout",
  "10s",
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "HA end to end: leader Prometheus killed, connector killed — no missed or doubled scrape",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("ha_e2e");
    try {
      const exporter = await startNodeExporter();
      const connectors: Service[] = await Promise.all([
        startConnector({ dbUri: db.uri, args: HA_ARGS }),
        startConnector({ dbUri: db.uri, args: HA_ARGS }),
      ]);
      const lb = await startHaproxy(connectors.map((c) => c.address));
      const replicas: Record<string, Prometheus> = {};
      await Promise.all(["r1", "r2"].map(async (r) => {
        replicas[r] = await startPrometheus({
          scrapeTargets: [exporter.address],
          remoteWriteUrl: `${lb.url}/write`,
          externalLabels: { cluster: "c1", __replica__: r },
        });
      }));
      await Promise.all(Object.values(replicas).map((p) => p.waitForTargets()));

      const leaderNow = async () => {
        const rows = await db.sql<{ leader_name: string }[]>`
          SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`;
        return rows[0]?.leader_name;
      };
      const upCount = async () => {
        const [{ present }] = await db.sql<{ present: boolean }[]>`
          SELECT to_regclass('prom_metric.up') IS NOT NULL AS present`;
        if (!present) return 0;
        const rows = await db.sql<{ n: string }[]>`
          SELECT count(*) AS n FROM prom_metric.up WHERE job = 'node' AND cluster = 'c1'`;
        return Number(rows[0].n);
      };
      // Steady state: samples flow, one leader.
      for (let i = 0; i < 100 && (await upCount()) < 6; i++) await sleep(500);
      await sleep(3_000);
      const first = await leaderNow();
      assert(first === "r1" || first === "r2", `a leader was elected (got ${first})`);
      const second = first === "r1" ? "r2" : "r1";

      // 1. Kill -9 the leader Prometheus; wait past the failover timeout.
      const killedAt = Date.now();
      await replicas[first].kill9();
      let failoverMs = -1;
      for (let i = 0; i < 200; i++) {
        if ((await leaderNow()) === second) {
          failoverMs = Date.now() - killedAt;
          break;
        }
        await sleep(100);
      }
      assert(failoverMs > 0, `replica ${second} took over`);
      await sleep(4_000);
      const afterFailover = await upCount();

      // Restart the killed Prometheus: it is a follower now.
      await replicas[first].restart();
      await replicas[first].waitForTargets();
      await sleep(4_000);
      assertEquals(await leaderNow(), second, "the restarted replica does not take the lease back");

      // 2. Kill -9 one connector, then restart it on the same port.
      const victim = 0;
      const port = connectors[victim].port;
      await connectors[victim].proc.kill9();
      const connectorKilledAt = Date.now();
      await sleep(5_000);
      connectors[victim] = await startConnector({ dbUri: db.uri, port, args: HA_ARGS });
      await sleep(6_000);
      assertEquals(await leaderNow(), second, "a connector kill does not change the leader");
      for (const c of connectors) {
        const text = await (await fetch(`${c.url}/metrics`)).text();
        assert(
          text.includes(`promscale_ha_cluster_leader{cluster="c1",replica="${second}"} 1`),
          "each connector shows the leader on /metrics",
        );
        assert(!text.includes(`replica="${first}"} 1`), "and only the leader");
      }

      // Let both replicas deliver what they still retry, then stop sending.
      await sleep(3_000);
      await Promise.all(Object.values(replicas).map((p) => p.stop()));
      await sleep(1_000);

      const times = (await db.sql<{ ms: number }[]>`
        SELECT (extract(epoch FROM time) * 1000)::float8 AS ms FROM prom_metric.up
        WHERE job = 'node' AND cluster = 'c1' ORDER BY time`).map((r) => r.ms);
      const series = await db.sql<{ n: string }[]>`
        SELECT count(DISTINCT series_id) AS n FROM prom_metric.up WHERE job = 'node' AND cluster = 'c1'`;
      assertEquals(Number(series[0].n), 1, "one series: the replica label is not stored");
      const whole = analyseSlots(times, 1_000);
      const aroundFailover = analyseSlots(
        times.filter((t) => t >= killedAt - 10_000 && t <= killedAt + 15_000),
        1_000,
      );
      const aroundConnectorKill = analyseSlots(
        times.filter((t) => t >= connectorKilledAt - 5_000 && t <= connectorKilledAt + 10_000),
        1_000,
      );
      const logs = await db.sql`
        SELECT leader_name, lease_start, lease_until FROM _prom_catalog.ha_leases_logs
        WHERE cluster_name = 'c1' ORDER BY lease_start`;
      console.log(JSON.stringify({
        samples: times.length,
        afterFailover,
        failoverMs,
        whole,
        aroundFailover,
        aroundConnectorKill,
        leases: logs,
      }));
      assertEquals(whole.missed, 0, `missed slots: ${JSON.stringify(whole)}`);
      assertEquals(whole.doubled, 0, `doubled slots: ${JSON.stringify(whole)}`);
      assert(logs.length >= 2, "the failover shows in ha_leases_logs");
      for (let i = 1; i < logs.length; i++) {
        assertEquals(
          (logs[i].lease_start as Date).getTime(),
          (logs[i - 1].lease_until as Date).getTime(),
          "leases are contiguous",
        );
      }
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
