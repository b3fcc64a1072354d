/**
 * Builds remote write bodies with the whole data model for the tests:
 * 2.0 requests (`io.prometheus.write.v2.Request`, symbol table built here)
 * and 1.0 requests with exemplars, histograms and metadata, through
 * protobufjs and the embedded .proto texts.
 */
import { WriteRequestV2 } from "../../proto/data_model_protos.ts";
import { WriteRequest } from "../../proto/messages.ts";

/** A histogram as protobufjs takes it (field names as in the .proto). */
export type HistogramObject = Record<string, unknown>;

/** A series to encode. */
export interface ModelSeriesSpec {
  labels: Record<string, string>;
  samples?: { value: number; timestamp: number; start_timestamp?: number }[];
  histograms?: HistogramObject[];
  exemplars?: { labels: Record<string, string>; value: number; timestamp: number }[];
  /** 2.0 only: type number, help, unit. */
  metadata?: { type: number; help: string; unit: string };
  /** 2.0 only: TimeSeries.created_timestamp. */
  created?: number;
}

/** A 2.0 request (not compressed); strings go to a symbol table beginning with "". */
export function v2Request(series: ModelSeriesSpec[]): Uint8Array {
  const symbols = [""];
  const index = new Map<string, number>([["", 0]]);
  const ref = (s: string) => {
    let i = index.get(s);
    if (i === undefined) {
      i = symbols.length;
      symbols.push(s);
      index.set(s, i);
    }
    return i;
  };
  const refs = (labels: Record<string, string>) =>
    Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)).flatMap(([k, v]) => [
      ref(k),
      ref(v),
    ]);
  const timeseries = series.map((s) => ({
    labels_refs: refs(s.labels),
    samples: s.samples ?? [],
    histograms: s.histograms ?? [],
    exemplars: (s.exemplars ?? []).map((e) => ({
      labels_refs: refs(e.labels),
      value: e.value,
      timestamp: e.timestamp,
    })),
    metadata: s.metadata
      ? { type: s.metadata.type, help_ref: ref(s.metadata.help), unit_ref: ref(s.metadata.unit) }
      : undefined,
    created_timestamp: s.created ?? 0,
  }));
  return WriteRequestV2.encode(WriteRequestV2.fromObject({ symbols, timeseries })).finish();
}

/** A 1.0 request (not compressed) with exemplars, histograms and metadata. */
export function v1Request(
  series: ModelSeriesSpec[],
  metadata: { type: number; metric_family_name: string; help: string; unit: string }[] = [],
): Uint8Array {
  const labelList = (l: Record<string, string>) =>
    Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, value]) => ({
      name,
      value,
    }));
  const timeseries = series.map((s) => ({
    labels: labelList(s.labels),
    samples: s.samples ?? [],
    histograms: s.histograms ?? [],
    exemplars: (s.exemplars ?? []).map((e) => ({ ...e, labels: labelList(e.labels) })),
  }));
  return WriteRequest.encode(WriteRequest.fromObject({ timeseries, metadata })).finish();
}

const f64 = new Float64Array(1);
const b64 = new Uint8Array(f64.buffer);
const u64 = new BigUint64Array(f64.buffer);

/**
 * Replaces every little-endian occurrence of the double `placeholder` in
 * `buf` with the bits `bits` (e.g. the staleness marker, which cannot pass
 * through protobufjs: V8 quiets a signalling NaN held in a number).
 * Returns how many were replaced.
 */
export function replaceDouble(buf: Uint8Array, placeholder: number, bits: bigint): number {
  f64[0] = placeholder;
  const pat = b64.slice();
  u64[0] = bits;
  const rep = b64.slice();
  let n = 0;
  outer: for (let i = 0; i + 8 <= buf.length; i++) {
    for (let j = 0; j < 8; j++) if (buf[i + j] !== pat[j]) continue outer;
    buf.set(rep, i);
    n++;
    i += 7;
  }
  return n;
}

/** The bits of double `i` of `values`. */
export function bitsOf(values: Float64Array, i: number): bigint {
  return new BigUint64Array(values.buffer, values.byteOffset + i * 8, 1)[0];
}

/** An integer native histogram of schema 0: buckets (0.5,1]:2, (1,2]:1, (2,4]:0, (4,8]:3, zero 1. */
export function intHistogram(timestamp: number, extra: HistogramObject = {}): HistogramObject {
  return {
    count_int: 7,
    sum: 20.5,
    schema: 0,
    zero_threshold: 0.001,
    zero_count_int: 1,
    positive_spans: [{ offset: 0, length: 4 }],
    positive_deltas: [2, -1, -1, 3],
    reset_hint: 2,
    timestamp,
    ...extra,
  };
}

/** A float histogram of schema 1 with negative buckets. */
export function floatHistogram(timestamp: number, extra: HistogramObject = {}): HistogramObject {
  return {
    count_float: 10.5,
    sum: -3.25,
    schema: 1,
    zero_threshold: 0.01,
    zero_count_float: 0.5,
    negative_spans: [{ offset: 1, length: 2 }],
    negative_counts: [1, 2],
    positive_spans: [{ offset: -1, length: 1 }, { offset: 2, length: 2 }],
    positive_counts: [3, 0, 4],
    reset_hint: 3,
    timestamp,
    ...extra,
  };
}

/** A custom-bucket histogram (schema -53): bounds 1, 5, 10; buckets ≤1:2, (1,5]:3, >10:1. */
export function customHistogram(timestamp: number): HistogramObject {
  return {
    count_int: 6,
    sum: 30,
    schema: -53,
    positive_spans: [{ offset: 0, length: 2 }, { offset: 1, length: 1 }],
    positive_deltas: [2, 1, -2],
    custom_values: [1, 5, 10],
    timestamp,
  };
}
