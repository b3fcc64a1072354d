/**
 * HA judged per series (docs/architecture.md, HA invariant 2), with scripted replicas
 * (sim.ts) writing to two in-process connectors on real PostgreSQL: every
 * round some replica got a 2xx for is stored exactly once, per series,
 * when the leader restarts, pauses, is replaced, lags on one shard, sends
 * future-stamped series, or when its lease was raised by a report whose
 * samples never committed. Time is scaled down: 200 ms and 1.2 s scrape
 * intervals, a 2 s failover timeout.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import type { Connector } from "../../src/app.ts";
import { killAll, startConnector } from "../helpers/procs.ts";
import { type Acks, type Behaviour, judge, keyOf, runReplicas, type Target } from "./sim.ts";

/** Debian's libfaketime (package faketime); override with LIBFAKETIME. */
const LIBFAKETIME = Deno.env.get("LIBFAKETIME") ??
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  "2s",
  "--metrics.high-availability.lease-refresh",
  "300ms",
  "--metrics.high-availability.lease-timeout",
  "5s",
];

const FAST = 200;
const SLOW = 1_200;

/** Four fast targets and one slow, each replica with its own phase per target. */
function targets(skewMs = 0): Target[] {
  const out: Target[] = [];
  for (let i = 0; i < 4; i++) {
    out.push({
      job: "fast",
      instance: `node${i}`,
      intervalMs: FAST,
      phase: { r1: (i * 37) % FAST, r2: (i * 53 + 90) % FAST },
      skewMs,
    });
  }
  out.push({
    job: "slow",
    instance: "node9",
    intervalMs: SLOW,
    phase: { r1: 100, r2: 700 },
    skewMs,
  });
  return out;
}

interface World {
  db: FreshDatabase;
  urls: string[];
}

/**
 * Two connectors on a fresh database: in process, or (`skewed`) the second
 * one a process whose wall clock runs 2 minutes behind (faketime), more
 * than the lease timeout.
 */
