/**
 * `/api/v1/query_exemplars` against real PostgreSQL through an in-process
 * connector: exemplars written with remote write 1.0 come back in
 * Prometheus's shape, selected by every vector selector of the query, in
 * the inclusive time range; a bad query or time is 400 bad_data; in HA mode
 * `cluster` shows and the replica label never does.
 */
import { assertEquals } from "../helpers/assert.ts";
import { snappy } from "../../deps.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import type { Connector } from "../../src/app.ts";
import { type ModelSeriesSpec, v1Request } from "../data_model/build.ts";

const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const S = T / 1000;

async function write(c: Connector, series: ModelSeriesSpec[], headers: HeadersInit = {}) {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      ...headers,
    },
    body: snappy.compress(v1Request(series)) as Uint8Array<ArrayBuffer>,
  });
  assertEquals(res.status, 204, await res.text());
}

// deno-lint-ignore no-explicit-any
type Json = any;

async function get(
  c: Connector,
  params: Record<string, string>,
  headers: HeadersInit = {},
): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${c.url}/api/v1/query_exemplars?${new URLSearchParams(params)}`, {
    headers,
  });
  return { status: res.status, body: await res.json() };
}

const SERIES: ModelSeriesSpec[] = [
  {
    labels: { __name__: "requests_total", job: "api", instance: "a" },
    samples: [{ value: 1, timestamp: T }, { value: 2, timestamp: T + 15_000 }],
    exemplars: [
      { labels: { trace_id: "t1" }, value: 0.125, timestamp: T + 3 },
      { labels: { trace_id: "t2", span_id: "s2" }, value: 1e-7, timestamp: T + 15_000 },
    ],
  },
  {
    labels: { __name__: "requests_total", job: "web", instance: "b" },
    samples: [{ value: 5, timestamp: T }],
    exemplars: [{ labels: { trace_id: "t3" }, value: -2.5, timestamp: T + 30_000 }],
  },
  {
    labels: { __name__: "latency_seconds_bucket", job: "api", le: "0.5" },
    samples: [{ value: 3, timestamp: T }],
    exemplars: [{ labels: { trace_id: "t4" }, value: 0.25, timestamp: T + 1_000 }],
  },
  {
    labels: { __name__: "no_exemplars", job: "api" },
    samples: [{ value: 3, timestamp: T }],
  },
];

Deno.test("query_exemplars: shapes, selectors, time range, errors", async (t) => {
  const db = await freshDatabase("promql_exemplars");
  const c = await inProcessConnector(db.uri, [], { pool: 4 });
  try {
    await write(c, SERIES);
    const range = { start: String(S - 60), end: String(S + 60) };

    await t.step("one selector: Prometheus's response shape, series sorted", async () => {
      const r = await get(c, { query: "requests_total", ...range });
      assertEquals(r.status, 200);
      assertEquals(r.body, {
        status: "success",
        data: [
          {
            seriesLabels: { __name__: "requests_total", instance: "a", job: "api" },
            exemplars: [
              { labels: { trace_id: "t1" }, value: "0.125", timestamp: S + 0.003 },
              { labels: { span_id: "s2", trace_id: "t2" }, value: "0.0000001", timestamp: S + 15 },
            ],
          },
          {
            seriesLabels: { __name__: "requests_total", instance: "b", job: "web" },
            exemplars: [{ labels: { trace_id: "t3" }, value: "-2.5", timestamp: S + 30 }],
          },
        ],
      });
    });

    await t.step("matchers filter; every selector of the expression counts", async () => {
      const one = await get(c, { query: 'requests_total{job=~"w.*"}', ...range });
      assertEquals(one.body.data.map((s: Json) => s.seriesLabels.job), ["web"]);
      const neg = await get(c, { query: 'requests_total{instance!="b"}', ...range });
      assertEquals(neg.body.data.map((s: Json) => s.seriesLabels.instance), ["a"]);
      const both = await get(c, {
        query: 'sum(rate(requests_total{job="api"}[5m])) / ' +
          "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
        ...range,
      });
      assertEquals(
        both.body.data.map((s: Json) => s.seriesLabels.__name__),
        ["latency_seconds_bucket", "requests_total"],
      );
      assertEquals(both.body.data[0].exemplars, [
        { labels: { trace_id: "t4" }, value: "0.25", timestamp: S + 1 },
      ]);
      const none = await get(c, { query: "no_exemplars", ...range });
      assertEquals(none.body, { status: "success", data: [] });
      const scalar = await get(c, { query: "1 + 1", ...range });
      assertEquals(scalar.body, { status: "success", data: [] });
    });

    await t.step("the time range is inclusive at both ends", async () => {
      const r = await get(c, {
        query: "requests_total",
        start: String(S + 0.003),
        end: String(S + 15),
      });
      assertEquals(
        r.body.data.flatMap((s: Json) => s.exemplars.map((e: Json) => e.labels.trace_id)),
        ["t1", "t2"],
      );
      const rfc = await get(c, {
        query: "requests_total",
        start: new Date(T + 4).toISOString(),
        end: new Date(T + 30_000).toISOString(),
      });
      assertEquals(
        rfc.body.data.flatMap((s: Json) => s.exemplars.map((e: Json) => e.labels.trace_id)),
        ["t2", "t3"],
      );
      const open = await get(c, { query: "requests_total" });
      assertEquals(open.body.data.length, 2);
      const outside = await get(c, { query: "requests_total", start: String(S + 31) });
      assertEquals(outside.body.data, []);
    });

    await t.step("POST form", async () => {
      const res = await fetch(`${c.url}/api/v1/query_exemplars`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ query: 'requests_total{job="web"}', ...range }).toString(),
      });
      assertEquals(res.status, 200);
      const body = await res.json();
      assertEquals(body.data[0].exemplars[0].labels, { trace_id: "t3" });
    });

    await t.step("a bad query or time is 400 bad_data", async () => {
      for (
        const params of <Record<string, string>[]> [
          { query: "requests_total{", ...range },
          { ...range },
          { query: "requests_total", start: "yesterday" },
          { query: "requests_total", start: String(S + 60), end: String(S) },
        ]
      ) {
        const r = await get(c, params);
        assertEquals(r.status, 400, JSON.stringify(params));
        assertEquals(r.body.status, "error");
        assertEquals(r.body.errorType, "bad_data");
      }
    });
  } finally {
    await c.stop();
    await db.drop();
  }
});

Deno.test("query_exemplars in HA mode: cluster shows, the replica never", async () => {
  const db = await freshDatabase("promql_exemplars_ha");
  const c = await inProcessConnector(db.uri, ["--metrics.high-availability"]);
  try {
    await write(c, [{
      labels: { __name__: "ha_up", job: "x", cluster: "c1", __replica__: "r1" },
      samples: [{ value: 1, timestamp: T }],
      exemplars: [{ labels: { trace_id: "h1" }, value: 1, timestamp: T }],
    }]);
    const r = await get(c, { query: 'ha_up{__replica__="r2", cluster="c1"}' });
    assertEquals(r.status, 200);
    assertEquals(r.body.data, [{
      seriesLabels: { __name__: "ha_up", cluster: "c1", job: "x" },
      exemplars: [{ labels: { trace_id: "h1" }, value: "1", timestamp: S }],
    }]);
  } finally {
    await c.stop();
    await db.drop();
  }
});
