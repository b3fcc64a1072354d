/**
 * The compressed window format (`_prom_data.compressed`, version 8;
 * migrations/compressed.ts, docs/storage.md) in TypeScript: the encoder the
 * compactor writes with and the decoder the readers (remote read's querier,
 * PromQL's fetch) read with, each the other's inverse, bit for bit.
 *
 * Readers fetch a series' windows as they are stored, one byte string per
 * window ({@linkcode windowBytesSql}: the scalar columns, then each array
 * as `array_send` gives it), and decode them here
 * ({@linkcode decodeWindows}): PostgreSQL then only sends the arrays, where
 * decoding in SQL (`_prom_catalog.decode_window`) costs a row per sample.
 * The rows of the same series come from `_prom_data.samples` (with the
 * copies of compressed samples hidden, in SQL) and are merged here
 * ({@linkcode mergeSamples}).
 *
 * Whatever the decoder does not know to be exactly what
 * `_prom_catalog.series_samples` returns (a NULL element where the encoder
 * writes none, arrays of other lengths than `n`, integers past 2^53, times
 * out of order or a row at the same millisecond as a compressed sample)
 * throws {@linkcode NotDecodable}; the reader then reads that series through
 * `series_samples`.
 *
 * @module
 */
import { COMPRESS_WINDOW } from "./migrations/compressed.ts";

/** Microseconds between 1970-01-01 and 2000-01-01, in ms. */
const PG_EPOCH_MS = 946_684_800_000;

/** One window's encoding, as parameters of the INSERT. */
export interface EncodedWindow {
  n: number;
  minMs: number;
  maxMs: number;
  stepMs: number;
  /** Per-sample correction to the step grid, or null when all are 0. */
  tCorr: number[] | null;
  /** Scale of the integer encoding, or null for raw values. */
  scale: number | null;
  base: number;
  deltas: number[] | null;
  /** 1-based positions whose value is kept as a float8 (scaled windows). */
  exceptions: number[];
}

const SCALES = [1, 2, 4, 8, 10, 16, 32, 64, 100, 128, 256, 1000, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/**
 * Encodes one window: `times` in ms, strictly increasing; `values` the
 * exact doubles. Pure; {@linkcode decodeWindows} and the SQL decoder
 * (`_prom_catalog.decode_window`, migrations/read_speed.ts) are its inverse.
 */
export function encodeWindow(times: ArrayLike<number>, values: Float64Array): EncodedWindow {
  const n = times.length;
  const minMs = times[0];
  const maxMs = times[n - 1];
  // The step: the most common spacing (scrapes are regular; gaps and jitter
  // go into the corrections, which compress when they repeat).
  let stepMs = 0;
  if (n > 1) {
    const counts = new Map<number, number>();
    let best = 0;
    for (let i = 1; i < n; i++) {
      const d = times[i] - times[i - 1];
      const c = (counts.get(d) ?? 0) + 1;
      counts.set(d, c);
      if (c > best || (c === best && d < stepMs)) [best, stepMs] = [c, d];
    }
    if (stepMs > INT32_MAX) stepMs = 0;
  }
  let tCorr: number[] | null = null;
  for (let i = 0; i < n; i++) {
    const c = times[i] - minMs - i * stepMs;
    if (c !== 0 && tCorr === null) tCorr = new Array(n).fill(0);
    if (tCorr) tCorr[i] = c;
  }
  const raw = {
    n,
    minMs,
    maxMs,
    stepMs,
    tCorr,
    scale: null,
    base: 0,
    deltas: null,
    exceptions: [],
  };
  for (const scale of SCALES) {
    const enc = tryScale(values, scale);
    if (enc) return { n, minMs, maxMs, stepMs, tCorr, scale, ...enc };
  }
  return raw;
}

/** The integer encoding at `scale`, or null when more than 1/16 of the finite values do not fit. */
function tryScale(
  values: Float64Array,
  scale: number,
): { base: number; deltas: number[]; exceptions: number[] } | null {
  const n = values.length;
  const maxStray = Math.floor(n / 16);
  let stray = 0;
  const deltas = new Array<number>(n);
  const exceptions: number[] = [];
  let base: number | null = null;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const k = Math.round(v * scale);
    const special = !Number.isFinite(v) || Object.is(v, -0);
    const ok = !special && Math.abs(k) <= Number.MAX_SAFE_INTEGER && k / scale === v;
    let d = 0;
    if (ok) {
      if (base === null) base = prev = k;
      d = k - prev;
      if (d < INT32_MIN || d > INT32_MAX) return null;
      prev = k;
    }
    if (!ok) {
      exceptions.push(i + 1);
      // NaNs (staleness markers), ±Inf and -0 are always exceptions; other
      // values that do not fit the scale only a few.
      if (!special && ++stray > maxStray) return null;
    }
    deltas[i] = d;
  }
  return { base: base ?? 0, deltas, exceptions };
}

