/**
 * Differential test against the real thing: the same data is queried
 * through our PromQL API and through a real Prometheus 2.42 that reads it
 * from us by `remote_read` (it has no data of its own), so both evaluate
 * PromQL over identical samples. Every query of the corpus runs as instant
 * queries at several times (inside the data, just after a staleness
 * marker, past its end within and beyond the lookback) and as range
 * queries at two steps (one not dividing the data's interval); results
 * must have the same type, the same series and values equal to 1e-9
 * relative, and errors the same errorType.
 */
import { assert } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, spawnProcess, tempDir, waitForHttp } from "../helpers/procs.ts";
import { PROMETHEUS_BIN } from "../helpers/prometheus.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { dataset, T0 } from "./dataset.ts";

const S0 = T0 / 1000;

/** Queries run as instant and range queries. */
export const CORPUS: string[] = [
  // selectors, offset, @
  "dt_requests_total",
  'dt_requests_total{instance="b"}',
  '{__name__=~"dt_req.*", method!="post"}',
  '{__name__=~"dt_(up|nan)", instance!~"a|b"}',
  "dt_temperature",
  "dt_temperature offset 5m",
  "dt_temperature offset -5m",
  `dt_temperature @ ${S0 + 1200}`,
  `dt_requests_total @ ${S0 + 1800} offset 2m`,
  "dt_up @ start()",
  "dt_up @ end()",
  "count(dt_temperature offset 1h)",
  'dt_missing{job="x"}',
  // rates
  "rate(dt_requests_total[5m])",
  "rate(dt_requests_total[1m])",
  "rate(dt_requests_total[40s])",
  "irate(dt_requests_total[5m])",
  "increase(dt_requests_total[10m])",
  "increase(dt_requests_total[10m] offset 3m)",
  `rate(dt_requests_total[5m] @ ${S0 + 900})`,
  "delta(dt_temperature[5m])",
  "idelta(dt_temperature[5m])",
  "deriv(dt_temperature[10m])",
  "predict_linear(dt_temperature[10m], 600)",
  "holt_winters(dt_temperature[10m], 0.5, 0.3)",
  // aggregations
  "sum(rate(dt_requests_total[5m]))",
  "sum by (job) (rate(dt_requests_total[5m]))",
  "sum without (method) (dt_requests_total)",
  "avg by (instance) (dt_temperature)",
  "min(dt_temperature)",
  "max by (location) (dt_temperature)",
  "count by (method) (dt_requests_total)",
  "group by (job) (dt_up)",
  "stddev(dt_temperature)",
  "stdvar by (location) (dt_temperature)",
  "topk(2, dt_temperature)",
  "bottomk(1, dt_requests_total)",
  "topk by (method) (1, dt_requests_total)",
  "quantile(0.9, dt_temperature)",
  "quantile by (job) (0.25, dt_requests_total)",
  'count_values("v", dt_up)',
  "sum by (__name__) ({__name__=~\"dt_up|dt_temperature\"})",
  // histograms
  "histogram_quantile(0.9, rate(dt_latency_seconds_bucket[5m]))",
  "histogram_quantile(0.5, sum by (le) (rate(dt_latency_seconds_bucket[5m])))",
  "histogram_quantile(0.99, sum by (le, instance) (increase(dt_latency_seconds_bucket[10m])))",
  "dt_latency_seconds_sum / dt_latency_seconds_count",
  "rate(dt_latency_seconds_sum[5m]) / rate(dt_latency_seconds_count[5m])",
  // binary operators and matching
  "dt_requests_total * on(instance) group_left(location) dt_temperature",
  "dt_temperature / on(instance) group_right sum by (instance) (dt_requests_total)",
  "dt_up + on(instance) dt_up",
  "dt_up + ignoring(job) dt_up",
  "dt_temperature > 22",
  "dt_temperature > bool 22",
  "22 < dt_temperature",
  "dt_up == 1",
  "dt_requests_total and on(instance) dt_up == 1",
  "dt_requests_total or dt_temperature",
  "dt_requests_total unless on(instance) dt_temperature",
  "-dt_temperature",
  "dt_temperature % 3",
  "2 ^ dt_up",
  "1 + 2 * 3",
  "2 ^ 3 ^ 2",
  "(1 + 2) / 0",
  "-1 % 0",
  "1 > bool 0",
  // math and time
  "abs(dt_temperature - 22)",
  "ceil(dt_temperature)",
  "floor(dt_temperature)",
  "round(dt_temperature, 0.5)",
  "sqrt(dt_temperature)",
  "exp(dt_up)",
  "ln(dt_temperature)",
  "log2(dt_temperature)",
  "log10(dt_requests_total)",
  "clamp(dt_temperature, 18, 22)",
  "clamp_min(dt_temperature, 21)",
  "clamp_max(dt_temperature, 21)",
  "time()",
  "vector(time())",
  'scalar(dt_up{instance="a"})',
  "scalar(dt_up)",
  "timestamp(dt_temperature)",
  "hour()",
  "minute(vector(1700000100))",
  "day_of_week()",
  "month()",
  "year(dt_up)",
  "days_in_month()",
  "day_of_month()",
  "day_of_year()",
  // over time
  "avg_over_time(dt_temperature[10m])",
  "sum_over_time(dt_up[10m])",
  "min_over_time(dt_temperature[10m])",
  "max_over_time(dt_temperature[10m])",
  "count_over_time(dt_temperature[10m])",
  "last_over_time(dt_temperature[10m])",
  "stddev_over_time(dt_temperature[10m])",
  "stdvar_over_time(dt_temperature[10m])",
  "quantile_over_time(0.3, dt_temperature[10m])",
  "present_over_time(dt_temperature[10m])",
  "changes(dt_up[15m])",
  "resets(dt_requests_total[30m])",
  // absent, labels
  'absent(dt_nonexistent{job="x"})',
  "absent(dt_up)",
  'absent_over_time(dt_nonexistent{a="b"}[5m])',
  'label_replace(dt_up, "host", "$1-x", "instance", "(.*)")',
  'label_replace(dt_up, "instance", "", "instance", "b")',
  'label_join(dt_up, "both", "/", "job", "instance")',
  // subqueries
  "max_over_time(rate(dt_requests_total[1m])[10m:1m])",
  "avg_over_time(dt_temperature[5m:30s])",
  "rate(dt_requests_total[5m:])",
  "sum_over_time(dt_up[10m:2m] offset 3m)",
  // NaN and infinities
  "dt_nan",
  "sum(dt_nan)",
  "max(dt_nan)",
  "min(dt_nan)",
  "avg(dt_nan)",
  "dt_nan > 0",
  'count_values("x", dt_nan)',
  "sum_over_time(dt_nan[2m])",
  "avg_over_time(dt_nan[5m])",
  "rate(dt_nan[5m])",
  // errors
  "rate(dt_up)",
  "sum(",
  "dt_up + on(job) dt_up",
  'label_replace(dt_up, "1x", "", "", "")',
  "holt_winters(dt_temperature[5m], 2, 0.5)",
  '"hello"',
  "dt_temperature[5m]",
];

