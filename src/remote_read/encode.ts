/**
 * Encodes a sampled remote read response, `prometheus.ReadResponse`, by
 * hand: sizes first, then one buffer written front to back.
 *
 * By hand because sample values must keep every bit: Prometheus's
 * staleness marker is a signalling NaN (0x7ff0000000000002) and V8 quiets
 * such a NaN whenever it passes through a JS number. Values therefore
 * travel as bytes from PostgreSQL (`float8send`, big-endian) into the
 * protobuf's little-endian `double` field, never as numbers.
 *
 * @module
 */
import { encodeHistogram, type StoredHistogram } from "./histograms.ts";
import { compressSnappyBlock } from "../wire/snappy.ts";
import {
  int64VarintSize as int64Size,
  putInt64Varint,
  putVarint,
  varintSize,
} from "../wire/varint.ts";

/** One series of a query result. */
export interface ResultSeries {
  /** Sorted by name (byte order), `__name__` included. */
  labels: { name: string; value: string }[];
  /** Sample timestamps, ms since the epoch, ascending. */
  timestamps: ArrayLike<number>;
  /** The values, 8 bytes each, IEEE 754 big-endian (what `float8send` returns). */
  valuesBE: Uint8Array;
  /** Native histogram samples, ascending (`TimeSeries.histograms`, field 4). */
  histograms?: StoredHistogram[];
  /** Exemplars, ascending by timestamp (`TimeSeries.exemplars`, field 3). */
  exemplars?: ResultExemplar[];
}

/** One exemplar of a series (`prometheus.Exemplar`). */
export interface ResultExemplar {
  /** Sorted by name. */
  labels: { name: string; value: string }[];
  /** The value, 8 bytes, IEEE 754 big-endian (what `float8send` returns). */
  valueBE: Uint8Array;
  /** ms since the epoch. */
  timestamp: number;
}

const TWO_32 = 4_294_967_296;
const encoder = new TextEncoder();

/** A write cursor over the response buffer. */
class Out {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  varint(v: number): void {
    this.pos = putVarint(this.buf, this.pos, v);
  }

