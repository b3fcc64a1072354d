/**
 * Native histograms in PromQL on pure data: the float-histogram arithmetic
 * (adding across schemas, counter resets in rate), quantile, JSON shape,
 * the evaluator's 2.42 rules (histograms kept by vector–scalar operators,
 * mixed groups dropped by `sum`, mixed pairs by `+`), and that the
 * differential comparator notices differing histograms.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import {
  addNew,
  bucketBound,
  type FloatHistogram,
  histogramFraction,
  histogramJson,
  histogramQuantile,
  histogramRate,
} from "../../src/promql/histogram.ts";
import { Evaluator, selectorRanges } from "../../src/promql/eval.ts";
import { parseExpr } from "../../src/promql/parse.ts";
import { formatValue, type Labels, type SeriesData } from "../../src/promql/value.ts";
import { type Answer, compareAnswers } from "./compare.ts";

function hist(
  schema: number,
  zeroCount: number,
  pos: [number, number][],
  count: number,
  sum: number,
  neg: [number, number][] = [],
): FloatHistogram {
  return {
    schema,
    zeroThreshold: 0.001,
    zeroCount,
    count,
    sum,
    pos: { idx: pos.map((p) => p[0]), counts: pos.map((p) => p[1]) },
    neg: { idx: neg.map((p) => p[0]), counts: neg.map((p) => p[1]) },
  };
}

const A = hist(0, 1, [[0, 2], [1, 3]], 6, 10);
const B = hist(1, 0, [[1, 1], [2, 1], [3, 1]], 3, 5);

Deno.test("bucket bounds: powers of 2^(2^-schema)", () => {
  assertEquals(bucketBound(0, 0), 1);
  assertEquals(bucketBound(1, 0), 2);
  assertEquals(bucketBound(-1, 0), 0.5);
  assertEquals(bucketBound(2, 1), 2);
  assertEquals(bucketBound(1, -1), 4);
  assert(Math.abs(bucketBound(1, 1) - Math.SQRT2) < 1e-15);
  assertEquals(bucketBound(1024, 0), Number.MAX_VALUE);
});

Deno.test("adding histograms of different schemas merges into the lower one", () => {
  const s = addNew(A, B);
  assertEquals(s.schema, 0);
  assertEquals(s.pos, { idx: [0, 1, 2], counts: [2, 5, 1] });
  assertEquals([s.count, s.sum, s.zeroCount], [9, 15, 1]);
  // The operands are left alone.
  assertEquals(A.pos.counts, [2, 3]);
  assertEquals(addNew(B, A).pos, s.pos);
});

Deno.test("histogram rate: last minus first, a counter reset adds what came before it", () => {
  const a2 = hist(0, 2, [[0, 4], [1, 6]], 12, 20);
  const reset = hist(0, 0, [[0, 2]], 2, 1);
  const h = histogramRate([A, a2, reset], 0, 3, true)!;
  assertEquals([h.count, h.sum, h.zeroCount], [8, 11, 1]);
  assertEquals(h.pos, { idx: [0, 1], counts: [4, 3] });
  // A float in the window: nothing.
  assertEquals(histogramRate([A, undefined, a2], 0, 3, true), null);
  // delta does not look for resets.
  const d = histogramRate([A, a2, reset], 0, 3, false)!;
  assertEquals([d.count, d.sum], [-4, -9]);
});

Deno.test("quantile, fraction and the API's JSON of a native histogram", () => {
  assertEquals(histogramQuantile(0.5, A), 1);
  assertEquals(histogramQuantile(2, A), Infinity);
  assert(Number.isNaN(histogramQuantile(0.5, hist(0, 0, [], 0, 0))));
  assertEquals(histogramFraction(0, 1, A), 0.5);
  assertEquals(histogramFraction(0, 1.5, A), 0.75);
  assertEquals(
    histogramJson(A, formatValue),
    '{"count":"6","sum":"10","buckets":[[3,"-0.001","0.001","1"],[0,"0.5","1","2"],[0,"1","2","3"]]}',
  );
  const negOnly = hist(0, 0, [], 1, -3, [[2, 1]]);
  assertEquals(
    histogramJson(negOnly, formatValue),
    '{"count":"1","sum":"-3","buckets":[[1,"-4","-2","1"]]}',
  );
  assertEquals(histogramJson(hist(0, 0, [[1, 0]], 0, 0), formatValue), '{"count":"0","sum":"0"}');
});

/** Evaluates `query` at `t` (ms) over series of histograms and floats. */
function evalAt(
  data: { labels: Labels; points: [number, number | FloatHistogram][] }[],
  query: string,
  t: number,
) {
  const expr = parseExpr(query);
  const q = { startMs: t, endMs: t, stepMs: 0, lookbackMs: 300_000 };
  const fetched = new Map();
  for (const [vs] of selectorRanges(expr, q)) {
    const name = vs.matchers.find((m) => m.name === "__name__")?.value;
    fetched.set(
      vs,
      data.filter((s) => s.labels.__name__ === name).map((s): SeriesData => {
        const hs = s.points.map(([, v]) => typeof v === "number" ? undefined : v);
        return {
          labels: s.labels,
          ts: Float64Array.from(s.points.map(([pt]) => pt)),
          vs: Float64Array.from(s.points.map(([, v]) => typeof v === "number" ? v : 0)),
          stale: new Uint8Array(s.points.length),
          hs,
        };
      }),
    );
  }
  const v = new Evaluator(fetched, q).instant(expr);
  if (v.type !== "vector") throw new Error(v.type);
  return v.samples;
}

