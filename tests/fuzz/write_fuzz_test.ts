/**
 * Fuzzing the write endpoint with requests built by mutating valid ones:
 * label-set shapes (duplicate, empty, unsorted, thousands, invalid UTF-8,
 * missing `__name__`, mixed HA labels), values (NaN, ±Inf, the staleness
 * marker), timestamps far in the past or future, protobuf wire damage (bit
 * flips, truncation, wrong or huge varint lengths, wrong wire types, unknown
 * fields), snappy damage and HTTP header damage.
 *
 * Half the requests go to a plain connector, half to one with
 * --metrics.high-availability. Every answer must be a 2xx or a 4xx with a
 * one-line body: never a 5xx, a dropped connection or a hang. Afterwards
 * each database must hold exactly the samples of the requests that got a
 * 2xx, as decoded by an independent decoder (protobufjs) with the contract's
 * rules applied: empty-valued labels dropped; with HA, `__replica__` removed,
 * every leader sample inside its lease kept, and other replicas' samples
 * (staged, then reconciled per series) stored only where acknowledged, with
 * an acknowledged value. HA traffic keeps its damage to label shapes so that
 * the leader stays predictable: each HA cluster is anchored at the start by
 * its leader, whose lease then starts at the anchor's first sample.
 *
 * `deno task test` runs a short version; `deno task fuzz` the long one.
 * Environment: FUZZ_REQUESTS (default 2000), FUZZ_SEED (default random),
 * FUZZ_CONCURRENCY (default 8). The seed is printed for replay.
 */
