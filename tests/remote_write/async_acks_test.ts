/**
 * --metrics.async-acks: the answer comes before the commit, and the samples
 * still arrive in the database.
 */
import { assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { inProcessConnector } from "../helpers/connector.ts";

Deno.test("--metrics.async-acks answers 204 and writes the samples in the background", async () => {
  const db = await freshDatabase("async_acks");
  const connector = await inProcessConnector(db.uri, ["--metrics.async-acks"]);
  try {
    const now = Date.now();
    const body = writeRequestBody([{
      labels: { __name__: "async_probe", job: "t" },
      samples: Array.from({ length: 50 }, (_, i) => ({ value: i, timestamp: now + i })),
    }]);
    const res = await fetch(`${connector.url}/write`, {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body: body as Uint8Array<ArrayBuffer>,
    });
    await res.body?.cancel();
    assertEquals(res.status, 204);
    let stored = 0;
    for (let i = 0; i < 100 && stored < 50; i++) {
      const [{ present }] = await db.sql<{ present: boolean }[]>`
        SELECT to_regclass('prom_metric.async_probe') IS NOT NULL AS present`;
      if (present) {
        const [{ n }] = await db.sql<{ n: string }[]>`
          SELECT count(*) AS n FROM prom_metric.async_probe`;
        stored = Number(n);
      }
      if (stored < 50) await new Promise((r) => setTimeout(r, 50));
    }
    assertEquals(stored, 50);
  } finally {
    await connector.stop();
    await db.drop();
  }
});