/** A window (or a merge) that the TypeScript decoder does not read exactly as SQL would. */
export class NotDecodable extends Error {}

/**
 * The bytes of one `_prom_data.compressed` row aliased `c`, as
 * {@linkcode decodeWindows} reads them: `min_time`, `max_time`
 * (`timestamptz_send`), `step_ms`, `n` (int4), `v_base` (int8), `v_scale`
 * (float8, NaN when NULL), then `t_corr`, `v_delta`, `v_exc`, `v_raw` each
 * as `array_send` gives it (a NULL array: the four bytes ff ff ff ff).
 */
export function windowBytesSql(c: string): string {
  const arr = (col: string) => `coalesce(array_send(${c}.${col}), '\\xffffffff'::bytea)`;
  return `timestamptz_send(${c}.min_time) || timestamptz_send(${c}.max_time) || ` +
    `int4send(${c}.step_ms) || int4send(${c}.n) || int8send(coalesce(${c}.v_base, 0)) || ` +
    `float8send(coalesce(${c}.v_scale, 'NaN'::float8)) || ` +
    `${arr("t_corr")} || ${arr("v_delta")} || ${arr("v_exc")} || ${arr("v_raw")}`;
}

/**
 * The condition selecting the windows of series `sid` that
 * `_prom_catalog.series_samples(sid, lo, hi)` reads (`lo`, `hi`: SQL
 * expressions of type timestamptz), with `c` the table's alias.
 */
export function windowsInRangeSql(c: string, sid: string, lo: string, hi: string): string {
  return `${c}.series_id = ${sid}` +
    ` AND ${c}.window_start >= date_bin('${COMPRESS_WINDOW}', ${lo}, 'epoch')` +
    ` AND ${c}.window_start <= ${hi} AND ${c}.max_time >= ${lo} AND ${c}.min_time <= ${hi}`;
}

/** Decoded samples: times in ms, values as 8 big-endian bytes each. */
export interface DecodedSamples {
  /** ms since the epoch, rounded down (as `floor(extract(epoch ...) * 1000)`), ascending. */
  timestamps: Float64Array;
  /** The values, 8 bytes each, IEEE 754 big-endian, every bit as stored. */
  valuesBE: Uint8Array;
  /** Per sample, the microseconds past its ms (0 for whole ms); null when all are 0. */
  micros: Uint16Array | null;
}

/**
 * The samples in [loMs, hiMs] (inclusive; whole ms) of windows as
 * {@linkcode windowBytesSql} concatenated them (ordered by window_start),
 * ascending; `keep(ms, us)` (if given) drops the others (`us`: the
 * microseconds past ms).
 *
 * @throws {NotDecodable} when the windows are not as the encoder writes them.
 */
