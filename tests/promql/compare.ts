/**
 * Compares two answers of Prometheus's query API (ours and Prometheus's):
 * same status and errorType, same result type, same series (in order when
 * asked), same timestamps, and values printed the same: Prometheus prints
 * the shortest text that gives the double back, as we do, so equal text is
 * equal bits. Only where the two programs compute a value with different
 * implementations (Go's math library against JavaScript's for logarithms,
 * trigonometry, powers: see `inexactQuery`) values may differ by the
 * tolerance given (`RELATIVE_TOLERANCE`; "NaN", "+Inf" always exactly).
 * Native histogram points (`histogram`, `histograms`) must have the same
 * count, sum and buckets (boundary kinds, bounds and counts compared as
 * values).
 */
/** A response of the query API: its status and JSON body. */
export interface Answer {
  status: number;
  body: {
    status: string;
    errorType?: string;
    error?: string;
    data?: { resultType: string; result: unknown };
  };
}

/** Relative tolerance where the values come from different math libraries. */
export const RELATIVE_TOLERANCE = 1e-12;

/**
 * Functions and operators whose results Go's math library and JavaScript's
 * may round differently (by an ulp or so): the queries using them are
 * compared to `RELATIVE_TOLERANCE`, all others bit for bit.
 */
const INEXACT = /\b(exp|ln|log2|log10|a?(sin|cos|tan)h?|atan2)\b|\^/;

/** Whether `query` may legitimately differ from Prometheus in the last bits. */
export function inexactQuery(query: string): boolean {
  return INEXACT.test(query);
}

/** Values compared so far that were equal within the tolerance but not exactly. */
export const inexact = { count: 0, examples: [] as string[] };

/** The relative tolerance of the comparison under way (compareAnswers sets it). */
let tolerance = 0;

function sameValue(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  const close = Math.abs(x - y) <= tolerance * Math.max(Math.abs(x), Math.abs(y));
  if (close) {
    inexact.count++;
    if (inexact.examples.length < 5) inexact.examples.push(`${a} vs ${b}`);
  }
  return close;
}

type Point = [number, string];
/** A histogram in the API's JSON. */
interface Hist {
  count: string;
  sum: string;
  buckets?: [number, string, string, string][];
}
type HPoint = [number, Hist];
interface Item {
  metric: Record<string, string>;
  value?: Point;
  values?: Point[];
  histogram?: HPoint;
  histograms?: HPoint[];
}

function sameHist(a: Hist, b: Hist): boolean {
  if (!sameValue(a.count, b.count) || !sameValue(a.sum, b.sum)) return false;
  const x = a.buckets ?? [];
  const y = b.buckets ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    if (x[i][0] !== y[i][0]) return false;
    for (let j = 1; j < 4; j++) if (!sameValue(x[i][j] as string, y[i][j] as string)) return false;
  }
  return true;
}

function key(m: Record<string, string>): string {
  return JSON.stringify(Object.entries(m).sort());
}

/**
 * Differences between two answers, as lines; empty when they agree. Values
 * must be equal bit for bit unless a relative tolerance is given.
 */
export function compareAnswers(
  ours: Answer,
  theirs: Answer,
  ordered: boolean,
  relTolerance = 0,
): string[] {
  tolerance = relTolerance;
  const diffs: string[] = [];
  if (theirs.body.status !== "success" || ours.body.status !== "success") {
    if (ours.body.status !== theirs.body.status || ours.body.errorType !== theirs.body.errorType) {
      diffs.push(
        `status: ours ${ours.status} ${ours.body.errorType ?? "ok"} (${ours.body.error ?? ""}), ` +
          `Prometheus ${theirs.status} ${theirs.body.errorType ?? "ok"} (${
            theirs.body.error ?? ""
          })`,
      );
    } else if (ours.status !== theirs.status) {
      diffs.push(`HTTP status: ours ${ours.status}, Prometheus ${theirs.status}`);
    }
    return diffs;
  }
  const a = ours.body.data!;
  const b = theirs.body.data!;
  if (a.resultType !== b.resultType) {
    return [`resultType: ours ${a.resultType}, Prometheus ${b.resultType}`];
  }
  if (a.resultType === "scalar" || a.resultType === "string") {
    const [ta, va] = a.result as Point;
    const [tb, vb] = b.result as Point;
    if (ta !== tb || !sameValue(va, vb)) diffs.push(`ours ${ta} ${va}, Prometheus ${tb} ${vb}`);
    return diffs;
  }
  const ia = a.result as Item[];
  const ib = b.result as Item[];
  if (!ordered) {
    ia.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
    ib.sort((x, y) => key(x.metric) < key(y.metric) ? -1 : 1);
  }
  const ka = ia.map((x) => key(x.metric));
  const kb = ib.map((x) => key(x.metric));
  if (ka.join("|") !== kb.join("|")) {
    return [`series: ours ${ka.join(" ")}\n   Prometheus ${kb.join(" ")}`];
  }
  for (let i = 0; i < ia.length; i++) {
    const ha = ia[i].histograms ?? (ia[i].histogram ? [ia[i].histogram!] : []);
    const hb = ib[i].histograms ?? (ib[i].histogram ? [ib[i].histogram!] : []);
    if (ha.length !== hb.length) {
      diffs.push(`${ka[i]}: ours ${ha.length} histograms, Prometheus ${hb.length}`);
      continue;
    }
    for (let j = 0; j < ha.length; j++) {
      if (ha[j][0] !== hb[j][0] || !sameHist(ha[j][1], hb[j][1])) {
        diffs.push(
          `${ka[i]} histogram ${j}: ours ${JSON.stringify(ha[j])}, Prometheus ${
            JSON.stringify(hb[j])
          }`,
        );
        break;
      }
    }
    const pa = ia[i].values ?? (ia[i].value ? [ia[i].value!] : []);
    const pb = ib[i].values ?? (ib[i].value ? [ib[i].value!] : []);
    if (pa.length !== pb.length) {
      diffs.push(`${ka[i]}: ours ${pa.length} points, Prometheus ${pb.length}`);
      continue;
    }
    for (let j = 0; j < pa.length; j++) {
      if (pa[j][0] !== pb[j][0] || !sameValue(pa[j][1], pb[j][1])) {
        diffs.push(`${ka[i]} point ${j}: ours ${pa[j]}, Prometheus ${pb[j]}`);
        break;
      }
    }
  }
  return diffs;
}

