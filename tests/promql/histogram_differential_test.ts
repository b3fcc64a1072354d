/**
 * Differential test of native histograms in PromQL against the real thing:
 * a real Prometheus 2.42 (`--enable-feature=native-histograms`) scrapes a
 * target written here (protobuf exposition format) and remote-writes to our
 * connector (`send_native_histograms`); then a corpus of queries over
 * histograms runs on Prometheus's own API (its TSDB) and on ours, as
 * instant queries at several times and as range queries at two steps.
 * Results must have the same type, series, float values and histograms
 * (count, sum, every bucket) bit for bit (compare.ts), and errors the same
 * errorType. (Prometheus 2.42's remote READ does not carry histograms, so
 * the remote-read harness of differential_test.ts cannot load them.)
 *
 * The target: `nh_latency_seconds` for three paths — "/a" schema 0 with
 * negative, zero and positive buckets; "/b" schema 3 with a wider zero
 * bucket, positive values only, and a counter reset half way; "/c" that
 * disappears early (staleness markers) — a float counter
 * `nh_requests_total` per path (mixed float/histogram vectors), and
 * `nh_switch`, one series that is a float counter first and a native
 * histogram later (mixed float/histogram windows).
 */
import { assert } from "../helpers/assert.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";
import { expositionResponse, ObservedHistogram } from "../helpers/exposition.ts";
import { askApi, compareAnswers, runCorpus } from "./compare.ts";

/** Scrapes after which "/b" restarts and "/c" is gone. */
const RESET_AT = 14;
const C_GONE_AT = 9;
const SWITCH_AT = 11;

function startTarget(): { port: number; scrapes: () => number; close: () => Promise<void> } {
  const a = new ObservedHistogram(0, 1e-3);
  let b = new ObservedHistogram(3, 1e-2);
  const c = new ObservedHistogram(1, 1e-3);
  const sw = new ObservedHistogram(2, 1e-3);
  const requests = new Map<string, number>([["/a", 0], ["/b", 0]]);
  let scrapes = 0;
  const port = freePort();
  const server = Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, () => {
    scrapes++;
    // Values well inside their buckets (never on a power of 2^(2^-3)).
    for (const v of [0.3, 1.45, 3.3 + (scrapes % 5) * 1.1, -0.7, -5.5, 0.0005, 0.0052]) {
      a.observe(v);
    }
    if (scrapes === RESET_AT) b = new ObservedHistogram(3, 1e-2);
    for (const v of [0.13, 0.61, 1.3 + (scrapes % 3) * 0.37, 7.1, 0.004]) b.observe(v);
    for (let i = 0; i < scrapes % 4; i++) b.observe(2.2);
    c.observe(0.9);
    c.observe(2.7 + scrapes % 2);
    requests.set("/a", requests.get("/a")! + 3 + (scrapes % 4));
    requests.set("/b", requests.get("/b")! + 1);
    sw.observe(0.2 + scrapes % 3);
    const hist = [
      { label: [{ name: "path", value: "/a" }], histogram: a.proto() },
      { label: [{ name: "path", value: "/b" }], histogram: b.proto() },
    ];
    if (scrapes < C_GONE_AT) {
      hist.push({ label: [{ name: "path", value: "/c" }], histogram: c.proto() });
    }
    const families = [
      { name: "nh_latency_seconds", help: "Latency.", type: 4, metric: hist },
      {
        name: "nh_requests_total",
        help: "Requests.",
        type: 0,
        metric: [...requests].map(([path, value]) => ({
          label: [{ name: "path", value: path }],
          counter: { value },
        })),
      },
      scrapes < SWITCH_AT
        ? {
          name: "nh_switch",
          help: "Switches.",
          type: 0,
          metric: [{ label: [{ name: "path", value: "/s" }], counter: { value: scrapes } }],
        }
        : {
          name: "nh_switch",
          help: "Switches.",
          type: 4,
          metric: [{ label: [{ name: "path", value: "/s" }], histogram: sw.proto() }],
        },
    ];
    return expositionResponse(families);
  });
  return { port, scrapes: () => scrapes, close: () => server.shutdown() };
}

const H = "nh_latency_seconds";

