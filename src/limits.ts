/**
 * What requests may cost: per request (series and labels, besides the byte
 * sizes checked elsewhere) and for all requests in flight together (a
 * memory budget).
 *
 * Decoding amplifies: a remote-write body of 2.8 MB of snappy can hold
 * 2,000,000 one-sample series (60 MB decoded) that take some 830 MB of
 * heap once decoded into objects, about 420 bytes per series whatever its
 * size on the wire. The decoded size therefore does not bound the cost;
 * the number of series and labels does. So before any series object is
 * made, a cheap walk over the decoded protobuf counts series, labels and
 * samples ({@linkcode scanWriteRequest}); a request over the per-request
 * limits is refused with 413 (it can never succeed, Prometheus must drop
 * it), and its estimated cost ({@linkcode estimateWriteCost}) is reserved
 * from the {@linkcode MemoryBudget} shared by every request in flight: the
 * compressed body as it arrives, the decompressed buffer before it is
 * allocated, then the objects. A request that does not fit now gets 503
 * with Retry-After (Prometheus retries); one that could never fit, even
 * alone, gets 413.
 *
 * @module
 */
import { HttpError } from "./errors.ts";
import { ProtoDecodeError, ProtoReader, WIRE_LEN } from "./wire/protowire.ts";

/** Default of --web.max-series-per-request. */
export const DEFAULT_MAX_SERIES_PER_REQUEST = 200_000;
/** Default of --web.max-labels-per-request (label pairs over all series of a request). */
export const DEFAULT_MAX_LABELS_PER_REQUEST = 4_000_000;
/** Default of --web.max-in-flight-memory: 1 GiB. */
export const DEFAULT_MAX_IN_FLIGHT_MEMORY = 1024 * 1024 * 1024;

/**
 * Heap per decoded series beyond its bytes on the wire (the series object,
 * its label and timestamp arrays, its view on the values, and what the
 * write path adds per series), measured at about 420 bytes, rounded up.
 */
export const SERIES_COST = 512;
/** Heap per label (two strings and an object when not shared with the previous series). */
export const LABEL_COST = 64;
/** Heap per sample (its timestamp and value). */
export const SAMPLE_COST = 16;
/**
 * Heap per native histogram sample beyond its bytes on the wire (its object
 * and typed arrays; an empty histogram takes 2 bytes on the wire), and per
 * exemplar (its object and labels), rounded up.
 */
export const HISTOGRAM_COST = 1024;
export const EXEMPLAR_COST = 256;

/** What {@linkcode scanWriteRequest} counts. */
export interface WriteCounts {
  series: number;
  labels: number;
  samples: number;
  /** Native histogram samples (absent: none). */
  histograms?: number;
  /** Exemplars (absent: none). */
  exemplars?: number;
}

/**
 * Counts the series, labels and samples of an uncompressed
 * `prometheus.WriteRequest` without decoding any of them (no allocation).
 * A malformed message is counted as far as it goes: the decoder that
 * follows reports what is wrong with it.
 */
export function scanWriteRequest(raw: Uint8Array): WriteCounts {
  const r = new ProtoReader(raw);
  const counts = { series: 0, labels: 0, samples: 0, histograms: 0, exemplars: 0 };
  const end = raw.length;
  try {
    while (r.pos < end) {
      const key = r.tag(end);
      if (key !== (1 << 3 | WIRE_LEN)) {
        r.skip(key, end);
        continue;
      }
      const seriesEnd = r.lenEnd(end);
      counts.series++;
      while (r.pos < seriesEnd) {
        const k = r.tag(seriesEnd);
        if (k === (1 << 3 | WIRE_LEN)) counts.labels++;
        else if (k === (2 << 3 | WIRE_LEN)) counts.samples++;
        else if (k === (3 << 3 | WIRE_LEN)) counts.exemplars++;
        else if (k === (4 << 3 | WIRE_LEN)) counts.histograms++;
        r.skip(k, seriesEnd);
      }
    }
  } catch (err) {
    if (!(err instanceof ProtoDecodeError)) throw err;
  }
  return counts;
}

/** Estimated heap of a decoded write request beyond its raw buffer. */
export function estimateWriteCost(c: WriteCounts): number {
  return c.series * SERIES_COST + c.labels * LABEL_COST + c.samples * SAMPLE_COST +
    (c.histograms ?? 0) * HISTOGRAM_COST + (c.exemplars ?? 0) * EXEMPLAR_COST;
}

/** Per-request limits on what a write may hold. */
export interface RequestLimits {
  maxSeries: number;
  maxLabels: number;
}

/** Refuses (413) a request over the per-request limits. */
export function checkWriteCounts(c: WriteCounts, l: RequestLimits): void {
  if (c.series > l.maxSeries) {
    throw new HttpError(
      413,
      `Write request has ${c.series} series, limit ${l.maxSeries} per request ` +
        `(--web.max-series-per-request): lower queue_config.max_samples_per_send`,
    );
  }
  if (c.labels > l.maxLabels) {
    throw new HttpError(
      413,
      `Write request has ${c.labels} labels over its series, limit ${l.maxLabels} per request ` +
        `(--web.max-labels-per-request): lower queue_config.max_samples_per_send`,
    );
  }
}

/**
 * Estimated memory that all requests in flight may hold together. Each
 * request reserves through its own {@linkcode Reservation} and gives back
 * everything at once when it is answered (or, with asynchronous acks, when
 * its write ends).
 */
export class MemoryBudget {
  #used = 0;
  /** Requests refused for want of budget (503), for metrics. */
  refused = 0;

  constructor(readonly total: number) {}

  /** Bytes reserved now. */
  get used(): number {
    return this.#used;
  }

  /** A new, empty reservation for one request. */
  reservation(): Reservation {
    return new Reservation(this);
  }

  /** @internal */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.total) return false;
    this.#used += bytes;
    return true;
  }

  /** @internal */
  give(bytes: number): void {
    this.#used -= bytes;
  }
}

/** What one request has reserved from a {@linkcode MemoryBudget}. */
export class Reservation {
  #held = 0;
  #released = false;

  constructor(readonly budget: MemoryBudget) {}

  /** Bytes held. */
  get held(): number {
    return this.#held;
  }

  /**
   * Reserves `bytes` more for `what` ("the decoded body"). Throws 413 when
   * the request's total could never fit the budget, 503 when it does not
   * fit now.
   */
  reserve(bytes: number, what: string): void {
    if (bytes <= 0) return;
    if (this.#released) throw new Error("reservation already released");
    const total = this.budget.total;
    if (this.#held + bytes > total) {
      throw new HttpError(
        413,
        `Request would need about ${
          mib(this.#held + bytes)
        } of memory (${what}), more than all requests together may hold ` +
          `(--web.max-in-flight-memory ${mib(total)}): lower queue_config.max_samples_per_send`,
      );
    }
    if (!this.budget.take(bytes)) {
      this.budget.refused++;
      throw new HttpError(
        503,
        `Too much memory held by requests in flight (${mib(this.budget.used)} of ${
          mib(total)
        }, --web.max-in-flight-memory); retry later`,
      );
    }
    this.#held += bytes;
  }

  /** Gives everything back; idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.budget.give(this.#held);
    this.#held = 0;
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
