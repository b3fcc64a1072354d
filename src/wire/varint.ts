/**
 * Writers of the base-128 varint shared by protobuf and the snappy header
 * (https://protobuf.dev/programming-guides/encoding/#varints). Numbers
 * are exact below 2^53; an int64 below zero takes ten bytes (its 64-bit
 * two's complement), as protobuf writes it. The reader is
 * {@linkcode ProtoReader} in `protowire.ts`.
 *
 * @module
 */

/** Bytes of `v` (0 ≤ v < 2^53) as a varint. */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Bytes of an int64 varint (a negative number takes ten). */
export function int64VarintSize(v: number): number {
  return v < 0 ? 10 : varintSize(v);
}

/** Writes `v` (0 ≤ v < 2^53) into `buf` at `pos`; returns the position after it. */
export function putVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

/** Writes an int64 varint (negative: two's complement over 64 bits); returns the position after it. */
export function putInt64Varint(buf: Uint8Array, pos: number, v: number): number {
  if (v >= 0) return putVarint(buf, pos, v);
  let u = BigInt.asUintN(64, BigInt(v));
  for (let i = 0; i < 9; i++) {
    buf[pos++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  buf[pos++] = Number(u);
  return pos;
}

/**
 * The varint of `v` as a byte list, for hand-built messages (tests,
 * benchmarks). A bigint or a negative number is taken as an int64.
 */
export function varintBytes(v: number | bigint): number[] {
  if (typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
    const out = new Uint8Array(varintSize(v));
    putVarint(out, 0, v);
    return [...out];
  }
  let u = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (u >= 0x80n) {
    out.push(Number(u & 0x7fn) | 0x80);
    u >>= 7n;
  }
  out.push(Number(u));
  return out;
}
