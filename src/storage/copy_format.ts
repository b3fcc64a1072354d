/**
 * PostgreSQL's binary COPY format for `_prom_data.samples` and
 * `_prom_data.ha_stage` rows, `(series_id int8, time timestamptz, value
 * float8)` (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
 * Format"). Binary because it is the fastest path into PostgreSQL and the
 * only one of postgres.js's that carries float8 bits exactly (text turns
 * every NaN into the canonical one; the staleness marker is a NaN with a
 * payload). Pure encoding: no database here.
 *
 * @module
 */
import type { WriteSeries } from "../ingest.ts";

/** Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
// "PGCOPY\n\377\r\n\0", then 32-bit flags and header-extension length (both 0).
// deno-fmt-ignore
const COPY_HEADER = new Uint8Array([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00,
  0, 0, 0, 0,
  0, 0, 0, 0,
]);
const ROW_BYTES = 2 + 3 * (4 + 8);

/** Samples in `series`. */
export function countSamples(series: WriteSeries[]): number {
  let n = 0;
  for (const s of series) n += s.timestamps.length;
  return n;
}

/** One binary COPY body with the rows of several (each: header, rows, trailer). */
export function combineCopies(parts: Uint8Array[]): Uint8Array {
  const frame = COPY_HEADER.length + 2;
  let size = frame;
  for (const p of parts) size += p.length - frame;
  const out = new Uint8Array(size);
  out.set(COPY_HEADER, 0);
  let o = COPY_HEADER.length;
  for (const p of parts) {
    out.set(p.subarray(COPY_HEADER.length, p.length - 2), o);
    o += p.length - frame;
  }
  out[o] = 0xff; // file trailer: int16 -1
  out[o + 1] = 0xff;
  return out;
}

/** Encodes rows in PostgreSQL's binary COPY format: (int8, timestamptz, float8). */
export function encodeCopy(series: WriteSeries[], ids: number[], samples: number): Uint8Array {
  const buf = new Uint8Array(COPY_HEADER.length + samples * ROW_BYTES + 2);
  buf.set(COPY_HEADER, 0);
  const dv = new DataView(buf.buffer);
  let o = COPY_HEADER.length;
  // Values are copied as bytes (little-endian in memory, big-endian on the
  // wire) so that NaN payloads such as the staleness marker survive. The
  // series of a decoded request share one buffer: one byte view for all.
  let lastBuffer: ArrayBufferLike | undefined;
  let vb: Uint8Array = buf;
  for (let s = 0; s < series.length; s++) {
    const id = ids[s];
    const idHi = Math.floor(id / TWO_32);
    const idLo = id - idHi * TWO_32;
    const ts = series[s].timestamps;
    const vs = series[s].values;
    if (vs.buffer !== lastBuffer) {
      lastBuffer = vs.buffer;
      vb = new Uint8Array(lastBuffer);
    }
    const vbase = vs.byteOffset;
    for (let i = 0; i < ts.length; i++) {
      dv.setInt16(o, 3);
      dv.setInt32(o + 2, 8);
      dv.setInt32(o + 6, idHi);
      dv.setUint32(o + 10, idLo);
      dv.setInt32(o + 14, 8);
      // Microseconds since 2000-01-01 as int64, without leaving exact
      // float arithmetic: d < 2^53, split into 32-bit halves, times 1000.
      const d = ts[i] - PG_EPOCH_MS;
      const hi = Math.floor(d / TWO_32);
      const lo = (d - hi * TWO_32) * 1000;
      const carry = Math.floor(lo / TWO_32);
      dv.setInt32(o + 18, hi * 1000 + carry);
      dv.setUint32(o + 22, lo - carry * TWO_32);
      dv.setInt32(o + 26, 8);
      const b = vbase + i * 8;
      buf[o + 30] = vb[b + 7];
      buf[o + 31] = vb[b + 6];
      buf[o + 32] = vb[b + 5];
      buf[o + 33] = vb[b + 4];
      buf[o + 34] = vb[b + 3];
      buf[o + 35] = vb[b + 2];
      buf[o + 36] = vb[b + 1];
      buf[o + 37] = vb[b];
      o += ROW_BYTES;
    }
  }
  dv.setInt16(o, -1); // file trailer
  return buf;
}
