/**
 * End to end with a real Prometheus 2.42 (`--enable-feature=native-histograms,
 * exemplar-storage`) scraping a tiny target written here that serves the
 * protobuf exposition format (a native histogram with negative, zero and
 * positive buckets that grows every scrape, and a counter with a new
 * exemplar every scrape), and remote-writing to an in-process connector
 * with `send_native_histograms` and `send_exemplars`. Then, at every
 * timestamp both have, `histogram_count`, `histogram_sum` and
 * `histogram_quantile` through our SQL functions answer what the writing
 * Prometheus answers from its own TSDB; exemplars and metadata are in SQL.
 */
import assert from "node:assert/strict";
import { protobuf } from "../../deps.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";

// The exposition format's messages (io.prometheus.client, metrics.proto),
// the subset the target sends; field numbers as upstream.
const EXPOSITION_PROTO = `
syntax = "proto3";
package io.prometheus.client;
message LabelPair { string name = 1; string value = 2; }
enum MetricType { COUNTER = 0; GAUGE = 1; SUMMARY = 2; UNTYPED = 3; HISTOGRAM = 4; GAUGE_HISTOGRAM = 5; }
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Exemplar { repeated LabelPair label = 1; double value = 2; Timestamp timestamp = 3; }
message Counter { double value = 1; Exemplar exemplar = 2; }
message BucketSpan { sint32 offset = 1; uint32 length = 2; }
message Histogram {
  uint64 sample_count = 1;
  double sample_sum = 2;
  sint32 schema = 5;
  double zero_threshold = 6;
  uint64 zero_count = 7;
  repeated BucketSpan negative_span = 9;
  repeated sint64 negative_delta = 10;
  repeated BucketSpan positive_span = 12;
  repeated sint64 positive_delta = 13;
}
message Metric { repeated LabelPair label = 1; Counter counter = 3; Histogram histogram = 7; }
message MetricFamily { string name = 1; string help = 2; MetricType type = 3; repeated Metric metric = 4; }
`;
const MetricFamily = protobuf.parse(EXPOSITION_PROTO, { keepCase: true }).root.lookupType(
  "io.prometheus.client.MetricFamily",
);

/** A native histogram of schema 0 that the target fills a little more every scrape. */
class Observed {
  count = 0;
  sum = 0;
  zero = 0;
  pos = new Map<number, number>();
  neg = new Map<number, number>();

  observe(v: number): void {
    this.count++;
    this.sum += v;
    if (Math.abs(v) <= 1e-3) this.zero++;
    else {
      const idx = Math.ceil(Math.log2(Math.abs(v)));
      const m = v > 0 ? this.pos : this.neg;
      m.set(idx, (m.get(idx) ?? 0) + 1);
    }
  }

  /** Spans and deltas of one side, as the exposition format wants them. */
  static side(m: Map<number, number>) {
    const idx = [...m.keys()].sort((a, b) => a - b);
    const spans: { offset: number; length: number }[] = [];
    const deltas: number[] = [];
    let prevIdx = 0;
    let prevCount = 0;
    for (let i = 0; i < idx.length; i++) {
      if (i > 0 && idx[i] === idx[i - 1] + 1) spans[spans.length - 1].length++;
      else spans.push({ offset: i === 0 ? idx[i] : idx[i] - prevIdx - 1, length: 1 });
      prevIdx = idx[i];
      const c = m.get(idx[i])!;
      deltas.push(c - prevCount);
      prevCount = c;
    }
    return { spans, deltas };
  }
}

function startTarget(): { port: number; close: () => Promise<void> } {
  const h = new Observed();
  let scrapes = 0;
  let requests = 0;
  const port = freePort();
  const server = Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, () => {
    scrapes++;
    for (const v of [0.3, 1.5, 3 + scrapes % 5, -0.7, 0.0005, 12.5 * (scrapes % 3)]) h.observe(v);
    requests += 3 + (scrapes % 4);
    const pos = Observed.side(h.pos);
    const neg = Observed.side(h.neg);
    const now = Date.now();
    const families = [
      {
        name: "test_latency_seconds",
        help: "Latency of test requests.",
        type: 4,
        metric: [{
          label: [{ name: "path", value: "/api" }],
          histogram: {
            sample_count: h.count,
            sample_sum: h.sum,
            schema: 0,
            zero_threshold: 1e-3,
            zero_count: h.zero,
            positive_span: pos.spans,
            positive_delta: pos.deltas,
            negative_span: neg.spans,
            negative_delta: neg.deltas,
          },
        }],
      },
      {
        name: "test_requests_total",
        help: "Test requests served.",
        type: 0,
        metric: [{
          label: [{ name: "path", value: "/api" }],
          counter: {
            value: requests,
            exemplar: {
              label: [{ name: "trace_id", value: `trace-${scrapes}` }],
              value: 0.25 * scrapes,
              timestamp: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
            },
          },
        }],
      },
    ];
    const parts = families.map((f) =>
      MetricFamily.encodeDelimited(MetricFamily.fromObject(f)).finish()
    );
    const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      body.set(p, o);
      o += p.length;
    }
    return new Response(body, {
      headers: {
        "content-type":
          "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
      },
    });
  });
  return { port, close: () => server.shutdown() };
}

