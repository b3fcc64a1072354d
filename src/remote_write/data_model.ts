/**
 * The parts of the Prometheus data model beyond float samples, as both
 * remote write versions carry them: native histograms, exemplars, metric
 * metadata and created (start) timestamps. Types, and the protobuf readers
 * for the messages whose wire form 1.0 (`prometheus.*`) and 2.0
 * (`io.prometheus.write.v2.*`) share: `Histogram` and `BucketSpan` have the
 * same field numbers in both. Exemplar and metadata messages differ (2.0
 * refers to strings by symbol); their 1.0 forms are read here, the 2.0
 * forms in `decode_v2.ts`.
 *
 * Every reader is bounded by the end of its message and throws a
 * {@linkcode ProtoDecodeError} whose message names what is wrong; the
 * caller prefixes where (`series 3: histogram 0: …`) and turns it into a
 * 400.
 *
 * Native histograms: https://prometheus.io/docs/specs/native_histograms/
 *
 * @module
 */
import {
  decodeText,
  ProtoDecodeError,
  type ProtoReader,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
  wireTypeName,
} from "../wire/protowire.ts";
import type { DecodedExemplar, DecodedHistogram, DecodedMetadata, ModelLabel } from "../ingest.ts";

// The types live in ingest.ts (the stages' contracts); re-exported here.
export type {
  DecodedExemplar,
  DecodedHistogram,
  DecodedMetadata,
  ModelLabel,
  SeriesExtras,
  WriteExtras,
} from "../ingest.ts";

/** Index of each scalar in {@linkcode DecodedHistogram.scalars}. */
export const H_COUNT = 0, H_SUM = 1, H_ZERO_THRESHOLD = 2, H_ZERO_COUNT = 3;

/** The schema of histograms with custom bucket bounds. */
export const CUSTOM_BUCKETS_SCHEMA = -53;

/** Reset hints, as numbered on the wire. */
export const RESET_HINTS = ["unknown", "yes", "no", "gauge"] as const;

/** Metric types by wire number (both versions number them alike). */
export const METRIC_TYPES = [
  "unknown",
  "counter",
  "gauge",
  "histogram",
  "gaugehistogram",
  "summary",
  "info",
  "stateset",
] as const;

/** 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in ms (as decode.ts). */
const MIN_MS = -62135596800000;
const MAX_MS = 253402300799999;
const TWO_32 = 4294967296;
/** 2^53: integer counts above this cannot be held exactly. */
const MAX_EXACT = 9007199254740992;

/** Whether `t` is a timestamp the program accepts (years 0001..9999). */
export function validTimestamp(t: number): boolean {
  return t >= MIN_MS && t <= MAX_MS;
}

/** Growable little-endian words of doubles. */
class DoubleWords {
  words = new Uint32Array(16);
  n = 0;

