/**
 * Decodes a Prometheus remote write 1.0 body: snappy block format around a
 * `prometheus.WriteRequest` (https://prometheus.io/docs/specs/prw/remote_write_spec/).
 * Knows nothing of HTTP: it takes bytes and limits and returns validated
 * series, or throws a {@linkcode BadRequestError} (400: Prometheus must not
 * retry) whose one-line message says what was wrong.
 *
 * Order of work, each step bounded by the previous one:
 * 1. the snappy header's declared length against `maxDecodedBytes`, before
 *    allocating anything (a crafted header may declare 4 GiB);
 * 2. one pass over the snappy stream that decompresses it and proves that it
 *    expands to exactly that many bytes (the output is allocated at most
 *    64/3 times the input: what the stream could expand to at best);
 * 3. a hand-written protobuf walk (protobufjs reflection is several times
 *    slower) that validates every length, wire type, string and timestamp;
 * 4. label rules per series, as Prometheus's own write handler applies them.
 *
 * Speed: series in one request mostly repeat the label names
 * and many values of the series before them, so a label string whose bytes
 * equal those in the same position of the previous series reuses that
 * string instead of decoding again, and a label whose name and value are
 * both reused reuses the label object. Series of one sample (nearly all)
 * allocate no growable arrays for it. Nothing outlives the call: no intern
 * table, no state between requests.
 *
 * @module
 */
import { BadRequestError } from "../errors.ts";
import {
  type DecodedSeries,
  type DecodedWrite,
  type Label,
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
} from "../ingest.ts";
import { uncompressSnappyBlock } from "../wire/snappy.ts";
import {
  type DecodedExemplar,
  type DecodedHistogram,
  type DecodedMetadata,
  DoubleSink,
  parseExemplar1,
  parseHistogram,
  parseMetadata1,
  presenceWords,
} from "./data_model.ts";
import {
  decodeText,
  ProtoDecodeError,
  ProtoReader,
  WIRE_LEN,
  wireTypeName,
} from "../wire/protowire.ts";

/** Size limits for {@linkcode decodeWriteRequest}. */
export interface DecodeLimits {
  /** Largest decompressed size accepted, checked against the snappy header. */
  maxDecodedBytes: number;
  /** Most labels in one series, counted as sent. Default {@linkcode DEFAULT_MAX_LABELS_PER_SERIES}. */
  maxLabelsPerSeries?: number;
  /** Longest label name or value in UTF-8 bytes. Default {@linkcode DEFAULT_MAX_LABEL_BYTES}. */
  maxLabelBytes?: number;
}

/** Default of {@linkcode DecodeLimits.maxLabelsPerSeries}. */
export const DEFAULT_MAX_LABELS_PER_SERIES = 4096;
/** Default of {@linkcode DecodeLimits.maxLabelBytes}: 64 KiB. */
export const DEFAULT_MAX_LABEL_BYTES = 64 * 1024;
const METRIC_NAME = "__name__";
const EMPTY_VALUES = new Float64Array(0);

// Value words are written through a Uint32Array over a Float64Array, low
// word first: that is the double's layout on a little-endian machine, which
// is every machine Deno runs on.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("decode.ts assumes a little-endian machine");
}

/**
 * Decodes a snappy-compressed `prometheus.WriteRequest`.
 *
 * Series are numbered from 0 in wire order in error messages, counting
 * series that are later dropped for having no samples.
 *
 * @throws {BadRequestError} when the body can never be stored, e.g.
 *   `Cannot decode write request: series 3 has duplicate label name "job"`.
 */
export function decodeWriteRequest(compressed: Uint8Array, limits: DecodeLimits): DecodedWrite {
  const raw = uncompressSnappyBlock(compressed, limits.maxDecodedBytes, "write request");
  return parseWriteRequest(raw, limits);
}

/**
 * Decodes an uncompressed `prometheus.WriteRequest` (the protobuf inside the
 * snappy block), with the checks of {@linkcode decodeWriteRequest}.
 *
 * @throws {BadRequestError}
 */
