/**
 * Differential test against the real thing: the same data is queried
 * through our PromQL API and through a real Prometheus 2.42 that reads it
 * from us by `remote_read` (it has no data of its own), so both evaluate
 * PromQL over identical samples. Every query of the corpus runs as instant
 * queries at several times (inside the data, just after a staleness
 * marker, past its end within and beyond the lookback) and as range
 * queries at two steps (one not dividing the data's interval); results
 * must have the same type, the same series and values equal bit for bit
 * (or, for the functions Go's and JavaScript's math libraries round
 * differently, to 1e-12 relative: compare.ts), and errors the same
 * errorType.
 */
import { assert } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, spawnProcess, tempDir, waitForHttp } from "../helpers/procs.ts";
import { PROMETHEUS_BIN } from "../helpers/prometheus.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { inexact, runCorpus } from "./compare.ts";
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
  'sum by (__name__) ({__name__=~"dt_up|dt_temperature"})',
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
  // more edge cases
  "rate(dt_requests_total[5m:30s])",
  "max_over_time(deriv(dt_temperature[5m])[20m:2m])",
  "min_over_time(dt_temperature[5m] @ end())",
  "predict_linear(dt_temperature[10m] @ end(), 300)",
  `dt_temperature offset 1m @ ${S0 + 900}`,
  "dt_requests_total / ignoring(method) group_left sum by (instance, job) (dt_requests_total)",
  "dt_up * on() group_left vector(2)",
  "count(dt_up) or vector(0)",
  "absent(dt_nonexistent) or dt_up",
  "dt_requests_total > on(instance) group_left dt_temperature",
  "topk(1, dt_nan)",
  "bottomk(2, dt_nan)",
  "quantile(0.5, dt_nan)",
  "stddev(dt_nan)",
  "timestamp(dt_temperature offset 2m)",
  "timestamp(sum(dt_up))",
  "quantile(-1, dt_up)",
  "quantile(2, dt_up)",
  "topk(0, dt_up)",
  'topk(scalar(dt_up{instance="a"}), dt_temperature)',
  "histogram_quantile(0, rate(dt_latency_seconds_bucket[5m]))",
  "histogram_quantile(1, rate(dt_latency_seconds_bucket[5m]))",
  "histogram_quantile(1.5, rate(dt_latency_seconds_bucket[5m]))",
  "histogram_quantile(0.75, dt_latency_seconds_bucket)",
  // Buckets are grouped with their name: a renamed instance's buckets are
  // one histogram; two metrics' buckets with otherwise equal labels are
  // two histograms, whose answers collide (an error).
  'histogram_quantile(0.75, label_replace(dt_latency_seconds_bucket, "__name__", "other_bucket", "instance", "a") or dt_latency_seconds_bucket)',
  'histogram_quantile(0.75, label_replace(dt_latency_seconds_bucket, "__name__", "other_bucket", "le", "0.1|[+]Inf") or dt_latency_seconds_bucket{instance="b"})',
  'label_replace(dt_up, "x", "$1$2", "instance", "(a)|(b)")',
  'label_replace(dt_up, "x", "${n}y", "instance", "(?P<n>.)")',
  'label_replace(dt_up, "x", "$1x", "instance", "(.)")',
  'dt_up{instance=~"a|c"} offset 30s',
  'dt_up{instance=~"(?i)A|B"}',
  'dt_up{instance!~"(?i)a"}',
  'label_replace(dt_up, "x", "$1", "instance", "(?i)(B)")',
  '{__name__=~"dt_u.*", instance=~".+"}',
  '{__name__=~".*"}',
  'dt_up{instance=~"a\\d?"}',
  'dt_temperature{location=""}',
  'dt_temperature{location!=""}',
  '{job="api", __name__!~"dt_latency.*"}',
  "changes(dt_temperature[5m])",
  "resets(dt_latency_seconds_bucket[1h])",
  "deriv(dt_requests_total[2m])",
  "increase(dt_latency_seconds_count[1h])",
  "irate(dt_requests_total[1m] offset 10m)",
  "1 - dt_up",
  "dt_up - 1 == 0",
  "dt_up != bool 1",
  "dt_up >= on(instance) dt_up",
  "dt_up atan2 dt_up",
  "sgn(dt_temperature - 21)",
  "deg(dt_up)",
  "rad(dt_up)",
  "sin(dt_up)",
  "cos(dt_temperature)",
  "asin(dt_up)",
  "acosh(dt_temperature)",
  "pi()",
  "avg(dt_temperature) without (instance)",
  "count without (instance) (dt_up)",
  "sum by (nonexistent) (dt_up)",
  "max without () (dt_up)",
  'count_values by (job) ("value", dt_up)',
  "group(dt_temperature)",
  "stddev by (instance) (dt_requests_total)",
  "dt_up unless dt_up",
  "dt_up and dt_temperature",
  "dt_up or on(instance) dt_temperature",
  "vector(1) + vector(2)",
  "scalar(vector(3)) * 2",
  "sum(rate(dt_requests_total[5m])) by (instance) > 0.5",
  "last_over_time(dt_temperature[1m])",
  "quantile_over_time(0.5, dt_nan[3m])",
  "max_over_time(dt_nan[3m])",
  "stddev_over_time(dt_nan[5m])",
  "changes(dt_nan[5m])",
  "dt_nan == dt_nan",
  "dt_nan * 0",
  "-dt_nan",
  "abs(dt_nan)",
  "clamp(dt_nan, 1, 2)",
  "round(dt_nan)",
  "sum_over_time(dt_requests_total[1m:15s])",
  "count_over_time(dt_requests_total[7m])",
  "absent_over_time(dt_up[1m])",
  'absent(dt_nonexistent{job="a", job="b", x=~"y"})',
  // more errors
  "{}",
  'foo{a=""}',
  'dt_up + "a"',
  "sum(dt_up[5m])",
  "time() > 1",
  "dt_up and 1",
  "unknown_func(dt_up)",
  'topk("a", dt_up)',
  "dt_up[5m] offset",
  "dt_up * on(instance) group_left dt_requests_total",
  // breadth: combinations
  "sum(dt_requests_total) by (instance) * on(instance) group_left(location) max by (instance, location) (dt_temperature)",
  "rate(dt_requests_total[2m]) > bool 0.5",
  "increase(dt_requests_total[1h])",
  "delta(dt_requests_total[10m])",
  "idelta(dt_up[1m])",
  "irate(dt_temperature[1m])",
  "deriv(dt_up[10m])",
  "predict_linear(dt_requests_total[30m], 3600)",
  "holt_winters(dt_requests_total[15m], 0.1, 0.9)",
  "avg_over_time(dt_up[1h])",
  "max_over_time(dt_requests_total[1h])",
  "min_over_time(dt_up[30m])",
  'count_over_time({__name__=~"dt_.*"}[1m])',
  "quantile_over_time(0.99, dt_requests_total[10m])",
  "quantile_over_time(0, dt_temperature[10m])",
  "quantile_over_time(1, dt_temperature[10m])",
  "quantile_over_time(-0.5, dt_temperature[10m])",
  "stddev_over_time(dt_up[30m])",
  "changes(dt_requests_total[5m])",
  "resets(dt_up[1h])",
  "last_over_time(dt_requests_total[5m] offset 10m)",
  "present_over_time(dt_requests_total[1m])",
  'absent_over_time(dt_temperature{instance="b"}[5m])',
  'absent(dt_temperature{instance="b"})',
  "timestamp(dt_requests_total)",
  `timestamp(dt_up @ ${S0 + 1000})`,
  "time() - timestamp(dt_temperature)",
  "minute(timestamp(dt_up))",
  "hour(dt_temperature * 0 + 1700003600)",
  "day_of_week(vector(0))",
  "days_in_month(vector(1709251200))",
  "year(vector(-1))",
  "topk(3, rate(dt_requests_total[5m]))",
  "bottomk by (location) (2, dt_temperature)",
  "topk(1, dt_temperature) by (location)",
  'count_values("temp", round(dt_temperature))',
  "quantile(0.5, rate(dt_requests_total[5m])) by (method)",
  "stdvar(dt_up)",
  "stddev without (instance) (dt_temperature)",
  "group without (method) (dt_requests_total)",
  "avg(dt_nan) by (kind)",
  "sum(dt_nan) by (kind) > 5",
  "max(dt_temperature) - min(dt_temperature)",
  "dt_up / dt_up",
  "dt_up / 0",
  "dt_up ^ 0.5",
  "dt_temperature ^ -1",
  "(-dt_temperature) ^ 0.5",
  "dt_temperature % -3",
  "-dt_temperature % 3",
  "dt_temperature atan2 3",
  "dt_requests_total == on(instance, method, job) dt_requests_total",
  "dt_requests_total != ignoring(method) group_left dt_up",
  "dt_up > on(instance) group_right dt_requests_total",
  "dt_up unless on() vector(1)",
  "dt_up and on() vector(1)",
  "vector(1) or dt_up",
  "(dt_up or dt_temperature) and on(instance) dt_up == 0",
  "dt_nan == bool dt_nan",
  "dt_nan != bool dt_nan",
  "dt_nan > bool -Inf",
  "scalar(sum(dt_up)) + 1",
  "vector(scalar(dt_up))",
  "time() % 60",
  "-time()",
  'label_join(dt_requests_total, "id", "-", "instance", "method")',
  'label_join(dt_up, "job", "")',
  'label_replace(dt_up, "__name__", "renamed", "", "")',
  'label_replace(dt_up, "job", "$1", "nonexistent", "(.*)")',
  'label_replace(dt_up, "x", "y", "instance", "z")',
  "avg_over_time(rate(dt_requests_total[5m])[30m:5m])",
  "min_over_time((dt_temperature > 20)[10m:1m])",
  "deriv(sum(dt_requests_total)[10m:1m])",
  "max_over_time(dt_up[5m:1m] @ end())",
  "sum_over_time(vector(1)[5m:1m])",
  "count_over_time(dt_temperature[20m:3m] offset 1m)",
  "max_over_time(max_over_time(dt_temperature[5m:1m])[15m:5m])",
  "dt_up offset 2h",
  "rate(dt_requests_total[5m] offset -10m)",
  `dt_up @ ${S0 - 1000}`,
  "sum(dt_up @ end())",
  "dt_up @ start() + dt_up",
  'label_join(dt_up, "1a", ",", "job")',
  'count_values("1a", dt_up)',
  "quantile_over_time(0.5, dt_up)",
  "absent(dt_up[5m])",
  "vector(dt_up)",
  "scalar(1)",
  "sort(1)",
  "1 and 2",
  "dt_up offset 5",
  "dt_up[5]",
  "dt_up[1m:0s]",
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
  "sort(dt_nan)",
  "sort_desc(dt_nan)",
  "dt_temperature[10m:1m] @ start()",
  "dt_requests_total[1m] offset 30s",
  "sort_desc(sum by (instance) (rate(dt_requests_total[5m])))",
  "sort(-dt_up)",
];

