/**
 * The lease store: the SQL side of HA. Every change is one call of a SQL
 * function (`_prom_catalog.update_lease`, `_prom_catalog.try_change_leader`,
 * `_prom_catalog.ha_reconcile`) that runs atomically under locks, so any
 * number of connectors can race. See migration 4 in
 * src/storage/migrations/schema.ts for the rules the functions apply.
 */
import type { Sql } from "../../deps.ts";
import type { LeaseInterval, LeaseRow, LeaseTimings } from "./lease.ts";

/** What one reconcile pass did. */
export interface ReconcileResult {
  /** Staged samples decided (filled or dropped as copies). */
  decided: number;
  /** Staged samples stored because the stored data lacked their round. */
  filled: number;
  /** Staged samples left for a later pass (their series' preferred stream has not passed them). */
  waiting: number;
  /** Earlier fills removed because a late sample of the preferred stream doubled them. */
  undone: number;
}

/** Settings of a reconcile pass (ms). */
export interface ReconcileOptions {
  /** Staged samples younger than this (database clock) are left for the next pass. */
  settleMs: number;
  /** Staged samples older than this are decided even if their series' stream has not passed them. */
  giveUpMs: number;
  /** Staged samples looked at per pass, at most. */
  maxRows: number;
  /** How long fills are remembered, to undo one that a lagging leader sample doubles. */
  keepFilledMs: number;
}

/** What the HA filter needs from the database. */
export interface LeaseStore {
  /** Creates (first replica wins) or extends the lease; returns it as it stands. */
  updateLease(
    cluster: string,
    replica: string,
    minTime: number,
    maxTime: number,
    heardAgoMs: number,
  ): Promise<LeaseRow>;
  /**
   * Hands the lease to `replica` if the leader is silent for the failover
   * timeout (database clock). `boundaryHint`: the new leader's recent
   * sample time; the new lease starts no later. Rejects with a lock
   * timeout when writes in flight or a reconcile pass hold it up too long.
   */
  tryChangeLeader(cluster: string, replica: string, boundaryHint: number): Promise<LeaseRow>;
  /** The lease as it stands, or null for an unknown cluster. */
  getLease(cluster: string): Promise<LeaseRow | null>;
  /** The intervals before `before` (sample ms), newest first, at most `limit`. */
  pastLeases(cluster: string, before: number, limit: number): Promise<LeaseInterval[]>;
  /** One reconcile pass (a no-op when another connector is reconciling). */
  reconcile(o: ReconcileOptions): Promise<ReconcileResult>;
  /**
   * Series intervals the reconciler measured well (three spacings or more
   * agree) since `since` (database clock, ms; 0: all), and the database's
   * time of the reading, to pass as `since` next time.
   */
  seriesIntervals(since: number): Promise<{ intervals: [number, number][]; at: number }>;
}

interface StateRow {
  cluster_name: string;
  leader_name: string;
  lease_start: Date;
  lease_until: Date;
  max_time: Date;
  heard_age_ms: number;
}

function toRow(r: StateRow): LeaseRow {
  return {
    cluster: r.cluster_name,
    leader: r.leader_name,
    start: r.lease_start.getTime(),
    until: r.lease_until.getTime(),
    maxTime: r.max_time.getTime(),
    heardAgeMs: Number(r.heard_age_ms),
  };
}

/**
 * How long a takeover waits for the fence (leader writes in flight) and a
 * reconcile pass before giving up for now: short, since the request that
 * triggered it waits too (its samples are staged either way).
 */
export function takeoverWaitMs(t: LeaseTimings): number {
  return Math.max(200, Math.min(2_000, Math.floor(t.failoverTimeoutMs / 4)));
}

/**
 * How far before the new lease's start a takeover re-stages the old
 * leader's samples: the failover timeout, which covers scrape intervals up
 * to twice as long (half an interval is needed, see try_change_leader).
 */
export function takeoverOverlapMs(t: LeaseTimings): number {
  return Math.max(t.failoverTimeoutMs, 30_000);
}

