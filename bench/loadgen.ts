/**
 * The remote-write load generator, run as its own process:
 *
 *   deno run -A bench/loadgen.ts --url http://127.0.0.1:9201/write --plan plan.bin
 *     [--pid <connector pid>] [--pg-db <database>]
 *     [--drain-uri <database uri> [--drain-timeout 60]]
 *
 * Reads a plan of pre-encoded bodies (bench/payloads.ts), sends the warm-up
 * slot (untimed), then starts the clock and sends every timed request: one
 * sender per plan slice, each in order and one request at a time, as
 * Prometheus's shards do, with no retries. Prints one JSON line: samples/s,
 * request latency p50/p99, status counts, and the CPU seconds used during
 * the timed part by itself, by the process `--pid` and by PostgreSQL (the
 * processes serving `--pg-db`, from /proc).
 *
 * With `--drain-uri` (the HA load of the per-series design), it then waits
 * until the database's HA stage (`_prom_data.ha_stage`, where followers'
 * samples wait for the reconciler) is empty, at most `--drain-timeout`
 * seconds, and reports the CPU of the timed part and the drain together:
 * the reconciler's work on the load is part of its cost. Without the table
 * (an older schema) there is nothing to wait for.
 *
 * @module
 */
import { postgres } from "../deps.ts";
import { loadPlan, type PlannedRequest } from "./payloads.ts";
import { CpuSampler, cpuSeconds, postgresOf } from "./proc.ts";