  /** Appends the 8 bytes at the reader's position. */
  push(r: ProtoReader, end: number): void {
    if (2 * this.n + 2 > this.words.length) {
      const grown = new Uint32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    r.fixed64Into(end, this.words, this.n++);
  }

  /** The doubles, copied word for word. */
  toFloat64(): Float64Array {
    return new Float64Array(this.words.slice(0, 2 * this.n).buffer);
  }
}

/** Reads a uint64 varint exactly when below 2^53; throws naming `what` otherwise. */
function uint53(r: ProtoReader, end: number, what: string): number {
  const [lo, hi] = r.varint64(end);
  if (hi >= 0x200000) {
    throw new ProtoDecodeError(`${what} ${BigInt(hi) << 32n | BigInt(lo)} exceeds 2^53`);
  }
  return hi * TWO_32 + lo;
}

/** Reads a sint64 (zigzag) varint exactly when |value| < 2^52. */
function sint52(r: ProtoReader, end: number, what: string): number {
  const [lo, hi] = r.varint64(end);
  if (hi >= 0x200000) throw new ProtoDecodeError(`${what} is out of range (|value| >= 2^52)`);
  const u = hi * TWO_32 + lo;
  return lo & 1 ? -(u + 1) / 2 : u / 2;
}

/** Reads a sint32 (zigzag) varint. */
function sint32(r: ProtoReader, end: number): number {
  const n = r.uint32(end);
  return (n >>> 1) ^ -(n & 1);
}

/** Expected wire type of each known Histogram field, for errors. */
const HISTOGRAM_FIELDS: Record<number, [string, number]> = {
  1: ["count_int", WIRE_VARINT],
  2: ["count_float", WIRE_I64],
  3: ["sum", WIRE_I64],
  4: ["schema", WIRE_VARINT],
  5: ["zero_threshold", WIRE_I64],
  6: ["zero_count_int", WIRE_VARINT],
  7: ["zero_count_float", WIRE_I64],
  8: ["negative_spans", WIRE_LEN],
  11: ["positive_spans", WIRE_LEN],
  14: ["reset_hint", WIRE_VARINT],
  15: ["timestamp", WIRE_VARINT],
};
/** Repeated scalar fields: packed (LEN) or one element per key. */
const PACKABLE: Record<number, [string, number]> = {
  9: ["negative_deltas", WIRE_VARINT],
  10: ["negative_counts", WIRE_I64],
  12: ["positive_deltas", WIRE_VARINT],
  13: ["positive_counts", WIRE_I64],
  16: ["custom_values", WIRE_I64],
};

/** A wrong wire type for a known field. */
function wrongWire(message: string, field: number, name: string, got: number, want: number) {
  return new ProtoDecodeError(
    `${message}.${name} (field ${field}) has wire type ${wireTypeName(got)}, want ${
      wireTypeName(want)
    }`,
  );
}

/**
 * Reads one `Histogram` message ending at `end` (1.0 and 2.0 alike) and
 * validates it as Prometheus does before appending: a known schema, spans
 * that cover exactly the buckets sent, no negative bucket count, an integer
 * count at least the sum of its buckets, custom bounds strictly increasing.
 * Returns the histogram and its timestamp.
 */
export function parseHistogram(
  r: ProtoReader,
  end: number,
): { histogram: DecodedHistogram; timestamp: number } {
  const scalarWords = new Uint32Array(8);
  let countKind = 0; // 0 unset (integer 0), 1 integer, 2 float
  let zeroKind = 0;
  let countInt = 0;
  let zeroInt = 0;
  let schema = 0;
  let resetHint = 0;
  let timestamp = 0;
  const spans: [number[], number[]] = [[], []]; // negative, positive
  const deltas: [number[], number[]] = [[], []];
  const counts = [new DoubleWords(), new DoubleWords()];
  const custom = new DoubleWords();
  while (r.pos < end) {
    const key = r.tag(end);
    const field = key >>> 3;
    const wire = key & 7;
    const known = HISTOGRAM_FIELDS[field];
    if (known !== undefined) {
      if (wire !== known[1]) throw wrongWire("Histogram", field, known[0], wire, known[1]);
      switch (field) {
        case 1:
          countInt = uint53(r, end, "count");
          countKind = 1;
          break;
        case 2:
          r.fixed64Into(end, scalarWords, 0);
          countKind = 2;
          break;
        case 3:
          r.fixed64Into(end, scalarWords, 1);
          break;
        case 4:
          schema = sint32(r, end);
          break;
        case 5:
          r.fixed64Into(end, scalarWords, 2);
          break;
        case 6:
          zeroInt = uint53(r, end, "zero count");
          zeroKind = 1;
          break;
        case 7:
          r.fixed64Into(end, scalarWords, 3);
          zeroKind = 2;
          break;
        case 8:
        case 11: {
          const spanEnd = r.lenEnd(end);
          parseSpan(r, spanEnd, spans[field === 8 ? 0 : 1]);
          break;
        }
        case 14: {
          const hint = r.int64(end);
          // An open enum: a hint this program does not know means "test
          // for a reset explicitly", which is what 0 says.
          resetHint = hint >= 0 && hint <= 3 ? hint : 0;
          break;
        }
        case 15: {
          const start = r.pos;
          timestamp = r.int64(end);
          if (!validTimestamp(timestamp)) {
            throw new ProtoDecodeError(
              `histogram timestamp ${r.int64TextAt(start, end)} is outside years 0001..9999`,
            );
          }
          break;
        }
      }
      continue;
    }
    const packable = PACKABLE[field];
    if (packable === undefined) {
      r.skip(key, end);
      continue;
    }
    const [name, elemWire] = packable;
    if (wire !== WIRE_LEN && wire !== elemWire) {
      throw wrongWire("Histogram", field, name, wire, elemWire);
    }
    const packedEnd = wire === WIRE_LEN ? r.lenEnd(end) : -1;
    const stop = packedEnd < 0 ? end : packedEnd;
    do {
      if (field === 9 || field === 12) {
        deltas[field === 9 ? 0 : 1].push(sint52(r, stop, `${name} element`));
      } else {
        const target = field === 10 ? counts[0] : field === 13 ? counts[1] : custom;
        target.push(r, stop);
      }
    } while (packedEnd >= 0 && r.pos < packedEnd);
  }
  const float = countKind === 2;
  if (zeroKind !== 0 && (zeroKind === 2) !== float) {
    throw new ProtoDecodeError(
      float
        ? "histogram has a float count but an integer zero count"
        : "histogram has an integer count but a float zero count",
    );
  }
  const scalars = new Float64Array(scalarWords.buffer);
  if (!float) {
    scalars[H_COUNT] = countInt;
    scalars[H_ZERO_COUNT] = zeroInt;
  }
  if (schema !== CUSTOM_BUCKETS_SCHEMA && (schema < -4 || schema > 8)) {
    throw new ProtoDecodeError(`histogram schema ${schema} is not -4..8 or -53 (custom buckets)`);
  }
  const sides = ["negative", "positive"] as const;
  const bucketCounts: Float64Array[] = [];
  for (let s = 0; s < 2; s++) {
    const side = sides[s];
    let bucketSum = 0;
    let out: Float64Array;
    if (float) {
      if (deltas[s].length) {
        throw new ProtoDecodeError(`float histogram has integer ${side} bucket deltas`);
      }
      out = counts[s].toFloat64();
      for (let i = 0; i < out.length; i++) {
        if (out[i] < 0) {
          throw new ProtoDecodeError(`histogram ${side} bucket ${i} has negative count ${out[i]}`);
        }
      }
    } else {
      if (counts[s].n) {
        throw new ProtoDecodeError(`integer histogram has float ${side} bucket counts`);
      }
      out = new Float64Array(deltas[s].length);
      let c = 0;
      for (let i = 0; i < out.length; i++) {
        c += deltas[s][i];
        if (c < 0) {
          throw new ProtoDecodeError(`histogram ${side} bucket ${i} has negative count ${c}`);
        }
        if (c > MAX_EXACT) {
          throw new ProtoDecodeError(`histogram ${side} bucket ${i} count exceeds 2^53`);
        }
        out[i] = c;
        bucketSum += c;
      }
    }
    let covered = 0;
    const sp = spans[s];
    for (let i = 0; i < sp.length; i += 2) {
      if (i > 0 && sp[i] < 0) {
        throw new ProtoDecodeError(`histogram ${side} span ${i / 2} has negative offset ${sp[i]}`);
      }
      covered += sp[i + 1];
    }
    if (covered !== out.length) {
      throw new ProtoDecodeError(
        `histogram ${side} spans cover ${covered} buckets but ${out.length} ${side} ${
          float ? "counts" : "deltas"
        } were sent`,
      );
    }
    bucketCounts.push(out);
    if (!float && s === 1) {
      const total = bucketSum + countNegative(bucketCounts[0]) + zeroInt;
      if (countInt < total) {
        throw new ProtoDecodeError(
          `histogram count ${countInt} is less than the ${total} observations in its buckets`,
        );
      }
    }
  }
  const customValues = custom.toFloat64();
  if (schema === CUSTOM_BUCKETS_SCHEMA) {
    if (bucketCounts[0].length || spans[0].length) {
      throw new ProtoDecodeError("custom-bucket histogram has negative buckets");
    }
    if (scalars[H_ZERO_COUNT] !== 0 || scalars[H_ZERO_THRESHOLD] !== 0) {
      throw new ProtoDecodeError("custom-bucket histogram has a zero bucket");
    }
    for (let i = 0; i < customValues.length; i++) {
      const v = customValues[i];
      if (!(v < Infinity) || (i > 0 && !(v > customValues[i - 1]))) {
        throw new ProtoDecodeError(
          `custom bucket bound ${i} (${v}) is not finite and above the one before`,
        );
      }
    }
    // Bucket indexes run 0..len (len is the +Inf bucket).
    let idx = -1;
    const sp = spans[1];
    for (let i = 0; i < sp.length; i += 2) {
      idx += sp[i] + sp[i + 1];
      if (i === 0 && sp[0] < 0) {
        throw new ProtoDecodeError(`custom-bucket histogram span 0 has negative offset ${sp[0]}`);
      }
    }
    if (idx > customValues.length) {
      throw new ProtoDecodeError(
        `custom-bucket histogram refers to bucket ${idx} but has ${customValues.length} bounds`,
      );
    }
  } else if (customValues.length) {
    throw new ProtoDecodeError(`histogram of schema ${schema} has custom bucket bounds`);
  }
  return {
    histogram: {
      float,
      schema,
      resetHint,
      scalars,
      positiveSpans: Int32Array.from(spans[1]),
      positiveCounts: bucketCounts[1],
      negativeSpans: Int32Array.from(spans[0]),
      negativeCounts: bucketCounts[0],
      customValues,
    },
    timestamp,
  };
}

function countNegative(counts: Float64Array): number {
  let n = 0;
  for (let i = 0; i < counts.length; i++) n += counts[i];
  return n;
}

/** Reads one BucketSpan (offset sint32 = 1, length uint32 = 2) into `out` as a pair. */
function parseSpan(r: ProtoReader, end: number, out: number[]): void {
  let offset = 0;
  let length = 0;
  while (r.pos < end) {
    const key = r.tag(end);
    const field = key >>> 3;
    if (field === 1 || field === 2) {
      if ((key & 7) !== WIRE_VARINT) {
        throw wrongWire("BucketSpan", field, field === 1 ? "offset" : "length", key & 7, 0);
      }
      if (field === 1) offset = sint32(r, end);
      else {
        length = r.uint32(end);
        if (length > 0x7fffffff) {
          throw new ProtoDecodeError(`histogram span length ${length} exceeds 2^31-1`);
        }
      }
    } else r.skip(key, end);
  }
  out.push(offset, length);
}

/**
 * The presence value of a histogram sample, as 2 words at `index` of
 * `words`: its count, or the staleness marker when its sum is one (how
 * Prometheus marks a histogram series stale).
 */
export function presenceWords(h: DecodedHistogram, words: Uint32Array, index: number): void {
  const s = new Uint32Array(h.scalars.buffer, h.scalars.byteOffset, 8);
  if (s[2] === 0x00000002 && s[3] === 0x7ff00000) {
    words[2 * index] = s[2];
    words[2 * index + 1] = s[3];
  } else {
    words[2 * index] = s[0];
    words[2 * index + 1] = s[1];
  }
}

/**
 * Reads the labels of a 1.0 `Exemplar` label (`Label`: name = 1, value = 2)
 * ending at `end` into `out`. `maxLabelBytes` bounds each string.
 */
function parseLabel1(r: ProtoReader, end: number, maxLabelBytes: number): ModelLabel {
  let name = "";
  let value = "";
  while (r.pos < end) {
    const key = r.tag(end);
    const field = key >>> 3;
    if (field === 1 || field === 2) {
      if ((key & 7) !== WIRE_LEN) {
        throw wrongWire("Label", field, field === 1 ? "name" : "value", key & 7, WIRE_LEN);
      }
      const strEnd = r.lenEnd(end);
      const text = labelText(r.buf, r.pos, strEnd, maxLabelBytes, field === 1 ? "name" : "value");
      r.pos = strEnd;
      if (field === 1) name = text;
      else value = text;
    } else r.skip(key, end);
  }
  return { name, value };
}

/** Decodes an exemplar label string, or throws saying why it cannot be stored. */
export function labelText(
  buf: Uint8Array,
  start: number,
  end: number,
  maxLabelBytes: number,
  what: string,
): string {
  if (end - start > maxLabelBytes) {
    throw new ProtoDecodeError(
      `exemplar label ${what} of ${end - start} bytes exceeds limit ${maxLabelBytes}`,
    );
  }
  const text = decodeText(buf, start, end);
  if (text === undefined) {
    throw new ProtoDecodeError(
      buf.subarray(start, end).includes(0)
        ? `exemplar label ${what} contains a NUL character`
        : `exemplar label ${what} is not valid UTF-8`,
    );
  }
  return text;
}

/**
 * Sorts exemplar labels, drops empty values, refuses empty or repeated
 * names (as for series labels).
 */
export function normalizeExemplarLabels(labels: ModelLabel[]): ModelLabel[] {
  const out = labels.filter((l) => l.value !== "");
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 0; i < out.length; i++) {
    if (out[i].name === "") throw new ProtoDecodeError("exemplar has an empty label name");
    if (i > 0 && out[i].name === out[i - 1].name) {
      throw new ProtoDecodeError(
        `exemplar has duplicate label name ${JSON.stringify(out[i].name)}`,
      );
    }
  }
  return out;
}

