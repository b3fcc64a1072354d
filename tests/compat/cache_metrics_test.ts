/**
 * Promscale's cache and database metrics (issue 20): a connector writes to
 * PostgreSQL and /metrics carries promscale_cache_* for the series cache,
 * promscale_database_* for its database work and the health check
 * counters, with Promscale 0.17's names, types and label sets (from its
 * pkg/clockcache/metrics.go, pkg/pgxconn/pgx_conn.go and
 * pkg/pgmodel/metrics/database/metrics.go), and values that move as the
 * writes say they should.
 */
import assert from "node:assert/strict";
import { HealthProbe } from "../../src/health.ts";
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";

const HEADERS = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf",
  "x-prometheus-remote-write-version": "0.1.0",
};

async function write(url: string, series: PayloadSeries[]): Promise<number> {
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: HEADERS,
    body: new Uint8Array(writeRequestBody(series)),
  });
  await res.body?.cancel();
  return res.status;
}

/** `count` series of metric `name`, one sample each at `t` with `value`. */
function someSeries(name: string, count: number, t: number, value = 1): PayloadSeries[] {
  return Array.from({ length: count }, (_, i) => ({
    labels: { __name__: name, job: "cache", instance: `i${i}` },
    samples: [{ value, timestamp: t }],
  }));
}

/** `name{labels} value` lines of the exposition, as label text → value. */
function series(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? "", Number(m[3]));
  }
  return out;
}

async function scrape(url: string): Promise<string> {
  return await (await fetch(`${url}/metrics`)).text();
}

const SERIES_CACHE = '{name="series",type="metric"}';

/** Promscale 0.17's metric, its type and its label names (sorted, `le` aside). */
const PROMSCALE: [string, string, string[]][] = [
  ["promscale_cache_enabled", "gauge", ["name", "type"]],
  ["promscale_cache_elements", "gauge", ["name", "type"]],
  ["promscale_cache_capacity_elements", "gauge", ["name", "type"]],
  ["promscale_cache_evictions_total", "counter", ["name", "type"]],
  ["promscale_cache_queries_total", "counter", ["name", "type"]],
  ["promscale_cache_query_hits_total", "counter", ["name", "type"]],
  ["promscale_database_requests_total", "counter", ["method"]],
  ["promscale_database_request_errors_total", "counter", ["method"]],
  ["promscale_database_requests_duration_seconds", "histogram", ["method"]],
  ["promscale_sql_database_health_check_total", "counter", []],
  ["promscale_sql_database_health_check_errors_total", "counter", []],
];

