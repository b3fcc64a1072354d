/**
 * The reconciler: every connector runs it on a timer; the database lets one
 * at a time do a pass (`_prom_catalog.ha_reconcile`, advisory lock). A pass
 * decides the staged samples (non-leader replicas, see lease.ts) whose
 * series' preferred stream has passed them, or that waited `giveUp`: each
 * is stored when the stored data lacks its scrape round, else dropped as a
 * copy. Fills that a lagging leader sample later doubles are undone.
 */
import { errorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/log.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import { realTimers, type Timers } from "./clusters.ts";
import type { LeaseTimings } from "./lease.ts";
import type { LeaseStore, ReconcileOptions } from "./lease_store.ts";
import type { RecentLeaderSamples } from "./recent.ts";

/** How often the measured series intervals are read for `recent` (ms). */
const INTERVALS_EVERY_MS = 10_000;
/**
 * Read back this far before the last reading (ms): a pass that started
 * before it may commit measures stamped earlier.
 */
const INTERVALS_MARGIN_MS = 60_000;

/**
 * Staged samples decided per call (one transaction) at most; a pass calls
 * again while calls come back full. Small, so that a takeover waiting for
 * the reconcile lock gets it between two calls.
 */
const MAX_ROWS = 20_000;
/** Calls per pass at most, so one pass cannot run for ever under a flood. */
const MAX_CALLS = 20;

/** Reconcile settings derived from the HA timings (ms). */
export function reconcileOptions(t: LeaseTimings): ReconcileOptions & { everyMs: number } {
  return {
    // Most staged samples are decided on the first look: a pass a second.
    everyMs: Math.min(1_000, t.leaseRefreshMs),
    settleMs: Math.min(1_000, Math.floor(t.failoverTimeoutMs / 4)),
    // After the failover timeout the leader is replaced if it is silent;
    // if it only lags on some series, a late sample of it undoes the fill.
    giveUpMs: t.failoverTimeoutMs,
    maxRows: MAX_ROWS,
    // At least the 15 min the reconciler looks around a sample: fills in
    // that range are told apart from the preferred stream by this log.
    keepFilledMs: Math.max(1_200_000, 10 * t.failoverTimeoutMs),
  };
}

/** Settings of the reconciler. */
export interface ReconcilerOptions {
  store: LeaseStore;
  timings: LeaseTimings;
  metrics: ConnectorMetrics;
  log: Logger;
  timers?: Timers;
  /** Given the measured series intervals every INTERVALS_EVERY_MS. */
  recent?: RecentLeaderSamples;
}

/** Runs reconcile passes in the background; see the module comment. */
export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #timers: Timers;
  readonly #settings: ReturnType<typeof reconcileOptions>;
  #timer: unknown = null;
  #running: Promise<void> | null = null;
  #failing = false;
  #intervalsSince = 0;
  #passes = 0;

  constructor(o: ReconcilerOptions) {
    this.#o = o;
    this.#timers = o.timers ?? realTimers;
    this.#settings = reconcileOptions(o.timings);
  }

  start(): void {
    this.#timer ??= this.#timers.setInterval(() => {
      this.#running ??= this.pass().finally(() => this.#running = null);
    }, this.#settings.everyMs);
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) this.#timers.clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One pass (several calls while they come back full). Exposed for tests. */
  async pass(): Promise<void> {
    const m = this.#o.metrics;
    try {
      for (let i = 0; i < MAX_CALLS; i++) {
        const r = await this.#o.store.reconcile(this.#settings);
        if (r.filled) m.haReconciled.inc({ outcome: "filled" }, r.filled);
        if (r.decided - r.filled > 0) {
          m.haReconciled.inc({ outcome: "duplicate" }, r.decided - r.filled);
        }
        if (r.undone) m.haReconciled.inc({ outcome: "undone" }, r.undone);
        m.haStageWaiting.set({}, r.waiting);
        if (r.decided + r.waiting < this.#settings.maxRows) break;
      }
      await this.#readIntervals();
      if (this.#failing) this.#o.log.info("HA reconcile works again");
      this.#failing = false;
    } catch (err) {
      // Staged samples stay staged: nothing is lost, the next pass retries.
      if (!this.#failing) {
        this.#o.log.warn("HA reconcile pass failed; retrying", { err: errorMessage(err) });
      }
      this.#failing = true;
    }
  }

  async #readIntervals(): Promise<void> {
    const recent = this.#o.recent;
    const every = Math.max(1, Math.round(INTERVALS_EVERY_MS / this.#settings.everyMs));
    if (!recent || this.#passes++ % every !== 0) return;
    const since = this.#intervalsSince && this.#intervalsSince - INTERVALS_MARGIN_MS;
    const { intervals, at } = await this.#o.store.seriesIntervals(since);
    recent.setIntervals(intervals);
    this.#intervalsSince = at;
  }
}
