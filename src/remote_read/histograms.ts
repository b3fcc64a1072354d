/**
 * Native histograms on the read path: the stored rows of a series read
 * back from PostgreSQL (every double as `float8send` bytes, every array as
 * `array_send` bytes: postgres.js reads float8 as text, which would lose
 * NaN payloads such as a stale histogram's sum), and encoded as the
 * `prometheus.Histogram` message (remote read carries it in
 * `TimeSeries.histograms`, field 4), exactly as received: integer
 * histograms as `count_int` and `*_deltas`, float ones as `count_float` and
 * `*_counts`.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import type { DecodedHistogram } from "../ingest.ts";

/** A stored histogram sample. */
export interface StoredHistogram {
  timestamp: number;
  histogram: DecodedHistogram;
}

/**
 * The SQL expression (over `h`, a `_prom_data.histogram_samples` row) that
 * yields one bytea per histogram, decoded by {@linkcode histogramFromBytes}.
 */
export const HISTOGRAM_BYTES_SQL = `
  int8send((extract(epoch FROM h.time) * 1000)::int8) || boolsend(h.is_float)
  || int2send(h.schema) || int2send(h.reset_hint)
  || float8send(h.count) || float8send(h.sum) || float8send(h.zero_threshold)
  || float8send(h.zero_count)
  || int4send(octet_length(array_send(h.positive_spans))) || array_send(h.positive_spans)
  || int4send(octet_length(array_send(h.positive_counts))) || array_send(h.positive_counts)
  || int4send(octet_length(array_send(h.negative_spans))) || array_send(h.negative_spans)
  || int4send(octet_length(array_send(h.negative_counts))) || array_send(h.negative_counts)
  || int4send(octet_length(array_send(h.custom_values))) || array_send(h.custom_values)`;

const TWO_32 = 4_294_967_296;

/** Reads a `HISTOGRAM_BYTES_SQL` value back. */
export function histogramFromBytes(b: Uint8Array): StoredHistogram {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const timestamp = dv.getInt32(0) * TWO_32 + dv.getUint32(4);
  p = 8;
  const float = b[p++] === 1;
  const schema = dv.getInt16(p);
  const resetHint = dv.getInt16(p + 2);
  p += 4;
  const scalars = new Float64Array(4);
  const sb = new Uint8Array(scalars.buffer);
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 8; j++) sb[i * 8 + j] = b[p + 7 - j];
    p += 8;
  }
  const arrays: Uint8Array[] = [];
  for (let i = 0; i < 5; i++) {
    const n = dv.getInt32(p);
    arrays.push(b.subarray(p + 4, p + 4 + n));
    p += 4 + n;
  }
  return {
    timestamp,
    histogram: {
      float,
      schema,
      resetHint,
      scalars,
      positiveSpans: int4Array(arrays[0]),
      positiveCounts: float8Array(arrays[1]),
      negativeSpans: int4Array(arrays[2]),
      negativeCounts: float8Array(arrays[3]),
      customValues: float8Array(arrays[4]),
    },
  };
}

/** Elements of a one-dimensional binary array: [offset of first element data, count]. */
function arrayElements(b: Uint8Array): [number, number] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getInt32(0) === 0) return [0, 0];
  return [20, dv.getInt32(12)];
}

function int4Array(b: Uint8Array): Int32Array {
  const [start, n] = arrayElements(b);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getInt32(start + i * 8 + 4);
  return out;
}

function float8Array(b: Uint8Array): Float64Array {
  const [start, n] = arrayElements(b);
  const out = new Float64Array(n);
  const ob = new Uint8Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const p = start + i * 12 + 4;
    for (let j = 0; j < 8; j++) ob[i * 8 + j] = b[p + 7 - j];
  }
  return out;
}

/**
 * The stored histograms of `seriesId` within [startMs, endMs] whose
 * presence row exists (what the `prom_histogram` views show), oldest first.
 */
export async function queryHistograms(
  sql: Sql,
  seriesId: number,
  startMs: number,
  endMs: number,
): Promise<StoredHistogram[]> {
  const rows = await sql.unsafe<{ b: Uint8Array }[]>(
    `SELECT ${HISTOGRAM_BYTES_SQL} AS b
     FROM _prom_data.histogram_samples h
     JOIN _prom_data.samples s ON s.series_id = h.series_id AND s.time = h.time
     WHERE h.series_id = $1 AND h.time >= $2::timestamptz AND h.time <= $3::timestamptz
     ORDER BY h.time`,
    [String(seriesId), new Date(startMs).toISOString(), new Date(endMs).toISOString()],
  );
  return rows.map((r) => histogramFromBytes(r.b));
}

