/**
 * The remote-write load generator, run as its own process:
 *
 *   deno run -A bench/loadgen.ts --url http://127.0.0.1:9201/write --plan plan.bin
 *     [--pid <connector pid>] [--pg-db <database>]
 *
 * Reads a plan of pre-encoded bodies (bench/payloads.ts), sends the warm-up
 * slot (untimed), then starts the clock and sends every timed request: one
 * sender per plan slice, each in order and one request at a time, as
 * Prometheus's shards do, with no retries. Prints one JSON line: samples/s,
 * request latency p50/p99, status counts, and the CPU seconds used during
 * the timed part by itself, by the process `--pid` and by PostgreSQL (the
 * processes serving `--pg-db`, from /proc).
 *
 * @module
 */
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
  /** Seconds the untimed warm-up slot took. */
  warmupSeconds: number;
  /** Samples answered otherwise, by role, warm-up included. */
  failedSamples: Record<string, number>;
  /** First non-2xx answer bodies (a few), for the report. */
  errors: string[];
  cpu: { generator: number; target: number; postgres: number };
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
  const plan = await loadPlan(planPath);
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
  const pgCpu = pg ? pg.stop() : 0;

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
    warmupSeconds,
    failedSamples: failed,
    errors,
    cpu: { generator: gen1 - gen0, target: target1 - target0, postgres: pgCpu },
  };
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main();
