/**
 * The PromQL evaluator, with the semantics of Prometheus 2.42's engine:
 *
 * - an instant vector selector at time t takes each series' newest sample
 *   in [t - offset - lookback, t - offset] unless that sample is a
 *   staleness marker; a range selector takes the samples in
 *   [t - offset - range, t - offset] (both ends inclusive, as in 2.x),
 *   staleness markers left out; `@` fixes t;
 * - a range query is the expression evaluated at start, start + step, …,
 *   end, the results joined into series by label set;
 * - a subquery evaluates its expression at the multiples of its step
 *   (default: 1 minute, Prometheus's default evaluation interval) within
 *   [t - offset - range, t - offset];
 * - functions, operators and aggregations follow 2.42's code paths,
 *   including the order of floating-point operations where it decides the
 *   last bit;
 * - native histograms as 2.42 treats them: selected and returned as
 *   histograms, summed by `+` and `sum`, rated by rate/increase/delta, read
 *   by the histogram_* functions; every other function and operator reads
 *   a histogram sample's value, which is 0 (so `count_over_time` counts
 *   them and `avg` averages zeros), and operators between a vector and a
 *   scalar keep the histogram itself.
 *
 * Data comes in before evaluation: {@linkcode selectorRanges} says which
 * time range each selector needs over the whole query, the caller fetches
 * it, and evaluation is then synchronous.
 *
 * @module
 */
import {
  type Aggregate,
  type AtModifier,
  type Binary,
  type Call,
  type Expr,
  type MatrixSelector,
  type Subquery,
  typeOf,
  type VectorSelector,
} from "./ast.ts";
import { anchoredRegex } from "./regex.ts";
import {
  add,
  addNew,
  copyHistogram,
  type FloatHistogram,
  histogramFraction,
  histogramQuantile as nativeQuantile,
  histogramRate,
  scale,
} from "./histogram.ts";
import {
  compareLabels,
  dropName,
  type Floats,
  formatValue,
  type Labels,
  labelsKey,
  type Sample,
  type Series,
  type SeriesData,
  signature,
  type Value,
} from "./value.ts";

/** A failure while evaluating: HTTP 422, errorType `execution` (or `timeout`, 503). */
export class EvalError extends Error {
  constructor(message: string, readonly errorType: "execution" | "timeout" = "execution") {
    super(message);
    this.name = "EvalError";
  }
}

/** Prometheus's default evaluation interval, the step of subqueries without one. */
export const DEFAULT_SUBQUERY_STEP_MS = 60_000;

/** Times and limits of one query. */
export interface QueryTimes {
  startMs: number;
  endMs: number;
  /** 0 for an instant query. */
  stepMs: number;
  lookbackMs: number;
  /** Step of subqueries that give none (Prometheus: the evaluation interval, default 1m). */
  subqueryStepMs?: number;
}

/** Evaluation limits. */
export interface EvalLimits {
  /** performance.now() value after which evaluation stops with a timeout. */
  deadline?: number;
  /** Most points a range query's result may hold. */
  maxSamples?: number;
}

/** The range of sample times a selector needs, inclusive. */
export interface TimeRange {
  minMs: number;
  maxMs: number;
}

function atTime(at: AtModifier, q: QueryTimes): number {
  return at.kind === "time" ? at.ms : at.kind === "start" ? q.startMs : q.endMs;
}

/**
 * Every vector selector of `expr` with the time range of samples it needs
 * when `expr` is evaluated at times in [q.startMs, q.endMs].
 */
export function selectorRanges(expr: Expr, q: QueryTimes): Map<VectorSelector, TimeRange> {
  const out = new Map<VectorSelector, TimeRange>();
  const add = (vs: VectorSelector, minMs: number, maxMs: number) => {
    const r = out.get(vs);
    if (r) {
      r.minMs = Math.min(r.minMs, minMs);
      r.maxMs = Math.max(r.maxMs, maxMs);
    } else {
      out.set(vs, { minMs, maxMs });
    }
  };
  const walk = (e: Expr, s: number, t: number) => {
    switch (e.type) {
      case "vectorSelector": {
        const [a, b] = e.at ? [atTime(e.at, q), atTime(e.at, q)] : [s, t];
        add(e, a - e.offsetMs - q.lookbackMs, b - e.offsetMs);
        return;
      }
      case "matrixSelector": {
        const vs = e.selector;
        const [a, b] = vs.at ? [atTime(vs.at, q), atTime(vs.at, q)] : [s, t];
        add(vs, a - vs.offsetMs - e.rangeMs, b - vs.offsetMs);
        return;
      }
      case "subquery": {
        const [a, b] = e.at ? [atTime(e.at, q), atTime(e.at, q)] : [s, t];
        walk(e.expr, a - e.offsetMs - e.rangeMs, b - e.offsetMs);
        return;
      }
      case "call": {
        const a0 = e.args[0] ? unwrapParens(e.args[0]) : null;
        if (e.func === "predict_linear" && a0?.type === "matrixSelector" && a0.selector.at) {
          // See Evaluator.matrixArg: the window moves with the step.
          const at = atTime(a0.selector.at, q);
          add(
            a0.selector,
            at - a0.selector.offsetMs - a0.rangeMs,
            at + (q.endMs - q.startMs) - a0.selector.offsetMs,
          );
        }
        for (const a of e.args) walk(a, s, t);
        return;
      }
      case "aggregate":
        if (e.param) walk(e.param, s, t);
        walk(e.expr, s, t);
        return;
      case "binary":
        walk(e.lhs, s, t);
        walk(e.rhs, s, t);
        return;
      case "unary":
      case "paren":
        walk(e.expr, s, t);
        return;
      default:
        return;
    }
  };
  walk(expr, q.startMs, q.endMs);
  return out;
}

/** Evaluates parsed, type-checked expressions over fetched data. */
export class Evaluator {
  /** Subquery results per node and inner time (outer steps share inner points). */
  #subqueryCache = new Map<Subquery, Map<number, Sample[]>>();
  #checks = 0;

  constructor(
    private readonly data: Map<VectorSelector, SeriesData[]>,
    private readonly q: QueryTimes,
    private readonly limits: EvalLimits = {},
  ) {}

  /** An instant query at q.startMs. */
  instant(expr: Expr): Value {
    return this.eval(expr, this.q.startMs);
  }

