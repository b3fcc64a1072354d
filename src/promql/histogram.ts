/**
 * Native histograms in PromQL, with the semantics of Prometheus 2.42's
 * float histograms (model/histogram): every count a float, buckets
 * absolute. A histogram here keeps its bucket layout as index lists (one
 * per sign, ascending) instead of spans: what PromQL's results depend on is
 * which buckets exist (empty ones included: `histogram_quantile` walks
 * them) and their counts, and both are kept as Prometheus keeps them
 * through adding, subtracting, schema reduction, zero-bucket widening and
 * compaction.
 *
 * Bucket boundaries: bucket `i` of schema `s` is (2^((i-1)/2^s), 2^(i/2^s)]
 * for positive values (mirrored for negative ones). The fractions
 * 2^(k/2^s) / 2 come from the same numbers Prometheus uses
 * (histogram_bounds.ts), so boundaries are bit for bit Prometheus's.
 *
 * @module
 */
import type { DecodedHistogram } from "../ingest.ts";
import type { StoredHistogram } from "../remote_read/querier.ts";
import type { SeriesData } from "./value.ts";
import { SCHEMA_8_FRACTIONS } from "./histogram_bounds.ts";

/** One side's buckets: indexes ascending, counts index for index. */
export interface Buckets {
  idx: number[];
  counts: number[];
}

/** A float histogram as PromQL computes with it. */
export interface FloatHistogram {
  schema: number;
  zeroThreshold: number;
  zeroCount: number;
  count: number;
  sum: number;
  pos: Buckets;
  neg: Buckets;
  /**
   * Schema -53 (custom buckets, which 2.42 does not know): the upper
   * bounds; bucket i spans (bounds[i-1], bounds[i]], the first from -Inf,
   * the last to +Inf.
   */
  customValues?: number[];
}

/** One bucket of {@linkcode allBuckets}. */
export interface Bucket {
  lower: number;
  upper: number;
  lowerInclusive: boolean;
  upperInclusive: boolean;
  count: number;
}

const MAX_FLOAT = Number.MAX_VALUE;
const fracTables = new Map<number, Float64Array>();

function fracs(schema: number): Float64Array {
  let t = fracTables.get(schema);
  if (!t) {
    const n = 2 ** schema;
    t = new Float64Array(n);
    // Schemas 0..8 (decoding refuses higher ones).
    for (let k = 0; k < n; k++) t[k] = SCHEMA_8_FRACTIONS[k * 2 ** (8 - schema)];
    fracTables.set(schema, t);
  }
  return t;
}

/** frac * 2^exp with one rounding (Go's math.Ldexp). */
function ldexp(frac: number, exp: number): number {
  if (exp > 1023) return frac * 2 * 2 ** (exp - 1);
  if (exp >= -1022) return frac * 2 ** exp;
  if (exp < -1100) return 0;
  return (frac * 2 ** (exp + 64)) * 2 ** -64;
}

/** The upper bound of positive bucket `idx` in `schema` (its lower one: `idx - 1`). */
export function bucketBound(idx: number, schema: number): number {
  if (schema < 0) {
    const exp = idx * 2 ** -schema;
    if (exp === 1024) return MAX_FLOAT;
    return ldexp(1, exp);
  }
  const n = 2 ** schema;
  const k = ((idx % n) + n) % n;
  const frac = fracs(schema)[k];
  const exp = Math.floor(idx / n) + 1;
  if (frac === 0.5 && exp === 1025) return MAX_FLOAT;
  return ldexp(frac, exp);
}

/** A histogram's index in a lower-resolution schema. */
function targetIdx(idx: number, from: number, to: number): number {
  if (from === to) return idx;
  return Math.floor((idx - 1) / 2 ** (from - to)) + 1;
}

/**
 * The buckets of one side merged into schema `to` (≤ the histogram's), those
 * whose upper bound (absolute) is ≤ `absStart` left out.
 */
