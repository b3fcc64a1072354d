/**
 * The operator's view: one report of the connector and its database, served
 * as a server-rendered HTML page at `GET /` (page.ts) and as JSON at
 * `GET /api/v1/status/ha`. The database part is global (every connector
 * shows the same leases); counts of samples are this connector's, since it
 * started.
 *
 * Cost is bounded: at most MAX_CLUSTERS clusters and MAX_CHANGES lease rows
 * per cluster are read, one report is built at a time (concurrent requests
 * share it) and reused for REUSE_MS, and the database part gives up after
 * DB_TIMEOUT_MS (the page then says the database did not answer).
 */
import type { Sql } from "../../deps.ts";
import { type Config, redactUri } from "../config.ts";
import { errorMessage } from "../errors.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import { COMMIT, VERSION } from "../version.ts";
import type { OpsMonitor, RatePoint } from "./monitor.ts";
import { renderStatusPage } from "./page.ts";

/** Clusters listed at most. */
export const MAX_CLUSTERS = 100;
/** Leases of the last 24 h read per cluster at most. */
export const MAX_CHANGES = 50;
const REUSE_MS = 1_000;
const DB_TIMEOUT_MS = 5_000;
const DAY_MS = 24 * 3600 * 1000;

/** One lease of a cluster's timeline. */
export interface LeaseSpan {
  leader: string;
  /** ISO times (sample time). */
  start: string;
  until: string;
}

/** One cluster as the database and this connector see it. */
export interface ClusterStatus {
  cluster: string;
  leader: string;
  leaseStart: string;
  leaseUntil: string;
  /** Newest leader sample reported written (sample time). */
  maxTime: string;
  /** Seconds since any connector last heard the leader (database clock). */
  lastHeardSecondsAgo: number;
  /** When the leader last changed (database clock). */
  changedAt: string;
  /** Leader changes whose new lease starts in the last 24 h. */
  leaderChanges24h: number;
  /** The leases overlapping the last 24 h, oldest first (at most MAX_CHANGES). */
  timeline: LeaseSpan[];
  timelineTruncated: boolean;
  /** This connector's counts since it started. */
  samples: { accepted: number; staged: number; dropped: Record<string, number> };
}

/** The whole report. */
export interface StatusReport {
  generatedAt: string;
  version: string;
  commit: string;
  deno: string;
  startedAt: string;
  uptimeSeconds: number;
  database: {
    /** The connection URI, password masked. */
    uri: string;
    reachable: boolean;
    error?: string;
    schemaVersion: number;
    pool: { max: number; inUse: number; waiting: number };
  };
  ha: {
    enabled: boolean;
    clusterLabel: string;
    replicaLabel: string;
    failoverTimeoutSeconds: number;
    leaseTimeoutSeconds: number;
  };
  /** Clusters listed (at most MAX_CLUSTERS, by name). */
  clusters: ClusterStatus[];
  /** Clusters in the database. */
  clustersTotal: number;
  clustersTruncated: boolean;
  /** This connector, since it started. */
  samples: { stored: number; dropped: Record<string, number> };
  /** Samples stored and 503s per second, oldest first. */
  rates: RatePoint[];
}

/** What the status endpoints read. */
export interface StatusOptions {
  config: Config;
  sql: Sql;
  metrics: ConnectorMetrics;
  monitor: OpsMonitor;
  /** Unix ms. */
  startedAt: number;
}

interface LeaseRow {
  cluster_name: string;
  leader_name: string;
  lease_start: Date;
  lease_until: Date;
  max_time: Date;
  heard_ago: number;
  changed_at: Date;
  total: number;
}

interface LogRow {
  cluster_name: string;
  leader_name: string;
  lease_start: Date;
  lease_until: Date;
  changed: boolean;
  rn: number;
}

/** Builds reports; see the module comment. */
export class StatusSource {
  readonly #o: StatusOptions;
  #building: Promise<StatusReport> | null = null;
  #last: { at: number; report: StatusReport } | null = null;

  constructor(o: StatusOptions) {
    this.#o = o;
  }