const iso = (ms: number) => new Date(ms).toISOString();
const interval = (ms: number) => `${Math.max(0, Math.round(ms))} milliseconds`;

/** The lease store on PostgreSQL. */
export class PgLeaseStore implements LeaseStore {
  constructor(
    readonly sql: Sql,
    readonly timings: LeaseTimings,
    readonly clusterLabel: string,
  ) {}

  async updateLease(
    cluster: string,
    replica: string,
    minTime: number,
    maxTime: number,
    heardAgoMs: number,
  ): Promise<LeaseRow> {
    const [r] = await this.sql<StateRow[]>`
      SELECT (s).* FROM (SELECT _prom_catalog.update_lease(
        ${cluster}, ${replica}, ${iso(minTime)}::timestamptz, ${iso(maxTime)}::timestamptz,
        ${interval(heardAgoMs)}::interval, ${interval(this.timings.leaseTimeoutMs)}::interval
      ) AS s) x`;
    return toRow(r);
  }

  async tryChangeLeader(cluster: string, replica: string, boundaryHint: number): Promise<LeaseRow> {
    const hint = Number.isFinite(boundaryHint) ? iso(boundaryHint) : null;
    const [r] = await this.sql<StateRow[]>`
      SELECT (s).* FROM (SELECT _prom_catalog.try_change_leader(
        ${cluster}, ${replica}, ${hint}::timestamptz,
        ${interval(this.timings.failoverTimeoutMs)}::interval,
        ${interval(this.timings.leaseTimeoutMs)}::interval, ${this.clusterLabel},
        ${interval(takeoverWaitMs(this.timings))}::interval,
        ${interval(takeoverOverlapMs(this.timings))}::interval
      ) AS s) x`;
    return toRow(r);
  }

  async reconcile(o: ReconcileOptions): Promise<ReconcileResult> {
    const [r] = await this.sql<
      { decided: string; filled: string; waiting: string; undone: string }[]
    >`
      SELECT * FROM _prom_catalog.ha_reconcile(
        ${interval(o.settleMs)}::interval, ${interval(o.giveUpMs)}::interval,
        ${o.maxRows}::int, ${interval(o.keepFilledMs)}::interval)`;
    return {
      decided: Number(r.decided),
      filled: Number(r.filled),
      waiting: Number(r.waiting),
      undone: Number(r.undone),
    };
  }

  async seriesIntervals(since: number): Promise<{ intervals: [number, number][]; at: number }> {
    // Weak measures are kept with measured_at set back (ha_reconcile), so
    // they fall before any 'since' and are not read: only good ones are.
    const rows = await this.sql<{ series_id: string; interval_ms: number }[]>`
      SELECT series_id, interval_ms FROM _prom_data.ha_series_interval
      WHERE measured_at > to_timestamp(${since / 1000}::float8)`;
    const [{ at }] = await this.sql<{ at: number }[]>`
      SELECT (extract(epoch FROM now()) * 1000)::float8 AS at`;
    return { intervals: rows.map((r) => [Number(r.series_id), r.interval_ms]), at };
  }

  async getLease(cluster: string): Promise<LeaseRow | null> {
    const rows = await this.sql<StateRow[]>`
      SELECT (_prom_catalog.ha_state(l)).* FROM _prom_catalog.ha_leases l
      WHERE cluster_name = ${cluster}`;
    return rows.length ? toRow(rows[0]) : null;
  }

  async pastLeases(cluster: string, before: number, limit: number): Promise<LeaseInterval[]> {
    const rows = await this.sql<{ leader_name: string; lease_start: Date; lease_until: Date }[]>`
      SELECT leader_name, lease_start, lease_until FROM _prom_catalog.ha_leases_logs
      WHERE cluster_name = ${cluster} AND lease_start < ${iso(before)}::timestamptz
      ORDER BY lease_start DESC LIMIT ${limit}`;
    return rows.map((r) => ({
      leader: r.leader_name,
      start: r.lease_start.getTime(),
      until: Math.min(r.lease_until.getTime(), before),
    }));
  }
}
