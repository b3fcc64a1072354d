/**
 * The contracts between the stages of the write path:
 *
 *   remote_write/decode → DecodedWrite → IngestFilter (ha/, election/)
 *     → FilterResult → SampleWriter (storage/writer) → WriteResult
 *
 * Every stage imports its neighbours' types from here, never from the
 * neighbour itself, so that a stage can be replaced or tested alone
 * (docs/architecture.md). Types only, and the one trivial filter.
 *
 * @module
 */
import { UnavailableError } from "./errors.ts";

/** 0001-01-01T00:00:00.000Z: the earliest timestamp accepted, in ms. */
export const MIN_TIMESTAMP_MS = -62135596800000;
/** 9999-12-31T23:59:59.999Z: the latest timestamp accepted, in ms. */
export const MAX_TIMESTAMP_MS = 253402300799999;

/** A label pair. Names and values are valid UTF-8 without NUL. */
export interface Label {
  name: string;
  value: string;
}

/**
 * One series of a write request, validated. Besides float samples it may
 * carry histogram samples (then `timestamps`/`values` are their times and
 * presence values), exemplars and created timestamps: see
 * `remote_write/data_model.ts`.
 */
export interface DecodedSeries extends SeriesExtras {
  /**
   * Non-empty names, unique, sorted by name with `<` (UTF-16 code unit
   * order, which equals UTF-8 byte order for names without astral
   * characters), `__name__` among them. Labels with an empty value are
   * dropped: in Prometheus an empty value means the label is absent.
   * Label objects are shared between series of one request (a label equal
   * to the previous series' at the same position is the same object):
   * treat them as immutable.
   */
  labels: Label[];
  /** Milliseconds since the epoch, integers within years 0001..9999; wire order. */
  timestamps: number[];
  /**
   * Sample values, index for index with `timestamps`, bit for bit as sent.
   * A Float64Array, not number[]: V8 quiets signalling NaNs, such as the
   * staleness marker 0x7ff0000000000002, when a double is stored in a JS
   * array or an object field or passes through `DataView.setFloat64` in
   * optimised code. To write values out exactly, copy their bytes
   * (`new Uint8Array(values.buffer, values.byteOffset, values.byteLength)`,
   * little-endian) or copy element to element between Float64Arrays. All
   * series of one request share one buffer.
   */
  values: Float64Array;
}

/** A decoded write request (with its histogram and exemplar counts and metadata, if any). */
export interface DecodedWrite extends WriteExtras {
  /** Series that have at least one sample, histogram or exemplar, in wire order. */
  series: DecodedSeries[];
  /** Number of samples in `series`. */
  samples: number;
}

/** A series to store: sorted labels (with __name__), its samples, and what goes with them. */
export interface WriteSeries extends SeriesExtras {
  labels: { name: string; value: string }[];
  timestamps: ArrayLike<number>;
  /** Values bit for bit (a Float64Array: a JS number may lose a NaN's payload). */
  values: Float64Array;
}

/**
 * A condition of an HA write: the samples commit only if `leader` still
 * holds the lease of `cluster` that started at `start` (sample ms), checked
 * under the cluster's fence lock in the write's own transaction.
 */
export interface Fence {
  cluster: string;
  leader: string;
  start: number;
  /** Called when the lease moved on before the write could commit (the write fails with 503). */
  lost?: () => void;
}

/** The lease a fenced write depended on moved on before it committed (503). */
export class FenceError extends UnavailableError {}

/**
 * The pair of hooks a filter hands to the writer around one write: the
 * filter's decision was taken before the write waited for the database,
 * so `guard` re-checks it right before the samples are sent, and
 * `committed` tells the filter once they are.
 */
export interface WriteHooks {
  /** Called right before the data is sent; throws (503) when the decision went stale. */
  guard?: () => void;
  /** Called once the write is committed. */
  committed?: () => void;
}

/** What a filter lets through, with hooks around the write. */
export interface FilterResult extends WriteHooks {
  /** Series to store. */
  series: WriteSeries[];
  /** Series for the HA stage, reconciled later (acknowledged once staged). */
  staged?: WriteSeries[];
  /** Leases the stored series depend on (checked in the write's transaction). */
  fences?: Fence[];
}

