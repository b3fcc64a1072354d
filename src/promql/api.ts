/**
 * Prometheus's HTTP query API (https://prometheus.io/docs/prometheus/latest/querying/api/)
 * over our storage, so that Grafana's Prometheus data source can point at
 * the connector:
 *
 * - `GET|POST /api/v1/query`, `/api/v1/query_range`: PromQL, evaluated by
 *   `eval.ts` over samples fetched from PostgreSQL (`fetch.ts`);
 * - `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`;
 * - `/api/v1/metadata` (the metric metadata remote write delivered),
 *   `/api/v1/query_exemplars` (the exemplars remote write delivered, of
 *   every vector selector of the query, `start`..`end` inclusive),
 *   `/api/v1/status/buildinfo`.
 *
 * Answers have Prometheus's shape: `{"status":"success","data":…}` or
 * `{"status":"error","errorType":…,"error":…}` with its status codes
 * (400 bad_data, 422 execution, 503 timeout/unavailable, 500 internal).
 *
 * @module
 */
import { HttpError } from "../errors.ts";
import { COMMIT, VERSION } from "../version.ts";
import { type Expr, type LabelMatcher, typeOf } from "./ast.ts";
import { EvalError, Evaluator, type QueryTimes, selectorRanges } from "./eval.ts";
import { selectorGrids } from "./pushdown.ts";
import type { OptionalRange, PromqlStore } from "./fetch.ts";
import { parseDuration, ParseError, parseExpr, parseSelector } from "./parse.ts";
import type { SeriesData, Value } from "./value.ts";
import { formatValue, type Labels, type Series } from "./value.ts";
import { histogramJson } from "./histogram.ts";

/** Limits and collaborators of the query API. */
export interface PromqlApiOptions {
  store: PromqlStore;
  /** --metrics.promql.query-timeout */
  queryTimeoutMs: number;
  /** --metrics.promql.max-samples */
  maxSamples: number;
  /** --metrics.promql.lookback-delta */
  lookbackDeltaMs: number;
  /** --metrics.promql.max-points-per-ts (Prometheus: 11,000) */
  maxPointsPerTs: number;
  /** --metrics.promql.default-subquery-step-interval */
  subqueryStepMs: number;
  /** --metrics.promql.max-concurrency */
  maxConcurrency: number;
  /** Most bytes of a POST body. */
  maxRequestBytes: number;
  /** Clock, for the default `time` of instant queries (ms). */
  now?: () => number;
}

/** The paths this API serves. */
export function isPromqlPath(path: string): boolean {
  return path === "/api/v1/query" || path === "/api/v1/query_range" ||
    path === "/api/v1/series" || path === "/api/v1/labels" ||
    path === "/api/v1/metadata" || path === "/api/v1/query_exemplars" ||
    path === "/api/v1/status/buildinfo" ||
    (path.startsWith("/api/v1/label/") && path.endsWith("/values"));
}

type ErrorType = "bad_data" | "execution" | "timeout" | "canceled" | "internal" | "unavailable";