/** Queries run as instant and range queries. */
export const HISTOGRAM_CORPUS: string[] = [
  // selectors, lookback, staleness, offset
  H,
  `${H}{path="/a"}`,
  `${H} offset 3s`,
  `{__name__=~"nh_.*"}`,
  // rate/increase/delta (counter reset on "/b", "/c" going stale)
  `rate(${H}[5s])`,
  `rate(${H}{path="/b"}[4s])`,
  `increase(${H}[10s])`,
  `delta(${H}[6s])`,
  `rate({__name__=~"nh_.*"}[5s])`,
  `rate(${H}[20s:2s])`,
  // histogram functions
  `histogram_count(${H})`,
  `histogram_sum(${H})`,
  `histogram_count(rate(${H}[5s]))`,
  `histogram_sum(increase(${H}[10s]))`,
  `histogram_quantile(0.5, ${H})`,
  `histogram_quantile(0.9, rate(${H}[5s]))`,
  `histogram_quantile(0.99, sum(rate(${H}[5s])))`,
  `histogram_quantile(0.1, sum by (path) (${H}))`,
  `histogram_quantile(0, ${H})`,
  `histogram_quantile(1, ${H})`,
  `histogram_quantile(-1, ${H})`,
  `histogram_quantile(2, ${H})`,
  `histogram_quantile(0.5, {__name__=~"nh_.*"})`,
  `histogram_fraction(0, 2, ${H})`,
  `histogram_fraction(-1, 1, rate(${H}[5s]))`,
  `histogram_fraction(-Inf, +Inf, ${H})`,
  `histogram_fraction(0.001, 0.5, sum(${H}))`,
  `histogram_fraction(3, 1, ${H})`,
  // aggregations
  `sum(${H})`,
  `sum by (path) (rate(${H}[5s]))`,
  `sum({__name__=~"nh_.*"})`,
  `sum by (path) ({__name__=~"nh_.*"})`,
  `avg(${H})`,
  `count(${H})`,
  `max(${H})`,
  `topk(1, ${H})`,
  `count_values("v", ${H})`,
  `quantile(0.5, ${H})`,
  `stddev(${H})`,
  `group by (path) (${H})`,
  // operators
  `${H} + ${H}`,
  `${H}{path="/a"} + ignoring(path) ${H}{path="/b"}`,
  `${H} - ${H}`,
  `${H} / ${H}`,
  `${H} * 2`,
  `2 * ${H}`,
  `${H} > 1`,
  `${H} < 1`,
  `${H} == bool 0`,
  `-${H}`,
  `${H} + on(path) nh_requests_total`,
  `${H} and on(path) nh_requests_total`,
  `${H} or nh_requests_total`,
  `${H} unless on(path) nh_requests_total`,
  // functions reading values
  `count_over_time(${H}[10s])`,
  `sum_over_time(${H}[10s])`,
  `last_over_time(${H}[10s])`,
  `max_over_time(${H}[10s])`,
  `changes(${H}[10s])`,
  `resets(${H}[10s])`,
  `irate(${H}[5s])`,
  `deriv(${H}[10s])`,
  `timestamp(${H})`,
  `abs(${H})`,
  `label_replace(${H}, "p", "$1", "path", "/(.*)")`,
  `label_replace(${H}, "p", "$1", "path", "nomatch(.*)")`,
  `sort(${H})`,
  `scalar(${H}{path="/a"})`,
  `absent(${H}{path="/zzz"})`,
  `absent_over_time(${H}{path="/c"}[3s])`,
  // more of the same, and a series that turns from float to histogram
  `${H} == ${H}`,
  `${H} + 1`,
  `${H} > bool 0`,
  `histogram_quantile(0.5, rate(${H}[5s]) + rate(${H}[5s]))`,
  `increase(${H}[1s])`,
  `rate(${H}[5s] offset 2s)`,
  `sum_over_time(rate(${H}[5s])[10s:2s])`,
  `avg_over_time(${H}[10s])`,
  `quantile_over_time(0.5, ${H}[10s])`,
  `stddev_over_time(${H}[10s])`,
  `present_over_time(${H}[10s])`,
  `holt_winters(${H}[10s], 0.5, 0.5)`,
  `predict_linear(${H}[10s], 60)`,
  `clamp(${H}, 1, 2)`,
  `round(${H})`,
  `sort_desc(${H})`,
  `bottomk(2, ${H})`,
  `nh_switch`,
  `rate(nh_switch[4s])`,
  `delta(nh_switch[6s])`,
  `histogram_count(nh_switch)`,
  `count_over_time(nh_switch[6s])`,
  `sum(nh_switch)`,
  // a native and a classic histogram of the same series: neither is answered
  `histogram_quantile(0.5, ${H} or label_replace(label_replace(nh_requests_total, "le", "+Inf", "", ""), "__name__", "${H}", "", ""))`,
  `histogram_quantile(0.5, ${H}{path="/b"} or label_replace(label_replace(nh_requests_total, "le", "+Inf", "", ""), "__name__", "${H}", "", ""))`,
];