  int64(v: number): void {
    this.pos = putInt64Varint(this.buf, this.pos, v);
  }

  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

/** Sizes computed in the first pass, reused in the second. */
interface PlannedLabel {
  name: Uint8Array;
  value: Uint8Array;
  size: number;
}

interface Planned {
  labels: PlannedLabel[];
  /** Per exemplar: its labels and its message size. */
  exemplars: { labels: PlannedLabel[]; size: number }[];
  /** The encoded `prometheus.Histogram` messages. */
  histograms: Uint8Array[];
  size: number;
}

/**
 * Encodes `prometheus.ReadResponse`: one `QueryResult` per entry of
 * `results`, in order (not compressed).
 */
export function encodeReadResponse(results: ResultSeries[][]): Uint8Array {
  const plans: Planned[][] = [];
  const resultSizes: number[] = [];
  let total = 0;
  for (const series of results) {
    const planned: Planned[] = [];
    let resultSize = 0;
    for (const s of series) {
      if (s.valuesBE.length !== s.timestamps.length * 8) {
        throw new Error(
          `Cannot encode read response: ${s.timestamps.length} timestamps but ${s.valuesBE.length} value bytes`,
        );
      }
      let size = 0;
      const labels = planLabels(s.labels);
      for (const l of labels) size += 1 + varintSize(l.size) + l.size;
      const ts = s.timestamps;
      for (let i = 0; i < ts.length; i++) {
        // Sample: value = 1 (fixed64, 9 bytes with its key), timestamp = 2 (varint).
        size += 2 + 9 + 1 + int64Size(ts[i]);
      }
      const exemplars = (s.exemplars ?? []).map((e) => {
        if (e.valueBE.length !== 8) {
          throw new Error(
            `Cannot encode read response: exemplar value of ${e.valueBE.length} bytes`,
          );
        }
        const labels = planLabels(e.labels);
        // Exemplar: labels = 1, value = 2 (fixed64, 9 bytes with its key), timestamp = 3.
        let m = 9 + 1 + int64Size(e.timestamp);
        for (const l of labels) m += 1 + varintSize(l.size) + l.size;
        size += 1 + varintSize(m) + m;
        return { labels, size: m };
      });
      const histograms = (s.histograms ?? []).map((h) => {
        const m = encodeHistogram(h.histogram, h.timestamp);
        size += 1 + varintSize(m.length) + m.length;
        return m;
      });
      planned.push({ labels, exemplars, histograms, size });
      resultSize += 1 + varintSize(size) + size;
    }
    plans.push(planned);
    resultSizes.push(resultSize);
    total += 1 + varintSize(resultSize) + resultSize;
  }

  const out = new Out(new Uint8Array(total));
  const buf = out.buf;
  for (let r = 0; r < results.length; r++) {
    out.varint(0x0a); // ReadResponse.results = 1
    out.varint(resultSizes[r]);
    const series = results[r];
    for (let k = 0; k < series.length; k++) {
      const s = series[k];
      const plan = plans[r][k];
      out.varint(0x0a); // QueryResult.timeseries = 1
      out.varint(plan.size);
      for (const l of plan.labels) writeLabel(out, l); // TimeSeries.labels = 1
      const ts = s.timestamps;
      const v = s.valuesBE;
      for (let i = 0; i < ts.length; i++) {
        out.varint(0x12); // TimeSeries.samples = 2
        out.varint(9 + 1 + int64Size(ts[i]));
        buf[out.pos++] = 0x09; // Sample.value = 1, fixed64
        // Big-endian to little-endian, byte by byte: the bits stay exact.
        const b = i * 8;
        let p = out.pos;
        for (let j = 7; j >= 0; j--) buf[p++] = v[b + j];
        out.pos = p;
        buf[out.pos++] = 0x10; // Sample.timestamp = 2, varint
        out.int64(ts[i]);
      }
      for (let i = 0; i < plan.exemplars.length; i++) {
        const e = s.exemplars![i];
        const pe = plan.exemplars[i];
        out.varint(0x1a); // TimeSeries.exemplars = 3
        out.varint(pe.size);
        for (const l of pe.labels) writeLabel(out, l); // Exemplar.labels = 1
        buf[out.pos++] = 0x11; // Exemplar.value = 2, fixed64
        for (let j = 7; j >= 0; j--) buf[out.pos++] = e.valueBE[j];
        buf[out.pos++] = 0x18; // Exemplar.timestamp = 3, varint
        out.int64(e.timestamp);
      }
      for (const h of plan.histograms) {
        out.varint(0x22); // TimeSeries.histograms = 4
        out.varint(h.length);
        out.bytes(h);
      }
    }
  }
  if (out.pos !== total) {
    throw new Error(`Cannot encode read response: wrote ${out.pos} bytes, planned ${total}`);
  }
  return buf;
}

/** Labels encoded, with the size of each `Label` message. */
function planLabels(ls: { name: string; value: string }[]): PlannedLabel[] {
  return ls.map((l) => {
    const name = encoder.encode(l.name);
    const value = encoder.encode(l.value);
    // Label: name = 1, value = 2 (strings).
    const size = 1 + varintSize(name.length) + name.length + 1 + varintSize(value.length) +
      value.length;
    return { name, value, size };
  });
}

/** A `Label` as field 1 of its parent (TimeSeries.labels, Exemplar.labels). */
function writeLabel(out: Out, l: PlannedLabel): void {
  out.varint(0x0a);
  out.varint(l.size);
  out.varint(0x0a); // Label.name = 1
  out.varint(l.name.length);
  out.bytes(l.name);
  out.varint(0x12); // Label.value = 2
  out.varint(l.value.length);
  out.bytes(l.value);
}

/** The snappy-compressed response body. */
export function compressResponse(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  return compressSnappyBlock(raw);
}

/** Reads big-endian int64s (what `int8send` returns) as numbers (exact below 2^53). */
export function int64sFromBE(bytes: Uint8Array): Float64Array {
  const n = bytes.length >>> 3;
  const out = new Float64Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    out[i] = dv.getInt32(i * 8) * TWO_32 + dv.getUint32(i * 8 + 4);
  }
  return out;
}