async function promValue(url: string, expr: string, ms: number): Promise<number | undefined> {
  const res = await fetch(
    `${url}/api/v1/query?query=${encodeURIComponent(expr)}&time=${(ms / 1000).toFixed(3)}`,
  );
  const body = await res.json();
  if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
  const r = body.data.result as { value: [number, string] }[];
  return r.length ? Number(r[0].value[1]) : undefined;
}

function close(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

Deno.test({
  name: "native histograms from Prometheus 2.42 answer the same count, sum and quantile in SQL",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("dm_prometheus");
    const target = startTarget();
    const connector = await inProcessConnector(db.uri);
    try {
      const prom = await startPrometheus({
        scrapeJobs: [{ name: "test", targets: [`127.0.0.1:${target.port}`] }],
        remoteWriteUrl: `${connector.url}/write`,
        remoteWrite: {
          send_native_histograms: true,
          send_exemplars: true,
          metadata_config: { send: true, send_interval: "1s" },
        },
        args: ["--enable-feature=native-histograms,exemplar-storage"],
      });
      await prom.waitForTargets(60_000);
      // Wait for about ten stored histograms.
      const deadline = Date.now() + 60_000;
      let n = 0;
      while (Date.now() < deadline) {
        const rows = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM _prom_data.histogram_samples`.catch(() => [{ n: 0 }]);
        n = rows[0].n;
        if (n >= 10) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(n >= 10, `only ${n} histograms stored`);
      const rows = await db.sql<
        { t: Date; c: number; s: number; q50: number; q90: number; q10: number }[]
      >`SELECT time AS t, prom_api.histogram_count(histogram) AS c,
               prom_api.histogram_sum(histogram) AS s,
               prom_api.histogram_quantile(0.5, histogram) AS q50,
               prom_api.histogram_quantile(0.9, histogram) AS q90,
               prom_api.histogram_quantile(0.1, histogram) AS q10
        FROM prom_histogram.test_latency_seconds WHERE path = '/api' ORDER BY time`;
      let compared = 0;
      for (const r of rows) {
        const t = r.t.getTime();
        const c = await promValue(prom.url, "histogram_count(test_latency_seconds)", t);
        if (c === undefined) continue;
        const s = await promValue(prom.url, "histogram_sum(test_latency_seconds)", t);
        assert.equal(r.c, c, `count at ${t}`);
        assert.equal(r.s, s, `sum at ${t}`);
        for (const [q, ours] of [[0.5, r.q50], [0.9, r.q90], [0.1, r.q10]]) {
          const theirs = await promValue(
            prom.url,
            `histogram_quantile(${q}, test_latency_seconds)`,
            t,
          );
          assert.ok(
            close(ours, theirs!),
            `quantile ${q} at ${t}: ours ${ours}, Prometheus ${theirs}`,
          );
        }
        compared++;
      }
      assert.ok(compared >= 10, `compared ${compared} histograms`);
      // Exemplars and metadata.
      const ex = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM prom_api.exemplars
        WHERE metric_name = 'test_requests_total' AND exemplar_labels ? 'trace_id'`;
      assert.ok(ex[0].n >= 3, `${ex[0].n} exemplars stored`);
      const meta = await db.sql<{ type: string; help: string }[]>`
        SELECT type, help FROM prom_api.metric_metadata WHERE metric_name = 'test_latency_seconds'`;
      assert.deepEqual(meta.map((m) => ({ ...m })), [
        { type: "histogram", help: "Latency of test requests." },
      ]);
    } finally {
      await killAll();
      await connector.stop();
      await target.close();
      await db.drop();
    }
  },
});
