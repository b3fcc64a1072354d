/**
 * Configuration: flags + PROMSCALE_* environment + config.yml → one
 * fully-resolved, typed Config. Nothing else reads Deno.env or argv.
 *
 * (Type only for now; the parser is being written.)
 */

export type LogFormat = "logfmt" | "json";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Every field set: durations in milliseconds, sizes in bytes. */
export interface Config {
  configFile: string;
  web: {
    listenAddress: string; // ":9201"
    hostname: string; // "0.0.0.0" when the address is ":9201"
    port: number; // 9201
    telemetryPath: string; // "/metrics"
    authUsername: string; // "" = off
    authPassword: string; // resolved from --web.auth.password or -file
    authBearerToken: string; // resolved from token or -file
    tlsCertFile: string; // "" = off
    tlsKeyFile: string;
    maxRequestBytes: number; // --web.max-request-size, compressed body limit, default 32 MiB? see below
    maxDecodedBytes: number; // --web.max-decoded-size, snappy declared length limit, default 64 MiB
    maxInFlight: number; // --web.max-in-flight-requests, default 64
    readTimeoutMs: number; // --web.read-timeout, default 30s
  };
  db: {
    uri: string; // resolved connection URI (from --db.uri or the parts)
    host: string;
    port: number;
    user: string;
    password: string;
    name: string;
    sslMode: string;
    app: string;
    connectionsMax: number; // 0 = decide from max_connections at start
    connectionTimeoutMs: number;
    statementTimeoutMs: number;
  };
  metrics: {
    asyncAcks: boolean;
    seriesCacheMax: number;
    ha: {
      enabled: boolean;
      clusterLabel: string;
      replicaLabel: string;
      leaseTimeoutMs: number;
      leaseRefreshMs: number;
      failoverTimeoutMs: number;
    };
  };
  legacyElection: {
    advisoryLockId: number | null;
    prometheusTimeoutMs: number;
  };
  telemetry: { logLevel: LogLevel; logFormat: LogFormat };
  startup: { only: boolean; skipMigrate: boolean };
  /** Deprecation warnings collected while parsing, to be logged at start. */
  warnings: string[];
}