/** Decides which decoded series are stored (HA de-duplication, legacy election). */
export interface IngestFilter {
  /** Returns what to store; throws HttpError (400 bad HA labels, 503 database). */
  apply(decoded: DecodedWrite): Promise<FilterResult>;
}

/** Stores everything: the filter when no HA mode is on. */
export const passThrough: IngestFilter = {
  apply: (decoded) => Promise.resolve({ series: decoded.series }),
};

/** What goes with the samples of a write. */
export interface WriteOptions {
  /** Runs right before the samples are sent and may refuse (throw). */
  guard?: WriteHooks["guard"];
  /** Samples for the HA stage (`_prom_data.ha_stage`), committed with the others. */
  staged?: WriteSeries[];
  /** Leases the write depends on (HA leader samples). */
  fences?: Fence[];
  /** Metric metadata of the request, stored with it. */
  metadata?: DecodedMetadata[];
}

/** What a write did, for metrics. */
export interface WriteResult {
  samples: number;
  /** Histogram bodies, exemplars and metadata entries written (absent: none). */
  histograms?: number;
  exemplars?: number;
  metadata?: number;
  newSeries: number;
  /** True when the fast COPY hit existing rows and the slow path ran. */
  deduplicated: boolean;
}

/** Something that stores series: the real writer, or a test double. */
export interface SampleWriter {
  /** Stores the series (and stages `staged`) atomically; a 2xx may follow once it resolves. */
  write(series: WriteSeries[], options?: WriteOptions): Promise<WriteResult>;
}

// ---------------------------------------------------------------------------
// The data model beyond float samples (remote_write/data_model.ts decodes it,
// storage/data_model_writer.ts stores it, remote_read/histograms.ts reads it).

/** A label pair of an exemplar (the same shape as {@linkcode Label}). */
export interface ModelLabel {
  name: string;
  value: string;
}

/**
 * One native histogram sample, validated. Doubles are kept bit for bit in
 * Float64Arrays (filled from their wire words, never through a JS number:
 * a stale histogram's sum is the staleness NaN, whose payload V8 would
 * lose).
 */
export interface DecodedHistogram {
  /** A float histogram (`count_float`, `*_counts`); else an integer one (`count_int`, `*_deltas`). */
  float: boolean;
  /** -4..8: exponential buckets; -53: custom bucket bounds (`customValues`). */
  schema: number;
  /** 0 unknown, 1 yes (reset), 2 no, 3 gauge histogram. */
  resetHint: number;
  /** [count, sum, zero_threshold, zero_count], bit for bit. */
  scalars: Float64Array;
  /** Offset, length pairs of the positive bucket spans. */
  positiveSpans: Int32Array;
  /** Absolute count of each positive bucket (integer deltas summed). */
  positiveCounts: Float64Array;
  negativeSpans: Int32Array;
  negativeCounts: Float64Array;
  /** Upper bounds of the custom buckets (schema -53), strictly increasing. */
  customValues: Float64Array;
}

/** An exemplar: labels (sorted, names unique), value bit for bit, timestamp. */
export interface DecodedExemplar {
  labels: ModelLabel[];
  /** Milliseconds since the epoch (0 when the sender set none). */
  timestamp: number;
}

/** What a decoded request carries besides its series. */
export interface WriteExtras {
  /** Histogram samples in the request's series. */
  histograms?: number;
  /** Exemplars in the request's series. */
  exemplars?: number;
  /** Metric metadata, at most one per metric name (the last sent). */
  metadata?: DecodedMetadata[];
}

/** Metadata of one metric family. */
export interface DecodedMetadata {
  metric: string;
  /** counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown. */
  type: string;
  help: string;
  unit: string;
}

/**
 * What a decoded series may carry besides float samples. A series with
 * `histograms` holds histogram samples only: `timestamps[i]` is the time of
 * `histograms[i]`, and `values[i]` its presence value (the count, or the
 * staleness marker when the histogram is a stale marker): histogram samples
 * travel the same path as float samples (HA judgement, de-duplication, the
 * samples table), and their bodies are stored beside them.
 */
export interface SeriesExtras {
  histograms?: DecodedHistogram[];
  exemplars?: DecodedExemplar[];
  /** Values of `exemplars`, index for index, bit for bit. */
  exemplarValues?: Float64Array;
  /** Created (start) timestamps seen for this series, ms, distinct. */
  created?: number[];
}