Deno.test("evaluator: 2.42's rules for histogram samples", () => {
  const data = [
    {
      labels: { __name__: "h", job: "a" },
      points: [[1000, A], [2000, A]] as [number, FloatHistogram][],
    },
    { labels: { __name__: "h", job: "b" }, points: [[1000, B]] as [number, FloatHistogram][] },
    { labels: { __name__: "f", job: "a" }, points: [[1000, 5]] as [number, number][] },
  ];
  // Selected as histograms, their value 0 for the float functions.
  const sel = evalAt(data, "h", 2000);
  assertEquals(sel.map((s) => [s.labels.job, s.v, s.h?.count]), [["a", 0, 6], ["b", 0, 3]]);
  assertEquals(evalAt(data, "count_over_time(h[5s])", 2000).map((s) => s.v), [2, 1]);
  assertEquals(evalAt(data, "abs(h)", 2000).map((s) => [s.v, s.h]), [[0, undefined], [
    0,
    undefined,
  ]]);
  // Vector and scalar: the histogram stays, untouched.
  const times2 = evalAt(data, "h * 2", 2000);
  assertEquals(times2.map((s) => s.h?.count), [6, 3]);
  assertEquals(evalAt(data, "h > 1", 2000), []);
  // sum adds histograms; a group with floats and histograms gives nothing.
  assertEquals(evalAt(data, "sum(h)", 2000)[0].h?.count, 9);
  assertEquals(evalAt(data, 'sum({__name__=~"h|f"})', 2000), []);
  // + of two histograms adds; a histogram with a float: nothing.
  assertEquals(evalAt(data, "h + h", 2000).map((s) => s.h?.count), [12, 6]);
  assertEquals(evalAt(data, "h + on(job) f", 2000), []);
  assertEquals(evalAt(data, "h - h", 2000).map((s) => [s.v, s.h]), [[0, undefined], [
    0,
    undefined,
  ]]);
  // Only the histogram functions read them.
  assertEquals(evalAt(data, "histogram_count(h)", 2000).map((s) => s.v), [6, 3]);
  assertEquals(evalAt(data, "histogram_sum(f)", 2000), []);
  assertEquals(evalAt(data, "histogram_quantile(0.5, h)", 2000)[0].v, 1);
  assertEquals(evalAt(data, "rate(h[5s])", 2000)[0].h?.count, 0);
});

Deno.test("the comparator tells differing histograms apart", () => {
  const answer = (count: string, bucket: string): Answer => ({
    status: 200,
    body: {
      status: "success",
      data: {
        resultType: "vector",
        result: [{
          metric: { job: "a" },
          histogram: [1, { count, sum: "1", buckets: [[0, "1", "2", bucket]] }],
        }],
      },
    },
  });
  assertEquals(compareAnswers(answer("3", "3"), answer("3", "3"), false, 1e-12), []);
  assert(compareAnswers(answer("3", "3"), answer("3", "2"), false, 1e-12).length > 0);
  assert(compareAnswers(answer("3", "3"), answer("4", "3"), false, 1e-12).length > 0);
  const float: Answer = {
    status: 200,
    body: {
      status: "success",
      data: { resultType: "vector", result: [{ metric: { job: "a" }, value: [1, "0"] }] },
    },
  };
  assert(compareAnswers(answer("3", "3"), float, false, 1e-12).length > 0);
});
