/** What the connector exposes on /metrics, for the mixin tests. */
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";

/** The names of the metrics /metrics exposes (with histogram suffixes). */
export function exposedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const line of new ConnectorMetrics().registry.render().split("\n")) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (!m) continue;
    names.add(m[1]);
    if (m[2] === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) names.add(m[1] + s);
    }
  }
  return names;
}