function merged(b: Buckets, from: number, to: number, absStart: number): Buckets {
  const idx: number[] = [];
  const counts: number[] = [];
  let i = 0;
  while (i < b.idx.length) {
    const t = targetIdx(b.idx[i], from, to);
    let c = b.counts[i++];
    if (from !== to) {
      while (i < b.idx.length && targetIdx(b.idx[i], from, to) === t) c += b.counts[i++];
    }
    if (bucketBound(t, to) <= absStart) continue;
    idx.push(t);
    counts.push(c);
  }
  return { idx, counts };
}

function copyBuckets(b: Buckets): Buckets {
  return { idx: b.idx.slice(), counts: b.counts.slice() };
}

export function copyHistogram(h: FloatHistogram): FloatHistogram {
  return { ...h, pos: copyBuckets(h.pos), neg: copyBuckets(h.neg) };
}

/** A deep copy in a schema ≤ the histogram's. */
export function copyToSchema(h: FloatHistogram, schema: number): FloatHistogram {
  if (schema === h.schema) return copyHistogram(h);
  return {
    ...h,
    schema,
    pos: merged(h.pos, h.schema, schema, 0),
    neg: merged(h.neg, h.schema, schema, 0),
  };
}

/** Adds `sign` × each of `add`'s buckets into `into` (inserting missing ones). */
function addInto(into: Buckets, add: Buckets, sign: number): void {
  if (add.idx.length === 0) return;
  const idx: number[] = [];
  const counts: number[] = [];
  let i = 0;
  let j = 0;
  while (i < into.idx.length || j < add.idx.length) {
    if (j >= add.idx.length || (i < into.idx.length && into.idx[i] < add.idx[j])) {
      idx.push(into.idx[i]);
      counts.push(into.counts[i++]);
    } else if (i >= into.idx.length || add.idx[j] < into.idx[i]) {
      idx.push(add.idx[j]);
      counts.push(sign * add.counts[j++]);
    } else {
      idx.push(into.idx[i]);
      counts.push(into.counts[i++] + sign * add.counts[j++]);
    }
  }
  into.idx = idx;
  into.counts = counts;
}

/**
 * What `h`'s zero count would be with the (larger or equal) threshold, and
 * the threshold itself, moved up to a populated bucket's bound when it
 * falls inside one.
 */
function zeroCountForLargerThreshold(h: FloatHistogram, larger: number): [number, number] {
  if (larger === h.zeroThreshold) return [h.zeroCount, larger];
  outer: for (;;) {
    let count = h.zeroCount;
    for (let i = 0; i < h.pos.idx.length; i++) {
      const lower = bucketBound(h.pos.idx[i] - 1, h.schema);
      const upper = bucketBound(h.pos.idx[i], h.schema);
      if (lower >= larger) break;
      count += h.pos.counts[i];
      if (upper > larger) {
        if (h.pos.counts[i] !== 0) larger = upper;
        break;
      }
    }
    for (let i = 0; i < h.neg.idx.length; i++) {
      const lower = -bucketBound(h.neg.idx[i], h.schema);
      const upper = -bucketBound(h.neg.idx[i] - 1, h.schema);
      if (upper <= -larger) break;
      count += h.neg.counts[i];
      if (lower < -larger) {
        if (h.neg.counts[i] !== 0) {
          larger = -lower;
          continue outer;
        }
        break;
      }
    }
    return [count, larger];
  }
}

/** Removes empty buckets (Compact(0)). */
export function compact(h: FloatHistogram): FloatHistogram {
  for (const b of [h.pos, h.neg]) {
    if (!b.counts.includes(0)) continue;
    const idx: number[] = [];
    const counts: number[] = [];
    for (let i = 0; i < b.idx.length; i++) {
      if (b.counts[i] !== 0) {
        idx.push(b.idx[i]);
        counts.push(b.counts[i]);
      }
    }
    b.idx = idx;
    b.counts = counts;
  }
  return h;
}

/** Empties the buckets within the zero bucket, then compacts. */
function trimBucketsInZeroBucket(h: FloatHistogram): void {
  for (let i = 0; i < h.pos.idx.length; i++) {
    if (bucketBound(h.pos.idx[i] - 1, h.schema) >= h.zeroThreshold) break;
    h.pos.counts[i] = 0;
  }
  for (let i = 0; i < h.neg.idx.length; i++) {
    if (-bucketBound(h.neg.idx[i] - 1, h.schema) <= -h.zeroThreshold) break;
    h.neg.counts[i] = 0;
  }
  compact(h);
}

