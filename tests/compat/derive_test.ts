/** Promscale's HA leader series derived from ours at scrape time, without a database. */
import assert from "node:assert/strict";
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";

function lines(m: ConnectorMetrics, name: string): string[] {
  return m.registry.render().split("\n").filter((l) => l.startsWith(`${name}{`)).sort();
}

Deno.test("leader_info keeps the leader at 1 and the one before at 0; changes count the first election", () => {
  const m = new ConnectorMetrics();
  m.haLeader.set({ cluster: "c", replica: "a" }, 1);
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_info"), [
    'promscale_ha_cluster_leader_info{cluster="c",replica="a"} 1',
  ]);
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_changes_total"), [
    'promscale_ha_cluster_leader_changes_total{cluster="c"} 1',
  ]);
  // What src/ha/clusters.ts does on a change.
  const change = (from: string, to: string) => {
    m.haLeader.delete({ cluster: "c", replica: from });
    m.haLeaderChanges.inc({ cluster: "c" });
    m.haLeader.set({ cluster: "c", replica: to }, 1);
  };
  change("a", "b");
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_info"), [
    'promscale_ha_cluster_leader_info{cluster="c",replica="a"} 0',
    'promscale_ha_cluster_leader_info{cluster="c",replica="b"} 1',
  ]);
  change("b", "x");
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_info"), [
    'promscale_ha_cluster_leader_info{cluster="c",replica="b"} 0',
    'promscale_ha_cluster_leader_info{cluster="c",replica="x"} 1',
  ]);
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_changes_total"), [
    'promscale_ha_cluster_leader_changes_total{cluster="c"} 3',
  ]);
  // Evicted by the connector: gone here too.
  m.haLeader.delete({ cluster: "c", replica: "x" });
  assert.deepEqual(lines(m, "promscale_ha_cluster_leader_info"), []);
});
