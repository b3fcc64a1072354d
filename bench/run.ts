/**
 * The ingest benchmark (`deno task bench`): the connector against
 * PostgreSQL's own limit and against the Prometheus receiver, on the same
 * rows and payloads, in one run, so that the ratios survive a noisy machine.
 *
 *   deno task bench [--series 10000] [--slots 60] [--batch 2000] [--senders 4]
 *     [--interval 15] [--repeat 1] [--only decode,copy,prometheus,connector,ha,rss]
 *     [--rss-series 100000] [--decode-seconds 3] [--connector-args "--db.connections-max 8"]
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
  spawnProcess,
  startConnector,
  tempDir,
  waitForHttp,
} from "../tests/helpers/procs.ts";
import type { DecodeResult } from "./decode.ts";
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

interface Options {
  shape: LoadShape;
  repeat: number;
  only: Set<string>;
  rssSeries: number;
  decodeSeconds: number;
  connectorArgs: string[];
}

const PARTS = ["decode", "copy", "prometheus", "connector", "ha", "rss"];

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
    senders: num("senders", 4),
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
  };
}

// ---------------------------------------------------------------- helpers

async function runDeno(script: string, args: string[]): Promise<string> {
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
  return stdout.split("\n").pop()!;
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
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
  ha?: { storedPerSecond: number; leaderAcked: number; followerAcked: number; dropped: number };
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

/** Text rows (time, value, series_id) of the load, warm-up slot apart, batch by batch. */
function copyRows(shape: LoadShape): { warm: string; batches: string[] } {
  let warm = "";
  const perSender: string[][] = [];
  for (let s = 0; s < shape.senders; s++) {
    const mine: string[] = [];
    forEachBatch(shape, s, (series, slots, warmup) => {
      let text = "";
      for (let k = 0; k < series.length; k++) {
        const t = new Date(shape.startMs + slots[k] * shape.intervalMs).toISOString();
        text += `${t}\t${benchValue(series[k], slots[k])}\t${series[k] + 1}\n`;
      }
      if (warmup) warm += text;
      else mine.push(text);
    });
    perSender.push(mine);
  }
  // Interleave the senders' batches as they would arrive.
  const batches: string[] = [];
  for (let i = 0; perSender.some((l) => i < l.length); i++) {
    for (const l of perSender) if (i < l.length) batches.push(l[i]);
  }
  return { warm, batches };
}

