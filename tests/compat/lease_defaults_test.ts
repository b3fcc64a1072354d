/**
 * The HA lease timings live in `_prom_catalog.default` as in Promscale
 * (issue 20): a connector takes `ha_lease_timeout` and `ha_lease_refresh`
 * from there unless a flag, variable, file key or the dataset
 * configuration sets them, and a dataset configuration's values are the
 * ones it writes there.
 */
import assert from "node:assert/strict";
import type { Connector } from "../../src/app.ts";
import { type Config, parseConfig, withDatabaseLeaseTimings } from "../../src/config.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";

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

Deno.test("connectors take the lease timeout from _prom_catalog.default; a dataset's is written there", async () => {
  const db = await freshDatabase("compat_lease_defaults");
  const started: Connector[] = [];
  const start = async (args: string[]) => {
    const c = await inProcessConnector(db.uri, ["--metrics.high-availability", ...args]);
    started.push(c);
    return c;
  };
  try {
    await migrate(db.sql);
    await db.sql`UPDATE _prom_catalog.default SET value = '2m' WHERE key = 'ha_lease_timeout'`;
    const a = await start([]);
    assert.equal(a.config.metrics.ha.leaseTimeoutMs, 120_000);
    const t0 = Date.now() - 60_000;
    const res = await fetch(`${a.url}/write`, {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body: new Uint8Array(writeRequestBody([{
        labels: { __name__: "up", cluster: "c1", __replica__: "r1" },
        samples: [{ value: 1, timestamp: t0 }],
      }])),
    });
    assert.equal(res.status, 204, await res.text());
    const [lease] = await db.sql<{ until: Date }[]>`
      SELECT lease_until AS until FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`;
    assert.equal(lease.until.getTime(), t0 + 120_000, "the lease runs the database's 2 minutes");

    const b = await start(["--startup.dataset.config", "metrics:\n  ha_lease_timeout: 3m\n"]);
    assert.equal(b.config.metrics.ha.leaseTimeoutMs, 180_000);
    const [row] = await db.sql<{ value: string }[]>`
      SELECT value FROM _prom_catalog.default WHERE key = 'ha_lease_timeout'`;
    assert.equal(row.value, "180000 milliseconds");
    const c = await start([]);
    assert.equal(c.config.metrics.ha.leaseTimeoutMs, 180_000, "a connector started later agrees");
    const d = await start(["--metrics.high-availability.lease-timeout=90s"]);
    assert.equal(d.config.metrics.ha.leaseTimeoutMs, 90_000, "a flag still wins");
  } finally {
    for (const c of started) await c.stop();
    await db.drop();
  }
});
