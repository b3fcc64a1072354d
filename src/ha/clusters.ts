/**
 * Per-cluster HA state of one connector: its copy of each cluster's lease
 * (bounded, least recently used evicted), what it heard from each leader,
 * and the background reporter that tells the database (at most once per
 * lease-refresh per cluster) and refreshes the copies. The per-request
 * decisions are in filter.ts; the rules in lease.ts.
 */
import { isLockNotAvailable } from "../db_errors.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/log.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import { type LeaseRow, type LeaseTimings, type LeaseView, silent, viewFromRow } from "./lease.ts";
import type { LeaseStore } from "./lease_store.ts";

/** Timer functions (injected by tests, so they need no real sleeps). */
export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(id: unknown): void;
}

/** The real timers. */
export const realTimers: Timers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (id) => clearInterval(id as number),
};

/** Settings of the cluster states. */
export interface HaClustersOptions {
  store: LeaseStore;
  timings: LeaseTimings;
  metrics: ConnectorMetrics;
  log: Logger;
  /** Local monotonic clock in ms (injected for tests). */
  now?: () => number;
  timers?: Timers;
  /** Clusters kept in memory at most (least recently used evicted). */
  maxClusters?: number;
}

/** Minimum spacing of lease look-ups and takeover attempts per cluster (ms). */
const ASK_SPACING_MS = 200;

/** One cluster as this connector sees it. */
export class ClusterState {
  /** The copy of the lease this connector acts on (null: ask the database first). */
  view: LeaseView | null = null;
  /** The last lease adopted, kept when `view` is invalidated (for metrics and ordering). */
  known: LeaseView | null = null;
  /** Typical time of the leader's newest committed direct samples (sample ms). */
  written = -Infinity;
  /** Local instant the leader was last heard through this connector. */
  heardAt = -Infinity;
  reportedWritten = -Infinity;
  reportedHeardAt = -Infinity;
  /** Requests seen since the last refresh. */
  touched = false;
  lastAsked = -Infinity;
  constructor(readonly cluster: string) {}
}

/** The clusters this connector knows; see the module comment. */
export class HaClusters {
  readonly #o: HaClustersOptions;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #states = new Map<string, ClusterState>();
  readonly #max: number;
  #timer: unknown = null;
  #ticking: Promise<void> | null = null;

  constructor(o: HaClustersOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#timers = o.timers ?? realTimers;
    this.#max = o.maxClusters ?? 10_000;
  }

  /** Clusters held in memory. */
  get size(): number {
    return this.#states.size;
  }

  /** The local clock. */
  now(): number {
    return this.#now();
  }

  /** The state of `cluster` (created when new), marked as most recently used. */
  get(cluster: string): ClusterState {
    let s = this.#states.get(cluster);
    if (s) {
      this.#states.delete(cluster);
    } else {
      s = new ClusterState(cluster);
    }
    this.#states.set(cluster, s);
    s.touched = true;
    this.#evict();
    return s;
  }

  /**
   * The lease of `s`, from the database when this connector has no copy;
   * a new cluster's lease goes to `firstReplica`, starting at `firstTime`
   * (the first replica heard from wins).
   */
  async ensure(s: ClusterState, firstReplica: string, firstTime: number): Promise<LeaseView> {
    if (s.view) return s.view;
    const askedAt = this.#now();
    let row = await this.#o.store.getLease(s.cluster);
    // The lease starts at the first sample; nothing is claimed beyond it
    // until samples are committed (max_time = start).
    row ??= await this.#o.store.updateLease(s.cluster, firstReplica, firstTime, firstTime, 0);
    return this.adopt(s, row, askedAt);
  }

  /** Takes a database row as the cluster's lease. */
  adopt(s: ClusterState, row: LeaseRow, askedAt: number): LeaseView {
    const old = s.known;
    // Lease starts only move forward: an answer older than the lease known
    // (a slow refresh overtaken by a takeover) is ignored.
    if (old && row.start < old.start && s.view) return s.view;
    const same = old !== null && old.leader === row.leader && old.start === row.start;
    if (!same) {
      s.written = -Infinity;
      s.heardAt = -Infinity;
      s.reportedWritten = -Infinity;
      s.reportedHeardAt = -Infinity;
    }
    const next = viewFromRow(row, askedAt, this.#o.timings);
    if (same) {
      // An older answer arriving after a newer one must not shorten trust.
      next.overdueAt = Math.max(next.overdueAt, old.overdueAt);
      next.maxTime = Math.max(next.maxTime, old.maxTime);
    }
    next.overdueAt = Math.max(next.overdueAt, s.heardAt + this.#o.timings.failoverTimeoutMs);
    s.view = next;
    s.known = next;
    const m = this.#o.metrics;
    if (!old || old.leader !== row.leader) {
      if (old) {
        m.haLeader.delete({ cluster: s.cluster, replica: old.leader });
        m.haLeaderChanges.inc({ cluster: s.cluster });
        this.#o.log.info("HA leader changed", {
          cluster: s.cluster,
          from: old.leader,
          to: row.leader,
          lease_start: new Date(row.start).toISOString(),
        });
      }
      m.haLeader.set({ cluster: s.cluster, replica: row.leader }, 1);
    }
    return next;
  }