async function copyBaseline(
  shape: LoadShape,
  dir: string,
  rows: { warm: string; batches: string[] },
  whole: boolean,
): Promise<RunResult> {
  const name = whole ? "psql \\copy, one transaction" : "psql \\copy, 2,000-row transactions";
  const db = await freshDatabase(whole ? "bench_copy_whole" : "bench_copy_batched");
  try {
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
    const warmFile = `${dir}/copy_warm.tsv`;
    await Deno.writeTextFile(warmFile, rows.warm);
    await psql(db.name, ["-c", `\\copy bench_samples (time, value, series_id) from '${warmFile}'`]);
    const script: string[] = [];
    if (whole) {
      const f = `${dir}/copy_all.tsv`;
      await Deno.writeTextFile(f, rows.batches.join(""));
      script.push(`\\copy bench_samples (time, value, series_id) from '${f}'`);
    } else {
      for (let i = 0; i < rows.batches.length; i++) {
        const f = `${dir}/copy_${String(i).padStart(5, "0")}.tsv`;
        await Deno.writeTextFile(f, rows.batches[i]);
        // Each \copy in autocommit mode is its own transaction.
        script.push(`\\copy bench_samples (time, value, series_id) from '${f}'`);
      }
    }
    const scriptFile = `${dir}/copy.sql`;
    await Deno.writeTextFile(scriptFile, script.join("\n") + "\n");
    const timedRows = shape.series * shape.slots;
    const pg = new CpuSampler(postgresOf(db.name), 50);
    const client = new CpuSampler((cmd) => cmd.startsWith("psql ") && cmd.includes(db.name), 50);
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
    return fromLoad("Prometheus 2.42 receiver", load, `${stored} samples = ${acked} acked`);
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

function metricSum(text: string, name: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

async function connectorRun(plan: string, ha: boolean, args: string[]): Promise<RunResult> {
  const db = await freshDatabase(ha ? "bench_connector_ha" : "bench_connector");
  try {
    const svc = await startConnector({
      dbUri: db.uri,
      args: [
        ...(ha ? ["--metrics.high-availability"] : []),
        "--telemetry.log.level",
        "warn",
        ...args,
      ],
    });
    try {
      const load = await runLoadgen(`${svc.url}/write`, plan, svc.proc.pid, db.name);
      const metrics = await (await fetch(`${svc.url}/metrics`)).text();
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      const stored = Number(n);
      const name = ha ? "connector, --metrics.high-availability" : "connector";
      if (!ha) {
        const acked = sum(load.ackedSamples);
        if (stored !== acked) throw new Error(`${name}: ${stored} rows stored, ${acked} acked`);
        return fromLoad(name, load, `${stored} rows = ${acked} acked`);
      }
      const leader = load.ackedSamples.leader ?? 0;
      const follower = load.ackedSamples.follower ?? 0;
      const dropped = metricSum(metrics, "promscale_ingest_samples_dropped_total");
      if (stored !== leader) {
        throw new Error(`${name}: ${stored} rows stored, the leader's ${leader} acked`);
      }
      const r = fromLoad(
        name,
        load,
        `${stored} rows = leader's ${leader} acked; follower's ${follower} acked and dropped ` +
          `(${dropped} counted dropped)`,
      );
      r.ha = {
        storedPerSecond: (load.timedAckedSamples.leader ?? 0) / load.seconds,
        leaderAcked: leader,
        followerAcked: follower,
        dropped,
      };
      return r;
    } finally {
      await svc.stop();
    }
  } finally {
    await db.drop();
  }
}

async function rssRun(planFile: string, series: number, args: string[]) {
  const db = await freshDatabase("bench_rss");
  try {
    const svc = await startConnector({
      dbUri: db.uri,
      args: ["--telemetry.log.level", "warn", ...args],
    });
    try {
      const before = statusKb(svc.proc.pid, "VmRSS");
      const load = await runLoadgen(`${svc.url}/write`, planFile, svc.proc.pid, db.name);
      const seconds = load.warmupSeconds;
      const after = statusKb(svc.proc.pid, "VmRSS");
      const hwm = statusKb(svc.proc.pid, "VmHWM");
      const metrics = await (await fetch(`${svc.url}/metrics`)).text();
      const cached = metricSum(metrics, "promscale_series_cache_size");
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_catalog.series`;
      if (Number(n) !== series || sum(load.ackedSamples) !== series) {
        throw new Error(
          `RSS run: ${n} series stored, ${sum(load.ackedSamples)} acked, ${series} sent`,
        );
      }
      return {
        series,
        cached,
        rssBeforeMb: before / 1024,
        rssAfterMb: after / 1024,
        hwmMb: hwm / 1024,
        seriesPerSecond: series / seconds,
        errors: load.errors,
      };
    } finally {
      await svc.stop();
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
  const copyB = med("psql \\copy, 2,000-row transactions");
  const copyW = med("psql \\copy, one transaction");
  const prom = med("Prometheus 2.42 receiver");
  const conn = med("connector");
  const ha = med("connector, --metrics.high-availability");
  const lines: string[] = [];
  const s = o.shape;
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
  lines.push("");
  lines.push(
    "| run | samples/s | vs \\copy 2k-tx | vs \\copy 1 tx | vs Prometheus | p50 / p99 ms | CPU s: client / target / PostgreSQL | CPU µs per sample | all cycles (k/s) | verified |",
  );
  lines.push("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |");
  for (const [name, rs] of byName) {
    const v = median(rs.map((r) => r.samplesPerSecond));
    const last = rs[rs.length - 1];
    const cpu = last.cpu.client + last.cpu.target + last.cpu.postgres;
    lines.push(
      `| ${name} | ${k(v)} | ${f2(v / copyB)} | ${f2(v / copyW)} | ${f2(v / prom)} | ${
        last.latencyMs ? `${f1(last.latencyMs.p50)} / ${f1(last.latencyMs.p99)}` : "–"
      } | ${f2(last.cpu.client)} / ${f2(last.cpu.target)} / ${f2(last.cpu.postgres)} | ${
        f1(cpu / last.samples * 1e6)
      } | ${rs.map((r) => k(r.samplesPerSecond)).join(", ")} | ${last.verified}${
        last.status ? `; status ${JSON.stringify(last.status)}` : ""
      } |`,
    );
  }
  lines.push("");
  lines.push("Targets:");
  lines.push("");
  lines.push(
    `- connector / \\copy (2,000-row transactions): **${f2(conn / copyB)}** (target ≥ 1.0)`,
  );
  lines.push(`- connector / \\copy (one transaction): ${f2(conn / copyW)}`);
  lines.push(`- connector / Prometheus receiver: **${f2(conn / prom)}** (target ≥ 1.0)`);
  const haRuns = byName.get("connector, --metrics.high-availability") ?? [];
  const haStored = median(haRuns.map((r) => r.ha?.storedPerSecond ?? NaN));
  lines.push(
    `- HA / non-HA, samples received per second: **${f2(ha / conn)}** (target ≥ 0.95); ` +
      `samples stored per second: ${
        f2(haStored / conn)
      } (half the HA load is the follower's, dropped)`,
  );
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
      } MB; series created at ${k(rss.seriesPerSecond)}/s) (target ≤ 300 MB)`,
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
    // The HA load carries as many samples: each batch from the leader, then the follower.
    const haShape: LoadShape = {
      ...s,
      slots: Math.max(1, Math.floor(s.slots / 2)),
      startMs: s.startMs + (s.slots - Math.max(1, Math.floor(s.slots / 2))) * s.intervalMs,
    };
    const haPlan = `${dir}/ha.bin`;
    if (o.only.has("ha")) {
      await savePlan(
        buildPlan(haShape, { cluster: "bench", replicas: ["prometheus-0", "prometheus-1"] }),
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

    const rows = o.only.has("copy") ? copyRows(s) : undefined;
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
      await step(
        "copy",
        "psql \\copy, 2,000-row transactions",
        () => copyBaseline(s, dir, rows!, false),
      );
      await step("copy", "psql \\copy, one transaction", () => copyBaseline(s, dir, rows!, true));
      await step("prometheus", "Prometheus receiver", () => prometheusReceiver(s, plainPlan));
      await step("connector", "connector", () => connectorRun(plainPlan, false, o.connectorArgs));
      await step("ha", "connector with HA", () => connectorRun(haPlan, true, o.connectorArgs));
      runs.push(results);
    }

    let rss: Awaited<ReturnType<typeof rssRun>> | undefined;
    if (o.only.has("rss")) {
      log(`RSS with ${o.rssSeries} series`);
      const rssPlan = `${dir}/rss.bin`;
      await savePlan(buildPlan({ ...s, series: o.rssSeries, slots: 0 }), rssPlan);
      rss = await rssRun(rssPlan, o.rssSeries, o.connectorArgs);
    }

    const md = report(o, m, machine().loadavg, runs, decode, rss);
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
