/**
 * The HA follower in steady state, with real Prometheus: how often the
 * follower replica retries its remote writes and how far its remote write
 * lags, for the connector of a given checkout.
 *
 *   deno run -A bench/ha_prometheus.ts [--checkout .] [--label after]
 *     [--warmup 30] [--seconds 120] [--every 5] [--targets 4] [--keep-db]
 *
 * Starts a fresh database, two connectors of the checkout with
 * `--metrics.high-availability` (default timings: failover timeout 30 s,
 * lease refresh 10 s) behind HAProxy (round robin per request),
 * `--targets` node exporters, and two Prometheus replicas (external labels
 * cluster "c1", `__replica__` "r1" and "r2", 1 s scrape interval,
 * Prometheus's own default `queue_config`: none is written). r1 starts
 * first and becomes the leader; r2 starts once r1's lease exists. After
 * `--warmup` seconds from r2's first successful scrapes it measures for
 * `--seconds`:
 *  - the follower's (and the leader's) log lines "Failed to send batch,
 *    retrying" / "retrying" in the window (by the lines' own `ts=`), per
 *    minute, and the deltas of its `prometheus_remote_storage_samples_retried_total`
 *    and `…_samples_failed_total`;
 *  - its remote-write lag, from its own /metrics every `--every` seconds:
 *    `prometheus_remote_storage_highest_timestamp_in_seconds` minus
 *    `prometheus_remote_storage_queue_highest_sent_timestamp_seconds`
 *    (median and max);
 *  - the connectors' HA counters, the leader changes, the stage, and the
 *    stored samples of the cluster closer than 500 ms to the previous one
 *    of their series (copies; the scrape interval is 1 s).
 *
 * Waits until no `deno test` runs before starting (at most 5 min). Prints
 * a JSON line (and writes it to bench/out/). Everything on 127.0.0.1.
 * `--keep-db` keeps the database for inspection (its URI is logged; drop
 * it by hand).
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { freePort } from "../tests/helpers/ports.ts";
import {
  killAll,
  REPO_ROOT,
  spawnProcess,
  startHaproxy,
  startNodeExporter,
  tempDir,
  waitForHttp,
} from "../tests/helpers/procs.ts";
import { PROMETHEUS_BIN, prometheusConfig } from "../tests/helpers/prometheus.ts";
import { median, metricSum, startConnectorIn, waitQuiet } from "./ha.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.error(`[ha_prometheus] ${msg}`);

/** A Prometheus replica whose log goes to a file (every line kept). */
async function startReplica(
  name: string,
  targets: string[],
  writeUrl: string,
  dir: string,
) {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const startedAt = Date.now();
  const config = prometheusConfig({
    scrapeTargets: targets,
    remoteWriteUrl: writeUrl,
    externalLabels: { cluster: "c1", __replica__: name },
    scrapeInterval: "1s",
  });
  // Prometheus's own default queue_config (2.42: capacity 2500, 500
  // samples per send, 5 s batch deadline, backoff 30 ms to 5 s), not the
  // test helper's faster one.
  for (const rw of config.remote_write as Record<string, unknown>[]) delete rw.queue_config;
  const configFile = `${dir}/${name}.yml`;
  const logFile = `${dir}/${name}.log`;
  await Deno.mkdir(`${dir}/${name}-data`);
  await Deno.writeTextFile(configFile, JSON.stringify(config, null, 2));
  const proc = spawnProcess(`prometheus-${name}`, "/bin/sh", [
    "-c",
    `exec "$0" "$@" 2>>"${logFile}"`,
    PROMETHEUS_BIN,
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dir}/${name}-data`,
    `--web.listen-address=127.0.0.1:${port}`,
  ]);
  await waitForHttp(`${url}/-/ready`, { timeoutMs: 60_000, proc });
  return { name, url, proc, logFile, startedAt };
}

type Replica = Awaited<ReturnType<typeof startReplica>>;

async function metrics(url: string): Promise<string> {
  return await (await fetch(`${url}/metrics`)).text();
}

/**
 * Remote-write lag of a replica now, s (highest appended − highest sent);
 * before its first successful send, from the replica's start.
 */
async function lagOf(r: Replica): Promise<number> {
  const m = await metrics(r.url);
  const sent = metricSum(m, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds");
  return metricSum(m, "prometheus_remote_storage_highest_timestamp_in_seconds") -
    (sent > 0 ? sent : r.startedAt / 1000);
}

async function scrapedOnce(r: Replica, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${r.url}/api/v1/targets?state=active`);
      const t: { health: string }[] = (await res.json()).data.activeTargets;
      if (t.length && t.every((x) => x.health === "up")) return;
    } catch {
      // Not yet.
    }
    await sleep(200);
  }
  throw new Error(`${r.name}: targets not up after ${timeoutMs} ms`);
}

