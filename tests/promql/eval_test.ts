/**
 * The evaluator on pure data (no database): staleness, lookback and range
 * boundaries, rate's extrapolation, subquery alignment, vector matching
 * errors, value formatting; and the parser's errors.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { EvalError, Evaluator, selectorRanges } from "../../src/promql/eval.ts";
import { ParseError, parseExpr } from "../../src/promql/parse.ts";
import type { LabelMatcher } from "../../src/promql/ast.ts";
import { formatValue, type Labels, type SeriesData, type Value } from "../../src/promql/value.ts";

interface Raw {
  labels: Labels;
  /** [seconds, value | "stale"] */
  points: [number, number | "stale"][];
}

function matches(l: Labels, m: LabelMatcher): boolean {
  const v = l[m.name] ?? "";
  switch (m.type) {
    case "=":
      return v === m.value;
    case "!=":
      return v !== m.value;
    case "=~":
      return new RegExp(`^(?:${m.value})$`).test(v);
    case "!~":
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
}

/** Evaluates `query` over `data` at `time` (s) or over [start, end] by `step` (s). */
async function run(
  data: Raw[],
  query: string,
  at: { time: number } | { start: number; end: number; step: number },
): Promise<Value> {
  const expr = parseExpr(query);
  const q = "time" in at
    ? { startMs: at.time * 1000, endMs: at.time * 1000, stepMs: 0, lookbackMs: 300_000 }
    : {
      startMs: at.start * 1000,
      endMs: at.end * 1000,
      stepMs: at.step * 1000,
      lookbackMs: 300_000,
    };
  const fetched = new Map();
  for (const [vs, r] of selectorRanges(expr, q)) {
    fetched.set(
      vs,
      data.filter((s) => vs.matchers.every((m) => matches(s.labels, m))).map((s): SeriesData => {
        const pts = s.points.filter(([t]) => t * 1000 >= r.minMs && t * 1000 <= r.maxMs);
        return {
          labels: s.labels,
          ts: Float64Array.from(pts.map(([t]) => t * 1000)),
          vs: Float64Array.from(pts.map(([, v]) => v === "stale" ? NaN : v)),
          stale: Uint8Array.from(pts.map(([, v]) => v === "stale" ? 1 : 0)),
        };
      }),
    );
  }
  const ev = new Evaluator(fetched, q);
  if ("time" in at) return ev.instant(expr);
  return { type: "matrix", series: await ev.range(expr) };
}

function values(v: Value): number[] {
  if (v.type === "vector") return v.samples.map((s) => s.v);
  if (v.type === "scalar") return [v.v];
  throw new Error(`not a vector: ${v.type}`);
}

const counter: Raw = {
  labels: { __name__: "c", job: "j" },
  points: [[0, 0], [15, 10], [30, 20], [45, 30], [60, 40]],
};

Deno.test("a staleness marker ends a series at once; the lookback is inclusive", async () => {
  const g: Raw = { labels: { __name__: "g" }, points: [[0, 1], [30, 2], [60, "stale"]] };
  assertEquals(values(await run([g], "g", { time: 59 })), [2]);
  assertEquals(values(await run([g], "g", { time: 60 })), []);
  assertEquals(values(await run([g], "g", { time: 1000 })), []);
  // Without the marker the last sample lasts 5 minutes, boundary included.
  const h: Raw = { labels: { __name__: "h" }, points: [[0, 1]] };
  assertEquals(values(await run([h], "h", { time: 300 })), [1]);
  assertEquals(values(await run([h], "h", { time: 300.001 })), []);
  // Range windows leave the marker out.
  assertEquals(values(await run([g], "count_over_time(g[2m])", { time: 90 })), [2]);
});

Deno.test("range selectors include both ends of the window (Prometheus 2.x)", async () => {
  assertEquals(values(await run([counter], "count_over_time(c[30s])", { time: 45 })), [3]);
  assertEquals(values(await run([counter], "count_over_time(c[30s] offset 15s)", { time: 45 })), [
    3,
  ]);
});

Deno.test("rate and increase extrapolate as Prometheus, counting resets", async () => {
  assertEquals(values(await run([counter], "rate(c[1m])", { time: 60 })), [40 / 60]);
  const reset: Raw = {
    labels: { __name__: "r" },
    points: [[0, 10], [15, 20], [30, 5], [45, 15]],
  };
  assertEquals(values(await run([reset], "increase(r[45s])", { time: 45 })), [25]);
  // Window [−15, 45]: 15 s before the first sample < 1.1 × 15 s, so the
  // result extends to the start, but not past the counter's zero point
  // (45 × 10/25 = 18 s > 15 s, so 15 s).
  assertEquals(values(await run([reset], "increase(r[1m])", { time: 45 })), [25 * (60 / 45)]);
  assertEquals(values(await run([reset], "resets(r[1m])", { time: 45 })), [1]);
  assertEquals(values(await run([reset], "irate(r[1m])", { time: 45 })), [10 / 15]);
});

Deno.test("subqueries evaluate at multiples of their step within the window", async () => {
  const v = await run([counter], "c[1m:20s]", { time: 50 });
  assert(v.type === "matrix");
  assertEquals(v.series[0].ts, [0, 20_000, 40_000]);
  assertEquals(v.series[0].vs, [0, 10, 20]);
});

Deno.test("range queries step from start to end and join series by labels", async () => {
  const v = await run([counter], "c * 2", { start: 0, end: 60, step: 30 });
  assert(v.type === "matrix");
  assertEquals(v.series, [{ labels: { job: "j" }, ts: [0, 30_000, 60_000], vs: [0, 40, 80] }]);
});

Deno.test("vector matching refuses ambiguous matches as Prometheus", async () => {
  const a: Raw = { labels: { __name__: "a", i: "1", k: "x" }, points: [[0, 1]] };
  const a2: Raw = { labels: { __name__: "a", i: "1", k: "y" }, points: [[0, 2]] };
  const b: Raw = { labels: { __name__: "b", i: "1" }, points: [[0, 10]] };
  await assertRejectsEval(() => run([a, a2, b], "a + on(i) b", { time: 0 }), /many-to-one/);
  await assertRejectsEval(() => run([a, a2, b], "b + on(i) a", { time: 0 }), /duplicate series/);
  assertEquals(values(await run([a, a2, b], "a + on(i) group_left b", { time: 0 })), [11, 12]);
  await assertRejectsEval(
    () => run([a, a2, b], 'label_replace(a, "k", "z", "k", ".*")', { time: 0 }),
    /same labelset/,
  );
});

async function assertRejectsEval(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert(err instanceof EvalError, String(err));
    assert(re.test(err.message), err.message);
    return;
  }
  throw new Error("expected an EvalError");
}