/** Asks `base`'s query API `path` (query, query_range, …) with a form POST. */
export async function askApi(
  base: string,
  path: string,
  params: Record<string, string>,
): Promise<Answer> {
  const res = await fetch(`${base}/api/v1/${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: await res.json() };
}

/** A corpus and where to ask it: each query at every instant, and over every range. */
export interface CorpusPlan {
  ours: string;
  prometheus: string;
  queries: string[];
  /** Of `queries`, those asked as instant queries only. */
  instantOnly: string[];
  times: number[];
  ranges: { start: number; end: number; step: string }[];
  /** Ask one side after the other and add up each side's time (else both at once). */
  timed?: boolean;
}

/** What comparing a corpus found. */
export interface CorpusResult {
  compared: number;
  /** One entry per differing answer: the request and its first differences. */
  failures: string[];
  /** Prometheus's answers that held data (a non-empty result, or a scalar). */
  nonEmpty: number;
  /** Prometheus's answers that held a native histogram. */
  withHistograms: number;
  /** Prometheus's answers that were errors. */
  errors: number;
  /** Queries whose values matched only to the tolerance (see `inexactQuery`). */
  inexactQueries: Set<string>;
  /** With `timed`: the time of all our answers, and of all Prometheus's (ms). */
  oursMs: number;
  prometheusMs: number;
}

/**
 * Asks both APIs every query of the plan, one request pair at a time, and
 * compares the answers (bit for bit, but for `inexactQuery`s; in order
 * for `sort…` queries).
 */
export async function runCorpus(p: CorpusPlan): Promise<CorpusResult> {
  const r: CorpusResult = {
    compared: 0,
    failures: [],
    nonEmpty: 0,
    withHistograms: 0,
    errors: 0,
    inexactQueries: new Set(),
    oursMs: 0,
    prometheusMs: 0,
  };
  const ask = async (side: "ours" | "prometheus", path: string, params: Record<string, string>) => {
    const started = performance.now();
    const answer = await askApi(p[side], path, params);
    r[side === "ours" ? "oursMs" : "prometheusMs"] += performance.now() - started;
    return answer;
  };
  const check = async (query: string, path: string, params: Record<string, string>) => {
    const asked = { query, ...params };
    const [ours, theirs] = p.timed
      ? [await ask("ours", path, asked), await ask("prometheus", path, asked)]
      : await Promise.all([ask("ours", path, asked), ask("prometheus", path, asked)]);
    r.compared++;
    const result = theirs.body.data?.result;
    if (theirs.body.status !== "success") r.errors++;
    else if (!Array.isArray(result) || result.length > 0) r.nonEmpty++;
    if (JSON.stringify(theirs.body).includes('"histogram')) r.withHistograms++;
    const before = inexact.count;
    const tolerance = inexactQuery(query) ? RELATIVE_TOLERANCE : 0;
    const diffs = compareAnswers(ours, theirs, query.startsWith("sort"), tolerance);
    if (inexact.count > before) r.inexactQueries.add(query);
    if (diffs.length) {
      r.failures.push(
        `${path} ${query} ${JSON.stringify(params)}\n  ${diffs.slice(0, 3).join("\n  ")}`,
      );
    }
  };
  for (const query of p.queries) {
    for (const t of p.times) await check(query, "query", { time: String(t) });
    if (p.instantOnly.includes(query)) continue;
    for (const range of p.ranges) {
      await check(query, "query_range", {
        start: String(range.start),
        end: String(range.end),
        step: range.step,
      });
    }
  }
  return r;
}