  /** Forgets the copy of the lease (it proved stale): the next request asks the database. */
  invalidate(s: ClusterState): void {
    s.view = null;
  }

  /** Notes that the leader was heard through this connector. */
  heard(s: ClusterState): void {
    s.heardAt = this.#now();
    if (s.view) {
      s.view.overdueAt = Math.max(s.view.overdueAt, s.heardAt + this.#o.timings.failoverTimeoutMs);
    }
  }

  /** Notes leader samples committed up to `typical` (sample ms) under lease `start`. */
  written(s: ClusterState, leader: string, start: number, typical: number): void {
    const v = s.view;
    if (v?.leader !== leader || v.start !== start) return;
    if (typical > s.written) s.written = typical;
    if (typical > v.maxTime) v.maxTime = typical;
  }

  /**
   * Called when `replica`, not the leader in this connector's copy, sends
   * while the leader may be silent: looks at the database and takes over
   * when it agrees the leader is silent. At most every ASK_SPACING_MS per
   * cluster. Returns the (possibly new) lease.
   */
  async checkLeader(s: ClusterState, replica: string, hint: number): Promise<LeaseView | null> {
    const now = this.#now();
    if (now - s.lastAsked < ASK_SPACING_MS) return s.view;
    s.lastAsked = now;
    let askedAt = this.#now();
    const row = await this.#o.store.getLease(s.cluster);
    if (!row) return s.view;
    let v = this.adopt(s, row, askedAt);
    if (v.leader === replica || !silent(row, this.#o.timings)) return v;
    askedAt = this.#now();
    try {
      v = this.adopt(s, await this.#o.store.tryChangeLeader(s.cluster, replica, hint), askedAt);
    } catch (err) {
      // 55P03 lock_not_available: writes in flight or a reconcile pass held
      // the takeover up; the samples are staged meanwhile, try again later.
      if (!isLockNotAvailable(err)) throw err;
      this.#o.log.debug("HA takeover postponed: lease busy", { cluster: s.cluster, replica });
    }
    return v;
  }

  /** Starts the background reporter. */
  start(): void {
    this.#timer ??= this.#timers.setInterval(() => {
      this.#ticking ??= this.tick().finally(() => this.#ticking = null);
    }, this.#o.timings.leaseRefreshMs);
  }

  /** Stops the reporter after a last report, so the leader's progress is not lost. */
  async stop(): Promise<void> {
    if (this.#timer !== null) this.#timers.clearInterval(this.#timer);
    this.#timer = null;
    await this.#ticking;
    await this.tick().catch(() => {});
  }

  /**
   * Reports each cluster whose leader was heard through this connector
   * since the last report (extends the lease, tells the database how long
   * ago the leader was heard, as a duration, and how far its committed
   * samples reach), and refreshes the copy of every other cluster that had
   * requests. Called on a timer; exposed for tests.
   */
  async tick(): Promise<void> {
    for (const s of [...this.#states.values()]) {
      const v = s.view;
      const progressed = s.written > s.reportedWritten || s.heardAt > s.reportedHeardAt;
      if (!v || (!progressed && !s.touched)) continue;
      s.touched = false;
      const askedAt = this.#now();
      try {
        if (progressed) {
          const written = s.written;
          const heardAt = s.heardAt;
          const row = await this.#o.store.updateLease(
            s.cluster,
            v.leader,
            v.start,
            Math.max(v.start, written),
            askedAt - heardAt,
          );
          s.reportedWritten = written;
          s.reportedHeardAt = heardAt;
          this.adopt(s, row, askedAt);
        } else {
          const row = await this.#o.store.getLease(s.cluster);
          if (row) this.adopt(s, row, askedAt);
        }
      } catch (err) {
        this.#o.log.warn("Cannot report or refresh an HA lease", {
          cluster: s.cluster,
          err: errorMessage(err),
        });
      }
    }
  }

  #evict(): void {
    if (this.#states.size <= this.#max) return;
    let left = this.#states.size - 1; // never the one just used (the last)
    for (const [cluster, s] of this.#states) {
      if (this.#states.size <= this.#max || left-- === 0) break;
      if (s.written > s.reportedWritten || s.heardAt > s.reportedHeardAt) continue;
      this.#states.delete(cluster);
      if (s.known) this.#o.metrics.haLeader.delete({ cluster, replica: s.known.leader });
    }
  }
}
