/**
 * The soak run: a real Prometheus HA pair, the write fuzzer and PostgreSQL
 * restarts against two connectors for a long time, watching for leaks and
 * checking the stored data at the end.
 *
 *   deno run -A bench/soak.ts [--minutes 20] [--fuzz-rate 20] [--seed N]
 *
 * Starts a private PostgreSQL cluster (tests/helpers/pgcluster.ts, so the
 * shared server is never restarted), two connectors with
 * `--metrics.high-availability` (failover timeout 6 s) behind HAProxy, four
 * node exporters, and two Prometheus replicas (cluster "c1", `__replica__`
 * "r1"/"r2"; job "fast" every 1 s on four targets, job "slow" every 5 s on
 * two, job "self" every 5 s scraping the connectors' own /metrics). Beside
 * them the write fuzzer of tests/fuzz/write_fuzz_test.ts sends `--fuzz-rate`
 * requests per second through HAProxy: valid and damaged requests without
 * HA labels; a 5xx or a dropped connection is retried as Prometheus would,
 * until it gets a final answer.
 *
 * Events: at 35 % of the run PostgreSQL is stopped for 10 s ("fast"
 * shutdown); at 70 % its postmaster is killed with SIGKILL and started
 * again 5 s later (crash recovery).
 *
 * Every 5 s it records, per connector, RSS, open file descriptors and
 * PostgreSQL client connections, and the fuzzer's answers. At the end:
 * - the fuzzer's acknowledged samples are all stored, bit-exact; nothing
 *   else without HA labels is stored (4xx'd requests stored nothing);
 * - every series of `up`, `node_load1` and `node_time_seconds` is judged
 *   against both replicas' own TSDBs (tests/e2e/series_judge.ts): rounds
 *   lost, rounds doubled;
 * - the memory trend: RSS in the last fifth of the run against the second
 *   fifth (after warm-up), and the same for descriptors and connections.
 *
 * Writes bench/out/soak-<time>.json (everything), .csv (the samples) and
 * .svg (the plot), and prints a one-line summary. Exit code 1 when a check
 * failed.
 *
 * @module
 */
