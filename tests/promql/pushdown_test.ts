/**
 * Fetching only the samples of a range query's windows (src/promql/pushdown.ts)
 * changes no answer: selectors of every kind, as range
 * queries at steps longer than its windows (and starts off the data's
 * grid), gives the same JSON, byte for byte, with the windows pushed into
 * the SQL and without; and the windows do leave samples out. (The
 * differential test also runs its corpus through them, against
 * Prometheus.)
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { promqlHandler } from "../../src/promql/api.ts";
import { PgPromqlStore, type PromqlStore, type Selection } from "../../src/promql/fetch.ts";
import { parseExpr } from "../../src/promql/parse.ts";
import { selectorGrids } from "../../src/promql/pushdown.ts";
import { dataset, T0 } from "./dataset.ts";

const S0 = T0 / 1000;

/** Every kind of selector in every kind of place (series of tests/promql/dataset.ts). */
const QUERIES = [
  "dt_requests_total",
  'dt_requests_total{instance="b"}',
  '{__name__=~"dt_(up|nan)", instance!~"a|b"}',
  "dt_temperature offset 5m",
  "dt_temperature offset -5m",
  `dt_temperature @ ${S0 + 1200}`,
  "dt_up @ start() + dt_up",
  "rate(dt_requests_total[5m])",
  "rate(dt_requests_total[1m])",
  "rate(dt_requests_total[40s] offset 7s)",
  "irate(dt_requests_total[1m])",
  "increase(dt_requests_total[10m] offset 3m)",
  "resets(dt_requests_total[1m])",
  "changes(dt_temperature[45s])",
  "delta(dt_temperature[1m])",
  "deriv(dt_temperature[90s])",
  "predict_linear(dt_temperature[1m], 600)",
  `predict_linear(dt_temperature[1m] @ ${S0 + 900}, 60)`,
  "holt_winters(dt_temperature[2m], 0.5, 0.3)",
  "avg_over_time(dt_temperature[1m])",
  "count_over_time(dt_up[30s])",
  "last_over_time(dt_temperature[1m])",
  "present_over_time(dt_up[20s])",
  "absent_over_time(dt_missing[1m])",
  "quantile_over_time(0.5, dt_temperature[1m])",
  "timestamp(dt_temperature)",
  "sum by (job) (rate(dt_requests_total[1m]))",
  "histogram_quantile(0.9, sum by (le) (rate(dt_latency_seconds_bucket[1m])))",
  "dt_requests_total * on(instance) group_left(location) dt_temperature",
  "rate(dt_requests_total[30s]) / rate(dt_requests_total[30s] offset 1m)",
  "avg_over_time(rate(dt_requests_total[1m])[10m:1m])",
  "max_over_time(dt_temperature[5m:30s]) - dt_temperature",
  "absent(dt_up)",
  "count(dt_nan)",
  "sum(dt_nan) by (kind)",
];

Deno.test("selectorGrids() leaves out subqueries, @, selectors met twice and windows as long as the step", () => {
  const q = { startMs: 1000, endMs: 100_000, stepMs: 60_000, lookbackMs: 300_000 };
  const grids = (text: string, qt = q) => [...selectorGrids(parseExpr(text), qt).values()];
  assertEquals(grids("rate(x[30s] offset 10s)"), [
    { anchorMs: 1000 - 10_000, stepMs: 60_000, widthMs: 30_000 },
  ]);
  assertEquals(grids("rate(x[1m])"), []);
  assertEquals(grids("x"), []);
  assertEquals(grids("x", { ...q, lookbackMs: 1000 }).length, 1);
  assertEquals(grids("x", { ...q, stepMs: 0, lookbackMs: 1000 }), []);
  assertEquals(grids("rate(x[30s] @ 100)"), []);
  assertEquals(grids("max_over_time(rate(x[10s])[5m:1s])"), []);
  assertEquals(grids("rate(x[10s]) + rate(y[1m]) + rate(z[20s])").length, 2);
});

Deno.test({
  name: "windows pushed into the SQL give the same answers as whole ranges",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const db = await freshDatabase("promql_pushdown");
    const conn = await inProcessConnector(db.uri);
    try {
      const write = await fetch(`${conn.url}/write`, {
        method: "POST",
        headers: { "content-type": "application/x-protobuf", "content-encoding": "snappy" },
        body: writeRequestBody(dataset()) as Uint8Array<ArrayBuffer>,
      });
      assert(write.status === 204 || write.status === 200, `write: ${write.status}`);
      await write.body?.cancel();

      const store = new PgPromqlStore({ sql: db.sql });
      let pushed = 0;
      let whole = 0;
      const count = (lists: { ts: Float64Array }[][]) =>
        lists.flat().reduce((n, s) => n + s.ts.length, 0);
      const withGrids: PromqlStore = {
        ...store,
        select: async (sels: Selection[], max: number) => {
          const r = await store.select(sels, max);
          pushed += count(r);
          return r;
        },
      } as PromqlStore;
      const without: PromqlStore = {
        ...store,
        select: async (sels: Selection[], max: number) => {
          const r = await store.select(sels.map((s) => ({ ...s, grid: undefined })), max);
          whole += count(r);
          return r;
        },
      } as PromqlStore;
      const opts = {
        queryTimeoutMs: 60_000,
        maxSamples: 50_000_000,
        lookbackDeltaMs: 300_000,
        maxPointsPerTs: 11_000,
        subqueryStepMs: 60_000,
        maxConcurrency: 4,
        maxRequestBytes: 1 << 20,
      };
      const a = promqlHandler({ store: withGrids, ...opts });
      const b = promqlHandler({ store: without, ...opts });
      const ranges = [
        { start: S0 - 600, end: S0 + 4200, step: "7m" },
        { start: S0 + 7, end: S0 + 3900, step: "2m" },
        { start: S0 + 123.456, end: S0 + 3700, step: "61s" },
        { start: S0 + 5, end: S0 + 3600, step: "17m" },
      ];
      const failures: string[] = [];
      let withData = 0;
      let compared = 0;
      for (const query of QUERIES) {
        for (const r of ranges) {
          const params = new URLSearchParams({
            query,
            start: String(r.start),
            end: String(r.end),
            step: r.step,
          });
          const [x, y] = await Promise.all([
            a(new Request(`http://x/api/v1/query_range?${params}`)).then((r) => r.text()),
            b(new Request(`http://x/api/v1/query_range?${params}`)).then((r) => r.text()),
          ]);
          compared++;
          if (x !== y) {
            failures.push(
              `${query} ${JSON.stringify(r)}:\n  ${x.slice(0, 300)}\n  ${y.slice(0, 300)}`,
            );
          }
          if (x.includes('"values":[[')) withData++;
        }
      }
      assert(
        failures.length === 0,
        `${failures.length} of ${compared} differ:\n${failures.join("\n")}`,
      );
      assert(withData > compared * 0.5, `only ${withData} of ${compared} answers hold data`);
      // The windows did leave samples out.
      assert(pushed < whole * 0.8, `samples loaded: ${pushed} with windows, ${whole} without`);
      console.log(
        `${compared} answers equal; samples loaded: ${pushed} with windows, ${whole} without`,
      );
    } finally {
      await conn.stop();
      await db.drop();
    }
  },
});