  /**
   * A range query: a matrix, series sorted by labels. Yields to the event
   * loop every few milliseconds so that a long evaluation does not stall
   * writes served by the same process.
   */
  async range(expr: Expr): Promise<RangeSeries[]> {
    const t = typeOf(expr);
    if (t !== "scalar" && t !== "vector") {
      throw new EvalError(
        `invalid expression type "${
          t === "matrix" ? "range vector" : t
        }" for range query, must be Scalar or instant Vector`,
      );
    }
    const bySeries = new Map<string, RangeSeries>();
    let points = 0;
    let lastYield = performance.now();
    for (let ts = this.q.startMs; ts <= this.q.endMs; ts += this.q.stepMs) {
      if (performance.now() - lastYield > 20) {
        await new Promise((r) => setTimeout(r, 0));
        lastYield = performance.now();
        this.checkDeadline(true);
      }
      const v = this.eval(expr, ts);
      const samples: Sample[] = v.type === "scalar"
        ? [{ labels: {}, v: v.v }]
        : v.type === "vector"
        ? v.samples
        : [];
      for (const s of samples) {
        const k = labelsKey(s.labels);
        let ser = bySeries.get(k);
        if (!ser) bySeries.set(k, ser = { labels: s.labels, ts: [], vs: [] });
        if (s.h) (ser.hs ??= new Array(ser.ts.length))[ser.ts.length] = s.h;
        ser.ts.push(ts);
        ser.vs.push(s.v);
      }
      points += samples.length;
      if (this.limits.maxSamples !== undefined && points > this.limits.maxSamples) {
        throw tooManySamples();
      }
      if (this.q.stepMs <= 0) break;
    }
    return [...bySeries.values()].sort((a, b) => compareLabels(a.labels, b.labels));
  }

