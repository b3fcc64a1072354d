/**
 * Ingest with the compactor running against without (issue 18), in one
 * run: the ingest benchmark's load (bench/payloads.ts, bench/loadgen.ts:
 * 10,000 node_exporter-like series, 2,000 samples per request, 8 senders,
 * slots ending now) sent to a real connector (main.ts, its own process)
 * whose database also holds a sealed day of the storage benchmark's
 * synthetic load (bench/storage.ts, written before the connector starts).
 *
 * - "without": `--storage.compress-after 0` (no compactor);
 * - "with": `--storage.compress-after 2s`: the connector's own compactor
 *   starts a pass a second after startup, before the load begins, and
 *   compacts the sealed day while the load runs (the run checks that the
 *   day's partition still exists when the load ends, i.e. that the pass
 *   overlapped the whole timed load).
 *
 * The two alternate, `--rounds` times each (fresh databases each time);
 * every run is verified (samples of the load readable = acknowledged).
 *
 *   deno run -A bench/compact_ingest.ts [--rounds 3] [--series 10000] [--slots 60]
 *     [--sealed-series 2000] [--sealed-slots 5760] [--json]
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { killAll, REPO_ROOT, startConnector, tempDir } from "../tests/helpers/procs.ts";
import { buildPlan, type LoadShape, savePlan } from "./payloads.ts";
import type { LoadResult } from "./loadgen.ts";
import { loadDay, syntheticLoad, write } from "./storage.ts";
import { migrate } from "../src/storage/migrate.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : def;
}

/** One measured run. */
export interface IngestRun {
  mode: "without" | "with";
  samplesPerSecond: number;
  p50: number;
  p99: number;
  cpu: { generator: number; connector: number; postgres: number };
  /** "with": the sealed day's partition still existed when the load ended. */
  overlapped: boolean;
  /** "with": sealed samples compacted during the load (its warm-up included). */
  compactedDuringLoad: number;
  /** "with": those per second of the load's wall time. */
  compactedPerSecond: number;
}

async function runLoadgen(url: string, plan: string, pid: number, db: string): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/loadgen.ts",
      "--url",
      url,
      "--plan",
      plan,
      "--pid",
      String(pid),
      "--pg-db",
      db,
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!out.success) {
    throw new Error(`loadgen failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

async function run(
  mode: IngestRun["mode"],
  plan: string,
  shape: LoadShape,
  sealed: { series: number; slots: number },
): Promise<IngestRun> {
  const db = await freshDatabase("bench_compact_ingest");
  try {
    await migrate(db.sql);
    const day = loadDay();
    await write(
      db.sql,
      syntheticLoad(sealed.series, sealed.slots),
      day,
    );
    await db.sql`VACUUM ANALYZE`;
    const svc = await startConnector({
      dbUri: db.uri,
      args: [
        "--telemetry.log.level",
        "warn",
        "--storage.compress-after",
        mode === "with" ? "2s" : "0",
      ],
    });
    const compacted = async () => {
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT coalesce(sum(n), 0)::int AS n FROM _prom_data.compressed
        WHERE window_start >= ${new Date(day).toISOString()}`;
      return n;
    };
    try {
      const c0 = await compacted();
      const t0 = performance.now();
      const load = await runLoadgen(`${svc.url}/write`, plan, svc.proc.pid, db.name);
      const seconds = (performance.now() - t0) / 1000;
      const c1 = await compacted();
      const [{ part, windows }] = await db.sql<{ part: number; windows: number }[]>`
        SELECT (SELECT count(*)::int FROM _prom_catalog.sample_partitions
                WHERE range_start <= ${new Date(day).toISOString()}
                  AND range_end > ${new Date(day).toISOString()}) AS part,
               (SELECT coalesce(sum(n), 0)::int FROM _prom_data.compressed
                WHERE window_start >= ${new Date(day).toISOString()}) AS windows`;
      const acked = Object.values(load.ackedSamples).reduce((a, b) => a + b, 0);
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM _prom_data.samples
        WHERE time >= ${new Date(shape.startMs).toISOString()}`;
      if (n !== acked) throw new Error(`${mode}: ${n} samples of the load stored, ${acked} acked`);
      if (mode === "without" && windows) throw new Error("compacted without a compactor");
      return {
        mode,
        samplesPerSecond: load.samplesPerSecond,
        p50: load.latencyMs.p50,
        p99: load.latencyMs.p99,
        cpu: {
          generator: load.cpu.generator,
          connector: load.cpu.target,
          postgres: load.cpu.postgres,
        },
        overlapped: part === 1,
        compactedDuringLoad: c1 - c0,
        compactedPerSecond: (c1 - c0) / seconds,
      };
    } finally {
      await svc.proc.stop(10_000);
    }
  } finally {
    await db.drop();
  }
}

if (import.meta.main) {
  const rounds = Number(arg("rounds", "3"));
  const slots = Number(arg("slots", "60"));
  const intervalMs = 15_000;
  const shape: LoadShape = {
    series: Number(arg("series", "10000")),
    slots,
    batch: 2_000,
    senders: 8,
    intervalMs,
    startMs: Math.floor(Date.now() / intervalMs) * intervalMs - slots * intervalMs,
  };
  const sealed = {
    series: Number(arg("sealed-series", "2000")),
    slots: Number(arg("sealed-slots", "5760")),
  };
  const dir = await tempDir("promscale-compact-ingest-");
  try {
    const plan = `${dir}/plain.bin`;
    await savePlan(buildPlan(shape), plan);
    const runs: IngestRun[] = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? ["with", "without"] as const : ["without", "with"] as const;
      for (const mode of order) {
        const x = await run(mode, plan, shape, sealed);
        console.error(
          `[compact_ingest] round ${r + 1} ${mode}: ${Math.round(x.samplesPerSecond)}/s`,
        );
        runs.push(x);
      }
    }
    if (Deno.args.includes("--json")) console.log(JSON.stringify(runs));
    else console.log(report(runs));
  } finally {
    await killAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The Markdown report. */
export function report(runs: IngestRun[]): string {
  const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
  const lines = [
    "| run | samples/s (median) | each round | p50 / p99 ms | CPU connector s | CPU PostgreSQL s | sealed samples compacted during the load, per second | pass overlapped the whole load |",
    "| --- | ---: | --- | ---: | ---: | ---: | --- | --- |",
  ];
  const med: Record<string, number> = {};
  for (const mode of ["without", "with"] as const) {
    const rs = runs.filter((r) => r.mode === mode);
    med[mode] = median(rs.map((r) => r.samplesPerSecond));
    lines.push(
      `| ${mode} compactor | ${k(med[mode])} | ${
        rs.map((r) => k(r.samplesPerSecond)).join(", ")
      } | ` +
        `${median(rs.map((r) => r.p50)).toFixed(1)} / ${
          median(rs.map((r) => r.p99)).toFixed(1)
        } | ` +
        `${median(rs.map((r) => r.cpu.connector)).toFixed(2)} | ${
          median(rs.map((r) => r.cpu.postgres)).toFixed(2)
        } | ${mode === "with" ? rs.map((r) => k(r.compactedPerSecond)).join(", ") : "–"} | ${
          mode === "with" ? rs.map((r) => r.overlapped ? "yes" : "no").join(", ") : "–"
        } |`,
    );
  }
  lines.push("", `with / without (medians): **${(med.with / med.without).toFixed(2)}**`);
  return lines.join("\n");
}
