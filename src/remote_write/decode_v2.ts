/**
 * Decodes a Prometheus remote write 2.0 body: snappy block format around an
 * `io.prometheus.write.v2.Request`
 * (https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/). Knows
 * nothing of HTTP; returns the same validated series as the 1.0 decoder
 * (`decode.ts`), with histograms, exemplars, metadata and created
 * timestamps (`data_model.ts`), or throws a {@linkcode BadRequestError}
 * whose one-line message says what is wrong.
 *
 * 2.0 refers to every string by its index in the request's symbol table.
 * Fields may come in any order, so a first pass over the top level notes
 * where each symbol and series lies (no string is decoded), then each
 * series is parsed; a symbol is decoded once, when first referenced, and a
 * label (a pair of references) is one object for the whole request.
 *
 * Checks, each a 400 naming the series: references within the table, an
 * even number of label references, sorted unique non-empty label names with
 * `__name__`, samples or histograms but not both, timestamps within years
 * 0001..9999, histograms as in `data_model.ts`; the symbol table must begin
 * with the empty string. Sizes are bounded by the input: nothing is
 * allocated for a count the sender declares.
 *
 * @module
 */
import { BadRequestError } from "../errors.ts";
import type { WriteCounts } from "../limits.ts";
import {
  type DecodedExemplar,
  type DecodedHistogram,
  type DecodedMetadata,
  DoubleSink,
  metadataText,
  METRIC_TYPES,
  type ModelLabel,
  normalizeExemplarLabels,
  parseHistogram,
  presenceWords,
  type SeriesExtras,
  validTimestamp,
  type WriteExtras,
} from "./data_model.ts";
import {
  type DecodeLimits,
  DEFAULT_MAX_LABEL_BYTES,
  DEFAULT_MAX_LABELS_PER_SERIES,
} from "./decode.ts";
import type { DecodedSeries, DecodedWrite } from "../ingest.ts";
import { uncompressSnappyBlock } from "../wire/snappy.ts";
import {
  decodeText,
  ProtoDecodeError,
  ProtoReader,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
  wireTypeName,
} from "../wire/protowire.ts";

/** A series of a 2.0 request: float samples, or histogram samples, and what goes with them. */
export type DecodedSeriesV2 = DecodedSeries & SeriesExtras;

/** A decoded 2.0 request. `samples` counts float samples only. */
export interface DecodedWriteV2 extends DecodedWrite, WriteExtras {
  series: DecodedSeriesV2[];
  histograms: number;
  exemplars: number;
  metadata: DecodedMetadata[];
}

const METRIC_NAME = "__name__";
const EMPTY = new Float64Array(0);

/**
 * Decodes a snappy-compressed `io.prometheus.write.v2.Request`.
 *
 * @throws {BadRequestError}
 */
export function decodeWriteRequestV2(compressed: Uint8Array, limits: DecodeLimits): DecodedWriteV2 {
  const raw = uncompressSnappyBlock(compressed, limits.maxDecodedBytes, "write request");
  return parseWriteRequestV2(raw, limits);
}

/**
 * Decodes an uncompressed `io.prometheus.write.v2.Request`.
 *
 * @throws {BadRequestError}
 */
export function parseWriteRequestV2(raw: Uint8Array, limits: DecodeLimits): DecodedWriteV2 {
  const parser = new V2Parser(raw, limits);
  try {
    return parser.parse();
  } catch (err) {
    if (err instanceof ProtoDecodeError) {
      const where = parser.seriesIndex >= 0 ? `series ${parser.seriesIndex}: ` : "";
      throw new BadRequestError(`Cannot decode write request: ${where}${err.message}`);
    }
    throw err;
  }
}

// Keys (field << 3 | wire type) read on the fast path.
const KEY_SYMBOLS = 4 << 3 | WIRE_LEN;
const KEY_TIMESERIES = 5 << 3 | WIRE_LEN;
const KEY_SAMPLE_VALUE = 1 << 3 | WIRE_I64;
const KEY_SAMPLE_TIMESTAMP = 2 << 3 | WIRE_VARINT;