Deno.test("formatValue() prints as Go's strconv 'f' -1", () => {
  assertEquals(formatValue(1e21), "1000000000000000000000");
  assertEquals(formatValue(1.5e-7), "0.00000015");
  assertEquals(formatValue(-0), "-0");
  assertEquals(formatValue(NaN), "NaN");
  assertEquals(formatValue(-Infinity), "-Inf");
  assertEquals(formatValue(0.1 + 0.2), "0.30000000000000004");
});

Deno.test("parseExpr() refuses what Prometheus's parser refuses", () => {
  for (
    const q of [
      "",
      "sum(",
      "rate(x)",
      "1 < 2",
      '{a=""}',
      "x offset 1m offset 2m",
      "(x)[5m]",
      "sum(x) + on(a) 1",
      "x and 1",
      "topk(x)",
      "nosuchfn(x)",
      'x{a=~"("}',
      "x[5m:1m:3]",
      "x > bool on(a) group_left(a) y",
      "x[0s]",
    ]
  ) {
    let threw = false;
    try {
      parseExpr(q);
    } catch (err) {
      threw = err instanceof ParseError;
    }
    assert(threw, `parseExpr(${JSON.stringify(q)}) did not fail with a ParseError`);
  }
  const e = parseExpr('-sum by (a) (rate(x{b=~"c.*"}[5m] offset -1m @ 100))');
  assertEquals(e.type, "unary");
});
