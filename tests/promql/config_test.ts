/** The --metrics.promql.* flags: defaults, flag, environment and config file. */
import { assertEquals } from "../helpers/assert.ts";
import { parseConfig } from "../../src/config.ts";

Deno.test("--metrics.promql.* flags have Prometheus's defaults and every source", () => {
  const none = () => null;
  assertEquals(parseConfig([], {}, none).metrics.promql, {
    queryTimeoutMs: 120_000,
    maxSamples: 50_000_000,
    lookbackDeltaMs: 300_000,
    maxPointsPerTs: 11_000,
    subqueryStepMs: 60_000,
    maxConcurrency: 20,
  });
  const flags = parseConfig(
    [
      "--metrics.promql.query-timeout=30s",
      "--metrics.promql.max-samples=1000",
      "--metrics.promql.lookback-delta=1m",
      "--metrics.promql.max-points-per-ts=500",
      "--metrics.promql.default-subquery-step-interval=15s",
      "--metrics.promql.max-concurrency=4",
    ],
    {},
    none,
  ).metrics.promql;
  assertEquals(flags, {
    queryTimeoutMs: 30_000,
    maxSamples: 1000,
    lookbackDeltaMs: 60_000,
    maxPointsPerTs: 500,
    subqueryStepMs: 15_000,
    maxConcurrency: 4,
  });
  const env = parseConfig([], { PROMSCALE_METRICS_PROMQL_QUERY_TIMEOUT: "10s" }, none);
  assertEquals(env.metrics.promql.queryTimeoutMs, 10_000);
  const file = parseConfig(
    [],
    {},
    (p) => p === "config.yml" ? "metrics:\n  promql:\n    lookback-delta: 2m\n" : null,
  );
  assertEquals(file.metrics.promql.lookbackDeltaMs, 120_000);
  assertEquals(file.warnings, []);
});