/** An API error with Prometheus's errorType. */
export class ApiError extends Error {
  constructor(readonly errorType: ErrorType, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

const STATUS: Record<ErrorType, number> = {
  bad_data: 400,
  execution: 422,
  timeout: 503,
  canceled: 503,
  internal: 500,
  unavailable: 503,
};

/** Builds the handler for the PromQL API paths. */
export function promqlHandler(o: PromqlApiOptions): (req: Request) => Promise<Response> {
  const slots = new Semaphore(o.maxConcurrency);
  const now = o.now ?? Date.now;
  return async (req) => {
    try {
      if (req.method !== "GET" && req.method !== "POST") {
        return json(405, {
          status: "error",
          errorType: "bad_data",
          error: `method ${req.method} not allowed`,
        });
      }
      const url = new URL(req.url);
      const params = await requestParams(req, url, o.maxRequestBytes);
      const path = url.pathname;
      let data: unknown;
      if (path === "/api/v1/query" || path === "/api/v1/query_range") {
        data = await query(o, slots, params, path === "/api/v1/query_range", now);
      } else if (path === "/api/v1/series") {
        const sets = matchSets(params, true);
        data = (await o.store.series(sets, timeRange(params), limit(params))).map(sortedLabels);
      } else if (path === "/api/v1/labels") {
        data = await o.store.labelNames(matchSets(params, false), timeRange(params), limit(params));
      } else if (path.startsWith("/api/v1/label/")) {
        const name = decodeURIComponent(path.slice("/api/v1/label/".length, -"/values".length));
        if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) {
          throw new ApiError("bad_data", `invalid label name: ${JSON.stringify(name)}`);
        }
        data = await o.store.labelValues(
          name,
          matchSets(params, false),
          timeRange(params),
          limit(params),
        );
      } else if (path === "/api/v1/metadata") {
        data = o.store.metadata
          ? await o.store.metadata(params.get("metric") ?? "", limit(params))
          : {};
      } else if (path === "/api/v1/query_exemplars") {
        data = await queryExemplars(o, params);
      } else {
        data = {
          version: "2.42.0",
          revision: COMMIT,
          branch: `promscale-${VERSION}`,
          buildUser: "promscale",
          buildDate: "",
          goVersion: `deno ${Deno.version.deno}`,
        };
      }
      if (data instanceof RawJson) {
        return rawJson(`{"status":"success","data":${data.text}}`);
      }
      return json(200, { status: "success", data });
    } catch (err) {
      return errorResponse(err);
    }
  };
}

async function query(
  o: PromqlApiOptions,
  slots: Semaphore,
  params: URLSearchParams,
  isRange: boolean,
  now: () => number,
): Promise<unknown> {
  const text = params.get("query") ?? "";
  let startMs: number;
  let endMs: number;
  let stepMs = 0;
  if (isRange) {
    startMs = parseTimeParam(params, "start", null);
    endMs = parseTimeParam(params, "end", null);
    if (endMs < startMs) {
      throw new ApiError("bad_data", "end timestamp must not be before start time");
    }
    stepMs = parseDurationParam(params, "step", null);
    if (stepMs <= 0) {
      throw new ApiError(
        "bad_data",
        "zero or negative query resolution step widths are not accepted. Try a positive integer",
      );
    }
    if ((endMs - startMs) / stepMs > o.maxPointsPerTs) {
      throw new ApiError(
        "bad_data",
        `exceeded maximum resolution of ${
          o.maxPointsPerTs.toLocaleString("en-US")
        } points per timeseries. Try decreasing the query resolution (?step=XX)`,
      );
    }
  } else {
    startMs = endMs = parseTimeParam(params, "time", now());
  }
  let timeoutMs = o.queryTimeoutMs;
  if (params.get("timeout")) {
    timeoutMs = Math.min(timeoutMs, parseDurationParam(params, "timeout", null));
  }
  const expr = parseOrBadData(text);
  if (isRange) {
    const t = typeOf(expr);
    if (t !== "scalar" && t !== "vector") {
      throw new ApiError(
        "bad_data",
        `invalid parameter "query": invalid expression type "${
          t === "matrix" ? "range vector" : t
        }" for range query, must be Scalar or instant Vector`,
      );
    }
  }
  const deadline = performance.now() + timeoutMs;
  await slots.acquire(deadline);
  try {
    const q: QueryTimes = {
      startMs,
      endMs,
      stepMs,
      lookbackMs: o.lookbackDeltaMs,
      subqueryStepMs: o.subqueryStepMs,
    };
    const data = await fetchData(o, expr, q, deadline);
    const ev = new Evaluator(data, q, { deadline, maxSamples: o.maxSamples });
    if (isRange) {
      const series = await ev.range(expr);
      return matrixJson(series);
    }
    return formatInstant(ev.instant(expr), startMs);
  } finally {
    slots.release();
  }
}

async function fetchData(
  o: PromqlApiOptions,
  expr: Expr,
  q: QueryTimes,
  deadline: number,
): Promise<Map<never, SeriesData[]>> {
  const ranges = [...selectorRanges(expr, q)];
  const grids = selectorGrids(expr, q);
  const fetch = o.store.select(
    ranges.map(([vs, r]) => ({
      matchers: vs.matchers,
      minMs: r.minMs,
      maxMs: r.maxMs,
      ...(grids.has(vs) ? { grid: grids.get(vs) } : {}),
    })),
    o.maxSamples,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new EvalError("query timed out in query execution", "timeout")),
      Math.max(0, deadline - performance.now()),
    );
  });
  try {
    const lists = await Promise.race([fetch, timeout]);
    return new Map(ranges.map(([vs], i) => [vs as never, lists[i]]));
  } finally {
    clearTimeout(timer);
    fetch.catch(() => {});
  }
}

