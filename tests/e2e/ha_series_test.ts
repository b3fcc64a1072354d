/**
 * End to end, per series (docs/architecture.md, HA invariant 2):
 * two Prometheus replicas (cluster c1, __replica__ r1/r2) scrape four
 * node_exporters in job "fast" (1 s) and two of them in job "slow" (5 s),
 * each replica at its own phases, and remote-write through HAProxy (round
 * robin per request) to two connectors in HA mode on one fresh database.
 * Something happens to the leader Prometheus (from _prom_catalog.ha_leases):
 *
 * 1. kill -9 and restart at once;
 * 2. SIGSTOP for 3 s (less than the 6 s failover timeout), then SIGCONT;
 * 3. kill -9, 15 s down (past the failover timeout), restart.
 *
 * Each event gets its own database and processes, ~10 s of steady state
 * before and ~10 s after. Then the replicas are stopped cleanly (they flush)
 * and the connectors get until the stored counts settle (at least
 * failover timeout + 2 s, at most 20 s), for a design that reconciles
 * follower data in the background.
 *
 * Every series of `up`, `node_load1` and `node_time_seconds` is then judged
 * on its own (series_judge.ts) against what the replicas scraped, read
 * from their own TSDBs (before the event and at the end, after restarts:
 * a kill -9 loses no committed sample, the WAL has it): no scraped round
 * lost, none stored twice. The numbers are printed as JSON, times in
 * seconds relative to the event.
 */
import { assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import {
  killAll,
  type Service,
  startConnector,
  startHaproxy,
  startNodeExporter,
} from "../helpers/procs.ts";
import { type Prometheus, startPrometheus } from "../helpers/prometheus.ts";
import {
  judgeSeries,
  type JudgeSummary,
  seriesKey,
  type SeriesVerdict,
  summarize,
} from "./series_judge.ts";

const FAILOVER_MS = 6_000;
const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  `${FAILOVER_MS / 1000}s`,
  "--metrics.high-availability.lease-refresh",
  "1s",
  "--metrics.high-availability.lease-timeout",
  "10s",
];
const METRICS = ["up", "node_load1", "node_time_seconds"];
const JOBS: Record<string, number> = { fast: 1_000, slow: 5_000 };
/** Steady state before and after an event. */
const STEADY_MS = 10_000;
/** The judged window ends this long before the replicas are queried and stopped. */
const END_MARGIN_MS = 3_000;
/** Bounds on waiting for the stored counts to settle after the replicas stop. */
const SETTLE_MIN_MS = FAILOVER_MS + 2_000;
const SETTLE_MAX_MS = 20_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Labels = Record<string, string>;
/** Series key → replica → scraped times (ms). */
type Scraped = Map<string, { labels: Labels; metric: string; byReplica: Map<string, Set<number>> }>;

/** Reads every sample of METRICS in each replica's own TSDB into `into`. */
async function readScraped(replicas: Record<string, Prometheus>, into: Scraped): Promise<void> {
  for (const [name, p] of Object.entries(replicas)) {
    for (const metric of METRICS) {
      const result = await p.query(`${metric}[15m]`) as {
        metric: Labels;
        values: [number, string][];
      }[];
      for (const r of result) {
        const key = `${metric} ${seriesKey(r.metric, ["cluster", "__replica__"])}`;
        let s = into.get(key);
        if (!s) into.set(key, s = { labels: r.metric, metric, byReplica: new Map() });
        let set = s.byReplica.get(name);
        if (!set) s.byReplica.set(name, set = new Set());
        for (const [t] of r.values) set.add(Math.round(t * 1000));
      }
    }
  }
}

interface StoredSeries {
  seriesId: string;
  metric: string;
  labels: Labels;
  times: number[];
  nan: number;
}

/** Reads every stored sample of METRICS for cluster c1. */
async function readStored(db: FreshDatabase): Promise<StoredSeries[]> {
  const out: StoredSeries[] = [];
  for (const metric of METRICS) {
    const views = await db.sql<{ view_name: string }[]>`
      SELECT view_name FROM _prom_catalog.metric WHERE metric_name = ${metric}`;
    if (views.length === 0) continue;
    const view = views[0].view_name.replaceAll('"', '""');
    const rows = await db.sql.unsafe<
      { series_id: string; labels: Labels; ms: number; nan: boolean }[]
    >(
      `SELECT series_id::text AS series_id, labels,
              (extract(epoch FROM time) * 1000)::float8 AS ms, value = 'NaN'::float8 AS nan
       FROM prom_metric."${view}" WHERE labels->>'cluster' = 'c1' ORDER BY series_id, time`,
    );
    const byId = new Map<string, StoredSeries>();
    for (const r of rows) {
      let s = byId.get(r.series_id);
      if (!s) {
        byId.set(
          r.series_id,
          s = { seriesId: r.series_id, metric, labels: r.labels, times: [], nan: 0 },
        );
      }
      // Staleness markers are not samples a replica scraped.
      if (r.nan) s.nan++;
      else s.times.push(Math.round(r.ms));
    }
    out.push(...byId.values());
  }
  return out;
}

