/**
 * The connector with no database configured at all runs on the embedded
 * database (PGlite): started as users do, in an empty directory, with
 * libpq's PG* variables pointing at a server that does not exist. Written
 * through remote write, read back through remote read and through SQL on
 * the served loopback port, restarted, stopped and killed mid-write.
 */
import { postgres } from "../../deps.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { killAll, REPO_ROOT, spawnProcess, tempDir } from "../helpers/procs.ts";
import { PG_NOWHERE, remoteRead, startEmbeddedConnector } from "./connector.ts";
import { RetentionJob } from "../../src/storage/retention.ts";
import { Logger } from "../../src/telemetry/log.ts";

const T0 = Date.now() - 10 * 60_000;
const WRITE_HEADERS = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };

/** One request: `n` samples of `embedded_test_gauge{job, n}`, 1 s apart from `from`. */
function body(batch: number, n = 10): Uint8Array<ArrayBuffer> {
  return writeRequestBody([{
    labels: { __name__: "embedded_test_gauge", job: "embedded", batch: String(batch % 5) },
    samples: Array.from({ length: n }, (_, i) => ({
      value: batch * 1000 + i,
      timestamp: T0 + batch * 10_000 + i * 1000,
    })),
  }]) as Uint8Array<ArrayBuffer>;
}

async function write(url: string, batch: number): Promise<number> {
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: WRITE_HEADERS,
    body: body(batch),
  });
  await res.body?.cancel();
  return res.status;
}

async function withSql<T>(uri: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(uri, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function countRows(uri: string): Promise<number> {
  return await withSql(uri, async (sql) => {
    const [{ n }] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM prom_metric.embedded_test_gauge`;
    return n;
  });
}

Deno.test({
  name: "main.ts with no database settings runs on the embedded database and keeps its data",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    try {
      const cwd = await tempDir("promscale-embedded-");
      const HA = ["--metrics.high-availability"];
      let c = await startEmbeddedConnector(cwd, HA);
      assertStringIncludes(c.proc.output(), "Embedded database in use");
      assertStringIncludes(c.proc.output(), `dir=${cwd}/promscale-data`);
      assertStringIncludes(c.proc.output(), "--db.uri");
      assertEquals((await Deno.stat(`${cwd}/promscale-data`)).mode! & 0o777, 0o700);

      for (let b = 0; b < 5; b++) assertEquals(await write(c.url, b), 204);
      // A retried request is stored once.
      assertEquals(await write(c.url, 0), 204);

      const series = await remoteRead(c.url, "embedded_test_gauge", T0 - 1, T0 + 3_600_000);
      assertEquals(series.length, 5);
      const all = series.flatMap((s) => s.samples).sort((a, b) => a.timestamp - b.timestamp);
      assertEquals(all.length, 50);
      assertEquals(all[0], { value: 0, timestamp: T0 });
      assertEquals(all[49], { value: 4009, timestamp: T0 + 49_000 });
      assertEquals(series.find((s) => s.labels.batch === "3")?.labels, {
        __name__: "embedded_test_gauge",
        job: "embedded",
        batch: "3",
      });

      // SQL on the served port: the prom_metric view, as users query it.
      const viaSql = await withSql(
        c.sqlUri,
        (sql) =>
          sql<{ value: number; job: string; batch: string }[]>`
          SELECT value, job, batch FROM prom_metric.embedded_test_gauge
          WHERE batch = '2' ORDER BY time`,
      );
      assertEquals(viaSql.map((r) => r.value), [
        2000,
        2001,
        2002,
        2003,
        2004,
        2005,
        2006,
        2007,
        2008,
        2009,
      ]);
      assertEquals(viaSql[0].job, "embedded");

      // HA de-duplication for a pair writing to this connector: the first
      // replica heard leads; the other's copies of the same rounds are not stored.
      const ha = (replica: string, value: number) =>
        fetch(`${c.url}/write`, {
          method: "POST",
          headers: WRITE_HEADERS,
          body: writeRequestBody([{
            labels: { __name__: "embedded_ha", cluster: "c1", __replica__: replica, job: "j" },
            samples: Array.from({ length: 10 }, (_, i) => ({
              value,
              timestamp: T0 + i * 15_000,
            })),
          }]) as Uint8Array<ArrayBuffer>,
        }).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        });
      assertEquals(await ha("a", 1), 204);
      assertEquals(await ha("b", 2), 204);
      await withSql(c.sqlUri, async (sql) => {
        const rows = await sql<{ value: number; cluster: string }[]>`
          SELECT value, cluster FROM prom_metric.embedded_ha ORDER BY time`;
        assertEquals(rows.map((r) => r.value), Array(10).fill(1));
        assertEquals(rows[0].cluster, "c1");
        const [lease] = await sql<{ leader_name: string }[]>`
          SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = 'c1'`;
        assertEquals(lease.leader_name, "a");
      });

      // Retention: a sample older than the retention period goes at the next run.
      const old = writeRequestBody([{
        labels: { __name__: "embedded_old", job: "j" },
        samples: [{ value: 7, timestamp: Date.now() - 5 * 86_400_000 }],
      }]) as Uint8Array<ArrayBuffer>;
      const res = await fetch(`${c.url}/write`, {
        method: "POST",
        headers: WRITE_HEADERS,
        body: old,
      });
      await res.body?.cancel();
      assertEquals(res.status, 204);
      await withSql(c.sqlUri, async (sql) => {
        await sql`SELECT prom_api.set_default_retention_period(INTERVAL '2 days')`;
        const job = new RetentionJob({ sql, log: new Logger("error", "logfmt", () => {}) });
        const done = await job.runOnce();
        assert(done.ran, "the retention job ran");
        const [{ n }] = await sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM prom_metric.embedded_old`;
        assertEquals(n, 0);
        await sql`SELECT prom_api.set_default_retention_period(INTERVAL '90 days')`;
      });

      // A second connector on the same directory is refused with one line.
      const second = spawnProcess("second", Deno.execPath(), [
        "run",
        "-A",
        `${REPO_ROOT}/main.ts`,
        "--web.listen-address",
        "127.0.0.1:0",
      ], { cwd, env: { NO_COLOR: "1", ...PG_NOWHERE } });
      const st = await second.wait();
      assertEquals(st.code, 1, second.output());
      assertStringIncludes(second.output(), "another connector");
      assertStringIncludes(second.output(), "--db.uri");

      assertEquals((await c.proc.stop()).code, 0, c.proc.output());
      c = await startEmbeddedConnector(cwd, HA);
      assertEquals(await countRows(c.sqlUri), 50);
      const again = await remoteRead(c.url, "embedded_test_gauge", T0 - 1, T0 + 3_600_000);
      assertEquals(again.flatMap((s) => s.samples).length, 50);
      assertEquals(await write(c.url, 5), 204);
      assertEquals(await countRows(c.sqlUri), 60);
    } finally {
      await killAll();
    }
  },
});

