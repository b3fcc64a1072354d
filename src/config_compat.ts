/**
 * Promscale 0.17 configuration that this connector takes without acting on
 * it, or refuses with a reason; and Promscale's dataset configuration
 * (`startup.dataset.config` / `startup.dataset`). Plain tables and a parser
 * of the dataset YAML; config.ts turns them into flags, warnings and errors.
 * No imports from config.ts, so either module can be loaded first.
 */
import { parseYaml } from "../deps.ts";

/** A Promscale flag accepted (validated by kind) and ignored with one warning. */
export interface CompatFlag {
  name: string;
  kind: "string" | "bool" | "int" | "duration";
  /** Why it has no effect here; ends the warning and the --help line. */
  reason: string;
}

const POOL = "the pool is sized by --db.connections-max";
const CACHE = "the only cache is the series cache (--metrics.cache.series.max-size)";

/** Tuning and start-up flags of a write+HA Promscale deployment. */
export const COMPAT_FLAGS: readonly CompatFlag[] = [
  { name: "db.connections.num-writers", kind: "int", reason: POOL },
  { name: "db.connections.writer-pool.size", kind: "int", reason: POOL },
  {
    name: "db.connections.writer-pool.synchronous-commit",
    kind: "bool",
    reason: "writes always commit with the server's synchronous_commit",
  },
  { name: "db.connections.reader-pool.size", kind: "int", reason: POOL },
  { name: "db.connections.maint-pool.size", kind: "int", reason: POOL },
  {
    name: "db.statements-cache",
    kind: "bool",
    reason:
      "statements are always prepared on each connection (with PgBouncer, use session pooling)",
  },
  {
    name: "startup.install-extensions",
    kind: "bool",
    reason: "the connector needs no extension; it uses TimescaleDB when installed",
  },
  {
    name: "startup.upgrade-extensions",
    kind: "bool",
    reason: "the connector installs and upgrades no extension",
  },
  {
    name: "startup.upgrade-prerelease-extensions",
    kind: "bool",
    reason: "the connector installs and upgrades no extension",
  },
  {
    name: "startup.use-schema-version-lease",
    kind: "bool",
    reason: "migrations always run under an advisory lock",
  },
  { name: "cache.memory-target", kind: "string", reason: CACHE },
  { name: "metrics.cache.metrics.size", kind: "string", reason: CACHE },
  { name: "metrics.cache.labels.size", kind: "string", reason: CACHE },
  { name: "metrics.cache.exemplar.size", kind: "string", reason: CACHE },
  { name: "metrics.cache.series.initial-size", kind: "string", reason: CACHE },
  { name: "metrics.cache.series.max-bytes", kind: "string", reason: CACHE },
  { name: "metrics.cache.inverted-labels.size", kind: "string", reason: CACHE },
  { name: "metrics.cache.inverted-labels.max-bytes", kind: "string", reason: CACHE },
  {
    name: "metrics.ignore-samples-written-to-compressed-chunks",
    kind: "bool",
    reason: "samples into compressed chunks are always written",
  },
  {
    name: "telemetry.log.throughput-report-interval",
    kind: "duration",
    reason: "throughput is on /metrics (promscale_ingest_samples_total)",
  },
  {
    name: "web.cors-origin",
    kind: "string",
    reason: "no endpoint is meant for browsers on other origins",
  },
  {
    name: "vacuum.disable",
    kind: "bool",
    reason: "there is no vacuum engine; PostgreSQL's autovacuum does the work",
  },
  {
    name: "vacuum.run-frequency",
    kind: "duration",
    reason: "there is no vacuum engine; PostgreSQL's autovacuum does the work",
  },
  {
    name: "vacuum.parallelism",
    kind: "int",
    reason: "there is no vacuum engine; PostgreSQL's autovacuum does the work",
  },
];

/**
 * Promscale flags of features this connector does not have: still an error
 * (exit status 2), with the reason. Matched by exact name or by prefix
 * (entries ending in "." or "*").
 */
export const UNSUPPORTED_FLAGS: readonly { match: string; reason: string }[] = [
  {
    match: "enable-feature",
    reason: "the PromQL features it enabled in Promscale (@, negative offset) are always on here",
  },
  { match: "metrics.rules.", reason: "rules and alerts are not evaluated here" },
  { match: "metrics.alertmanager.", reason: "rules and alerts are not evaluated here" },
  { match: "metrics.multi-tenancy*", reason: "multi-tenancy is not supported" },
  { match: "tracing.", reason: "traces are not stored here" },
  { match: "telemetry.trace.", reason: "the connector exports no traces of its own" },
  { match: "thanos.", reason: "there is no Thanos Store API here" },
  { match: "db.read-only", reason: "there is no read-only mode (the connector writes)" },
  { match: "web.enable-admin-api", reason: "there is no admin API (series deletion)" },
];

/** Why `name` (a Promscale flag) is refused, or null when it is not one of those. */
export function unsupportedReason(name: string): string | null {
  for (const u of UNSUPPORTED_FLAGS) {
    if (
      u.match.endsWith(".")
        ? name.startsWith(u.match)
        : u.match.endsWith("*")
        ? name.startsWith(u.match.slice(0, -1))
        : name === u.match
    ) {
      return u.reason;
    }
  }
  return null;
}

/** What the dataset configuration sets that this connector uses. */
export interface DatasetSettings {
  /** metrics.default_retention_period, as written. */
  retention?: string;
  /** metrics.ha_lease_timeout, as written. */
  leaseTimeout?: string;
  /** metrics.ha_lease_refresh, as written. */
  leaseRefresh?: string;
  /** One line per key that has no effect here. */
  ignored: string[];
}

const IGNORED_DATASET: Record<string, string> = {
  "metrics.default_chunk_interval": "samples are stored in daily partitions",
  "metrics.compress_data": "compression is not managed by the connector",
  "traces.default_retention_period": "traces are not stored here",
};

/**
 * Reads Promscale's dataset configuration: YAML text (the
 * `startup.dataset.config` form) or an already parsed map (the nested
 * `startup.dataset` form of config.yml). Returns a reason string when it is
 * not a map of maps.
 */
export function readDataset(source: string | Record<string, unknown>): DatasetSettings | string {
  let doc: unknown = source;
  if (typeof source === "string") {
    try {
      doc = parseYaml(source);
    } catch (err) {
      return `not YAML: ${(err instanceof Error ? err.message : String(err)).split("\n")[0]}`;
    }
  }
  const out: DatasetSettings = { ignored: [] };
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== "object" || Array.isArray(doc)) return "must be a map (metrics:, traces:)";
  for (const [section, body] of Object.entries(doc as Record<string, unknown>)) {
    if (section !== "metrics" && section !== "traces") {
      out.ignored.push(`${section}: unknown section, ignored`);
      continue;
    }
    if (body === null || body === undefined) continue;
    if (typeof body !== "object" || Array.isArray(body)) return `${section} must be a map`;
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      const path = `${section}.${key}`;
      if (value === null || value === undefined) continue;
      if (typeof value === "object") return `${path} must be a scalar`;
      const text = String(value).trim();
      if (path === "metrics.default_retention_period") out.retention = text;
      else if (path === "metrics.ha_lease_timeout") out.leaseTimeout = text;
      else if (path === "metrics.ha_lease_refresh") out.leaseRefresh = text;
      else if (path in IGNORED_DATASET) out.ignored.push(`${path}: ${IGNORED_DATASET[path]}`);
      else out.ignored.push(`${path}: unknown setting, ignored`);
    }
  }
  return out;
}