export function parseWriteRequest(raw: Uint8Array, limits: DecodeLimits): DecodedWrite {
  const parser = new WriteRequestParser(raw, limits);
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

// Field keys (field number << 3 | wire type) of the fields we read.
const KEY_WRITE_TIMESERIES = 1 << 3 | WIRE_LEN; // WriteRequest.timeseries
const KEY_SERIES_LABELS = 1 << 3 | WIRE_LEN; // TimeSeries.labels
const KEY_SERIES_SAMPLES = 2 << 3 | WIRE_LEN; // TimeSeries.samples
const KEY_LABEL_NAME = 1 << 3 | WIRE_LEN; // Label.name
const KEY_LABEL_VALUE = 2 << 3 | WIRE_LEN; // Label.value
const KEY_SAMPLE_VALUE = 1 << 3 | 1; // Sample.value, double (I64)
const KEY_SAMPLE_TIMESTAMP = 2 << 3 | 0; // Sample.timestamp, int64 (VARINT)
const KEY_WRITE_METADATA = 3 << 3 | WIRE_LEN; // WriteRequest.metadata
const KEY_SERIES_EXEMPLARS = 3 << 3 | WIRE_LEN; // TimeSeries.exemplars
const KEY_SERIES_HISTOGRAMS = 4 << 3 | WIRE_LEN; // TimeSeries.histograms

/** The expected wire type of each known field, by message, for errors. */
const KNOWN_FIELDS: Record<string, Record<number, [string, number]>> = {
  WriteRequest: { 1: ["timeseries", WIRE_LEN], 3: ["metadata", WIRE_LEN] },
  TimeSeries: {
    1: ["labels", WIRE_LEN],
    2: ["samples", WIRE_LEN],
    3: ["exemplars", WIRE_LEN],
    4: ["histograms", WIRE_LEN],
  },
  Label: { 1: ["name", WIRE_LEN], 2: ["value", WIRE_LEN] },
  Sample: { 1: ["value", 1], 2: ["timestamp", 0] },
};

/** Label string slots remembered for reuse (names and values of 64 labels). */
const MAX_REUSE_SLOTS = 128;

/** Whether buf[aStart..aEnd) and buf[bStart..bEnd) hold the same bytes. */
function sameBytes(buf: Uint8Array, aStart: number, aEnd: number, bStart: number, bEnd: number) {
  if (aEnd - aStart !== bEnd - bStart) return false;
  for (let i = aStart, j = bStart; i < aEnd; i++, j++) {
    if (buf[i] !== buf[j]) return false;
  }
  return true;
}

function byName(a: Label, b: Label): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Quotes a label name for an error message, cut short if long. */
function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? s.slice(0, 100) + "…" : s);
}

/** Names the label a bad value belongs to, when its name came first (as usual). */
function ofLabel(name: string): string {
  return name ? ` of label ${quote(name)}` : "";
}

/** One parse of one WriteRequest; not reused. */
class WriteRequestParser {
  /** Index of the series being parsed, -1 outside any. */
  seriesIndex = -1;
  private readonly r: ProtoReader;
  private readonly maxLabels: number;
  private readonly maxLabelBytes: number;
  /** Value words of all samples so far (see ProtoReader.fixed64Into). */
  private words: Uint32Array;
  private valueCount = 0;
  /** Where each label string slot (2 per label) of the last series lies, and its text. */
  private readonly prevStart: number[] = [];
  private readonly prevEnd: number[] = [];
  private readonly prevText: string[] = [];
  /** Label objects of the last series, by position: reused when both strings are. */
  private readonly prevLabels: Label[] = [];
  /** Histograms and exemplars of the series being parsed (data_model.ts). */
  private histograms: DecodedHistogram[] | undefined;
  private histogramTimes: number[] = [];
  private exemplars: DecodedExemplar[] | undefined;
  private readonly exemplarValues = new DoubleSink();

  constructor(raw: Uint8Array, limits: DecodeLimits) {
    this.r = new ProtoReader(raw);
    this.maxLabels = limits.maxLabelsPerSeries ?? DEFAULT_MAX_LABELS_PER_SERIES;
    this.maxLabelBytes = limits.maxLabelBytes ?? DEFAULT_MAX_LABEL_BYTES;
    // First guess at the number of samples (a sample and its share of its
    // series rarely take under 16 bytes); grown by doubling.
    this.words = new Uint32Array(2 * Math.max(64, Math.min(raw.length >>> 4, 1 << 16)));
  }

