/**
 * Configuration: flags + PROMSCALE_* environment + config.yml → one
 * fully-resolved, typed Config. Nothing else reads Deno.env or argv.
 *
 * Flag names are Promscale's (dotted, `--`), so its documentation still
 * applies. Precedence: flag > environment > config file > default.
 *
 * commander parses the command line only; it never sees the environment
 * (its `Option.env` reads `process.env` and treats `X=false` as true for
 * boolean options) and never exits or prints: `exitOverride()` and
 * `configureOutput()` turn everything into exceptions that `parseConfig()`
 * maps to ConfigError / ConfigExit.
 */

import { Command, Option, parseYaml } from "../deps.ts";
import { COMMIT, VERSION } from "./version.ts";
import {
  COMPAT_FLAGS,
  readDataset,
  UNSUPPORTED_FLAGS,
  unsupportedReason,
} from "./config_compat.ts";

export type LogFormat = "logfmt" | "json";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Every field set: durations in milliseconds, sizes in bytes. */
export interface Config {
  /** The config file that was read; "" when the default `config.yml` does not exist. */
  configFile: string;
  web: {
    listenAddress: string; // ":9201"
    hostname: string; // "0.0.0.0" when the address is ":9201"
    port: number; // 9201
    telemetryPath: string; // "/metrics"
    authUsername: string; // "" = off
    authPassword: string; // resolved from --web.auth.password or -file
    authBearerToken: string; // resolved from token or -file
    authIgnorePaths: string[]; // --web.auth.ignore-path: paths served without auth
    tlsCertFile: string; // "" = off
    tlsKeyFile: string;
    maxRequestBytes: number; // --web.max-request-size, compressed body limit, default 32 MiB
    maxDecodedBytes: number; // --web.max-decoded-size, snappy declared length limit, default 64 MiB
    maxInFlight: number; // --web.max-in-flight-requests, default 64
    maxInFlightReads: number; // --web.max-in-flight-reads, default 8
    maxSeriesPerRequest: number; // --web.max-series-per-request, default 200,000
    maxLabelsPerRequest: number; // --web.max-labels-per-request, default 4,000,000
    maxInFlightMemory: number; // --web.max-in-flight-memory, default 1 GiB
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
    statementTimeoutMs: number; // 0 = no timeout
    /**
     * The embedded database (PGlite), when no database is configured at
     * all; null when one is. `uri` is then replaced at start.
     */
    embedded: EmbeddedConfig | null;
  };
  metrics: {
    asyncAcks: boolean;
    seriesCacheMax: number;
    maxClusterLabelValues: number; // --metrics.max-cluster-label-values, default 1000
    promql: {
      queryTimeoutMs: number; // --metrics.promql.query-timeout, default 2m
      maxSamples: number; // --metrics.promql.max-samples, default 50,000,000
      lookbackDeltaMs: number; // --metrics.promql.lookback-delta, default 5m
      maxPointsPerTs: number; // --metrics.promql.max-points-per-ts, default 11,000
      subqueryStepMs: number; // --metrics.promql.default-subquery-step-interval, default 1m
      maxConcurrency: number; // --metrics.promql.max-concurrency, default 20
    };
    ha: {
      enabled: boolean;
      clusterLabel: string;
      replicaLabel: string;
      leaseTimeoutMs: number;
      leaseRefreshMs: number;
      failoverTimeoutMs: number;
      /**
       * The lease timings set nowhere (no flag, variable, file key or
       * dataset): `withDatabaseLeaseTimings` takes them from
       * `_prom_catalog.default` at start.
       */
      timingsFromDatabase: { leaseTimeout: boolean; leaseRefresh: boolean };
    };
  };
  legacyElection: {
    advisoryLockId: number | null; // null = off
    prometheusTimeoutMs: number; // 0 when off
  };
  telemetry: { logLevel: LogLevel; logFormat: LogFormat };
  startup: { only: boolean; skipMigrate: boolean };
  /** --storage.compress-after: sealed partitions this old are compacted; 0 = off. */
  storage: { compressAfterMs: number };
  /** From Promscale's dataset configuration (`startup.dataset.config`). */
  dataset: {
    /** metrics.default_retention_period, applied at start; null = leave the database's. */
    defaultRetentionMs: number | null;
    /**
     * metrics.ha_lease_timeout and metrics.ha_lease_refresh, written to
     * `_prom_catalog.default` at start as Promscale did; null = not set.
     */
    haLeaseTimeoutMs: number | null;
    haLeaseRefreshMs: number | null;
  };
  /** Deprecation warnings collected while parsing, to be logged at start. */
  warnings: string[];
}

/** Resolved settings of the embedded database (Config.db.embedded). */
export interface EmbeddedConfig {
  /** Data directory, as given (relative to the working directory). */
  dir: string;
  /** Loopback address served to users for SQL; null = not served. */
  sqlListen: { hostname: string; port: number } | null;
}

/** Bad configuration; the message is one line, fit to print before exiting non-zero. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*[\r\n]+\s*/g, " ").trim());
    this.name = "ConfigError";
  }
}

/**
 * Not an error: `--help`, `--version` or `promscale version` was asked for.
 * The caller prints `output` (no trailing newline) and exits with `code`.
 */
export class ConfigExit extends Error {
  constructor(readonly code: number, readonly output: string) {
    super(`Exit ${code}`);
    this.name = "ConfigExit";
  }
}

// ---------------------------------------------------------------------------
// The flag table: one row per flag, the single source for parsing, the
// environment and config-file names, and --help.

type Kind = "string" | "bool" | "int" | "duration" | "bytes" | "choice";

interface FlagSpec {
  name: string; // without "--"
  kind: Kind;
  /** Placeholder shown in --help for flags that take a value. */
  arg?: string;
  /** Default as text; undefined = unset / off. */
  def?: string;
  help: string;
  choices?: readonly string[];
  /** Old dash-style names, accepted with a deprecation warning. */
  aliases?: readonly string[];
  /** Command line only (--version): no environment variable, no file key. */
  cliOnly?: boolean;
  /** Not accepted as a config file key (--config itself). */
  noFile?: boolean;
  /** Accepted for compatibility with Promscale, with a warning ending in this reason. */
  ignored?: string;
  group: string;
}

const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
const LOG_FORMATS = ["logfmt", "json"] as const;