/** Instant-only queries: order matters, or range queries refuse them. */
const INSTANT_ONLY: string[] = [
  "sort(dt_temperature)",
  "sort_desc(dt_requests_total)",
];

const INSTANT_TIMES = [S0 + 600, S0 + 1850, S0 + 2707, S0 + 3720, S0 + 3960];
const RANGES = [
  { start: S0, end: S0 + 4200, step: "60" },
  { start: S0 + 123, end: S0 + 3900, step: "37s" },
];

interface Answer {
  status: number;
  body: {
    status: string;
    errorType?: string;
    error?: string;
    data?: { resultType: string; result: unknown };
  };
}

async function ask(base: string, path: string, params: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${base}/api/v1/${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: await res.json() };
}

function sameValue(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  return Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
}

type Point = [number, string];
interface Item {
  metric: Record<string, string>;
  value?: Point;
  values?: Point[];
}

function key(m: Record<string, string>): string {
  return JSON.stringify(Object.entries(m).sort());
}

/** Differences between two answers, as lines; empty when they agree. */
export function compareAnswers(ours: Answer, theirs: Answer, ordered: boolean): string[] {
  const diffs: string[] = [];
  if (theirs.body.status !== "success" || ours.body.status !== "success") {
    if (ours.body.status !== theirs.body.status || ours.body.errorType !== theirs.body.errorType) {
      diffs.push(
        `status: ours ${ours.status} ${ours.body.errorType ?? "ok"} (${ours.body.error ?? ""}), ` +
          `Prometheus ${theirs.status} ${theirs.body.errorType ?? "ok"} (${theirs.body.error ?? ""})`,
      );
    } else if (ours.status !== theirs.status) {
      diffs.push(`HTTP status: ours ${ours.status}, Prometheus ${theirs.status}`);
    }
    return diffs;
  }
  const a = ours.body.data!;
  const b = theirs.body.data!;
  if (a.resultType !== b.resultType) {
    return [`resultType: ours ${a.resultType}, Prometheus ${b.resultType}`];
  }
  if (a.resultType === "scalar" || a.resultType === "string") {
    const [ta, va] = a.result as Point;
    const [tb, vb] = b.result as Point;
    if (ta !== tb || !sameValue(va, vb)) diffs.push(`ours ${ta} ${va}, Prometheus ${tb} ${vb}`);
    return diffs;
  }
  const ia = a.result as Item[];
  const ib = b.result as Item[];
  if (!ordered) {
    ia.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
    ib.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
  }
  const ka = ia.map((x) => key(x.metric));
  const kb = ib.map((x) => key(x.metric));
  if (ka.join("|") !== kb.join("|")) {
    return [`series: ours ${ka.join(" ")}\n   Prometheus ${kb.join(" ")}`];
  }
  for (let i = 0; i < ia.length; i++) {
    const pa = ia[i].values ?? [ia[i].value!];
    const pb = ib[i].values ?? [ib[i].value!];
    if (pa.length !== pb.length) {
      diffs.push(`${ka[i]}: ours ${pa.length} points, Prometheus ${pb.length}`);
      continue;
    }
    for (let j = 0; j < pa.length; j++) {
      if (pa[j][0] !== pb[j][0] || !sameValue(pa[j][1], pb[j][1])) {
        diffs.push(`${ka[i]} point ${j}: ours ${pa[j]}, Prometheus ${pb[j]}`);
        break;
      }
    }
  }
  return diffs;
}

