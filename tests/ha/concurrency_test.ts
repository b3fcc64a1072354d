/**
 * Concurrency on real PostgreSQL: 4 connector processes (separate pools) ×
 * 20 clusters × 3 replicas sending overlapping random traffic, with
 * replicas going silent and coming back, requests spread at random over the
 * connectors, and 503s retried like Prometheus does. Afterwards, from
 * `_prom_catalog.ha_leases_logs` and the stored rows: per cluster the
 * leases are disjoint and contiguous, and per series every slot some
 * replica got a 2xx for is stored, once, and nothing else is.
 *
 * Every replica sends the same series at the same instants (a 100 ms grid),
 * with its own number as the value, so the stored value names the sender.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, type Service, startConnector } from "../helpers/procs.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";

const CONNECTORS = 4;
const CLUSTERS = 20;
const REPLICAS = 3;
const SERIES = 4;
const SLOT_MS = 100;
const RUN_MS = 15_000;
const DRAIN_MS = 6_000;
const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  "1s",
  "--metrics.high-availability.lease-refresh",
  "300ms",
  "--metrics.high-availability.lease-timeout",
  "5s",
  "--db.connections-max",
  "4",
];

/** A seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Tally {
  /** Per cluster, the slots some replica got a 2xx for. */
  acked: Map<string, Set<number>>;
  requests: number;
  ok: number;
  unavailable: number;
  other: Map<number, string>;
  slowest: number;
}

/** One simulated Prometheus replica: scrapes on the grid while alive, sends and retries its queue. */
async function replica(
  cluster: string,
  replicaNo: number,
  connectors: Service[],
  until: number,
  drainUntil: number,
  random: () => number,
  tally: Tally,
): Promise<void> {
  const name = `r${replicaNo}`;
  let queue: number[] = [];
  let nextSlot = Math.ceil(Date.now() / SLOT_MS) * SLOT_MS;
  let silentUntil = 0;
  while (Date.now() < drainUntil) {
    const now = Date.now();
    if (now < until && now >= silentUntil && random() < 0.04) {
      // Go silent (a crash or a network cut) for 0.3 to 3 s: nothing is scraped meanwhile.
      silentUntil = now + 300 + random() * 2_700;
    }
    const alive = now >= silentUntil;
    if (now < until) {
      for (; nextSlot <= now; nextSlot += SLOT_MS) if (alive) queue.push(nextSlot);
    }
    if (alive && queue.length > 0) {
      const batch = queue.slice(0, 30);
      const series: PayloadSeries[] = [];
      for (let s = 0; s < SERIES; s++) {
        series.push({
          labels: { __name__: "ha_load", cluster, __replica__: name, s: String(s) },
          samples: batch.map((t) => ({ value: replicaNo, timestamp: t })),
        });
      }
      const target = connectors[Math.floor(random() * connectors.length)];
      tally.requests++;
      const sentAt = Date.now();
      try {
        const res = await fetch(`${target.url}/write`, {
          method: "POST",
          headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
          body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
          signal: AbortSignal.timeout(20_000),
        });
        const text = await res.text();
        const took = Date.now() - sentAt;
        if (took > tally.slowest) tally.slowest = took;
        if (res.ok) {
          tally.ok++;
          queue = queue.slice(batch.length);
          let acked = tally.acked.get(cluster);
          if (!acked) tally.acked.set(cluster, acked = new Set());
          for (const t of batch) acked.add(t);
        } else if (res.status === 503) {
          tally.unavailable++;
        } else {
          tally.other.set(res.status, text);
        }
      } catch (err) {
        tally.other.set(0, `${err} after ${Date.now() - sentAt} ms to ${target.url}`);
      }
    }
    if (now >= until && queue.length === 0) return;
    await sleep(100 + random() * 200);
  }
}