/** Retry warnings in a replica's log between two instants (by the lines' `ts=`). */
async function warnings(r: Replica, from: number, to: number) {
  const text = await Deno.readTextFile(r.logFile);
  let count = 0;
  let inWindow = 0;
  const errors = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!/retrying|Failed to send batch/i.test(line)) continue;
    count++;
    const ts = Date.parse(/\bts=(\S+)/.exec(line)?.[1] ?? "");
    if (!(ts >= from && ts <= to)) continue;
    inWindow++;
    const err = (/\berr="((?:[^"\\]|\\.)*)"/.exec(line)?.[1] ?? "?")
      .replace(/\d+/g, "N").slice(0, 160);
    errors.set(err, (errors.get(err) ?? 0) + 1);
  }
  return { total: count, inWindow, errors: Object.fromEntries(errors) };
}

async function main(): Promise<void> {
  const dirArg = arg("checkout", REPO_ROOT);
  const checkout = dirArg.startsWith("/") ? dirArg : `${Deno.cwd()}/${dirArg}`;
  const label = arg("label", checkout === REPO_ROOT ? "this checkout" : checkout);
  const warmupMs = Number(arg("warmup", "30")) * 1000;
  const windowMs = Number(arg("seconds", "120")) * 1000;
  const everyMs = Number(arg("every", "5")) * 1000;
  const nTargets = Number(arg("targets", "4"));
  const quiet = await waitQuiet(log, Number(arg("quiet-wait-max", "300")) * 1000);
  const load0 = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  const commit = new TextDecoder().decode(
    (await new Deno.Command("git", {
      args: ["-C", checkout, "rev-parse", "--short", "HEAD"],
      stdout: "piped",
    }).output()).stdout,
  ).trim();
  log(`checkout ${checkout} (${commit}); load average ${load0}`);
  const db = await freshDatabase("bench_ha_prom");
  try {
    const dir = await tempDir("promscale-ha-prometheus-");
    const args = ["--metrics.high-availability", "--telemetry.log.level", "warn"];
    const connectors = await Promise.all([
      startConnectorIn(checkout, db.uri, args, "connector-a"),
      startConnectorIn(checkout, db.uri, args, "connector-b"),
    ]);
    const lb = await startHaproxy(connectors.map((c) => c.address));
    const exporters = await Promise.all(
      Array.from({ length: nTargets }, () => startNodeExporter()),
    );
    const targets = exporters.map((e) => e.address);
    const writeUrl = `${lb.url}/write`;
    const r1 = await startReplica("r1", targets, writeUrl, dir);
    // r1 first, so that it leads: wait for its lease.
    const leaseDeadline = Date.now() + 60_000;
    while (true) {
      const rows = await db.sql`SELECT 1 FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`
        .catch(() => []);
      if (rows.length) break;
      if (Date.now() > leaseDeadline) throw new Error("r1 got no lease in 60 s");
      await sleep(250);
    }
    const r2 = await startReplica("r2", targets, writeUrl, dir);
    await scrapedOnce(r2);
    log(`both replicas scrape ${nTargets} targets; warm-up ${warmupMs / 1000} s`);
    await sleep(warmupMs);

    const m0 = await Promise.all([r1, r2].map((r) => metrics(r.url)));
    const c0 = await Promise.all(connectors.map((c) => metrics(c.url)));
    const from = Date.now();
    const lags: Record<string, number[]> = { r1: [], r2: [] };
    const stage: number[] = [];
    const [{ staging }] = await db.sql<{ staging: boolean }[]>`
      SELECT to_regclass('_prom_data.ha_stage') IS NOT NULL AS staging`;
    while (Date.now() - from < windowMs) {
      for (const r of [r1, r2]) lags[r.name].push(await lagOf(r));
      if (staging) {
        const [{ n }] = await db.sql<
          { n: string }[]
        >`SELECT count(*) AS n FROM _prom_data.ha_stage`;
        stage.push(Number(n));
      }
      await sleep(Math.max(0, everyMs - ((Date.now() - from) % everyMs)));
    }
    const to = Date.now();
    const m1 = await Promise.all([r1, r2].map((r) => metrics(r.url)));
    const c1 = await Promise.all(connectors.map((c) => metrics(c.url)));
    const [lease] = await db.sql<{ leader_name: string }[]>`
      SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`;
    const [{ leases }] = await db.sql<{ leases: string }[]>`
      SELECT count(*) AS leases FROM _prom_catalog.ha_leases_logs WHERE cluster_name = 'c1'`;
    // Copies: stored samples closer than half the 1 s scrape interval to
    // the previous one of their series, in the window.
    const [close] = await db.sql<{ close: string; total: string }[]>`
      SELECT count(*) FILTER (WHERE d < interval '500 milliseconds') AS close, count(*) AS total
      FROM (SELECT x.time - lag(x.time) OVER (PARTITION BY x.series_id ORDER BY x.time) AS d, x.time
            FROM _prom_data.samples x JOIN _prom_catalog.series s ON s.id = x.series_id
            WHERE s.labels @> '{"cluster":"c1"}') t
      WHERE time >= to_timestamp(${from / 1000}) AND time <= to_timestamp(${to / 1000})`;
    const minutes = (to - from) / 60_000;
    const delta = (i: number, name: string) => metricSum(m1[i], name) - metricSum(m0[i], name);
    const cdelta = (name: string, labels?: string) =>
      c1.reduce((s, m) => s + metricSum(m, name, labels), 0) -
      c0.reduce((s, m) => s + metricSum(m, name, labels), 0);
    const replicas: Record<string, unknown> = {};
    for (const [i, r] of [r1, r2].entries()) {
      const w = await warnings(r, from, to);
      replicas[r.name] = {
        role: r.name === lease?.leader_name ? "leader" : "follower",
        retryWarningsPerMinute: w.inWindow / minutes,
        retryWarningsInWindow: w.inWindow,
        retryWarningsSinceStart: w.total,
        warningErrors: w.errors,
        lagSeconds: {
          median: median(lags[r.name]),
          max: Math.max(...lags[r.name]),
          samples: lags[r.name].map((x) => Math.round(x * 100) / 100),
        },
        samplesSentPerSecond: delta(i, "prometheus_remote_storage_samples_total") /
          ((to - from) / 1000),
        samplesRetried: delta(i, "prometheus_remote_storage_samples_retried_total"),
        samplesFailed: delta(i, "prometheus_remote_storage_samples_failed_total"),
        shards: metricSum(m1[i], "prometheus_remote_storage_shards"),
      };
    }
    const result = {
      label,
      checkout,
      commit,
      startedAt: new Date(from).toISOString(),
      windowSeconds: (to - from) / 1000,
      loadavg: {
        start: load0,
        end: Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" "),
      },
      testsBusy: quiet.busy,
      targets: nTargets,
      leader: lease?.leader_name,
      leasesGranted: Number(leases),
      replicas,
      connectors: {
        leaderChanges: cdelta("promscale_ha_leader_changes_total"),
        accepted: cdelta("promscale_ha_samples_accepted_total"),
        staged: cdelta("promscale_ha_samples_staged_total"),
        reconciled: {
          duplicate: cdelta("promscale_ha_reconciled_samples_total", 'outcome="duplicate"'),
          filled: cdelta("promscale_ha_reconciled_samples_total", 'outcome="filled"'),
          undone: cdelta("promscale_ha_reconciled_samples_total", 'outcome="undone"'),
        },
        dropped: cdelta("promscale_ingest_samples_dropped_total"),
        stageRows: { median: median(stage), max: Math.max(...stage) },
      },
      storedInWindow: Number(close.total),
      storedCloserThanHalfInterval: Number(close.close),
    };
    const outDir = `${REPO_ROOT}/bench/out`;
    await Deno.mkdir(outDir, { recursive: true });
    const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
    const name = label.replace(/[^A-Za-z0-9_-]+/g, "_");
    await Deno.writeTextFile(
      `${outDir}/ha-prometheus-${name}-${stamp}.json`,
      JSON.stringify(result, null, 2),
    );
    console.log(JSON.stringify(result));
  } finally {
    await killAll();
    if (Deno.args.includes("--keep-db")) log(`database kept: ${db.uri}`);
    else await db.drop();
  }
}

if (import.meta.main) await main();
