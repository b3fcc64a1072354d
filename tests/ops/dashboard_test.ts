/**
 * The Grafana dashboard (packaging/mixin/dashboard.json) works on the
 * connector's real /metrics: a real Prometheus scrapes an in-process
 * connector that has taken HA writes from two clusters with a leader
 * change, then every panel's expression is run through Prometheus's HTTP
 * API (Grafana's `$__rate_interval` as 1m, `$job` as all jobs). Each must
 * parse and evaluate, and return series unless the panel shows something
 * that may legitimately be absent (no 503s, no drops, no retention yet).
 * The alert rules (packaging/mixin/alerts.yaml, Promscale's ingest, cache
 * and storage alerts among them) are evaluated on the same Prometheus:
 * each expression evaluates, and each metric it names has series there.
 *
 * Needs /usr/bin/prometheus (PROMETHEUS_BIN); takes about 15 s.
 */
import { parseYaml } from "../../deps.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { killAll, REPO_ROOT } from "../helpers/procs.ts";
import { type Prometheus, startPrometheus } from "../helpers/prometheus.ts";
import { haFixture } from "./fixture.ts";
import { exposedMetricNames } from "./metric_names.ts";

interface Target {
  expr: string;
  refId: string;
}
interface Panel {
  type: string;
  title: string;
  targets?: Target[];
}

/** Panel expressions that may return no series on a young, healthy connector. */
const MAY_BE_EMPTY = new Set([
  "503 share of writes/A", // no 503 series without a 503
  "Reconciled samples by outcome/A", // no reconcile decision yet
  "Samples dropped by reason/A", // nothing dropped
  "Retention: partitions dropped/A", // the job dropped nothing
]);

/** Metrics alert rules name that a young, healthy connector may not have yet. */
const ALERT_METRICS_MAY_BE_ABSENT = new Set([
  "promscale_ingest_samples_dropped_total", // nothing dropped
  "promscale_ingest_duplicates_total", // no request hit stored samples
]);

async function alertRules(): Promise<{ alert: string; expr: string }[]> {
  const doc = parseYaml(
    await Deno.readTextFile(`${REPO_ROOT}/packaging/mixin/alerts.yaml`),
  ) as { groups: { rules: { alert: string; expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

async function dashboard(): Promise<{ panel: string; target: Target }[]> {
  const doc = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/packaging/mixin/dashboard.json`));
  const out: { panel: string; target: Target }[] = [];
  const walk = (panels: Panel[] & { panels?: Panel[] }[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ panel: p.title, target: t });
      if ((p as { panels?: Panel[] }).panels) walk((p as { panels: Panel[] }).panels);
    }
  };
  walk(doc.panels);
  return out;
}

/** A dashboard expression as Grafana would send it. */
function expand(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$job", ".+");
}

async function query(prom: Prometheus, expr: string): Promise<{ error?: string; n: number }> {
  const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = await res.json();
  if (body.status !== "success") return { error: `${body.errorType}: ${body.error}`, n: 0 };
  const r = body.data.result;
  return { n: Array.isArray(r) ? r.length : 1 };
}

Deno.test("The dashboard's panels use only exposed metrics", async () => {
  const exposed = exposedMetricNames();
  const targets = await dashboard();
  assert(targets.length >= 15, `only ${targets.length} panel expressions`);
  for (const { panel, target } of targets) {
    for (const name of target.expr.match(/\bpromscale_[a-z0-9_]+/g) ?? []) {
      assert(exposed.has(name), `panel "${panel}" uses ${name}, which /metrics does not expose`);
    }
  }
});

Deno.test({
  name: "Every dashboard expression evaluates on Prometheus scraping a connector with HA data",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const targets = await dashboard();
    const f = await haFixture("ops_dashboard");
    try {
      const host = new URL(f.connector.url).host;
      const prom = await startPrometheus({
        scrapeJobs: [{ name: "promscale", targets: [host] }],
        remoteWriteUrl: `${f.connector.url}/write`,
        scrapeInterval: "1s",
      });
      await prom.waitForTargets();
      // Every expression must parse; those that need data are retried
      // until a few scrapes (and the 10 s database probe) have happened.
      const deadline = Date.now() + 45_000;
      let pending = targets;
      while (true) {
        const failing: string[] = [];
        const next: typeof targets = [];
        for (const t of pending) {
          const key = `${t.panel}/${t.target.refId}`;
          const r = await query(prom, expand(t.target.expr));
          if (r.error) {
            failing.push(`${key}: ${r.error} (${t.target.expr})`);
            next.push(t);
          } else if (r.n === 0 && !MAY_BE_EMPTY.has(key)) {
            failing.push(`${key}: no series (${t.target.expr})`);
            next.push(t);
          }
        }
        if (failing.length === 0) break;
        if (Date.now() > deadline || failing.some((m) => !m.includes(": no series"))) {
          assertEquals(failing, [], "dashboard expressions failing");
        }
        pending = next;
        await new Promise((r) => setTimeout(r, 1000));
      }
      // The alert rules evaluate there too (firing or not), and every
      // metric they name has series: Promscale's ingest, cache and storage
      // alerts see ours.
      const rules = await alertRules();
      assert(rules.some((r) => r.alert === "PromscaleIngestHighErrorRate"));
      for (const r of rules) {
        const res = await query(prom, r.expr);
        assertEquals(res.error, undefined, `alert ${r.alert}: ${r.expr}`);
        for (const name of new Set(r.expr.match(/\bpromscale_[a-z0-9_]+/g) ?? [])) {
          if (ALERT_METRICS_MAY_BE_ABSENT.has(name)) continue;
          const { n } = await query(prom, `count(${name})`);
          assertEquals(n, 1, `alert ${r.alert}: no series of ${name} on Prometheus`);
        }
      }
      // The HA panels show both clusters and the new leader.
      const leaders = await prom.query("max by (cluster, replica) (promscale_ha_cluster_leader)");
      assertEquals(leaders.length, 2);
      const changes = await prom.query("max by (cluster) (promscale_ha_leader_changes_total)") as {
        metric: { cluster: string };
        value: [number, string];
      }[];
      assertEquals(changes.map((c) => [c.metric.cluster, c.value[1]]), [["prod", "1"]]);
    } finally {
      await killAll();
      await f.close();
    }
  },
});