import { postgres } from "../deps.ts";
import { startPgCluster } from "../tests/helpers/pgcluster.ts";
import {
  killAll,
  processMemory,
  type Service,
  startConnector,
  startHaproxy,
  startNodeExporter,
} from "../tests/helpers/procs.ts";
import { type Prometheus, startPrometheus } from "../tests/helpers/prometheus.ts";
import {
  judgeSeries,
  type JudgeSummary,
  seriesKey,
  type SeriesVerdict,
  summarize,
} from "../tests/e2e/series_judge.ts";
import {
  type DecodedSample,
  expectedSamples,
  requestAt,
  storedSamples,
  T_PLAIN,
} from "../tests/fuzz/write_fuzz_test.ts";
import { snappy } from "../deps.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const MINUTES = Number(arg("minutes", "20"));
const FUZZ_RATE = Number(arg("fuzz-rate", "20"));
const SEED = Number(arg("seed", String(Math.floor(Math.random() * 2 ** 31))));
const SAMPLE_EVERY_MS = 5_000;
const FAILOVER_MS = 6_000;
const HA_ARGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout",
  `${FAILOVER_MS / 1000}s`,
  "--metrics.high-availability.lease-refresh",
  "1s",
  "--metrics.high-availability.lease-timeout",
  "10s",
  "--db.connections-max",
  "8",
];
/** A sample key with an HA label (keys are JSON label pairs). */
const HA_KEY = /\["(cluster|__replica__)",/;
const JUDGED = ["up", "node_load1", "node_time_seconds"];
const JOBS: Record<string, number> = { fast: 1_000, slow: 5_000 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.error(`[soak ${new Date().toISOString()}] ${msg}`);

type Labels = Record<string, string>;

/** One sample of the watched quantities. */
interface Tick {
  /** Seconds since the start of the run. */
  s: number;
  rssMiB: number[];
  fds: number[];
  /** PostgreSQL client connections (all connectors together); null while the database is down. */
  pgConnections: number | null;
  /** Fuzzer answers so far, by status. */
  fuzz: Record<string, number>;
}

function openFds(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

// --- The fuzzer ---------------------------------------------------------------

interface FuzzState {
  stop: boolean;
  sent: number;
  byStatus: Map<string, number>;
  retries: number;
  /** Acknowledged samples: key → values sent (bits). */
  acked: Map<string, Set<string>>;
  /** Every decodable request's sample keys → "request index: answers", for failure reports. */
  origin: Map<string, string>;
  /** Request index → "kind: answers", for failure reports. */
  answers: Map<number, string>;
  failures: string[];
}

async function fuzzer(url: string, seed: number, state: FuzzState): Promise<void> {
  let index = 0;
  const workers = 4;
  const gapMs = (1000 * workers) / FUZZ_RATE;
  const one = async () => {
    while (!state.stop) {
      const began = Date.now();
      // Even indices: requests without HA labels (odd ones are the fuzz
      // test's own anchored HA clusters, which belong to its own run).
      const req = requestAt(seed, 2 * index++);
      let status = "";
      let text = "";
      const answers: string[] = [];
      for (let attempt = 0;; attempt++) {
        try {
          const res = await fetch(`${url}/write`, {
            method: req.method,
            headers: req.headers,
            body: req.body as Uint8Array<ArrayBuffer>,
            signal: AbortSignal.timeout(60_000),
          });
          text = await res.text();
          status = String(res.status);
        } catch (err) {
          status = "connection error";
          text = (err as Error).message;
        }
        answers.push(status);
        const code = Number(status);
        if (code >= 200 && code < 500) break;
        state.retries++;
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)));
      }
      state.sent++;
      state.byStatus.set(status, (state.byStatus.get(status) ?? 0) + 1);
      const code = Number(status);
      const raw = req.raw ?? (code >= 200 && code < 300 ? snappy.uncompress(req.body) : undefined);
      // A plain series given HA labels by the fuzzer belongs to an HA cluster
      // of its own: whether its samples are stored is the HA rules' business
      // (judged by the fuzz test), so only the request's other series count.
      const haShaped = req.kind.includes("HA");
      const answered = new Date().toISOString().slice(11, 23);
      state.answers.set(req.index, `${req.kind}: ${answers.join(",")} at ${answered}`);
      let samples: DecodedSample[] = [];
      let refusal = "";
      if (raw) {
        try {
          samples = expectedSamples(raw, !haShaped);
          if (haShaped) samples = samples.filter((s) => !HA_KEY.test(s.key));
        } catch (err) {
          refusal = (err as Error).message;
        }
      }
      for (const s of samples) {
        state.origin.set(
          s.key,
          `request ${req.index} (${req.kind}): ${answers.join(",")} at ${answered}`,
        );
      }
      if (req.kind === "clean" && code !== 204) {
        state.failures.push(`request ${req.index} (clean) got ${status}: ${text.slice(0, 200)}`);
      }
      if (code >= 400 && !/^[^\r\n]*\S[^\r\n]*\n?$/.test(text)) {
        state.failures.push(`request ${req.index} (${req.kind}): body not one line`);
      }
      if (code >= 200 && code < 300) {
        if (refusal) {
          state.failures.push(`request ${req.index} (${req.kind}) accepted, but ${refusal}`);
        }
        for (const s of samples) {
          const set = state.acked.get(s.key);
          if (set) set.add(s.value);
          else state.acked.set(s.key, new Set([s.value]));
        }
      }
      await sleep(Math.max(0, gapMs - (Date.now() - began)));
    }
  };
  await Promise.all(Array.from({ length: workers }, one));
}

/** The fuzz request index that sends plain samples at the key's time. */
function fromTime(key: string): number {
  return Math.floor((Number(key.slice(key.lastIndexOf("@") + 1)) - T_PLAIN) / 8);
}

// --- Replicas' own data ---------------------------------------------------------

type Scraped = Map<string, { labels: Labels; metric: string; byReplica: Map<string, Set<number>> }>;

