/**
 * HA throughput and cost, before and after a change, in one session: the
 * same HA plans (bench/payloads.ts, built once by this checkout) sent by
 * this checkout's load generator to connectors started from two checkouts,
 * alternating (before, after, after, before, …) so that a noisy shared
 * machine weighs on both alike.
 *
 *   deno run -A bench/ha_compare.ts [--before /tmp/promscale-before] [--after .]
 *     [--rounds 2] [--lag-slots 2,0] [--only-after-lag 0] [--series 10000]
 *     [--slots 60] [--batch 2000] [--senders 8] [--interval 15] [--drain-timeout 60]
 *     [--quiet-wait-max 300]
 *
 * Each run (bench/ha.ts): a fresh database, one connector of the checkout
 * with `--metrics.high-availability`, the untimed warm-up (the leader's
 * first slot), the timed load, then, for the per-series design, the wait
 * until the reconciler has emptied `_prom_data.ha_stage`; verified (rows
 * stored = the leader's acknowledged samples, the follower's all staged and
 * reconciled as duplicates, or counted dropped by the older design).
 * Before every run it waits until no `deno test` runs (at most
 * `--quiet-wait-max` seconds, 5 min by default).
 *
 * `--lag-slots`: the follower's offset behind the leader, one plan per
 * value. 2 (30 s at 15 s) is the shape both designs take; 0 (the same
 * rounds at the same time) is the steady state of the per-series design,
 * which the handover design answers with held requests and 503s (the
 * load generator does not retry: those samples are lost here, not lagging
 * as with Prometheus). `--only-after-lag 0` runs that value on the "after"
 * checkout only.
 *
 * Prints a Markdown report; writes it and the raw figures to bench/out/.
 *
 * @module
 */
import { killAll, REPO_ROOT, tempDir } from "../tests/helpers/procs.ts";
import { type HaRun, haRun, median, waitQuiet } from "./ha.ts";
import { buildPlan, type LoadShape, savePlan } from "./payloads.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const k = (n: number) => Number.isFinite(n) ? `${(n / 1000).toFixed(1)}k` : "–";
const f2 = (n: number) => Number.isFinite(n) ? n.toFixed(2) : "–";