  /** The current report (shared with concurrent callers, reused for a second). */
  report(): Promise<StatusReport> {
    const last = this.#last;
    if (last && performance.now() - last.at < REUSE_MS) return Promise.resolve(last.report);
    return this.#building ??= this.#build().then((report) => {
      this.#last = { at: performance.now(), report };
      return report;
    }).finally(() => this.#building = null);
  }

  /** Serves `GET /` (HTML) and `GET /api/v1/status/ha` (JSON). */
  async serve(req: Request, as: "html" | "json"): Promise<Response> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response(`Method ${req.method} not allowed: use GET\n`, {
        status: 405,
        headers: { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" },
      });
    }
    const report = await this.report();
    const headers = {
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    };
    if (as === "json") {
      return new Response(JSON.stringify(report, null, 2) + "\n", {
        headers: { ...headers, "content-type": "application/json; charset=utf-8" },
      });
    }
    return new Response(renderStatusPage(report), {
      headers: {
        ...headers,
        "content-type": "text/html; charset=utf-8",
        // No script at all, inline styles and SVG only.
        "content-security-policy":
          "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
      },
    });
  }

  async #build(): Promise<StatusReport> {
    const { config: cfg, metrics: m, monitor, startedAt } = this.#o;
    const now = Date.now();
    const dropped = (cluster?: string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const e of m.samplesDropped.entries()) {
        if (cluster !== undefined && e.labels.cluster !== cluster) continue;
        const reason = e.labels.reason ?? "";
        out[reason] = (out[reason] ?? 0) + e.value;
      }
      return out;
    };
    const report: StatusReport = {
      generatedAt: new Date(now).toISOString(),
      version: VERSION,
      commit: COMMIT,
      deno: Deno.version.deno,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.max(0, Math.round((now - startedAt) / 1000)),
      database: {
        uri: redactUri(cfg.db.uri),
        reachable: false,
        schemaVersion: m.migrationsVersion.get({}),
        pool: {
          max: m.dbConnectionsMax.get({}),
          inUse: readGauge(m.dbConnectionsInUse),
          waiting: readGauge(m.dbRequestsWaiting),
        },
      },
      ha: {
        enabled: cfg.metrics.ha.enabled,
        clusterLabel: cfg.metrics.ha.clusterLabel,
        replicaLabel: cfg.metrics.ha.replicaLabel,
        failoverTimeoutSeconds: cfg.metrics.ha.failoverTimeoutMs / 1000,
        leaseTimeoutSeconds: cfg.metrics.ha.leaseTimeoutMs / 1000,
      },
      clusters: [],
      clustersTotal: 0,
      clustersTruncated: false,
      samples: { stored: m.samplesIngested.get({}), dropped: dropped() },
      rates: monitor.rates(),
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${DB_TIMEOUT_MS / 1000} s`)),
          DB_TIMEOUT_MS,
        );
      });
      const [leases, logs, version] = await Promise.race([this.#query(), timeout]);
      report.database.reachable = true;
      report.database.schemaVersion = version;
      report.clustersTotal = leases[0]?.total ?? 0;
      report.clustersTruncated = report.clustersTotal > leases.length;
      const byCluster = new Map<string, LogRow[]>();
      for (const l of logs) {
        let list = byCluster.get(l.cluster_name);
        if (!list) byCluster.set(l.cluster_name, list = []);
        list.push(l);
      }
      for (const l of leases) {
        const rows = (byCluster.get(l.cluster_name) ?? []).sort((a, b) =>
          a.lease_start.getTime() - b.lease_start.getTime()
        );
        report.clusters.push({
          cluster: l.cluster_name,
          leader: l.leader_name,
          leaseStart: l.lease_start.toISOString(),
          leaseUntil: l.lease_until.toISOString(),
          maxTime: l.max_time.toISOString(),
          lastHeardSecondsAgo: Math.max(0, Math.round(l.heard_ago * 10) / 10),
          changedAt: l.changed_at.toISOString(),
          leaderChanges24h: rows.filter((r) =>
            r.changed && r.lease_start.getTime() >= now - DAY_MS
          ).length,
          timeline: rows.map((r) => ({
            leader: r.leader_name,
            start: r.lease_start.toISOString(),
            until: r.lease_until.toISOString(),
          })),
          timelineTruncated: rows.some((r) => r.rn > MAX_CHANGES),
          samples: {
            accepted: m.samplesAccepted.get({ cluster: l.cluster_name }),
            staged: m.samplesStaged.get({ cluster: l.cluster_name }),
            dropped: dropped(l.cluster_name),
          },
        });
      }
      // The extra row fetched to tell "more than MAX_CHANGES" is not shown.
      for (const c of report.clusters) {
        if (c.timelineTruncated) c.timeline = c.timeline.slice(-MAX_CHANGES);
      }
    } catch (err) {
      report.database.error = errorMessage(err);
    } finally {
      clearTimeout(timer);
    }
    return report;
  }

  async #query(): Promise<[LeaseRow[], LogRow[], number]> {
    const sql = this.#o.sql;
    const [{ version }] = await sql<{ version: number }[]>`
      SELECT coalesce(max(version), 0)::int AS version FROM _prom_catalog.migrations`;
    const [{ present }] = await sql<{ present: boolean }[]>`
      SELECT to_regclass('_prom_catalog.ha_leases') IS NOT NULL AS present`;
    if (!present) return [[], [], version];
    const leases = await sql<LeaseRow[]>`
      SELECT cluster_name, leader_name, lease_start, lease_until, max_time,
             extract(epoch FROM clock_timestamp() - last_heard)::float8 AS heard_ago,
             changed_at, count(*) OVER ()::int AS total
      FROM _prom_catalog.ha_leases
      ORDER BY cluster_name
      LIMIT ${MAX_CLUSTERS}`;
    if (leases.length === 0) return [leases, [], version];
    // The leases overlapping the last 24 h, newest first per cluster (one
    // more than shown, to tell truncation), and whether each one followed
    // an earlier lease (a change of leader rather than the first lease).
    const logs = await sql<LogRow[]>`
      SELECT cluster_name, leader_name, lease_start, lease_until, changed, rn::int
      FROM (
        SELECT l.*,
               coalesce((SELECT p.leader_name FROM _prom_catalog.ha_leases_logs p
                         WHERE p.cluster_name = l.cluster_name AND p.lease_start < l.lease_start
                         ORDER BY p.lease_start DESC LIMIT 1) <> l.leader_name,
                        false) AS changed,
               row_number() OVER (PARTITION BY l.cluster_name ORDER BY l.lease_start DESC) AS rn
        FROM _prom_catalog.ha_leases_logs l
        WHERE l.cluster_name = ANY(${leases.map((l) => l.cluster_name)})
          AND l.lease_until > now() - interval '24 hours'
      ) x
      WHERE rn <= ${MAX_CHANGES + 1}`;
    return [leases, logs, version];
  }
}

/** Reads a gauge that is computed at scrape time. */
function readGauge(g: ConnectorMetrics["dbConnectionsInUse"]): number {
  g.collect?.(g);
  return g.get({});
}