/** What one load run measured. */
export interface LoadResult {
  requests: number;
  seconds: number;
  /** Samples of timed requests answered 2xx, per second. */
  samplesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** "<role> <status>" → requests, for the timed part. */
  status: Record<string, number>;
  /** Samples answered 2xx, by role, warm-up included. */
  ackedSamples: Record<string, number>;
  /** Samples of timed requests answered 2xx, by role. */
  timedAckedSamples: Record<string, number>;
  /** Samples of timed requests sent (whatever the answer), by role. */
  timedSentSamples: Record<string, number>;
  /** Seconds the untimed warm-up slot took. */
  warmupSeconds: number;
  /** Samples answered otherwise, by role, warm-up included. */
  failedSamples: Record<string, number>;
  /** First non-2xx answer bodies (a few), for the report. */
  errors: string[];
  cpu: { generator: number; target: number; postgres: number };
  /**
   * With `--drain-uri`: the wait for an empty HA stage after the timed part;
   * CPU seconds of the target and PostgreSQL over the timed part and the
   * drain together.
   */
  drain?: {
    seconds: number;
    /** False when the stage was still not empty at the timeout (or has no table). */
    empty: boolean;
    /** Rows left in the stage at the end. */
    left: number;
    /** False when the database has no `_prom_data.ha_stage` (an older schema). */
    staging: boolean;
    target: number;
    postgres: number;
  };
}

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main(): Promise<void> {
  const url = arg("url");
  const planPath = arg("plan");
  if (!url || !planPath) throw new Error("Usage: loadgen.ts --url <write url> --plan <file>");
  const pid = Number(arg("pid") ?? 0);
  const db = arg("pg-db");
  const drainUri = arg("drain-uri");
  const drainTimeoutMs = Number(arg("drain-timeout") ?? 60) * 1000;
  const plan = await loadPlan(planPath);
  // The drain's connection is made before any clock starts.
  const drainSql = drainUri
    ? postgres(drainUri, { max: 1, onnotice: () => {}, connect_timeout: 10 })
    : undefined;
  let staging = false;
  if (drainSql) {
    const [r] = await drainSql<{ t: boolean }[]>`
      SELECT to_regclass('_prom_data.ha_stage') IS NOT NULL AS t`;
    staging = r.t;
  }
  const headers = {
    "content-encoding": "snappy",
    "content-type": "application/x-protobuf",
    "x-prometheus-remote-write-version": "0.1.0",
    "user-agent": "promscale-bench/1",
  };
  const acked: Record<string, number> = {};
  const failed: Record<string, number> = {};
  const status: Record<string, number> = {};
  const errors: string[] = [];
  const latencies: number[] = [];
  let timedAcked = 0;
  const timedByRole: Record<string, number> = {};

  const timedSent: Record<string, number> = {};
  for (const list of plan.timed) {
    for (const r of list) timedSent[r.role] = (timedSent[r.role] ?? 0) + r.samples;
  }
  const send = async (r: PlannedRequest, timed: boolean) => {
    const t0 = performance.now();
    let code: number;
    try {
      const res = await fetch(url, {
        method: "POST",
        headers,
        body: r.body as Uint8Array<ArrayBuffer>,
      });
      const text = await res.text();
      code = res.status;
      if (code >= 300 && errors.length < 5) errors.push(`${code} ${text.trim().slice(0, 300)}`);
    } catch (err) {
      code = 0;
      if (errors.length < 5) errors.push(`fetch failed: ${(err as Error).message}`);
    }
    const ms = performance.now() - t0;
    if (code >= 200 && code < 300) {
      acked[r.role] = (acked[r.role] ?? 0) + r.samples;
      if (timed) {
        timedAcked += r.samples;
        timedByRole[r.role] = (timedByRole[r.role] ?? 0) + r.samples;
      }
    } else failed[r.role] = (failed[r.role] ?? 0) + r.samples;
    if (timed) {
      latencies.push(ms);
      const k = `${r.role} ${code}`;
      status[k] = (status[k] ?? 0) + 1;
    }
  };
  const runAll = (lists: PlannedRequest[][], timed: boolean) =>
    Promise.all(lists.map(async (list) => {
      for (const r of list) await send(r, timed);
    }));

  const w0 = performance.now();
  await runAll(plan.warmup, false);
  const warmupSeconds = (performance.now() - w0) / 1000;

  const pg = db ? new CpuSampler(postgresOf(db)) : undefined;
  pg?.start();
  const gen0 = cpuSeconds("self");
  const target0 = pid ? cpuSeconds(pid) : 0;
  const t0 = performance.now();
  await runAll(plan.timed, true);
  const seconds = (performance.now() - t0) / 1000;
  const target1 = pid ? cpuSeconds(pid) : 0;
  const gen1 = cpuSeconds("self");
  const pgCpu = pg ? pg.read() : 0;
  let drain: LoadResult["drain"];
  if (drainSql) {
    const d0 = performance.now();
    let left = 0;
    if (staging) {
      while (true) {
        const [r] = await drainSql<{ busy: boolean }[]>`
          SELECT EXISTS (SELECT 1 FROM _prom_data.ha_stage) AS busy`;
        if (!r.busy || performance.now() - d0 >= drainTimeoutMs) {
          if (r.busy) {
            const [c] = await drainSql<{ n: string }[]>`
              SELECT count(*) AS n FROM _prom_data.ha_stage`;
            left = Number(c.n);
          }
          break;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    drain = {
      seconds: (performance.now() - d0) / 1000,
      empty: staging && left === 0,
      left,
      staging,
      target: pid ? cpuSeconds(pid) - target0 : 0,
      postgres: pg ? pg.read() : 0,
    };
    await drainSql.end({ timeout: 5 });
  }
  pg?.stop();

  latencies.sort((a, b) => a - b);
  const result: LoadResult = {
    requests: latencies.length,
    seconds,
    samplesPerSecond: timedAcked / seconds,
    latencyMs: {
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      max: latencies[latencies.length - 1] ?? NaN,
    },
    status,
    ackedSamples: acked,
    timedAckedSamples: timedByRole,
    timedSentSamples: timedSent,
    warmupSeconds,
    failedSamples: failed,
    errors,
    cpu: { generator: gen1 - gen0, target: target1 - target0, postgres: pgCpu },
    drain,
  };
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main();