async function storedCount(db: FreshDatabase): Promise<number> {
  const [{ n }] = await db.sql<{ n: string }[]>`
    SELECT count(*) AS n FROM _prom_data.samples`;
  return Number(n);
}

async function leaderNow(db: FreshDatabase): Promise<string | undefined> {
  const rows = await db.sql<{ leader_name: string }[]>`
    SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`;
  return rows[0]?.leader_name;
}

/** The connector's HA and drop counters, for the report. */
async function connectorCounters(c: Service): Promise<string[]> {
  try {
    const text = await (await fetch(`${c.url}/metrics`)).text();
    return text.split("\n").filter((l) =>
      /^promscale_(ha_|ingest_samples_dropped|ingest_samples_total|ingest_duplicate)/.test(l)
    );
  } catch (err) {
    return [`unreachable: ${(err as Error).message}`];
  }
}

type EventKind = "kill9-restart" | "sigstop-3s" | "kill9-15s-restart";

/** What happened, in ms since the epoch. */
interface Timeline {
  eventAt: number;
  /** Back: restarted and scraping again, or SIGCONT. */
  backAt: number;
}

async function runEvent(kind: EventKind): Promise<void> {
  const started = Date.now();
  const db = await freshDatabase(`ha_series_${kind}`);
  try {
    const exporters = await Promise.all(
      [0, 1, 2, 3].map(() => startNodeExporter({ collectors: ["loadavg", "time"] })),
    );
    const targets = exporters.map((e) => e.address);
    const connectors = await Promise.all([
      startConnector({ dbUri: db.uri, args: HA_ARGS }),
      startConnector({ dbUri: db.uri, args: HA_ARGS }),
    ]);
    const lb = await startHaproxy(connectors.map((c) => c.address));
    const replicas: Record<string, Prometheus> = {};
    await Promise.all(["r1", "r2"].map(async (r) => {
      replicas[r] = await startPrometheus({
        scrapeJobs: [
          { name: "fast", targets, interval: "1s", timeout: "1s" },
          { name: "slow", targets: targets.slice(0, 2), interval: "5s", timeout: "1s" },
        ],
        remoteWriteUrl: `${lb.url}/write`,
        externalLabels: { cluster: "c1", __replica__: r },
      });
    }));
    await Promise.all(Object.values(replicas).map((p) => p.waitForTargets()));
    await sleep(STEADY_MS);

    const scraped: Scraped = new Map();
    await readScraped(replicas, scraped);
    const leader = await leaderNow(db);
    if (leader !== "r1" && leader !== "r2") {
      throw new Error(`no leader for c1 after ${STEADY_MS} ms of steady state (got ${leader})`);
    }
    const p = replicas[leader];
    const tl: Timeline = { eventAt: Date.now(), backAt: 0 };
    if (kind === "sigstop-3s") {
      p.pause();
      await sleep(3_000);
      p.resume();
      tl.backAt = Date.now();
    } else {
      await p.kill9();
      if (kind === "kill9-15s-restart") await sleep(15_000);
      await p.restart();
      await p.waitForTargets();
      tl.backAt = Date.now();
    }
    const leaderAfterEvent = await leaderNow(db);
    await sleep(STEADY_MS);

    // What the replicas scraped, then a clean stop (they flush what they hold).
    const queryAt = Date.now();
    await readScraped(replicas, scraped);
    const counters = await Promise.all(connectors.map(connectorCounters));
    await Promise.all(Object.values(replicas).map((r) => r.stop()));
    const stoppedAt = Date.now();

    // Let the connectors finish (a design may reconcile follower data in the
    // background): at least SETTLE_MIN_MS, then until the count holds for 3 s.
    let last = -1, stableSince = Date.now();
    while (Date.now() - stoppedAt < SETTLE_MAX_MS) {
      const n = await storedCount(db);
      if (n !== last) [last, stableSince] = [n, Date.now()];
      else if (Date.now() - stoppedAt >= SETTLE_MIN_MS && Date.now() - stableSince >= 3_000) break;
      await sleep(500);
    }
    const settledMs = Date.now() - stoppedAt;
    const countersAfter = await Promise.all(connectors.map(connectorCounters));

    // Judge every series on its own.
    const stored = await readStored(db);
    const windowTo = queryAt - END_MARGIN_MS;
    const rel = (t: number) => Math.round(t - tl.eventAt) / 1000;
    const verdicts = new Map<string, (SeriesVerdict & { seriesId: string | null })[]>(
      METRICS.map((m) => [m, []]),
    );
    const storedByKey = new Map<string, StoredSeries[]>();
    for (const s of stored) {
      const key = `${s.metric} ${seriesKey(s.labels, ["cluster", "__replica__"])}`;
      storedByKey.set(key, [...(storedByKey.get(key) ?? []), s]);
    }
    const keys = new Set([...scraped.keys(), ...storedByKey.keys()]);
    const problems: string[] = [];
    for (const key of keys) {
      const sc = scraped.get(key);
      const st = storedByKey.get(key) ?? [];
      const labels = sc?.labels ?? st[0].labels;
      const metric = sc?.metric ?? st[0].metric;
      const intervalMs = JOBS[labels.job];
      if (!intervalMs) {
        problems.push(`series of unknown job: ${key}`);
        continue;
      }
      if (!sc) {
        problems.push(`stored series no replica scraped: ${key}`);
        continue;
      }
      const byReplica = Object.fromEntries(
        [...sc.byReplica].map(([r, set]): [string, number[]] => [r, [...set]]),
      );
      const firsts = Object.values(byReplica).map((ts) => Math.min(...ts));
      const window = { from: Math.max(...firsts), to: windowTo };
      if (sc.byReplica.size < 2) problems.push(`only ${[...sc.byReplica.keys()]} scraped ${key}`);
      if (st.length > 1) problems.push(`${st.length} stored series for ${key}`);
      for (const s of st.length ? st : [null]) {
        const v = judgeSeries({
          key: `${metric}${seriesKey(labels, ["cluster", "__replica__"])}`,
          intervalMs,
          stored: s?.times ?? [],
          scraped: byReplica,
          window,
        });
        verdicts.get(metric)!.push({ ...v, seriesId: s?.seriesId ?? null });
      }
    }

    const perMetric: Record<string, JudgeSummary> = {};
    const failures: unknown[] = [];
    for (const [metric, vs] of verdicts) {
      perMetric[metric] = summarize(vs);
      for (const v of vs) {
        if (v.lost === 0 && v.doubled === 0) continue;
        failures.push({
          series: v.key,
          seriesId: v.seriesId,
          intervalMs: v.intervalMs,
          window: [rel(v.window.from), rel(v.window.to)],
          stored: v.stored,
          storedFrom: v.storedFrom,
          scrapedRounds: v.scrapedRounds,
          lost: v.lost,
          doubled: v.doubled,
          doubledExcused: v.doubledExcused,
          longestGapS: v.longestGapMs / 1000,
          lostStretches: v.lostStretches.map((s) => ({
            after: s.after === null ? null : rel(s.after),
            before: s.before === null ? null : rel(s.before),
            rounds: s.rounds,
            at: s.at.map(rel),
          })),
          doubledPairs: v.doubledPairs.map(([a, b]) => [rel(a), rel(b)]),
        });
      }
    }
    const leases = await db.sql<{ leader_name: string; lease_start: Date; lease_until: Date }[]>`
      SELECT leader_name, lease_start, lease_until FROM _prom_catalog.ha_leases_logs
      WHERE cluster_name = 'c1' ORDER BY lease_start`;
    const total = {
      lost: Object.values(perMetric).reduce((n, s) => n + s.lost, 0),
      doubled: Object.values(perMetric).reduce((n, s) => n + s.doubled, 0),
    };
    console.log(JSON.stringify({
      event: kind,
      leader,
      leaderAfterEvent,
      timeline: {
        eventAt: new Date(tl.eventAt).toISOString(),
        backS: rel(tl.backAt),
        queryS: rel(queryAt),
        windowEndS: rel(windowTo),
        stoppedS: rel(stoppedAt),
        settledMs,
        totalS: (Date.now() - started) / 1000,
      },
      total,
      perMetric,
      nanStored: stored.reduce((n, s) => n + s.nan, 0),
      problems,
      leases: leases.map((l) => ({
        leader: l.leader_name,
        startS: rel(l.lease_start.getTime()),
        untilS: rel(l.lease_until.getTime()),
      })),
      counters: { atQuery: counters, afterSettle: countersAfter },
    }));
    if (failures.length > 0) {
      console.log(JSON.stringify({ event: kind, failingSeries: failures }, null, 1));
    }
    assertEquals(problems, [], "every scraped series stored as one series, by both replicas");
    assertEquals(
      total,
      { lost: 0, doubled: 0 },
      `${kind}: scraped rounds lost / stored twice: ${JSON.stringify(perMetric)}`,
    );
  } finally {
    await killAll();
    if (!Deno.env.get("HA_E2E_KEEP_DB")) await db.drop();
  }
}

for (
  const [kind, what] of [
    ["kill9-restart", "leader Prometheus killed -9 and restarted at once"],
    ["sigstop-3s", "leader Prometheus stopped (SIGSTOP) for 3 s, less than the failover timeout"],
    ["kill9-15s-restart", "leader Prometheus killed -9, down 15 s (past failover), restarted"],
  ] as const
) {
  Deno.test({
    name: `HA per series: ${what} — every scraped round stored once`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => runEvent(kind),
  });
}
