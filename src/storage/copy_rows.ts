/**
 * A small builder for PostgreSQL's binary COPY format
 * (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4),
 * for the tables of the data model (histograms, exemplars) and the
 * compactor's windows (`_prom_data.compressed`). Binary because
 * it is the only path of postgres.js that carries float8 bits exactly:
 * doubles are written from their bytes, never through a JS number.
 *
 * @module
 */

const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
const OID_INT4 = 23;
const OID_FLOAT8 = 701;
const encoder = new TextEncoder();

/** Rows of one COPY, built front to back; {@linkcode finish} returns the body. */
export class CopyRows {
  #buf = new Uint8Array(4096);
  #dv = new DataView(this.#buf.buffer);
  #pos = 0;
  rows = 0;

  constructor() {
    // "PGCOPY\n\377\r\n\0", flags 0, header extension length 0.
    this.#bytes(
      new Uint8Array([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0, 0, 0, 0, 0]),
    );
    this.#int32(0);
  }

  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#pos + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
    this.#dv = new DataView(grown.buffer);
  }

  #int32(v: number): void {
    this.#room(4);
    this.#dv.setInt32(this.#pos, v);
    this.#pos += 4;
  }

  #int16(v: number): void {
    this.#room(2);
    this.#dv.setInt16(this.#pos, v);
    this.#pos += 2;
  }

  #int64(v: number): void {
    this.#room(8);
    const hi = Math.floor(v / TWO_32);
    this.#dv.setInt32(this.#pos, hi);
    this.#dv.setUint32(this.#pos + 4, v - hi * TWO_32);
    this.#pos += 8;
  }

  #bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  /** Double `i` of `values`, big-endian, from its little-endian bytes. */
  #double(values: Float64Array, i: number): void {
    this.#room(8);
    const src = new Uint8Array(values.buffer, values.byteOffset + i * 8, 8);
    const buf = this.#buf;
    const p = this.#pos;
    for (let j = 0; j < 8; j++) buf[p + j] = src[7 - j];
    this.#pos += 8;
  }

  /** Starts a row of `fields` columns. */
  row(fields: number): this {
    this.#int16(fields);
    this.rows++;
    return this;
  }

  /** int8. */
  int8(v: number): this {
    this.#int32(8);
    this.#int64(v);
    return this;
  }

  /** SQL NULL. */
  null(): this {
    this.#int32(-1);
    return this;
  }

  /** int4. */
  int4(v: number): this {
    this.#int32(4);
    this.#int32(v);
    return this;
  }

  /** int2. */
  int2(v: number): this {
    this.#int32(2);
    this.#int16(v);
    return this;
  }

  /** bool. */
  bool(v: boolean): this {
    this.#int32(1);
    this.#room(1);
    this.#buf[this.#pos++] = v ? 1 : 0;
    return this;
  }

  /** timestamptz from ms since the Unix epoch (exact: µs as an int64 in two halves). */
  time(ms: number): this {
    this.#int32(8);
    this.#room(8);
    const d = ms - PG_EPOCH_MS;
    const hi = Math.floor(d / TWO_32);
    const lo = (d - hi * TWO_32) * 1000;
    const carry = Math.floor(lo / TWO_32);
    this.#dv.setInt32(this.#pos, hi * 1000 + carry);
    this.#dv.setUint32(this.#pos + 4, lo - carry * TWO_32);
    this.#pos += 8;
    return this;
  }

  /** float8: element `i` of `values`, bit for bit. */
  float8(values: Float64Array, i: number): this {
    this.#int32(8);
    this.#double(values, i);
    return this;
  }

  /** float8 from a number (not for values whose NaN payload matters: see `float8`). */
  float8Value(v: number): this {
    this.#int32(8);
    this.#room(8);
    this.#dv.setFloat64(this.#pos, v);
    this.#pos += 8;
    return this;
  }

  /** bytea of `n` zero bytes. */
  zeros(n: number): this {
    this.#int32(n);
    this.#room(n);
    this.#buf.fill(0, this.#pos, this.#pos + n);
    this.#pos += n;
    return this;
  }

  /** jsonb from its text. */
  jsonb(text: string): this {
    const b = encoder.encode(text);
    this.#int32(b.length + 1);
    this.#room(1);
    this.#buf[this.#pos++] = 1; // jsonb binary format version
    this.#bytes(b);
    return this;
  }

  /** int4[] (one dimension). */
  int4Array(values: ArrayLike<number>): this {
    const n = values.length;
    this.#int32(n ? 20 + 8 * n : 12);
    this.#arrayHeader(n, false, OID_INT4);
    this.#room(8 * n);
    const dv = this.#dv;
    let p = this.#pos;
    for (let i = 0; i < n; i++, p += 8) {
      dv.setInt32(p, 4);
      dv.setInt32(p + 4, values[i]);
    }
    this.#pos = p;
    return this;
  }

  /**
   * float8[] (one dimension) of `values`, bit for bit; with `only` (1-based
   * positions, increasing), the other elements are NULL.
   */
  float8Array(values: Float64Array, only: number[] | null = null): this {
    const n = values.length;
    const kept = only ? only.length : n;
    this.#int32(n ? 20 + 4 * n + 8 * kept : 12);
    this.#arrayHeader(n, only !== null, OID_FLOAT8);
    this.#room(4 * n + 8 * kept);
    const src = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    const buf = this.#buf;
    const dv = this.#dv;
    let p = this.#pos;
    let k = 0;
    for (let i = 0; i < n; i++) {
      if (only && only[k] !== i + 1) {
        dv.setInt32(p, -1);
        p += 4;
        continue;
      }
      k++;
      dv.setInt32(p, 8);
      for (let j = 0; j < 8; j++) buf[p + 4 + j] = src[i * 8 + 7 - j];
      p += 12;
    }
    this.#pos = p;
    return this;
  }

  #arrayHeader(n: number, hasNull: boolean, oid: number): void {
    this.#int32(n ? 1 : 0); // dimensions
    this.#int32(hasNull ? 1 : 0);
    this.#int32(oid);
    if (n) {
      this.#int32(n);
      this.#int32(1); // lower bound
    }
  }

  /** The COPY body, with its trailer. */
  finish(): Uint8Array {
    this.#int16(-1);
    return this.#buf.slice(0, this.#pos);
  }
}