async function main(): Promise<void> {
  const checkouts = [
    { label: "before", dir: arg("before", "/tmp/promscale-before") },
    { label: "after", dir: arg("after", REPO_ROOT) },
  ];
  const rounds = Number(arg("rounds", "2"));
  const lags = arg("lag-slots", "2").split(",").map(Number);
  const onlyAfter = new Set(arg("only-after-lag", "").split(",").filter(Boolean).map(Number));
  const intervalMs = Number(arg("interval", "15")) * 1000;
  const slots = Number(arg("slots", "60"));
  const drainTimeoutS = Number(arg("drain-timeout", "60"));
  const quietMaxMs = Number(arg("quiet-wait-max", "300")) * 1000;
  const base: LoadShape = {
    series: Number(arg("series", "10000")),
    slots,
    batch: Number(arg("batch", "2000")),
    senders: Number(arg("senders", "8")),
    intervalMs,
    startMs: Math.floor(Date.now() / intervalMs) * intervalMs - slots * intervalMs,
  };
  const log = (msg: string) => console.error(`[ha_compare] ${msg}`);
  const dir = await tempDir("promscale-ha-compare-");
  const outDir = `${REPO_ROOT}/bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const runs: (HaRun & { lag: number; round: number; waitedMs: number; testsBusy: boolean })[] = [];
  try {
    const plans = new Map<number, string>();
    for (const lag of lags) {
      // As bench/run.ts: the follower `lag` slots behind, about as many
      // samples in all as the plain load of `slots` slots.
      const haSlots = Math.max(lag + 1, Math.round((slots + lag) / 2));
      const shape = {
        ...base,
        slots: haSlots,
        startMs: base.startMs + (slots - haSlots) * intervalMs,
      };
      const file = `${dir}/ha-lag${lag}.bin`;
      log(
        `building the plan: ${shape.series} series × ${haSlots + 1} slots, follower ${lag} behind`,
      );
      await savePlan(
        buildPlan(shape, {
          cluster: "bench",
          replicas: ["prometheus-0", "prometheus-1"],
          lagSlots: lag,
        }),
        file,
      );
      plans.set(lag, file);
    }
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 ? checkouts : [...checkouts].reverse();
      for (const lag of lags) {
        for (const c of order) {
          if (onlyAfter.has(lag) && c.label !== "after") continue;
          const quiet = await waitQuiet(log, quietMaxMs);
          log(`round ${round}, lag ${lag}: ${c.label} (${c.dir}); load average ${loadavg()}`);
          const r = await haRun({
            label: c.label,
            dir: c.dir,
            plan: plans.get(lag)!,
            drainTimeoutS,
          });
          log(
            `  ${r.design}: received ${k(r.receivedPerSecond)}/s, stored ${
              k(r.storedPerSecond)
            }/s, drain ${f2(r.drainSeconds)} s, PG ${f2(r.usPerReceived.postgres)} µs and ` +
              `connector ${f2(r.usPerReceived.connector)} µs per received sample; status ${
                JSON.stringify(r.status)
              }; ${r.verified}${r.problems.length ? `; PROBLEMS: ${r.problems.join("; ")}` : ""}`,
          );
          runs.push({ ...r, lag, round, waitedMs: quiet.waitedMs, testsBusy: quiet.busy });
        }
      }
    }
    const md = report(base, lags, runs);
    const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
    await Deno.writeTextFile(`${outDir}/ha-compare-${stamp}.md`, md);
    await Deno.writeTextFile(
      `${outDir}/ha-compare-${stamp}.json`,
      JSON.stringify({ shape: base, lags, checkouts, runs }, null, 2),
    );
    console.log(md);
  } finally {
    await killAll();
  }
}

function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

function report(
  shape: LoadShape,
  lags: number[],
  runs: (HaRun & { lag: number; round: number; testsBusy: boolean })[],
): string {
  const lines: string[] = [];
  lines.push(`## HA before/after, ${new Date().toISOString()}`);
  lines.push("");
  lines.push(
    `${shape.series} series, ${shape.batch} samples per request, ${shape.senders} senders, ` +
      `${shape.intervalMs / 1000} s slots; load average ${loadavg()} at the end.`,
  );
  lines.push("");
  lines.push(
    "| lag | checkout | design | round | received/s | stored/s | drain s | PG µs/received (timed) | PG µs/received (+drain) | connector µs/received | status | checks |",
  );
  lines.push("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
  for (const r of runs) {
    lines.push(
      `| ${r.lag} | ${r.label} | ${r.design} | ${r.round}${r.testsBusy ? " (tests ran)" : ""} | ${
        k(r.receivedPerSecond)
      } | ${k(r.storedPerSecond)} | ${f2(r.drainSeconds)} | ${f2(r.pgUsPerReceivedTimed)} | ${
        f2(r.usPerReceived.postgres)
      } | ${f2(r.usPerReceived.connector)} | ${JSON.stringify(r.status)} | ${
        r.problems.length ? `**${r.problems.join("; ")}**` : "ok"
      } |`,
    );
  }
  lines.push("");
  lines.push("Medians and ratios after / before (same lag):");
  lines.push("");
  lines.push(
    "| lag | stored/s before | stored/s after | ratio | PG µs/received before | after | ratio | connector µs/received before | after |",
  );
  lines.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const lag of lags) {
    const of = (label: string, f: (r: HaRun) => number) =>
      median(runs.filter((r) => r.lag === lag && r.label === label).map(f));
    const sb = of("before", (r) => r.storedPerSecond);
    const sa = of("after", (r) => r.storedPerSecond);
    const pb = of("before", (r) => r.usPerReceived.postgres);
    const pa = of("after", (r) => r.usPerReceived.postgres);
    lines.push(
      `| ${lag} | ${k(sb)} | ${k(sa)} | ${f2(sa / sb)} | ${f2(pb)} | ${f2(pa)} | ${f2(pa / pb)} | ${
        f2(of("before", (r) => r.usPerReceived.connector))
      } | ${f2(of("after", (r) => r.usPerReceived.connector))} |`,
    );
  }
  // Pairwise: each after run against the before run next to it (same round).
  lines.push("");
  lines.push("Per round (after / before, same lag and round):");
  lines.push("");
  for (const lag of lags) {
    const rs = [...new Set(runs.map((r) => r.round))];
    const parts: string[] = [];
    for (const round of rs) {
      const b = runs.find((r) => r.lag === lag && r.round === round && r.label === "before");
      const a = runs.find((r) => r.lag === lag && r.round === round && r.label === "after");
      if (a && b) {
        parts.push(
          `round ${round}: stored/s ${f2(a.storedPerSecond / b.storedPerSecond)}, PG µs ${
            f2(a.usPerReceived.postgres / b.usPerReceived.postgres)
          }`,
        );
      }
    }
    if (parts.length) lines.push(`- lag ${lag}: ${parts.join("; ")}`);
  }
  return lines.join("\n") + "\n";
}

if (import.meta.main) await main();
