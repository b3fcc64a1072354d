/**
 * The lease rules, as pure functions over one cluster's lease state and a
 * clock passed in, so that they can be tested exactly.
 *
 * Sample time is partitioned into intervals, each owned by one replica
 * (DESIGN.md invariant 2). The current lease [start, ∞) belongs to the
 * leader; the past ones are in `past`. A sample is stored iff its timestamp
 * lies in an interval owned by its sender.
 *
 * The database is the authority; a connector holds a copy (`LeaseView`)
 * and may act on it without asking only while the copy cannot be stale in
 * a way that matters:
 *  - the leader's samples are accepted until `validUntil`, a local instant
 *    safely before any connector could see the leader as silent for the
 *    failover timeout (so no takeover can have happened);
 *  - a follower's samples older than the leader's newest written sample by
 *    more than the handover window are covered by the leader and dropped;
 *  - a follower's newer samples are "ahead": the leader has not covered
 *    them yet, or not for every series (a Prometheus sends a scrape round
 *    in several batches, so the leader's newest round may be unfinished
 *    when it dies; at a takeover the boundary goes back to the first
 *    unfinished round, within the window, see try_change_leader). They are neither stored nor dropped: the connector waits
 *    briefly for the leader, then answers 503 so that Prometheus keeps them
 *    in its WAL and resends them. Once the leader has been silent for the
 *    failover timeout, the follower takes over and they are stored. This is
 *    how failover loses nothing (DESIGN.md option (b)): unlike a buffer in
 *    the connector's memory (option (a)), it survives a connector crash and
 *    works unchanged with any number of connectors behind a load balancer,
 *    because the only state is in PostgreSQL and in Prometheus's WAL.
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
  /** Current lease start (sample ms). */
  start: number;
  /** Current lease end as granted (sample ms); the leader's samples beyond need an extension. */
  until: number;
  /** Newest leader sample known written (sample ms): from the database, raised by local writes. */
  maxTime: number;
  /** Local instant until which the leader may be trusted without asking the database. */
  validUntil: number;
  /** Local instant from which the database may consider the leader silent. */
  overdueAt: number;
  /** Earlier intervals, newest first (bounded). */
  past: LeaseInterval[];
  /** Follower samples within this much of `maxTime` are held back, not dropped. */
  windowMs: number;
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
 * Margin kept between a connector's trust in the leader and the earliest
 * takeover: covers a write in progress when trust lapses and clock drift.
 */
export function safetyMarginMs(t: LeaseTimings): number {
  return Math.min(5_000, Math.max(250, Math.floor(t.failoverTimeoutMs / 4)));
}

/**
 * How far behind the leader's newest written sample a follower's samples
 * are still kept (held back with 503, not dropped): half the failover
 * timeout. It must cover how far one series of the leader can trail
 * another, i.e. Prometheus's batching (batch_send_deadline, 5 s by default).
 */
export function handoverWindowMs(t: LeaseTimings): number {
  return Math.floor(t.failoverTimeoutMs / 2);
}

/**
 * Makes a view from a database row. `askedAt` is the local instant the
 * question was sent (earliest possible: the row's ages are measured at the
 * database after that), so the deadlines err on the safe side.
 */
export function viewFromRow(
  row: LeaseRow,
  askedAt: number,
  t: LeaseTimings,
  past: LeaseInterval[],
  localMaxTime = -Infinity,
): LeaseView {
  const heardAt = askedAt - row.heardAgeMs;
  return {
    cluster: row.cluster,
    leader: row.leader,
    start: row.start,
    until: row.until,
    maxTime: Math.max(row.maxTime, localMaxTime),
    validUntil: heardAt + t.failoverTimeoutMs - safetyMarginMs(t),
    overdueAt: heardAt + t.failoverTimeoutMs,
    past,
    windowMs: handoverWindowMs(t),
  };
}

/** What to do with one sample. */
export const enum Verdict {
  /** Store it: it lies in an interval its sender owns. */
  Keep,
  /** The leader's sample, but the copy of the lease must be renewed or extended first. */
  Renew,
  /** Drop it: another replica owns its instant. */
  NotLeader,
  /** Drop it: older than every interval known. */
  TooOld,
  /**
   * Drop it: further in the future than a lease timeout past the
   * connector's wall clock. Such a sample would stretch a lease (and the
   * leader's newest sample) far ahead and starve every later leader.
   */
  TooNew,
  /** A follower's sample the leader has not covered yet: wait, take over, or 503. */
  Ahead,
}

/**
 * Judges one sample `t` from `replica` at local instant `now`; samples
 * after `latest` (sample time) are too new.
 */
export function judge(
  v: LeaseView,
  replica: string,
  t: number,
  now: number,
  latest = Infinity,
): Verdict {
  if (t > latest) return Verdict.TooNew;
  if (t < v.start) return judgePast(v, replica, t);
  if (replica === v.leader) {
    return now < v.validUntil && t < v.until ? Verdict.Keep : Verdict.Renew;
  }
  return t <= v.maxTime - v.windowMs ? Verdict.NotLeader : Verdict.Ahead;
}

function judgePast(v: LeaseView, replica: string, t: number): Verdict {
  for (const p of v.past) {
    if (t >= p.until) {
      // Between known intervals: nobody was granted this instant.
      return Verdict.NotLeader;
    }
    if (t >= p.start) return p.leader === replica ? Verdict.Keep : Verdict.NotLeader;
  }
  return Verdict.TooOld;
}

/** True when the database may already consider the leader silent for the failover timeout. */
export function overdue(v: LeaseView, now: number): boolean {
  return now >= v.overdueAt;
}
