/**
 * A minimal Prometheus metrics registry rendering the text exposition
 * format (version 0.0.4): counters, gauges and histograms with labels.
 */

type LabelValues = Record<string, string>;

abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly type: string) {}
  abstract render(): string;
  protected header(): string {
    return `# HELP ${this.name} ${this.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n` +
      `# TYPE ${this.name} ${this.type}\n`;
  }
}

function labelKey(labels: LabelValues): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${escapeValue(labels[k])}"`).join(",");
}

function escapeValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** The value that label values beyond a {@linkcode LabelCap} are folded into. */
export const OTHER_LABEL_VALUE = "_other_";

/**
 * Bounds the distinct values of one label (e.g. `cluster`) over the metrics
 * that share this cap: the first `max` values seen are kept for good; any
 * later one is reported as {@linkcode OTHER_LABEL_VALUE}. So a sender making
 * up cluster names cannot grow /metrics (nor the memory behind it) without
 * bound.
 */
export class LabelCap {
  readonly #kept = new Set<string>();
  constructor(readonly label: string, readonly max: number) {}

  /** Distinct values kept. */
  get size(): number {
    return this.#kept.size;
  }

  /** The value to report for `value`. */
  fold(value: string): string {
    if (this.#kept.has(value)) return value;
    if (this.#kept.size < this.max) {
      this.#kept.add(value);
      return value;
    }
    return OTHER_LABEL_VALUE;
  }
}

/** A value per label set, set or added to. */
class Series extends Metric {
  protected values = new Map<string, number>();
  /** The label sets behind the keys of `values`, for `entries()`. */
  protected labelSets = new Map<string, LabelValues>();
  /** When set, the values of its label are bounded (folded into "_other_"). */
  cap?: LabelCap;
  /** Label sets whose capped label was folded, for gauges (see Gauge.set). */
  protected folded(labels: LabelValues): boolean {
    const cap = this.cap;
    if (!cap || !(cap.label in labels)) return false;
    return cap.fold(labels[cap.label]) === OTHER_LABEL_VALUE &&
      labels[cap.label] !== OTHER_LABEL_VALUE;
  }
  inc(labels: LabelValues = {}, by = 1): void {
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: LabelValues = {}): number {
    return this.values.get(this.key(labels)) ?? 0;
  }
  /** Every label set with its value (a copy). */
  entries(): { labels: LabelValues; value: number }[] {
    return [...this.values].map(([k, value]) => ({ labels: { ...this.labelSets.get(k) }, value }));
  }
  /** Number of label sets. */
  get size(): number {
    return this.values.size;
  }
  protected key(labels: LabelValues): string {
    const cap = this.cap;
    if (cap && cap.label in labels) {
      const v = cap.fold(labels[cap.label]);
      if (v !== labels[cap.label]) labels = { ...labels, [cap.label]: v };
    }
    const k = labelKey(labels);
    if (!this.labelSets.has(k)) this.labelSets.set(k, { ...labels });
    return k;
  }
  render(): string {
    let out = this.header();
    for (const [k, v] of this.values) out += `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}\n`;
    return out;
  }
}

/** A monotonically increasing count. */
export class Counter extends Series {
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
}

/** A value that goes up and down; `collect` may compute it at scrape time. */
export class Gauge extends Series {
  constructor(name: string, help: string, public collect?: (g: Gauge) => void) {
    super(name, help, "gauge");
  }
  /**
   * Sets a value. A label set whose capped label is folded is not kept: a
   * gauge's values cannot be summed into "_other_" (the cluster's other
   * labels, such as its replica, would be unbounded too).
   */
  set(labels: LabelValues, v: number): void {
    if (this.folded(labels)) return;
    this.values.set(this.key(labels), v);
  }
  delete(labels: LabelValues): void {
    if (this.folded(labels)) return;
    const k = labelKey(labels);
    this.values.delete(k);
    this.labelSets.delete(k);
  }
  reset(): void {
    this.values.clear();
    this.labelSets.clear();
  }
  override render(): string {
    this.collect?.(this);
    return super.render();
  }
}

/** A count kept elsewhere and copied in by `collect` at scrape time (a derived series). */
export class CollectedCounter extends Series {
  constructor(name: string, help: string, public collect?: (c: CollectedCounter) => void) {
    super(name, help, "counter");
  }
  set(labels: LabelValues, v: number): void {
    this.values.set(this.key(labels), v);
  }
  override render(): string {
    this.collect?.(this);
    return super.render();
  }
}

/** Observations in cumulative buckets, with sum and count. */
export class Histogram extends Metric {
  #data = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, readonly buckets: number[]) {
    super(name, help, "histogram");
  }
  observe(v: number, labels: LabelValues = {}): void {
    const k = labelKey(labels);
    let d = this.#data.get(k);
    if (!d) this.#data.set(k, d = { counts: this.buckets.map(() => 0), sum: 0, count: 0 });
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) d.counts[i]++;
    d.sum += v;
    d.count++;
  }
  render(): string {
    let out = this.header();
    for (const [k, d] of this.#data) {
      const pre = k ? k + "," : "";
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${pre}le="${fmt(b)}"} ${d.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${pre}le="+Inf"} ${d.count}\n`;
      out += `${this.name}_sum${k ? `{${k}}` : ""} ${d.sum}\n`;
      out += `${this.name}_count${k ? `{${k}}` : ""} ${d.count}\n`;
    }
    return out;
  }
}

/** A set of metrics rendered together. */
export class Registry {
  #metrics: Metric[] = [];
  register<M extends Metric>(m: M): M {
    this.#metrics.push(m);
    return m;
  }
  render(): string {
    return this.#metrics.map((m) => m.render()).join("");
  }
}

/** Default of the distinct `cluster` values kept by the per-cluster metrics. */
export const DEFAULT_MAX_CLUSTER_LABEL_VALUES = 1000;

/** The connector's own metrics. */
export class ConnectorMetrics {
  readonly registry = new Registry();
  /** Bounds the `cluster` values of every per-cluster metric, together. */
  readonly clusterCap: LabelCap;

  constructor(opts: { maxClusterLabelValues?: number } = {}) {
    this.clusterCap = new LabelCap(
      "cluster",
      opts.maxClusterLabelValues ?? DEFAULT_MAX_CLUSTER_LABEL_VALUES,
    );
    for (
      const m of [
        this.samplesDropped,
        this.samplesAccepted,
        this.samplesStaged,
        this.haLeader,
        this.haLeaderChanges,
      ]
    ) m.cap = this.clusterCap;
  }
  readonly requests = this.registry.register(
    new Counter("promscale_http_requests_total", "HTTP requests by handler and status code."),
  );
  readonly requestDuration = this.registry.register(
    new Histogram(
      "promscale_http_request_duration_seconds",
      "Duration of HTTP requests by handler.",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
  );
  readonly samplesIngested = this.registry.register(
    new Counter("promscale_ingest_samples_total", "Samples stored in the database."),
  );
  readonly histogramsIngested = this.registry.register(
    new Counter(
      "promscale_ingest_histograms_total",
      "Native histogram samples received and written (stored, or staged for HA reconciliation).",
    ),
  );
  readonly exemplarsIngested = this.registry.register(
    new Counter("promscale_ingest_exemplars_total", "Exemplars stored in the database."),
  );
  readonly metadataIngested = this.registry.register(
    new Counter(
      "promscale_ingest_metadata_total",
      "Metric metadata entries written to the database (unchanged repeats are skipped).",
    ),
  );
  readonly writeRequestsByProtocol = this.registry.register(
    new Counter(
      "promscale_ingest_requests_by_protocol_total",
      'Write requests decoded, by remote write protocol version ("1.0", "2.0").',
    ),
  );
  readonly seriesCreated = this.registry.register(
    new Counter("promscale_ingest_series_created_total", "Series created in the database."),
  );
  readonly samplesDropped = this.registry.register(
    new Counter(
      "promscale_ingest_samples_dropped_total",
      "Samples received but deliberately not stored, by cluster and reason.",
    ),
  );
  readonly samplesAccepted = this.registry.register(
    new Counter(
      "promscale_ha_samples_accepted_total",
      "Samples accepted for storage in high-availability mode, by cluster.",
    ),
  );
  readonly samplesStaged = this.registry.register(
    new Counter(
      "promscale_ha_samples_staged_total",
      "Samples of non-leader replicas staged for per-series reconciliation, by cluster.",
    ),
  );
  readonly haReconciled = this.registry.register(
    new Counter(
      "promscale_ha_reconciled_samples_total",
      "Staged samples decided by the reconciler: filled (stored, the leader lacked the round), " +
        "duplicate (dropped, the round is stored), undone (an earlier fill removed because a " +
        "late leader sample doubled it).",
    ),
  );
  readonly haStageWaiting = this.registry.register(
    new Gauge(
      "promscale_ha_stage_waiting",
      "Staged samples whose series' leader has not passed them yet (last reconcile pass).",
    ),
  );
  readonly duplicateWrites = this.registry.register(
    new Counter(
      "promscale_ingest_duplicate_writes_total",
      "Writes that hit samples already stored (retried requests) and were de-duplicated.",
    ),
  );
  readonly seriesCacheSize = this.registry.register(
    new Gauge("promscale_series_cache_size", "Series ids held in the in-memory cache."),
  );
  readonly dbConnectionsInUse = this.registry.register(
    new Gauge("promscale_db_connections_in_use", "Database connections in use by writes."),
  );
  readonly dbRequestsWaiting = this.registry.register(
    new Gauge("promscale_db_requests_waiting", "Writes waiting for a database connection."),
  );
  readonly dbConnectionsMax = this.registry.register(
    new Gauge("promscale_db_connections_max", "Size of the database connection pool."),
  );
  readonly migrationsVersion = this.registry.register(
    new Gauge("promscale_migrations_version", "Schema version of the database."),
  );
  readonly buildInfo = this.registry.register(
    new Gauge("promscale_build_info", "Build information; the value is always 1."),
  );
  readonly inFlight = this.registry.register(
    new Gauge("promscale_http_requests_in_flight", "HTTP requests being served."),
  );
  readonly inFlightMemory = this.registry.register(
    new Gauge(
      "promscale_http_requests_in_flight_memory_bytes",
      "Estimated memory reserved by requests in flight (see --web.max-in-flight-memory).",
    ),
  );
  readonly haLeader = this.registry.register(
    new Gauge(
      "promscale_ha_cluster_leader",
      "1 for the replica this connector believes leads each cluster.",
    ),
  );
  readonly haLeaderChanges = this.registry.register(
    new Counter("promscale_ha_leader_changes_total", "Leader changes seen, by cluster."),
  );
  readonly electionLeader = this.registry.register(
    new Gauge(
      "promscale_leader_election_is_leader",
      "1 when this connector holds the legacy advisory-lock leadership.",
    ),
  );
  readonly electionsWon = this.registry.register(
    new Counter("promscale_leader_election_won_total", "Legacy advisory-lock elections won."),
  );
  readonly electionsLost = this.registry.register(
    new Counter(
      "promscale_leader_election_lost_total",
      "Legacy advisory-lock elections lost or leadership given up.",
    ),
  );
  readonly newestSample = this.registry.register(
    new Gauge(
      "promscale_ingest_newest_sample_timestamp_seconds",
      "Timestamp of the newest sample in a write request answered 2xx, by cluster (the HA " +
        "cluster label; empty without HA). time() minus it is how far the senders lag.",
    ),
  );
  readonly dbUp = this.registry.register(
    new Gauge(
      "promscale_db_up",
      "1 when the database answers the connector's health probe (about once a second, as " +
        "/healthz reports it), else 0.",
    ),
  );
  readonly haLeaderHeardAge = this.registry.register(
    new Gauge(
      "promscale_ha_leader_heard_age_seconds",
      "Seconds since any connector last heard each cluster's leader, from the database every " +
        "10 s (clusters heard in the last 24 h, at most 1000).",
    ),
  );
  readonly startTime = this.registry.register(
    new Gauge("promscale_start_time_seconds", "When the connector started, in Unix seconds."),
  );
  readonly retentionDropped = this.registry.register(
    new Counter(
      "promscale_retention_partitions_dropped_total",
      "Sample partitions dropped by the retention job.",
    ),
  );

  // --- Promscale's names and label sets, for its mixin, dashboards and
  // runbooks. Derived from the metrics above or fed beside them; see the
  // README's mapping table.

  readonly promIngestRequests = this.registry.register(
    new Counter(
      "promscale_ingest_requests_total",
      'Write requests by type ("metric") and code ("2xx", else the HTTP status), as Promscale ' +
        "counted them.",
    ),
  );
  readonly promIngestDuration = this.registry.register(
    new Histogram(
      "promscale_ingest_duration_seconds",
      "Time taken to answer write requests, by type and code, as Promscale measured it.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 120, 300],
    ),
  );
  readonly promIngestItems = this.registry.register(
    new Counter(
      "promscale_ingest_items_total",
      "Samples stored, by type, kind and subsystem (Promscale's names for " +
        "promscale_ingest_samples_total).",
    ),
  );
  readonly promIngestDuplicates = this.registry.register(
    new Counter(
      "promscale_ingest_duplicates_total",
      "Samples of write requests that hit samples already stored (retried requests), by type " +
        "and kind; an upper bound, counted per request.",
    ),
  );
  readonly promIngestMaxSent = this.registry.register(
    new Gauge(
      "promscale_ingest_max_sent_timestamp_milliseconds",
      "Newest sample timestamp of the write requests answered 2xx, in milliseconds, by type " +
        "(the maximum of promscale_ingest_newest_sample_timestamp_seconds).",
      (g) => {
        const all = this.newestSample.entries();
        if (all.length > 0) {
          g.set({ type: "metric" }, Math.max(...all.map((e) => e.value)) * 1000);
        }
      },
    ),
  );
  readonly promHaLeaderInfo = this.registry.register(
    new Gauge(
      "promscale_ha_cluster_leader_info",
      "1 for the replica leading each HA cluster as this connector sees it, 0 for the leader " +
        "before it.",
      () => this.#syncHaLeaders(),
    ),
  );
  readonly promHaLeaderChanges = this.registry.register(
    new CollectedCounter(
      "promscale_ha_cluster_leader_changes_total",
      "Leaders seen per HA cluster, the first election included (Promscale's count).",
      () => this.#syncHaLeaders(),
    ),
  );

  // Promscale's cache metrics, for the one cache we have: the series cache
  // (Promscale's labels type="metric", name="series"). See watchSeriesCache().

  readonly promCacheEnabled = this.registry.register(
    new Gauge("promscale_cache_enabled", "Cache is enabled or not (1), by type and name."),
  );
  readonly promCacheElements = this.registry.register(
    new Gauge("promscale_cache_elements", "Elements in the cache, by type and name."),
  );
  readonly promCacheCapacity = this.registry.register(
    new Gauge(
      "promscale_cache_capacity_elements",
      "Capacity of the cache in elements, by type and name (--metrics.cache.series.max-size).",
    ),
  );
  readonly promCacheEvictions = this.registry.register(
    new CollectedCounter(
      "promscale_cache_evictions_total",
      "Elements dropped from the cache to make room, by type and name.",
    ),
  );
  readonly promCacheQueries = this.registry.register(
    new CollectedCounter(
      "promscale_cache_queries_total",
      "Lookups in the cache, by type and name.",
    ),
  );
  readonly promCacheHits = this.registry.register(
    new CollectedCounter(
      "promscale_cache_query_hits_total",
      "Lookups in the cache that found the element, by type and name.",
    ),
  );

  // Promscale's database request metrics. A request here is one unit of
  // gated database work: a write request's statements (series ids,
  // partitions, COPY) together (method="write"), or one read
  // (method="read"). See databaseRequest().

  readonly promDbRequests = this.registry.register(
    new Counter(
      "promscale_database_requests_total",
      'Database requests by method ("write": the statements of one write request; "read": ' +
        "one remote read or PromQL fetch).",
    ),
  );
  readonly promDbRequestErrors = this.registry.register(
    new Counter(
      "promscale_database_request_errors_total",
      "Database requests that failed, by method.",
    ),
  );
  readonly promDbRequestDuration = this.registry.register(
    new Histogram(
      "promscale_database_requests_duration_seconds",
      "Time taken by database requests once they have a connection slot, by method.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
  );
  readonly promDbHealthChecks = this.registry.register(
    new CollectedCounter(
      "promscale_sql_database_health_check_total",
      "Database health checks performed (the /healthz probe, SELECT 1 about once a second).",
    ),
  );
  readonly promDbHealthCheckErrors = this.registry.register(
    new CollectedCounter(
      "promscale_sql_database_health_check_errors_total",
      "Database health checks that failed or were not answered in time.",
    ),
  );

  /** Exports the series cache under Promscale's cache metrics (read at scrape time). */
  watchSeriesCache(
    cache: { size: number; maxSize: number; evictions: number; queries: number; hits: number },
  ): void {
    const labels = { type: "metric", name: "series" };
    this.promCacheEnabled.set(labels, 1);
    this.promCacheElements.collect = (g) => g.set(labels, cache.size);
    this.promCacheCapacity.collect = (g) => g.set(labels, cache.maxSize);
    this.promCacheEvictions.collect = (c) => c.set(labels, cache.evictions);
    this.promCacheQueries.collect = (c) => c.set(labels, cache.queries);
    this.promCacheHits.collect = (c) => c.set(labels, cache.hits);
  }

  /** Exports the health probe's checks under Promscale's health check counters. */
  watchHealthProbe(probe: { probes: number; failures: number }): void {
    this.promDbHealthChecks.collect = (c) => c.set({}, probe.probes);
    this.promDbHealthCheckErrors.collect = (c) => c.set({}, probe.failures);
  }

  /** Records one unit of database work under Promscale's database request metrics. */
  databaseRequest(method: string, seconds: number, failed: boolean): void {
    const labels = { method };
    this.promDbRequests.inc(labels);
    // Errors start at 0, so that an error ratio has a denominator and a numerator.
    this.promDbRequestErrors.inc(labels, failed ? 1 : 0);
    this.promDbRequestDuration.observe(seconds, labels);
  }

  /** Cluster → leader, as last copied into promscale_ha_cluster_leader_info. */
  #haLeaders = new Map<string, string>();

  /** Records one answered write request under Promscale's ingest metrics. */
  ingestRequest(status: number, seconds: number): void {
    const labels = { type: "metric", code: status >= 200 && status < 300 ? "2xx" : String(status) };
    this.promIngestRequests.inc(labels);
    this.promIngestDuration.observe(seconds, labels);
  }

  /**
   * Derives Promscale's HA leader series from ours: promscale_ha_cluster_leader
   * holds the current leader per cluster, promscale_ha_leader_changes_total
   * the changes after the first election. Idempotent; runs at scrape time.
   */
  #syncHaLeaders(): void {
    const info = this.promHaLeaderInfo;
    const current = new Map<string, string>();
    for (const e of this.haLeader.entries()) {
      if (e.value === 1 && e.labels.cluster !== undefined && e.labels.replica !== undefined) {
        current.set(e.labels.cluster, e.labels.replica);
      }
    }
    const dropCluster = (cluster: string, keep: string) => {
      for (const e of info.entries()) {
        if (e.labels.cluster === cluster && e.labels.replica !== keep) info.delete(e.labels);
      }
    };
    for (const [cluster, leader] of current) {
      const before = this.#haLeaders.get(cluster);
      if (before === leader) continue;
      if (before !== undefined) {
        // Only the leader before keeps a 0: the series stay bounded.
        dropCluster(cluster, before);
        info.set({ cluster, replica: before }, 0);
      }
      info.set({ cluster, replica: leader }, 1);
      this.#haLeaders.set(cluster, leader);
    }
    for (const cluster of this.#haLeaders.keys()) {
      if (!current.has(cluster)) {
        // Forgotten by the connector (evicted): so are its series here.
        dropCluster(cluster, "");
        this.#haLeaders.delete(cluster);
      }
    }
    for (const cluster of this.#haLeaders.keys()) {
      this.promHaLeaderChanges.set({ cluster }, this.haLeaderChanges.get({ cluster }) + 1);
    }
  }
}
