/**
 * The PromQL HTTP API against real PostgreSQL through an in-process
 * connector: the requests Grafana's Prometheus data source sends ("Save &
 * test", the query editor and metrics browser, panels), Prometheus's JSON
 * shapes, errorType values and status codes, the limits, auth and HA mode.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";
import type { Connector } from "../../src/app.ts";
import { dataset, T0 } from "./dataset.ts";

const S0 = T0 / 1000;

async function write(c: Connector, series: PayloadSeries[], headers: HeadersInit = {}) {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: {
      "content-type": "application/x-protobuf",
      "content-encoding": "snappy",
      ...headers,
    },
    body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
  });
  assertEquals(res.status, 204, await res.text());
}

// deno-lint-ignore no-explicit-any
type Json = any;

async function get(
  c: Connector,
  path: string,
  params: Record<string, string | string[]> = {},
  headers: HeadersInit = {},
): Promise<{ status: number; body: Json; type: string | null }> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) q.append(k, x);
  }
  const res = await fetch(`${c.url}${path}?${q}`, { headers });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), type: res.headers.get("content-type") };
}

async function post(c: Connector, path: string, params: Record<string, string>) {
  const res = await fetch(`${c.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: await res.json() as Json };
}

Deno.test("PromQL API: Grafana's requests, shapes, errors and limits", async (t) => {
  const db = await freshDatabase("promql_api");
  const c = await inProcessConnector(db.uri, [], { pool: 4 });
  try {
    await write(c, dataset());
    const range = { start: String(S0), end: String(S0 + 3600) };

    await t.step("Grafana Save & test: an instant query of 1+1 and buildinfo", async () => {
      const r = await get(c, "/api/v1/query", { query: "1+1", time: String(S0) });
      assertEquals(r.status, 200);
      assertEquals(r.type, "application/json");
      assertEquals(r.body, {
        status: "success",
        data: { resultType: "scalar", result: [S0, "2"] },
      });
      const b = await get(c, "/api/v1/status/buildinfo");
      assertEquals(b.status, 200);
      assertEquals(b.body.status, "success");
      assertEquals(b.body.data.version, "2.42.0");
    });

    await t.step("query editor: label names, metric names, label values, series", async () => {
      const names = await get(c, "/api/v1/labels", range);
      assertEquals(names.body.data, [
        "__name__",
        "instance",
        "job",
        "kind",
        "le",
        "location",
        "method",
      ]);
      const metrics = await get(c, "/api/v1/label/__name__/values", range);
      assertEquals(metrics.body.data, [
        "dt_latency_seconds_bucket",
        "dt_latency_seconds_count",
        "dt_latency_seconds_sum",
        "dt_nan",
        "dt_requests_total",
        "dt_temperature",
        "dt_up",
      ]);
      const values = await get(c, "/api/v1/label/instance/values", {
        ...range,
        "match[]": 'dt_requests_total{method="post"}',
      });
      assertEquals(values.body.data, ["a", "c"]);
      const limited = await get(c, "/api/v1/label/instance/values", { limit: "2" });
      assertEquals(limited.body.data, ["a", "b"]);
      const series = await get(c, "/api/v1/series", { ...range, "match[]": ["dt_up", "dt_nan"] });
      assertEquals(series.status, 200);
      assertEquals(series.body.data.length, 5);
      assert(
        series.body.data.some((l: Json) =>
          JSON.stringify(l) === JSON.stringify({ __name__: "dt_up", instance: "a", job: "api" })
        ),
      );
      // No samples in the range, no series.
      const before = await get(c, "/api/v1/series", {
        "match[]": "dt_up",
        start: String(S0 - 7200),
        end: String(S0 - 3600),
      });
      assertEquals(before.body.data, []);
      const meta = await get(c, "/api/v1/metadata");
      assertEquals(meta.body, { status: "success", data: {} });
    });

    await t.step("panels: query_range and query by POST form, shapes as Prometheus", async () => {
      const r = await post(c, "/api/v1/query_range", {
        query: 'dt_up{instance="b"}',
        start: String(S0 + 900),
        end: String(S0 + 1200),
        step: "60s",
      });
      assertEquals(r.status, 200);
      assertEquals(r.body, {
        status: "success",
        data: {
          resultType: "matrix",
          result: [{
            metric: { __name__: "dt_up", instance: "b", job: "api" },
            values: [
              [S0 + 900, "0"],
              [S0 + 960, "0"],
              [S0 + 1020, "0"],
              [S0 + 1080, "0"],
              [S0 + 1140, "1"],
              [S0 + 1200, "1"],
            ],
          }],
        },
      });
      const v = await post(c, "/api/v1/query", {
        query: 'dt_nan{kind="mixed"}',
        time: String(S0 + 7 * 15 + 0.5),
      });
      assertEquals(v.body.data, {
        resultType: "vector",
        result: [{
          metric: { __name__: "dt_nan", kind: "mixed" },
          value: [S0 + 105.5, "+Inf"],
        }],
      });
      const rfc = await get(c, "/api/v1/query", {
        query: "time()",
        time: new Date(T0 + 1500).toISOString(),
      });
      assertEquals(rfc.body.data.result, [S0 + 1.5, "1700000101.5"]);
    });

    await t.step("errors: errorType and status as Prometheus", async () => {
      const cases: [string, Record<string, string>, number, string][] = [
        ["/api/v1/query", { query: "" }, 400, "bad_data"],
        ["/api/v1/query", { query: "sum(" }, 400, "bad_data"],
        ["/api/v1/query", { query: "rate(dt_up)" }, 400, "bad_data"],
        ["/api/v1/query", { query: "dt_up", time: "yesterday" }, 400, "bad_data"],
        ["/api/v1/query", { query: "dt_up + on(job) dt_up", time: String(S0) }, 422, "execution"],
        ["/api/v1/query_range", { query: "dt_up", start: String(S0) }, 400, "bad_data"],
        ["/api/v1/query_range", { query: "dt_up", ...range, step: "0" }, 400, "bad_data"],
        ["/api/v1/query_range", { query: "dt_up", ...range, step: "0.1" }, 400, "bad_data"],
        [
          "/api/v1/query_range",
          { query: "dt_up", start: String(S0 + 10), end: String(S0), step: "1" },
          400,
          "bad_data",
        ],
        ["/api/v1/query_range", { query: "dt_up[5m]", ...range, step: "60" }, 400, "bad_data"],
        ["/api/v1/series", {}, 400, "bad_data"],
        ["/api/v1/series", { "match[]": "rate(x[5m])" }, 400, "bad_data"],
        ["/api/v1/label/1bad/values", {}, 400, "bad_data"],
      ];
      for (const [path, params, status, errorType] of cases) {
        const r = await get(c, path, params);
        assertEquals(
          [r.status, r.body.status, r.body.errorType],
          [status, "error", errorType],
          `${path} ${JSON.stringify(params)}: ${JSON.stringify(r.body)}`,
        );
        assert(typeof r.body.error === "string" && r.body.error.length > 0);
      }
      const put = await fetch(`${c.url}/api/v1/query?query=1`, { method: "PUT" });
      assertEquals(put.status, 405);
      await put.body?.cancel();
    });

    await t.step("a query past its timeout is a 503 timeout", async () => {
      const r = await get(c, "/api/v1/query", {
        query: "count_over_time(dt_up[1h:1ms])",
        time: String(S0 + 3600),
        timeout: "50ms",
      });
      assertEquals([r.status, r.body.errorType], [503, "timeout"], JSON.stringify(r.body));
    });
  } finally {
    await c.stop();
    await db.drop();
  }
});

Deno.test("PromQL API: --metrics.promql.max-samples and lookback-delta are applied", async () => {
  const db = await freshDatabase("promql_limits");
  const c = await inProcessConnector(db.uri, [
    "--metrics.promql.max-samples=100",
    "--metrics.promql.lookback-delta=1m",
  ]);
  try {
    await write(c, dataset());
    const big = await get(c, "/api/v1/query", {
      query: "dt_requests_total[1h]",
      time: String(S0 + 3600),
    });
    assertEquals([big.status, big.body.errorType], [422, "execution"], JSON.stringify(big.body));
    const small = await get(c, "/api/v1/query", {
      query: 'dt_requests_total{instance="a", method="get"}[5m]',
      time: String(S0 + 3600),
    });
    assertEquals(small.status, 200);
    assertEquals(small.body.data.result[0].values.length, 21);
    // The data ends at S0+3600: gone after 1 minute, not 5.
    const at = (s: number) =>
      get(c, "/api/v1/query", { query: 'dt_up{instance="a"}', time: String(S0 + s) });
    assertEquals((await at(3650)).body.data.result.length, 1);
    assertEquals((await at(3670)).body.data.result.length, 0);
  } finally {
    await c.stop();
    await db.drop();
  }
});

Deno.test("PromQL API: auth as on every endpoint; HA mode shows cluster, never the replica", async () => {
  const db = await freshDatabase("promql_ha");
  const c = await inProcessConnector(db.uri, [
    "--metrics.high-availability",
    "--web.auth.username=grafana",
    "--web.auth.password=secret",
  ]);
  const auth = { authorization: `Basic ${btoa("grafana:secret")}` };
  try {
    const denied = await fetch(`${c.url}/api/v1/query?query=1`);
    assertEquals(denied.status, 401);
    await denied.body?.cancel();
    await write(
      c,
      [{
        labels: { __name__: "ha_up", job: "x", cluster: "c1", __replica__: "r1" },
        samples: [{ value: 1, timestamp: T0 }, { value: 2, timestamp: T0 + 15_000 }],
      }],
      auth,
    );
    const r = await get(c, "/api/v1/query", { query: "ha_up", time: String(S0 + 30) }, auth);
    assertEquals(r.body.data.result, [{
      metric: { __name__: "ha_up", cluster: "c1", job: "x" },
      value: [S0 + 30, "2"],
    }]);
    // A matcher on the replica label is dropped, as in remote read.
    const withReplica = await get(c, "/api/v1/query", {
      query: 'ha_up{__replica__="r2", cluster="c1"}',
      time: String(S0 + 30),
    }, auth);
    assertEquals(withReplica.body.data.result.length, 1);
    const names = await get(c, "/api/v1/labels", {}, auth);
    assertEquals(names.body.data, ["__name__", "cluster", "job"]);
    const replicas = await get(c, "/api/v1/label/__replica__/values", {}, auth);
    assertEquals(replicas.body.data, []);
  } finally {
    await c.stop();
    await db.drop();
  }
});