async function readScraped(replicas: Record<string, Prometheus>, into: Scraped): Promise<void> {
  for (const [name, p] of Object.entries(replicas)) {
    for (const metric of JUDGED) {
      const result = await p.query(`${metric}{job=~"fast|slow"}[7m]`) as {
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

async function readStored(
  sql: postgres.Sql,
): Promise<{ key: string; metric: string; labels: Labels; times: number[] }[]> {
  const out = [];
  for (const metric of JUDGED) {
    const rows = await sql.unsafe<{ series_id: string; labels: Labels; ms: number }[]>(
      `SELECT series_id::text AS series_id, labels,
              (extract(epoch FROM time) * 1000)::float8 AS ms
       FROM prom_metric."${metric}"
       WHERE labels->>'cluster' = 'c1' AND labels->>'job' IN ('fast', 'slow')
         AND value <> 'NaN'::float8
       ORDER BY series_id, time`,
    );
    const byId = new Map<
      string,
      { key: string; metric: string; labels: Labels; times: number[] }
    >();
    for (const r of rows) {
      let s = byId.get(r.series_id);
      if (!s) {
        const key = `${metric} ${seriesKey(r.labels, ["cluster", "__replica__"])}`;
        byId.set(r.series_id, s = { key, metric, labels: r.labels, times: [] });
      }
      s.times.push(Math.round(r.ms));
    }
    out.push(...byId.values());
  }
  return out;
}

// --- The plot --------------------------------------------------------------------

function svgPlot(ticks: Tick[], events: { s: number; what: string }[], title: string): string {
  const W = 900, PH = 190, M = { l: 60, r: 20, t: 36, b: 30 };
  const panels: { name: string; series: { label: string; ys: (number | null)[] }[] }[] = [
    {
      name: "RSS (MiB)",
      series: ticks[0].rssMiB.map((_, i) => ({
        label: `connector ${i + 1}`,
        ys: ticks.map((t) => t.rssMiB[i]),
      })),
    },
    {
      name: "open file descriptors",
      series: ticks[0].fds.map((_, i) => ({
        label: `connector ${i + 1}`,
        ys: ticks.map((t) => t.fds[i]),
      })),
    },
    {
      name: "PostgreSQL client connections",
      series: [{ label: "both connectors", ys: ticks.map((t) => t.pgConnections) }],
    },
  ];
  const colors = ["#1f77b4", "#d62728", "#2ca02c"];
  const maxS = Math.max(1, ticks[ticks.length - 1].s);
  const H = M.t + panels.length * (PH + M.b) + 10;
  const x = (s: number) => M.l + ((W - M.l - M.r) * s) / maxS;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${M.l}" y="20" font-size="14">${title}</text>`,
  ];
  panels.forEach((p, pi) => {
    const top = M.t + pi * (PH + M.b);
    const values = p.series.flatMap((s) => s.ys.filter((v): v is number => v !== null));
    const maxY = Math.max(1, ...values) * 1.1;
    const y = (v: number) => top + PH - (PH * v) / maxY;
    parts.push(
      `<rect x="${M.l}" y="${top}" width="${
        W - M.l - M.r
      }" height="${PH}" fill="none" stroke="#999"/>`,
      `<text x="${M.l + 4}" y="${top + 13}" font-weight="bold">${p.name}</text>`,
      `<text x="${M.l - 4}" y="${top + 10}" text-anchor="end">${maxY.toFixed(0)}</text>`,
      `<text x="${M.l - 4}" y="${top + PH}" text-anchor="end">0</text>`,
    );
    for (const e of events) {
      parts.push(
        `<line x1="${x(e.s)}" x2="${x(e.s)}" y1="${top}" y2="${
          top + PH
        }" stroke="#f90" stroke-dasharray="4 3"/>`,
      );
      if (pi === 0) {
        parts.push(`<text x="${x(e.s) + 3}" y="${top + 26}" fill="#c60">${e.what}</text>`);
      }
    }
    p.series.forEach((s, si) => {
      let d = "";
      let pen = false;
      s.ys.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(ticks[i].s).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      parts.push(
        `<path d="${d}" fill="none" stroke="${colors[si % colors.length]}" stroke-width="1.5"/>`,
        `<text x="${W - M.r - 4}" y="${top + 13 + 13 * si}" text-anchor="end" fill="${
          colors[si % colors.length]
        }">${s.label}</text>`,
      );
    });
    for (let m = 0; m <= maxS / 60; m += Math.max(1, Math.round(maxS / 60 / 10))) {
      parts.push(
        `<text x="${x(m * 60)}" y="${top + PH + 13}" text-anchor="middle">${m} min</text>`,
      );
    }
  });
  parts.push("</svg>");
  return parts.join("\n");
}

// --- The run ---------------------------------------------------------------------

async function main(): Promise<number> {
  const durationMs = MINUTES * 60_000;
  log(`${MINUTES} min, fuzz rate ${FUZZ_RATE}/s, seed ${SEED}`);
  const pg = await startPgCluster();
  const watch = postgres(pg.uri, {
    max: 1,
    onnotice: () => {},
    connect_timeout: 3,
    idle_timeout: 0,
  });
  const problems: string[] = [];
  try {
    // The helper's cluster runs with synchronous_commit=off (given on its
    // command line, which ALTER SYSTEM cannot override): a crash would lose
    // the last acknowledged commits. A role setting applies to every new
    // session, so the connectors' commits wait for the WAL again. (fsync
    // stays off: the kill below is a process crash, not an OS crash.)
    await watch`ALTER ROLE postgres SET synchronous_commit = on`;
    const check = postgres(pg.uri, { max: 1, onnotice: () => {} });
    const [{ synchronous_commit }] = await check<{ synchronous_commit: string }[]>`
      SHOW synchronous_commit`;
    await check.end();
    if (synchronous_commit !== "on") throw new Error(`synchronous_commit is ${synchronous_commit}`);
    const connectors: Service[] = await Promise.all([
      startConnector({ dbUri: pg.uri, args: HA_ARGS }),
      startConnector({ dbUri: pg.uri, args: HA_ARGS }),
    ]);
    const lb = await startHaproxy(connectors.map((c) => c.address));
    const exporters = await Promise.all(
      [0, 1, 2, 3].map(() => startNodeExporter({ collectors: ["loadavg", "time"] })),
    );
    const targets = exporters.map((e) => e.address);
    const replicas: Record<string, Prometheus> = {};
    await Promise.all(["r1", "r2"].map(async (r) => {
      replicas[r] = await startPrometheus({
        scrapeJobs: [
          { name: "fast", targets, interval: "1s", timeout: "1s" },
          { name: "slow", targets: targets.slice(0, 2), interval: "5s", timeout: "1s" },
          { name: "self", targets: connectors.map((c) => c.address), interval: "5s" },
        ],
        remoteWriteUrl: `${lb.url}/write`,
        externalLabels: { cluster: "c1", __replica__: r },
      });
    }));
    await Promise.all(Object.values(replicas).map((p) => p.waitForTargets()));
    const t0 = Date.now();
    const at = (t: number) => Math.round((t - t0) / 100) / 10;
    log(`running: connectors ${connectors.map((c) => c.address)}, haproxy ${lb.address}`);

    const fuzz: FuzzState = {
      stop: false,
      sent: 0,
      byStatus: new Map(),
      retries: 0,
      acked: new Map(),
      origin: new Map(),
      answers: new Map(),
      failures: [],
    };
    const fuzzDone = fuzzer(lb.url, SEED, fuzz);

    const ticks: Tick[] = [];
    const events: { s: number; wall: string; what: string }[] = [];
    const scraped: Scraped = new Map();
    let lastScrapedRead = Date.now();
    const restartAt = t0 + durationMs * 0.35;
    const crashAt = t0 + durationMs * 0.7;
    let restarted = false, crashed = false;
    while (Date.now() - t0 < durationMs) {
      const tickAt = Date.now();
      let pgConnections: number | null = null;
      try {
        const [{ n }] = await watch<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`;
        pgConnections = n;
      } catch {
        // The database is down.
      }
      ticks.push({
        s: at(tickAt),
        rssMiB: connectors.map((c) => processMemory(c.proc.pid).rss / 2 ** 20),
        fds: connectors.map((c) => openFds(c.proc.pid)),
        pgConnections,
        fuzz: Object.fromEntries(fuzz.byStatus),
      });
      for (const c of connectors) {
        if (c.proc.exited) throw new Error(`a connector exited: ${c.proc.output()}`);
      }
      if (Date.now() - lastScrapedRead > 5 * 60_000) {
        await readScraped(replicas, scraped);
        lastScrapedRead = Date.now();
      }
      if (!restarted && Date.now() >= restartAt) {
        restarted = true;
        log("PostgreSQL: fast stop, 10 s down, start");
        events.push({
          s: at(Date.now()),
          wall: new Date().toISOString(),
          what: "PostgreSQL restart (10 s down)",
        });
        await pg.restart(10_000);
      } else if (!crashed && Date.now() >= crashAt) {
        crashed = true;
        log("PostgreSQL: SIGKILL to the postmaster, start 5 s later");
        events.push({
          s: at(Date.now()),
          wall: new Date().toISOString(),
          what: "PostgreSQL killed (-9), 5 s down",
        });
        await pg.kill9();
        await sleep(5_000);
        await pg.start();
      }
      const t = ticks[ticks.length - 1];
      if (ticks.length % 12 === 0) {
        log(
          `${(t.s / 60).toFixed(1)} min: RSS ${
            t.rssMiB.map((r) => r.toFixed(0))
          } MiB, fds ${t.fds}, ` +
            `pg connections ${t.pgConnections}, fuzz ${JSON.stringify(t.fuzz)}`,
        );
      }
      await sleep(Math.max(0, SAMPLE_EVERY_MS - (Date.now() - tickAt)));
    }

    log("stopping the fuzzer and the replicas");
    fuzz.stop = true;
    await fuzzDone;
    const queryAt = Date.now();
    await readScraped(replicas, scraped);
    await Promise.all(Object.values(replicas).map((r) => r.stop()));
    // Let the connectors finish staged follower data: until the count holds.
    const stoppedAt = Date.now();
    let last = -1, stableSince = Date.now();
    while (Date.now() - stoppedAt < 30_000) {
      const [{ n }] = await watch<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      if (Number(n) !== last) [last, stableSince] = [Number(n), Date.now()];
      else if (Date.now() - stoppedAt >= FAILOVER_MS + 2_000 && Date.now() - stableSince >= 3_000) {
        break;
      }
      await sleep(500);
    }

    // 1. The fuzzer's acknowledged samples, and nothing else without HA labels.
    const stored = await storedSamples({ sql: watch });
    let ackedMissing = 0, wrongValue = 0, unacknowledged = 0;
    const examples: string[] = [];
    for (const [key, values] of fuzz.acked) {
      const v = stored.get(key);
      if (v === undefined) {
        ackedMissing++;
        if (examples.length < 5) examples.push(`missing ${key} (${fuzz.origin.get(key)})`);
      } else if (!values.has(v)) {
        wrongValue++;
        if (examples.length < 5) examples.push(`value ${v} of ${key} not sent`);
      }
    }
    for (const key of stored.keys()) {
      if (HA_KEY.test(key) || fuzz.acked.has(key)) continue;
      unacknowledged++;
      if (examples.length < 10) {
        examples.push(
          `stored, never acknowledged: ${key.slice(0, 200)} (${
            fuzz.origin.get(key) ?? `request ${fromTime(key)}: ${fuzz.answers.get(fromTime(key))}`
          })`,
        );
      }
    }
    if (ackedMissing || wrongValue || unacknowledged) {
      problems.push(
        `fuzzer: ${ackedMissing} acknowledged samples missing, ${wrongValue} with a value not sent, ` +
          `${unacknowledged} stored without acknowledgement (${examples.join("; ")})`,
      );
    }
    problems.push(...fuzz.failures.slice(0, 10));

    // 2. Per series, against the replicas' own TSDBs.
    const storedSeries = await readStored(watch);
    const storedByKey = new Map<string, typeof storedSeries>();
    for (const s of storedSeries) storedByKey.set(s.key, [...(storedByKey.get(s.key) ?? []), s]);
    const verdicts = new Map<string, SeriesVerdict[]>(JUDGED.map((m) => [m, []]));
    const windowFrom = t0 + 30_000;
    const windowTo = queryAt - 3_000;
    for (const [key, sc] of scraped) {
      const intervalMs = JOBS[sc.labels.job];
      const st = storedByKey.get(key) ?? [];
      if (st.length > 1) problems.push(`${st.length} stored series for ${key}`);
      const byReplica = Object.fromEntries(
        [...sc.byReplica].map(([r, set]): [string, number[]] => [r, [...set]]),
      );
      const firsts = Object.values(byReplica).map((ts) => Math.min(...ts));
      verdicts.get(sc.metric)!.push(judgeSeries({
        key,
        intervalMs,
        stored: st[0]?.times ?? [],
        scraped: byReplica,
        window: { from: Math.max(windowFrom, ...firsts), to: windowTo },
      }));
    }
    for (const key of storedByKey.keys()) {
      if (!scraped.has(key)) problems.push(`stored series no replica scraped: ${key}`);
    }
    const perMetric: Record<string, JudgeSummary> = {};
    for (const [m, vs] of verdicts) {
      perMetric[m] = summarize(vs);
      for (const v of vs) {
        if (v.lost || v.doubled) {
          problems.push(
            `${v.key}: ${v.lost} rounds lost, ${v.doubled} doubled (lost at ${
              v.lostStretches.flatMap((s) => s.at).slice(0, 5).map(at)
            } s; doubled at ${v.doubledPairs.slice(0, 5).map(([a]) => at(a))} s)`,
          );
        }
      }
    }
    const leaderChanges = await watch<{ n: number }[]>`
      SELECT count(*)::int AS n FROM _prom_catalog.ha_leases_logs WHERE cluster_name = 'c1'`;

    // 3. Trends: the second fifth (warmed up) against the last fifth.
    const fifth = (k: number) =>
      ticks.filter((t) => t.s >= (k * MINUTES * 60) / 5 && t.s < ((k + 1) * MINUTES * 60) / 5);
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const trend = (pick: (t: Tick) => number | null) => {
      const a = avg(fifth(1).map(pick).filter((v): v is number => v !== null));
      const b = avg(fifth(4).map(pick).filter((v): v is number => v !== null));
      return { early: Math.round(a * 10) / 10, late: Math.round(b * 10) / 10 };
    };
    const summary = {
      minutes: MINUTES,
      seed: SEED,
      fuzzRate: FUZZ_RATE,
      events,
      fuzz: {
        requests: fuzz.sent,
        byStatus: Object.fromEntries([...fuzz.byStatus].sort()),
        retries: fuzz.retries,
        acknowledgedSamples: fuzz.acked.size,
        ackedMissing,
        wrongValue,
        unacknowledged,
      },
      perMetric,
      leaseLogRows: leaderChanges[0].n,
      rssMiB: connectors.map((_, i) => ({
        ...trend((t) => t.rssMiB[i]),
        peak: Math.round(Math.max(...ticks.map((t) => t.rssMiB[i]))),
      })),
      fds: connectors.map((_, i) => ({
        ...trend((t) => t.fds[i]),
        peak: Math.max(...ticks.map((t) => t.fds[i])),
      })),
      pgConnections: {
        ...trend((t) => t.pgConnections),
        peak: Math.max(...ticks.map((t) => t.pgConnections ?? 0)),
      },
      problems,
    };
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    await Deno.mkdir("bench/out", { recursive: true });
    const base = `bench/out/soak-${stamp}`;
    await Deno.writeTextFile(`${base}.json`, JSON.stringify({ ...summary, ticks }, null, 1));
    await Deno.writeTextFile(
      `${base}.csv`,
      "s,rss1_mib,rss2_mib,fds1,fds2,pg_connections\n" +
        ticks.map((t) =>
          [t.s, ...t.rssMiB.map((r) => r.toFixed(1)), ...t.fds, t.pgConnections ?? ""].join(",")
        ).join("\n") + "\n",
    );
    await Deno.writeTextFile(
      `${base}.svg`,
      svgPlot(
        ticks,
        events,
        `Soak: ${MINUTES} min, HA pair + fuzzer (${FUZZ_RATE}/s), PostgreSQL restarted and killed`,
      ),
    );
    console.log(JSON.stringify(summary));
    log(`wrote ${base}.{json,csv,svg}`);
    return problems.length ? 1 : 0;
  } finally {
    await watch.end({ timeout: 5 }).catch(() => {});
    await killAll();
    await pg.destroy();
  }
}

Deno.exit(await main());