Deno.test("/metrics has Promscale's cache and database metrics, moving with the writes", async () => {
  const db = await freshDatabase("compat_cache");
  const c = await inProcessConnector(db.uri, ["--metrics.cache.series.max-size", "10"]);
  try {
    const t0 = Date.now() - 60_000;
    assert.equal(await write(c.url, someSeries("cache_a", 6, t0)), 204);
    let text = await scrape(c.url);

    // Names, types and label names as Promscale exported them.
    for (const [name, type, labels] of PROMSCALE) {
      assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, "m"), name);
      const sample = type === "histogram" ? `${name}_count` : name;
      const sets = [...series(text, sample).keys()];
      assert.ok(sets.length > 0, `${sample} has no series`);
      for (const set of sets) {
        const names = [...set.matchAll(/(\w+)="/g)].map((m) => m[1]).sort();
        assert.deepEqual(names, labels, `${sample}${set}`);
      }
    }
    // Promscale's default histogram buckets (client_golang's DefBuckets).
    const les = [...series(text, "promscale_database_requests_duration_seconds_bucket").keys()]
      .map((k) => /le="([^"]+)"/.exec(k)![1]);
    assert.deepEqual(les, [
      "0.005",
      "0.01",
      "0.025",
      "0.05",
      "0.1",
      "0.25",
      "0.5",
      "1",
      "2.5",
      "5",
      "10",
      "+Inf",
    ]);

    // The series cache: 6 series written, all looked up once and missed.
    assert.equal(series(text, "promscale_cache_enabled").get(SERIES_CACHE), 1);
    assert.equal(series(text, "promscale_cache_elements").get(SERIES_CACHE), 6);
    assert.equal(series(text, "promscale_cache_capacity_elements").get(SERIES_CACHE), 10);
    assert.equal(series(text, "promscale_cache_queries_total").get(SERIES_CACHE), 6);
    assert.equal(series(text, "promscale_cache_query_hits_total").get(SERIES_CACHE), 0);
    assert.equal(series(text, "promscale_cache_evictions_total").get(SERIES_CACHE), 0);
    // One write, one database request, no error; the health probe ran at start.
    assert.equal(series(text, "promscale_database_requests_total").get('{method="write"}'), 1);
    assert.equal(
      series(text, "promscale_database_request_errors_total").get('{method="write"}'),
      0,
    );
    assert.equal(
      series(text, "promscale_database_requests_duration_seconds_count").get('{method="write"}'),
      1,
    );
    const checks = series(text, "promscale_sql_database_health_check_total").get("")!;
    assert.ok(checks >= 1, `health checks ${checks}`);
    assert.equal(series(text, "promscale_sql_database_health_check_errors_total").get(""), 0);

    // The same series again: every lookup hits, nothing is added.
    assert.equal(await write(c.url, someSeries("cache_a", 6, t0 + 10_000)), 204);
    text = await scrape(c.url);
    assert.equal(series(text, "promscale_cache_elements").get(SERIES_CACHE), 6);
    assert.equal(series(text, "promscale_cache_queries_total").get(SERIES_CACHE), 12);
    assert.equal(series(text, "promscale_cache_query_hits_total").get(SERIES_CACHE), 6);
    assert.equal(series(text, "promscale_database_requests_total").get('{method="write"}'), 2);

    // 9 new series overflow the capacity of 10: what does not fit is evicted,
    // and every series written is either cached or evicted.
    assert.equal(await write(c.url, someSeries("cache_b", 9, t0)), 204);
    text = await scrape(c.url);
    const elements = series(text, "promscale_cache_elements").get(SERIES_CACHE)!;
    const evictions = series(text, "promscale_cache_evictions_total").get(SERIES_CACHE)!;
    assert.ok(elements <= 10, `elements ${elements}`);
    assert.ok(evictions > 0, `evictions ${evictions}`);
    assert.equal(elements + evictions, 6 + 9);
    assert.equal(series(text, "promscale_cache_queries_total").get(SERIES_CACHE), 21);
    assert.equal(series(text, "promscale_cache_query_hits_total").get(SERIES_CACHE), 6);

    // A write the database refuses counts as a failed database request.
    await db.sql.unsafe(
      "ALTER TABLE _prom_data.samples ADD CONSTRAINT cache_metrics_test CHECK (value < 100)",
    );
    const status = await write(c.url, someSeries("cache_a", 1, t0 + 20_000, 1000));
    assert.ok(status >= 400, `status ${status}`);
    text = await scrape(c.url);
    assert.equal(series(text, "promscale_database_requests_total").get('{method="write"}'), 4);
    assert.equal(
      series(text, "promscale_database_request_errors_total").get('{method="write"}'),
      1,
    );
    assert.equal(
      series(text, "promscale_database_requests_duration_seconds_count").get('{method="write"}'),
      4,
    );
    // Metrics this connector has no honest value for are not exported.
    for (const absent of ["promscale_cache_bytes", "promscale_cache_query_latency_microseconds"]) {
      assert.doesNotMatch(text, new RegExp(`^# TYPE ${absent} `, "m"));
    }
  } finally {
    await c.stop();
    await db.drop();
  }
});

Deno.test("a failed health probe counts as a health check error", async () => {
  let fail = false;
  const probe = new HealthProbe({
    probe: () => fail ? Promise.reject(new Error("connection refused")) : Promise.resolve(),
  });
  const metrics = new ConnectorMetrics();
  metrics.watchHealthProbe(probe);
  await probe.probeNow();
  fail = true;
  await probe.probeNow();
  await probe.probeNow();
  const text = metrics.registry.render();
  assert.equal(series(text, "promscale_sql_database_health_check_total").get(""), 3);
  assert.equal(series(text, "promscale_sql_database_health_check_errors_total").get(""), 2);
});