const FLAGS: readonly FlagSpec[] = [
  {
    group: "General",
    name: "config",
    kind: "string",
    arg: "<path>",
    def: "config.yml",
    noFile: true,
    help: "YAML config file: a map of flag name (without --) to value. " +
      "A missing default file is ignored; a missing file given explicitly is an error.",
  },
  {
    group: "General",
    name: "version",
    kind: "bool",
    cliOnly: true,
    help: 'Print the version and exit (also "promscale version").',
  },
  // --- web ---------------------------------------------------------------
  {
    group: "Web",
    name: "web.listen-address",
    kind: "string",
    arg: "<host:port>",
    def: ":9201",
    aliases: ["web-listen-address"],
    help: 'Address to listen on: ":9201" (all interfaces), "127.0.0.1:9201", "[::1]:9201"; ' +
      "port 0 picks a free port.",
  },
  {
    group: "Web",
    name: "web.telemetry-path",
    kind: "string",
    arg: "<path>",
    def: "/metrics",
    aliases: ["web-telemetry-path"],
    help: "Path under which the connector's own metrics are exposed.",
  },
  {
    group: "Web",
    name: "web.auth.username",
    kind: "string",
    arg: "<name>",
    aliases: ["auth-username"],
    help: "Basic auth user name required on every endpoint but /healthz (needs a password).",
  },
  {
    group: "Web",
    name: "web.auth.password",
    kind: "string",
    arg: "<password>",
    aliases: ["auth-password"],
    help: "Basic auth password (prefer --web.auth.password-file).",
  },
  {
    group: "Web",
    name: "web.auth.password-file",
    kind: "string",
    arg: "<path>",
    aliases: ["auth-password-file"],
    help: "File holding the basic auth password (a trailing newline is ignored).",
  },
  {
    group: "Web",
    name: "web.auth.bearer-token",
    kind: "string",
    arg: "<token>",
    aliases: ["bearer-token"],
    help: "Bearer token required on every endpoint but /healthz (prefer the -file form). " +
      "Cannot be combined with basic auth.",
  },
  {
    group: "Web",
    name: "web.auth.bearer-token-file",
    kind: "string",
    arg: "<path>",
    aliases: ["bearer-token-file"],
    help: "File holding the bearer token (a trailing newline is ignored).",
  },
  {
    group: "Web",
    name: "web.auth.ignore-path",
    kind: "string",
    arg: "<paths>",
    help: 'Comma-separated paths served without authentication, e.g. "/,/api/v1/status/ha" ' +
      "for the status page (/healthz never needs it).",
  },
  {
    group: "Web",
    name: "auth.tls-cert-file",
    kind: "string",
    arg: "<path>",
    aliases: ["tls-cert-file"],
    help: "TLS certificate file; serves HTTPS when given together with --auth.tls-key-file.",
  },
  {
    group: "Web",
    name: "auth.tls-key-file",
    kind: "string",
    arg: "<path>",
    aliases: ["tls-key-file"],
    help: "TLS private key file; required together with --auth.tls-cert-file.",
  },
  {
    group: "Web",
    name: "web.max-request-size",
    kind: "bytes",
    arg: "<bytes>",
    def: "33554432",
    help: "Largest accepted (compressed) request body: bytes, or with a unit " +
      "(KiB, MiB, GiB = powers of 1024; KB, MB, GB = powers of 1000).",
  },
  {
    group: "Web",
    name: "web.max-decoded-size",
    kind: "bytes",
    arg: "<bytes>",
    def: "67108864",
    help: "Largest accepted decompressed request size, checked against the snappy header " +
      "before decompressing.",
  },
  {
    group: "Web",
    name: "web.max-in-flight-requests",
    kind: "int",
    arg: "<n>",
    def: "64",
    help: "Write requests handled at once; more are answered 503 so Prometheus retries.",
  },
  {
    group: "Web",
    name: "web.max-in-flight-reads",
    kind: "int",
    arg: "<n>",
    def: "8",
    help: "Remote read requests handled at once, apart from writes; more are answered 503.",
  },
  {
    group: "Web",
    name: "web.max-series-per-request",
    kind: "int",
    arg: "<n>",
    def: "200000",
    help: "Most series in one write request; more are refused with 413 before decoding them.",
  },
  {
    group: "Web",
    name: "web.max-labels-per-request",
    kind: "int",
    arg: "<n>",
    def: "4000000",
    help: "Most labels in one write request, over all its series; more are refused with 413.",
  },
  {
    group: "Web",
    name: "web.max-in-flight-memory",
    kind: "bytes",
    arg: "<bytes>",
    def: "1073741824",
    help: "Estimated memory all requests in flight may hold together (bodies and decoded " +
      "series); a request that does not fit gets 503, one that never could 413.",
  },
  {
    group: "Web",
    name: "web.read-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "30s",
    help: "Longest time to read a request body.",
  },
  // --- database ----------------------------------------------------------
  {
    group: "Database",
    name: "db.uri",
    kind: "string",
    arg: "<uri>",
    aliases: ["db-uri"],
    help: "PostgreSQL connection URI (postgres://user:password@host:port/db?sslmode=...); " +
      "when given, the other --db.* connection parts are ignored.",
  },
  {
    group: "Database",
    name: "db.host",
    kind: "string",
    arg: "<host>",
    def: "localhost",
    aliases: ["db-host"],
    help: "Database host.",
  },
  {
    group: "Database",
    name: "db.port",
    kind: "int",
    arg: "<port>",
    def: "5432",
    aliases: ["db-port"],
    help: "Database port.",
  },
  {
    group: "Database",
    name: "db.user",
    kind: "string",
    arg: "<user>",
    def: "postgres",
    aliases: ["db-user"],
    help: "Database user.",
  },
  {
    group: "Database",
    name: "db.password",
    kind: "string",
    arg: "<password>",
    aliases: ["db-password"],
    help: "Database password.",
  },
  {
    group: "Database",
    name: "db.name",
    kind: "string",
    arg: "<name>",
    def: "postgres",
    aliases: ["db-name"],
    help: "Database name.",
  },
  {
    group: "Database",
    name: "db.ssl-mode",
    kind: "choice",
    arg: "<mode>",
    def: "prefer",
    choices: SSL_MODES,
    aliases: ["db-ssl-mode"],
    help: `TLS mode of the database connection: ${SSL_MODES.join(", ")}.`,
  },
  {
    group: "Database",
    name: "db.app",
    kind: "string",
    arg: "<name>",
    def: `promscale@${VERSION}`,
    aliases: ["app"],
    help: "application_name reported to PostgreSQL.",
  },
  {
    group: "Database",
    name: "db.connections-max",
    kind: "int",
    arg: "<n>",
    def: "0",
    aliases: ["db-connections-max"],
    help: "Largest number of database connections; 0 = a share of the server's " +
      "max_connections, decided at start.",
  },
  {
    group: "Database",
    name: "db.connection-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "60s",
    aliases: ["db-connection-timeout"],
    help: "Longest time to wait for a database connection.",
  },
  {
    group: "Database",
    name: "db.statement-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "1m",
    help: "statement_timeout of the connector's sessions; 0 = none.",
  },
  {
    group: "Database",
    name: "db.embedded-dir",
    kind: "string",
    arg: "<dir>",
    def: "./promscale-data",
    help: "Data directory of the embedded database (PGlite), used when no database is " +
      "configured (no --db.uri or other --db.* connection setting); created with mode 0700.",
  },
  {
    group: "Database",
    name: "db.embedded-sql-listen",
    kind: "string",
    arg: "<host:port>",
    def: "",
    help: "Serve SQL (psql, pg_dump) on this loopback address from the embedded database; " +
      'off when empty. E.g. "127.0.0.1:5433".',
  },
  // --- metrics -----------------------------------------------------------
  {
    group: "Metrics",
    name: "metrics.async-acks",
    kind: "bool",
    def: "false",
    aliases: ["async-acks"],
    help: "Answer write requests before the data is committed (faster; may lose data on a crash).",
  },
  {
    group: "Metrics",
    name: "metrics.cache.series.max-size",
    kind: "int",
    arg: "<n>",
    def: "500000",
    help: "Most series ids kept in memory.",
  },
  {
    group: "PromQL",
    name: "metrics.promql.query-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "2m",
    help: "Longest time a PromQL query may take (the request's timeout parameter may shorten it).",
  },
  {
    group: "PromQL",
    name: "metrics.promql.max-samples",
    kind: "int",
    arg: "<n>",
    def: "50000000",
    help: "Most samples one PromQL query may load (and return); beyond that, 422.",
  },
  {
    group: "PromQL",
    name: "metrics.promql.lookback-delta",
    kind: "duration",
    arg: "<duration>",
    def: "5m",
    help: "How far back an instant vector selector looks for a sample.",
  },
  {
    group: "PromQL",
    name: "metrics.promql.max-points-per-ts",
    kind: "int",
    arg: "<n>",
    def: "11000",
    help:
      "Most points per series a range query may ask for (end - start) / step; beyond that, 400.",
  },
  {
    group: "PromQL",
    name: "metrics.promql.default-subquery-step-interval",
    kind: "duration",
    arg: "<duration>",
    def: "1m",
    help: "Step of subqueries that give none.",
  },
  {
    group: "PromQL",
    name: "metrics.promql.max-concurrency",
    kind: "int",
    arg: "<n>",
    def: "20",
    help: "PromQL queries evaluated at once; more wait (up to their timeout).",
  },
  {
    group: "Metrics",
    name: "metrics.max-cluster-label-values",
    kind: "int",
    arg: "<n>",
    def: "1000",
    help: "Most distinct cluster values the per-cluster metrics on /metrics keep; " +
      'later clusters are counted under cluster="_other_".',
  },
  {
    group: "Metrics",
    name: "metrics.high-availability",
    kind: "bool",
    def: "false",
    aliases: ["high-availability"],
    help: "Lease-based high availability on the external labels of Prometheus replicas.",
  },
  {
    group: "Metrics",
    name: "metrics.high-availability.cluster-label",
    kind: "string",
    arg: "<label>",
    def: "cluster",
    help: "External label naming the HA group (kept on stored series).",
  },
  {
    group: "Metrics",
    name: "metrics.high-availability.replica-label",
    kind: "string",
    arg: "<label>",
    def: "__replica__",
    help: "External label naming the replica (removed before storage).",
  },
  {
    group: "Metrics",
    name: "metrics.high-availability.lease-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "1m",
    help: "Length of a leader's lease, in sample time. Must match across connectors.",
  },
  {
    group: "Metrics",
    name: "metrics.high-availability.lease-refresh",
    kind: "duration",
    arg: "<duration>",
    def: "10s",
    help: "How often a lease is extended and refreshed from the database; must be shorter " +
      "than the lease and failover timeouts. Must match across connectors.",
  },
  {
    group: "Metrics",
    name: "metrics.high-availability.failover-timeout",
    kind: "duration",
    arg: "<duration>",
    def: "30s",
    help: "Silence of the leader after which another replica takes over. " +
      "Must match across connectors.",
  },
  {
    group: "Metrics",
    name: "leader-election-pg-advisory-lock-id",
    kind: "int",
    arg: "<id>",
    help: "(Deprecated) Legacy leader election through a PostgreSQL advisory lock with this id; " +
      "needs --leader-election-pg-advisory-lock-prometheus-timeout. " +
      "Cannot be combined with --metrics.high-availability.",
  },
  {
    group: "Metrics",
    name: "leader-election-pg-advisory-lock-prometheus-timeout",
    kind: "duration",
    arg: "<duration>",
    help: "(Deprecated) Legacy leader election: give up the lock when the local Prometheus " +
      "has not written for this long.",
  },
  // --- telemetry and startup --------------------------------------------
  {
    group: "Telemetry",
    name: "telemetry.log.level",
    kind: "choice",
    arg: "<level>",
    def: "info",
    choices: LOG_LEVELS,
    aliases: ["log-level"],
    help: `Log level: ${LOG_LEVELS.join(", ")}.`,
  },
  {
    group: "Telemetry",
    name: "telemetry.log.format",
    kind: "choice",
    arg: "<format>",
    def: "logfmt",
    choices: LOG_FORMATS,
    aliases: ["log-format"],
    help: `Log format: ${LOG_FORMATS.join(", ")}.`,
  },
  {
    group: "Storage",
    name: "storage.compress-after",
    kind: "duration",
    arg: "<duration>",
    def: "1h",
    help: "Compress a partition's samples (a day's) once it ended this long ago " +
      "(docs/storage.md); 0 turns the compactor off. Keep it beyond the HA windows.",
  },
  {
    group: "Startup",
    name: "startup.only",
    kind: "bool",
    def: "false",
    help: "Migrate the database schema, then exit.",
  },
  {
    group: "Startup",
    name: "startup.skip-migrate",
    kind: "bool",
    def: "false",
    help: "Do not migrate the database schema at start.",
  },
  {
    group: "Startup",
    name: "startup.dataset.config",
    kind: "string",
    arg: "<yaml>",
    help: "Promscale's dataset configuration (YAML): metrics.default_retention_period sets the " +
      "default retention at start; metrics.ha_lease_timeout and metrics.ha_lease_refresh set " +
      "the HA lease timings unless their flags are given; other keys are ignored with a " +
      "warning. In config.yml also as a nested startup.dataset map.",
  },
  ...COMPAT_FLAGS.map((c): FlagSpec => ({
    group: "Accepted from Promscale, no effect (one warning each)",
    name: c.name,
    kind: c.kind,
    arg: c.kind === "bool" ? undefined : "<value>",
    ignored: c.reason,
    help: `Ignored: ${c.reason}.`,
  })),
];