export function decodeWindows(
  b: Uint8Array,
  loMs: number,
  hiMs: number,
  keep?: (ms: number, us: number) => boolean,
): DecodedSamples {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // First pass: the total of samples, for the output's size.
  let total = 0;
  const windows: Window[] = [];
  for (let p = 0; p < b.length;) {
    const w = readWindow(dv, p);
    windows.push(w);
    total += w.n;
    p = w.end;
  }
  const times = new Float64Array(total);
  const out = new Uint8Array(total * 8);
  const odv = new DataView(out.buffer);
  let micros: Uint16Array | null = null;
  let k = 0;
  let last = -Infinity;
  for (const w of windows) {
    const us = w.minUs;
    if (us !== 0) micros ??= new Uint16Array(total);
    // decoded times must be those the row claims (series_samples selects by them)
    const lastOff = offset(w, w.n - 1);
    if (w.minMs + lastOff !== w.maxMs || w.maxUs !== us) throw new NotDecodable("max_time");
    let acc = w.base;
    for (let i = 0; i < w.n; i++) {
      const ms = w.minMs + offset(w, i);
      if (w.scaled) {
        acc += dv.getInt32(w.delta + i * 8 + 4);
        if (acc > Number.MAX_SAFE_INTEGER || acc < -Number.MAX_SAFE_INTEGER) {
          throw new NotDecodable("integer past 2^53");
        }
      }
      if (ms < loMs || ms > hiMs || (ms === hiMs && us !== 0)) continue;
      if (keep && !keep(ms, us)) continue;
      if (!(ms > last)) throw new NotDecodable("times out of order");
      last = ms;
      times[k] = ms;
      if (micros) micros[k] = us;
      if (!w.scaled) {
        const at = w.rawIndex![i];
        out.set(b.subarray(at, at + 8), k * 8);
      } else if (w.exc >= 0 && w.excIndex[i] >= 0) {
        out.set(b.subarray(w.excIndex[i], w.excIndex[i] + 8), k * 8);
      } else {
        odv.setFloat64(k * 8, acc / w.scale);
      }
      k++;
    }
  }
  return {
    timestamps: times.subarray(0, k),
    valuesBE: out.subarray(0, k * 8),
    micros: micros ? micros.subarray(0, k) : null,
  };
}

/**
 * Rows (`times` in ms, ascending, whole ms; `valuesBE`) and decoded
 * compressed samples merged in time order.
 *
 * @throws {NotDecodable} when a row and a compressed sample fall in the same
 *   millisecond (only microseconds would order them), or the rows are not
 *   ascending.
 */
export function mergeSamples(
  rowTimes: ArrayLike<number>,
  rowValues: Uint8Array,
  c: DecodedSamples,
): { timestamps: Float64Array; valuesBE: Uint8Array } {
  const n = rowTimes.length;
  const m = c.timestamps.length;
  if (m === 0) return { timestamps: Float64Array.from(rowTimes), valuesBE: rowValues };
  if (n === 0) return { timestamps: c.timestamps, valuesBE: c.valuesBE };
  // Rows' times come as whole ms: a sub-ms compressed time could not be ordered among them.
  if (c.micros !== null) throw new NotDecodable("sub-millisecond times with rows");
  const ts = new Float64Array(n + m);
  const vs = new Uint8Array((n + m) * 8);
  let i = 0;
  let j = 0;
  let k = 0;
  let last = -Infinity;
  while (i < n || j < m) {
    const fromRow = j >= m || (i < n && rowTimes[i] < c.timestamps[j]);
    const t = fromRow ? rowTimes[i] : c.timestamps[j];
    if (!(t > last)) throw new NotDecodable("equal or unordered times");
    last = t;
    ts[k] = t;
    if (fromRow) vs.set(rowValues.subarray(i * 8, i * 8 + 8), k * 8), i++;
    else vs.set(c.valuesBE.subarray(j * 8, j * 8 + 8), k * 8), j++;
    k++;
  }
  return { timestamps: ts, valuesBE: vs };
}

interface Window {
  minMs: number;
  minUs: number;
  maxMs: number;
  maxUs: number;
  step: number;
  n: number;
  base: number;
  scale: number;
  scaled: boolean;
  /** Byte offsets of the arrays' first element (-1: NULL array). */
  corr: number;
  delta: number;
  exc: number;
  /** Per position, the offset of its exception's 8 bytes, or -1. */
  excIndex: Int32Array;
  raw: number;
  rawIndex: Int32Array | null;
  end: number;
  dv: DataView;
}

/** The time offset in ms of position i. */
function offset(w: Window, i: number): number {
  const c = w.corr >= 0 ? w.dv.getInt32(w.corr + i * 8 + 4) : 0;
  return i * w.step + c;
}

