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
import { analyseSlots, lostSlots } from "./slots.ts";

// HA_E2E_PROMETHEUS_DEFAULTS=1 runs it with Prometheus's own queue
// defaults (5 s batches, 30 ms–5 s backoff) and a 10 s failover timeout:
// slower, not part of the suite, but what an untuned deployment sees.
const DEFAULTS = Deno.env.get("HA_E2E_PROMETHEUS_DEFAULTS") === "1";
const FAILOVER = DEFAULTS ? "10s" : "3s";
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
          queueConfig: DEFAULTS
            ? { batch_send_deadline: "5s", min_backoff: "30ms", max_backoff: "5s" }
            : undefined,
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
      for (let i = 0; i < 400; i++) {
        if ((await leaderNow()) === second) {
          failoverMs = Date.now() - killedAt;
          break;
        }
        await sleep(100);
      }
      assert(failoverMs > 0, `replica ${second} took over`);
      await sleep(DEFAULTS ? 12_000 : 4_000);
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
      await sleep(DEFAULTS ? 12_000 : 3_000);
      // What each replica scraped itself: a slot no replica scraped (a slow
      // scrape on a loaded machine) is not a sample the connector lost.
      const scraped: number[] = [];
      const scrapedBy: Record<string, number[]> = {};
      for (const [name, p] of Object.entries(replicas)) {
        const result = await p.query('up{job="node"}[10m]') as { values: [number, string][] }[];
        scrapedBy[name] = [];
        for (const r of result) {
          for (const [t] of r.values) {
            scraped.push(Math.round(t * 1000));
            scrapedBy[name].push(Math.round(t * 1000));
          }
        }
      }
      const dropped = await Promise.all(
        connectors.map(async (c) =>
          (await (await fetch(`${c.url}/metrics`)).text()).split("\n")
            .filter((l) => l.startsWith("promscale_ingest_samples_dropped_total"))
        ),
      );
      await Promise.all(Object.values(replicas).map((p) => p.stop()));
      await sleep(1_000);

      const times = (await db.sql<{ ms: number }[]>`
        SELECT (extract(epoch FROM time) * 1000)::float8 AS ms FROM prom_metric.up
        WHERE job = 'node' AND cluster = 'c1' ORDER BY time`).map((r) => r.ms);
      const series = await db.sql<{ n: string }[]>`
        SELECT count(DISTINCT series_id) AS n FROM prom_metric.up WHERE job = 'node' AND cluster = 'c1'`;
      assertEquals(Number(series[0].n), 1, "one series: the replica label is not stored");
      const whole = analyseSlots(times, 1_000);
      const lost = lostSlots(times, scraped, 1_000);
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
        lost,
        afterFailover,
        failoverMs,
        whole,
        aroundFailover,
        aroundConnectorKill,
        leases: logs,
      }));
      if (lost > 0) {
        const around = (t: number) => Math.abs(t - killedAt) < 20_000;
        console.log(JSON.stringify({
          killedAt,
          stored: times.filter(around),
          scrapedBy: Object.fromEntries(
            Object.entries(scrapedBy).map(([k, v]) => [k, v.filter(around)]),
          ),
          dropped,
        }));
      }
      assertEquals(lost, 0, `slots scraped by a replica but not stored: ${JSON.stringify(whole)}`);
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