  private checkDeadline(now = false): void {
    if (this.limits.deadline !== undefined && ((++this.#checks & 255) === 0 || now)) {
      if (performance.now() > this.limits.deadline) {
        throw new EvalError("query timed out in expression evaluation", "timeout");
      }
    }
  }

  eval(e: Expr, t: number): Value {
    this.checkDeadline();
    switch (e.type) {
      case "number":
        return { type: "scalar", v: e.value };
      case "string":
        return { type: "string", s: e.value };
      case "paren":
        return this.eval(e.expr, t);
      case "vectorSelector":
        return { type: "vector", samples: this.vectorSelector(e, t) };
      case "matrixSelector":
      case "subquery":
        return { type: "matrix", series: this.matrix(e, t).series };
      case "unary": {
        const v = this.eval(e.expr, t);
        if (e.op === "+") return v;
        if (v.type === "scalar") return { type: "scalar", v: -v.v };
        if (v.type === "vector") {
          return {
            type: "vector",
            samples: v.samples.map((s) => ({ labels: dropName(s.labels), v: -s.v, h: s.h })),
          };
        }
        return v;
      }
      case "call":
        return this.call(e, t);
      case "aggregate":
        return { type: "vector", samples: this.aggregate(e, t) };
      case "binary":
        return this.binary(e, t);
    }
  }

  private scalar(e: Expr, t: number): number {
    const v = this.eval(e, t);
    return v.type === "scalar" ? v.v : NaN;
  }

  private vector(e: Expr, t: number): Sample[] {
    const v = this.eval(e, t);
    return v.type === "vector" ? v.samples : [];
  }

  private string(e: Expr, t: number): string {
    const v = this.eval(e, t);
    return v.type === "string" ? v.s : "";
  }

  private vectorSelector(vs: VectorSelector, t: number): Sample[] {
    const ref = (vs.at ? atTime(vs.at, this.q) : t) - vs.offsetMs;
    const min = ref - this.q.lookbackMs;
    const out: Sample[] = [];
    for (const s of this.data.get(vs) ?? []) {
      const i = lastAtOrBefore(s.ts, ref);
      if (i < 0 || s.ts[i] < min || s.stale[i]) continue;
      const h = s.hs?.[i];
      out.push(
        h
          ? { labels: s.labels, v: s.vs[i], h, t: s.ts[i] }
          : { labels: s.labels, v: s.vs[i], t: s.ts[i] },
      );
    }
    return out;
  }

  /** A range vector at t, with the window it covers (for rate's extrapolation). */
  private matrix(
    e: MatrixSelector | Subquery,
    t: number,
    atShift = 0,
  ): { series: Series[]; rangeStart: number; rangeEnd: number; rangeMs: number } {
    if (e.type === "matrixSelector") {
      const vs = e.selector;
      const end = (vs.at ? atTime(vs.at, this.q) + atShift : t) - vs.offsetMs;
      const start = end - e.rangeMs;
      const series: Series[] = [];
      for (const s of this.data.get(vs) ?? []) {
        const [rts, rvs, rhs] = rangeArrays(s);
        const from = firstAtOrAfter(rts, start);
        const to = lastAtOrBefore(rts, end) + 1;
        if (to > from) {
          series.push({
            labels: s.labels,
            ts: rts.subarray(from, to),
            vs: rvs.subarray(from, to),
            hs: rhs?.slice(from, to),
          });
        }
      }
      return { series, rangeStart: start, rangeEnd: end, rangeMs: e.rangeMs };
    }
    const end = (e.at ? atTime(e.at, this.q) : t) - e.offsetMs;
    const start = end - e.rangeMs;
    const step = e.stepMs || this.q.subqueryStepMs || DEFAULT_SUBQUERY_STEP_MS;
    let cache = this.#subqueryCache.get(e);
    if (!cache) this.#subqueryCache.set(e, cache = new Map());
    const bySeries = new Map<string, RangeSeries>();
    let first = Math.ceil(start / step) * step + 0; // + 0: never -0
    if (first < start) first += step;
    for (let it = first; it <= end; it += step) {
      let samples = cache.get(it);
      if (!samples) {
        samples = this.vector(e.expr, it);
        cache.set(it, samples);
      }
      for (const s of samples) {
        const k = labelsKey(s.labels);
        let ser = bySeries.get(k);
        if (!ser) bySeries.set(k, ser = { labels: s.labels, ts: [], vs: [] });
        if (s.h) (ser.hs ??= new Array(ser.ts.length))[ser.ts.length] = s.h;
        ser.ts.push(it);
        ser.vs.push(s.v);
      }
    }
    return {
      series: [...bySeries.values()],
      rangeStart: start,
      rangeEnd: end,
      rangeMs: e.rangeMs,
    };
  }

  // ---------------------------------------------------------------------
  // Functions

  private call(e: Call, t: number): Value {
    const f = e.func;
    const args = e.args;
    const vec = (samples: Sample[]): Value => ({ type: "vector", samples });
    const mapVec = (fn: (v: number) => number, keepName = false): Value =>
      vec(
        uniqueLabels(
          this.vector(args[0], t).map((s) => ({
            labels: keepName ? s.labels : dropName(s.labels),
            v: fn(s.v),
          })),
        ),
      );
    if (f in MATH) return mapVec(MATH[f]);
    if (f in OVER_TIME) {
      const fn = OVER_TIME[f];
      const out: Sample[] = [];
      this.eachWindow(args[0], t, 0, (labels, _ts, vs, from, to) => {
        out.push({ labels: dropName(labels), v: fn(vs, from, to) });
      });
      return vec(uniqueLabels(out));
    }
    switch (f) {
      case "time":
        return { type: "scalar", v: t / 1000 };
      case "pi":
        return { type: "scalar", v: Math.PI };
      case "vector":
        return vec([{ labels: {}, v: this.scalar(args[0], t) }]);
      case "scalar": {
        const v = this.vector(args[0], t);
        return { type: "scalar", v: v.length === 1 ? v[0].v : NaN };
      }
      case "timestamp": {
        const v = this.vector(args[0], t);
        const direct = unwrapParens(args[0]).type === "vectorSelector";
        return vec(uniqueLabels(v.map((s) => ({
          labels: dropName(s.labels),
          v: (direct && s.t !== undefined ? s.t : t) / 1000,
        }))));
      }
      case "sort":
      case "sort_desc": {
        const v = [...this.vector(args[0], t)];
        const desc = f === "sort_desc";
        // NaN sorts to the bottom either way, as in 2.42.
        v.sort((a, b) => {
          if (Number.isNaN(a.v)) return Number.isNaN(b.v) ? 0 : 1;
          if (Number.isNaN(b.v)) return -1;
          return desc ? b.v - a.v : a.v - b.v;
        });
        return vec(v);
      }
      case "round": {
        const to = args.length > 1 ? this.scalar(args[1], t) : 1;
        const inv = 1 / to;
        return mapVec((v) => Math.floor(v * inv + 0.5) / inv);
      }
      case "clamp": {
        const min = this.scalar(args[1], t);
        const max = this.scalar(args[2], t);
        if (max < min) return vec([]);
        return mapVec((v) => goMax(min, goMin(max, v)));
      }
      case "clamp_max": {
        const max = this.scalar(args[1], t);
        return mapVec((v) => goMin(max, v));
      }
      case "clamp_min": {
        const min = this.scalar(args[1], t);
        return mapVec((v) => goMax(min, v));
      }
      case "days_in_month":
      case "day_of_month":
      case "day_of_week":
      case "day_of_year":
      case "hour":
      case "minute":
      case "month":
      case "year": {
        const fn = DATE[f];
        if (args.length === 0) {
          return vec([{ labels: {}, v: fn(new Date(Math.trunc(t / 1000) * 1000)) }]);
        }
        return mapVec((v) => fn(new Date(Math.trunc(v) * 1000)));
      }
      case "absent": {
        if (this.vector(args[0], t).length > 0) return vec([]);
        return vec([{ labels: absentLabels(args[0]), v: 1 }]);
      }
      case "absent_over_time": {
        let any = false;
        this.eachWindow(args[0], t, 0, () => any = true);
        return vec(any ? [] : [{ labels: absentLabels(args[0]), v: 1 }]);
      }
      case "last_over_time": {
        const out: Sample[] = [];
        this.eachWindow(args[0], t, 0, (labels, _ts, vs, _from, to) => {
          out.push({ labels, v: vs[to - 1] });
        });
        return vec(out);
      }
      case "quantile_over_time": {
        const q = this.scalar(args[0], t);
        const out: Sample[] = [];
        this.eachWindow(args[1], t, 0, (labels, _ts, vs, from, to) => {
          out.push({ labels: dropName(labels), v: quantile(q, Array.from(vs.slice(from, to))) });
        });
        return vec(uniqueLabels(out));
      }
      case "rate":
      case "increase":
      case "delta": {
        const out: Sample[] = [];
        this.eachWindow(args[0], t, 0, (labels, ts, vs, from, to, w, hs) => {
          const r = extrapolatedRate(ts, vs, from, to, w, f !== "delta", f === "rate", hs);
          if (r === null) return;
          if (typeof r === "number") out.push({ labels: dropName(labels), v: r });
          else out.push({ labels: dropName(labels), v: 0, h: r });
        });
        return vec(uniqueLabels(out));
      }
      case "irate":
      case "idelta": {
        const out: Sample[] = [];
        this.eachWindow(args[0], t, 0, (labels, ts, vs, from, to) => {
          if (to - from < 2) return;
          const last = vs[to - 1];
          const prev = vs[to - 2];
          let v = f === "irate" && last < prev ? last : last - prev;
          const interval = ts[to - 1] - ts[to - 2];
          if (interval === 0) return;
          if (f === "irate") v /= interval / 1000;
          out.push({ labels: dropName(labels), v });
        });
        return vec(uniqueLabels(out));
      }
      case "deriv":
      case "predict_linear": {
        const duration = f === "predict_linear" ? this.scalar(args[1], t) : 0;
        const out: Sample[] = [];
        const shift = f === "predict_linear" ? t - this.q.startMs : 0;
        this.eachWindow(args[0], t, shift, (labels, ts, vs, from, to) => {
          if (to - from < 2) return;
          if (f === "deriv") {
            out.push({
              labels: dropName(labels),
              v: linearRegression(ts, vs, from, to, ts[from])[0],
            });
          } else {
            const [slope, intercept] = linearRegression(ts, vs, from, to, t);
            out.push({ labels: dropName(labels), v: slope * duration + intercept });
          }
        });
        return vec(uniqueLabels(out));
      }
      case "holt_winters": {
        const sf = this.scalar(args[1], t);
        const tf = this.scalar(args[2], t);
        const out: Sample[] = [];
        const m = this.matrixArg(args[0], t);
        for (const s of m.series) {
          // Checked per series, as Prometheus does: no series, no error.
          if (!(sf > 0 && sf < 1)) {
            throw new EvalError(
              `invalid smoothing factor. Expected: 0 < sf < 1, got: ${goFloat(sf)}`,
            );
          }
          if (!(tf > 0 && tf < 1)) {
            throw new EvalError(`invalid trend factor. Expected: 0 < tf < 1, got: ${goFloat(tf)}`);
          }
          const v = holtWinters(s.vs, 0, s.vs.length, sf, tf);
          if (v !== null) out.push({ labels: dropName(s.labels), v });
        }
        return vec(uniqueLabels(out));
      }
      case "histogram_quantile":
        return vec(
          uniqueLabels(histogramQuantile(this.scalar(args[0], t), this.vector(args[1], t))),
        );
      case "histogram_count":
      case "histogram_sum": {
        // Native histograms only: float samples give nothing.
        const out: Sample[] = [];
        for (const s of this.vector(args[0], t)) {
          if (s.h) {
            out.push({
              labels: dropName(s.labels),
              v: f === "histogram_sum" ? s.h.sum : s.h.count,
            });
          }
        }
        return vec(uniqueLabels(out));
      }
      case "histogram_fraction": {
        const lower = this.scalar(args[0], t);
        const upper = this.scalar(args[1], t);
        const out: Sample[] = [];
        for (const s of this.vector(args[2], t)) {
          if (s.h) {
            out.push({ labels: dropName(s.labels), v: histogramFraction(lower, upper, s.h) });
          }
        }
        return vec(uniqueLabels(out));
      }
      case "label_replace":
        return vec(uniqueLabels(this.labelReplace(e, t)));
      case "label_join": {
        const v = this.vector(args[0], t);
        const dst = this.string(args[1], t);
        const sep = this.string(args[2], t);
        const srcs = args.slice(3).map((a) => this.string(a, t));
        if (!isValidLabelName(dst)) {
          throw new EvalError(`invalid destination label name in label_join(): ${dst}`);
        }
        for (const s of srcs) {
          if (!isValidLabelName(s)) {
            throw new EvalError(`invalid source label name in label_join(): ${s}`);
          }
        }
        return vec(uniqueLabels(v.map((s) => {
          const joined = srcs.map((l) => s.labels[l] ?? "").join(sep);
          return { labels: setLabel(s.labels, dst, joined), v: s.v };
        })));
      }
    }
    throw new EvalError(`function ${JSON.stringify(f)} is not supported`);
  }

  /**
   * `atShift`: Prometheus 2.42 does not treat predict_linear (whose result
   * depends on the evaluation time) as step-invariant, so a range selector
   * with `@` in it is evaluated at every step with the offset `@` implies at
   * the query's start: its window moves with the step. Reproduced here.
   */
  private matrixArg(e: Expr, t: number) {
    const m = unwrapParens(e);
    if (m.type !== "matrixSelector" && m.type !== "subquery") {
      throw new EvalError("expected a range vector");
    }
    return this.matrix(m, t);
  }

  /**
   * Calls `fn` with each series' window of a range-vector argument (samples
   * `from` to `to` - 1 of `ts`/`vs`, never empty) without copying them:
   * this is the hot path of rate() and the *_over_time functions. Returns
   * the window's bounds.
   */
  private eachWindow(
    e: Expr,
    t: number,
    atShift: number,
    fn: (
      labels: Labels,
      ts: Floats,
      vs: Floats,
      from: number,
      to: number,
      w: Window,
      hs: readonly (FloatHistogram | undefined)[] | undefined,
    ) => void,
  ): void {
    const m = unwrapParens(e);
    if (m.type === "matrixSelector") {
      const vs = m.selector;
      const end = (vs.at ? atTime(vs.at, this.q) + atShift : t) - vs.offsetMs;
      const start = end - m.rangeMs;
      const w = { rangeStart: start, rangeEnd: end, rangeMs: m.rangeMs };
      for (const s of this.data.get(vs) ?? []) {
        const [rts, rvs, rhs] = rangeArrays(s);
        // Steps advance, so the window's ends move forward: start from the last ones.
        const from = s.hintFrom = seekFirst(rts, start, s.hintFrom ?? 0);
        const to = s.hintTo = seekFirst(rts, end + 1, s.hintTo ?? 0);
        if (to > from) fn(s.labels, rts, rvs, from, to, w, rhs);
      }
      return;
    }
    if (m.type !== "subquery") throw new EvalError("expected a range vector");
    const r = this.matrix(m, t, atShift);
    for (const s of r.series) fn(s.labels, s.ts, s.vs, 0, s.ts.length, r, s.hs);
  }

  private labelReplace(e: Call, t: number): Sample[] {
    const [vArg, dstA, replA, srcA, reA] = e.args;
    const v = this.vector(vArg, t);
    const dst = this.string(dstA, t);
    const repl = this.string(replA, t);
    const src = this.string(srcA, t);
    const reText = this.string(reA, t);
    const re = anchoredRegex(reText);
    if (!re) throw new EvalError(`invalid regular expression in label_replace(): ${reText}`);
    if (!isValidLabelName(dst)) {
      throw new EvalError(`invalid destination label name in label_replace(): ${dst}`);
    }
    return v.map((s) => {
      const m = re.exec(s.labels[src] ?? "");
      // The value only: 2.42's label_replace leaves a histogram's behind.
      if (!m) return { labels: s.labels, v: s.v };
      const res = expandTemplate(repl, m);
      return { labels: setLabel(s.labels, dst, res), v: s.v };
    });
  }

  // ---------------------------------------------------------------------
  // Aggregations

  private aggregate(e: Aggregate, t: number): Sample[] {
    const input = this.vector(e.expr, t);
    const op = e.op;
    let param = 0;
    let valueLabel = "";
    if (op === "topk" || op === "bottomk" || op === "quantile") param = this.scalar(e.param!, t);
    if (op === "count_values") {
      valueLabel = this.string(e.param!, t);
      if (!isValidLabelName(valueLabel)) {
        throw new EvalError(`invalid label name ${JSON.stringify(valueLabel)}`);
      }
    }
    if ((op === "topk" || op === "bottomk")) {
      if (!(param <= 9.223372036854775807e18 && param >= -9.223372036854775808e18)) {
        throw new EvalError(`Scalar value ${goFloatV(param)} overflows int64`);
      }
      const k = Math.trunc(param);
      if (!(k >= 1)) return [];
      return topk(input, e, k, op === "bottomk");
    }
    interface Group {
      labels: Labels;
      value: number;
      mean: number;
      count: number;
      values: number[];
      /** sum: the histograms' sum; whether floats and histograms came (both: no result). */
      h?: FloatHistogram;
      hasFloat?: boolean;
      hasHistogram?: boolean;
    }
    const groups = new Map<string, Group>();
    const order: Group[] = [];
    for (const s of input) {
      let labels = groupLabels(s.labels, e.grouping, e.without);
      if (op === "count_values") labels = setLabel(labels, valueLabel, formatValue(s.v));
      const key = labelsKey(labels);
      const g = groups.get(key);
      if (!g) {
        const ng: Group = { labels, value: s.v, mean: s.v, count: 1, values: [s.v] };
        if (op === "stddev" || op === "stdvar") ng.value = 0;
        if (op === "count" || op === "count_values" || op === "group") ng.value = 1;
        if (!s.h) ng.hasFloat = true;
        else if (op === "sum") {
          ng.h = copyHistogram(s.h);
          ng.hasHistogram = true;
        }
        groups.set(key, ng);
        order.push(ng);
        continue;
      }
      switch (op) {
        case "sum":
          if (s.h) {
            g.hasHistogram = true;
            // Nothing is added to a group that began with a float.
            if (g.h) g.h = s.h.schema >= g.h.schema ? add(g.h, s.h) : add(copyHistogram(s.h), g.h);
          } else {
            g.hasFloat = true;
            g.value += s.v;
          }
          break;
        case "avg":
          g.count++;
          if (isInf(g.mean)) {
            if (isInf(s.v) && (g.mean > 0) === (s.v > 0)) break;
            if (!isInf(s.v) && !Number.isNaN(s.v)) break;
          }
          g.mean += s.v / g.count - g.mean / g.count;
          break;
        case "group":
          break;
        case "count":
        case "count_values":
          g.count++;
          g.value = g.count;
          break;
        case "max":
          if (g.value < s.v || Number.isNaN(g.value)) g.value = s.v;
          break;
        case "min":
          if (g.value > s.v || Number.isNaN(g.value)) g.value = s.v;
          break;
        case "stddev":
        case "stdvar": {
          g.count++;
          const delta = s.v - g.mean;
          g.mean += delta / g.count;
          g.value += delta * (s.v - g.mean);
          break;
        }
        case "quantile":
          g.values.push(s.v);
          break;
      }
    }
    const out: Sample[] = [];
    for (const g of order) {
      let v = g.value;
      if (op === "avg") v = g.mean;
      else if (op === "stdvar") v = g.value / g.count;
      else if (op === "stddev") v = Math.sqrt(g.value / g.count);
      else if (op === "quantile") v = quantile(param, g.values);
      else if (op === "sum" && g.hasFloat && g.hasHistogram) continue;
      out.push(g.h ? { labels: g.labels, v, h: g.h } : { labels: g.labels, v });
    }
    return out;
  }

  // ---------------------------------------------------------------------
  // Binary operators

  private binary(e: Binary, t: number): Value {
    const l = this.eval(e.lhs, t);
    const r = this.eval(e.rhs, t);
    if (l.type === "scalar" && r.type === "scalar") {
      const [v, keep] = scalarOp(e.op, l.v, r.v);
      return { type: "scalar", v: e.returnBool ? (keep ? 1 : 0) : v };
    }
    if (l.type === "vector" && r.type === "vector") {
      const m = e.matching!;
      switch (e.op) {
        case "and": {
          const rs = new Set(r.samples.map((s) => signature(s.labels, m.on, m.labels)));
          return {
            type: "vector",
            samples: l.samples.filter((s) => rs.has(signature(s.labels, m.on, m.labels))),
          };
        }
        case "or": {
          const ls = new Set(l.samples.map((s) => signature(s.labels, m.on, m.labels)));
          return {
            type: "vector",
            samples: [
              ...l.samples,
              ...r.samples.filter((s) => !ls.has(signature(s.labels, m.on, m.labels))),
            ],
          };
        }
        case "unless": {
          const rs = new Set(r.samples.map((s) => signature(s.labels, m.on, m.labels)));
          return {
            type: "vector",
            samples: l.samples.filter((s) => !rs.has(signature(s.labels, m.on, m.labels))),
          };
        }
      }
      return { type: "vector", samples: uniqueLabels(vectorBinop(e, l.samples, r.samples)) };
    }
    // Vector and scalar.
    const swap = l.type === "scalar";
    const vecSide = (swap ? r : l) as { type: "vector"; samples: Sample[] };
    const sc = (swap ? l : r) as { type: "scalar"; v: number };
    const isComparison = ["==", "!=", ">", "<", ">=", "<="].includes(e.op);
    const dropMetric = shouldDropName(e.op) || e.returnBool;
    const out: Sample[] = [];
    for (const s of vecSide.samples) {
      let lv = s.v;
      let rv = sc.v;
      if (swap) [lv, rv] = [rv, lv];
      let [v, keep] = scalarOp(e.op, lv, rv);
      if (isComparison && swap) v = rv;
      if (e.returnBool) v = keep ? 1 : 0;
      else if (!keep) continue;
      // 2.42 keeps the sample, histogram included, with the new value.
      const labels = dropMetric ? dropName(s.labels) : s.labels;
      out.push(s.h ? { labels, v, h: s.h } : { labels, v });
    }
    return { type: "vector", samples: uniqueLabels(out) };
  }
}

/** One series of a range query's result (and of a subquery's). */
export interface RangeSeries {
  labels: Labels;
  ts: number[];
  vs: number[];
  /** Histogram samples index for index (absent: floats only). */
  hs?: (FloatHistogram | undefined)[];
}

/** The time window of a range vector at one step, for rate's extrapolation. */
interface Window {
  rangeStart: number;
  rangeEnd: number;
  rangeMs: number;
}

function tooManySamples(): EvalError {
  return new EvalError(
    "query processing would load too many samples into memory in query execution",
  );
}

function unwrapParens(e: Expr): Expr {
  while (e.type === "paren") e = e.expr;
  return e;
}

/** The series' samples without staleness markers, for range windows (made once). */
function rangeArrays(
  s: SeriesData,
): [Float64Array, Float64Array, (FloatHistogram | undefined)[] | undefined] {
  if (!s.rangeTs || !s.rangeVs) {
    if (!s.stale.includes(1)) {
      s.rangeTs = s.ts;
      s.rangeVs = s.vs;
      s.rangeHs = s.hs;
    } else {
      const keep = s.stale.reduce((n, x) => n + (x ? 0 : 1), 0);
      s.rangeTs = new Float64Array(keep);
      s.rangeVs = new Float64Array(keep);
      if (s.hs) s.rangeHs = new Array(keep);
      for (let i = 0, j = 0; i < s.ts.length; i++) {
        if (s.stale[i]) continue;
        if (s.hs) s.rangeHs![j] = s.hs[i];
        s.rangeTs[j] = s.ts[i];
        s.rangeVs[j++] = s.vs[i];
      }
    }
  }
  return [s.rangeTs, s.rangeVs, s.rangeHs];
}

/**
 * Index of the first element >= x (a.length when none), looking a few
 * places from `hint` first: the answer is usually at or just after it.
 */
function seekFirst(a: Float64Array, x: number, hint: number): number {
  if (hint <= a.length && (hint === 0 || a[hint - 1] < x)) {
    for (let i = hint, k = 0; k < 8; i++, k++) {
      if (i >= a.length || a[i] >= x) return i;
    }
  }
  return firstAtOrAfter(a, x);
}

/** Index of the last element <= x, or -1. */
function lastAtOrBefore(a: Float64Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Index of the first element >= x (a.length when none). */
function firstAtOrAfter(a: Float64Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Fails like Prometheus when a vector would hold one label set twice. */
function uniqueLabels(samples: Sample[]): Sample[] {
  if (samples.length < 2) return samples;
  const seen = new Set<string>();
  for (const s of samples) {
    const k = labelsKey(s.labels);
    if (seen.has(k)) throw new EvalError("vector cannot contain metrics with the same labelset");
    seen.add(k);
  }
  return samples;
}

function setLabel(l: Labels, name: string, value: string): Labels {
  const out: Labels = { ...l };
  if (value === "") delete out[name];
  else out[name] = value;
  return out;
}

const grouped = new WeakMap<string[], WeakMap<Labels, Labels>>();

/** The labels an aggregation groups by (the same object for the same input and grouping). */
function groupLabels(l: Labels, grouping: string[], without: boolean): Labels {
  let byLabels = grouped.get(grouping);
  if (!byLabels) grouped.set(grouping, byLabels = new WeakMap());
  let out = byLabels.get(l);
  if (!out) byLabels.set(l, out = makeGroupLabels(l, grouping, without));
  return out;
}

function makeGroupLabels(l: Labels, grouping: string[], without: boolean): Labels {
  const out: Labels = {};
  if (without) {
    for (const k in l) if (k !== "__name__" && !grouping.includes(k)) out[k] = l[k];
  } else {
    for (const k of grouping) if (l[k] !== undefined && l[k] !== "") out[k] = l[k];
  }
  return out;
}

const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function isValidLabelName(s: string): boolean {
  return LABEL_NAME_RE.test(s);
}

function isInf(v: number): boolean {
  return v === Infinity || v === -Infinity;
}

/** Go's math.Max: NaN wins, +0 > -0. */
function goMax(a: number, b: number): number {
  return Math.max(a, b);
}

function goMin(a: number, b: number): number {
  return Math.min(a, b);
}

/** Go's math.Pow for the cases where JS's ** differs. */
function goPow(x: number, y: number): number {
  if (y === 0 || x === 1) return 1;
  if ((x === -1) && isInf(y)) return 1;
  return x ** y;
}

/** A float printed as Go's %v. */
function goFloatV(v: number): string {
  return Number.isNaN(v) ? "NaN" : v === Infinity ? "+Inf" : v === -Infinity ? "-Inf" : String(v);
}

/** A float printed as Go's %f. */
function goFloat(v: number): string {
  return Number.isFinite(v) ? v.toFixed(6) : formatValue(v);
}

/** Go's math.Mod (sign of the dividend, NaN for ±Inf dividend or zero divisor): JS's % agrees. */
function scalarOp(op: string, l: number, r: number): [number, boolean] {
  switch (op) {
    case "+":
      return [l + r, true];
    case "-":
      return [l - r, true];
    case "*":
      return [l * r, true];
    case "/":
      return [l / r, true];
    case "%":
      return [l % r, true];
    case "^":
      return [goPow(l, r), true];
    case "atan2":
      return [Math.atan2(l, r), true];
    case "==":
      return [l, l === r];
    case "!=":
      return [l, l !== r];
    case ">":
      return [l, l > r];
    case "<":
      return [l, l < r];
    case ">=":
      return [l, l >= r];
    case "<=":
      return [l, l <= r];
  }
  throw new EvalError(`operator ${JSON.stringify(op)} not allowed here`);
}

/** Arithmetic drops the metric name (2.42's shouldDropMetricName: not atan2). */
function shouldDropName(op: string): boolean {
  return op === "+" || op === "-" || op === "*" || op === "/" || op === "%" || op === "^";
}

function vectorBinop(e: Binary, lhsIn: Sample[], rhsIn: Sample[]): Sample[] {
  const m = e.matching!;
  if (lhsIn.length === 0 || rhsIn.length === 0) return [];
  let lhs = lhsIn;
  let rhs = rhsIn;
  if (m.card === "one-to-many") [lhs, rhs] = [rhs, lhs];
  const rightSigs = new Map<string, Sample>();
  for (const rs of rhs) {
    const sig = signature(rs.labels, m.on, m.labels);
    if (rightSigs.has(sig)) {
      const oneSide = m.card === "one-to-many" ? "left" : "right";
      throw new EvalError(
        `found duplicate series for the match group on the ${oneSide} hand-side of the operation; ` +
          `many-to-many matching not allowed: matching labels must be unique on one side`,
      );
    }
    rightSigs.set(sig, rs);
  }
  const matched = new Map<string, Set<string> | null>();
  const out: Sample[] = [];
  const dropMetric = shouldDropName(e.op);
  for (const ls of lhs) {
    const sig = signature(ls.labels, m.on, m.labels);
    const rs = rightSigs.get(sig);
    if (!rs) continue;
    let fl = ls.v;
    let fr = rs.v;
    let hl = ls.h;
    let hr = rs.h;
    if (m.card === "one-to-many") {
      [fl, fr] = [fr, fl];
      [hl, hr] = [hr, hl];
    }
    let [value, keep] = scalarOp(e.op, fl, fr);
    // Two histograms: `+` adds them; any other operator reads their values.
    const h = e.op === "+" && hl && hr ? addNew(hl, hr) : undefined;
    if (h) [value, keep] = [0, true];
    if (e.returnBool) value = keep ? 1 : 0;
    else if (!keep) continue;
    // The result's labels: the "many" (or left) side's.
    let labels: Labels = { ...ls.labels };
    if (dropMetric || e.returnBool) delete labels.__name__;
    if (m.card === "one-to-one") {
      if (m.on) {
        const kept: Labels = {};
        for (const k of m.labels) if (labels[k] !== undefined) kept[k] = labels[k];
        labels = kept;
      } else {
        for (const k of m.labels) delete labels[k];
      }
    }
    for (const k of m.include) {
      const v = rs.labels[k];
      if (v !== undefined && v !== "") labels[k] = v;
      else delete labels[k];
    }
    const exists = matched.has(sig);
    if (m.card === "one-to-one") {
      if (exists) {
        throw new EvalError(
          "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
        );
      }
      matched.set(sig, null);
    } else {
      const key = labelsKey(labels);
      let inserted = matched.get(sig);
      if (!inserted) matched.set(sig, inserted = new Set());
      else if (inserted.has(key)) {
        throw new EvalError(
          "multiple matches for labels: grouping labels must ensure unique matches",
        );
      }
      inserted.add(key);
    }
    // A histogram with a float: no result (after the checks above).
    if (!hl !== !hr) continue;
    out.push(h ? { labels, v: value, h } : { labels, v: value });
  }
  return out;
}

/** topk/bottomk per group, each group's samples best first; groups in order of appearance. */
function topk(input: Sample[], e: Aggregate, k: number, bottom: boolean): Sample[] {
  const groups = new Map<string, Sample[]>();
  // "Better" for topk: larger, NaN worst; for bottomk: smaller, NaN worst.
  const better = (a: number, b: number) => {
    if (Number.isNaN(b)) return !Number.isNaN(a);
    if (Number.isNaN(a)) return false;
    return bottom ? a < b : a > b;
  };
  for (const s of input) {
    const key = labelsKey(groupLabels(s.labels, e.grouping, e.without));
    let g = groups.get(key);
    if (!g) groups.set(key, g = []);
    if (g.length < k) {
      g.push(s);
      continue;
    }
    // Replace the worst kept sample when s is better.
    let worst = 0;
    for (let i = 1; i < g.length; i++) if (better(g[worst].v, g[i].v)) worst = i;
    if (better(s.v, g[worst].v)) g[worst] = s;
  }
  const out: Sample[] = [];
  for (const g of groups.values()) {
    g.sort((a, b) => (better(a.v, b.v) ? -1 : better(b.v, a.v) ? 1 : 0));
    for (const s of g) out.push({ labels: s.labels, v: s.v });
  }
  return out;
}

/** Prometheus's quantile(): linear interpolation between closest ranks; NaN sorts first. */
export function quantile(q: number, values: number[]): number {
  if (values.length === 0) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  values.sort((a, b) => {
    if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : -1;
    if (Number.isNaN(b)) return 1;
    return a - b;
  });
  const n = values.length;
  const rank = q * (n - 1);
  const lower = Math.max(0, Math.floor(rank));
  const upper = Math.min(n - 1, lower + 1);
  const weight = rank - Math.floor(rank);
  return values[lower] * (1 - weight) + values[upper] * weight;
}

/** rate/increase/delta with Prometheus's extrapolation to the window's edges. */
export function extrapolatedRate(
  ts: Floats,
  vs: Floats,
  from: number,
  to: number,
  w: Window,
  isCounter: boolean,
  isRate: boolean,
  hs?: readonly (FloatHistogram | undefined)[],
): number | FloatHistogram | null {
  const n = to - from;
  if (n < 2) return null;
  const first = vs[from];
  let result = 0;
  let resultH: FloatHistogram | null = null;
  if (hs?.[from]) {
    // A window of histograms (2.42: any float in it, or none of this).
    resultH = histogramRate(hs, from, to, isCounter);
    if (!resultH) return null;
  } else {
    result = vs[to - 1] - first;
    if (hs) {
      for (let i = from + 1; i < to; i++) if (hs[i]) return null;
    }
    if (isCounter) {
      let prev = first;
      for (let i = from + 1; i < to; i++) {
        const cur = vs[i];
        if (cur < prev) result += prev;
        prev = cur;
      }
    }
  }
  let durationToStart = (ts[from] - w.rangeStart) / 1000;
  const durationToEnd = (w.rangeEnd - ts[to - 1]) / 1000;
  const sampledInterval = (ts[to - 1] - ts[from]) / 1000;
  const averageDurationBetweenSamples = sampledInterval / (n - 1);
  if (isCounter && result > 0 && first >= 0) {
    const durationToZero = sampledInterval * (first / result);
    if (durationToZero < durationToStart) durationToStart = durationToZero;
  }
  const threshold = averageDurationBetweenSamples * 1.1;
  let extrapolateToInterval = sampledInterval;
  extrapolateToInterval += durationToStart < threshold
    ? durationToStart
    : averageDurationBetweenSamples / 2;
  extrapolateToInterval += durationToEnd < threshold
    ? durationToEnd
    : averageDurationBetweenSamples / 2;
  let factor = extrapolateToInterval / sampledInterval;
  if (isRate) factor /= w.rangeMs / 1000;
  return resultH ? scale(resultH, factor) : result * factor;
}

/** Neumaier's compensated summation step (Prometheus's kahanSumInc). */
function kahanSumInc(inc: number, sum: number, c: number): [number, number] {
  const t = sum + inc;
  if (Math.abs(sum) >= Math.abs(inc)) c += (sum - t) + inc;
  else c += (inc - t) + sum;
  return [t, c];
}

/** Least squares: [slope, intercept at interceptTime]. */
function linearRegression(
  ts: Floats,
  vs: Floats,
  from: number,
  to: number,
  interceptTime: number,
): [number, number] {
  let n = 0;
  let sumX = 0, cX = 0, sumY = 0, cY = 0, sumXY = 0, cXY = 0, sumX2 = 0, cX2 = 0;
  const initY = vs[from];
  let constY = true;
  for (let i = from; i < to; i++) {
    const v = vs[i];
    if (constY && i > from && v !== initY) constY = false;
    n += 1;
    const x = (ts[i] - interceptTime) / 1e3;
    [sumX, cX] = kahanSumInc(x, sumX, cX);
    [sumY, cY] = kahanSumInc(v, sumY, cY);
    [sumXY, cXY] = kahanSumInc(x * v, sumXY, cXY);
    [sumX2, cX2] = kahanSumInc(x * x, sumX2, cX2);
  }
  if (constY) {
    if (isInf(initY)) return [NaN, NaN];
    return [0, initY];
  }
  sumX += cX;
  sumY += cY;
  sumXY += cXY;
  sumX2 += cX2;
  const covXY = sumXY - sumX * sumY / n;
  const varX = sumX2 - sumX * sumX / n;
  const slope = covXY / varX;
  const intercept = sumY / n - slope * sumX / n;
  return [slope, intercept];
}

function holtWinters(
  vs: Floats,
  from: number,
  to: number,
  sf: number,
  tf: number,
): number | null {
  const l = to - from;
  if (l < 2) return null;
  let s0 = 0;
  let s1 = vs[from];
  let b = vs[from + 1] - vs[from];
  for (let i = 1; i < l; i++) {
    const x = sf * vs[from + i];
    if (i - 1 !== 0) b = tf * (s1 - s0) + (1 - tf) * b;
    const y = (1 - sf) * (s1 + b);
    s0 = s1;
    s1 = x + y;
  }
  return s1;
}

/** The *_over_time functions (and changes, resets) over samples `from` to `to` - 1 of `vs`. */
const OVER_TIME: Record<string, (vs: Floats, from: number, to: number) => number> = {
  avg_over_time: (vs, from, to) => {
    let mean = 0, count = 0, c = 0;
    for (let i = from; i < to; i++) {
      const v = vs[i];
      count++;
      if (isInf(mean)) {
        if (isInf(v) && (mean > 0) === (v > 0)) continue;
        if (!isInf(v) && !Number.isNaN(v)) continue;
      }
      [mean, c] = kahanSumInc(v / count - mean / count, mean, c);
    }
    return isInf(mean) ? mean : mean + c;
  },
  sum_over_time: (vs, from, to) => {
    let sum = 0, c = 0;
    for (let i = from; i < to; i++) [sum, c] = kahanSumInc(vs[i], sum, c);
    return isInf(sum) ? sum : sum + c;
  },
  count_over_time: (_vs, from, to) => to - from,
  max_over_time: (vs, from, to) => {
    let max = vs[from];
    for (let i = from; i < to; i++) if (vs[i] > max || Number.isNaN(max)) max = vs[i];
    return max;
  },
  min_over_time: (vs, from, to) => {
    let min = vs[from];
    for (let i = from; i < to; i++) if (vs[i] < min || Number.isNaN(min)) min = vs[i];
    return min;
  },
  present_over_time: () => 1,
  stddev_over_time: (vs, from, to) => Math.sqrt(variance(vs, from, to)),
  stdvar_over_time: (vs, from, to) => variance(vs, from, to),
  changes: (vs, from, to) => {
    let changes = 0;
    let prev = vs[from];
    for (let i = from + 1; i < to; i++) {
      const cur = vs[i];
      if (cur !== prev && !(Number.isNaN(cur) && Number.isNaN(prev))) changes++;
      prev = cur;
    }
    return changes;
  },
  resets: (vs, from, to) => {
    let resets = 0;
    let prev = vs[from];
    for (let i = from + 1; i < to; i++) {
      const cur = vs[i];
      if (cur < prev) resets++;
      prev = cur;
    }
    return resets;
  },
};

function variance(vs: Floats, from: number, to: number): number {
  let count = 0, mean = 0, cMean = 0, aux = 0, cAux = 0;
  for (let i = from; i < to; i++) {
    const v = vs[i];
    count++;
    const delta = v - (mean + cMean);
    [mean, cMean] = kahanSumInc(delta / count, mean, cMean);
    [aux, cAux] = kahanSumInc(delta * (v - (mean + cMean)), aux, cAux);
  }
  return (aux + cAux) / count;
}

const MATH: Record<string, (v: number) => number> = {
  abs: Math.abs,
  ceil: Math.ceil,
  floor: Math.floor,
  exp: Math.exp,
  sqrt: Math.sqrt,
  ln: Math.log,
  log2: Math.log2,
  log10: Math.log10,
  sin: Math.sin,
  cos: Math.cos,
  tan: Math.tan,
  asin: Math.asin,
  acos: Math.acos,
  atan: Math.atan,
  sinh: Math.sinh,
  cosh: Math.cosh,
  tanh: Math.tanh,
  asinh: Math.asinh,
  acosh: Math.acosh,
  atanh: Math.atanh,
  deg: (v) => v * 180 / Math.PI,
  rad: (v) => v * Math.PI / 180,
  sgn: (v) => v < 0 ? -1 : v > 0 ? 1 : v,
};

const DATE: Record<string, (d: Date) => number> = {
  days_in_month: (d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate(),
  day_of_month: (d) => d.getUTCDate(),
  day_of_week: (d) => d.getUTCDay(),
  day_of_year: (d) =>
    Math.floor(
      (Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) -
        Date.UTC(d.getUTCFullYear(), 0, 1)) / 86400_000,
    ) + 1,
  hour: (d) => d.getUTCHours(),
  minute: (d) => d.getUTCMinutes(),
  month: (d) => d.getUTCMonth() + 1,
  year: (d) => d.getUTCFullYear(),
};

/** The labels `absent()` gives: the selector's equality matchers, each label once. */
function absentLabels(arg: Expr): Labels {
  const sel = arg.type === "vectorSelector"
    ? arg
    : arg.type === "matrixSelector"
    ? arg.selector
    : null;
  if (!sel) return {};
  const out: Labels = {};
  const has = new Set<string>();
  for (const m of sel.matchers) {
    if (m.name === "__name__") continue;
    if (m.type === "=" && !has.has(m.name)) {
      if (m.value !== "") out[m.name] = m.value;
      has.add(m.name);
    } else {
      delete out[m.name];
    }
  }
  return out;
}

/**
 * `histogram_quantile`: classic buckets grouped by their labels without
 * `le` (with the name: `a_bucket` and `b_bucket` are two groups, whose
 * answers then collide, as in 2.42), and native histograms. A native
 * histogram with the labels of a classic group: 2.42 answers for neither.
 */
function histogramQuantile(q: number, input: Sample[]): Sample[] {
  const groups = new Map<string, { labels: Labels; buckets: { ub: number; count: number }[] }>();
  const natives: Sample[] = [];
  for (const s of input) {
    if (s.h) {
      natives.push(s);
      continue;
    }
    const le = s.labels.le;
    if (le === undefined) continue;
    const ub = parseLe(le);
    if (ub === null) continue;
    const l = { ...s.labels };
    delete l.le;
    const key = labelsKey(l);
    let g = groups.get(key);
    if (!g) groups.set(key, g = { labels: dropName(l), buckets: [] });
    g.buckets.push({ ub, count: s.v });
  }
  const out: Sample[] = [];
  for (const s of natives) {
    if (groups.delete(labelsKey(s.labels))) continue;
    out.push({ labels: dropName(s.labels), v: nativeQuantile(q, s.h!) });
  }
  for (const g of groups.values()) out.push({ labels: g.labels, v: bucketQuantile(q, g.buckets) });
  return out;
}

function parseLe(s: string): number | null {
  const t = s.trim();
  const lower = t.toLowerCase();
  if (lower === "+inf" || lower === "inf") return Infinity;
  if (lower === "-inf") return -Infinity;
  if (lower === "nan") return NaN;
  if (t === "" || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?0x[0-9a-fA-F]+$/.test(t)) {
    return null;
  }
  return Number(t);
}

function bucketQuantile(q: number, input: { ub: number; count: number }[]): number {
  if (Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...input].sort((a, b) => a.ub - b.ub);
  if (sorted.length === 0 || sorted[sorted.length - 1].ub !== Infinity) return NaN;
  // Coalesce equal bounds.
  const buckets: { ub: number; count: number }[] = [];
  for (const b of sorted) {
    const last = buckets[buckets.length - 1];
    if (last && last.ub === b.ub) last.count += b.count;
    else buckets.push({ ...b });
  }
  // Ensure monotonic counts.
  let max = -Infinity;
  for (const b of buckets) {
    if (b.count > max) max = b.count;
    else if (b.count < max) b.count = max;
  }
  if (buckets.length < 2) return NaN;
  const observations = buckets[buckets.length - 1].count;
  if (observations === 0) return NaN;
  let rank = q * observations;
  let b = 0;
  while (b < buckets.length - 1 && !(buckets[b].count >= rank)) b++;
  if (b === buckets.length - 1) return buckets[buckets.length - 2].ub;
  if (b === 0 && buckets[0].ub <= 0) return buckets[0].ub;
  let bucketStart = 0;
  const bucketEnd = buckets[b].ub;
  let count = buckets[b].count;
  if (b > 0) {
    bucketStart = buckets[b - 1].ub;
    count -= buckets[b - 1].count;
    rank -= buckets[b - 1].count;
  }
  return bucketStart + (bucketEnd - bucketStart) * (rank / count);
}

/** Go's regexp Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`. */
function expandTemplate(tpl: string, m: RegExpExecArray): string {
  let out = "";
  for (let i = 0; i < tpl.length; i++) {
    const c = tpl[i];
    if (c !== "$" || i === tpl.length - 1) {
      out += c;
      continue;
    }
    let name: string;
    if (tpl[i + 1] === "$") {
      out += "$";
      i++;
      continue;
    }
    if (tpl[i + 1] === "{") {
      const close = tpl.indexOf("}", i + 2);
      name = close < 0 ? "" : tpl.slice(i + 2, close);
      if (close < 0 || !/^[A-Za-z0-9_]+$/.test(name)) {
        out += c;
        continue;
      }
      i = close;
    } else {
      const mm = /^[A-Za-z0-9_]+/.exec(tpl.slice(i + 1));
      if (!mm) {
        out += c;
        continue;
      }
      name = mm[0];
      i += name.length;
    }
    if (/^\d+$/.test(name)) out += m[Number(name)] ?? "";
    else out += m.groups?.[name] ?? "";
  }
  return out;
}