// ---------------------------------------------------------------------------
// Encoding of prometheus.Histogram.

/** Bytes of a varint of `v` (0 ≤ v < 2^53). */
function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function zigzag(v: number): number {
  return v >= 0 ? 2 * v : -2 * v - 1;
}

/** A growable protobuf writer (histograms are small; simplicity over a sizing pass). */
class Writer {
  buf = new Uint8Array(256);
  pos = 0;

  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const g = new Uint8Array(size);
    g.set(this.buf.subarray(0, this.pos));
    this.buf = g;
  }

  varint(v: number): void {
    this.room(10);
    while (v >= 128) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  int64(v: number): void {
    if (v >= 0) return this.varint(v);
    this.room(10);
    let u = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 9; i++) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  /** Double `i` of `values`, little-endian, bit for bit. */
  double(values: Float64Array, i: number): void {
    this.room(8);
    this.buf.set(new Uint8Array(values.buffer, values.byteOffset + i * 8, 8), this.pos);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

/** Whether double `i` of `values` is +0.0 (all bits zero: proto3 leaves it out). */
function isZeroBits(values: Float64Array, i: number): boolean {
  const w = new Uint32Array(values.buffer, values.byteOffset + i * 8, 2);
  return w[0] === 0 && w[1] === 0;
}

function spans(w: Writer, field: number, s: Int32Array): void {
  for (let i = 0; i < s.length; i += 2) {
    const off = zigzag(s[i]);
    const size = (off ? 1 + varintSize(off) : 0) + (s[i + 1] ? 1 + varintSize(s[i + 1]) : 0);
    w.varint(field << 3 | 2);
    w.varint(size);
    if (off) {
      w.varint(0x08);
      w.varint(off);
    }
    if (s[i + 1]) {
      w.varint(0x10);
      w.varint(s[i + 1]);
    }
  }
}

function packedDoubles(w: Writer, field: number, v: Float64Array): void {
  if (!v.length) return;
  w.varint(field << 3 | 2);
  w.varint(8 * v.length);
  for (let i = 0; i < v.length; i++) w.double(v, i);
}

function packedDeltas(w: Writer, field: number, counts: Float64Array): void {
  if (!counts.length) return;
  const zz: number[] = [];
  let size = 0;
  let prev = 0;
  for (let i = 0; i < counts.length; i++) {
    const z = zigzag(counts[i] - prev);
    prev = counts[i];
    zz.push(z);
    size += varintSize(z);
  }
  w.varint(field << 3 | 2);
  w.varint(size);
  for (const z of zz) w.varint(z);
}

/** Encodes one `prometheus.Histogram` (fields as in both protocol versions). */
export function encodeHistogram(h: DecodedHistogram, timestamp: number): Uint8Array {
  const w = new Writer();
  const s = h.scalars;
  // The count and zero-count oneofs are always written: which one is set
  // says whether the histogram is an integer or a float one.
  if (h.float) {
    w.varint(0x11); // count_float = 2
    w.double(s, 0);
  } else {
    w.varint(0x08); // count_int = 1
    w.varint(s[0]);
  }
  if (!isZeroBits(s, 1)) {
    w.varint(0x19); // sum = 3
    w.double(s, 1);
  }
  if (h.schema !== 0) {
    w.varint(0x20); // schema = 4, sint32
    w.varint(zigzag(h.schema));
  }
  if (!isZeroBits(s, 2)) {
    w.varint(0x29); // zero_threshold = 5
    w.double(s, 2);
  }
  if (h.float) {
    w.varint(0x39); // zero_count_float = 7
    w.double(s, 3);
  } else {
    w.varint(0x30); // zero_count_int = 6
    w.varint(s[3]);
  }
  spans(w, 8, h.negativeSpans);
  if (h.float) packedDoubles(w, 10, h.negativeCounts);
  else packedDeltas(w, 9, h.negativeCounts);
  spans(w, 11, h.positiveSpans);
  if (h.float) packedDoubles(w, 13, h.positiveCounts);
  else packedDeltas(w, 12, h.positiveCounts);
  if (h.resetHint) {
    w.varint(0x70); // reset_hint = 14
    w.varint(h.resetHint);
  }
  if (timestamp !== 0) {
    w.varint(0x78); // timestamp = 15
    w.int64(timestamp);
  }
  packedDoubles(w, 16, h.customValues);
  return w.buf.slice(0, w.pos);
}
