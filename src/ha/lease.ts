/**
 * The lease rules, as pure functions over one cluster's lease and a clock
 * passed in, so that they can be tested exactly.
 *
 * Per cluster, one replica leads; its lease starts at a point of sample
 * time (`start`) and lasts until another replica takes over. Where a
 * sample goes:
 *  - the leader's samples from `start` on are stored at once ("direct"),
 *    fenced: the write's transaction checks that this very lease still
 *    stands (src/storage/writer.ts, `ha_fence`);
 *  - every other sample (followers; the leader's from before its lease) is
 *    staged in the database and acknowledged. The reconciler later keeps,
 *    per series, exactly the staged samples whose scrape round the stored
 *    data lacks (`ha_reconcile`, migration 4).
 * So a 2xx always means committed (stored or staged), no connector decides
 * anything by its own wall clock, and the connector's copy of the lease may
 * be stale without harm: a stale "leader" write fails its fence (503), a
 * stale "follower" sample is staged and reconciled.
 *
 * Failover: when the leader has been heard by no connector for the failover
 * timeout (on the database's clock: connectors report how long ago they
 * heard it, as a duration), a replica that is still sending takes over.
 */

/** An interval of sample time [start, until) owned by one replica. */
export interface LeaseInterval {
  leader: string;
  start: number;
  until: number;
}

/** A connector's copy of a cluster's lease, with local (monotonic) deadlines. */
export interface LeaseView {
  cluster: string;
  leader: string;
  /** Current lease start (sample ms): the leader's samples from here on are stored directly. */
  start: number;
  /** Newest leader sample reported written (sample ms). */
  maxTime: number;
  /** Local instant from which the database may consider the leader silent. */
  overdueAt: number;
}

/** The lease as the database returns it. */
export interface LeaseRow {
  cluster: string;
  leader: string;
  start: number;
  until: number;
  maxTime: number;
  /** How long ago (database clock) the leader was last heard, in ms. */
  heardAgeMs: number;
}

/** Timing settings (ms). */
export interface LeaseTimings {
  leaseTimeoutMs: number;
  leaseRefreshMs: number;
  failoverTimeoutMs: number;
}

/**
 * Makes a view from a database row. `askedAt` is the local instant the
 * question was sent (the earliest possible: the row's age is measured at
 * the database after that), so the deadline errs on the early side, which
 * only makes a connector ask the database sooner.
 */
export function viewFromRow(row: LeaseRow, askedAt: number, t: LeaseTimings): LeaseView {
  return {
    cluster: row.cluster,
    leader: row.leader,
    start: row.start,
    maxTime: row.maxTime,
    overdueAt: askedAt - row.heardAgeMs + t.failoverTimeoutMs,
  };
}

/** Where one sample goes. */
export const enum Route {
  /** Store it now (fenced by the lease). */
  Direct,
  /** Stage it for the reconciler. */
  Stage,
}

/** Routes one sample `t` (sample ms) from `replica`. */
export function route(v: LeaseView, replica: string, t: number): Route {
  return replica === v.leader && t >= v.start ? Route.Direct : Route.Stage;
}

/** True when the database may already consider the leader silent for the failover timeout. */
export function overdue(v: LeaseView, now: number): boolean {
  return now >= v.overdueAt;
}

/** True when a database row says the leader is silent for the failover timeout. */
export function silent(row: LeaseRow, t: LeaseTimings): boolean {
  return row.heardAgeMs >= t.failoverTimeoutMs;
}

/**
 * A replica's "current time" in one request: the median of its series'
 * newest samples. One series stamped far ahead (honor_timestamps) or far
 * behind (a lagging target) does not move it, unlike the maximum.
 */
export function typicalTime(newest: number[]): number {
  if (newest.length === 0) return -Infinity;
  const sorted = Float64Array.from(newest).sort();
  return sorted[Math.floor((sorted.length - 1) / 2)];
}