/** Widens the zero bucket of `h` to cover `other`'s; returns `other`'s zero count for it. */
function reconcileZeroBuckets(h: FloatHistogram, other: FloatHistogram): number {
  let otherCount = other.zeroCount;
  let otherThreshold = other.zeroThreshold;
  while (otherThreshold !== h.zeroThreshold) {
    if (h.zeroThreshold > otherThreshold) {
      [otherCount, otherThreshold] = zeroCountForLargerThreshold(other, h.zeroThreshold);
    }
    if (otherThreshold > h.zeroThreshold) {
      [h.zeroCount, h.zeroThreshold] = zeroCountForLargerThreshold(h, otherThreshold);
      trimBucketsInZeroBucket(h);
    }
  }
  return otherCount;
}

/**
 * Adds (sign 1) or subtracts (-1) `other` into `h`, whose schema must be ≤
 * `other`'s. Changes `h`; returns it.
 */
function addSub(h: FloatHistogram, other: FloatHistogram, sign: number): FloatHistogram {
  const otherZero = reconcileZeroBuckets(h, other);
  if (sign > 0) {
    h.zeroCount += otherZero;
    h.count += other.count;
    h.sum += other.sum;
  } else {
    h.zeroCount -= otherZero;
    h.count -= other.count;
    h.sum -= other.sum;
  }
  addInto(h.pos, merged(other.pos, other.schema, h.schema, h.zeroThreshold), sign);
  addInto(h.neg, merged(other.neg, other.schema, h.schema, h.zeroThreshold), sign);
  return h;
}

export function add(h: FloatHistogram, other: FloatHistogram): FloatHistogram {
  return addSub(h, other, 1);
}

export function sub(h: FloatHistogram, other: FloatHistogram): FloatHistogram {
  return addSub(h, other, -1);
}

/** The sum of two histograms as 2.42's `+` and `sum` make it (a new histogram). */
export function addNew(a: FloatHistogram, b: FloatHistogram): FloatHistogram {
  return b.schema >= a.schema ? add(copyHistogram(a), b) : add(copyHistogram(b), a);
}

export function scale(h: FloatHistogram, factor: number): FloatHistogram {
  h.zeroCount *= factor;
  h.count *= factor;
  h.sum *= factor;
  for (let i = 0; i < h.pos.counts.length; i++) h.pos.counts[i] *= factor;
  for (let i = 0; i < h.neg.counts.length; i++) h.neg.counts[i] *= factor;
  return h;
}

function detectBucketReset(curr: Buckets, prev: Buckets): boolean {
  let c = 0;
  for (let p = 0; p < prev.idx.length; p++) {
    while (c < curr.idx.length && curr.idx[c] < prev.idx[p]) c++;
    if (c >= curr.idx.length || curr.idx[c] > prev.idx[p]) {
      // A bucket the current histogram lacks: a reset if it was populated.
      if (prev.counts[p] !== 0) return true;
    } else if (curr.counts[c] < prev.counts[p]) {
      return true;
    }
  }
  return false;
}

/** Whether `h` follows `prev` only after a counter reset (DetectReset). */
export function detectReset(h: FloatHistogram, prev: FloatHistogram): boolean {
  if (h.count < prev.count) return true;
  if (h.schema > prev.schema) return true;
  if (h.zeroThreshold < prev.zeroThreshold) return true;
  const [prevZero, threshold] = zeroCountForLargerThreshold(prev, h.zeroThreshold);
  if (threshold !== h.zeroThreshold) return true;
  if (h.zeroCount < prevZero) return true;
  const zt = h.zeroThreshold;
  if (
    detectBucketReset(
      merged(h.pos, h.schema, h.schema, zt),
      merged(prev.pos, prev.schema, h.schema, zt),
    )
  ) {
    return true;
  }
  return detectBucketReset(
    merged(h.neg, h.schema, h.schema, zt),
    merged(prev.neg, prev.schema, h.schema, zt),
  );
}

/**
 * Every bucket from the lowest to the highest (empty ones too): negative
 * buckets, the zero bucket when populated, positive buckets; the buckets
 * next to the zero bucket cut at its threshold.
 */