const BY_NAME = new Map<string, FlagSpec>(FLAGS.map((f) => [f.name, f]));
const BY_ALIAS = new Map<string, FlagSpec>(
  FLAGS.flatMap((f) => (f.aliases ?? []).map((a) => [a, f] as const)),
);

/** `PROMSCALE_<NAME>`: upper case, `.` and `-` become `_`. */
function envName(flagName: string): string {
  return "PROMSCALE_" + flagName.toUpperCase().replace(/[.-]/g, "_");
}

// ---------------------------------------------------------------------------
// Value parsers.

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3, // U+00B5 micro sign, as Go accepts
  "μs": 1e-3, // U+03BC Greek mu
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)/y;

/** Go-style duration → milliseconds, or a reason why not. */
function durationMs(s: string): number | string {
  if (s === "0") return 0;
  if (s === "") return "empty";
  if (/^\d+(\.\d+)?$/.test(s)) return `missing unit (e.g. "${s}s")`;
  let total = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < s.length) {
    const m = DURATION_PART.exec(s);
    if (m === null) return "not a duration";
    total += Number(m[1]) * DURATION_UNITS[m[2]];
  }
  return total;
}

/**
 * Parses a Go-style duration ("500ms", "30s", "1m", "1h30m", "1.5s", "0";
 * also "d" for days) into milliseconds (possibly fractional). Negative
 * durations are rejected.
 */
export function parseDuration(s: string): number {
  const ms = durationMs(s.trim());
  if (typeof ms === "string") throw new ConfigError(`Invalid duration "${s}": ${ms}`);
  return ms;
}

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** A byte size → bytes, or a reason why not. */
function sizeBytes(s: string): number | string {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(s);
  if (m === null) return "not a size (e.g. 33554432, 32MiB)";
  const unit = BYTE_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return `unknown unit "${m[2]}" (use B, KB, MB, GB, KiB, MiB, GiB)`;
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) return "too large";
  return n;
}

/**
 * Parses a byte size: a plain integer or a number with a unit, KiB/MiB/GiB/TiB
 * (powers of 1024) or B/KB/MB/GB/TB (powers of 1000), case-insensitive.
 */
export function parseBytes(s: string): number {
  const n = sizeBytes(s.trim());
  if (typeof n === "string") throw new ConfigError(`Invalid size "${s}": ${n}`);
  return n;
}

