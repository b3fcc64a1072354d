/**
 * Serving metrics in Prometheus's protobuf exposition format (the only
 * format in which Prometheus 2.42 scrapes native histograms): the messages
 * of `io.prometheus.client` (metrics.proto; the subset our targets send,
 * field numbers as upstream), a native histogram filled by observations,
 * and the scrape response.
 */
import { protobuf } from "../../deps.ts";

const EXPOSITION_PROTO = `
syntax = "proto3";
package io.prometheus.client;
message LabelPair { string name = 1; string value = 2; }
enum MetricType { COUNTER = 0; GAUGE = 1; SUMMARY = 2; UNTYPED = 3; HISTOGRAM = 4; GAUGE_HISTOGRAM = 5; }
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Exemplar { repeated LabelPair label = 1; double value = 2; Timestamp timestamp = 3; }
message Counter { double value = 1; Exemplar exemplar = 2; }
message BucketSpan { sint32 offset = 1; uint32 length = 2; }
message Histogram {
  uint64 sample_count = 1;
  double sample_sum = 2;
  sint32 schema = 5;
  double zero_threshold = 6;
  uint64 zero_count = 7;
  repeated BucketSpan negative_span = 9;
  repeated sint64 negative_delta = 10;
  repeated BucketSpan positive_span = 12;
  repeated sint64 positive_delta = 13;
}
message Metric { repeated LabelPair label = 1; Counter counter = 3; Histogram histogram = 7; }
message MetricFamily { string name = 1; string help = 2; MetricType type = 3; repeated Metric metric = 4; }
`;

const MetricFamily = protobuf.parse(EXPOSITION_PROTO, { keepCase: true }).root.lookupType(
  "io.prometheus.client.MetricFamily",
);

/** A native histogram of one schema, filled by observations. */
export class ObservedHistogram {
  count = 0;
  sum = 0;
  zero = 0;
  pos = new Map<number, number>();
  neg = new Map<number, number>();
  constructor(readonly schema: number, readonly zeroThreshold: number) {}

  observe(v: number): void {
    this.count++;
    this.sum += v;
    if (Math.abs(v) <= this.zeroThreshold) {
      this.zero++;
      return;
    }
    // Bucket i holds (2^((i-1)/2^s), 2^(i/2^s)]: callers keep values away from bounds.
    const idx = Math.ceil(Math.log2(Math.abs(v)) * 2 ** this.schema);
    const m = v > 0 ? this.pos : this.neg;
    m.set(idx, (m.get(idx) ?? 0) + 1);
  }

  /** Spans and deltas of one side, as the exposition format wants them. */
  static side(m: Map<number, number>): {
    spans: { offset: number; length: number }[];
    deltas: number[];
  } {
    const idx = [...m.keys()].sort((a, b) => a - b);
    const spans: { offset: number; length: number }[] = [];
    const deltas: number[] = [];
    let prevCount = 0;
    for (let i = 0; i < idx.length; i++) {
      if (i > 0 && idx[i] === idx[i - 1] + 1) spans[spans.length - 1].length++;
      else spans.push({ offset: i === 0 ? idx[i] : idx[i] - idx[i - 1] - 1, length: 1 });
      const c = m.get(idx[i])!;
      deltas.push(c - prevCount);
      prevCount = c;
    }
    return { spans, deltas };
  }

  /** The `Histogram` message of the exposition format. */
  proto(): Record<string, unknown> {
    const pos = ObservedHistogram.side(this.pos);
    const neg = ObservedHistogram.side(this.neg);
    return {
      sample_count: this.count,
      sample_sum: this.sum,
      schema: this.schema,
      zero_threshold: this.zeroThreshold,
      zero_count: this.zero,
      positive_span: pos.spans,
      positive_delta: pos.deltas,
      negative_span: neg.spans,
      negative_delta: neg.deltas,
    };
  }
}

/** A scrape response of `families` (MetricFamily objects), length-delimited protobuf. */
export function expositionResponse(families: Record<string, unknown>[]): Response {
  const parts = families.map((f) =>
    MetricFamily.encodeDelimited(MetricFamily.fromObject(f)).finish()
  );
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    body.set(p, o);
    o += p.length;
  }
  return new Response(body, {
    headers: {
      "content-type":
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
    },
  });
}
