/**
 * PostgreSQL restarted while a real Prometheus writes every second through
 * the connector: while the database is down the connector answers 503
 * (Prometheus keeps the samples in its WAL and retries), it reconnects by
 * itself, and afterwards no 1-second scrape slot of `up` is missing and none
 * is doubled. The database is a private cluster (tests/helpers/pgcluster.ts)
 * so that the shared server other tests use is never touched.
 */
import { postgres } from "../../deps.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startPgCluster } from "../helpers/pgcluster.ts";
import { killAll, startConnector } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";

const DOWN_MS = 6_000;

/** Sum of a counter's samples whose labels include all of `match`, from a /metrics text. */
export function counterValue(text: string, name: string, match: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    const labels = /\{(.*)\}/.exec(line)?.[1] ?? "";
    if (Object.entries(match).every(([k, v]) => labels.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

async function until<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined | false>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (true) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${what} (last error: ${last})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

Deno.test({
  name:
    "PostgreSQL restarted under a writing Prometheus: 503 meanwhile, no scrape slot lost or doubled",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const pg = await startPgCluster();
    const sql = postgres(pg.uri, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      const connector = await startConnector({
        dbUri: pg.uri,
        args: ["--db.connections-max", "4", "--db.connection-timeout", "5s"],
      });
      const prom = await startPrometheus({
        scrapeTargets: [connector.address],
        remoteWriteUrl: `${connector.url}/write`,
      });
      await prom.waitForTargets();
      const upRows = () =>
        sql<{ t: number }[]>`
          SELECT (extract(epoch FROM time) * 1000)::float8 AS t FROM prom_metric.up
          WHERE instance = ${connector.address} ORDER BY time`;
      // A few slots stored before the outage.
      await until("the first samples of up", 60_000, async () => (await upRows()).length >= 3);

      const downAt = Date.now();
      await pg.stop();
      let healthDown = 0;
      while (Date.now() - downAt < DOWN_MS) {
        const res = await fetch(`${connector.url}/healthz`, {
          signal: AbortSignal.timeout(10_000),
        });
        await res.body?.cancel();
        if (res.status === 503) healthDown++;
        await new Promise((r) => setTimeout(r, 500));
      }
      const metricsDown = await (await fetch(`${connector.url}/metrics`, {
        signal: AbortSignal.timeout(10_000),
      })).text();
      const refused = counterValue(metricsDown, "promscale_http_requests_total", {
        handler: "write",
        code: "503",
      });
      await pg.start();
      const upAt = Date.now();

      // Prometheus catches up on its own through the same connector.
      const rows = await until("up to catch up after the restart", 90_000, async () => {
        const r = await upRows();
        return r.length > 0 && r[r.length - 1].t >= upAt + 3_000 ? r : undefined;
      });
      const metricsAfter = await (await fetch(`${connector.url}/metrics`, {
        signal: AbortSignal.timeout(10_000),
      })).text();
      const written = counterValue(metricsAfter, "promscale_http_requests_total", {
        handler: "write",
        code: "204",
      });

      let missing = 0;
      let doubled = 0;
      for (let i = 1; i < rows.length; i++) {
        const gap = rows[i].t - rows[i - 1].t;
        if (gap < 500) doubled++;
        else missing += Math.max(0, Math.round(gap / 1000) - 1);
      }
      console.log(
        `pg restart: ${rows.length} slots of up from ${new Date(rows[0].t).toISOString()} ` +
          `to ${new Date(rows[rows.length - 1].t).toISOString()}, database down ${
            upAt - downAt
          } ms, writes refused with 503 while down: ${refused}, /healthz 503 answers: ${healthDown}, ` +
          `writes accepted: ${written}, slots missing: ${missing}, slots doubled: ${doubled}`,
      );
      assert(rows[0].t < downAt, "no slot before the outage");
      assert(refused > 0, "the connector never answered 503 while the database was down");
      assert(healthDown > 0, "/healthz never answered 503 while the database was down");
      assertEquals({ missing, doubled }, { missing: 0, doubled: 0 });
      // Each slot is one row: a retried batch stored nothing twice.
      const [{ n, d }] = await sql<{ n: string; d: string }[]>`
        SELECT count(*) AS n, count(DISTINCT time) AS d FROM prom_metric.up`;
      assertEquals(n, d);
      await prom.stop();
      await connector.stop();
    } finally {
      await sql.end({ timeout: 5 }).catch(() => {});
      await killAll();
      await pg.destroy();
    }
  },
});
