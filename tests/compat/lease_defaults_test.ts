/**
 * The HA lease timings live in `_prom_catalog.default` as in Promscale
 * (issue 20): a connector takes `ha_lease_timeout` and `ha_lease_refresh`
 * from there unless a flag, variable, file key or the dataset
 * configuration sets them, and a dataset configuration's values are the
 * ones it writes there.
 */
import assert from "node:assert/strict";
import { type Config, parseConfig, withDatabaseLeaseTimings } from "../../src/config.ts";

function parse(argv: string[], env: Record<string, string> = {}): Config {
  return parseConfig(argv, env, () => null);
}

const DB = { leaseTimeoutMs: 120_000, leaseRefreshMs: 5_000 };

Deno.test("timings set nowhere come from _prom_catalog.default", () => {
  const c = parse(["--metrics.high-availability"]);
  assert.deepEqual(c.metrics.ha.timingsFromDatabase, { leaseTimeout: true, leaseRefresh: true });
  const { config, warnings } = withDatabaseLeaseTimings(c, DB);
  assert.deepEqual(warnings, []);
  assert.equal(config.metrics.ha.leaseTimeoutMs, 120_000);
  assert.equal(config.metrics.ha.leaseRefreshMs, 5_000);
  assert.equal(c.metrics.ha.leaseTimeoutMs, 60_000, "the parsed config is left as it was");
});

Deno.test("a flag, a variable or the dataset configuration wins over the database", () => {
  const flag = withDatabaseLeaseTimings(
    parse(["--metrics.high-availability.lease-timeout=90s"]),
    DB,
  ).config.metrics.ha;
  assert.deepEqual([flag.leaseTimeoutMs, flag.leaseRefreshMs], [90_000, 5_000]);
  const env = withDatabaseLeaseTimings(
    parse([], { PROMSCALE_METRICS_HIGH_AVAILABILITY_LEASE_REFRESH: "2s" }),
    DB,
  ).config.metrics.ha;
  assert.deepEqual([env.leaseTimeoutMs, env.leaseRefreshMs], [120_000, 2_000]);
  const c = parse(["--startup.dataset.config", "metrics:\n  ha_lease_timeout: 3m\n"]);
  assert.equal(c.dataset.haLeaseTimeoutMs, 180_000, "to be written to _prom_catalog.default");
  assert.equal(c.dataset.haLeaseRefreshMs, null);
  const ds = withDatabaseLeaseTimings(c, DB).config.metrics.ha;
  assert.deepEqual([ds.leaseTimeoutMs, ds.leaseRefreshMs], [180_000, 5_000]);
});

Deno.test("database timings that break the refresh rule, or are missing, are not used", () => {
  const c = parse([]);
  const bad = withDatabaseLeaseTimings(c, { leaseTimeoutMs: 60_000, leaseRefreshMs: 45_000 });
  assert.equal(bad.config, c);
  assert.match(bad.warnings[0], /^Ignoring _prom_catalog.default ha_lease_timeout .* failover/);
  const none = withDatabaseLeaseTimings(c, { leaseTimeoutMs: null, leaseRefreshMs: null });
  assert.equal(none.config, c);
  assert.deepEqual(none.warnings, []);
});