async function withWorld(
  name: string,
  fn: (w: World) => Promise<void>,
  skewed = false,
): Promise<void> {
  const db = await freshDatabase(`ha_series_${name}`);
  const connectors: Connector[] = [];
  try {
    connectors.push(await inProcessConnector(db.uri, HA_ARGS, { pool: 4 }));
    const urls = [connectors[0].url];
    if (skewed) {
      // libfaketime preloaded into the connector itself: the `faketime`
      // program forks and waits, and stopping it left its child running.
      const svc = await startConnector({
        dbUri: db.uri,
        args: HA_ARGS,
        env: { LD_PRELOAD: LIBFAKETIME, FAKETIME: "-120s" },
      });
      // The HTTP Date header shows the process's clock.
      const res = await fetch(`${svc.url}/healthz`);
      await res.body?.cancel();
      const behind = Date.now() - Date.parse(res.headers.get("date") ?? "");
      assert(behind > 100_000, `the skewed connector's clock is behind (by ${behind} ms)`);
      urls.push(svc.url);
    } else {
      connectors.push(await inProcessConnector(db.uri, HA_ARGS, { pool: 4 }));
      urls.push(connectors[1].url);
    }
    await fn({ db, urls });
  } finally {
    for (const c of connectors) await c.stop();
    await killAll();
    if (!Deno.env.get("HA_KEEP_DB")) await db.drop();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the stage is empty and one more reconcile pass ran (bounded). */
async function settled(db: FreshDatabase): Promise<void> {
  for (let i = 0; i < 80; i++) {
    const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.ha_stage`;
    if (Number(n) === 0) break;
    await sleep(250);
  }
  await sleep(1_500);
}

/** Stored sample times per series key. */
async function stored(db: FreshDatabase, cluster: string): Promise<Map<string, number[]>> {
  const rows = await db.sql<{ job: string; instance: string; ms: number }[]>`
    SELECT job, instance, (extract(epoch FROM time) * 1000)::float8 AS ms
    FROM prom_metric.up WHERE cluster = ${cluster} ORDER BY time`;
  const out = new Map<string, number[]>();
  for (const r of rows) {
    const k = keyOf(r.job, r.instance);
    if (!out.has(k)) out.set(k, []);
    out.get(k)!.push(r.ms);
  }
  return out;
}

/** Judges every series; returns the totals and logs the details of failures. */
async function judgeAll(
  db: FreshDatabase,
  cluster: string,
  perReplica: Acks[],
  ts: Target[],
  label: string,
): Promise<{ lost: number; doubled: number; details: Record<string, unknown> }> {
  const acks: Acks = new Map();
  for (const part of perReplica) {
    for (const [k, v] of part) acks.set(k, [...(acks.get(k) ?? []), ...v]);
  }
  const got = await stored(db, cluster);
  let lost = 0, doubled = 0;
  const details: Record<string, unknown> = {};
  for (const tg of ts) {
    const k = keyOf(tg.job, tg.instance);
    const j = judge(got.get(k) ?? [], perReplica.map((r) => r.get(k) ?? []), tg.intervalMs);
    lost += j.lost;
    doubled += j.doubled;
    if (j.lost || j.doubled) {
      const base = Math.min(...(acks.get(k) ?? [0]));
      details[k] = {
        ...j,
        acked: acks.get(k)?.length,
        // Times relative to the first acknowledged sample, for reading.
        storedAt: (got.get(k) ?? []).map((t) => t - base),
        ackedAt: [...(acks.get(k) ?? [])].sort((x, y) => x - y).map((t) => t - base),
      };
    }
    assert((acks.get(k)?.length ?? 0) > 0, `${label}: ${k} has acknowledged samples`);
  }
  const leases = await db.sql`
    SELECT leader_name, lease_start, lease_until FROM _prom_catalog.ha_leases_logs
    WHERE cluster_name = ${cluster} ORDER BY lease_start`;
  console.log(JSON.stringify({ scenario: label, lost, doubled, details, leases: leases.length }));
  return { lost, doubled, details };
}

async function leader(db: FreshDatabase, cluster: string): Promise<string | undefined> {
  const rows = await db.sql<{ leader_name: string }[]>`
    SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = ${cluster}`;
  return rows[0]?.leader_name;
}

/** Runs r1 (first, so it leads) and r2 with `r1` behaving as scripted; judges per series. */
async function scenario(
  name: string,
  r1: Behaviour,
  o: {
    durationMs?: number;
    skewMs?: number;
    skewedConnector?: boolean;
    before?: (w: World) => Promise<void>;
  } = {},
) {
  await withWorld(name, async (w) => {
    const ts = targets(o.skewMs ?? 0);
    const urls = w.urls;
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    // r1 starts alone for a moment, so it leads.
    const r1Run = runReplicas({
      urls,
      cluster: "c1",
      replicas: ["r1"],
      targets: ts,
      durationMs: o.durationMs ?? 9_000,
      t0,
      behaviour: { r1 },
    });
    await sleep(400);
    assertEquals(await leader(w.db, "c1"), "r1", "the first replica heard from leads");
    await o.before?.(w);
    const r2Run = runReplicas({
      urls,
      cluster: "c1",
      replicas: ["r2"],
      targets: ts,
      durationMs: (o.durationMs ?? 9_000) - 400,
      t0: t0 + 400,
    });
    const [a, b] = await Promise.all([r1Run, r2Run]);
    await settled(w.db);
    const { lost, doubled, details } = await judgeAll(w.db, "c1", [a.acks, b.acks], ts, name);
    // The details in the message too: CI keeps only the end of the output.
    assertEquals(
      { lost, doubled },
      { lost: 0, doubled: 0 },
      `${name}: per-series result ${JSON.stringify(details).slice(0, 3000)}`,
    );
    for (const part of [a.statuses, b.statuses]) {
      for (const [status] of part) assert(status < 400 || status >= 500, `no 4xx (${status})`);
    }
  }, o.skewedConnector);
}

Deno.test({
  name:
    "HA per series: a leader restarted (silent less than the failover timeout, unsent tail lost) loses and doubles no round",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    scenario("restart", {
      down: (e) => e >= 3_000 && e < 4_200,
      restartAt: 3_000,
    }),
});

Deno.test({
  name: "HA per series: a leader paused less than the failover timeout loses and doubles no round",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => scenario("pause", { down: (e) => e >= 3_000 && e < 4_300, catchUp: true }),
});

Deno.test({
  name:
    "HA per series: a leader gone longer than the failover timeout is replaced; no round lost or doubled, also after it returns",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    scenario("failover", {
      down: (e) => e >= 2_500 && e < 7_000,
      restartAt: 2_500,
    }, { durationMs: 10_000 }),
});

Deno.test({
  name: "HA per series: one leader shard lagging longer than any window loses and doubles no round",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => scenario("lag", { lagInstance: { instance: "node1", untilMs: 6_000 } }),
});

Deno.test({
  name:
    "HA per series: series stamped far ahead of the connectors' clocks are stored once, and fail over",
  sanitizeOps: false,
  sanitizeResources: false,
  // Ahead by 3 lease timeouts: what a connector whose wall clock is behind sees.
  fn: () =>
    scenario("skew", { down: (e) => e >= 2_500 && e < 6_500, restartAt: 2_500 }, {
      skewMs: 15_000,
    }),
});

Deno.test({
  name:
    "HA per series: a connector whose wall clock is 2 minutes behind (more than the lease timeout) changes nothing, failover included",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    scenario("clock", { down: (e) => e >= 2_500 && e < 6_500, restartAt: 2_500 }, {
      skewedConnector: true,
    }),
});

Deno.test({
  name:
    "HA per series: a lease raised by a report whose samples never committed loses nothing at failover",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    scenario("raised", { down: (e) => e >= 2_500 && e < 9_000, restartAt: 2_500 }, {
      before: async (w) => {
        // As if update_lease had raised the lease for samples whose write then failed.
        await w.db.sql`
          UPDATE _prom_catalog.ha_leases
          SET max_time = max_time + interval '60 seconds', lease_until = lease_until + interval '60 seconds'
          WHERE cluster_name = 'c1'`;
      },
    }),
});