export function allBuckets(h: FloatHistogram): Bucket[] {
  const out: Bucket[] = [];
  for (let i = h.neg.idx.length - 1; i >= 0; i--) {
    const lower = -bucketBound(h.neg.idx[i], h.schema);
    const upper = -bucketBound(h.neg.idx[i] - 1, h.schema);
    out.push({
      lower,
      upper: upper > -h.zeroThreshold ? -h.zeroThreshold : upper,
      lowerInclusive: lower < 0,
      upperInclusive: upper > 0,
      count: h.neg.counts[i],
    });
  }
  if (h.zeroCount > 0) {
    out.push({
      lower: -h.zeroThreshold,
      upper: h.zeroThreshold,
      lowerInclusive: true,
      upperInclusive: true,
      count: h.zeroCount,
    });
  }
  const cv = h.customValues;
  for (let i = 0; i < h.pos.idx.length; i++) {
    const k = h.pos.idx[i];
    const lower = cv ? (k === 0 ? -Infinity : cv[k - 1]) : bucketBound(k - 1, h.schema);
    const upper = cv ? (k >= cv.length ? Infinity : cv[k]) : bucketBound(k, h.schema);
    out.push({
      lower: lower < h.zeroThreshold ? h.zeroThreshold : lower,
      upper,
      lowerInclusive: lower < 0,
      upperInclusive: upper > 0,
      count: h.pos.counts[i],
    });
  }
  return out;
}

/** `histogram_quantile` of a native histogram (2.42). */
export function histogramQuantile(q: number, h: FloatHistogram): number {
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  if (h.count === 0 || Number.isNaN(q)) return NaN;
  const rank0 = q * h.count;
  let count = 0;
  let b: Bucket = { lower: 0, upper: 0, lowerInclusive: false, upperInclusive: false, count: 0 };
  for (const x of allBuckets(h)) {
    b = x;
    count += x.count;
    if (count >= rank0) break;
  }
  let { lower, upper } = b;
  if (lower < 0 && upper > 0) {
    if (h.neg.idx.length === 0 && h.pos.idx.length > 0) lower = 0;
    else if (h.pos.idx.length === 0 && h.neg.idx.length > 0) upper = 0;
  }
  if (count > h.count) count = h.count;
  if (count < rank0) return upper;
  const rank = rank0 - (count - b.count);
  return lower + (upper - lower) * (rank / b.count);
}

/** `histogram_fraction` (2.42). */
export function histogramFraction(lower: number, upper: number, h: FloatHistogram): number {
  if (h.count === 0 || Number.isNaN(lower) || Number.isNaN(upper)) return NaN;
  if (lower >= upper) return 0;
  let rank = 0;
  let lowerRank = 0;
  let upperRank = 0;
  let lowerSet = false;
  let upperSet = false;
  for (const b of allBuckets(h)) {
    let bl = b.lower;
    let bu = b.upper;
    if (bl < 0 && bu > 0) {
      if (h.neg.idx.length === 0 && h.pos.idx.length > 0) bl = 0;
      else if (h.pos.idx.length === 0 && h.neg.idx.length > 0) bu = 0;
    }
    if (!lowerSet && bl >= lower) {
      lowerRank = rank;
      lowerSet = true;
    }
    if (!upperSet && bl >= upper) {
      upperRank = rank;
      upperSet = true;
    }
    if (lowerSet && upperSet) break;
    if (!lowerSet && bl < lower && bu > lower) {
      lowerRank = rank + b.count * (lower - bl) / (bu - bl);
      lowerSet = true;
    }
    if (!upperSet && bl < upper && bu > upper) {
      upperRank = rank + b.count * (upper - bl) / (bu - bl);
      upperSet = true;
    }
    if (lowerSet && upperSet) break;
    rank += b.count;
  }
  if (!lowerSet || lowerRank > h.count) lowerRank = h.count;
  if (!upperSet || upperRank > h.count) upperRank = h.count;
  return (upperRank - lowerRank) / h.count;
}

/**
 * The histogram rate/increase/delta compute over a window (2.42's
 * histogramRate): last − first, counter resets compensated for counters,
 * in the smallest schema of the window; null when a point is a float.
 */