/** Expected wire types of known fields, for precise errors. */
const KNOWN: Record<string, Record<number, [string, number[]]>> = {
  Request: { 4: ["symbols", [WIRE_LEN]], 5: ["timeseries", [WIRE_LEN]] },
  TimeSeries: {
    1: ["labels_refs", [WIRE_LEN, WIRE_VARINT]],
    2: ["samples", [WIRE_LEN]],
    3: ["histograms", [WIRE_LEN]],
    4: ["exemplars", [WIRE_LEN]],
    5: ["metadata", [WIRE_LEN]],
    6: ["created_timestamp", [WIRE_VARINT]],
  },
  Sample: {
    1: ["value", [WIRE_I64]],
    2: ["timestamp", [WIRE_VARINT]],
    3: ["start_timestamp", [WIRE_VARINT]],
  },
  Exemplar: {
    1: ["labels_refs", [WIRE_LEN, WIRE_VARINT]],
    2: ["value", [WIRE_I64]],
    3: ["timestamp", [WIRE_VARINT]],
  },
  Metadata: {
    1: ["type", [WIRE_VARINT]],
    3: ["help_ref", [WIRE_VARINT]],
    4: ["unit_ref", [WIRE_VARINT]],
  },
};

function checkKnown(message: string, key: number): void {
  const known = KNOWN[message][key >>> 3];
  if (known !== undefined && !known[1].includes(key & 7)) {
    throw new ProtoDecodeError(
      `${message}.${known[0]} (field ${key >>> 3}) has wire type ${wireTypeName(key & 7)}, want ${
        known[1].map(wireTypeName).join(" or ")
      }`,
    );
  }
}

function byName(a: ModelLabel, b: ModelLabel): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? s.slice(0, 100) + "…" : s);
}

/** One parse of one request; not reused. */
class V2Parser {
  seriesIndex = -1;
  private readonly r: ProtoReader;
  private readonly maxLabels: number;
  private readonly maxLabelBytes: number;
  /** Byte ranges of the symbols, and their text once decoded. */
  private symStart = new Int32Array(64);
  private symEnd = new Int32Array(64);
  private symCount = 0;
  private readonly symText: (string | undefined)[] = [];
  /** One label object per (name ref, value ref) pair. */
  private readonly labelCache = new Map<number, ModelLabel>();
  /** Sample and presence values of all series, as words. */
  private words: Uint32Array;
  private valueCount = 0;
  private readonly exemplarValues = new DoubleSink();
  /** Label references of the series (0) and of the exemplar (1) being parsed. */
  private refs = [new Uint32Array(64), new Uint32Array(16)];

  constructor(raw: Uint8Array, limits: DecodeLimits) {
    this.r = new ProtoReader(raw);
    this.maxLabels = limits.maxLabelsPerSeries ?? DEFAULT_MAX_LABELS_PER_SERIES;
    this.maxLabelBytes = limits.maxLabelBytes ?? DEFAULT_MAX_LABEL_BYTES;
    this.words = new Uint32Array(2 * Math.max(64, Math.min(raw.length >>> 3, 1 << 16)));
  }

