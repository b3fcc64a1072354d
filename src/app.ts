/**
 * Assembles the connector from a resolved Config: open pool → migrate →
 * build the write path → listen. `stop()` mirrors it: stop accepting, finish
 * requests in flight, stop background work, close the pool.
 */
import type { Sql } from "../deps.ts";
import { type Config, redactUri, withDatabaseLeaseTimings } from "./config.ts";
import { authorizer } from "./auth.ts";
import { type IngestFilter, passThrough } from "./ingest.ts";
import { writeHandler } from "./remote_write/handler.ts";
import { HaFilter } from "./ha/filter.ts";
import { HaClusters } from "./ha/clusters.ts";
import { Reconciler } from "./ha/reconciler.ts";
import { RecentLeaderSamples } from "./ha/recent.ts";
import {
  AdvisoryLockElection,
  ELECTION_APP_NAME,
  openElectionPool,
} from "./election/advisory_lock.ts";
import { ElectionFilter } from "./election/filter.ts";
import { PgLeaseStore } from "./ha/lease_store.ts";
import { listen, router, type RunningServer } from "./server.ts";
import { HealthProbe } from "./health.ts";
import { MemoryBudget } from "./limits.ts";
import { Gate, openPool } from "./storage/db.ts";
import { migrate, schemaVersion } from "./storage/migrate.ts";
import { SCHEMA_VERSION } from "./storage/migrations/schema.ts";
import { SeriesCache } from "./storage/series_cache.ts";
import { PgWriter } from "./storage/writer.ts";
import { DEFAULT_MAX_READ_SAMPLES, readHandler } from "./remote_read/handler.ts";
import { RetentionJob } from "./storage/retention.ts";
import { Compactor } from "./storage/compactor.ts";
import type { Logger } from "./telemetry/log.ts";
import { ConnectorMetrics } from "./telemetry/metrics.ts";
import { errorMessage } from "./errors.ts";
import { COMMIT, VERSION } from "./version.ts";
import { OpsMonitor } from "./ops/monitor.ts";
import { promqlHandler } from "./promql/api.ts";
import { PgPromqlStore } from "./promql/fetch.ts";
import { trackNewestSample } from "./ops/newest.ts";
import { StatusSource } from "./ops/status.ts";

/** A running connector. */
export interface Connector {
  config: Config;
  sql: Sql;
  metrics: ConnectorMetrics;
  server: RunningServer | null;
  /** Base URL of the HTTP server ("http://127.0.0.1:9201"). */
  url: string;
  stop(): Promise<void>;
}

/** Something with a lifecycle that runs beside the server (lease refresher, retention, …). */
export interface Background {
  stop(): Promise<void>;
}

/** Decides the pool size when --db.connections-max is not set: a quarter of max_connections. */
export async function decidePoolSize(sql: Sql, configured: number): Promise<number> {
  if (configured > 0) return configured;
  const [{ max_connections }] = await sql<{ max_connections: string }[]>`SHOW max_connections`;
  return Math.max(2, Math.min(50, Math.floor(Number(max_connections) / 4)));
}

/** Waits for the database to answer, retrying until the connection timeout. */
async function waitForDatabase(sql: Sql, cfg: Config, log: Logger): Promise<void> {
  const deadline = Date.now() + cfg.db.connectionTimeoutMs;
  let attempt = 0;
  while (true) {
    try {
      await sql`SELECT 1`;
      return;
    } catch (err) {
      attempt++;
      if (Date.now() >= deadline) {
        throw new Error(
          `Cannot connect to the database at ${redactUri(cfg.db.uri)}: ${
            errorMessage(err)
          } (gave up after ${cfg.db.connectionTimeoutMs} ms)`,
        );
      }
      log.warn("Database not reachable yet, retrying", {
        db: redactUri(cfg.db.uri),
        attempt,
        err: errorMessage(err),
      });
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * attempt)));
    }
  }
}

/**
 * Starts the connector. With `--startup.only` it migrates and returns a
 * connector whose server is null.
 */
