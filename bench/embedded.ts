/**
 * The embedded database against the server, in one run (`deno run -A
 * bench/embedded.ts`): the same pre-encoded remote-write load
 * (bench/payloads.ts, sent by bench/loadgen.ts in its own process) into a
 * connector on PostgreSQL on 127.0.0.1:5432 and into a connector with no
 * database configured (PGlite in the connector's process), alternating,
 * `--repeat` times. Reports samples/s and memory of each and their ratios:
 * the connector's peak RSS (VmHWM) for the embedded run, the connector's
 * plus PostgreSQL's backends' for the server run.
 *
 *   deno run -A bench/embedded.ts [--series 2000] [--slots 10] [--batch 500]
 *     [--senders 4] [--repeat 2]
 *
 * Every run is verified: rows stored = samples acknowledged. Never part of
 * `deno task test`.
 *
 * @module
 */
import { postgres } from "../deps.ts";
import { freshDatabase } from "../tests/helpers/db.ts";
import { killAll, REPO_ROOT, startConnector, tempDir } from "../tests/helpers/procs.ts";
import { startEmbeddedConnector } from "../tests/embedded/connector.ts";
import { buildPlan, type LoadShape, savePlan } from "./payloads.ts";
import { statusKb } from "./proc.ts";
import type { LoadResult } from "./loadgen.ts";

interface Run {
  target: "server" | "embedded";
  samplesPerSecond: number;
  p99Ms: number;
  acked: number;
  /** Peak RSS of the connector process, MiB. */
  connectorHwmMb: number;
  /** RSS of the database processes (PostgreSQL backends of the run's database), MiB; 0 embedded. */
  databaseRssMb: number;
  cpuConnector: number;
  cpuPostgres: number;
  /** Samples answered otherwise (Prometheus would retry them), and the first answers. */
  failed: number;
  errors: string[];
}

function arg(argv: string[], name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : def;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`Bad value for --${name}`);
  return v;
}

async function loadgen(url: string, plan: string, pid: number, db?: string): Promise<LoadResult> {
  const args = [
    "run",
    "-A",
    "bench/loadgen.ts",
    "--url",
    url,
    "--plan",
    plan,
    "--pid",
    String(pid),
  ];
  if (db) args.push("--pg-db", db);
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!out.success) {
    throw new Error(
      `bench/loadgen.ts failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

/** RSS of the PostgreSQL backends serving `db`, KiB (shared buffers counted once per process). */
function backendsRssKb(db: string): number {
  let kb = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmd.startsWith("postgres:") && cmd.includes(` ${db} `)) {
        kb += statusKb(Number(e.name), "VmRSS");
      }
    } catch {
      // gone meanwhile
    }
  }
  return kb;
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

async function serverRun(plan: string): Promise<Run> {
  const db = await freshDatabase("bench_embedded_server");
  try {
    const svc = await startConnector({ dbUri: db.uri, args: ["--telemetry.log.level", "warn"] });
    try {
      const load = await loadgen(`${svc.url}/write`, plan, svc.proc.pid, db.name);
      const pgRss = backendsRssKb(db.name);
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      if (Number(n) !== sum(load.ackedSamples)) {
        throw new Error(`server: ${n} rows stored, ${sum(load.ackedSamples)} acked`);
      }
      return {
        target: "server",
        samplesPerSecond: load.samplesPerSecond,
        p99Ms: load.latencyMs.p99,
        acked: sum(load.ackedSamples),
        connectorHwmMb: statusKb(svc.proc.pid, "VmHWM") / 1024,
        databaseRssMb: pgRss / 1024,
        cpuConnector: load.cpu.target,
        cpuPostgres: load.cpu.postgres,
        failed: sum(load.failedSamples),
        errors: load.errors.slice(0, 2),
      };
    } finally {
      await svc.stop();
    }
  } finally {
    await db.drop();
  }
}

async function embeddedRun(plan: string): Promise<Run> {
  const dir = await tempDir("promscale-bench-embedded-");
  const c = await startEmbeddedConnector(dir, ["--telemetry.log.level", "warn"]);
  try {
    const load = await loadgen(`${c.url}/write`, plan, c.proc.pid);
    const sql = postgres(c.sqlUri, { max: 1, onnotice: () => {} });
    try {
      const [{ n }] = await sql<{ n: string }[]>`SELECT count(*) AS n FROM _prom_data.samples`;
      if (Number(n) !== sum(load.ackedSamples)) {
        throw new Error(`embedded: ${n} rows stored, ${sum(load.ackedSamples)} acked`);
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
    return {
      target: "embedded",
      samplesPerSecond: load.samplesPerSecond,
      p99Ms: load.latencyMs.p99,
      acked: sum(load.ackedSamples),
      connectorHwmMb: statusKb(c.proc.pid, "VmHWM") / 1024,
      databaseRssMb: 0,
      cpuConnector: load.cpu.target,
      cpuPostgres: 0,
      failed: sum(load.failedSamples),
      errors: load.errors.slice(0, 2),
    };
  } finally {
    await c.proc.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(argv: string[]): Promise<void> {
  const intervalMs = 15_000;
  const slots = arg(argv, "slots", 10);
  const shape: LoadShape = {
    series: arg(argv, "series", 2_000),
    slots,
    batch: arg(argv, "batch", 500),
    senders: arg(argv, "senders", 4),
    intervalMs,
    startMs: Math.floor(Date.now() / intervalMs) * intervalMs - slots * intervalMs,
  };
  const repeat = arg(argv, "repeat", 2);
  try {
    const dir = await tempDir("promscale-bench-plan-");
    const plan = `${dir}/plan.bin`;
    await savePlan(buildPlan(shape), plan);
    const runs: Run[] = [];
    for (let i = 0; i < repeat; i++) {
      for (const run of [serverRun, embeddedRun]) {
        const r = await run(plan);
        console.error(JSON.stringify(r));
        runs.push(r);
      }
    }
    const of = (t: Run["target"], f: (r: Run) => number) =>
      median(runs.filter((r) => r.target === t).map(f));
    const rate = (t: Run["target"]) => of(t, (r) => r.samplesPerSecond);
    const mem = (t: Run["target"]) => of(t, (r) => r.connectorHwmMb + r.databaseRssMb);
    const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d });
    const lines = [
      `Load: ${fmt(shape.series)} series, ${slots} timed slots, ${shape.batch} samples per ` +
      `request, ${shape.senders} senders; ${repeat} run(s) each, alternating, medians.`,
      "",
      "| target | samples/s | p99 ms | not acked | connector peak RSS MiB | database RSS MiB | CPU s connector / postgres |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...(["server", "embedded"] as const).map((t) =>
        `| ${t} | ${fmt(rate(t))} | ${fmt(of(t, (r) => r.p99Ms))} | ${
          fmt(of(t, (r) => r.failed))
        } | ${fmt(of(t, (r) => r.connectorHwmMb))} | ${fmt(of(t, (r) => r.databaseRssMb))} | ${
          fmt(of(t, (r) => r.cpuConnector), 1)
        } / ${fmt(of(t, (r) => r.cpuPostgres), 1)} |`
      ),
      "",
      `Embedded / server: ingest ${fmt(rate("embedded") / rate("server"), 2)}x, memory ` +
      `(connector + database) ${fmt(mem("embedded") / mem("server"), 2)}x.`,
    ];
    console.log(lines.join("\n"));
  } finally {
    await killAll();
  }
}

if (import.meta.main) await main(Deno.args);