  parse(): DecodedWriteV2 {
    const r = this.r;
    const end = r.buf.length;
    // Pass 1: where the symbols and the series are.
    let seriesStart = new Int32Array(64);
    let seriesEnd = new Int32Array(64);
    let seriesCount = 0;
    while (r.pos < end) {
      const key = r.tag(end);
      if (key === KEY_SYMBOLS) {
        const e = r.lenEnd(end);
        if (this.symCount === this.symStart.length) {
          this.symStart = grow(this.symStart);
          this.symEnd = grow(this.symEnd);
        }
        this.symStart[this.symCount] = r.pos;
        this.symEnd[this.symCount++] = e;
        r.pos = e;
      } else if (key === KEY_TIMESERIES) {
        const e = r.lenEnd(end);
        if (seriesCount === seriesStart.length) {
          seriesStart = grow(seriesStart);
          seriesEnd = grow(seriesEnd);
        }
        seriesStart[seriesCount] = r.pos;
        seriesEnd[seriesCount++] = e;
        r.pos = e;
      } else {
        checkKnown("Request", key);
        r.skip(key, end);
      }
    }
    if (this.symCount > 0 && this.symEnd[0] !== this.symStart[0]) {
      throw new ProtoDecodeError(
        `the symbol table must begin with the empty string, not ${quote(this.symbol(0))}`,
      );
    }
    // Pass 2: the series.
    const series: DecodedSeriesV2[] = [];
    const starts: number[] = [];
    const metadata = new Map<string, DecodedMetadata>();
    let histograms = 0;
    let exemplars = 0;
    for (let i = 0; i < seriesCount; i++) {
      this.seriesIndex = i;
      const start = this.valueCount;
      r.pos = seriesStart[i];
      const s = this.parseSeries(seriesEnd[i], metadata);
      if (s === undefined) continue;
      if (s.histograms) histograms += s.histograms.length;
      if (s.exemplars) exemplars += s.exemplars.length;
      series.push(s);
      starts.push(start);
    }
    this.seriesIndex = -1;
    const values = new Float64Array(this.words.buffer, 0, this.valueCount).slice();
    let samples = 0;
    for (let i = 0; i < series.length; i++) {
      const s = series[i];
      const n = s.timestamps.length;
      s.values = n ? values.subarray(starts[i], starts[i] + n) : EMPTY;
      if (!s.histograms) samples += n;
    }
    return { series, samples, histograms, exemplars, metadata: [...metadata.values()] };
  }

  /** The text of symbol `ref` (decoded once), checked to be storable. */
  private symbol(ref: number): string {
    let t = this.symText[ref];
    if (t === undefined) {
      const start = this.symStart[ref];
      const end = this.symEnd[ref];
      t = decodeText(this.r.buf, start, end);
      if (t === undefined) {
        throw new ProtoDecodeError(
          this.r.buf.subarray(start, end).includes(0)
            ? `symbol ${ref} contains a NUL character`
            : `symbol ${ref} is not valid UTF-8`,
        );
      }
      this.symText[ref] = t;
    }
    return t;
  }

  private checkRef(ref: number, what: string): void {
    if (ref >= this.symCount) {
      throw new ProtoDecodeError(
        `${what} refers to symbol ${ref} but the table has ${this.symCount} symbols`,
      );
    }
  }

  /** A label from two references, one object per pair in a request. */
  private label(nameRef: number, valueRef: number): ModelLabel {
    const key = nameRef * this.symCount + valueRef;
    let l = this.labelCache.get(key);
    if (l === undefined) {
      this.checkRef(nameRef, "a label name");
      this.checkRef(valueRef, "a label value");
      const max = this.maxLabelBytes;
      const nameLen = this.symEnd[nameRef] - this.symStart[nameRef];
      if (nameLen > max) {
        throw new ProtoDecodeError(`a label name of ${nameLen} bytes exceeds limit ${max}`);
      }
      const valueLen = this.symEnd[valueRef] - this.symStart[valueRef];
      if (valueLen > max) {
        throw new ProtoDecodeError(
          `the value of label ${quote(this.symbol(nameRef))} has ${valueLen} bytes, limit ${max}`,
        );
      }
      l = { name: this.symbol(nameRef), value: this.symbol(valueRef) };
      this.labelCache.set(key, l);
    }
    return l;
  }

  /** Reads label references (packed or not) at the reader into `this.refs` from `n`. */
  private readRefs(
    key: number,
    end: number,
    n: number,
    max: number,
    what: string,
    buffer: 0 | 1,
  ): number {
    const r = this.r;
    const stop = (key & 7) === WIRE_LEN ? r.lenEnd(end) : -1;
    let refs = this.refs[buffer];
    do {
      if (n === max) throw new ProtoDecodeError(`${what} has more than ${max / 2} labels`);
      if (n === refs.length) refs = this.refs[buffer] = growU(refs);
      refs[n++] = r.uint32(stop < 0 ? end : stop);
    } while (stop >= 0 && r.pos < stop);
    return n;
  }

