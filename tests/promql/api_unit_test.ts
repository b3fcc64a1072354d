/**
 * The query API's handler over a fake store (no database): the
 * concurrency limit, the store's errors mapped to Prometheus's errorTypes,
 * and what is asked of the store.
 */
import { assertEquals } from "../helpers/assert.ts";
import { promqlHandler } from "../../src/promql/api.ts";
import type { PromqlStore } from "../../src/promql/fetch.ts";
import { UnavailableError } from "../../src/errors.ts";
import type { LabelMatcher } from "../../src/promql/ast.ts";

function handler(store: Partial<PromqlStore>, maxConcurrency = 20) {
  return promqlHandler({
    store: store as PromqlStore,
    queryTimeoutMs: 60_000,
    maxSamples: 1000,
    lookbackDeltaMs: 300_000,
    maxPointsPerTs: 11_000,
    subqueryStepMs: 60_000,
    maxConcurrency,
    maxRequestBytes: 1 << 20,
    now: () => 1_700_000_000_000,
  });
}

async function call(h: (r: Request) => Promise<Response>, path: string) {
  const res = await h(new Request(`http://connector${path}`));
  return { status: res.status, body: await res.json() };
}

Deno.test("queries beyond --metrics.promql.max-concurrency wait, then time out (503 timeout)", async () => {
  let release = () => {};
  const blocked = new Promise<void>((r) => release = r);
  let calls = 0;
  const h = handler({
    select: async (selectors) => {
      calls++;
      await blocked;
      return selectors.map(() => []);
    },
  }, 1);
  const first = call(h, "/api/v1/query?query=up");
  const second = await call(h, "/api/v1/query?query=up&timeout=0.2");
  assertEquals([second.status, second.body.errorType], [503, "timeout"]);
  assertEquals(calls, 1);
  release();
  const done = await first;
  assertEquals(done.body, { status: "success", data: { resultType: "vector", result: [] } });
  // The slot is free again.
  const third = call(h, "/api/v1/query?query=up");
  assertEquals((await third).status, 200);
});

Deno.test("the store's failures become Prometheus's errorTypes", async () => {
  const down = handler({
    select: () => Promise.reject(new UnavailableError("Database unavailable: connection refused")),
    labelNames: () => Promise.reject(new UnavailableError("Database unavailable")),
  });
  const q = await call(down, "/api/v1/query?query=up");
  assertEquals([q.status, q.body.status, q.body.errorType], [503, "error", "unavailable"]);
  const l = await call(down, "/api/v1/labels");
  assertEquals([l.status, l.body.errorType], [503, "unavailable"]);
});

Deno.test("selectors reach the store with their matchers and the time range they need", async () => {
  const seen: { matchers: LabelMatcher[]; minMs: number; maxMs: number }[] = [];
  const h = handler({
    select: (selectors) => {
      seen.push(...selectors);
      return Promise.resolve(selectors.map(() => []));
    },
  });
  const r = await call(
    h,
    `/api/v1/query_range?query=${
      encodeURIComponent('rate(a{x=~"y|z"}[5m] offset 1m) + b')
    }&start=1000&end=2000&step=10`,
  );
  assertEquals(r.status, 200);
  assertEquals(seen, [
    {
      matchers: [{ type: "=", name: "__name__", value: "a" }, {
        type: "=~",
        name: "x",
        value: "y|z",
      }],
      minMs: 1_000_000 - 60_000 - 300_000,
      maxMs: 2_000_000 - 60_000,
    },
    {
      matchers: [{ type: "=", name: "__name__", value: "b" }],
      minMs: 1_000_000 - 300_000,
      maxMs: 2_000_000,
    },
  ]);
});
