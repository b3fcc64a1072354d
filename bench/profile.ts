/**
 * Profiles the connector under the benchmark's load:
 *
 *   deno run -A bench/profile.ts [--slots 30] [--senders 4] [--ha] [--top 40]
 *     [--connector-args "…"]
 *
 * Starts the connector with `--cpu-prof` on a fresh database, sends the
 * load with the load generator, stops the connector (the profile is
 * written at exit) and prints the functions with the most self time, and
 * the files. The raw profile stays in bench/out/ for Chrome DevTools.
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { freePort } from "../tests/helpers/ports.ts";
import { killAll, REPO_ROOT, spawnConnector, waitForHttp } from "../tests/helpers/procs.ts";
import { buildPlan, type LoadShape, savePlan } from "./payloads.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

/** Prints the top self-time entries of a .cpuprofile. */
export function summarise(profile: { nodes: ProfileNode[] }, top: number): string {
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    total += hits;
    const url = n.callFrame.url.replace(/^file:\/\/\/work\/main\//, "").replace(
      /^.*\/node_modules\/\.deno\//,
      "npm:",
    );
    const fn = `${n.callFrame.functionName || "(anonymous)"} ${url}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + hits);
    const file = url || n.callFrame.functionName;
    byFile.set(file, (byFile.get(file) ?? 0) + hits);
  }
  const fmt = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) =>
      `${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`
    ).join("\n");
  return `self time by function:\n${fmt(byFn)}\n\nself time by file:\n${fmt(byFile)}\n`;
}

async function main(): Promise<void> {
  const slots = Number(arg("slots", "30"));
  const intervalMs = 15_000;
  const shape: LoadShape = {
    series: Number(arg("series", "10000")),
    slots,
    batch: 2000,
    senders: Number(arg("senders", "4")),
    intervalMs,
    startMs: Math.floor(Date.now() / intervalMs) * intervalMs - slots * intervalMs,
  };
  const ha = Deno.args.includes("--ha");
  const outDir = `${REPO_ROOT}/bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const planFile = `${outDir}/profile-plan.bin`;
  await savePlan(
    buildPlan(
      shape,
      ha
        ? { cluster: "bench", replicas: ["prometheus-0", "prometheus-1"], lagSlots: 2 }
        : undefined,
    ),
    planFile,
  );
  const db = await freshDatabase("bench_profile");
  const profDir = await Deno.makeTempDir({ dir: outDir, prefix: "prof-" });
  try {
    const port = freePort();
    const proc = spawnConnector([
      "--db.uri",
      db.uri,
      "--web.listen-address",
      `127.0.0.1:${port}`,
      "--telemetry.log.level",
      "warn",
      ...(ha ? ["--metrics.high-availability"] : []),
      ...arg("connector-args", "").split(" ").filter(Boolean),
    ], { denoFlags: ["--cpu-prof", `--cpu-prof-dir=${profDir}`] });
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, { proc, timeoutMs: 60_000 });
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "bench/loadgen.ts",
        "--url",
        `http://127.0.0.1:${port}/write`,
        "--plan",
        planFile,
        "--pid",
        String(proc.pid),
        "--pg-db",
        db.name,
      ],
      cwd: REPO_ROOT,
      stdout: "piped",
    }).output();
    console.log(new TextDecoder().decode(out.stdout).trim());
    await proc.stop(15_000);
    for (const e of Deno.readDirSync(profDir)) {
      if (!e.name.endsWith(".cpuprofile")) continue;
      const profile = JSON.parse(await Deno.readTextFile(`${profDir}/${e.name}`));
      console.log(`${profDir}/${e.name}\n`);
      console.log(summarise(profile, Number(arg("top", "40"))));
    }
  } finally {
    await killAll();
    await db.drop();
  }
}

if (import.meta.main) await main();
