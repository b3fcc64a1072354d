/**
 * What of a PromQL query goes to PostgreSQL beyond matchers and one time
 * range per selector: the windows of a range query's steps.
 *
 * A range query evaluates each selector at `start + k * step`, and every
 * PromQL function is local to the window it is given: an instant selector
 * sees its lookback `[t - lookback, t]`, a range selector `[t - range, t]`
 * (both ends included, Prometheus 2.x), shifted by `offset`. When the step
 * is longer than that window (a dashboard over days with `rate(x[5m])`),
 * the samples between two windows are never looked at; {@linkcode
 * selectorGrids} gives, per selector, the grid of windows, and the fetch SQL
 * (`fetch_sql.ts`) keeps only the samples in one of them, so they are
 * neither aggregated, sent nor decoded. Results are the same: a window
 * holds exactly the samples it held, and a lookback that finds none finds
 * none.
 *
 * Not for selectors inside subqueries (their own steps), with `@` (one
 * window, the time range already), or met twice.
 *
 * Pushing the functions themselves (`rate`, `*_over_time`, aggregations)
 * into SQL was measured and loses (bench/RESULTS.md).
 *
 * @module
 */
import type { Expr, VectorSelector } from "./ast.ts";
import type { QueryTimes } from "./eval.ts";

/**
 * Sample times a selector needs: those within `widthMs` before (or at) a
 * point `anchorMs + k * stepMs` for some integer k. Integer milliseconds,
 * `widthMs < stepMs`.
 */
export interface Grid {
  anchorMs: number;
  stepMs: number;
  widthMs: number;
}

/** The grid of windows of each selector of a range query that has one (see the module). */
export function selectorGrids(expr: Expr, q: QueryTimes): Map<VectorSelector, Grid> {
  const out = new Map<VectorSelector, Grid>();
  const seen = new Set<VectorSelector>();
  const excluded = new Set<VectorSelector>();
  const visit = (vs: VectorSelector, widthMs: number, inSubquery: boolean) => {
    if (seen.has(vs) || inSubquery || vs.at) excluded.add(vs);
    seen.add(vs);
    const grid = { anchorMs: q.startMs - vs.offsetMs, stepMs: q.stepMs, widthMs };
    if (
      q.stepMs > 0 && widthMs < q.stepMs && Number.isInteger(grid.anchorMs) &&
      Number.isInteger(q.stepMs) && Number.isInteger(widthMs) && widthMs >= 0
    ) {
      out.set(vs, grid);
    } else {
      excluded.add(vs);
    }
  };
  const walk = (e: Expr, inSubquery: boolean) => {
    switch (e.type) {
      case "vectorSelector":
        visit(e, q.lookbackMs, inSubquery);
        return;
      case "matrixSelector":
        visit(e.selector, e.rangeMs, inSubquery);
        return;
      case "subquery":
        walk(e.expr, true);
        return;
      case "call":
        for (const a of e.args) walk(a, inSubquery);
        return;
      case "aggregate":
        if (e.param) walk(e.param, inSubquery);
        walk(e.expr, inSubquery);
        return;
      case "binary":
        walk(e.lhs, inSubquery);
        walk(e.rhs, inSubquery);
        return;
      case "unary":
      case "paren":
        walk(e.expr, inSubquery);
        return;
      default:
        return;
    }
  };
  walk(expr, false);
  for (const vs of excluded) out.delete(vs);
  return out;
}