Deno.test({
  name:
    "HA leases stay disjoint, contiguous and owned under 4 connectors × 20 clusters × 3 replicas",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("ha_concurrency");
    try {
      const connectors = await Promise.all(
        Array.from({ length: CONNECTORS }, () => startConnector({ dbUri: db.uri, args: HA_ARGS })),
      );
      const tally: Tally = {
        acked: new Map(),
        requests: 0,
        ok: 0,
        unavailable: 0,
        other: new Map(),
        slowest: 0,
      };
      const start = Date.now();
      const random = prng(20261123);
      const senders: Promise<void>[] = [];
      for (let c = 0; c < CLUSTERS; c++) {
        for (let r = 1; r <= REPLICAS; r++) {
          const seed = Math.floor(random() * 2 ** 31);
          senders.push(
            replica(
              `c${c}`,
              r,
              connectors,
              start + RUN_MS,
              start + RUN_MS + DRAIN_MS,
              prng(seed),
              tally,
            ),
          );
        }
      }
      await Promise.all(senders);
      assertEquals([...tally.other.entries()], [], "only 2xx and 503 answers");

      // 1. Per cluster, leases are disjoint and contiguous.
      const logs = await db.sql<
        { cluster_name: string; leader_name: string; s: number; u: number }[]
      >`
        SELECT cluster_name, leader_name,
               (extract(epoch FROM lease_start) * 1000)::float8 AS s,
               (extract(epoch FROM lease_until) * 1000)::float8 AS u
        FROM _prom_catalog.ha_leases_logs ORDER BY cluster_name, lease_start`;
      type Lease = { cluster_name: string; leader_name: string; s: number; u: number };
      const byCluster = new Map<string, Lease[]>();
      for (const l of logs) {
        if (!byCluster.has(l.cluster_name)) byCluster.set(l.cluster_name, []);
        byCluster.get(l.cluster_name)!.push(l);
      }
      assertEquals(byCluster.size, CLUSTERS);
      let changes = 0;
      for (const [cluster, leases] of byCluster) {
        for (let i = 0; i < leases.length; i++) {
          assert(leases[i].s < leases[i].u, `${cluster}: lease ${i} is not empty`);
          if (i > 0) {
            assertEquals(
              leases[i].s,
              leases[i - 1].u,
              `${cluster}: lease ${i} starts where ${i - 1} ends`,
            );
            changes++;
          }
        }
      }

      // 2. Per series, every acknowledged slot is stored exactly once, and
      // nothing else: once the reconciler has emptied the stage.
      for (let i = 0; i < 60; i++) {
        const [{ n }] = await db.sql<{ n: string }[]>`
          SELECT count(*) AS n FROM _prom_data.ha_stage`;
        if (Number(n) === 0) break;
        await sleep(500);
      }
      await sleep(2_000);
      const rows = await db.sql<{ cluster: string; s: string; ms: number[] }[]>`
        SELECT cluster, s, array_agg((extract(epoch FROM time) * 1000)::float8 ORDER BY time) AS ms
        FROM prom_metric.ha_load GROUP BY cluster, s`;
      const storedBy = new Map(rows.map((r) => [`${r.cluster}/${r.s}`, r.ms]));
      let lost = 0, extra = 0;
      const examples: string[] = [];
      for (const [cluster, acked] of tally.acked) {
        for (let k = 0; k < SERIES; k++) {
          const got = new Set(storedBy.get(`${cluster}/${k}`) ?? []);
          for (const t of acked) {
            if (got.has(t)) continue;
            lost++;
            if (examples.length < 5) examples.push(`${cluster}/${k} lost ${t}`);
          }
          for (const t of got) {
            if (acked.has(t)) continue;
            extra++;
            if (examples.length < 5) examples.push(`${cluster}/${k} unacknowledged ${t}`);
          }
        }
      }
      assertEquals({ lost, extra }, { lost: 0, extra: 0 }, examples.join("; "));

      const [{ stored }] = await db.sql<{ stored: string }[]>`
        SELECT count(*) AS stored FROM prom_metric.ha_load`;
      console.log(JSON.stringify({
        requests: tally.requests,
        ok: tally.ok,
        unavailable: tally.unavailable,
        slowestMs: tally.slowest,
        stored: Number(stored),
        leaseChanges: changes,
      }));
      assert(Number(stored) > CLUSTERS * SERIES * 50, "traffic was stored");
      assert(changes >= CLUSTERS, `leaders changed (${changes} changes)`);
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