  /** Builds the labels of `n` references in `this.refs[buffer]`. */
  private labelsOf(n: number, what: string, buffer: 0 | 1): ModelLabel[] {
    if (n % 2) throw new ProtoDecodeError(`${what} has an odd number (${n}) of label references`);
    const refs = this.refs[buffer];
    const labels: ModelLabel[] = new Array(n / 2);
    for (let i = 0; i < n; i += 2) labels[i / 2] = this.label(refs[i], refs[i + 1]);
    return labels;
  }

  private parseSeries(
    end: number,
    metadata: Map<string, DecodedMetadata>,
  ): DecodedSeriesV2 | undefined {
    const r = this.r;
    const buf = r.buf;
    const view = r.view;
    let nRefs = 0;
    let timestamps: number[] | undefined;
    let t0 = 0;
    let sampleCount = 0;
    let histograms: DecodedHistogram[] | undefined;
    let exemplars: DecodedExemplar[] | undefined;
    let exemplarFrom = -1;
    let created: number[] | undefined;
    let meta: [number, number, number] | undefined;
    const addCreated = (t: number, start: number, stop: number) => {
      if (t === 0) return; // 0 means unset
      if (!validTimestamp(t)) {
        throw new ProtoDecodeError(
          `created timestamp ${r.int64TextAt(start, stop)} is outside years 0001..9999`,
        );
      }
      if (!created) created = [t];
      else if (!created.includes(t)) created.push(t);
    };
    const addTime = (t: number) => {
      if (sampleCount === 0) t0 = t;
      else if (sampleCount === 1) timestamps = [t0, t];
      else timestamps!.push(t);
      sampleCount++;
    };
    while (r.pos < end) {
      const key = r.tag(end);
      const field = key >>> 3;
      if (field === 1) {
        checkKnown("TimeSeries", key);
        nRefs = this.readRefs(key, end, nRefs, 2 * this.maxLabels, "the series", 0);
      } else if (key === (2 << 3 | WIRE_LEN)) {
        if (histograms) throw new ProtoDecodeError("has both samples and histograms");
        const sampleEnd = r.lenEnd(end);
        let pos = r.pos;
        const i = this.valueCount;
        if (2 * i + 2 > this.words.length) this.growWords();
        const words = this.words;
        words[2 * i] = 0;
        words[2 * i + 1] = 0;
        let t = 0;
        while (pos < sampleEnd) {
          let k = buf[pos];
          if (k === KEY_SAMPLE_VALUE && sampleEnd - pos > 8) {
            words[2 * i] = view.getUint32(pos + 1, true);
            words[2 * i + 1] = view.getUint32(pos + 5, true);
            pos += 9;
            continue;
          }
          r.pos = pos;
          k = r.tag(sampleEnd);
          if (k === KEY_SAMPLE_VALUE) {
            r.fixed64Into(sampleEnd, words, i);
          } else if (k === KEY_SAMPLE_TIMESTAMP || k === (3 << 3 | WIRE_VARINT)) {
            const start = r.pos;
            const v = r.int64(sampleEnd);
            if (k === KEY_SAMPLE_TIMESTAMP) {
              if (!validTimestamp(v)) {
                throw new ProtoDecodeError(
                  `sample timestamp ${r.int64TextAt(start, sampleEnd)} is outside years 0001..9999`,
                );
              }
              t = v;
            } else addCreated(v, start, sampleEnd);
          } else {
            checkKnown("Sample", k);
            r.skip(k, sampleEnd);
          }
          pos = r.pos;
        }
        r.pos = pos;
        addTime(t);
        this.valueCount = i + 1;
      } else if (key === (3 << 3 | WIRE_LEN)) {
        if (sampleCount > 0 && !histograms) {
          throw new ProtoDecodeError("has both samples and histograms");
        }
        const hEnd = r.lenEnd(end);
        histograms ??= [];
        let parsed;
        try {
          parsed = parseHistogram(r, hEnd);
        } catch (err) {
          if (err instanceof ProtoDecodeError) {
            throw new ProtoDecodeError(`histogram ${histograms.length}: ${err.message}`);
          }
          throw err;
        }
        histograms.push(parsed.histogram);
        const i = this.valueCount;
        if (2 * i + 2 > this.words.length) this.growWords();
        presenceWords(parsed.histogram, this.words, i);
        this.valueCount = i + 1;
        addTime(parsed.timestamp);
      } else if (key === (4 << 3 | WIRE_LEN)) {
        const exEnd = r.lenEnd(end);
        exemplars ??= [];
        if (exemplarFrom < 0) exemplarFrom = this.exemplarValues.n;
        exemplars.push(this.parseExemplar(exEnd, exemplars.length));
      } else if (key === (5 << 3 | WIRE_LEN)) {
        const mEnd = r.lenEnd(end);
        meta = this.parseMetadata(mEnd);
      } else if (key === (6 << 3 | WIRE_VARINT)) {
        const start = r.pos;
        addCreated(r.int64(end), start, end);
      } else {
        checkKnown("TimeSeries", key);
        r.skip(key, end);
      }
    }
    const labels = this.seriesLabels(nRefs);
    const name = labels.find((l) => l.name === METRIC_NAME)!.value;
    if (meta) {
      const [type, helpRef, unitRef] = meta;
      const help = this.metaText(helpRef, "help");
      const unit = this.metaText(unitRef, "unit");
      if (type !== 0 || help !== "" || unit !== "") {
        metadata.delete(name); // keep the order of last appearance
        metadata.set(name, { metric: name, type: METRIC_TYPES[type], help, unit });
      }
    }
    if (sampleCount === 0 && !exemplars && !created) return undefined;
    const s: DecodedSeriesV2 = {
      labels,
      timestamps: sampleCount === 0 ? [] : timestamps ?? [t0],
      values: EMPTY,
    };
    if (histograms) s.histograms = histograms;
    if (exemplars) {
      s.exemplars = exemplars;
      s.exemplarValues = this.exemplarValues.slice(exemplarFrom);
    }
    if (created) s.created = created;
    return s;
  }

