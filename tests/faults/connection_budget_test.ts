/**
 * The connection budget: with `--db.connections-max N` the connector never
 * holds more than N connections to the database, however hard it is
 * pushed (Promscale opened connections without bound: its issues #187,
 * #202, #980), and 500 concurrent requests are queued or refused with 503,
 * never failed with a 500. pg_stat_activity is sampled every 50 ms while
 * the load runs; the connector is a subprocess with its own application_name.
 */
import { postgres } from "../../deps.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase, PG_ADMIN_URI } from "../helpers/db.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";
import { killAll, startConnector } from "../helpers/procs.ts";

const MAX_CONNECTIONS = 4;
const CONCURRENT = 500;
const ROUNDS = 2;

Deno.test({
  name: "--db.connections-max bounds database connections; 500 concurrent writes get 204 or 503",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("fault_budget");
    const app = `budget-${crypto.randomUUID().slice(0, 8)}`;
    const admin = postgres(PG_ADMIN_URI, { max: 1, onnotice: () => {} });
    let sampling = true;
    let peak = 0;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const [{ n }] = await admin<{ n: string }[]>`
          SELECT count(*) AS n FROM pg_stat_activity
          WHERE application_name = ${app} OR (datname = ${db.name} AND pid <> pg_backend_pid())`;
        peak = Math.max(peak, Number(n));
        samples++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const connector = await startConnector({
        dbUri: db.uri,
        args: [
          "--db.connections-max",
          String(MAX_CONNECTIONS),
          "--db.app",
          app,
          // Let every request reach the pool's gate rather than stop at the
          // in-flight cap, so the pool itself is what is pushed.
          "--web.max-in-flight-requests",
          String(CONCURRENT * 2),
        ],
      });
      const statuses = new Map<number, number>();
      const acked: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        await Promise.all(Array.from({ length: CONCURRENT }, async (_, k) => {
          const series: PayloadSeries[] = Array.from({ length: 20 }, (_, i) => ({
            labels: { __name__: "budget_load", req: `${round}-${k}`, i: String(i) },
            samples: [{ value: i, timestamp: 1_700_000_000_000 + round * 1000 }],
          }));
          const res = await fetch(`${connector.url}/write`, {
            method: "POST",
            headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
            body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
            signal: AbortSignal.timeout(120_000),
          });
          const text = await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status >= 500 && res.status !== 503) {
            throw new Error(`Write answered ${res.status}: ${text}`);
          }
          if (res.ok) acked.push(`${round}-${k}`);
        }));
      }
      // One more sample after the load, so the peak covers its tail.
      await new Promise((r) => setTimeout(r, 200));
      sampling = false;
      await sampler;
      await connector.stop();
      console.log(
        `connection budget: --db.connections-max ${MAX_CONNECTIONS}, ${ROUNDS} x ${CONCURRENT} ` +
          `concurrent writes, outcomes ${JSON.stringify(Object.fromEntries(statuses))}, ` +
          `peak connections ${peak} over ${samples} samples of pg_stat_activity`,
      );
      assert(samples >= 5, `pg_stat_activity sampled only ${samples} times`);
      assert(peak > 0, "no connection of the connector was ever seen");
      assert(peak <= MAX_CONNECTIONS, `${peak} connections, limit ${MAX_CONNECTIONS}`);
      assertEquals(
        [...statuses.keys()].filter((s) => s !== 204 && s !== 503),
        [],
        "statuses other than 204 and 503",
      );
      assert((statuses.get(204) ?? 0) > 0, "no write succeeded");
      // What was acknowledged is stored, 20 series per request.
      const [{ n }] = await db.sql<{ n: string }[]>`
        SELECT count(DISTINCT req) AS n FROM prom_metric.budget_load`;
      assertEquals(Number(n), acked.length);
    } finally {
      sampling = false;
      await sampler.catch(() => {});
      await admin.end({ timeout: 5 });
      await killAll();
      await db.drop();
    }
  },
});