const INSTANT_TIMES = [S0 + 600, S0 + 1850, S0 + 2707, S0 + 3720, S0 + 3960];
const RANGES = [
  { start: S0, end: S0 + 4200, step: "60" },
  { start: S0 + 123, end: S0 + 3900, step: "37s" },
];

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

      const { compared, failures, nonEmpty, errors, inexactQueries } = await runCorpus({
        ours: conn.url,
        prometheus: prom,
        queries: [...CORPUS, ...INSTANT_ONLY],
        instantOnly: INSTANT_ONLY,
        times: INSTANT_TIMES,
        ranges: RANGES,
      });
      assert(
        failures.length === 0,
        `${failures.length} of ${compared} answers differ from Prometheus:\n${failures.join("\n")}`,
      );
      assert(compared >= (CORPUS.length + INSTANT_ONLY.length) * INSTANT_TIMES.length);
      // The corpus must exercise data, not agree on empty answers.
      assert(nonEmpty > compared * 0.7, `only ${nonEmpty} of ${compared} answers hold data`);
      assert(errors > 0 && errors < compared * 0.1, `${errors} errors of ${compared}`);
      console.log(
        `${compared} answers compared: ${nonEmpty} with data, ${errors} errors; ` +
          `${inexact.count} values equal only to 1e-12 (${inexact.examples.join(", ")}), ` +
          `in ${inexactQueries.size} queries:\n  ${[...inexactQueries].join("\n  ")}`,
      );
    } finally {
      await killAll();
      await conn.stop();
      await db.drop();
    }
  },
});
