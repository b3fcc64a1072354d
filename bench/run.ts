/**
 * The ingest benchmark (`deno task bench`): the connector against
 * PostgreSQL's own limit and against the Prometheus receiver, on the same
 * rows and payloads, in one run, so that the ratios survive a noisy machine.
 *
 *   deno task bench [--series 10000] [--slots 60] [--batch 2000] [--senders 8]
 *     [--interval 15] [--repeat 1]
 *     [--only decode,copy,prometheus,connector,ha,rss,storage,promql]
 *     [--rss-series 100000] [--decode-seconds 3] [--connector-args "--db.connections-max 8"]
 *     [--ha-lag-slots 0] [--ha-drain-timeout 60]
 *
 * Each measured part runs on its own: a fresh database (or TSDB directory)
 * per run, the load generator in its own process (bench/loadgen.ts), and
 * every run verified (rows stored = samples acknowledged). Prints a
 * Markdown report and writes it, with the raw figures as JSON, to
 * bench/out/. Never part of `deno task test`.
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { freePort } from "../tests/helpers/ports.ts";
import {
  killAll,
  REPO_ROOT,
  spawnConnector,
  spawnProcess,
  startConnector,
  tempDir,
  waitForHttp,
} from "../tests/helpers/procs.ts";
import { haRun, median, metricSum } from "./ha.ts";
import type { DecodeResult } from "./decode.ts";
import { storageReport, type StorageResult } from "./storage.ts";
import type { LoadResult } from "./loadgen.ts";
import {
  benchLabels,
  benchValue,
  buildPlan,
  forEachBatch,
  type LoadShape,
  savePlan,
} from "./payloads.ts";
import { CpuSampler, postgresOf, statusKb } from "./proc.ts";
import type { WriteSeries } from "../src/ingest.ts";
import { encodeCopy } from "../src/storage/copy_format.ts";

interface Options {
  shape: LoadShape;
  repeat: number;
  only: Set<string>;
  rssSeries: number;
  decodeSeconds: number;
  connectorArgs: string[];
  /** How many slots the HA follower trails the leader (0: the same rounds at the same time). */
  haLagSlots: number;
  /** How long the HA run waits for the reconciler to empty the stage, s. */
  haDrainTimeoutS: number;
}

const PARTS = ["decode", "copy", "prometheus", "connector", "ha", "rss", "storage", "promql"];

function parseArgs(argv: string[]): Options {
  const get = (name: string, def: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
  };
  const num = (name: string, def: number) => {
    const v = Number(get(name, String(def)));
    if (!Number.isFinite(v) || v < 0) {
      throw new Error(`Bad value for --${name}: "${get(name, "")}"`);
    }
    return v;
  };
  const intervalMs = num("interval", 15) * 1000;
  const slots = num("slots", 60);
  const shape: LoadShape = {
    series: num("series", 10_000),
    slots,
    batch: num("batch", 2_000),
    senders: num("senders", 8),
    intervalMs,
    // The last slot is the last whole interval before now.
    startMs: Math.floor(Date.now() / intervalMs) * intervalMs - slots * intervalMs,
  };
  const only = new Set(get("only", PARTS.join(",")).split(",").filter(Boolean));
  for (const p of only) {
    if (!PARTS.includes(p)) throw new Error(`Unknown part "${p}": choose from ${PARTS.join(", ")}`);
  }
  return {
    shape,
    repeat: Math.max(1, num("repeat", 1)),
    only,
    rssSeries: num("rss-series", 100_000),
    decodeSeconds: num("decode-seconds", 3),
    connectorArgs: get("connector-args", "").split(" ").filter(Boolean),
    haLagSlots: Math.floor(num("ha-lag-slots", 0)),
    haDrainTimeoutS: num("ha-drain-timeout", 60),
  };
}

// ---------------------------------------------------------------- helpers

/** Runs a bench script; resolves with its last line of output (a JSON result). */
async function runDeno(script: string, args: string[]): Promise<string> {
  return (await runDenoOutput(script, args)).split("\n").pop()!;
}

