/**
 * Moving from the embedded database to a PostgreSQL server, as the README
 * says: the server gets the schema from `--startup.only`, then
 * packaging/move-to-server.sh copies through the SQL port the connector
 * serves, and a connector started with `--db.uri` on the server reads the
 * data back.
 */
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { STALE_NAN_BITS, writeRequestBody } from "../helpers/payload.ts";
import { killAll, REPO_ROOT, spawnProcess, startConnector, tempDir } from "../helpers/procs.ts";
import { remoteRead, startEmbeddedConnector } from "./connector.ts";

const T0 = Date.now() - 30 * 60_000;

Deno.test({
  name: "move-to-server.sh copies an embedded database into PostgreSQL, read back with --db.uri",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const target = await freshDatabase("embedded_move");
    try {
      const cwd = await tempDir("promscale-embedded-move-");
      const c = await startEmbeddedConnector(cwd);
      const res = await fetch(`${c.url}/write`, {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: writeRequestBody([
          {
            labels: { __name__: "moved_total", job: "a", instance: "x:1" },
            samples: Array.from({ length: 20 }, (_, i) => ({
              value: i * 1.5,
              timestamp: T0 + i * 15_000,
            })),
          },
          {
            labels: { __name__: "moved_gauge", job: "b" },
            samples: [
              { value: 1, timestamp: T0 },
              { value: 0, valueBits: STALE_NAN_BITS, timestamp: T0 + 15_000 },
            ],
          },
        ]) as Uint8Array<ArrayBuffer>,
      });
      assertEquals(res.status, 204, await res.text());
      const admin = await import("../../deps.ts").then(({ postgres }) =>
        postgres(c.sqlUri, { max: 1, onnotice: () => {} })
      );
      await admin`SELECT prom_api.set_metric_retention_period('moved_total', INTERVAL '400 days')`;
      await admin.end();

      const init = spawnProcess("startup-only", Deno.execPath(), [
        "run",
        "-A",
        `${REPO_ROOT}/main.ts`,
        "--db.uri",
        target.uri,
        "--startup.only",
      ]);
      assertEquals((await init.wait()).code, 0, init.output());

      const move = spawnProcess("move", "bash", [
        `${REPO_ROOT}/packaging/move-to-server.sh`,
        c.sqlUri,
        target.uri,
      ]);
      assertEquals((await move.wait()).code, 0, move.output());
      assertStringIncludes(move.output(), "moved 22 samples of 2 series");
      // Run again (more writes may have come): nothing is doubled.
      const again = spawnProcess("move-again", "bash", [
        `${REPO_ROOT}/packaging/move-to-server.sh`,
        c.sqlUri,
        target.uri,
      ]);
      assertEquals((await again.wait()).code, 0, again.output());

      const server = await startConnector({ dbUri: target.uri });
      const series = await remoteRead(server.url, "moved_total", T0 - 1, T0 + 3_600_000);
      assertEquals(series.length, 1);
      assertEquals(series[0].labels, { __name__: "moved_total", job: "a", instance: "x:1" });
      assertEquals(
        series[0].samples,
        Array.from({ length: 20 }, (_, i) => ({ value: i * 1.5, timestamp: T0 + i * 15_000 })),
      );
      const stale = await target.sql<{ bits: string }[]>`
        SELECT encode(float8send(value), 'hex') AS bits FROM prom_metric.moved_gauge
        ORDER BY time`;
      assertEquals(stale.map((r) => r.bits), [
        "3ff0000000000000",
        STALE_NAN_BITS.toString(16).padStart(16, "0"),
      ]);
      const [{ retention }] = await target.sql<{ retention: string }[]>`
        SELECT prom_api.get_metric_retention_period('moved_total')::text AS retention`;
      assertEquals(retention, "400 days");
    } finally {
      await killAll();
      await target.drop();
    }
  },
});
