/**
 * Ingest lag: wraps the write path's filter so that, once a request is
 * answered 2xx, `promscale_ingest_newest_sample_timestamp_seconds` holds the
 * newest sample timestamp it carried, per cluster (the HA cluster label, or
 * "" without HA). `time()` minus it tells how far behind the senders are,
 * as Prometheus's own highest-sent-timestamp gauge does on its side.
 */
import type { FilterResult, IngestFilter } from "../ingest.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";

/** Clusters tracked at most; requests of further clusters count under "" (bounded labels). */
const MAX_CLUSTERS = 1_000;

/** Returns `inner` with the gauge kept up to date. */
export function trackNewestSample(
  inner: IngestFilter,
  metrics: ConnectorMetrics,
  clusterLabel: string | null,
): IngestFilter {
  const gauge = metrics.newestSample;
  return {
    apply: async (decoded) => {
      const newest = new Map<string, number>();
      for (const s of decoded.series) {
        const ts = s.timestamps;
        if (ts.length === 0) continue;
        let top = -Infinity;
        for (let i = 0; i < ts.length; i++) if (ts[i] > top) top = ts[i];
        let cluster = "";
        if (clusterLabel !== null) {
          cluster = s.labels.find((l) => l.name === clusterLabel)?.value ?? "";
        }
        if ((newest.get(cluster) ?? -Infinity) < top) newest.set(cluster, top);
      }
      const kept: FilterResult = await inner.apply(decoded);
      if (newest.size === 0) return kept;
      const committed = kept.committed;
      return {
        ...kept,
        committed: () => {
          committed?.();
          for (const [cluster, ms] of newest) {
            const known = gauge.get({ cluster }) > 0 || gauge.size < MAX_CLUSTERS;
            const labels = { cluster: known ? cluster : "" };
            if (gauge.get(labels) < ms / 1000) gauge.set(labels, ms / 1000);
          }
        },
      };
    },
  };
}
