/**
 * Made-up cluster names cannot grow /metrics without bound: the per-cluster
 * metrics keep the first --metrics.max-cluster-label-values clusters and
 * count the others under cluster="_other_" (the leader gauge leaves them
 * out: a gauge cannot be summed).
 */
import { inProcessConnector } from "../helpers/connector.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { ConnectorMetrics, OTHER_LABEL_VALUE } from "../../src/telemetry/metrics.ts";

const CAP = 5;
const CLUSTERS = 12;

function clustersOf(text: string, metric: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(metric + "{")) continue;
    const cluster = /cluster="([^"]*)"/.exec(line)?.[1] ?? "";
    out.set(cluster, (out.get(cluster) ?? 0) + Number(line.split(" ").pop()));
  }
  return out;
}

Deno.test("per-cluster metrics fold clusters beyond the cap into _other_", () => {
  const m = new ConnectorMetrics({ maxClusterLabelValues: 2 });
  for (const c of ["a", "b", "c", "d"]) {
    m.samplesAccepted.inc({ cluster: c }, 10);
    m.haLeader.set({ cluster: c, replica: "r" }, 1);
  }
  m.samplesAccepted.inc({ cluster: "a" }, 1);
  const text = m.registry.render();
  assertEquals(
    [...clustersOf(text, "promscale_ha_samples_accepted_total")],
    [["a", 11], ["b", 10], [OTHER_LABEL_VALUE, 20]],
  );
  assertEquals([...clustersOf(text, "promscale_ha_cluster_leader")], [["a", 1], ["b", 1]]);
  m.haLeader.delete({ cluster: "c", replica: "r" }); // not kept: nothing to delete
  m.haLeader.delete({ cluster: "a", replica: "r" });
  assertEquals([...clustersOf(m.registry.render(), "promscale_ha_cluster_leader")], [["b", 1]]);
});

Deno.test({
  name: "a connector written to by many clusters keeps /metrics bounded",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("sec_cluster_cardinality");
    const c = await inProcessConnector(db.uri, [
      "--metrics.high-availability",
      "--metrics.max-cluster-label-values",
      String(CAP),
    ]);
    try {
      for (let i = 0; i < CLUSTERS; i++) {
        const res = await fetch(`${c.url}/write`, {
          method: "POST",
          headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
          body: writeRequestBody([{
            labels: { __name__: "up", cluster: `made-up-${i}`, __replica__: "r0", job: "x" },
            samples: [{ value: 1, timestamp: 1_700_000_000_000 }],
          }]) as Uint8Array<ArrayBuffer>,
        });
        assertEquals(res.status, 204, await res.text());
      }
      const text = await (await fetch(`${c.url}/metrics`)).text();
      const accepted = clustersOf(text, "promscale_ha_samples_accepted_total");
      const leaders = clustersOf(text, "promscale_ha_cluster_leader");
      console.log(
        `cluster cardinality: ${CLUSTERS} clusters written, accepted samples by cluster ${
          JSON.stringify(Object.fromEntries(accepted))
        }, leader gauge for ${leaders.size} clusters`,
      );
      assertEquals(accepted.size, CAP + 1);
      assertEquals(accepted.get(OTHER_LABEL_VALUE), CLUSTERS - CAP);
      assertEquals([...accepted.values()].reduce((a, b) => a + b, 0), CLUSTERS);
      assert(leaders.size <= CAP, `${leaders.size} leader series`);
    } finally {
      await c.stop();
      await db.drop();
    }
  },
});