/** `/api/v1/query_exemplars`: Prometheus's request and response shapes. */
async function queryExemplars(o: PromqlApiOptions, params: URLSearchParams): Promise<unknown> {
  if (!params.get("query")) throw new ApiError("bad_data", "query parameter is required");
  const { minMs, maxMs } = timeRange(params);
  const startMs = minMs ?? Number.NEGATIVE_INFINITY;
  const endMs = maxMs ?? Number.POSITIVE_INFINITY;
  if (endMs < startMs) {
    throw new ApiError("bad_data", "end timestamp must not be before start time");
  }
  const expr = parseOrBadData(params.get("query")!);
  // Every vector selector of the expression (offsets and @ do not apply:
  // Prometheus selects exemplars by the matchers and start..end alone).
  const q: QueryTimes = { startMs: 0, endMs: 0, stepMs: 0, lookbackMs: 0, subqueryStepMs: 1 };
  const sets = [...selectorRanges(expr, q).keys()].map((vs) => vs.matchers);
  if (!sets.length || !o.store.exemplars) return [];
  const series = await o.store.exemplars(sets, startMs, endMs);
  return series.map((s) => ({
    seriesLabels: sortedLabels(s.seriesLabels),
    exemplars: s.exemplars.map((e) => ({
      labels: sortedLabels(e.labels),
      value: formatValue(e.value),
      timestamp: e.timestampMs / 1000,
    })),
  }));
}

function parseOrBadData(text: string): Expr {
  try {
    return parseExpr(text);
  } catch (err) {
    if (err instanceof ParseError) throw new ApiError("bad_data", err.message);
    throw err;
  }
}

function formatInstant(v: Value, t: number): unknown {
  const ts = t / 1000;
  switch (v.type) {
    case "scalar":
      return { resultType: "scalar", result: [ts, formatValue(v.v)] };
    case "string":
      return { resultType: "string", result: [ts, v.s] };
    case "vector":
      return {
        resultType: "vector",
        result: v.samples.map((s) =>
          s.h
            ? {
              metric: sortedLabels(s.labels),
              histogram: [ts, JSON.parse(histogramJson(s.h, formatValue))],
            }
            : { metric: sortedLabels(s.labels), value: [ts, formatValue(s.v)] }
        ),
      };
    case "matrix":
      return matrixJson(v.series);
  }
}

/** JSON text made by hand, for results too large to build as objects first. */
class RawJson {
  constructor(readonly text: string) {}
}

/**
 * A matrix result as JSON text, written directly: a range query returns up
 * to millions of points, and building [t, "v"] arrays for JSON.stringify
 * would cost more than evaluating them.
 */
function matrixJson(series: Series[]): RawJson {
  const parts: string[] = ['{"resultType":"matrix","result":['];
  // `[<time>,` per step: series share the steps, so each is printed once.
  const prefixes = new Map<number, string>();
  const prefix = (t: number) => {
    let p = prefixes.get(t);
    if (p === undefined) prefixes.set(t, p = `[${t / 1000},`);
    return p;
  };
  for (let i = 0; i < series.length; i++) {
    const s = series[i];
    if (i > 0) parts.push(",");
    parts.push(`{"metric":${JSON.stringify(sortedLabels(s.labels))}`);
    // Floats as "values", histograms as "histograms", each only when present.
    const hs = s.hs;
    const points: string[] = [];
    for (let j = 0; j < s.ts.length; j++) {
      if (!hs?.[j]) points.push(prefix(s.ts[j]) + '"' + formatValue(s.vs[j]) + '"]');
    }
    if (points.length > 0) parts.push(`,"values":[`, points.join(","), "]");
    if (hs) {
      points.length = 0;
      for (let j = 0; j < s.ts.length; j++) {
        const h = hs[j];
        if (h) points.push(prefix(s.ts[j]) + histogramJson(h, formatValue) + "]");
      }
      if (points.length > 0) parts.push(`,"histograms":[`, points.join(","), "]");
    }
    parts.push("}");
  }
  parts.push("]}");
  return new RawJson(parts.join(""));
}

function sortedLabels(l: Labels): Labels {
  const out: Labels = {};
  for (const k of Object.keys(l).sort()) out[k] = l[k];
  return out;
}