export function histogramRate(
  hs: readonly (FloatHistogram | undefined)[],
  from: number,
  to: number,
  isCounter: boolean,
): FloatHistogram | null {
  const first = hs[from]!;
  const last = hs[to - 1];
  if (!last) return null;
  let minSchema = Math.min(first.schema, last.schema);
  for (let i = from + 1; i < to - 1; i++) {
    const h = hs[i];
    if (!h) return null;
    if (!isCounter) continue;
    if (h.schema < minSchema) minSchema = h.schema;
  }
  const h = sub(copyToSchema(last, minSchema), first);
  if (isCounter) {
    let prev = first;
    for (let i = from + 1; i < to; i++) {
      const curr = hs[i]!;
      if (detectReset(curr, prev)) add(h, prev);
      prev = curr;
    }
  }
  return compact(h);
}

/** Span pairs (offset, length) and absolute counts → one side's buckets. */
function fromSpans(spans: Int32Array, counts: Float64Array): Buckets {
  const idx: number[] = [];
  let at = 0;
  for (let s = 0; s < spans.length; s += 2) {
    at += spans[s];
    for (let j = 0; j < spans[s + 1]; j++) idx.push(at++);
  }
  return { idx, counts: Array.from(counts.subarray(0, idx.length)) };
}

/** A stored histogram as PromQL sees it (integer ones become float ones). */
export function fromDecoded(d: DecodedHistogram): FloatHistogram {
  return {
    schema: d.schema,
    zeroThreshold: d.scalars[2],
    zeroCount: d.scalars[3],
    count: d.scalars[0],
    sum: d.scalars[1],
    pos: fromSpans(d.positiveSpans, d.positiveCounts),
    neg: fromSpans(d.negativeSpans, d.negativeCounts),
    ...(d.schema === -53 ? { customValues: Array.from(d.customValues) } : {}),
  };
}

/** Whether a stored histogram is a staleness marker (its sum the stale NaN, bit for bit). */
function isStale(d: DecodedHistogram): boolean {
  const dv = new DataView(d.scalars.buffer, d.scalars.byteOffset + 8, 8);
  return dv.getUint32(4, true) === 0x7ff00000 && dv.getUint32(0, true) === 0x00000002;
}

/**
 * Merges a series' stored histograms into its fetched float samples: one
 * time line, a histogram sample's value 0 (what 2.42's functions that read
 * values see), its histogram in `hs`.
 */
export function withHistograms(s: SeriesData, stored: StoredHistogram[] | undefined): SeriesData {
  if (!stored?.length) return s;
  const n = s.ts.length + stored.length;
  const ts = new Float64Array(n);
  const vs = new Float64Array(n);
  const stale = new Uint8Array(n);
  const hs: (FloatHistogram | undefined)[] = new Array(n);
  let i = 0;
  let j = 0;
  for (let k = 0; k < n; k++) {
    if (j >= stored.length || (i < s.ts.length && s.ts[i] <= stored[j].timestamp)) {
      ts[k] = s.ts[i];
      vs[k] = s.vs[i];
      stale[k] = s.stale[i++];
    } else {
      const d = stored[j++];
      ts[k] = d.timestamp;
      stale[k] = isStale(d.histogram) ? 1 : 0;
      hs[k] = fromDecoded(d.histogram);
    }
  }
  return { labels: s.labels, ts, vs, stale, hs };
}

/** A histogram in the query API's JSON shape (`count`, `sum`, non-empty `buckets`). */
export function histogramJson(h: FloatHistogram, fmt: (v: number) => string): string {
  let out = `{"count":"${fmt(h.count)}","sum":"${fmt(h.sum)}"`;
  let first = true;
  for (const b of allBuckets(h)) {
    if (b.count === 0) continue;
    out += first ? `,"buckets":[` : ",";
    first = false;
    const kind = b.lowerInclusive ? (b.upperInclusive ? 3 : 1) : (b.upperInclusive ? 0 : 2);
    out += `[${kind},"${fmt(b.lower)}","${fmt(b.upper)}","${fmt(b.count)}"]`;
  }
  if (!first) out += "]";
  return out + "}";
}