/** `timestamptz_send` bytes at p → [ms rounded down, microseconds past it]. */
function readTime(dv: DataView, p: number): [number, number] {
  const hi = dv.getInt32(p);
  const lo = dv.getUint32(p + 4);
  // us = hi * 2^32 + lo = 1000 * (hi * 4294967) + (hi * 296 + lo), the last an exact double
  const r = hi * 296 + lo;
  const q = Math.floor(r / 1000);
  return [hi * 4294967 + q + PG_EPOCH_MS, r - q * 1000];
}

const INT4_OID = 23;
const FLOAT8_OID = 701;

/**
 * An array as `array_send` wrote it at p, of `n` elements of type `oid`
 * (each 4 + its size bytes): the offset past it and of its first element's
 * length; -1 for a NULL array.
 */
function readArray(dv: DataView, p: number, n: number, oid: number): { at: number; end: number } {
  const ndim = dv.getInt32(p);
  if (ndim === -1) return { at: -1, end: p + 4 };
  if (ndim !== 1 || dv.getInt32(p + 8) !== oid) throw new NotDecodable("array shape");
  if (dv.getInt32(p + 12) !== n || dv.getInt32(p + 16) !== 1) {
    throw new NotDecodable("array length");
  }
  const hasNull = dv.getInt32(p + 4) !== 0;
  const at = p + 20;
  if (!hasNull) return { at, end: at + n * (oid === INT4_OID ? 8 : 12) };
  let q = at;
  for (let i = 0; i < n; i++) {
    const len = dv.getInt32(q);
    q += 4 + (len < 0 ? 0 : len);
  }
  return { at: hasNull ? -2 - at : at, end: q };
}

/** The offsets of each element's 8 bytes of a float8 array (-1 for NULL). */
function float8Index(dv: DataView, at: number, n: number): Int32Array {
  const idx = new Int32Array(n);
  let q = at;
  for (let i = 0; i < n; i++) {
    const len = dv.getInt32(q);
    if (len === 8) idx[i] = q + 4, q += 12;
    else if (len === -1) idx[i] = -1, q += 4;
    else throw new NotDecodable("float8 element");
  }
  return idx;
}

function readWindow(dv: DataView, p: number): Window {
  const [minMs, minUs] = readTime(dv, p);
  const [maxMs, maxUs] = readTime(dv, p + 8);
  const step = dv.getInt32(p + 16);
  const n = dv.getInt32(p + 20);
  const bhi = dv.getInt32(p + 24);
  if (bhi >= 0x200000 || bhi < -0x200000) throw new NotDecodable("base past 2^53");
  const base = bhi * 4294967296 + dv.getUint32(p + 28);
  const scale = dv.getFloat64(p + 32);
  const scaled = !Number.isNaN(scale);
  if (n <= 0) throw new NotDecodable("n");
  let q = p + 40;
  const corr = readArray(dv, q, n, INT4_OID);
  q = corr.end;
  const delta = readArray(dv, q, n, INT4_OID);
  q = delta.end;
  const exc = readArray(dv, q, n, FLOAT8_OID);
  q = exc.end;
  const raw = readArray(dv, q, n, FLOAT8_OID);
  q = raw.end;
  if (corr.at < -1 || delta.at < -1) throw new NotDecodable("NULL in an int4 array");
  if (scaled ? delta.at === -1 || raw.at !== -1 : raw.at === -1) {
    throw new NotDecodable("arrays do not match the scale");
  }
  const excAt = exc.at < -1 ? -2 - exc.at : exc.at;
  const excIndex = excAt >= 0 && scaled ? float8Index(dv, excAt, n) : new Int32Array(0);
  let rawIndex: Int32Array | null = null;
  if (!scaled) {
    if (raw.at < -1) throw new NotDecodable("NULL in v_raw");
    rawIndex = float8Index(dv, raw.at, n);
  }
  // (float8Index gives offsets in the DataView's buffer; decodeWindows reads b at them)
  return {
    minMs,
    minUs,
    maxMs,
    maxUs,
    step,
    n,
    base,
    scale,
    scaled,
    corr: corr.at,
    delta: delta.at,
    exc: scaled ? excAt : -1,
    excIndex,
    raw: raw.at,
    rawIndex,
    end: q,
    dv,
  };
}
