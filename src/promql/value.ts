/**
 * PromQL values in memory (samples, series, label sets) and the label-set
 * helpers shared by the evaluator and the API.
 *
 * @module
 */

import type { FloatHistogram } from "./histogram.ts";

/** A label set, `__name__` included; keys in any order (see {@linkcode labelsKey}). */
export type Labels = Record<string, string>;

/** One stored series as fetched for a query: times (ms) ascending. */
export interface SeriesData {
  labels: Labels;
  ts: Float64Array;
  vs: Float64Array;
  /** 1 where the sample is a staleness marker (its NaN payload is lost in a JS number). */
  stale: Uint8Array;
  /**
   * Native histogram samples, index for index with `ts` (absent: none);
   * where one is set, `vs` holds 0, the value 2.42's float functions read.
   */
  hs?: (FloatHistogram | undefined)[];
  /** Times and values without the staleness markers (what range windows see); made on first use. */
  rangeTs?: Float64Array;
  rangeVs?: Float64Array;
  rangeHs?: (FloatHistogram | undefined)[];
  /** Where the last range window began and ended (search hints). */
  hintFrom?: number;
  hintTo?: number;
}

/** Times or values of a series: a plain array, or a view of the fetched data. */
export type Floats = number[] | Float64Array;

/** One element of an instant vector. */
export interface Sample {
  labels: Labels;
  v: number;
  /** A native histogram sample (then `v` is 0, or what a float operation left in it). */
  h?: FloatHistogram;
  /** The stored sample's time, for `timestamp()` on a selector; else the evaluation time. */
  t?: number;
}

/** One series of a range vector. */
export interface Series {
  labels: Labels;
  ts: Floats;
  vs: Floats;
  /** Histogram samples index for index (absent: floats only). */
  hs?: (FloatHistogram | undefined)[];
}

export type Value =
  | { type: "scalar"; v: number }
  | { type: "string"; s: string }
  | { type: "vector"; samples: Sample[] }
  | { type: "matrix"; series: Series[] };

const keys = new WeakMap<Labels, string>();

/**
 * A string that identifies a label set (names sorted). Cached per label-set
 * object: label sets are never changed once made (derived ones are new
 * objects), and evaluation asks for the same ones at every step.
 */
export function labelsKey(l: Labels): string {
  let k = keys.get(l);
  if (k !== undefined) return k;
  k = "";
  for (const n of Object.keys(l).sort()) k += n + "\xff" + l[n] + "\xfe";
  keys.set(l, k);
  return k;
}

const signatures = new WeakMap<readonly string[], WeakMap<Labels, string>>();

/**
 * The key of the labels `names` only (`on`), or of all but `names` and
 * `__name__` (`ignoring`); cached per label set and `names` array (one per
 * operator in the syntax tree, so `on` is fixed with it).
 */
export function signature(l: Labels, on: boolean, names: readonly string[]): string {
  let byLabels = signatures.get(names);
  if (!byLabels) signatures.set(names, byLabels = new WeakMap());
  let sig = byLabels.get(l);
  if (sig === undefined) byLabels.set(l, sig = makeSignature(l, on, names));
  return sig;
}

function makeSignature(l: Labels, on: boolean, names: readonly string[]): string {
  let k = "";
  if (on) {
    for (const n of [...names].sort()) {
      const v = l[n];
      if (v !== undefined && v !== "") k += n + "\xff" + v + "\xfe";
    }
    return k;
  }
  for (const n of Object.keys(l).sort()) {
    if (n === "__name__" || names.includes(n)) continue;
    k += n + "\xff" + l[n] + "\xfe";
  }
  return k;
}

/** Prometheus's label-set order (labels.Compare): pairwise by name then value, shorter first. */
export function compareLabels(a: Labels, b: Labels): number {
  const an = Object.keys(a).sort();
  const bn = Object.keys(b).sort();
  const n = Math.min(an.length, bn.length);
  for (let i = 0; i < n; i++) {
    if (an[i] !== bn[i]) return an[i] < bn[i] ? -1 : 1;
    const av = a[an[i]];
    const bv = b[bn[i]];
    if (av !== bv) return av < bv ? -1 : 1;
  }
  return an.length - bn.length;
}

const nameless = new WeakMap<Labels, Labels>();

/** The labels without `__name__` (the same object for the same input, so keys stay cached). */
export function dropName(l: Labels): Labels {
  if (!("__name__" in l)) return l;
  let out = nameless.get(l);
  if (out) return out;
  out = {};
  for (const k in l) if (k !== "__name__") out[k] = l[k];
  nameless.set(l, out);
  return out;
}

/** A float as Prometheus prints it in JSON (Go's strconv 'f' -1: shortest, no exponent). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (Object.is(v, -0)) return "-0";
  const s = String(v);
  if (!s.includes("e")) return s;
  // Expand the exponent: String() is already the shortest round-tripping digits.
  const [mant, expText] = s.split("e");
  const exp = Number(expText);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  const pointAt =
    (mant.replace("-", "").indexOf(".") === -1
      ? mant.replace("-", "").length
      : mant.replace("-", "").indexOf(".")) + exp;
  let out: string;
  if (pointAt <= 0) out = "0." + "0".repeat(-pointAt) + digits;
  else if (pointAt >= digits.length) out = digits + "0".repeat(pointAt - digits.length);
  else out = digits.slice(0, pointAt) + "." + digits.slice(pointAt);
  return (neg ? "-" : "") + out;
}
