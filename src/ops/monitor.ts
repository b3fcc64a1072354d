/**
 * What the status page needs over time, kept in memory by each connector:
 * every 10 s it reads its own counters (samples stored, writes answered 503)
 * into a short ring for the sparklines and, with HA, reads how long ago
 * each cluster's leader was heard. A timer of its own, stopped with the
 * connector. (Whether the database answers is the health probe's:
 * src/health.ts feeds `promscale_db_up`.)
 */
import type { ConnectorMetrics } from "../telemetry/metrics.ts";

/** One reading of the counters. */
interface Reading {
  /** Unix ms. */
  at: number;
  stored: number;
  unavailable: number;
}

/** A rate between two readings, for the sparklines. */
export interface RatePoint {
  /** Unix ms at the start of the step. */
  from: number;
  /** Unix ms at the end of the step. */
  at: number;
  /** Samples stored per second. */
  ingest: number;
  /** Write requests answered 503 per second. */
  unavailable: number;
}

/** Settings of the monitor. */
export interface MonitorOptions {
  metrics: ConnectorMetrics;
  /**
   * HA on: each cluster's seconds since its leader was last heard (database
   * clock), read every interval into `promscale_ha_leader_heard_age_seconds`.
   */
  leaderAges?: () => Promise<{ cluster: string; seconds: number }[]>;
  /** Between readings (default 10 s). */
  intervalMs?: number;
  /** Readings kept (default 61: ten minutes at 10 s). */
  keep?: number;
  /** Wall clock (injected by tests). */
  now?: () => number;
}

/** A reading of the leader ages slower than this is given up (the last ones are kept). */
const AGES_TIMEOUT_MS = 5_000;

/** The ring of readings and the leader ages; see the module comment. */
export class OpsMonitor {
  readonly #o: MonitorOptions;
  readonly #now: () => number;
  readonly #keep: number;
  readonly #readings: Reading[] = [];
  #timer: ReturnType<typeof setInterval> | null = null;
  #agesInFlight: Promise<void> | null = null;

  constructor(o: MonitorOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#keep = o.keep ?? 61;
  }

  /** Takes the first reading and starts the timer. */
  start(): void {
    const tick = () => {
      this.read();
      this.#agesInFlight ??= this.readLeaderAges().finally(() => this.#agesInFlight = null);
    };
    tick();
    this.#timer ??= setInterval(tick, this.#o.intervalMs ?? 10_000);
  }

  /** Stops the timer (waits for a reading in flight). */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#agesInFlight;
  }

  /** Reads the counters now (exposed for tests). */
  read(): void {
    this.#readings.push(this.#reading());
    if (this.#readings.length > this.#keep) this.#readings.shift();
  }

  /** Reads the leader ages once (HA on); a failure keeps the last ones. */
  async readLeaderAges(): Promise<void> {
    const read = this.#o.leaderAges;
    if (!read) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timed out")), AGES_TIMEOUT_MS);
    });
    try {
      const ages = await Promise.race([read(), timeout]);
      const g = this.#o.metrics.haLeaderHeardAge;
      g.reset();
      for (const a of ages) g.set({ cluster: a.cluster }, a.seconds);
    } catch {
      // The database did not answer in time: keep the last ages.
    } finally {
      clearTimeout(timer);
    }
  }

  /** Rates between consecutive readings, the last one up to now. */
  rates(): RatePoint[] {
    const all = [...this.#readings, this.#reading()];
    const out: RatePoint[] = [];
    for (let i = 1; i < all.length; i++) {
      const a = all[i - 1], b = all[i];
      const seconds = (b.at - a.at) / 1000;
      if (seconds <= 0.05) continue;
      out.push({
        from: a.at,
        at: b.at,
        ingest: Math.max(0, b.stored - a.stored) / seconds,
        unavailable: Math.max(0, b.unavailable - a.unavailable) / seconds,
      });
    }
    return out;
  }

  #reading(): Reading {
    const m = this.#o.metrics;
    let unavailable = 0;
    for (const e of m.requests.entries()) {
      if (e.labels.handler === "write" && e.labels.code === "503") unavailable += e.value;
    }
    return { at: this.#now(), stored: m.samplesIngested.get({}), unavailable };
  }
}