  /** The series' labels: sorted (sorted here if they were not), unique, with `__name__`. */
  private seriesLabels(nRefs: number): ModelLabel[] {
    if (nRefs === 0) throw new ProtoDecodeError("has no labels");
    let labels = this.labelsOf(nRefs, "the series", 0);
    let sorted = true;
    let empty = false;
    let hasName = false;
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      if (l.name === "") throw new ProtoDecodeError("has an empty label name");
      if (i > 0 && !(labels[i - 1].name < l.name)) sorted = false;
      if (l.value === "") empty = true;
      else if (l.name === METRIC_NAME) hasName = true;
    }
    if (!sorted) {
      labels.sort(byName);
      for (let i = 1; i < labels.length; i++) {
        if (labels[i].name === labels[i - 1].name) {
          throw new ProtoDecodeError(`has duplicate label name ${quote(labels[i].name)}`);
        }
      }
    }
    if (!hasName) {
      throw new ProtoDecodeError(
        labels.some((l) => l.name === METRIC_NAME)
          ? `has an empty ${METRIC_NAME} label`
          : `has no ${METRIC_NAME} label`,
      );
    }
    // In Prometheus an empty value means the label is absent.
    if (empty) labels = labels.filter((l) => l.value !== "");
    return labels;
  }

  private parseExemplar(end: number, index: number): DecodedExemplar {
    const r = this.r;
    let n = 0;
    let timestamp = 0;
    const sink = this.exemplarValues;
    const v = sink.reserve();
    sink.words[2 * v] = 0;
    sink.words[2 * v + 1] = 0;
    try {
      while (r.pos < end) {
        const key = r.tag(end);
        const field = key >>> 3;
        checkKnown("Exemplar", key);
        if (field === 1) n = this.readRefs(key, end, n, 2 * this.maxLabels, "the exemplar", 1);
        else if (field === 2) r.fixed64Into(end, sink.words, v);
        else if (field === 3) {
          const start = r.pos;
          timestamp = r.int64(end);
          if (!validTimestamp(timestamp)) {
            throw new ProtoDecodeError(
              `timestamp ${r.int64TextAt(start, end)} is outside years 0001..9999`,
            );
          }
        } else r.skip(key, end);
      }
      return { labels: normalizeExemplarLabels(this.labelsOf(n, "the exemplar", 1)), timestamp };
    } catch (err) {
      if (err instanceof ProtoDecodeError && !err.message.startsWith("exemplar")) {
        throw new ProtoDecodeError(`exemplar ${index}: ${err.message}`);
      }
      throw err;
    }
  }

  private parseMetadata(end: number): [number, number, number] {
    const r = this.r;
    let type = 0, help = 0, unit = 0;
    while (r.pos < end) {
      const key = r.tag(end);
      const field = key >>> 3;
      checkKnown("Metadata", key);
      if (field === 1) {
        const t = r.int64(end);
        type = t >= 0 && t < METRIC_TYPES.length ? t : 0;
      } else if (field === 3) help = r.uint32(end);
      else if (field === 4) unit = r.uint32(end);
      else r.skip(key, end);
    }
    return [type, help, unit];
  }

  private metaText(ref: number, what: string): string {
    if (ref === 0 && this.symCount === 0) return "";
    this.checkRef(ref, `the metadata ${what}`);
    return metadataText(
      this.r.buf,
      this.symStart[ref],
      this.symEnd[ref],
      1 << 20,
      what,
    );
  }

  private growWords(): void {
    const grown = new Uint32Array(this.words.length * 2);
    grown.set(this.words);
    this.words = grown;
  }
}

