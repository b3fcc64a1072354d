/**
 * Legacy election end to end: two real Prometheus servers (no external
 * labels, 1 s scrapes of one node_exporter), each remote-writing to its own
 * connector; both connectors share one lock id and one database. The
 * leader's Prometheus is killed with -9; its connector notices at its next
 * 10 s check that nothing came for the Prometheus timeout (2 s here) and
 * lets go of the lock; the other connector takes over.
 *
 * Measured: the hole in the stored `up` samples of job "node" (the largest
 * gap between consecutive stored timestamps), printed as
 * `legacy election hole: N s`. It must stay below the timeout + the 10 s
 * check period + a scrape of slack. Never two samples for one scrape.
 */
import { assert } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, type Service, startConnector, startNodeExporter } from "../helpers/procs.ts";
import { type Prometheus, startPrometheus } from "../helpers/prometheus.ts";

const PROMETHEUS_TIMEOUT_S = 2;
const CHECK_PERIOD_S = 10;
/** Follower's lock tick (1 s), the scrape interval and batch deadline (1 s each), margin. */
const SCRAPE_SLACK_S = 4;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function isLeader(c: Service): Promise<boolean> {
  try {
    const res = await fetch(`${c.url}/metrics`, { signal: AbortSignal.timeout(2_000) });
    return /^promscale_leader_election_is_leader 1$/m.test(await res.text());
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting: ${what}`);
    await sleep(200);
  }
}

Deno.test({
  name:
    "Legacy election end to end: the leader's Prometheus killed, the hole in `up` stays bounded",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("election_e2e");
    try {
      const args = [
        "--leader-election-pg-advisory-lock-id",
        "8080",
        "--leader-election-pg-advisory-lock-prometheus-timeout",
        `${PROMETHEUS_TIMEOUT_S}s`,
        "--db.connections-max",
        "3",
      ];
      const exporter = await startNodeExporter();
      const connectors = await Promise.all([
        startConnector({ dbUri: db.uri, args }),
        startConnector({ dbUri: db.uri, args }),
      ]);
      const proms: Prometheus[] = await Promise.all(connectors.map((c) =>
        startPrometheus({
          scrapeTargets: [exporter.address],
          remoteWriteUrl: `${c.url}/write`,
        })
      ));
      await Promise.all(proms.map((p) => p.waitForTargets()));

      const upTimes = async (): Promise<number[]> => {
        const [{ present }] = await db.sql<{ present: boolean }[]>`
          SELECT to_regclass('prom_metric.up') IS NOT NULL AS present`;
        if (!present) return [];
        const rows = await db.sql<{ time: Date }[]>`
          SELECT time FROM prom_metric.up WHERE labels->>'job' = 'node' ORDER BY time`;
        return rows.map((r) => r.time.getTime());
      };
      await until("`up` samples stored", async () => (await upTimes()).length >= 5, 60_000);
      let leader = -1;
      await until("one leader", async () => {
        const states = await Promise.all(connectors.map(isLeader));
        assert(!(states[0] && states[1]), "both connectors report leading");
        leader = states.indexOf(true);
        return leader >= 0;
      }, 30_000);
      const follower = 1 - leader;
      await sleep(5_000);

      const killedAt = Date.now();
      await proms[leader].kill9();
      await until(
        "the other connector takes over",
        () => isLeader(connectors[follower]),
        (PROMETHEUS_TIMEOUT_S + CHECK_PERIOD_S + SCRAPE_SLACK_S + 10) * 1_000,
      );
      // Samples of the surviving Prometheus flow for a few scrapes.
      const tookOverAt = Date.now();
      await until(
        "samples after the take-over",
        async () => (await upTimes()).filter((t) => t > tookOverAt).length >= 4,
        30_000,
      );

      const times = await upTimes();
      let holeMs = 0, doubled = 0, holeEndsAt = 0;
      for (let i = 1; i < times.length; i++) {
        const gap = times[i] - times[i - 1];
        if (gap > holeMs) [holeMs, holeEndsAt] = [gap, times[i]];
        if (gap < 500) doubled++;
      }
      console.log(
        `legacy election hole: ${(holeMs / 1000).toFixed(1)} s ` +
          `(${times.length} samples; Prometheus killed ${
            ((holeEndsAt - killedAt) / 1000).toFixed(1)
          } s before the hole closed; take-over seen ${
            ((tookOverAt - killedAt) / 1000).toFixed(1)
          } s after the kill)`,
      );
      assert(doubled === 0, `${doubled} scrapes stored twice`);
      const boundS = PROMETHEUS_TIMEOUT_S + CHECK_PERIOD_S + SCRAPE_SLACK_S;
      assert(
        holeMs < boundS * 1000,
        `hole of ${holeMs / 1000} s in stored up samples exceeds ${boundS} s`,
      );
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