/**
 * Reads one 1.0 `Exemplar` (labels = 1, value = 2, timestamp = 3) ending at
 * `end`; its value goes to `values` at `index` (bit for bit).
 */
export function parseExemplar1(
  r: ProtoReader,
  end: number,
  values: DoubleSink,
  maxLabels: number,
  maxLabelBytes: number,
): DecodedExemplar {
  const labels: ModelLabel[] = [];
  let timestamp = 0;
  let hasValue = false;
  const index = values.reserve();
  while (r.pos < end) {
    const key = r.tag(end);
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1) {
      if (wire !== WIRE_LEN) throw wrongWire("Exemplar", 1, "labels", wire, WIRE_LEN);
      if (labels.length === maxLabels) {
        throw new ProtoDecodeError(`exemplar has more than ${maxLabels} labels`);
      }
      const labelEnd = r.lenEnd(end);
      labels.push(parseLabel1(r, labelEnd, maxLabelBytes));
    } else if (field === 2) {
      if (wire !== WIRE_I64) throw wrongWire("Exemplar", 2, "value", wire, WIRE_I64);
      r.fixed64Into(end, values.words, index);
      hasValue = true;
    } else if (field === 3) {
      if (wire !== WIRE_VARINT) throw wrongWire("Exemplar", 3, "timestamp", wire, WIRE_VARINT);
      const start = r.pos;
      timestamp = r.int64(end);
      if (!validTimestamp(timestamp)) {
        throw new ProtoDecodeError(
          `exemplar timestamp ${r.int64TextAt(start, end)} is outside years 0001..9999`,
        );
      }
    } else r.skip(key, end);
  }
  if (!hasValue) {
    values.words[2 * index] = 0;
    values.words[2 * index + 1] = 0;
  }
  return { labels: normalizeExemplarLabels(labels), timestamp };
}