  parse(): DecodedWrite {
    const r = this.r;
    const end = r.buf.length;
    const series: DecodedSeries[] = [];
    const starts: number[] = [];
    // Histogram samples of a series go in an entry of their own, after.
    const histogramSeries: DecodedSeries[] = [];
    let histogramCount = 0;
    let exemplarCount = 0;
    let metadata: Map<string, DecodedMetadata> | undefined;
    let index = 0;
    while (r.pos < end) {
      const key = r.tag(end);
      if (key === KEY_WRITE_TIMESERIES) {
        const seriesEnd = r.lenEnd(end);
        this.seriesIndex = index;
        const start = this.valueCount;
        const s = this.parseSeries(seriesEnd, index);
        this.seriesIndex = -1;
        index++;
        if (s === undefined) continue;
        const hs = this.histograms;
        if (hs !== undefined) {
          histogramSeries.push(this.histogramEntry(s.labels, hs));
          histogramCount += hs.length;
          this.histograms = undefined;
        }
        const ex = this.exemplars;
        if (ex !== undefined) {
          s.exemplars = ex;
          s.exemplarValues = this.exemplarValues.slice(this.exemplarValues.n - ex.length);
          exemplarCount += ex.length;
          this.exemplars = undefined;
        }
        if (s.timestamps.length || s.exemplars) {
          series.push(s);
          starts.push(start);
        }
      } else if (key === KEY_WRITE_METADATA) {
        const metaEnd = r.lenEnd(end);
        const m = parseMetadata1(r, metaEnd, this.maxLabelBytes);
        r.pos = metaEnd;
        if (m) (metadata ??= new Map()).set(m.metric, m);
      } else {
        this.checkKnown("WriteRequest", key);
        r.skip(key, end); // unknown fields
      }
    }
    // All values in one buffer, each series a view on its part.
    const total = this.valueCount;
    const values = new Float64Array(this.words.buffer, 0, total).slice();
    for (let i = 0; i < series.length; i++) {
      const from = starts[i];
      series[i].values = values.subarray(from, from + series[i].timestamps.length);
    }
    if (histogramSeries.length === 0 && exemplarCount === 0 && metadata === undefined) {
      return { series, samples: total };
    }
    return {
      series: series.concat(histogramSeries),
      samples: total,
      histograms: histogramCount,
      exemplars: exemplarCount,
      metadata: metadata ? [...metadata.values()] : [],
    };
  }

  /** The entry of a series' histogram samples: times, presence values, bodies. */
  private histogramEntry(labels: Label[], hs: DecodedHistogram[]): DecodedSeries {
    const words = new Uint32Array(2 * hs.length);
    for (let i = 0; i < hs.length; i++) presenceWords(hs[i], words, i);
    return {
      labels,
      timestamps: this.histogramTimes,
      values: new Float64Array(words.buffer),
      histograms: hs,
    };
  }