export async function startConnector(cfg: Config, log: Logger): Promise<Connector> {
  for (const w of cfg.warnings) log.warn(w);
  const probe = openPoolFor(cfg, 1);
  let poolSize: number;
  try {
    await waitForDatabase(probe, cfg, log);
    poolSize = await decidePoolSize(probe, cfg.db.connectionsMax);
  } finally {
    await probe.end({ timeout: 5 });
  }
  const startedAt = Date.now();
  // Remote reads get connections of their own, carved out of the budget
  // (a quarter, at most --web.max-in-flight-reads) so that the connector
  // never holds more than poolSize; with fewer than 3 they share the pool.
  const readConnections = poolSize >= 3
    ? Math.min(cfg.web.maxInFlightReads, Math.max(1, Math.floor(poolSize / 4)))
    : 0;
  const mainPoolSize = poolSize - readConnections;
  const sql = openPoolFor(cfg, mainPoolSize);
  const metrics = new ConnectorMetrics({
    maxClusterLabelValues: cfg.metrics.maxClusterLabelValues,
  });
  metrics.startTime.set({}, startedAt / 1000);
  const background: Background[] = [];
  let readSql: Sql | null = null;
  try {
    if (!cfg.startup.skipMigrate) {
      const res = await migrate(sql, (version, description) => {
        log.info("Applied schema migration", { version, description });
      });
      log.info("Schema is up to date", {
        version: res.to,
        applied: res.applied.length,
        timescaledb: res.timescaledb,
      });
    }
    const version = await schemaVersion(sql);
    if (version < SCHEMA_VERSION) {
      throw new Error(
        `Database schema is at version ${version}, this build needs ${SCHEMA_VERSION}: ` +
          `start once without --startup.skip-migrate`,
      );
    }
    metrics.migrationsVersion.set({}, version);
    metrics.buildInfo.set({ version: VERSION, commit: COMMIT, deno: Deno.version.deno }, 1);
    metrics.dbConnectionsMax.set({}, poolSize);
    if (cfg.dataset.defaultRetentionMs !== null) {
      // Promscale's dataset configuration sets the default retention at
      // every start, through the same SQL function an operator would call.
      const seconds = cfg.dataset.defaultRetentionMs / 1000;
      await sql`SELECT prom_api.set_default_retention_period(make_interval(secs => ${seconds}::float8))`;
      log.info("Default retention set from the dataset configuration", {
        retention_seconds: seconds,
      });
    }
    // The HA lease timings live in _prom_catalog.default, as in Promscale:
    // the dataset configuration writes them, connectors not told otherwise
    // read them.
    for (
      const [key, ms] of [
        ["ha_lease_timeout", cfg.dataset.haLeaseTimeoutMs],
        ["ha_lease_refresh", cfg.dataset.haLeaseRefreshMs],
      ] as const
    ) {
      if (ms !== null) {
        await sql`SELECT _prom_catalog.set_default_value(${key}, ${`${ms} milliseconds`})`;
      }
    }
    if (cfg.metrics.ha.enabled) {
      const [d] = await sql<{ t: number | null; r: number | null }[]>`
        SELECT _prom_catalog.default_interval_ms('ha_lease_timeout') AS t,
               _prom_catalog.default_interval_ms('ha_lease_refresh') AS r`;
      const resolved = withDatabaseLeaseTimings(cfg, { leaseTimeoutMs: d.t, leaseRefreshMs: d.r });
      for (const w of resolved.warnings) log.warn(w);
      if (resolved.config !== cfg) {
        log.info("HA lease timings from _prom_catalog.default", {
          lease_timeout_ms: resolved.config.metrics.ha.leaseTimeoutMs,
          lease_refresh_ms: resolved.config.metrics.ha.leaseRefreshMs,
        });
      }
      cfg = resolved.config;
    }
    if (cfg.startup.only) {
      await sql.end({ timeout: 5 });
      return { config: cfg, sql, metrics, server: null, url: "", stop: () => Promise.resolve() };
    }

    // Writes take all but one connection, so health checks and lease
    // refreshes always find one.
    const writeSlots = Math.max(1, mainPoolSize - 1);
    // A write waits at most 10 s for a connection: Prometheus gives up on a
    // request after 30 s (remote_timeout) and retries it anyway.
    const gate = new Gate(writeSlots, writeSlots * 8, Math.min(cfg.db.connectionTimeoutMs, 10_000));
    const cache = new SeriesCache(cfg.metrics.seriesCacheMax);
    const writer = new PgWriter(sql, gate, cache);
    metrics.seriesCacheSize.collect = (g) => g.set({}, cache.size);
    metrics.watchSeriesCache(cache);
    gate.onDone = (seconds, failed) => metrics.databaseRequest("write", seconds, failed);
    metrics.dbConnectionsInUse.collect = (g) => g.set({}, gate.active);
    metrics.dbRequestsWaiting.collect = (g) => g.set({}, gate.waiting);

    let filter: IngestFilter = passThrough;
    if (cfg.metrics.ha.enabled) {
      const ha = cfg.metrics.ha;
      const timings = {
        leaseTimeoutMs: ha.leaseTimeoutMs,
        leaseRefreshMs: ha.leaseRefreshMs,
        failoverTimeoutMs: ha.failoverTimeoutMs,
      };
      const store = new PgLeaseStore(sql, timings, ha.clusterLabel);
      const clusters = new HaClusters({ store, timings, metrics, log });
      clusters.start();
      background.push(clusters);
      const recent = new RecentLeaderSamples();
      const reconciler = new Reconciler({ store, timings, metrics, log, recent });
      reconciler.start();
      background.push(reconciler);
      filter = new HaFilter({
        clusters,
        clusterLabel: ha.clusterLabel,
        replicaLabel: ha.replicaLabel,
        metrics,
        recent,
        seriesId: (labels) => cache.get(labels),
      });
    }
    if (cfg.legacyElection.advisoryLockId !== null) {
      // Deprecated (the warning is among cfg.warnings, logged above): the
      // lock lives on a connection of its own, outside the write pool.
      const election = new AdvisoryLockElection({
        lockId: cfg.legacyElection.advisoryLockId,
        prometheusTimeoutMs: cfg.legacyElection.prometheusTimeoutMs,
        openPool: (onclose) =>
          openElectionPool({
            uri: cfg.db.uri,
            app: ELECTION_APP_NAME,
            sslMode: cfg.db.sslMode,
            connectTimeoutMs: cfg.db.connectionTimeoutMs,
          }, onclose),
        metrics,
        log,
      });
      election.start();
      background.push(election);
      filter = new ElectionFilter(election, metrics);
    }
    filter = trackNewestSample(
      filter,
      metrics,
      cfg.metrics.ha.enabled ? cfg.metrics.ha.clusterLabel : null,
    );
    // What all requests in flight may hold together (src/limits.ts).
    const budget = new MemoryBudget(cfg.web.maxInFlightMemory);
    metrics.inFlightMemory.collect = (g) => g.set({}, budget.used);
    const write = writeHandler({
      maxRequestBytes: cfg.web.maxRequestBytes,
      maxDecodedBytes: cfg.web.maxDecodedBytes,
      readTimeoutMs: cfg.web.readTimeoutMs,
      filter,
      writer,
      onWritten: (samples, newSeries, deduplicated) => {
        metrics.samplesIngested.inc({}, samples);
        metrics.promIngestItems.inc(
          { type: "metric", kind: "sample", subsystem: "copier" },
          samples,
        );
        if (deduplicated) {
          metrics.promIngestDuplicates.inc({ type: "metric", kind: "sample" }, samples);
        }
        if (newSeries) metrics.seriesCreated.inc({}, newSeries);
        if (deduplicated) metrics.duplicateWrites.inc();
      },
      onModelWritten: (protocol, c) => {
        metrics.writeRequestsByProtocol.inc({ protocol });
        if (c.histograms) metrics.histogramsIngested.inc({}, c.histograms);
        if (c.exemplars) metrics.exemplarsIngested.inc({}, c.exemplars);
        if (c.metadata) metrics.metadataIngested.inc({}, c.metadata);
      },
      limits: {
        maxSeries: cfg.web.maxSeriesPerRequest,
        maxLabels: cfg.web.maxLabelsPerRequest,
      },
      budget,
      asyncAcks: cfg.metrics.asyncAcks,
      onAsyncError: (err) => {
        log.error("Asynchronous write failed; the samples are lost", {
          err: errorMessage(err),
        });
      },
    });
    // Read path: remote read, and the retention job (every connector runs
    // it; an advisory lock lets one at a time do the work).
    // Reads run on connections of their own, behind a gate of their own:
    // a slow read (up to statement_timeout) never holds, nor waits for, a
    // connection of the writes. Connections are opened on first use.
    readSql = readConnections > 0 ? openPoolFor(cfg, readConnections) : null;
    const readGate = new Gate(
      Math.max(1, readConnections),
      cfg.web.maxInFlightReads,
      Math.min(cfg.db.connectionTimeoutMs, 10_000),
    );
    readGate.onDone = (seconds, failed) => metrics.databaseRequest("read", seconds, failed);
    const read = readHandler({
      sql: readSql ?? sql,
      gate: readGate,
      maxRequestBytes: cfg.web.maxRequestBytes,
      maxDecodedBytes: cfg.web.maxDecodedBytes,
      readTimeoutMs: cfg.web.readTimeoutMs,
      maxSamples: DEFAULT_MAX_READ_SAMPLES,
      replicaLabel: cfg.metrics.ha.enabled ? cfg.metrics.ha.replicaLabel : undefined,
    });
    // PromQL reads through the same connections and gate as remote read.
    const promql = promqlHandler({
      store: new PgPromqlStore({
        sql: readSql ?? sql,
        gate: readGate,
        replicaLabel: cfg.metrics.ha.enabled ? cfg.metrics.ha.replicaLabel : undefined,
      }),
      ...cfg.metrics.promql,
      maxRequestBytes: cfg.web.maxRequestBytes,
    });
    const retention = new RetentionJob({
      sql,
      log,
      metrics,
      onPartitionsDropped: () => writer.forgetPartitions(),
      haClusterLabel: cfg.metrics.ha.clusterLabel,
    });
    retention.start();
    background.push(retention);
    // The compactor (docs/storage.md): every connector runs it, an advisory
    // lock lets one at a time work.
    if (cfg.storage.compressAfterMs > 0) {
      const compactor = new Compactor({
        sql,
        log,
        delayMs: cfg.storage.compressAfterMs,
        onPartitionsDropped: () => writer.forgetPartitions(),
      });
      compactor.start();
      background.push(compactor);
    }
    const monitor = new OpsMonitor({
      metrics,
      leaderAges: cfg.metrics.ha.enabled
        ? () =>
          sql<{ cluster: string; seconds: number }[]>`
            SELECT cluster_name AS cluster,
                   greatest(0, extract(epoch FROM clock_timestamp() - last_heard))::float8 AS seconds
            FROM _prom_catalog.ha_leases
            WHERE last_heard > now() - interval '24 hours'
            ORDER BY last_heard DESC LIMIT 1000`
        : undefined,
    });
    monitor.start();
    background.push(monitor);
    const status = new StatusSource({ config: cfg, sql, metrics, monitor, startedAt });
    // /healthz answers from a probe run about once a second, never per call.
    const health = new HealthProbe({ probe: () => sql`SELECT 1` });
    await health.start();
    background.push(health);
    metrics.dbUp.collect = (g) => g.set({}, health.state().ok ? 1 : 0);
    metrics.watchHealthProbe(health);
    const handler = router(
      {
        write,
        read,
        promql,
        health: () => health.state(),
        status: (req, as) => status.serve(req, as),
        authIgnorePaths: cfg.web.authIgnorePaths,
        telemetryPath: cfg.web.telemetryPath,
        maxInFlight: cfg.web.maxInFlight,
        maxInFlightReads: cfg.web.maxInFlightReads,
        authorize: authorizer({
          username: cfg.web.authUsername,
          password: cfg.web.authPassword,
          bearerToken: cfg.web.authBearerToken,
        }),
      },
      metrics,
      log,
    );

    // Reading the certificate and key is configuration, done once at start.
    const tls = cfg.web.tlsCertFile !== ""
      ? {
        cert: await readTlsFile(cfg.web.tlsCertFile, "auth.tls-cert-file"),
        key: await readTlsFile(cfg.web.tlsKeyFile, "auth.tls-key-file"),
      }
      : {};
    const server = await listen(handler, {
      hostname: cfg.web.hostname,
      port: cfg.web.port,
      ...tls,
    }, log);
    const host = server.hostname.includes(":") ? `[${server.hostname}]` : server.hostname;
    const scheme = tls.cert ? "https" : "http";
    const url = `${scheme}://${host === "0.0.0.0" ? "127.0.0.1" : host}:${server.port}`;
    log.info("Promscale connector started", {
      version: VERSION,
      listen: `${host}:${server.port}`,
      db: redactUri(cfg.db.uri),
      pool: poolSize,
      ha: cfg.metrics.ha.enabled
        ? "lease"
        : cfg.legacyElection.advisoryLockId !== null
        ? "advisory-lock"
        : "off",
    });

    let stopping: Promise<void> | null = null;
    const stop = () =>
      stopping ??= (async () => {
        log.info("Shutting down: finishing requests in flight");
        // Requests in flight get 15 s (a write waits at most 10 s for a
        // connection); a stuck one must not hold the stop past systemd's
        // TimeoutStopSec. What is not answered is retried by Prometheus.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<boolean>((r) => timer = setTimeout(() => r(true), 15_000));
        if (await Promise.race([server.shutdown().then(() => false), late])) {
          log.warn("Requests still in flight after 15 s; stopping anyway");
        }
        clearTimeout(timer);
        gate.close();
        readGate.close();
        for (const b of background.reverse()) await b.stop();
        await readSql?.end({ timeout: 5 });
        await sql.end({ timeout: 10 });
        log.info("Shutdown complete");
      })();
    return { config: cfg, sql, metrics, server, url, stop };
  } catch (err) {
    for (const b of background.reverse()) await b.stop().catch(() => {});
    await readSql?.end({ timeout: 5 }).catch(() => {});
    await sql.end({ timeout: 5 }).catch(() => {});
    throw err;
  }
}

async function readTlsFile(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(`Cannot read --${flag} "${path}": ${errorMessage(err)}`);
  }
}

function openPoolFor(cfg: Config, max: number): Sql {
  return openPool({
    uri: cfg.db.uri,
    max,
    app: cfg.db.app,
    connectTimeoutMs: cfg.db.connectionTimeoutMs,
    statementTimeoutMs: cfg.db.statementTimeoutMs,
    sslMode: cfg.db.sslMode,
  });
}
