/**
 * End to end: a real Prometheus with `remote_read` to the connector
 * (`read_recent: true`) and nothing else (no scrape, no remote write), so
 * every sample it returns came from the connector. Samples of a counter
 * and a gauge are written through the connector's `/write` first; PromQL
 * through Prometheus's HTTP API then returns exactly those samples.
 *
 * The connector runs with `--metrics.high-availability` and Prometheus has
 * the external labels `cluster` and `__replica__`: Prometheus adds both as
 * matchers to every remote read query, and the replica label is never
 * stored, so the read only works if the connector drops that matcher
 * (Promscale issue #619) while `cluster` still selects.
 */
import { assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, spawnProcess, startConnector, tempDir, waitForHttp } from "../helpers/procs.ts";
import { PROMETHEUS_BIN } from "../helpers/prometheus.ts";
import { type PayloadSeries, STALE_NAN_BITS, writeRequestBody } from "../helpers/payload.ts";

const STEP_MS = 15_000;
const EXTERNAL = { cluster: "c1", __replica__: "prometheus-0" };

/** A Prometheus that only reads from the connector. */
async function startReadOnlyPrometheus(readUrl: string): Promise<string> {
  const port = freePort();
  const dir = await tempDir("promscale-prometheus-read-");
  const config = {
    global: { external_labels: EXTERNAL },
    remote_read: [{ url: readUrl, read_recent: true }],
  };
  await Deno.writeTextFile(`${dir}/prometheus.yml`, JSON.stringify(config, null, 2));
  const proc = spawnProcess("prometheus", PROMETHEUS_BIN, [
    `--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/data`,
    `--web.listen-address=127.0.0.1:${port}`,
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/-/ready`, { timeoutMs: 30_000, proc });
  return url;
}

interface Matrix {
  metric: Record<string, string>;
  values?: [number, string][];
  value?: [number, string];
}

/** A PromQL query through Prometheus's HTTP API; the result as [ms, value] per series. */
async function promql(
  url: string,
  path: "query" | "query_range",
  params: Record<string, string>,
): Promise<{ metric: Record<string, string>; samples: [number, number][] }[]> {
  const res = await fetch(`${url}/api/v1/${path}?${new URLSearchParams(params)}`);
  const body = await res.json();
  assertEquals(body.status, "success", JSON.stringify(body));
  return (body.data.result as Matrix[])
    .map((s) => ({
      metric: s.metric,
      samples: (s.values ?? [s.value!]).map((
        [t, v],
      ): [number, number] => [Math.round(t * 1000), promValue(v)]),
    }))
    .sort((a, b) => JSON.stringify(a.metric) < JSON.stringify(b.metric) ? -1 : 1);
}

/** A value as Prometheus's API prints it ("+Inf", "NaN", Go's shortest decimal) → the double. */
function promValue(text: string): number {
  return text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
}

Deno.test({
  name: "Prometheus reads back exactly the stored samples through remote read",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("e2e_remote_read");
    try {
      const connector = await startConnector({
        dbUri: db.uri,
        args: ["--metrics.high-availability"],
      });
      const promUrl = await startReadOnlyPrometheus(`${connector.url}/read`);

      // 40 samples 15 s apart, ending a minute ago.
      const last = Math.floor(Date.now() / 1000) * 1000 - 60_000;
      const times = Array.from({ length: 40 }, (_, i) => last - (39 - i) * STEP_MS + 7);
      // A counter with a reset two thirds in; two gauges, one ending stale.
      const counter = times.map((t, i) => ({
        timestamp: t,
        value: i < 27 ? 1000 + i * 12.5 : (i - 27) * 3,
      }));
      const gaugeA = times.map((t, i) => ({
        timestamp: t,
        value: [21.5, -3.25, 0.1 + 0.2, 1e-300, Infinity][i % 5],
      }));
      const gaugeB = times.map((
        t,
        i,
      ) => (i === times.length - 1
        ? { timestamp: t, value: 0, valueBits: STALE_NAN_BITS }
        : { timestamp: t, value: 18 + i / 8 })
      );
      const series: PayloadSeries[] = [
        {
          labels: { __name__: "e2e_requests_total", ...EXTERNAL, instance: "i1", job: "app" },
          samples: counter,
        },
        {
          labels: { __name__: "e2e_temperature", ...EXTERNAL, job: "app", room: "a" },
          samples: gaugeA,
        },
        {
          labels: { __name__: "e2e_temperature", ...EXTERNAL, job: "app", room: "b" },
          samples: gaugeB,
        },
      ];
      const res = await fetch(`${connector.url}/write`, {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
      });
      assertEquals(res.status, 204, await res.text());
      const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT (SELECT count(*) FROM prom_metric.e2e_requests_total)::int
             + (SELECT count(*) FROM prom_metric.e2e_temperature)::int AS n`;
      assertEquals(n, 3 * times.length, "all samples stored (HA filter passed them)");

      const at = String((last + 1000) / 1000);
      const expect = (samples: { timestamp: number; value: number; valueBits?: bigint }[]) =>
        samples
          // PromQL leaves staleness markers out of range selections.
          .filter((s) => s.valueBits === undefined)
          .map((s): [number, number] => [s.timestamp, s.value]);

      // Raw samples: a range selector evaluated once.
      const counterOut = await promql(promUrl, "query", {
        query: "e2e_requests_total[15m]",
        time: at,
      });
      assertEquals(counterOut, [{
        metric: { __name__: "e2e_requests_total", instance: "i1", job: "app" },
        samples: expect(counter),
      }]);
      const gaugeOut = await promql(promUrl, "query", { query: "e2e_temperature[15m]", time: at });
      assertEquals(gaugeOut, [
        { metric: { __name__: "e2e_temperature", job: "app", room: "a" }, samples: expect(gaugeA) },
        { metric: { __name__: "e2e_temperature", job: "app", room: "b" }, samples: expect(gaugeB) },
      ]);

      // A range query stepping on the sample times sees each sample once.
      const range = await promql(promUrl, "query_range", {
        query: 'e2e_temperature{room=~"a|c"}',
        start: String(times[0] / 1000),
        end: String(times[times.length - 1] / 1000),
        step: String(STEP_MS / 1000),
      });
      assertEquals(range.map((s) => s.samples), [expect(gaugeA)]);
      assertEquals(range[0].metric, { __name__: "e2e_temperature", job: "app", room: "a" });

      // Negative regex and a label absent from the series.
      const others = await promql(promUrl, "query", {
        query: 'e2e_temperature{room!~"a", zone=""}[15m]',
        time: at,
      });
      assertEquals(others.map((s) => s.metric.room), ["b"]);

      // PromQL functions run on these samples: the counter reset is seen.
      const resets = await promql(promUrl, "query", {
        query: "resets(e2e_requests_total[15m])",
        time: at,
      });
      assertEquals(resets.map((s) => s.samples[0][1]), [1]);
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