  /**
   * Parses one TimeSeries; undefined when it has no samples. The common
   * encodings (one-byte keys and lengths, as every real encoder writes for
   * labels and samples) are read inline with a local cursor; anything else
   * goes through ProtoReader's general methods, which also produce the
   * errors.
   */
  private parseSeries(end: number, index: number): DecodedSeries | undefined {
    const r = this.r;
    const buf = r.buf;
    const view = r.view;
    const maxLabels = this.maxLabels;
    const maxLabelBytes = this.maxLabelBytes;
    const prevStart = this.prevStart;
    const prevEnd = this.prevEnd;
    const prevText = this.prevText;
    const labels: Label[] = [];
    const prevLabels = this.prevLabels;
    // Nearly every series has one sample: keep it in t0, make an array of one.
    let timestamps: number[] | undefined;
    let t0 = 0;
    let sampleCount = 0;
    let sorted = true;
    let hasEmptyValue = false;
    let hasName = false;
    let prev = "";
    let pos = r.pos;
    while (pos < end) {
      let key = buf[pos];
      if (key === KEY_SERIES_LABELS || key === KEY_SERIES_SAMPLES) {
        pos++;
      } else {
        r.pos = pos;
        key = r.tag(end);
        pos = r.pos;
      }
      if (key === KEY_SERIES_LABELS) {
        let len = buf[pos];
        let labelEnd: number;
        if (len < 0x80 && len < end - pos) {
          labelEnd = pos + 1 + len;
          pos++;
        } else {
          r.pos = pos;
          labelEnd = r.lenEnd(end);
          pos = r.pos;
        }
        if (labels.length === maxLabels) {
          this.fail(`series ${index} has more than ${maxLabels} labels`);
        }
        let name = "";
        let value = "";
        while (pos < labelEnd) {
          key = buf[pos];
          if (key === KEY_LABEL_NAME || key === KEY_LABEL_VALUE) {
            pos++;
          } else {
            r.pos = pos;
            key = r.tag(labelEnd);
            pos = r.pos;
          }
          if (key === KEY_LABEL_NAME || key === KEY_LABEL_VALUE) {
            len = buf[pos];
            let strEnd: number;
            if (len < 0x80 && len < labelEnd - pos) {
              strEnd = pos + 1 + len;
              pos++;
            } else {
              r.pos = pos;
              strEnd = r.lenEnd(labelEnd);
              pos = r.pos;
            }
            const isName = key === KEY_LABEL_NAME;
            if (strEnd - pos > maxLabelBytes) this.labelTooLong(index, isName, name, strEnd - pos);
            // Series in a request mostly share label names and many values,
            // slot by slot: reuse the previous series' string when the bytes
            // are the same (within this request only; nothing is kept).
            const slot = 2 * labels.length + (isName ? 0 : 1);
            let text: string | undefined;
            if (
              slot < prevStart.length && sameBytes(buf, prevStart[slot], prevEnd[slot], pos, strEnd)
            ) {
              text = prevText[slot];
            } else {
              text = decodeText(buf, pos, strEnd);
              if (text === undefined) this.badLabelText(index, isName, name, pos, strEnd);
              if (slot < MAX_REUSE_SLOTS) {
                while (prevStart.length <= slot) {
                  prevStart.push(0);
                  prevEnd.push(-1);
                  prevText.push("");
                }
                prevStart[slot] = pos;
                prevEnd[slot] = strEnd;
                prevText[slot] = text;
              }
            }
            pos = strEnd;
            if (isName) name = text;
            else value = text;
          } else {
            this.checkKnown("Label", key);
            r.pos = pos;
            r.skip(key, labelEnd);
            pos = r.pos;
          }
        }
        if (name === "") this.fail(`series ${index} has an empty label name`);
        if (labels.length > 0 && !(prev < name)) sorted = false;
        prev = name;
        if (value === "") hasEmptyValue = true;
        else if (name === METRIC_NAME) hasName = true;
        // The strings repeat the last series' at this position: so may the object.
        const k = labels.length;
        const same = prevLabels[k];
        if (same !== undefined && same.name === name && same.value === value) {
          labels.push(same);
        } else {
          const label = { name, value };
          if (k < MAX_REUSE_SLOTS / 2) prevLabels[k] = label;
          labels.push(label);
        }
      } else if (key === KEY_SERIES_SAMPLES) {
        const len = buf[pos];
        let sampleEnd: number;
        if (len < 0x80 && len < end - pos) {
          sampleEnd = pos + 1 + len;
          pos++;
        } else {
          r.pos = pos;
          sampleEnd = r.lenEnd(end);
          pos = r.pos;
        }
        const i = this.valueCount;
        let words = this.words;
        if (2 * i + 2 > words.length) words = this.growWords();
        // proto3 defaults: a missing value is +0.0, a missing timestamp 0.
        words[2 * i] = 0;
        words[2 * i + 1] = 0;
        let t = 0;
        while (pos < sampleEnd) {
          key = buf[pos];
          if (key === KEY_SAMPLE_VALUE && sampleEnd - pos > 8) {
            // The double's 8 bytes copied as two integer words keep every
            // bit (see ProtoReader.fixed64Into).
            words[2 * i] = view.getUint32(pos + 1, true);
            words[2 * i + 1] = view.getUint32(pos + 5, true);
            pos += 9;
            continue;
          }
          if (key === KEY_SAMPLE_TIMESTAMP) {
            pos++;
          } else {
            r.pos = pos;
            key = r.tag(sampleEnd);
            pos = r.pos;
          }
          r.pos = pos;
          if (key === KEY_SAMPLE_VALUE) {
            r.fixed64Into(sampleEnd, words, i); // throws: fewer than 8 bytes left
          } else if (key === KEY_SAMPLE_TIMESTAMP) {
            t = r.int64(sampleEnd);
            if (!(t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS)) {
              this.fail(
                `series ${index} has timestamp ${
                  r.int64TextAt(pos, sampleEnd)
                } outside years 0001..9999`,
              );
            }
          } else {
            this.checkKnown("Sample", key);
            r.skip(key, sampleEnd);
          }
          pos = r.pos;
        }
        if (sampleCount === 0) t0 = t;
        else if (sampleCount === 1) timestamps = [t0, t];
        else timestamps!.push(t);
        sampleCount++;
        this.valueCount = i + 1;
      } else if (key === KEY_SERIES_HISTOGRAMS) {
        r.pos = pos;
        const histogramEnd = r.lenEnd(end);
        if (this.histograms === undefined) {
          this.histograms = [];
          this.histogramTimes = [];
        }
        let parsed;
        try {
          parsed = parseHistogram(r, histogramEnd);
        } catch (err) {
          if (!(err instanceof ProtoDecodeError)) throw err;
          throw new ProtoDecodeError(`histogram ${this.histograms.length}: ${err.message}`);
        }
        this.histograms.push(parsed.histogram);
        this.histogramTimes.push(parsed.timestamp);
        pos = r.pos;
      } else if (key === KEY_SERIES_EXEMPLARS) {
        r.pos = pos;
        const exemplarEnd = r.lenEnd(end);
        (this.exemplars ??= []).push(
          parseExemplar1(r, exemplarEnd, this.exemplarValues, maxLabels, maxLabelBytes),
        );
        pos = r.pos;
      } else {
        this.checkKnown("TimeSeries", key);
        r.pos = pos;
        r.skip(key, end); // unknown fields
        pos = r.pos;
      }
    }
    r.pos = pos;
    // Senders sort labels (the spec requires it); sort only when they did not.
    if (!sorted) {
      labels.sort(byName);
      for (let i = 1; i < labels.length; i++) {
        if (labels[i].name === labels[i - 1].name) {
          this.fail(`series ${index} has duplicate label name ${quote(labels[i].name)}`);
        }
      }
    }
    if (!hasName) {
      this.fail(
        labels.some((l) => l.name === METRIC_NAME)
          ? `series ${index} has an empty ${METRIC_NAME} label`
          : `series ${index} has no ${METRIC_NAME} label`,
      );
    }
    if (sampleCount === 0 && !this.histograms && !this.exemplars) return undefined;
    return {
      labels: hasEmptyValue ? labels.filter((l) => l.value !== "") : labels,
      timestamps: sampleCount === 0 ? [] : timestamps ?? [t0],
      values: EMPTY_VALUES,
    };
  }

