/**
 * The lease store: the SQL side of the lease. Every change is one call of a
 * SQL function (`_prom_catalog.update_lease`, `_prom_catalog.try_change_leader`)
 * that runs atomically under a row lock, so any number of connectors can race.
 */
import type { Sql } from "../../deps.ts";
import { handoverWindowMs, type LeaseInterval, type LeaseRow, type LeaseTimings } from "./lease.ts";

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
  /** Hands the lease to `replica` if the leader is silent for the failover timeout. */
  tryChangeLeader(cluster: string, replica: string, maxTime: number): Promise<LeaseRow>;
  /** The lease as it stands, or null for an unknown cluster. */
  getLease(cluster: string): Promise<LeaseRow | null>;
  /** The intervals before `before` (sample ms), newest first, at most `limit`. */
  pastLeases(cluster: string, before: number, limit: number): Promise<LeaseInterval[]>;
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

  async tryChangeLeader(cluster: string, replica: string, maxTime: number): Promise<LeaseRow> {
    const [r] = await this.sql<StateRow[]>`
      SELECT (s).* FROM (SELECT _prom_catalog.try_change_leader(
        ${cluster}, ${replica}, ${iso(maxTime)}::timestamptz,
        ${interval(this.timings.failoverTimeoutMs)}::interval,
        ${interval(this.timings.leaseTimeoutMs)}::interval, ${this.clusterLabel},
        ${interval(handoverWindowMs(this.timings))}::interval
      ) AS s) x`;
    return toRow(r);
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
