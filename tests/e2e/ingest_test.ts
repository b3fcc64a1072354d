/**
 * End to end: a real Prometheus scrapes node_exporter every second and
 * remote-writes to a connector started as users start it; every scrape of
 * `up` that Prometheus has is in `prom_metric.up`, once, with its labels.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { killAll, startConnector, startNodeExporter } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "Prometheus remote-writes node_exporter scrapes into prom_metric.up, each once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("e2e_ingest");
    try {
      const exporter = await startNodeExporter();
      const connector = await startConnector({ dbUri: db.uri });
      const prom = await startPrometheus({
        scrapeTargets: [exporter.address],
        remoteWriteUrl: `${connector.url}/write`,
      });
      await prom.waitForTargets();

      const stored = async (): Promise<{ ms: number; value: number }[]> => {
        const [{ present }] = await db.sql<{ present: boolean }[]>`
          SELECT to_regclass('prom_metric.up') IS NOT NULL AS present`;
        if (!present) return [];
        const rows = await db.sql<{ ms: string; value: number }[]>`
          SELECT (extract(epoch FROM time) * 1000)::bigint::text AS ms, value
          FROM prom_metric.up ORDER BY time`;
        return rows.map((r) => ({ ms: Number(r.ms), value: r.value }));
      };

      // A few scrapes arrive.
      let deadline = Date.now() + 25_000;
      while ((await stored()).length < 4) {
        assert(Date.now() < deadline, `no samples of up stored:\n${connector.proc.output()}`);
        await sleep(250);
      }

      // What Prometheus itself holds for up, then until the connector has it all.
      const [series] = await prom.query(`up{job="node"}[10m]`) as {
        metric: Record<string, string>;
        values: [number, string][];
      }[];
      assertEquals(series.metric, { __name__: "up", job: "node", instance: exporter.address });
      const scraped = series.values.map(([t]) => Math.round(t * 1000));
      assert(scraped.length >= 4, JSON.stringify(series.values));
      const last = scraped[scraped.length - 1];
      deadline = Date.now() + 15_000;
      let rows = await stored();
      while (rows.filter((r) => r.ms <= last).length < scraped.length) {
        assert(Date.now() < deadline, `samples still missing after 15 s`);
        await sleep(250);
        rows = await stored();
      }
      // Exactly Prometheus's scrapes: none missing, none twice, none invented.
      assertEquals(rows.filter((r) => r.ms <= last).map((r) => r.ms), scraped);
      assertEquals(new Set(rows.map((r) => r.ms)).size, rows.length);
      assert(rows.every((r) => r.value === 1), JSON.stringify(rows));

      const labels = await db.sql<{ labels: unknown; job: string; instance: string }[]>`
        SELECT DISTINCT labels, job, instance FROM prom_metric.up`;
      assertEquals([...labels], [{
        labels: { job: "node", instance: exporter.address },
        job: "node",
        instance: exporter.address,
      }]);

      // node_exporter's own series came along, with their label columns.
      const [{ cpus, samples }] = await db.sql<{ cpus: number; samples: number }[]>`
        SELECT count(DISTINCT cpu)::int AS cpus, count(*)::int AS samples
        FROM prom_metric.node_cpu_seconds_total WHERE mode = 'idle' AND job = 'node'`;
      assert(cpus >= 1 && samples >= cpus, `cpus ${cpus}, samples ${samples}`);

      const metrics = await (await fetch(`${connector.url}/metrics`)).text();
      const written = /^promscale_http_requests_total\{code="204",handler="write"\} (\d+)$/m
        .exec(metrics);
      assert(written && Number(written[1]) >= 1, metrics);
      assert(!/code="[45]\d\d",handler="write"/.test(metrics), metrics);
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