  private growWords(): Uint32Array {
    const grown = new Uint32Array(this.words.length * 2);
    grown.set(this.words);
    return this.words = grown;
  }

  private labelTooLong(index: number, isName: boolean, name: string, len: number): never {
    const what = isName ? "name" : `value${ofLabel(name)}`;
    return this.fail(
      `series ${index} has a label ${what} of ${len} bytes, limit ${this.maxLabelBytes}`,
    );
  }

  private badLabelText(
    index: number,
    isName: boolean,
    name: string,
    start: number,
    end: number,
  ): never {
    const what = isName ? "name" : `value${ofLabel(name)}`;
    return this.fail(
      this.r.buf.subarray(start, end).includes(0)
        ? `series ${index} has a label ${what} that contains a NUL character`
        : `series ${index} has a label ${what} that is not valid UTF-8`,
    );
  }

  /** Refuses a known field sent with the wrong wire type. */
  private checkKnown(message: string, key: number): void {
    const known = KNOWN_FIELDS[message][key >>> 3];
    if (known !== undefined && known[1] !== (key & 7)) {
      throw new ProtoDecodeError(
        `${message}.${known[0]} (field ${key >>> 3}) has wire type ${wireTypeName(key & 7)}, want ${
          wireTypeName(known[1])
        }`,
      );
    }
  }

  private fail(message: string): never {
    throw new BadRequestError(`Cannot decode write request: ${message}`);
  }
}
