/**
 * PromQL speed: `query_range` over N series × H hours at a 15 s step for
 * `rate(x[5m])`, `sum by (job) (rate(x[5m]))` and
 * `histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`, against
 * the connector's own API and against a real Prometheus 2.42 reading the
 * same data from the connector by remote read, in the same run. Both
 * answers are compared (same series, values bit for bit) before timing counts.
 *
 *   deno run -A bench/promql.ts [--series 1000] [--hours 6] [--repeat 3]
 *
 * Never part of `deno task test`.
 *
 * @module
 */
import { freshDatabase } from "../tests/helpers/db.ts";
import { inProcessConnector } from "../tests/helpers/connector.ts";
import { killAll } from "../tests/helpers/procs.ts";
import { readerOptions, startPrometheus } from "../tests/helpers/prometheus.ts";
import { type PayloadSeries, writeRequestBody } from "../tests/helpers/payload.ts";
import { compareAnswers } from "../tests/promql/compare.ts";

const arg = (name: string, def: number) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : def;
};
const SERIES = arg("series", 1000);
const HOURS = arg("hours", 6);
const REPEAT = arg("repeat", 3);
const STEP = 15_000;
const T0 = 1_700_000_100_000;
const POINTS = HOURS * 3600_000 / STEP;
const BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
const HIST_INSTANCES = Math.max(1, Math.floor(SERIES / BUCKETS.length));

const QUERIES = [
  "rate(bench_requests_total[5m])",
  "sum by (job) (rate(bench_requests_total[5m]))",
  "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
];

/** Time slots [from, to) of every series, as one write request. */
function slots(from: number, to: number): PayloadSeries[] {
  const out: PayloadSeries[] = [];
  const times: number[] = [];
  for (let i = from; i < to; i++) times.push(i);
  for (let s = 0; s < SERIES; s++) {
    out.push({
      labels: {
        __name__: "bench_requests_total",
        job: `job-${s % 10}`,
        instance: `host-${s}`,
      },
      samples: times.map((i) => ({
        value: i * ((s % 7) + 1) + (s % 13),
        timestamp: T0 + i * STEP,
      })),
    });
  }
  for (let h = 0; h < HIST_INSTANCES; h++) {
    let acc = 0;
    BUCKETS.forEach((le, b) => {
      acc += ((h + b) % 5) + 1;
      out.push({
        labels: { __name__: "bench_latency_seconds_bucket", job: "api", instance: `h-${h}`, le },
        samples: times.map((i) => ({ value: acc * i, timestamp: T0 + i * STEP })),
      });
    });
  }
  return out;
}

/**
 * The same queries at a 10 m step (a dashboard over days): the step is longer
 * than the 5 m windows, so only the windows' samples are fetched (pushdown.ts).
 */
const LONG_STEP_QUERIES = QUERIES.slice(0, 2);

async function timed(base: string, query: string, step = "15") {
  const params = new URLSearchParams({
    query,
    start: String(T0 / 1000),
    end: String((T0 + (POINTS - 1) * STEP) / 1000),
    step,
  });
  const started = performance.now();
  const res = await fetch(`${base}/api/v1/query_range`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: params.toString(),
  });
  const body = await res.json();
  return { ms: performance.now() - started, answer: { status: res.status, body } };
}

console.log(
  `${new Date().toISOString()}, load average ${Deno.loadavg().join(" ")}, ` +
    `${navigator.hardwareConcurrency} CPUs; ${SERIES} series, ${HOURS} h, step 15 s`,
);
const db = await freshDatabase("bench_promql");
const conn = await inProcessConnector(db.uri, [], { pool: 8 });
try {
  const loadStart = performance.now();
  for (let i = 0; i < POINTS; i += 40) {
    const res = await fetch(`${conn.url}/write`, {
      method: "POST",
      headers: { "content-type": "application/x-protobuf", "content-encoding": "snappy" },
      body: writeRequestBody(slots(i, Math.min(POINTS, i + 40))) as Uint8Array<ArrayBuffer>,
    });
    if (res.status !== 204) throw new Error(`write ${res.status}: ${await res.text()}`);
  }
  const total = POINTS * (SERIES + HIST_INSTANCES * BUCKETS.length);
  console.log(
    `Loaded ${total} samples (${SERIES} counters + ${HIST_INSTANCES * BUCKETS.length} buckets × ` +
      `${POINTS} points) in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`,
  );
  await db.sql`VACUUM ANALYZE`;
  if (Deno.args.includes("--profile")) {
    // Where the connector's time goes: fetch, evaluation, JSON.
    const { PgPromqlStore } = await import("../src/promql/fetch.ts");
    const { parseExpr } = await import("../src/promql/parse.ts");
    const { Evaluator, selectorRanges } = await import("../src/promql/eval.ts");
    const { runQueries } = await import("../src/remote_read/querier.ts");
    const store = new PgPromqlStore({ sql: db.sql });
    for (const q of QUERIES) {
      const expr = parseExpr(q);
      const qt = {
        startMs: T0,
        endMs: T0 + (POINTS - 1) * STEP,
        stepMs: STEP,
        lookbackMs: 300_000,
      };
      const ranges = [...selectorRanges(expr, qt)];
      const reads = ranges.map(([vs, r]) => ({
        matchers: vs.matchers,
        startMs: r.minMs,
        endMs: r.maxMs,
      }));
      // Remote read's querier (what fetch.ts used before fetch_sql.ts), for comparison.
      const q0 = performance.now();
      await runQueries(reads, { sql: db.sql, maxSamples: 1e9 });
      const t0 = performance.now();
      const lists = await store.select(
        ranges.map(([vs, r]) => ({ matchers: vs.matchers, minMs: r.minMs, maxMs: r.maxMs })),
        1e9,
      );
      const t1 = performance.now();
      const ev = new Evaluator(new Map(ranges.map(([vs], i) => [vs, lists[i]])), qt);
      const out = await ev.range(expr);
      const t2 = performance.now();
      JSON.stringify(out);
      const t3 = performance.now();
      console.log(
        `${q}: fetch ${(t1 - t0).toFixed(0)} ms (remote read's querier: ${
          (t0 - q0).toFixed(0)
        } ms), eval ${(t2 - t1).toFixed(0)} ms, json ${(t3 - t2).toFixed(0)} ms`,
      );
    }
  }

  const prom = (await startPrometheus({
    ...readerOptions(conn.url),
    args: ["--query.max-samples=500000000"],
  })).url;

  console.log(
    `\n| query | step | connector (ms, median of ${REPEAT}) | Prometheus + remote read (ms) | ` +
      `ratio (Prometheus ÷ connector) |`,
  );
  console.log("| --- | --- | --- | --- | --- |");
  const cases = [
    ...QUERIES.map((q) => ({ q, step: "15" })),
    ...LONG_STEP_QUERIES.map((q) => ({ q, step: "600" })),
  ];
  for (const { q, step } of cases) {
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      const a = await timed(conn.url, q, step);
      const b = await timed(prom, q, step);
      const diffs = compareAnswers(a.answer, b.answer, false);
      if (diffs.length) throw new Error(`${q}: answers differ: ${diffs.slice(0, 3).join("; ")}`);
      ours.push(a.ms);
      theirs.push(b.ms);
    }
    const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    console.log(
      `| \`${q}\` | ${step} s | ${med(ours).toFixed(0)} | ${med(theirs).toFixed(0)} | ${
        (med(theirs) / med(ours)).toFixed(2)
      }× |`,
    );
  }
  console.log(`\nload average at the end: ${Deno.loadavg().join(" ")}`);
} finally {
  await killAll();
  await conn.stop();
  await db.drop();
}