/** Queries whose answer is a range vector (instant queries only). */
const INSTANT_ONLY = [`${H}[4s]`, `rate(${H}[5s])[6s:2s]`];

Deno.test({
  name: "native histograms in PromQL answer as in Prometheus 2.42 (scraped, remote-written)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const db = await freshDatabase("promql_hist_diff");
    const target = startTarget();
    const conn = await inProcessConnector(db.uri);
    let targetOpen = true;
    try {
      const prom = await startPrometheus({
        scrapeJobs: [{ name: "nh", targets: [`127.0.0.1:${target.port}`] }],
        remoteWriteUrl: `${conn.url}/write`,
        remoteWrite: { send_native_histograms: true },
        args: ["--enable-feature=native-histograms"],
      });
      await prom.waitForTargets(60_000);
      const deadline = Date.now() + 90_000;
      while (target.scrapes() < RESET_AT + 8 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
      }
      assert(target.scrapes() >= RESET_AT + 8, `only ${target.scrapes()} scrapes`);
      // The target goes away: Prometheus marks its series stale.
      await target.close();
      targetOpen = false;
      await new Promise((r) => setTimeout(r, 3000));
      // Both sides have the same samples once remote write has caught up.
      const probe = `count_over_time(${H}[1h]) or on() count_over_time(nh_requests_total[1h])`;
      const now = String(Date.now() / 1000);
      let same = false;
      for (let i = 0; i < 60 && !same; i++) {
        const [ours, theirs] = await Promise.all([
          askApi(conn.url, "query", { query: probe, time: now }),
          askApi(prom.url, "query", { query: probe, time: now }),
        ]);
        const r = theirs.body.data?.result;
        if (!Array.isArray(r)) throw new Error(`probe: ${JSON.stringify(theirs.body)}`);
        same = compareAnswers(ours, theirs, false).length === 0 && r.length > 0;
        if (!same) await new Promise((r) => setTimeout(r, 500));
      }
      assert(same, "remote write did not deliver every sample");
      // The data's time span, from Prometheus.
      const span = await askApi(prom.url, "query", {
        query: `max_over_time(timestamp(${H}{path="/a"})[1h:1s])`,
        time: now,
      });
      const firstAns = await askApi(prom.url, "query", {
        query: `min_over_time(timestamp(${H}{path="/a"})[1h:1s])`,
        time: now,
      });
      const last = Number((span.body.data!.result as { value: [number, string] }[])[0].value[1]);
      const first = Number(
        (firstAns.body.data!.result as { value: [number, string] }[])[0].value[1],
      );
      assert(last - first > 15, `data spans ${first}..${last}`);
      const times = [
        first + 4.5,
        first + (C_GONE_AT + 1) * 1.0,
        first + (RESET_AT + 0.5) * 1.0,
        (first + last) / 2,
        last - 0.3,
        last + 2,
        last + 400,
      ];
      const ranges = [
        { start: first - 2, end: last + 10, step: "1" },
        { start: first + 0.7, end: last + 3, step: "2.3" },
      ];

      const { compared, failures, withHistograms, errors } = await runCorpus({
        ours: conn.url,
        prometheus: prom.url,
        queries: [...HISTOGRAM_CORPUS, ...INSTANT_ONLY],
        instantOnly: INSTANT_ONLY,
        times,
        ranges,
      });
      assert(
        failures.length === 0,
        `${failures.length} of ${compared} answers differ from Prometheus:\n${
          failures.slice(0, 40).join("\n")
        }`,
      );
      assert(withHistograms > compared * 0.2, `only ${withHistograms} answers hold histograms`);
      console.log(
        `${compared} answers compared: ${withHistograms} with histograms, ${errors} errors`,
      );
    } finally {
      await killAll();
      if (targetOpen) await target.close();
      await conn.stop();
      await db.drop();
    }
  },
});
