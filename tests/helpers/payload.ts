/**
 * Builds remote write 1.0 bodies for tests and benchmarks: protobuf through
 * protobufjs (`proto/messages.ts`), then snappy through snappyjs.
 */
import { protobuf, snappy } from "../../deps.ts";
import { WriteRequest } from "../../proto/messages.ts";
import type { Label } from "../../src/ingest.ts";
import { varintBytes } from "../../src/wire/varint.ts";

/** A sample to encode. */
export interface PayloadSample {
  /** Ignored when `valueBits` is given. */
  value: number;
  timestamp: number;
  /**
   * The double's exact IEEE 754 bits, e.g. `0x7ff0000000000002n` for
   * Prometheus's staleness marker. A signalling NaN cannot be passed as
   * `value`: V8 quiets it when it is stored in an object field.
   */
  valueBits?: bigint;
}

/**
 * A series to encode, labels in the given order: a record's key order, which
 * puts integer-like keys first; use an array for any other order.
 */
export interface PayloadSeries {
  labels: Record<string, string> | Label[];
  samples: PayloadSample[];
}

/** The staleness marker Prometheus writes when a series disappears. */
export const STALE_NAN_BITS = 0x7ff0000000000002n;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const u64 = new BigUint64Array(f64.buffer);

/**
 * Encodes a `prometheus.WriteRequest` (not compressed). Labels and the
 * message structure go through protobufjs's WriteRequest type; sample
 * values are written as raw fixed64 words so that every bit survives
 * (protobufjs would read them from a JS number, where a signalling NaN is
 * already quieted).
 */
export function encodeWriteRequest(series: PayloadSeries[]): Uint8Array {
  const fields = WriteRequest.fields;
  const TimeSeries = WriteRequest.lookupType("TimeSeries");
  const Label = WriteRequest.lookupType("Label");
  const tsKey = fields.timeseries.id << 3 | 2;
  const labelsKey = TimeSeries.fields.labels.id << 3 | 2;
  const samplesKey = TimeSeries.fields.samples.id << 3 | 2;
  const w = protobuf.Writer.create();
  for (const s of series) {
    w.uint32(tsKey).fork();
    const labels = Array.isArray(s.labels)
      ? s.labels
      : Object.entries(s.labels).map(([name, value]) => ({ name, value }));
    for (const label of labels) {
      Label.encode(Label.fromObject(label), w.uint32(labelsKey).fork()).ldelim();
    }
    for (const sample of s.samples) {
      w.uint32(samplesKey).fork();
      if (sample.valueBits !== undefined) {
        u64[0] = sample.valueBits;
      } else {
        f64[0] = sample.value;
      }
      // Sample.value = 1 (double: 8 bytes little-endian, here as two
      // fixed32 words), Sample.timestamp = 2 (int64).
      w.uint32(1 << 3 | 1).fixed32(u32[0]).fixed32(u32[1]);
      w.uint32(2 << 3 | 0).int64(sample.timestamp);
      w.ldelim();
    }
    w.ldelim();
  }
  return w.finish();
}

/** Compresses with snappy block format (what Prometheus sends). */
export function snappyCompress(buf: Uint8Array): Uint8Array {
  return snappy.compress(buf);
}

/** A ready remote write body: {@linkcode encodeWriteRequest} then snappy. */
export function writeRequestBody(series: PayloadSeries[]): Uint8Array {
  return snappyCompress(encodeWriteRequest(series));
}

/**
 * A node_exporter-like request: `count` series of 9 labels each, one
 * sample per series (what Prometheus's queue manager sends by default).
 */
export function nodeExporterSeries(count: number, timestamp = 1_700_000_000_000): PayloadSeries[] {
  const modes = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];
  const out: PayloadSeries[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      labels: {
        __name__: "node_cpu_seconds_total",
        __replica__: "prometheus-0",
        cluster: "prod-eu-1",
        cpu: String(i % 64),
        instance: `node-${Math.floor(i / 512)}.example.com:9100`,
        job: "node",
        mode: modes[(i >>> 6) % modes.length],
        namespace: "monitoring",
        pod: `node-exporter-${Math.floor(i / 512)}`,
      },
      samples: [{ value: 12345.67 + i, timestamp }],
    });
  }
  return out;
}

/** The protobuf/snappy varint of `n`, as bytes (for hand-built bodies). */
export function uvarint(n: number): number[] {
  return varintBytes(n);
}