/** true/false/t/f/1/0/yes/no, case-insensitive; null for anything else. */
function boolValue(s: string): boolean | null {
  switch (s.trim().toLowerCase()) {
    case "true":
    case "t": // Go's strconv.ParseBool forms, as Promscale takes them
    case "1":
    case "yes":
      return true;
    case "false":
    case "f":
    case "0":
    case "no":
      return false;
    default:
      return null;
  }
}

/**
 * Splits a Go-style listen address. ":9201" means every interface, reported
 * as hostname "0.0.0.0"; IPv6 hosts are bracketed ("[::1]:9201").
 */
function listenAddress(s: string): { hostname: string; port: number } | string {
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
  if (v6 !== null) {
    [, host, portText] = v6;
    if (host === "") return "empty IPv6 host";
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) return 'missing port (e.g. ":9201")';
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(":")) return 'IPv6 hosts need brackets (e.g. "[::1]:9201")';
    if (/[\s/\[\]]/.test(host)) return "not a host";
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    return "the port must be a number from 0 to 65535";
  }
  return { hostname: host === "" ? "0.0.0.0" : host, port: Number(portText) };
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

// ---------------------------------------------------------------------------
// URIs.

/**
 * Masks the password in a PostgreSQL URI or key=value connection string:
 * `postgres://user:****@host/db`, `...?password=****`, `password=****`.
 * Meant for logs and error messages; over-masks rather than leak when the
 * URI is malformed.
 */
export function redactUri(uri: string): string {
  let out = uri;
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.exec(out);
  if (scheme !== null) {
    const start = scheme[0].length;
    const rest = out.slice(start);
    // The userinfo ends at the last "@" before the query; if the password
    // itself holds a raw "?", fall back to the last "@" anywhere.
    const q = rest.indexOf("?");
    let at = rest.lastIndexOf("@", q < 0 ? rest.length : q);
    if (at < 0) at = rest.lastIndexOf("@");
    if (at >= 0) {
      const colon = rest.indexOf(":");
      if (colon >= 0 && colon < at) {
        out = out.slice(0, start) + rest.slice(0, colon + 1) + "****" + rest.slice(at);
      }
    }
  }
  // password=... as a query parameter or in key=value form (sslpassword too).
  return out.replace(
    /(^|[?&;\s])(\w*password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)/gi,
    "$1$2****",
  );
}

/** Builds a URI from the --db.* parts (user, password and name URL-encoded). */
function buildUri(
  p: { host: string; port: number; user: string; password: string; name: string; ssl: string },
): string {
  const enc = encodeURIComponent;
  const userinfo = enc(p.user) + (p.password === "" ? "" : ":" + enc(p.password));
  // A Unix socket directory is percent-encoded as libpq accepts; an IPv6
  // literal is bracketed.
  const host = p.host.startsWith("/")
    ? enc(p.host)
    : p.host.includes(":") && !p.host.startsWith("[")
    ? `[${p.host}]`
    : p.host;
  return `postgres://${userinfo}@${host}:${p.port}/${enc(p.name)}?sslmode=${enc(p.ssl)}`;
}

// ---------------------------------------------------------------------------
// Help and version.

/** "promscale 0.1.0 (deno 2.1.4, commit abc123)". */
export function versionLine(denoVersion: string = Deno.version.deno): string {
  return `promscale ${VERSION} (deno ${denoVersion}, commit ${COMMIT})`;
}

function wrap(text: string, indent: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(indent + line);
  return lines;
}

/**
 * The --help text: every flag with its description, default and environment
 * variable. Never shows a value from the environment or a file.
 */
function helpText(): string {
  const width = 80;
  const out: string[] = [
    "Usage: promscale [flags]",
    "       promscale version",
    "",
    ...wrap(
      "Prometheus remote-write connector storing metrics in PostgreSQL (Deno edition).",
      "",
      width,
    ),
    "",
    ...wrap(
      "Every flag can also be set through the environment (PROMSCALE_<NAME>: upper case, " +
        '"." and "-" become "_") or in the config file (flag name without -- as key). ' +
        "Precedence: flag > environment > config file > default. Boolean flags take " +
        "--flag, --flag=true or --flag=false; durations are Go-style (500ms, 30s, 1m, 1h30m).",
      "",
      width,
    ),
  ];
  let group = "";
  for (const f of FLAGS) {
    if (f.group !== group) {
      group = f.group;
      out.push("", `${group}:`);
    }
    const extra: string[] = [];
    if (f.def !== undefined && f.def !== "") {
      extra.push(`default: ${f.kind === "string" ? JSON.stringify(f.def) : f.def}`);
    }
    if (!f.cliOnly) extra.push(`env: ${envName(f.name)}`);
    // Keep "env: NAME" and "default: X" whole when wrapping, so that they
    // can be grepped for.
    const glue = (s: string) => s.replaceAll(" ", "\u0001");
    const desc = f.help + (extra.length > 0 ? ` (${extra.map(glue).join(", ")})` : "");
    out.push(`  --${f.name}${f.arg ? " " + f.arg : f.kind === "bool" ? "[=bool]" : ""}`);
    out.push(...wrap(desc, "      ", width).map((l) => l.replaceAll("\u0001", " ")));
  }
  out.push("  -h, --help", "      Print this help and exit.");
  out.push("", "Deprecated names (still accepted, with a warning):");
  for (const f of FLAGS) {
    for (const a of f.aliases ?? []) out.push(`  --${a} → --${f.name}`);
  }
  out.push("", "Promscale flags of features not here (exit status 2):");
  for (const u of UNSUPPORTED_FLAGS) {
    const name = u.match.endsWith(".") ? `${u.match}*` : u.match;
    out.push(...wrap(`--${name}: ${u.reason}.`, "  ", width));
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------
// Parsing.

/** Where a raw value came from, for error messages. */
interface Raw {
  value: string;
  from: "flag" | "env" | "file";
  where: string; // "--db.uri", "PROMSCALE_DB_URI" or the config file path
}

/**
 * Rewrites argv into a form commander parses the way Go's flag package
 * would: deprecated aliases become their dotted names (with a warning),
 * `-flag` becomes `--flag`, boolean flags never consume the next argument
 * (`--x` → `--x=true`, `--x=false` stays), and a value flag is joined with
 * its value (`--db.uri u` → `--db.uri=u`) so values that look like flags
 * stay values. Unknown arguments pass through for commander to report.
 */
function normalizeArgv(argv: readonly string[], warnings: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    // Go's flag package (and Promscale's documentation) spell help "-help";
    // "help" as a subcommand reads naturally beside "version".
    if (arg === "-help" || arg === "help") {
      out.push("--help");
      continue;
    }
    const m = /^(--?)([^=]+)(?:=([\s\S]*))?$/.exec(arg);
    if (m === null) {
      out.push(arg);
      continue;
    }
    const [, , name, value] = m;
    let spec = BY_NAME.get(name);
    if (spec === undefined) {
      spec = BY_ALIAS.get(name);
      if (spec !== undefined) {
        warnings.push(`Flag "--${name}" is deprecated; use "--${spec.name}"`);
      }
    }
    if (spec === undefined) {
      const why = unsupportedReason(name);
      if (why !== null) throw new ConfigError(`Flag "--${name}" is not supported: ${why}`);
      out.push(arg);
    } else if (spec.kind === "bool") {
      out.push(`--${spec.name}=${value ?? "true"}`);
    } else if (value !== undefined) {
      out.push(`--${spec.name}=${value}`);
    } else if (i + 1 < argv.length) {
      out.push(`--${spec.name}=${argv[++i]}`);
    } else {
      out.push(`--${spec.name}`); // commander reports the missing value
    }
  }
  return out;
}

/** Runs commander over the normalized argv: flag values by name, and the positionals. */
function parseCommandLine(
  argv: readonly string[],
): { flags: Map<string, string>; args: string[] } {
  const program = new Command("promscale")
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .configureHelp({ formatHelp: () => helpText() })
    .allowExcessArguments(true)
    .argument("[command]");
  const options = new Map<string, Option>();
  for (const f of FLAGS) {
    const opt = new Option(`--${f.name} ${f.kind === "bool" ? "[bool]" : "<value>"}`, f.help);
    program.addOption(opt);
    options.set(f.name, opt);
  }
  try {
    program.parse(argv as string[], { from: "user" });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.help") {
      throw new ConfigExit(0, helpText());
    }
    throw commanderError(e.code ?? "", String(e.message ?? err));
  }
  const values = program.opts() as Record<string, unknown>;
  const flags = new Map<string, string>();
  for (const [name, opt] of options) {
    const v = values[opt.attributeName()];
    if (typeof v === "string") flags.set(name, v);
  }
  return { flags, args: [...program.args] };
}

