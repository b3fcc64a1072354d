/**
 * The HA part of the benchmark, shared by bench/run.ts (`--only ha`) and
 * bench/ha_compare.ts (the same load against connectors of two checkouts):
 * one connector with `--metrics.high-availability` on a fresh database, an
 * HA plan (bench/payloads.ts: two replicas of one cluster) sent by the load
 * generator, then checks and counters.
 *
 * Both HA designs are understood, so that one driver measures either:
 *  - per series (the current one): the leader's samples are stored at once
 *    (fenced), every follower sample is staged in `_prom_data.ha_stage` and
 *    decided by the reconciler about once a second. The run waits for the
 *    stage to drain (`--drain-uri` of the load generator) and counts the
 *    CPU of that wait too; it then checks that the stage is empty, that
 *    the rows stored are the leader's acknowledged samples (the follower's
 *    are copies of the same rounds) and reads `promscale_ha_samples_staged_total`
 *    and `promscale_ha_reconciled_samples_total{outcome}`;
 *  - handover window (up to commit 83237c0): followers' samples dropped in
 *    memory (`promscale_ingest_samples_dropped_total`) or held back (503)
 *    while within a handover window of the leader. There is no stage.
 *
 * Also the bench's etiquette on a shared machine: {@linkcode waitQuiet}
 * waits until no `deno test` runs before a measurement.
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { freePort } from "../tests/helpers/ports.ts";
import { REPO_ROOT, type Service, spawnConnector, waitForHttp } from "../tests/helpers/procs.ts";
import type { LoadResult } from "./loadgen.ts";

/** Sum of a metric's samples (all label sets) in a Prometheus text exposition. */
export function metricSum(text: string, name: string, labels?: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      if (labels && !line.includes(labels)) continue;
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * True while some `deno test` process runs on the machine (another
 * engineer's test suite), or another benchmark's load generator (called
 * between this process's own runs, when none of its own runs).
 */
export async function testsRunning(): Promise<boolean> {
  for (const pattern of ["deno test", "bench/loadgen\\.ts"]) {
    // pgrep without a shell: the shell's own command line would match.
    const out = await new Deno.Command("pgrep", { args: ["-f", pattern], stdout: "piped" })
      .output();
    if (new TextDecoder().decode(out.stdout).trim() !== "") return true;
  }
  return false;
}

/** A 1-minute load average above this (on 2 cores) means someone else is busy too. */
const MAX_LOAD = 3;

/**
 * Waits until no `deno test` runs and the load average is at most
 * {@linkcode MAX_LOAD}, polling every 15 s, at most `maxMs`
 * (default 5 min). Returns how long it waited and whether tests still ran.
 */
export async function waitQuiet(
  log: (msg: string) => void,
  maxMs = 300_000,
): Promise<{ waitedMs: number; busy: boolean }> {
  const t0 = Date.now();
  const load1 = () => Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  while (await testsRunning() || load1() > MAX_LOAD) {
    if (Date.now() - t0 >= maxMs) {
      log(
        `deno test still running or load average ${load1()} after ${
          Math.round(maxMs / 1000)
        } s: measuring anyway`,
      );
      return { waitedMs: Date.now() - t0, busy: true };
    }
    log(
      `a deno test run, another benchmark's load or a load average of ${load1()} ` +
        `(> ${MAX_LOAD}): waiting 15 s`,
    );
    await new Promise((r) => setTimeout(r, 15_000));
  }
  return { waitedMs: Date.now() - t0, busy: false };
}

/** Runs the connector of checkout `dir` (`deno run -A main.ts …`) and waits for /healthz. */
export async function startConnectorIn(
  dir: string,
  dbUri: string,
  args: string[],
  name = "connector",
): Promise<Service> {
  const port = freePort();
  const proc = spawnConnector([
    "--db.uri",
    dbUri,
    "--web.listen-address",
    `127.0.0.1:${port}`,
    ...args,
  ], { name, cwd: dir });
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 60_000, proc });
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  return {
    proc,
    port,
    address: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    stop: async () => (await proc.stop()).code,
  };
}

/** Runs bench/loadgen.ts (of this checkout) in its own process; returns its JSON line. */
export async function runLoadgen(args: string[]): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/loadgen.ts", ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!out.success) {
    throw new Error(
      `bench/loadgen.ts failed (exit ${out.code}): ${
        new TextDecoder().decode(out.stderr).slice(-2000)
      }`,
    );
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

/** What one HA run measured. */
export interface HaRun {
  /** The checkout's label ("before", "after", "this checkout"). */
  label: string;
  design: "per-series" | "handover";
  load: LoadResult;
  /** Timed samples sent by the leader and the follower (what the connector received). */
  received: { leader: number; follower: number };
  acked: { leader: number; follower: number };
  /** Rows in `_prom_data.samples` at the end. */
  stored: number;
  /** The leader's timed acknowledged samples per second of the timed part. */
  storedPerSecond: number;
  /** Timed samples received (both replicas, 2xx) per second of the timed part. */
  receivedPerSecond: number;
  /** Seconds from the end of the timed part until the stage was empty (0: no stage). */
  drainSeconds: number;
  /** CPU seconds over the timed part and the drain. */
  cpu: { postgres: number; connector: number; generator: number };
  /** CPU µs per received sample over the timed part and the drain. */
  usPerReceived: { postgres: number; connector: number };
  /** PostgreSQL CPU µs per received sample during the timed part alone. */
  pgUsPerReceivedTimed: number;
  counters: {
    /** handover design: promscale_ingest_samples_dropped_total */
    dropped: number;
    staged: number;
    duplicate: number;
    filled: number;
    undone: number;
    waiting: number;
  };
  status: Record<string, number>;
  verified: string;
  /** Empty when every check held. */
  problems: string[];
}

/**
 * One HA run: a fresh database, the connector of checkout `dir` with
 * `--metrics.high-availability` (default failover timeout), the HA plan
 * `plan` from the load generator, then the checks (see the module comment).
 */
export async function haRun(o: {
  label: string;
  dir: string;
  plan: string;
  connectorArgs?: string[];
  drainTimeoutS?: number;
}): Promise<HaRun> {
  const db = await freshDatabase("bench_ha");
  try {
    const svc = await startConnectorIn(o.dir, db.uri, [
      "--metrics.high-availability",
      "--telemetry.log.level",
      "warn",
      ...(o.connectorArgs ?? []),
    ]);
    try {
      const load = await runLoadgen([
        "--url",
        `${svc.url}/write`,
        "--plan",
        o.plan,
        "--pid",
        String(svc.proc.pid),
        "--pg-db",
        db.name,
        "--drain-uri",
        db.uri,
        "--drain-timeout",
        String(o.drainTimeoutS ?? 60),
      ]);
      const drain = load.drain!;
      const design = drain.staging ? "per-series" : "handover";
      const read = async () => {
        const text = await (await fetch(`${svc.url}/metrics`)).text();
        return {
          dropped: metricSum(text, "promscale_ingest_samples_dropped_total"),
          staged: metricSum(text, "promscale_ha_samples_staged_total"),
          duplicate: metricSum(
            text,
            "promscale_ha_reconciled_samples_total",
            'outcome="duplicate"',
          ),
          filled: metricSum(text, "promscale_ha_reconciled_samples_total", 'outcome="filled"'),
          undone: metricSum(text, "promscale_ha_reconciled_samples_total", 'outcome="undone"'),
          waiting: metricSum(text, "promscale_ha_stage_waiting"),
        };
      };
      const acked = {
        leader: load.ackedSamples.leader ?? 0,
        follower: load.ackedSamples.follower ?? 0,
      };
      let counters = await read();
      // The reconciler counts a pass once its transaction has committed:
      // give the counters a moment to catch up with the empty stage.
      for (let i = 0; i < 20 && drain.empty; i++) {
        if (counters.duplicate + counters.filled >= counters.staged) break;
        await new Promise((r) => setTimeout(r, 250));
        counters = await read();
      }
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      const stored = Number(n);
      const problems: string[] = [];
      if (stored !== acked.leader) {
        problems.push(`${stored} rows stored, the leader's ${acked.leader} acked`);
      }
      let verified: string;
      if (design === "per-series") {
        if (!drain.empty) {
          problems.push(
            `the stage still held ${drain.left} rows after ${drain.seconds.toFixed(1)} s`,
          );
        }
        // A follower's copy of a leader sample this connector committed is
        // dropped in memory (src/ha/recent.ts); the rest is staged.
        if (counters.staged + counters.dropped !== acked.follower) {
          problems.push(
            `${counters.staged} staged and ${counters.dropped} dropped as copies, ` +
              `the follower's ${acked.follower} acked`,
          );
        }
        if (counters.duplicate !== counters.staged || counters.filled || counters.undone) {
          problems.push(
            `reconciled: ${counters.duplicate} duplicate, ${counters.filled} filled, ` +
              `${counters.undone} undone; the follower's ${acked.follower} acked`,
          );
        }
        verified =
          `${stored} rows = leader's ${acked.leader} acked; follower's ${acked.follower} ` +
          `acked, ${counters.dropped} dropped in memory as copies, ${counters.staged} staged, ` +
          `${counters.duplicate} reconciled as duplicates, ` +
          `${counters.filled} filled, ${counters.undone} undone; stage ${
            drain.empty ? "empty" : `${drain.left} rows left`
          } ${drain.seconds.toFixed(1)} s after the load`;
      } else {
        if (counters.dropped !== acked.follower) {
          problems.push(`${counters.dropped} dropped, the follower's ${acked.follower} acked`);
        }
        verified =
          `${stored} rows = leader's ${acked.leader} acked; follower's ${acked.follower} ` +
          `acked and ${counters.dropped} counted dropped (no stage)`;
      }
      const received = {
        leader: load.timedSentSamples.leader ?? 0,
        follower: load.timedSentSamples.follower ?? 0,
      };
      const total = received.leader + received.follower;
      const us = (s: number) => s / total * 1e6;
      const drainSeconds = drain.staging ? drain.seconds : 0;
      // Without a stage the drain is only the check that there is none: the
      // timed part's CPU is the whole cost.
      const cpu = {
        postgres: drain.staging ? drain.postgres : load.cpu.postgres,
        connector: drain.staging ? drain.target : load.cpu.target,
        generator: load.cpu.generator,
      };
      return {
        label: o.label,
        design,
        load,
        received,
        acked,
        stored,
        storedPerSecond: (load.timedAckedSamples.leader ?? 0) / load.seconds,
        receivedPerSecond: load.samplesPerSecond,
        drainSeconds,
        cpu,
        usPerReceived: { postgres: us(cpu.postgres), connector: us(cpu.connector) },
        pgUsPerReceivedTimed: us(load.cpu.postgres),
        counters,
        status: load.status,
        verified,
        problems,
      };
    } finally {
      await svc.stop();
    }
  } finally {
    await db.drop();
  }
}