function grow(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const g = new Int32Array(a.length * 2);
  g.set(a);
  return g;
}

function growU(a: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const g = new Uint32Array(a.length * 2);
  g.set(a);
  return g;
}

/**
 * Counts the series, labels, samples, histograms and exemplars of an
 * uncompressed `io.prometheus.write.v2.Request` without decoding them
 * (no allocation), for the per-request limits and the memory budget
 * (`src/limits.ts`, whose 1.0 scan this mirrors). A malformed message is
 * counted as far as it goes: the decoder reports what is wrong with it.
 */
export function scanWriteRequestV2(raw: Uint8Array): WriteCounts {
  const r = new ProtoReader(raw);
  const counts = { series: 0, labels: 0, samples: 0, histograms: 0, exemplars: 0 };
  const end = raw.length;
  try {
    while (r.pos < end) {
      const key = r.tag(end);
      if (key !== KEY_TIMESERIES) {
        r.skip(key, end);
        continue;
      }
      const seriesEnd = r.lenEnd(end);
      counts.series++;
      while (r.pos < seriesEnd) {
        const k = r.tag(seriesEnd);
        if (k === (1 << 3 | WIRE_LEN)) {
          // Packed references: one per varint (a byte below 0x80 ends one).
          const e = r.lenEnd(seriesEnd);
          let refs = 0;
          for (let p = r.pos; p < e; p++) if (raw[p] < 0x80) refs++;
          counts.labels += refs >>> 1;
          r.pos = e;
          continue;
        }
        if (k === (1 << 3 | WIRE_VARINT)) counts.labels += 0.5;
        else if (k === (2 << 3 | WIRE_LEN)) counts.samples++;
        else if (k === (3 << 3 | WIRE_LEN)) counts.histograms++;
        else if (k === (4 << 3 | WIRE_LEN)) counts.exemplars++;
        r.skip(k, seriesEnd);
      }
    }
  } catch (err) {
    if (!(err instanceof ProtoDecodeError)) throw err;
  }
  counts.labels = Math.ceil(counts.labels);
  return counts;
}