Deno.test({
  name: "SIGTERM and SIGKILL in the middle of writes leave an embedded database that starts again",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    try {
      const cwd = await tempDir("promscale-embedded-");
      let batch = 0;
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        const c = await startEmbeddedConnector(cwd);
        const acked: number[] = [];
        let stop = false;
        // Four writers, each sending its next batch as soon as the last one is answered.
        const writers = Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 500 && !stop; i++) {
            const b = batch++;
            try {
              if (await write(c.url, b) === 204) acked.push(b);
            } catch {
              return; // the connector went away
            }
          }
        });
        while (acked.length < 20) await new Promise((r) => setTimeout(r, 20));
        c.proc.kill(signal);
        const status = await c.proc.wait();
        stop = true;
        await Promise.all(writers);
        assertEquals(status.signal, signal === "SIGKILL" ? "SIGKILL" : null, c.proc.output());
        const d = await startEmbeddedConnector(cwd);
        // Every acknowledged sample is there (a request cut off may have
        // been committed without its answer, so there can be more).
        const stored = await withSql(
          d.sqlUri,
          (sql) =>
            sql<{ v: number }[]>`SELECT DISTINCT floor(value / 1000)::int AS v
                               FROM prom_metric.embedded_test_gauge`,
        );
        const have = new Set(stored.map((r) => r.v));
        const missing = acked.filter((b) => !have.has(b));
        assertEquals(missing, [], `acknowledged batches missing after ${signal}`);
        assert(acked.length >= 20);
        assertEquals((await d.proc.stop()).code, 0, d.proc.output());
      }
    } finally {
      await killAll();
    }
  },
});