Deno.test({
  name: "PromQL answers as Prometheus 2.42 does over the same data (corpus, instant and range)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const db = await freshDatabase("promql_diff");
    const conn = await inProcessConnector(db.uri);
    try {
      const write = await fetch(`${conn.url}/write`, {
        method: "POST",
        headers: {
          "content-type": "application/x-protobuf",
          "content-encoding": "snappy",
          "x-prometheus-remote-write-version": "0.1.0",
        },
        body: writeRequestBody(dataset()) as Uint8Array<ArrayBuffer>,
      });
      assert(write.status === 204 || write.status === 200, `write: ${write.status}`);
      await write.body?.cancel();

      const port = freePort();
      const dir = await tempDir("promscale-prometheus-diff-");
      await Deno.writeTextFile(
        `${dir}/prometheus.yml`,
        JSON.stringify({ remote_read: [{ url: `${conn.url}/read`, read_recent: true }] }),
      );
      const proc = spawnProcess("prometheus", PROMETHEUS_BIN, [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
      ]);
      const prom = `http://127.0.0.1:${port}`;
      await waitForHttp(`${prom}/-/ready`, { timeoutMs: 30_000, proc });

      const failures: string[] = [];
      let compared = 0;
      const check = async (query: string, path: string, params: Record<string, string>) => {
        const [ours, theirs] = await Promise.all([
          ask(conn.url, path, { query, ...params }),
          ask(prom, path, { query, ...params }),
        ]);
        compared++;
        const diffs = compareAnswers(ours, theirs, query.startsWith("sort"));
        if (diffs.length) {
          failures.push(`${path} ${query} ${JSON.stringify(params)}\n  ${diffs.slice(0, 3).join("\n  ")}`);
        }
      };
      for (const query of [...CORPUS, ...INSTANT_ONLY]) {
        for (const t of INSTANT_TIMES) await check(query, "query", { time: String(t) });
        if (INSTANT_ONLY.includes(query)) continue;
        for (const r of RANGES) {
          await check(query, "query_range", {
            start: String(r.start),
            end: String(r.end),
            step: r.step,
          });
        }
      }
      assert(
        failures.length === 0,
        `${failures.length} of ${compared} answers differ from Prometheus:\n${failures.join("\n")}`,
      );
      assert(compared >= (CORPUS.length + INSTANT_ONLY.length) * INSTANT_TIMES.length);
    } finally {
      await killAll();
      await conn.stop();
      await db.drop();
    }
  },
});