/** Turns a commander error into a one-line ConfigError in our own words. */
function commanderError(code: string, message: string): ConfigError {
  if (code === "commander.unknownOption") {
    const m = /unknown option '([^'=]*)[^']*'(?:\s*\(Did you mean (\S+?)\?\))?/.exec(message);
    if (m !== null) {
      return new ConfigError(
        `Unknown flag "${m[1]}"` + (m[2] ? ` (did you mean ${m[2]}?)` : ""),
      );
    }
  }
  if (code === "commander.optionMissingArgument") {
    const m = /option '(--\S+)/.exec(message);
    if (m !== null) return new ConfigError(`Flag "${m[1]}" needs a value`);
  }
  const text = message.replace(/^error:\s*/, "");
  return new ConfigError(text.charAt(0).toUpperCase() + text.slice(1));
}

/** Reads the YAML config file into raw values keyed by flag name. */
function readConfigFile(
  path: string,
  explicit: boolean,
  readFile: (path: string) => string | null,
  warnings: string[],
): { values: Map<string, Raw>; read: boolean; dataset?: Record<string, unknown> } {
  const values = new Map<string, Raw>();
  let text: string | null;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ConfigError(
      `Cannot read config file "${path}": ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (text === null) {
    if (explicit) throw new ConfigError(`Config file "${path}" does not exist`);
    return { values, read: false };
  }
  // Parsed twice: the core schema tells nulls, lists and maps apart; the
  // failsafe schema keeps every scalar as its source text, so that
  // `db.password: 0123` stays "0123" and is not turned into the number 123.
  let doc: unknown;
  let asText: unknown;
  try {
    doc = parseYaml(text);
    asText = parseYaml(text, { schema: "failsafe" });
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    throw new ConfigError(`Cannot parse config file "${path}": ${reason}`);
  }
  if (doc === null || doc === undefined) return { values, read: true };
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`Config file "${path}" must be a map of flag name to value`);
  }
  // Nested maps are flattened with dots (`web: {listen-address: x}` is
  // `web.listen-address: x`), as Promscale reads them; a dotted key wins over
  // the same key spelled nested. `startup.dataset` is Promscale's dataset map.
  const flat: [string, unknown, unknown][] = [];
  let dataset: Record<string, unknown> | undefined;
  const walk = (prefix: string, node: Record<string, unknown>, text: Record<string, unknown>) => {
    for (const [k, value] of Object.entries(node)) {
      const key = prefix + k;
      const isMap = typeof value === "object" && value !== null && !Array.isArray(value);
      if (isMap && key === "startup.dataset") {
        const { config, ...rest } = value as Record<string, unknown>;
        if (config !== undefined) {
          flat.push([
            "startup.dataset.config",
            config,
            (text?.[k] as Record<string, unknown>)?.config,
          ]);
        }
        if (Object.keys(rest).length > 0) dataset = rest;
      } else if (isMap && !BY_NAME.has(key)) {
        walk(
          `${key}.`,
          value as Record<string, unknown>,
          (text?.[k] ?? {}) as Record<string, unknown>,
        );
      } else if (prefix === "" || !flat.some(([f]) => f === key)) {
        if (prefix === "") {
          const i = flat.findIndex(([f]) => f === key);
          if (i >= 0) flat.splice(i, 1);
        }
        flat.push([key, value, text?.[k]]);
      }
    }
  };
  walk("", doc as Record<string, unknown>, asText as Record<string, unknown>);
  for (let [key, value, source] of flat) {
    let spec = BY_NAME.get(key);
    if (spec === undefined) {
      spec = BY_ALIAS.get(key);
      if (spec !== undefined) {
        warnings.push(`Config file key "${key}" is deprecated; use "${spec.name}"`);
      }
    }
    if (spec === undefined || spec.cliOnly || spec.noFile) {
      const why = spec === undefined ? unsupportedReason(key) : null;
      if (why !== null) {
        throw new ConfigError(`Key "${key}" in config file "${path}" is not supported: ${why}`);
      }
      throw new ConfigError(`Unknown key "${key}" in config file "${path}"`);
    }
    if (value === null || value === undefined) continue; // "key:", "key: ~" = unset
    if (spec.name === "web.auth.ignore-path" && Array.isArray(value)) {
      // Promscale repeats this flag; a YAML list is the file's way to say so.
      value = source = (source as unknown[]).map(String).join(",");
    }
    if (typeof value === "object" || typeof source !== "string") {
      throw new ConfigError(
        `Invalid value for "${key}" in config file "${path}": expected a string, number or boolean`,
      );
    }
    values.set(spec.name, { value: source, from: "file", where: path });
  }
  return { values, read: true, dataset };
}

/** Environment values keyed by flag name; the dotted names' variables win over old ones. */
function readEnv(env: Record<string, string>, warnings: string[]): Map<string, Raw> {
  const values = new Map<string, Raw>();
  for (const f of FLAGS) {
    if (f.cliOnly) continue;
    const names = [envName(f.name), ...(f.aliases ?? []).map(envName)];
    for (const [i, name] of names.entries()) {
      if (i > 0 && name === names[0]) continue; // same variable as the dotted name
      const value = env[name];
      // Empty counts as unset, as in Promscale (a blank line in a compose file).
      if (value === undefined || value === "") continue;
      if (i > 0) {
        warnings.push(
          `Environment variable "${name}" is deprecated; use "${names[0]}"`,
        );
      }
      values.set(f.name, { value, from: "env", where: name });
      break;
    }
  }
  return values;
}

/** Resolves typed values with precedence flag > env > file > default. */
class Resolver {
  constructor(
    private readonly layers: readonly Map<string, Raw>[],
    readonly filePath: string,
  ) {}

  raw(name: string): Raw | undefined {
    for (const layer of this.layers) {
      const r = layer.get(name);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  /** Whether a flag was set anywhere (not just defaulted). */
  given(name: string): boolean {
    return this.raw(name) !== undefined;
  }

  /** `Invalid value "x" for --name (from PROMSCALE_NAME): reason`. */
  invalid(name: string, reason: string, shown?: string): ConfigError {
    const r = this.raw(name);
    const value = shown ?? r?.value ?? spec(name).def ?? "";
    const from = r === undefined || r.from === "flag"
      ? ""
      : r.from === "env"
      ? ` (from ${r.where})`
      : ` (from config file "${this.filePath}")`;
    return new ConfigError(`Invalid value "${value}" for --${name}${from}: ${reason}`);
  }

  text(name: string): string | undefined {
    return this.raw(name)?.value ?? spec(name).def;
  }

  str(name: string): string {
    return this.text(name) ?? "";
  }

  bool(name: string): boolean {
    const t = this.text(name);
    if (t === undefined) return false;
    const b = boolValue(t);
    if (b === null) throw this.invalid(name, "not a boolean (use true or false)");
    return b;
  }

  int(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const t = this.text(name)?.trim();
    if (t === undefined) throw new Error(`BUG: --${name} has no default`);
    if (!/^[+-]?\d+$/.test(t)) throw this.invalid(name, "not an integer");
    const n = Number(t);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw this.invalid(
        name,
        max === Number.MAX_SAFE_INTEGER ? `must be at least ${min}` : `must be ${min} to ${max}`,
      );
    }
    return n;
  }

  /** Milliseconds, rounded up so that 1us does not become 0 ("off"). */
  duration(name: string, { positive }: { positive: boolean }): number {
    const t = this.text(name)?.trim();
    if (t === undefined) throw new Error(`BUG: --${name} has no default`);
    const ms = durationMs(t);
    if (typeof ms === "string") {
      throw this.invalid(name, ms === "not a duration" ? ms : `not a duration: ${ms}`);
    }
    if (positive && ms <= 0) throw this.invalid(name, "must be greater than 0");
    return Math.ceil(ms);
  }

  bytes(name: string): number {
    const t = this.text(name)?.trim();
    if (t === undefined) throw new Error(`BUG: --${name} has no default`);
    const n = sizeBytes(t);
    if (typeof n === "string") throw this.invalid(name, n);
    if (n <= 0) throw this.invalid(name, "must be greater than 0");
    return n;
  }

  choice<T extends string>(name: string): T {
    const t = this.str(name).trim().toLowerCase();
    const choices = spec(name).choices ?? [];
    if (!choices.includes(t)) throw this.invalid(name, `must be one of ${choices.join(", ")}`);
    return t as T;
  }
}

function spec(name: string): FlagSpec {
  const f = BY_NAME.get(name);
  if (f === undefined) throw new Error(`BUG: unknown flag ${name}`);
  return f;
}

/**
 * The settings that choose a database server. When none is given by a flag,
 * a PROMSCALE_DB_* variable or the config file, the embedded database is
 * used. libpq's PG* variables do not count: they are the environment of a
 * machine, not a choice made for this program (and postgres.js would read
 * them only for parts a URI leaves out).
 */
export const DB_SERVER_FLAGS: readonly string[] = [
  "db.uri",
  "db.host",
  "db.port",
  "db.user",
  "db.password",
  "db.name",
  "db.ssl-mode",
];

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1|\[::1\])$/;

/** Config.db.embedded: null when a database server is configured. */
function embeddedConfig(r: Resolver): EmbeddedConfig | null {
  const server = DB_SERVER_FLAGS.filter((n) => r.given(n));
  const embeddedGiven = ["db.embedded-dir", "db.embedded-sql-listen"].filter((n) => r.given(n));
  if (server.length > 0) {
    if (embeddedGiven.length > 0) {
      throw new ConfigError(
        `--${embeddedGiven[0]} applies to the embedded database only and cannot be combined ` +
          `with --${server[0]}`,
      );
    }
    return null;
  }
  const dir = r.str("db.embedded-dir");
  if (dir === "") throw r.invalid("db.embedded-dir", "empty path");
  const listen = r.str("db.embedded-sql-listen");
  let sqlListen: EmbeddedConfig["sqlListen"] = null;
  if (listen !== "") {
    const addr = listenAddress(listen);
    if (typeof addr === "string") throw r.invalid("db.embedded-sql-listen", addr);
    const hostname = addr.hostname.replace(/^\[|\]$/g, "");
    if (!LOOPBACK.test(hostname)) {
      throw r.invalid(
        "db.embedded-sql-listen",
        "must be a loopback address (127.0.0.1, ::1 or localhost): the embedded database " +
          "has no passwords",
      );
    }
    sqlListen = { hostname, port: addr.port };
  }
  return { dir, sqlListen };
}

/**
 * What a resolved Config asks of the embedded database that it cannot do,
 * as one line; null when nothing. Checked at start, after the legacy
 * election's own flags were validated.
 */
export function embeddedRefusal(cfg: Config): string | null {
  if (cfg.db.embedded !== null && cfg.legacyElection.advisoryLockId !== null) {
    return "--leader-election-pg-advisory-lock-id needs a shared PostgreSQL (--db.uri): the " +
      "embedded database serves a single connector, so there is nobody to elect";
  }
  return null;
}

/**
 * Resolves the configuration from the command line (without the program
 * name, i.e. Deno.args), the environment and the config file. Pure: the
 * environment is a plain object and files are read through `readFile`, which
 * returns null when a file does not exist.
 *
 * @throws ConfigExit for --help, --version and `promscale version`.
 * @throws ConfigError for any bad configuration (one line).
 */
export function parseConfig(
  argv: string[],
  env: Record<string, string>,
  readFile: (path: string) => string | null,
): Config {
  const warnings: string[] = [];
  const cli = parseCommandLine(normalizeArgv(argv, warnings));

  // Positionals: only the "version" subcommand.
  const [first, ...excess] = cli.args;
  if (first !== undefined && first !== "version") {
    const hint = boolValue(first) !== null
      ? `; boolean flags take their value as --flag=${first}`
      : "";
    throw new ConfigError(`Unexpected argument "${first}"${hint}`);
  }
  if (excess.length > 0) {
    throw new ConfigError(`Unexpected argument "${excess[0]}" after "version"`);
  }
  const flagLayer = new Map<string, Raw>(
    [...cli.flags].map(([name, value]) => [name, { value, from: "flag", where: `--${name}` }]),
  );
  const versionFlag = flagLayer.get("version");
  if (versionFlag !== undefined && boolValue(versionFlag.value) === null) {
    throw new ConfigError(`Invalid value "${versionFlag.value}" for --version: not a boolean`);
  }
  if (first === "version" || (versionFlag && boolValue(versionFlag.value))) {
    throw new ConfigExit(0, versionLine());
  }

  const envLayer = readEnv(env, warnings);
  const configRaw = flagLayer.get("config") ?? envLayer.get("config");
  const configPath = configRaw?.value ?? spec("config").def!;
  if (configPath === "") throw new ConfigError('Invalid value "" for --config: empty path');
  const file = readConfigFile(configPath, configRaw !== undefined, readFile, warnings);
  const datasetLayer = datasetValues(
    new Resolver([flagLayer, envLayer, file.values], configPath),
    file.dataset,
    warnings,
  );
  const r = new Resolver([flagLayer, envLayer, file.values, datasetLayer.values], configPath);
  for (const f of FLAGS) {
    if (f.ignored === undefined || !r.given(f.name)) continue;
    // Validated as Promscale would, then ignored.
    if (f.kind === "bool") r.bool(f.name);
    else if (f.kind === "int") r.int(f.name, Number.MIN_SAFE_INTEGER);
    else if (f.kind === "duration") r.duration(f.name, { positive: false });
    warnings.push(
      `--${f.name} is accepted for compatibility with Promscale and ignored: ${f.ignored}`,
    );
  }

  // --- web ---------------------------------------------------------------
  const listen = r.str("web.listen-address");
  const addr = listenAddress(listen);
  if (typeof addr === "string") throw r.invalid("web.listen-address", addr);

  const telemetryPath = r.str("web.telemetry-path");
  if (!telemetryPath.startsWith("/")) {
    throw r.invalid("web.telemetry-path", 'must start with "/"');
  }

  const secret = (valueFlag: string, fileFlag: string): string => {
    const direct = r.str(valueFlag);
    const path = r.str(fileFlag);
    if (path === "") return direct;
    if (direct !== "") {
      throw new ConfigError(`--${valueFlag} and --${fileFlag} cannot be combined`);
    }
    let text: string | null;
    try {
      text = readFile(path);
    } catch (err) {
      throw r.invalid(fileFlag, err instanceof Error ? err.message : String(err));
    }
    if (text === null) throw r.invalid(fileFlag, "file does not exist");
    const value = text.replace(/[\r\n]+$/, "");
    if (value === "") throw r.invalid(fileFlag, "file is empty");
    return value;
  };
  const authUsername = r.str("web.auth.username");
  const authPassword = secret("web.auth.password", "web.auth.password-file");
  const authBearerToken = secret("web.auth.bearer-token", "web.auth.bearer-token-file");
  if (authUsername !== "" && authPassword === "") {
    throw new ConfigError(
      "--web.auth.username needs --web.auth.password or --web.auth.password-file",
    );
  }
  if (authUsername === "" && authPassword !== "") {
    throw new ConfigError("--web.auth.password needs --web.auth.username");
  }
  if (authUsername !== "" && authBearerToken !== "") {
    throw new ConfigError(
      "Basic auth (--web.auth.username) and bearer token auth cannot be combined",
    );
  }

  const authIgnorePaths = [
    ...new Set(r.str("web.auth.ignore-path").split(",").map((p) => p.trim()).filter((p) => p)),
  ];
  for (const p of authIgnorePaths) {
    if (!p.startsWith("/")) {
      throw r.invalid("web.auth.ignore-path", `path "${p}" must start with "/"`);
    }
  }

  const tlsCertFile = r.str("auth.tls-cert-file");
  const tlsKeyFile = r.str("auth.tls-key-file");
  if ((tlsCertFile === "") !== (tlsKeyFile === "")) {
    throw new ConfigError(
      "--auth.tls-cert-file and --auth.tls-key-file must be given together",
    );
  }

  // --- database ------------------------------------------------------------
  const db = {
    host: r.str("db.host"),
    port: r.int("db.port", 1, 65535),
    user: r.str("db.user"),
    password: r.str("db.password"),
    name: r.str("db.name"),
    sslMode: r.choice<string>("db.ssl-mode"),
    app: r.str("db.app"),
    connectionsMax: r.int("db.connections-max", 0),
    connectionTimeoutMs: r.duration("db.connection-timeout", { positive: true }),
    statementTimeoutMs: r.duration("db.statement-timeout", { positive: false }),
  };
  let uri = r.str("db.uri");
  if (uri !== "") {
    if (!/^postgres(ql)?:\/\//i.test(uri)) {
      throw r.invalid("db.uri", 'must start with "postgres://" or "postgresql://"', redactUri(uri));
    }
    const ignored = ["db.host", "db.port", "db.user", "db.password", "db.name", "db.ssl-mode"]
      .filter((n) => r.given(n));
    if (ignored.length > 0) {
      warnings.push(
        `${ignored.map((n) => `--${n}`).join(", ")} ignored because --db.uri is set`,
      );
    }
  } else {
    if (db.host === "") throw r.invalid("db.host", "empty host");
    if (db.user === "") throw r.invalid("db.user", "empty user");
    if (db.name === "") throw r.invalid("db.name", "empty database name");
    uri = buildUri({ ...db, ssl: db.sslMode });
  }
  const embedded = embeddedConfig(r);

  // --- metrics and HA ------------------------------------------------------
  const ha = {
    enabled: r.bool("metrics.high-availability"),
    clusterLabel: r.str("metrics.high-availability.cluster-label"),
    replicaLabel: r.str("metrics.high-availability.replica-label"),
    leaseTimeoutMs: r.duration("metrics.high-availability.lease-timeout", { positive: true }),
    leaseRefreshMs: r.duration("metrics.high-availability.lease-refresh", { positive: true }),
    failoverTimeoutMs: r.duration("metrics.high-availability.failover-timeout", {
      positive: true,
    }),
    timingsFromDatabase: {
      leaseTimeout: !r.given("metrics.high-availability.lease-timeout"),
      leaseRefresh: !r.given("metrics.high-availability.lease-refresh"),
    },
  };
  for (const n of ["cluster-label", "replica-label"]) {
    const name = `metrics.high-availability.${n}`;
    if (!LABEL_NAME.test(r.str(name))) throw r.invalid(name, "not a valid label name");
  }
  if (ha.clusterLabel === ha.replicaLabel) {
    throw new ConfigError(
      "--metrics.high-availability.cluster-label and --metrics.high-availability.replica-label " +
        `must differ (both are "${ha.clusterLabel}")`,
    );
  }
  if (ha.leaseRefreshMs >= ha.failoverTimeoutMs || ha.leaseRefreshMs >= ha.leaseTimeoutMs) {
    throw new ConfigError(
      `--metrics.high-availability.lease-refresh (${
        r.str("metrics.high-availability.lease-refresh")
      }) ` +
        "must be shorter than --metrics.high-availability.failover-timeout " +
        `(${r.str("metrics.high-availability.failover-timeout")}) and ` +
        `--metrics.high-availability.lease-timeout (${
          r.str("metrics.high-availability.lease-timeout")
        })`,
    );
  }

  const lockIdGiven = r.given("leader-election-pg-advisory-lock-id");
  const lockTimeoutGiven = r.given("leader-election-pg-advisory-lock-prometheus-timeout");
  const legacyElection = {
    advisoryLockId: lockIdGiven
      ? r.int("leader-election-pg-advisory-lock-id", Number.MIN_SAFE_INTEGER)
      : null,
    prometheusTimeoutMs: lockTimeoutGiven
      ? r.duration("leader-election-pg-advisory-lock-prometheus-timeout", { positive: true })
      : 0,
  };
  if (lockIdGiven !== lockTimeoutGiven) {
    throw new ConfigError(
      "--leader-election-pg-advisory-lock-id and " +
        "--leader-election-pg-advisory-lock-prometheus-timeout must be given together",
    );
  }
  if (lockIdGiven && ha.enabled) {
    throw new ConfigError(
      "Leader election (--leader-election-pg-advisory-lock-id) cannot be combined with " +
        "--metrics.high-availability",
    );
  }
  if (lockIdGiven) {
    warnings.push(
      "Leader election through --leader-election-pg-advisory-lock-id is deprecated; " +
        "use --metrics.high-availability",
    );
  }

  // --- startup -------------------------------------------------------------
  const startup = { only: r.bool("startup.only"), skipMigrate: r.bool("startup.skip-migrate") };
  if (startup.only && startup.skipMigrate) {
    throw new ConfigError("--startup.only and --startup.skip-migrate cannot be combined");
  }

  return {
    configFile: file.read ? configPath : "",
    web: {
      listenAddress: listen,
      hostname: addr.hostname,
      port: addr.port,
      telemetryPath,
      authUsername,
      authPassword,
      authBearerToken,
      authIgnorePaths,
      tlsCertFile,
      tlsKeyFile,
      maxRequestBytes: r.bytes("web.max-request-size"),
      maxDecodedBytes: r.bytes("web.max-decoded-size"),
      maxInFlight: r.int("web.max-in-flight-requests", 1),
      maxInFlightReads: r.int("web.max-in-flight-reads", 1),
      maxSeriesPerRequest: r.int("web.max-series-per-request", 1),
      maxLabelsPerRequest: r.int("web.max-labels-per-request", 1),
      maxInFlightMemory: r.bytes("web.max-in-flight-memory"),
      readTimeoutMs: r.duration("web.read-timeout", { positive: true }),
    },
    db: { uri, ...db, embedded },
    metrics: {
      asyncAcks: r.bool("metrics.async-acks"),
      seriesCacheMax: r.int("metrics.cache.series.max-size", 1),
      maxClusterLabelValues: r.int("metrics.max-cluster-label-values", 1),
      promql: {
        queryTimeoutMs: r.duration("metrics.promql.query-timeout", { positive: true }),
        maxSamples: r.int("metrics.promql.max-samples", 1),
        lookbackDeltaMs: r.duration("metrics.promql.lookback-delta", { positive: true }),
        maxPointsPerTs: r.int("metrics.promql.max-points-per-ts", 1),
        subqueryStepMs: r.duration("metrics.promql.default-subquery-step-interval", {
          positive: true,
        }),
        maxConcurrency: r.int("metrics.promql.max-concurrency", 1),
      },
      ha,
    },
    legacyElection,
    telemetry: {
      logLevel: r.choice<LogLevel>("telemetry.log.level"),
      logFormat: r.choice<LogFormat>("telemetry.log.format"),
    },
    startup,
    storage: { compressAfterMs: r.duration("storage.compress-after", { positive: false }) },
    dataset: {
      defaultRetentionMs: datasetLayer.retentionMs,
      haLeaseTimeoutMs: datasetLayer.leaseMs.ha_lease_timeout ?? null,
      haLeaseRefreshMs: datasetLayer.leaseMs.ha_lease_refresh ?? null,
    },
    warnings: [...new Set(warnings)],
  };
}

/**
 * Promscale's dataset configuration: `--startup.dataset.config` (YAML, from
 * any source) or the `startup.dataset` map of the config file. The HA lease
 * timings become the lowest layer of their flags (an explicit flag wins);
 * the retention is returned; every other key gets a warning.
 */
function datasetValues(
  r: Resolver,
  nested: Record<string, unknown> | undefined,
  warnings: string[],
): {
  values: Map<string, Raw>;
  retentionMs: number | null;
  leaseMs: Partial<Record<"ha_lease_timeout" | "ha_lease_refresh", number>>;
} {
  const values = new Map<string, Raw>();
  const leaseMs: Partial<Record<"ha_lease_timeout" | "ha_lease_refresh", number>> = {};
  const text = r.str("startup.dataset.config");
  if (text.trim() !== "" && nested !== undefined) {
    warnings.push(
      'Both --startup.dataset.config and a "startup.dataset" map are set; using --startup.dataset.config',
    );
  }
  const source = text.trim() !== "" ? text : nested;
  if (source === undefined) return { values, retentionMs: null, leaseMs };
  const where = text.trim() !== "" ? "--startup.dataset.config" : '"startup.dataset"';
  const bad = (reason: string) => {
    const raw = r.raw("startup.dataset.config");
    const from = raw === undefined || text.trim() === ""
      ? ` in config file "${r.filePath}"`
      : raw.from === "flag"
      ? ""
      : raw.from === "env"
      ? ` (from ${raw.where})`
      : ` (from config file "${r.filePath}")`;
    return new ConfigError(`Invalid dataset configuration ${where}${from}: ${reason}`);
  };
  const d = readDataset(source);
  if (typeof d === "string") throw bad(d);
  for (const line of d.ignored) {
    warnings.push(`Dataset configuration ${line.replace(/^(\S+):/, "$1 ignored:")}`);
  }
  const ms = (key: string, value: string): number => {
    const v = durationMs(value);
    if (typeof v === "string") throw bad(`metrics.${key} "${value}": not a duration`);
    if (v <= 0) throw bad(`metrics.${key} "${value}": must be greater than 0`);
    return Math.ceil(v);
  };
  for (
    const [key, value, flag] of [
      ["ha_lease_timeout", d.leaseTimeout, "metrics.high-availability.lease-timeout"],
      ["ha_lease_refresh", d.leaseRefresh, "metrics.high-availability.lease-refresh"],
    ] as const
  ) {
    if (value === undefined) continue;
    leaseMs[key] = ms(key, value);
    if (r.given(flag)) {
      warnings.push(`Dataset configuration metrics.${key} overridden by --${flag}`);
    } else {
      values.set(flag, { value, from: "file", where: where });
    }
  }
  return {
    values,
    retentionMs: d.retention === undefined ? null : ms("default_retention_period", d.retention),
    leaseMs,
  };
}

/** `ha_lease_timeout` and `ha_lease_refresh` of `_prom_catalog.default`, ms (null: absent or not an interval). */
export interface DatabaseLeaseTimings {
  leaseTimeoutMs: number | null;
  leaseRefreshMs: number | null;
}

/**
 * The config with the HA lease timings that were set nowhere taken from
 * `_prom_catalog.default` (Promscale's one place for them, so connectors
 * agree without matching flags by hand); flags, variables, file keys and
 * the dataset configuration still win. Database values that break the
 * rule refresh < lease timeout, failover timeout are not used (warning).
 */
export function withDatabaseLeaseTimings(
  cfg: Config,
  db: DatabaseLeaseTimings,
): { config: Config; warnings: string[] } {
  const ha = cfg.metrics.ha;
  const usable = (v: number | null) => v !== null && Number.isFinite(v) && v > 0;
  const timeout = ha.timingsFromDatabase.leaseTimeout && usable(db.leaseTimeoutMs)
    ? db.leaseTimeoutMs!
    : ha.leaseTimeoutMs;
  const refresh = ha.timingsFromDatabase.leaseRefresh && usable(db.leaseRefreshMs)
    ? db.leaseRefreshMs!
    : ha.leaseRefreshMs;
  if (timeout === ha.leaseTimeoutMs && refresh === ha.leaseRefreshMs) {
    return { config: cfg, warnings: [] };
  }
  if (refresh >= timeout || refresh >= ha.failoverTimeoutMs) {
    return {
      config: cfg,
      warnings: [
        `Ignoring _prom_catalog.default ha_lease_timeout (${timeout} ms) and ha_lease_refresh ` +
        `(${refresh} ms): the refresh must be shorter than the lease timeout and the failover ` +
        `timeout (${ha.failoverTimeoutMs} ms)`,
      ],
    };
  }
  return {
    config: {
      ...cfg,
      metrics: { ...cfg.metrics, ha: { ...ha, leaseTimeoutMs: timeout, leaseRefreshMs: refresh } },
    },
    warnings: [],
  };
}

/**
 * parseConfig() over the real process: Deno.args, Deno.env and the file
 * system.
 */
export function loadConfig(argv: string[] = Deno.args): Config {
  return parseConfig(argv, Deno.env.toObject(), (path) => {
    try {
      return Deno.readTextFileSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  });
}
