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
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";
import { expositionResponse, ObservedHistogram } from "../helpers/exposition.ts";

function startTarget(): { port: number; close: () => Promise<void> } {
  const h = new ObservedHistogram(0, 1e-3);
  let scrapes = 0;
  let requests = 0;
  const port = freePort();
  const server = Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, () => {
    scrapes++;
    for (const v of [0.3, 1.5, 3 + scrapes % 5, -0.7, 0.0005, 12.5 * (scrapes % 3)]) h.observe(v);
    requests += 3 + (scrapes % 4);
    const now = Date.now();
    const families = [
      {
        name: "test_latency_seconds",
        help: "Latency of test requests.",
        type: 4,
        metric: [{
          label: [{ name: "path", value: "/api" }],
          histogram: h.proto(),
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
    return expositionResponse(families);
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