import { protobuf, snappy } from "../../deps.ts";
import { startConnector } from "../../src/app.ts";
import { parseConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";

const REQUESTS = Number(Deno.env.get("FUZZ_REQUESTS") ?? 2000);
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const CONCURRENCY = Number(Deno.env.get("FUZZ_CONCURRENCY") ?? 8);

// --- Random numbers (seeded) ----------------------------------------------

class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// --- A protobuf encoder that can write anything --------------------------

type Text = string | Uint8Array;
interface FLabel {
  name: Text;
  value: Text;
}
interface FSample {
  /** A number, or the double's exact bits. */
  value: number | bigint;
  ts: number;
}
interface FSeries {
  labels: FLabel[];
  samples: FSample[];
}

const te = new TextEncoder();

class Writer {
  buf = new Uint8Array(256);
  len = 0;
  reserve(n: number) {
    if (this.len + n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(b: number) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array) {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  varint(v: bigint | number) {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.byte(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.byte(Number(x));
  }
  field(num: number, wire: number) {
    this.varint(num * 8 + wire);
  }
  lenDelimited(num: number, body: Uint8Array) {
    this.field(num, 2);
    this.varint(body.length);
    this.bytes(body);
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const f64 = new Float64Array(1);
const u8of64 = new Uint8Array(f64.buffer);
const u64 = new BigUint64Array(f64.buffer);

function encodeRequest(series: FSeries[]): Uint8Array {
  const req = new Writer();
  for (const s of series) {
    const ts = new Writer();
    for (const l of s.labels) {
      const lw = new Writer();
      lw.lenDelimited(1, typeof l.name === "string" ? te.encode(l.name) : l.name);
      lw.lenDelimited(2, typeof l.value === "string" ? te.encode(l.value) : l.value);
      ts.lenDelimited(1, lw.done());
    }
    for (const smp of s.samples) {
      const sw = new Writer();
      sw.field(1, 1);
      if (typeof smp.value === "bigint") u64[0] = smp.value;
      else f64[0] = smp.value;
      sw.bytes(u8of64.slice());
      sw.field(2, 0);
      sw.varint(smp.ts);
      ts.lenDelimited(2, sw.done());
    }
    req.lenDelimited(1, ts.done());
  }
  return req.done();
}

// --- Where tags and lengths are in a valid encoding ------------------------

interface Spot {
  tag: number;
  /** Position of the length varint (length-delimited fields). */
  len?: number;
  /** Position of a varint value (timestamps). */
  varint?: number;
}

const CHILD: Record<string, Record<number, string>> = {
  req: { 1: "series" },
  series: { 1: "label", 2: "sample" },
  label: {},
  sample: {},
};

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let v = 0n;
  let shift = 0n;
  while (true) {
    const b = buf[pos++];
    v |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [v, pos];
    shift += 7n;
  }
}

function spots(buf: Uint8Array, start: number, end: number, msg: string, out: Spot[]): Spot[] {
  let pos = start;
  while (pos < end) {
    const tag = pos;
    const [key, p] = readVarint(buf, pos);
    pos = p;
    const wire = Number(key & 7n);
    const field = Number(key >> 3n);
    if (wire === 2) {
      const lenPos = pos;
      const [len, q] = readVarint(buf, pos);
      pos = q;
      out.push({ tag, len: lenPos });
      const child = CHILD[msg][field];
      if (child) spots(buf, pos, pos + Number(len), child, out);
      pos += Number(len);
    } else if (wire === 0) {
      out.push({ tag, varint: pos });
      pos = readVarint(buf, pos)[1];
    } else if (wire === 1) {
      out.push({ tag });
      pos += 8;
    } else {
      out.push({ tag });
      pos += 4;
    }
  }
  return out;
}

function splice(buf: Uint8Array, from: number, to: number, insert: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(buf.length - (to - from) + insert.length);
  out.set(buf.subarray(0, from), 0);
  out.set(insert, from);
  out.set(buf.subarray(to), from + insert.length);
  return out;
}

function varintBytes(v: bigint | number): number[] {
  const w = new Writer();
  w.varint(v);
  return [...w.done()];
}

// --- Request generation ------------------------------------------------------

const METRICS = ["fz_cpu_seconds_total", "fz_memory_bytes", "fz_http_requests_total", "fz_up"];
const EXTRA_LABELS = ["mode", "path", "code", "zone", "le"];
const CLUSTERS = ["fz-c1", "fz-c2"];
const LEADER = "r1";
const REPLICAS = ["r1", "r2", "r3"];
const HOUR = 3_600_000;
const NOW = Math.floor(Date.now() / 1000) * 1000;
/** Non-HA samples live around here (each request its own millisecond range). */
export const T_PLAIN = NOW - 2 * HOUR;
/** HA clusters are anchored at [T0, T_END]; HA samples stay at or before T_END. */
const T0 = NOW - 4 * HOUR;
const T_END = NOW - 3 * HOUR;
/** The anchor's newest sample. */
const T_ANCHOR_END = T_END + 60_000;
const MIN_TS = -62135596800000;
const MAX_TS = 253402300799999;
const FAR_TIMESTAMPS = [MIN_TS, MIN_TS - 1, MAX_TS, MAX_TS + 1, 0, -1, 1e15, 946684800000, 4e12];
const STALE_NAN = 0x7ff0000000000002n;
const SPECIAL_VALUES: (number | bigint)[] = [
  NaN,
  Infinity,
  -Infinity,
  -0,
  STALE_NAN,
  0x7ff8000000000001n, // another quiet NaN payload
  0xfff0000000000001n, // a negative signalling NaN
  Number.MIN_VALUE,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
];
const BAD_UTF8 = [
  [0xff],
  [0xc0, 0xaf], // overlong "/"
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xe2, 0x82], // truncated
  [0x80],
  [0x00], // NUL
];

function baseSeries(rng: Rng, k: number, ha: boolean): FSeries {
  const labels: FLabel[] = [{ name: "__name__", value: rng.pick(METRICS) }];
  labels.push({ name: "instance", value: `i${rng.int(5)}` });
  labels.push({ name: "job", value: rng.pick(["node", "api"]) });
  for (const extra of EXTRA_LABELS) {
    if (rng.chance(0.3)) labels.push({ name: extra, value: `${extra}-${rng.int(4)}` });
  }
  if (ha) {
    labels.push({ name: "cluster", value: rng.pick(CLUSTERS) });
    labels.push({ name: "__replica__", value: rng.pick(REPLICAS) });
  }
  labels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const n = 1 + rng.int(3);
  const samples: FSample[] = [];
  for (let j = 0; j < n; j++) {
    const ts = ha ? T0 - (rng.chance(0.1) ? HOUR : 0) + rng.int(T_END - T0 + 1) : T_PLAIN +
      k * 8 + j;
    samples.push({ value: Math.round(rng.next() * 1e6) / 100, ts });
  }
  return { labels, samples };
}

function utf8Damage(rng: Rng, s: string): Uint8Array {
  const b = te.encode(s);
  const at = rng.int(b.length + 1);
  return splice(b, at, at, rng.pick(BAD_UTF8));
}

/** Label-shape and value mutations on the series model. */
function mutateShape(rng: Rng, series: FSeries[], ha: boolean, toHa: boolean): string {
  if (series.length === 0) return "empty request";
  const s = rng.pick(series);
  const l = rng.pick(s.labels);
  const kinds = [
    "duplicate label",
    "empty label name",
    "empty label value",
    "unsorted labels",
    "missing __name__",
    "invalid UTF-8",
    "thousands of labels",
    "long label",
    "series twice",
    "no samples",
    "duplicate sample",
    ...(ha ? ["drop HA label", "empty HA label", "other replica", "mixed HA"] : [
      "special values",
      "far timestamps",
      // Only where they are plain labels: to the HA connector they would
      // start a new, unanchored HA group.
      ...(toHa ? [] : ["HA labels on a plain series"]),
    ]),
  ];
  const kind = rng.pick(kinds);
  switch (kind) {
    case "duplicate label": {
      // The same cluster name twice: a later mutation may drop one of them,
      // and another value would start a new, unanchored HA group.
      const value = l.name === "cluster" ? l.value : `${l.value}-dup`;
      s.labels.splice(rng.int(s.labels.length + 1), 0, { name: l.name, value });
      break;
    }
    case "empty label name":
      s.labels.splice(rng.int(s.labels.length + 1), 0, { name: "", value: "x" });
      break;
    case "empty label value":
      l.value = "";
      break;
    case "unsorted labels":
      for (let i = s.labels.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [s.labels[i], s.labels[j]] = [s.labels[j], s.labels[i]];
      }
      break;
    case "missing __name__":
      s.labels = s.labels.filter((x) => x.name !== "__name__");
      break;
    case "invalid UTF-8":
      if (rng.chance(0.5)) l.name = utf8Damage(rng, String(l.name));
      else l.value = utf8Damage(rng, String(l.value));
      break;
    case "thousands of labels": {
      const n = rng.pick([1000, 1700, 4096, 4097, 6000]);
      for (let i = 0; i < n; i++) {
        s.labels.push({ name: `w${String(i).padStart(5, "0")}`, value: "v" });
      }
      s.labels = s.labels.map((x) => x.name === "__name__" ? { ...x, value: "fz_wide" } : x);
      break;
    }
    case "long label": {
      if (rng.chance(0.25)) {
        // A metric name too long for an index entry (3000 bytes that do not compress).
        const name = Array.from(
          { length: 1000 },
          () => String.fromCharCode(0x4e00 + rng.int(20000)),
        );
        for (const x of s.labels) if (x.name === "__name__") x.value = name.join("");
        break;
      }
      const n = rng.pick([3000, 65536, 65537]);
      // A new cluster name would make a new HA group whose outcome depends on timing.
      if (rng.chance(0.5) && l.name !== "cluster") l.value = "v".repeat(n);
      else s.labels.push({ name: "n".repeat(n), value: "long name" });
      break;
    }
    case "series twice":
      series.push(structuredClone(s));
      break;
    case "no samples":
      s.samples = [];
      break;
    case "duplicate sample":
      // (T_END: within the HA range, where followers are never ahead.)
      s.samples.push({ ts: s.samples[0]?.ts ?? T_END, value: rng.next() });
      break;
    case "special values":
      for (const smp of s.samples) smp.value = rng.pick(SPECIAL_VALUES);
      break;
    case "far timestamps":
      for (const smp of s.samples) smp.ts = rng.pick(FAR_TIMESTAMPS) + rng.pick([0, 0, 1, -1]);
      break;
    case "HA labels on a plain series":
      if (rng.chance(0.5)) s.labels.push({ name: "cluster", value: "plain-c" });
      if (rng.chance(0.5)) s.labels.push({ name: "__replica__", value: "plain-r" });
      break;
    case "drop HA label": {
      const name = rng.pick(["cluster", "__replica__"]);
      s.labels = s.labels.filter((x) => x.name !== name);
      break;
    }
    case "empty HA label": {
      const name = rng.pick(["cluster", "__replica__"]);
      for (const x of s.labels) if (x.name === name) x.value = "";
      break;
    }
    case "other replica":
      for (const x of s.labels) if (x.name === "__replica__") x.value = rng.pick(["r9", "r2", ""]);
      break;
    case "mixed HA":
      series.push({
        labels: s.labels.filter((x) => x.name !== "cluster" && x.name !== "__replica__"),
        samples: s.samples.map((x) => ({ ...x, ts: T_PLAIN - HOUR + rng.int(HOUR) })),
      });
      break;
  }
  return kind;
}

/** Damage to the protobuf bytes of a valid encoding. */
function mutateWire(rng: Rng, raw: Uint8Array): [Uint8Array, string] {
  const where = spots(raw, 0, raw.length, "req", []);
  const kind = where.length === 0 ? "bit flips" : rng.pick([
    "bit flips",
    "truncation",
    "wrong length",
    "huge length",
    "overlong varint",
    "wrong wire type",
    "unknown field",
    "duplicated bytes",
    "timestamp bits",
  ]);
  const spot = where.length ? rng.pick(where) : undefined;
  const withLen = where.filter((s) => s.len !== undefined);
  const lenSpot = withLen.length ? rng.pick(withLen) : undefined;
  switch (kind) {
    case "truncation":
      return [raw.slice(0, rng.int(raw.length)), kind];
    case "wrong length":
    case "huge length": {
      if (!lenSpot) break;
      const [len, end] = readVarint(raw, lenSpot.len!);
      const next = kind === "wrong length"
        ? len + BigInt(rng.pick([-3, -2, -1, 1, 2, 3, 100]))
        : rng.pick([2n ** 31n, 2n ** 32n + 1n, 2n ** 35n, 2n ** 63n - 1n, 2n ** 64n - 1n]);
      return [splice(raw, lenSpot.len!, end, varintBytes(next < 0n ? 0n : next)), kind];
    }
    case "overlong varint": {
      const at = rng.chance(0.5) && lenSpot ? lenSpot.len! : spot!.tag;
      const end = readVarint(raw, at)[1];
      return [
        splice(raw, at, end, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        kind,
      ];
    }
    case "wrong wire type": {
      const out = raw.slice();
      out[spot!.tag] = (out[spot!.tag] & ~7) | ((out[spot!.tag] & 7) + 1 + rng.int(7)) % 8;
      return [out, kind];
    }
    case "unknown field": {
      const w = new Writer();
      const field = 9 + rng.int(7);
      switch (rng.int(5)) {
        case 0:
          w.field(field, 0);
          w.varint(BigInt(rng.int(1e9)));
          break;
        case 1:
          w.field(field, 1);
          w.bytes(new Uint8Array(8));
          break;
        case 2:
          w.lenDelimited(field, new Uint8Array(rng.int(20)));
          break;
        case 3:
          w.field(field, 5);
          w.bytes(new Uint8Array(4));
          break;
        default:
          w.field(field, rng.pick([3, 4])); // groups, unbalanced
      }
      return [splice(raw, spot!.tag, spot!.tag, w.done()), kind];
    }
    case "duplicated bytes": {
      const a = rng.int(raw.length);
      const b = Math.min(raw.length, a + 1 + rng.int(16));
      return [splice(raw, b, b, raw.subarray(a, b)), kind];
    }
    case "timestamp bits": {
      const ts = where.filter((s) => s.varint !== undefined);
      if (!ts.length) break;
      const s = rng.pick(ts);
      const [v, end] = readVarint(raw, s.varint!);
      const flipped = BigInt.asIntN(64, v ^ (1n << BigInt(rng.int(64))));
      return [splice(raw, s.varint!, end, varintBytes(flipped)), kind];
    }
  }
  const out = raw.slice();
  const n = 1 + rng.int(4);
  for (let i = 0; i < n && out.length; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
  return [out, "bit flips"];
}

/** Damage to the snappy bytes. */
function mutateSnappy(rng: Rng, body: Uint8Array): [Uint8Array, string] {
  const kind = rng.pick([
    "snappy bit flips",
    "snappy truncation",
    "snappy header",
    "not snappy",
    "garbage",
    "empty body",
  ]);
  switch (kind) {
    case "snappy truncation":
      return [body.slice(0, rng.int(body.length)), kind];
    case "snappy header": {
      const [len, end] = readVarint(body, 0);
      const next = rng.pick([len + 1n, len - 1n, len * 2n, 2n ** 32n - 1n, 2n ** 35n]);
      return [splice(body, 0, end, varintBytes(next < 0n ? 0n : next)), kind];
    }
    case "not snappy":
      return [snappy.uncompress(body), kind];
    case "garbage": {
      const out = new Uint8Array(1 + rng.int(200));
      for (let i = 0; i < out.length; i++) out[i] = rng.int(256);
      return [out, kind];
    }
    case "empty body":
      return [new Uint8Array(0), kind];
  }
  const out = body.slice();
  const n = 1 + rng.int(4);
  for (let i = 0; i < n && out.length; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
  return [out, kind];
}

export interface FuzzRequest {
  index: number;
  ha: boolean;
  kind: string;
  body: Uint8Array;
  /** The protobuf bytes before snappy when known (else decoded from body on a 2xx). */
  raw?: Uint8Array;
  headers: Record<string, string>;
  method: string;
}

const WRITE_HEADERS = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };

function buildRequest(rng: Rng, index: number, toHa: boolean): FuzzRequest {
  const haSeries = toHa && rng.chance(0.6);
  const series: FSeries[] = [];
  const n = rng.int(7);
  for (let i = 0; i < n; i++) series.push(baseSeries(rng, index, haSeries && rng.chance(0.7)));
  const hasHa = series.some((s) => s.labels.some((l) => l.name === "__replica__"));
  const kinds: string[] = [];
  const shapeMutations = rng.chance(0.25) ? 0 : 1 + (rng.chance(0.2) ? 1 : 0);
  for (let i = 0; i < shapeMutations; i++) kinds.push(mutateShape(rng, series, hasHa, toHa));
  let raw: Uint8Array | undefined = encodeRequest(series);
  let body: Uint8Array;
  const layer = hasHa ? 0 : rng.int(10);
  if (layer >= 4 && layer < 8) {
    const [mutated, kind] = mutateWire(rng, raw);
    raw = mutated;
    kinds.push(kind);
  }
  body = snappy.compress(raw);
  if (layer === 8) {
    const [mutated, kind] = mutateSnappy(rng, body);
    body = mutated;
    raw = undefined;
    kinds.push(kind);
  }
  let headers: Record<string, string> = WRITE_HEADERS;
  let method = "POST";
  if (layer === 9 && rng.chance(0.5)) {
    const h = rng.int(5);
    if (h === 0) headers = { ...WRITE_HEADERS, "content-encoding": "gzip" };
    else if (h === 1) headers = { ...WRITE_HEADERS, "content-type": "application/json" };
    else if (h === 2) {
      headers = {
        ...WRITE_HEADERS,
        "content-type": "application/x-protobuf;proto=io.prometheus.write.v3.Request",
      };
    } else if (h === 3) headers = { "content-type": "application/x-protobuf" };
    else method = "PUT";
    kinds.push("http headers");
  }
  return {
    index,
    ha: toHa,
    kind: kinds.length ? kinds.join("+") : "clean",
    body,
    raw,
    headers,
    method,
  };
}

/** Request `index` of the run with `seed`: the same whatever the concurrency (for replay). */
export function requestAt(seed: number, index: number): FuzzRequest {
  const rng = new Rng(Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(index, 0x85ebca6b));
  return buildRequest(rng, index, index % 2 === 1);
}

// --- The oracle ----------------------------------------------------------------

/**
 * The fields the connector stores as samples, and nothing else: a native
 * histogram is stored as a presence row in the samples table (its count at
 * its timestamp, src/storage/migrations/data_model.ts), so its count and
 * timestamp are read; exemplars, metadata and the rest of a histogram are
 * skipped as unknown fields (the connector checks more of them, and may
 * refuse what protobufjs reads here: a refusal is always allowed).
 */
const WriteRequest = protobuf.parse(
  `
  syntax = "proto3";
  package oracle;
  message WriteRequest { repeated TimeSeries timeseries = 1; }
  message TimeSeries {
    repeated Label labels = 1; repeated Sample samples = 2; repeated Histogram histograms = 4;
  }
  message Label { string name = 1; string value = 2; }
  message Sample { double value = 1; int64 timestamp = 2; }
  message Histogram {
    oneof count { uint64 count_int = 1; double count_float = 2; }
    double sum = 3;
    int64 timestamp = 15;
  }
`,
  { keepCase: true },
).root.lookupType("oracle.WriteRequest");

export interface DecodedSample {
  key: string;
  value: string;
  metric: string;
  /** HA: a sample that may be stored (a follower's, or the leader's from before its lease). */
  optional?: boolean;
}

function bitsOf(v: number): string {
  if (Number.isNaN(v)) return "nan";
  f64[0] = v;
  return u64[0].toString(16);
}

function sortLabels(labels: [string, string][]): [string, string][] {
  return labels.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function labelsKey(labels: [string, string][]): string {
  return JSON.stringify(sortLabels(labels));
}

/**
 * What a 2xx'd request must have stored, decoded by protobufjs and the
 * contract's rules; throws when the request breaks a rule the connector
 * should have refused it for.
 */
export function expectedSamples(raw: Uint8Array, ha: boolean): DecodedSample[] {
  const msg = WriteRequest.toObject(WriteRequest.decode(raw), {
    longs: String,
    defaults: true,
    arrays: true,
  }) as {
    timeseries: {
      labels: { name: string; value: string }[];
      samples: { value: number; timestamp: string }[];
      histograms: { count_int?: string; count_float?: number; sum: number; timestamp: string }[];
    }[];
  };
  const out: DecodedSample[] = [];
  for (const [i, ts] of msg.timeseries.entries()) {
    const names = ts.labels.map((l) => l.name);
    if (names.some((n) => n === "")) throw new Error(`series ${i}: accepted an empty label name`);
    if (new Set(names).size !== names.length) {
      throw new Error(`series ${i}: accepted a duplicate label name`);
    }
    if (ts.labels.length > 4096) {
      throw new Error(`series ${i}: accepted ${ts.labels.length} labels`);
    }
    let labels = ts.labels.filter((l) => l.value !== "").map((l) =>
      [l.name, l.value] as [string, string]
    );
    const metric = labels.find((l) => l[0] === "__name__")?.[1];
    if (metric === undefined) throw new Error(`series ${i}: accepted a series without __name__`);
    const cluster = labels.find((l) => l[0] === "cluster")?.[1];
    const replica = labels.find((l) => l[0] === "__replica__")?.[1];
    // Histogram samples are stored as samples valued by their count
    // (Prometheus's generator here never sends a stale histogram).
    for (const h of ts.histograms) {
      ts.samples.push({
        value: h.count_float !== undefined ? h.count_float : Number(h.count_int ?? 0),
        timestamp: h.timestamp,
      });
    }
    // A series without samples is dropped before the HA labels are looked at.
    if (ts.samples.length === 0) continue;
    if (ha && (cluster === undefined) !== (replica === undefined)) {
      throw new Error(`series ${i}: accepted a series with only one HA label`);
    }
    for (const s of ts.samples) {
      const t = Number(s.timestamp);
      if (!(t >= MIN_TS && t <= MAX_TS)) throw new Error(`series ${i}: accepted timestamp ${t}`);
    }
    const isHa = ha && cluster !== undefined;
    if (isHa) {
      if (!CLUSTERS.includes(cluster!)) {
        throw new Error(`series ${i}: unexpected cluster ${cluster}`);
      }
      labels = labels.filter((l) => l[0] !== "__replica__");
    }
    const key = labelsKey(labels);
    for (const s of ts.samples) {
      const t = Number(s.timestamp);
      // Staged and reconciled: stored if the leader lacks the round.
      const optional = isHa && (replica !== LEADER || t < T0);
      out.push({ key: `${key}@${t}`, value: bitsOf(s.value), metric, optional });
    }
  }
  return out;
}

/** Every sample in a database, read through the prom_metric views: key → value bits. */
export async function storedSamples(
  db: Pick<FreshDatabase, "sql">,
): Promise<Map<string, string>> {
  const metrics = await db.sql<{ metric_name: string; view_name: string }[]>`
    SELECT metric_name, view_name FROM _prom_catalog.metric`;
  const out = new Map<string, string>();
  for (let i = 0; i < metrics.length; i += 50) {
    const part = metrics.slice(i, i + 50);
    const query = part.map((m, j) =>
      `SELECT ${j} AS m, labels, (extract(epoch FROM time) * 1000)::bigint::text AS t, ` +
      `encode(float8send(value), 'hex') AS v FROM prom_metric."${
        m.view_name.replaceAll('"', '""')
      }"`
    ).join(" UNION ALL ");
    const rows = await db.sql.unsafe(query) as unknown as {
      m: number;
      labels: Record<string, string>;
      t: string;
      v: string;
    }[];
    for (const r of rows) {
      const labels: [string, string][] = Object.entries(r.labels);
      labels.push(["__name__", part[r.m].metric_name]);
      const key = `${labelsKey(labels)}@${r.t}`;
      assert(!out.has(key), `stored twice: ${key}`);
      f64[0] = 0;
      const bits = BigInt("0x" + r.v);
      u64[0] = bits;
      out.set(key, Number.isNaN(f64[0]) ? "nan" : bits.toString(16));
    }
  }
  return out;
}

// --- The run --------------------------------------------------------------------

interface Tally {
  byStatus: Map<string, number>;
  byKind: Map<string, Map<string, number>>;
  failures: string[];
}

function count(m: Map<string, number>, k: string, by = 1) {
  m.set(k, (m.get(k) ?? 0) + by);
}

/** Statuses per single mutation (a request with two mutations counts for both). */
function byMutation(
  byKind: Map<string, Map<string, number>>,
): Record<string, Record<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const [kind, statuses] of byKind) {
    for (const k of new Set(kind.split("+"))) {
      if (!out.has(k)) out.set(k, new Map());
      for (const [status, n] of statuses) count(out.get(k)!, status, n);
    }
  }
  return Object.fromEntries(
    [...out].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((
      [k, m],
    ) => [k, Object.fromEntries([...m].sort())]),
  );
}

/** Runs the fuzz; returns a summary. Throws (with examples) when any rule is broken. */
export async function runWriteFuzz(requests: number, seed: number, concurrency: number) {
  const plainDb = await freshDatabase("fuzz_plain");
  const haDb = await freshDatabase("fuzz_ha");
  const start = (db: FreshDatabase, ha: boolean) =>
    startConnector(
      parseConfig(
        [
          "--db.uri",
          db.uri,
          "--web.listen-address",
          "127.0.0.1:0",
          "--db.connections-max",
          "4",
          // A failover timeout short enough that staged samples no leader
          // sample passes are decided soon after the run, long enough that
          // the leader (anchored first) keeps its lease on a loaded machine.
          ...(ha
            ? [
              "--metrics.high-availability",
              "--metrics.high-availability.failover-timeout",
              "15s",
              "--metrics.high-availability.lease-refresh",
              "1s",
            ]
            : []),
        ],
        {},
        () => null,
      ),
      silentLogger,
    );
  const plain = await start(plainDb, false);
  const haConn = await start(haDb, true);
  const tally: Tally = { byStatus: new Map(), byKind: new Map(), failures: [] };
  // Plain, HA required, HA optional: key → values sent.
  const expected = [
    new Map<string, Set<string>>(),
    new Map<string, Set<string>>(),
    new Map<string, Set<string>>(),
  ];
  const started = performance.now();
  try {
    // Anchor each HA cluster: its leader writes first, at both ends of the range.
    for (const cluster of CLUSTERS) {
      const anchor = encodeRequest([{
        labels: [
          { name: "__name__", value: "fz_anchor" },
          { name: "__replica__", value: LEADER },
          { name: "cluster", value: cluster },
        ],
        samples: [{ value: 1, ts: T0 }, { value: 2, ts: T_ANCHOR_END }],
      }]);
      const res = await fetch(`${haConn.url}/write`, {
        method: "POST",
        headers: WRITE_HEADERS,
        body: snappy.compress(anchor) as Uint8Array<ArrayBuffer>,
      });
      assertEquals(res.status, 204, await res.text());
      for (const s of expectedSamples(anchor, true)) expected[1].set(s.key, new Set([s.value]));
    }

    let next = 0;
    const worker = async () => {
      while (true) {
        const index = next++;
        if (index >= requests) return;
        const req = requestAt(seed, index);
        const url = `${req.ha ? haConn.url : plain.url}/write`;
        let status: string;
        let text = "";
        try {
          const res = await fetch(url, {
            method: req.method,
            headers: req.headers,
            body: req.body as Uint8Array<ArrayBuffer>,
            signal: AbortSignal.timeout(60_000),
          });
          text = await res.text();
          status = String(res.status);
        } catch (err) {
          status = (err as Error).name === "TimeoutError" ? "hang" : "connection error";
          text = (err as Error).message;
        }
        count(tally.byStatus, status);
        if (!tally.byKind.has(req.kind)) tally.byKind.set(req.kind, new Map());
        count(tally.byKind.get(req.kind)!, status);
        const fail = (why: string) =>
          tally.failures.push(
            `request ${req.index} (${req.ha ? "HA" : "plain"}, ${req.kind}): ${why}: ${status} ${
              JSON.stringify(text.slice(0, 300))
            }`,
          );
        const code = Number(status);
        if (!(code >= 200 && code < 300) && !(code >= 400 && code < 500)) {
          fail("neither 2xx nor 4xx");
          continue;
        }
        if (code >= 400 && !/^[^\r\n]*\S[^\r\n]*\n?$/.test(text)) fail("body is not one line");
        if (req.kind === "clean" && code !== 204) fail("a clean request was refused");
        if (code >= 300) continue;
        try {
          const raw = req.raw ?? snappy.uncompress(req.body);
          for (const s of expectedSamples(raw, req.ha)) {
            const m = expected[req.ha ? (s.optional ? 2 : 1) : 0];
            const set = m.get(s.key);
            if (set) set.add(s.value);
            else m.set(s.key, new Set([s.value]));
          }
        } catch (err) {
          fail(`accepted, but ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, () => worker()));
    const elapsed = performance.now() - started;

    // The HA stage is reconciled: wait until it is empty or stops shrinking
    // (samples of series with too few stored neighbours wait longer; they
    // are optional here).
    let left = -1, still = 0;
    for (let i = 0; i < 40 && still < 6; i++) {
      const [{ n }] = await haDb.sql<{ n: string }[]>`
        SELECT count(*) AS n FROM _prom_data.ha_stage`;
      if (Number(n) === 0) break;
      still = Number(n) === left ? still + 1 : 0;
      left = Number(n);
      await new Promise((r) => setTimeout(r, 500));
    }
    // The databases hold exactly the acknowledged samples (HA: every
    // required one, and optional ones only as acknowledged).
    const mismatches: string[] = [];
    for (const [i, db] of [plainDb, haDb].entries()) {
      const stored = await storedSamples(db);
      const want = expected[i];
      const optional = i ? expected[2] : new Map<string, Set<string>>();
      const name = i ? "HA" : "plain";
      for (const [key, values] of want) {
        const got = stored.get(key);
        if (got === undefined) mismatches.push(`${name}: missing ${key.slice(0, 300)}`);
        else if (!values.has(got) && !optional.get(key)?.has(got)) {
          mismatches.push(`${name}: ${key.slice(0, 200)} holds ${got}, sent ${[...values]}`);
        }
      }
      for (const [key, got] of stored) {
        if (want.has(key)) continue;
        const values = optional.get(key);
        if (!values) mismatches.push(`${name}: not acknowledged ${key.slice(0, 300)}`);
        else if (!values.has(got)) {
          mismatches.push(`${name}: ${key.slice(0, 200)} holds ${got}, sent ${[...values]}`);
        }
      }
      if (i === 1) {
        // One lease per cluster, held by the first replica heard, never changed.
        const leases = await db.sql<{ cluster_name: string; leader_name: string; n: string }[]>`
          SELECT cluster_name, leader_name,
                 (SELECT count(*) FROM _prom_catalog.ha_leases_logs g
                  WHERE g.cluster_name = l.cluster_name) AS n
          FROM _prom_catalog.ha_leases l ORDER BY cluster_name`;
        const got = JSON.stringify(leases.map((l) => [l.cluster_name, l.leader_name, Number(l.n)]));
        const want = JSON.stringify(CLUSTERS.map((c) => [c, LEADER, 1]));
        if (got !== want) mismatches.push(`HA leases: ${got.slice(0, 500)}, want ${want}`);
      }
    }
    const [{ partitions }] = await plainDb.sql<{ partitions: string }[]>`
      SELECT count(*) AS partitions FROM _prom_catalog.sample_partitions`.catch(() => [{
      partitions: "?",
    }]);
    const summary = {
      seed,
      requests,
      seconds: Math.round(elapsed / 100) / 10,
      byStatus: Object.fromEntries([...tally.byStatus].sort()),
      samplesStored: {
        plain: expected[0].size,
        ha: expected[1].size,
        haOptional: expected[2].size,
      },
      partitions,
      byMutation: byMutation(tally.byKind),
    };
    if (tally.failures.length || mismatches.length) {
      throw new Error(
        `Write fuzz (seed ${seed}) found ${tally.failures.length} bad answers and ${mismatches.length} ` +
          `storage mismatches:\n${
            [...tally.failures.slice(0, 15), ...mismatches.slice(0, 15)].join("\n")
          }` +
          `\nsummary: ${JSON.stringify(summary)}`,
      );
    }
    return summary;
  } finally {
    await plain.stop();
    await haConn.stop();
    await plainDb.drop();
    await haDb.drop();
  }
}

Deno.test({
  name:
    `write fuzz: ${REQUESTS} mutated requests get 2xx or a one-line 4xx and store exactly the 2xx samples`,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const summary = await runWriteFuzz(REQUESTS, SEED, CONCURRENCY);
    console.log(`write fuzz: ${JSON.stringify(summary)}`);
    assert((summary.byStatus["204"] ?? 0) > REQUESTS / 10, "too few requests were accepted");
    assert((summary.byStatus["400"] ?? 0) > REQUESTS / 10, "too few requests were refused");
  },
});