/** Runs a bench script; resolves with its whole output. */
async function runDenoOutput(script: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `${script} failed (exit ${out.code}): ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return stdout;
}

function runLoadgen(url: string, plan: string, pid?: number, db?: string): Promise<LoadResult> {
  const args = ["--url", url, "--plan", plan];
  if (pid) args.push("--pid", String(pid));
  if (db) args.push("--pg-db", db);
  return runDeno("bench/loadgen.ts", args).then((line) => JSON.parse(line));
}

function sum(o: Record<string, number>): number {
  return Object.values(o).reduce((a, b) => a + b, 0);
}

async function psql(db: string, args: string[]): Promise<string> {
  const out = await new Deno.Command("psql", {
    args: [
      "-X",
      "-q",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      "127.0.0.1",
      "-U",
      "postgres",
      "-d",
      db,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`psql failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** A measured run of one target. */
interface RunResult {
  name: string;
  /** Timed samples (rows) stored per second. */
  samplesPerSecond: number;
  seconds: number;
  samples: number;
  latencyMs?: { p50: number; p99: number; max: number };
  status?: Record<string, number>;
  cpu: { client: number; target: number; postgres: number };
  verified: string;
  /** HA only. */
  ha?: {
    /** The leader's timed acknowledged samples (the rows stored) per second. */
    storedPerSecond: number;
    leaderAcked: number;
    followerAcked: number;
    /** promscale_ha_samples_staged_total */
    staged: number;
    /** promscale_ha_reconciled_samples_total by outcome. */
    reconciled: { duplicate: number; filled: number; undone: number };
    /** From the end of the timed part until the stage was empty. */
    drainSeconds: number;
    /** PostgreSQL CPU µs per received sample (leader + follower), timed part and drain. */
    pgUsPerReceived: number;
  };
  errors?: string[];
}

// ---------------------------------------------------------------- \copy baseline

const SAMPLES_DDL = `
CREATE TABLE bench_samples (
  series_id bigint NOT NULL,
  time      timestamptz NOT NULL,
  value     double precision NOT NULL,
  PRIMARY KEY (series_id, time)
) PARTITION BY RANGE (time);`;

/** The rows of the load as COPY files: warm-up slot apart, then batch by batch. */
interface CopyRows {
  format: "text" | "binary";
  warm: Uint8Array;
  /** One file each, in the order the senders' requests would arrive. */
  batches: Uint8Array[];
  /** All timed batches as one file. */
  all: Uint8Array;
}

/**
 * The (time, value, series_id) rows of the load, series i having id i + 1:
 * text (psql's default format) or PostgreSQL's binary COPY format, the one
 * the connector sends (encoded by the connector's own encodeCopy).
 */
function copyRows(shape: LoadShape, format: "text" | "binary"): CopyRows {
  const enc = new TextEncoder();
  type Batch = { series: number[]; slots: number[] };
  const encode = (batches: Batch[]): Uint8Array => {
    if (format === "text") {
      let text = "";
      for (const b of batches) {
        for (let k = 0; k < b.series.length; k++) {
          const t = new Date(shape.startMs + b.slots[k] * shape.intervalMs).toISOString();
          text += `${t}\t${benchValue(b.series[k], b.slots[k])}\t${b.series[k] + 1}\n`;
        }
      }
      return enc.encode(text);
    }
    const series: WriteSeries[] = [];
    const ids: number[] = [];
    for (const b of batches) {
      for (let k = 0; k < b.series.length; k++) {
        series.push({
          labels: [],
          timestamps: [shape.startMs + b.slots[k] * shape.intervalMs],
          values: new Float64Array([benchValue(b.series[k], b.slots[k])]),
        });
        ids.push(b.series[k] + 1);
      }
    }
    return encodeCopy(series, ids, series.length);
  };
  const warm: Batch[] = [];
  const perSender: Batch[][] = [];
  for (let s = 0; s < shape.senders; s++) {
    const mine: Batch[] = [];
    forEachBatch(shape, s, (series, slots, warmup) => {
      (warmup ? warm : mine).push({ series: [...series], slots: [...slots] });
    });
    perSender.push(mine);
  }
  // Interleave the senders' batches as they would arrive.
  const timed: Batch[] = [];
  for (let i = 0; perSender.some((l) => i < l.length); i++) {
    for (const l of perSender) if (i < l.length) timed.push(l[i]);
  }
  return {
    format,
    warm: encode(warm),
    batches: timed.map((b) => encode([b])),
    all: encode(timed),
  };
}

/** Name of a \copy baseline run. */
function copyName(format: "text" | "binary", whole: boolean): string {
  return `psql \\copy ${format}, ${whole ? "one transaction" : "2,000-row transactions"}`;
}

async function copyBaseline(
  shape: LoadShape,
  dir: string,
  rows: CopyRows,
  whole: boolean,
): Promise<RunResult> {
  const name = copyName(rows.format, whole);
  const db = await freshDatabase(`bench_copy_${rows.format}_${whole ? "whole" : "batched"}`);
  try {
    // The same shape as _prom_data.samples: primary key (series_id, time),
    // daily range partitions (here created up front for the days the load covers).
    const days: string[] = [];
    const first = Math.floor(shape.startMs / 86_400_000);
    const last = Math.floor((shape.startMs + shape.slots * shape.intervalMs) / 86_400_000);
    for (let d = first; d <= last; d++) {
      const from = new Date(d * 86_400_000).toISOString();
      const to = new Date((d + 1) * 86_400_000).toISOString();
      days.push(
        `CREATE TABLE bench_samples_${d} PARTITION OF bench_samples FOR VALUES FROM ('${from}') TO ('${to}');`,
      );
    }
    await psql(db.name, ["-c", SAMPLES_DDL + days.join("\n")]);
    const ext = rows.format === "text" ? "tsv" : "bin";
    const copy = (file: string) =>
      rows.format === "text"
        ? `\\copy bench_samples (time, value, series_id) from '${file}'`
        : `\\copy bench_samples (series_id, time, value) from '${file}' with (format binary)`;
    const warmFile = `${dir}/copy_warm.${ext}`;
    await Deno.writeFile(warmFile, rows.warm);
    await psql(db.name, ["-c", copy(warmFile)]);
    const script: string[] = [];
    if (whole) {
      const f = `${dir}/copy_all.${ext}`;
      await Deno.writeFile(f, rows.all);
      script.push(copy(f));
    } else {
      for (let i = 0; i < rows.batches.length; i++) {
        const f = `${dir}/copy_${String(i).padStart(5, "0")}.${ext}`;
        await Deno.writeFile(f, rows.batches[i]);
        // Each \copy in autocommit mode is its own transaction.
        script.push(copy(f));
      }
    }
    const scriptFile = `${dir}/copy.sql`;
    await Deno.writeTextFile(scriptFile, script.join("\n") + "\n");
    const timedRows = shape.series * shape.slots;
    const pg = new CpuSampler(postgresOf(db.name), 50);
    // Debian's psql is a wrapper that execs /usr/lib/postgresql/<v>/bin/psql.
    const client = new CpuSampler((cmd) => /^(\S*\/)?psql /.test(cmd) && cmd.includes(db.name), 50);
    pg.start();
    client.start();
    const t0 = performance.now();
    await psql(db.name, ["-f", scriptFile]);
    const seconds = (performance.now() - t0) / 1000;
    const pgCpu = pg.stop();
    const clientCpu = client.stop();
    const stored = Number(await psql(db.name, ["-c", "SELECT count(*) FROM bench_samples"]));
    const expected = timedRows + shape.series;
    if (stored !== expected) throw new Error(`${name}: ${stored} rows stored, ${expected} sent`);
    return {
      name,
      samplesPerSecond: timedRows / seconds,
      seconds,
      samples: timedRows,
      cpu: { client: clientCpu, target: 0, postgres: pgCpu },
      verified: `${stored} rows = ${expected} sent`,
    };
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------- Prometheus receiver

const PROMETHEUS_NAME = "Prometheus 2.42 receiver";
const CONNECTOR_NAME = "connector";
const CONNECTOR_HA_NAME = "connector, --metrics.high-availability";

const PROMETHEUS_BIN = Deno.env.get("PROMETHEUS_BIN") ?? "/usr/bin/prometheus";

async function prometheusReceiver(shape: LoadShape, plan: string): Promise<RunResult> {
  const dir = await tempDir("promscale-bench-prometheus-");
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  await Deno.writeTextFile(`${dir}/prometheus.yml`, "global:\n  scrape_interval: 15s\n");
  const proc = spawnProcess("prometheus", PROMETHEUS_BIN, [
    `--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/data`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--web.enable-remote-write-receiver",
  ]);
  try {
    await waitForHttp(`${url}/-/ready`, { timeoutMs: 60_000, proc });
    const load = await runLoadgen(`${url}/api/v1/write`, plan, proc.pid);
    const acked = sum(load.ackedSamples);
    // Every sample lies in (last - range, last]: count them all at once.
    const lastMs = shape.startMs + shape.slots * shape.intervalMs;
    const rangeMs = (shape.slots + 1) * shape.intervalMs;
    // Per metric name: count_over_time drops __name__, so series of
    // different metrics with equal other labels would collide in one vector.
    const names = new Set<string>();
    for (let i = 0; i < Math.min(shape.series, 100); i++) names.add(benchLabels(i)[0].value);
    let stored = 0;
    for (const name of names) {
      const q = `sum(count_over_time(${name}[${rangeMs}ms]))`;
      const res = await fetch(
        `${url}/api/v1/query?query=${encodeURIComponent(q)}&time=${lastMs / 1000}`,
      );
      const body = await res.json();
      if (body.status !== "success") {
        throw new Error(`Prometheus query "${q}" failed: ${body.error}`);
      }
      stored += Number(body.data.result[0]?.value?.[1] ?? 0);
    }
    if (stored !== acked) {
      throw new Error(
        `Prometheus: ${stored} samples stored, ${acked} acked (${load.errors.join(" | ")})`,
      );
    }
    return fromLoad(PROMETHEUS_NAME, load, `${stored} samples = ${acked} acked`);
  } finally {
    await proc.stop(5_000);
  }
}

function fromLoad(name: string, load: LoadResult, verified: string): RunResult {
  return {
    name,
    samplesPerSecond: load.samplesPerSecond,
    seconds: load.seconds,
    samples: Math.round(load.samplesPerSecond * load.seconds),
    latencyMs: load.latencyMs,
    status: load.status,
    cpu: { client: load.cpu.generator, target: load.cpu.target, postgres: load.cpu.postgres },
    verified,
    errors: load.errors.length ? load.errors : undefined,
  };
}

// ---------------------------------------------------------------- connector

async function connectorRun(plan: string, args: string[]): Promise<RunResult> {
  const db = await freshDatabase("bench_connector");
  try {
    const svc = await startConnector({
      dbUri: db.uri,
      args: ["--telemetry.log.level", "warn", ...args],
    });
    try {
      const load = await runLoadgen(`${svc.url}/write`, plan, svc.proc.pid, db.name);
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      const stored = Number(n);
      const acked = sum(load.ackedSamples);
      if (stored !== acked) {
        throw new Error(`${CONNECTOR_NAME}: ${stored} rows stored, ${acked} acked`);
      }
      return fromLoad(CONNECTOR_NAME, load, `${stored} rows = ${acked} acked`);
    } finally {
      await svc.stop();
    }
  } finally {
    await db.drop();
  }
}

/**
 * The HA run (bench/ha.ts): the leader's samples stored fenced, the
 * follower's staged and reconciled. Verified once the stage is empty: rows
 * stored = the leader's acknowledged samples, every follower sample staged
 * and reconciled as a duplicate (they are copies of the leader's rounds).
 * CPU counts the timed part and the drain (the reconciler's work).
 */
async function haConnectorRun(plan: string, o: Options): Promise<RunResult> {
  const h = await haRun({
    label: "this checkout",
    dir: REPO_ROOT,
    plan,
    connectorArgs: o.connectorArgs,
    drainTimeoutS: o.haDrainTimeoutS,
  });
  if (h.problems.length) {
    throw new Error(`${CONNECTOR_HA_NAME}: ${h.problems.join("; ")} (${h.verified})`);
  }
  const r = fromLoad(CONNECTOR_HA_NAME, h.load, h.verified);
  r.cpu = { client: h.cpu.generator, target: h.cpu.connector, postgres: h.cpu.postgres };
  r.ha = {
    storedPerSecond: h.storedPerSecond,
    leaderAcked: h.acked.leader,
    followerAcked: h.acked.follower,
    staged: h.counters.staged,
    reconciled: {
      duplicate: h.counters.duplicate,
      filled: h.counters.filled,
      undone: h.counters.undone,
    },
    drainSeconds: h.drainSeconds,
    pgUsPerReceived: h.usPerReceived.postgres,
  };
  return r;
}

/**
 * Asks a Deno process started with --inspect for a full garbage collection
 * (Chrome DevTools protocol) and returns its JS heap in use afterwards.
 */
async function collectGarbage(inspectPort: number): Promise<number> {
  const [target] = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json();
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const call = (method: string) =>
    new Promise<{ usedSize?: number }>((resolve) => {
      const mine = ++id;
      ws.addEventListener("message", (e) => {
        const m = JSON.parse(e.data);
        if (m.id === mine) resolve(m.result ?? {});
      });
      ws.send(JSON.stringify({ id: mine, method }));
    });
  try {
    await call("HeapProfiler.collectGarbage");
    return (await call("Runtime.getHeapUsage")).usedSize ?? NaN;
  } finally {
    ws.close();
  }
}

/**
 * Sends `series` distinct series to a fresh connector and reads its memory
 * from /proc: right after (what an operator sees while series are created,
 * garbage included) and after a full garbage collection (what the cached
 * series really hold). The connector runs with --inspect (on 127.0.0.1)
 * only so that the collection can be asked for.
 */
async function rssRun(planFile: string, series: number, args: string[]) {
  const db = await freshDatabase("bench_rss");
  try {
    const port = freePort();
    const inspectPort = freePort();
    const proc = spawnConnector([
      "--db.uri",
      db.uri,
      "--web.listen-address",
      `127.0.0.1:${port}`,
      "--telemetry.log.level",
      "warn",
      ...args,
    ], { denoFlags: [`--inspect=127.0.0.1:${inspectPort}`] });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/healthz`, { timeoutMs: 60_000, proc });
      const before = statusKb(proc.pid, "VmRSS");
      const load = await runLoadgen(`${url}/write`, planFile, proc.pid, db.name);
      const seconds = load.warmupSeconds;
      const after = statusKb(proc.pid, "VmRSS");
      const hwm = statusKb(proc.pid, "VmHWM");
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const cached = metricSum(metrics, "promscale_series_cache_size");
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_catalog.series`;
      if (Number(n) !== series || sum(load.ackedSamples) !== series) {
        throw new Error(
          `RSS run: ${n} series stored, ${sum(load.ackedSamples)} acked, ${series} sent`,
        );
      }
      const heapAfterGc = await collectGarbage(inspectPort);
      await new Promise((r) => setTimeout(r, 500));
      const afterGc = statusKb(proc.pid, "VmRSS");
      return {
        series,
        cached,
        rssBeforeMb: before / 1024,
        rssAfterMb: after / 1024,
        hwmMb: hwm / 1024,
        rssAfterGcMb: afterGc / 1024,
        heapAfterGcMb: heapAfterGc / 1024 / 1024,
        seriesPerSecond: series / seconds,
        errors: load.errors,
      };
    } finally {
      await proc.stop(10_000);
    }
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------- report

function machine() {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  return {
    nproc: navigator.hardwareConcurrency,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "?",
    memoryGb: Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) / 1024 / 1024,
    loadavg: Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" "),
    deno: Deno.version.deno,
  };
}

const k = (n: number) => Number.isFinite(n) ? `${(n / 1000).toFixed(1)}k` : "–";
const f1 = (n: number) => Number.isFinite(n) ? n.toFixed(1) : "–";
const f2 = (n: number) => Number.isFinite(n) ? n.toFixed(2) : "–";

function report(
  o: Options,
  m: ReturnType<typeof machine>,
  endLoad: string,
  runs: RunResult[][],
  decode: DecodeResult | undefined,
  rss: Awaited<ReturnType<typeof rssRun>> | undefined,
): string {
  const byName = new Map<string, RunResult[]>();
  for (const cycle of runs) {
    for (const r of cycle) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  }
  const med = (name: string) => median((byName.get(name) ?? []).map((r) => r.samplesPerSecond));
  const copyText = med(copyName("text", false));
  const copyBin = med(copyName("binary", false));
  const copyTextWhole = med(copyName("text", true));
  const prom = med(PROMETHEUS_NAME);
  const conn = med(CONNECTOR_NAME);
  const ha = med(CONNECTOR_HA_NAME);
  const s = o.shape;
  const lines: string[] = [];
  lines.push(`## Run of ${new Date().toISOString()}`);
  lines.push("");
  lines.push(
    `Machine: ${m.nproc} cores (${m.cpu}), ${m.memoryGb.toFixed(1)} GB; Deno ${m.deno}; ` +
      `load average ${m.loadavg} at start, ${endLoad} at end.`,
  );
  lines.push(
    `Load: ${s.series} series × ${s.slots} timed slots (+1 warm-up slot) every ${
      s.intervalMs / 1000
    } s, ${s.batch} samples per request, ${s.senders} senders; ${o.repeat} cycle(s), medians shown` +
      (o.connectorArgs.length ? `; connector flags: \`${o.connectorArgs.join(" ")}\`` : "") + ".",
  );
  if (o.only.has("ha")) {
    lines.push(
      `HA load: two replicas of one cluster, each sending every series; the follower ${
        o.haLagSlots
          ? `${o.haLagSlots} slot(s) behind the leader`
          : "the same rounds as the leader at the same time"
      }; about as many samples in all as the plain load.`,
    );
  }
  lines.push("");
  lines.push(
    "| run | samples/s | vs \\copy text 2k-tx | vs \\copy binary 2k-tx | vs Prometheus | p50 / p99 ms | each cycle (k/s) | verified |",
  );
  lines.push("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
  for (const [name, rs] of byName) {
    const v = median(rs.map((r) => r.samplesPerSecond));
    const last = rs[rs.length - 1];
    lines.push(
      `| ${name} | ${k(v)} | ${f2(v / copyText)} | ${f2(v / copyBin)} | ${f2(v / prom)} | ${
        last.latencyMs ? `${f1(last.latencyMs.p50)} / ${f1(last.latencyMs.p99)}` : "–"
      } | ${rs.map((r) => k(r.samplesPerSecond)).join(", ")} | ${last.verified}${
        last.status ? `; status ${JSON.stringify(last.status)}` : ""
      } |`,
    );
  }
  lines.push("");
  lines.push(
    "CPU during the timed part (last cycle), from /proc: the client is the load generator " +
      "(psql for \\copy), the target the connector or Prometheus process, PostgreSQL the " +
      "processes serving the run's database plus its shared background processes. For HA, " +
      "the target's and PostgreSQL's CPU also count the drain (until the reconciler has " +
      "emptied the stage), per sample received from either replica.",
  );
  lines.push("");
  lines.push(
    "| run | CPU s: client / target / PostgreSQL | split % | µs per sample: client / target / PostgreSQL / total |",
  );
  lines.push("| --- | --- | --- | --- |");
  for (const [name, rs] of byName) {
    const c = rs[rs.length - 1].cpu;
    const n = rs[rs.length - 1].samples;
    const total = c.client + c.target + c.postgres;
    const pct = (x: number) => (100 * x / total).toFixed(0);
    const us = (x: number) => (x / n * 1e6).toFixed(2);
    lines.push(
      `| ${name} | ${f2(c.client)} / ${f2(c.target)} / ${f2(c.postgres)} | ${pct(c.client)} / ${
        pct(c.target)
      } / ${pct(c.postgres)} | ${us(c.client)} / ${us(c.target)} / ${us(c.postgres)} / ${
        us(total)
      } |`,
    );
  }
  lines.push("");
  lines.push("Targets:");
  lines.push("");
  lines.push(
    `- connector / \\copy text, 2,000-row transactions: **${
      f2(conn / copyText)
    }** (target ≥ 1.0); ` +
      `/ \\copy binary, 2,000-row transactions: ${f2(conn / copyBin)}; ` +
      `/ \\copy text, one transaction: ${f2(conn / copyTextWhole)}`,
  );
  lines.push(`- connector / Prometheus receiver: **${f2(conn / prom)}** (target ≥ 1.0)`);
  const haRuns = byName.get(CONNECTOR_HA_NAME) ?? [];
  const haStored = median(haRuns.map((r) => r.ha?.storedPerSecond ?? NaN));
  const haLast = haRuns[haRuns.length - 1]?.ha;
  if (haLast) {
    lines.push(
      `- HA / non-HA, samples received per second: **${f2(ha / conn)}** (target ≥ 0.95); ` +
        `samples stored per second: ${k(haStored)}, ${f2(haStored / conn)} × non-HA (half the ` +
        `HA load is the follower's, ${
          o.haLagSlots ? `${o.haLagSlots} slot(s) behind the leader` : "the same rounds"
        }, staged and reconciled as copies); PostgreSQL CPU per received sample with the drain ${
          f2(median(haRuns.map((r) => r.ha?.pgUsPerReceived ?? NaN)))
        } µs; stage drained ${
          f1(haLast.drainSeconds)
        } s after the load; last run staged ${haLast.staged}, reconciled ${haLast.reconciled.duplicate} duplicate / ${haLast.reconciled.filled} ` +
        `filled / ${haLast.reconciled.undone} undone`,
    );
  }
  if (decode) {
    lines.push(
      `- decode: **${k(decode.samplesPerSecond)} samples/s** on one core ` +
        `(${k(decode.samplesPerCpuSecond)} per process CPU second; snappy alone ${
          k(decode.snappySamplesPerSecond)
        }/s, protobuf alone ${k(decode.protobufSamplesPerSecond)}/s; ${
          f1(decode.bytesPerSample.compressed)
        } compressed, ${f1(decode.bytesPerSample.raw)} raw bytes per sample) (target ≥ 300k)`,
    );
  }
  if (rss) {
    lines.push(
      `- RSS with ${rss.series} series cached (cache size ${rss.cached}): **${
        f1(rss.rssAfterMb)
      } MB** (${f1(rss.rssBeforeMb)} MB before, high-water mark ${
        f1(rss.hwmMb)
      } MB; series created at ${k(rss.seriesPerSecond)}/s by ${s.senders} senders); after a full ` +
        `garbage collection ${f1(rss.rssAfterGcMb)} MB, of which JS heap in use ${
          f1(rss.heapAfterGcMb)
        } MB (target ≤ 300 MB)`,
    );
  }
  for (const rs of byName.values()) {
    for (const r of rs) {
      if (r.errors?.length) lines.push(`- errors in ${r.name}: ${r.errors.join(" | ")}`);
    }
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  const m = machine();
  const s = o.shape;
  const dir = await tempDir("promscale-bench-");
  const outDir = `${REPO_ROOT}/bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const log = (msg: string) => console.error(`[bench] ${msg}`);
  try {
    log(`building payloads: ${s.series} series × ${s.slots + 1} slots, ${s.senders} senders`);
    const plainPlan = `${dir}/plain.bin`;
    await savePlan(buildPlan(s), plainPlan);
    // The HA load: both replicas send every series; by default the
    // follower sends the same rounds as the leader at the same time (right
    // after the leader's batch, in the same sender), the steady state now
    // that followers are staged and acknowledged at once, not held back.
    // `--ha-lag-slots` puts it that many slots behind (2 at 15 s was the
    // shape of the handover design: more than its 15 s window). About as
    // many samples in all as the plain load.
    const lagSlots = o.haLagSlots;
    const haSlots = Math.max(lagSlots + 1, Math.round((s.slots + lagSlots) / 2));
    const haShape: LoadShape = {
      ...s,
      slots: haSlots,
      startMs: s.startMs + (s.slots - haSlots) * s.intervalMs,
    };
    const haPlan = `${dir}/ha.bin`;
    if (o.only.has("ha")) {
      await savePlan(
        buildPlan(haShape, {
          cluster: "bench",
          replicas: ["prometheus-0", "prometheus-1"],
          lagSlots,
        }),
        haPlan,
      );
    }

    let decode: DecodeResult | undefined;
    if (o.only.has("decode")) {
      log("decode micro-benchmark");
      decode = JSON.parse(
        await runDeno("bench/decode.ts", [
          "--plan",
          plainPlan,
          "--seconds",
          String(o.decodeSeconds),
        ]),
      );
    }

    const textRows = o.only.has("copy") ? copyRows(s, "text") : undefined;
    const binaryRows = o.only.has("copy") ? copyRows(s, "binary") : undefined;
    const runs: RunResult[][] = [];
    for (let cycle = 1; cycle <= o.repeat; cycle++) {
      const results: RunResult[] = [];
      const step = async (part: string, label: string, fn: () => Promise<RunResult>) => {
        if (!o.only.has(part)) return;
        log(`cycle ${cycle}: ${label}`);
        const r = await fn();
        log(`  ${k(r.samplesPerSecond)} samples/s in ${f2(r.seconds)} s; ${r.verified}`);
        results.push(r);
      };
      for (const rows of [textRows, binaryRows]) {
        for (const whole of [false, true]) {
          if (!rows) continue;
          const name = copyName(rows.format, whole);
          await step("copy", name, () => copyBaseline(s, dir, rows, whole));
        }
      }
      await step("prometheus", "Prometheus receiver", () => prometheusReceiver(s, plainPlan));
      await step("connector", "connector", () => connectorRun(plainPlan, o.connectorArgs));
      await step("ha", "connector with HA", () => haConnectorRun(haPlan, o));
      runs.push(results);
    }

    let rss: Awaited<ReturnType<typeof rssRun>> | undefined;
    if (o.only.has("rss")) {
      log(`RSS with ${o.rssSeries} series`);
      const rssPlan = `${dir}/rss.bin`;
      await savePlan(buildPlan({ ...s, series: o.rssSeries, slots: 0 }), rssPlan);
      rss = await rssRun(rssPlan, o.rssSeries, o.connectorArgs);
    }

    // Storage (bench/storage.ts): bytes per sample and reads, rows against
    // compressed windows; its own databases and loads, its own Markdown.
    let storageMd = "";
    if (o.only.has("storage")) {
      log("storage: rows against compressed windows");
      const results: StorageResult[] = JSON.parse(
        await runDeno("bench/storage.ts", ["--repeat", String(Math.max(3, o.repeat)), "--json"]),
      );
      storageMd = "\n## Storage: rows against compressed windows\n\n" + storageReport(results);
    }

    // PromQL (bench/promql.ts, bench/promql_corpus.ts): the connector's query
    // API against Prometheus reading the same data by remote read.
    let promqlMd = "";
    if (o.only.has("promql")) {
      log("promql: the query API against Prometheus with remote read");
      const repeat = String(Math.max(3, o.repeat));
      promqlMd = "\n## PromQL: against Prometheus with remote read\n\n" +
        (await runDenoOutput("bench/promql.ts", ["--repeat", repeat])) +
        "\n\nThe whole differential corpus, timed:\n\n" +
        (await runDenoOutput("bench/promql_corpus.ts", ["--rounds", repeat])) + "\n";
    }

    const md = report(o, m, machine().loadavg, runs, decode, rss) + storageMd + promqlMd;
    const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
    await Deno.writeTextFile(`${outDir}/latest.md`, md);
    await Deno.writeTextFile(
      `${outDir}/run-${stamp}.json`,
      JSON.stringify(
        { options: { ...o, only: [...o.only] }, machine: m, runs, decode, rss },
        null,
        2,
      ),
    );
    console.log(md);
  } finally {
    await killAll();
  }
}

if (import.meta.main) await main();