/** Query-string parameters, and for POST the form body's too. */
async function requestParams(
  req: Request,
  url: URL,
  maxBytes: number,
): Promise<URLSearchParams> {
  const params = new URLSearchParams(url.search);
  if (req.method === "POST") {
    const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (type === "application/x-www-form-urlencoded") {
      const declared = Number(req.headers.get("content-length") ?? "0");
      if (declared > maxBytes) {
        throw new HttpError(413, `Request body of ${declared} bytes exceeds limit ${maxBytes}`);
      }
      const body = await req.text();
      if (body.length > maxBytes) {
        throw new HttpError(413, `Request body exceeds limit ${maxBytes}`);
      }
      for (const [k, v] of new URLSearchParams(body)) params.append(k, v);
    }
  }
  return params;
}

function matchSets(params: URLSearchParams, required: boolean): LabelMatcher[][] {
  const raw = params.getAll("match[]");
  if (required && raw.length === 0) throw new ApiError("bad_data", "no match[] parameter provided");
  return raw.map((m) => {
    try {
      return parseSelector(m);
    } catch (err) {
      if (err instanceof ParseError) throw new ApiError("bad_data", err.message);
      throw err;
    }
  });
}

function timeRange(params: URLSearchParams): OptionalRange {
  return {
    minMs: params.get("start") ? parseTimeParam(params, "start", null) : null,
    maxMs: params.get("end") ? parseTimeParam(params, "end", null) : null,
  };
}

function limit(params: URLSearchParams): number {
  const s = params.get("limit");
  if (!s) return 0;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) {
    throw new ApiError(
      "bad_data",
      `invalid parameter "limit": cannot parse ${JSON.stringify(s)} to a valid limit`,
    );
  }
  return n;
}

/** A time parameter: Unix seconds (with decimals) or RFC 3339; ms. */
function parseTimeParam(params: URLSearchParams, name: string, def: number | null): number {
  const s = params.get(name);
  if (s === null || s === "") {
    if (def !== null) return def;
    throw new ApiError(
      "bad_data",
      `invalid parameter "${name}": cannot parse "" to a valid timestamp`,
    );
  }
  const t = parseTime(s);
  if (t === null) {
    throw new ApiError(
      "bad_data",
      `invalid parameter "${name}": cannot parse ${JSON.stringify(s)} to a valid timestamp`,
    );
  }
  return t;
}

/** Unix seconds or RFC 3339 → ms (rounded to the millisecond, as Prometheus). */
export function parseTime(s: string): number | null {
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) {
    const v = Number(s);
    const secs = Math.trunc(v);
    return secs * 1000 + Math.round((v - secs) * 1000);
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(s)) {
    const t = Date.parse(s);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

function parseDurationParam(params: URLSearchParams, name: string, def: number | null): number {
  const s = params.get(name) ?? "";
  if (s === "" && def !== null) return def;
  let ms: number | null = null;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) {
    const v = Number(s) * 1000;
    if (Number.isFinite(v)) ms = Math.round(v);
  } else {
    ms = parseDuration(s);
  }
  if (ms === null) {
    throw new ApiError(
      "bad_data",
      `invalid parameter "${name}": cannot parse ${JSON.stringify(s)} to a valid duration`,
    );
  }
  return ms;
}

function rawJson(text: string): Response {
  return new Response(text, { status: 200, headers: { "content-type": "application/json" } });
}

function json(status: number, body: unknown): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (status === 503) headers["retry-after"] = "1";
  return new Response(JSON.stringify(body), { status, headers });
}

function errorResponse(err: unknown): Response {
  let errorType: ErrorType;
  let message: string;
  let status: number;
  if (err instanceof ApiError) {
    errorType = err.errorType;
    message = err.message;
    status = STATUS[errorType];
  } else if (err instanceof EvalError) {
    errorType = err.errorType;
    message = err.message;
    status = STATUS[errorType];
  } else if (err instanceof HttpError) {
    status = err.status;
    errorType = status === 503 ? "unavailable" : status >= 500 ? "internal" : "bad_data";
    message = err.message;
  } else {
    status = 500;
    errorType = "internal";
    message = err instanceof Error ? err.message : String(err);
  }
  return json(status, { status: "error", errorType, error: message });
}

/** At most `n` holders; waiters give up at their deadline (a timeout, as in Prometheus). */
class Semaphore {
  #active = 0;
  #waiting: (() => void)[] = [];
  constructor(readonly n: number) {}

  acquire(deadline: number): Promise<void> {
    if (this.#active < this.n) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(grant);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(new EvalError("query timed out in query queue", "timeout"));
      }, Math.max(0, deadline - performance.now()));
      this.#waiting.push(grant);
    });
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }
}