/** Growable storage for exemplar values, as words (see DoubleWords). */
export class DoubleSink {
  words = new Uint32Array(8);
  n = 0;

  /** Makes room for one more double; returns its index. */
  reserve(): number {
    if (2 * this.n + 2 > this.words.length) {
      const grown = new Uint32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    return this.n++;
  }

  /** The doubles from `from` on, copied word for word. */
  slice(from: number): Float64Array {
    return new Float64Array(this.words.slice(2 * from, 2 * this.n).buffer);
  }
}

/**
 * Reads one 1.0 `MetricMetadata` (type = 1, metric_family_name = 2,
 * help = 4, unit = 5) ending at `end`. Undefined when it names no metric.
 */
export function parseMetadata1(
  r: ProtoReader,
  end: number,
  maxTextBytes: number,
): DecodedMetadata | undefined {
  let type = 0;
  let metric = "";
  let help = "";
  let unit = "";
  while (r.pos < end) {
    const key = r.tag(end);
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1) {
      if (wire !== WIRE_VARINT) throw wrongWire("MetricMetadata", 1, "type", wire, WIRE_VARINT);
      const t = r.int64(end);
      type = t >= 0 && t < METRIC_TYPES.length ? t : 0;
    } else if (field === 2 || field === 4 || field === 5) {
      const name = field === 2 ? "metric_family_name" : field === 4 ? "help" : "unit";
      if (wire !== WIRE_LEN) throw wrongWire("MetricMetadata", field, name, wire, WIRE_LEN);
      const strEnd = r.lenEnd(end);
      const text = metadataText(r.buf, r.pos, strEnd, maxTextBytes, name);
      r.pos = strEnd;
      if (field === 2) metric = text;
      else if (field === 4) help = text;
      else unit = text;
    } else r.skip(key, end);
  }
  if (metric === "") return undefined;
  return { metric, type: METRIC_TYPES[type], help, unit };
}

/** Decodes a metadata string, or throws saying why it cannot be stored. */
export function metadataText(
  buf: Uint8Array,
  start: number,
  end: number,
  maxBytes: number,
  what: string,
): string {
  if (end - start > maxBytes) {
    throw new ProtoDecodeError(
      `metadata ${what} of ${end - start} bytes exceeds limit ${maxBytes}`,
    );
  }
  const text = decodeText(buf, start, end);
  if (text === undefined) {
    throw new ProtoDecodeError(
      buf.subarray(start, end).includes(0)
        ? `metadata ${what} contains a NUL character`
        : `metadata ${what} is not valid UTF-8`,
    );
  }
  return text;
}
