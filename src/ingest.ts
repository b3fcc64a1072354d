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

/** One series of a write request, validated. */
export interface DecodedSeries {
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

/** A decoded write request. */
export interface DecodedWrite {
  /** Series that have at least one sample, in wire order. */
  series: DecodedSeries[];
  /** Number of samples in `series`. */
  samples: number;
}

/** A series to store: sorted labels (with __name__) and its samples. */
export interface WriteSeries {
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
}

/** What a write did, for metrics. */
export interface WriteResult {
  samples: number;
  newSeries: number;
  /** True when the fast COPY hit existing rows and the slow path ran. */
  deduplicated: boolean;
}

/** Something that stores series: the real writer, or a test double. */
export interface SampleWriter {
  /** Stores the series (and stages `staged`) atomically; a 2xx may follow once it resolves. */
  write(series: WriteSeries[], options?: WriteOptions): Promise<WriteResult>;
}
