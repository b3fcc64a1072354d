/**
 * Remote reads cannot starve writes. Reads stuck in the database (here: the
 * series catalogue locked, as a slow query or a long statement_timeout
 * would hold them) count against --web.max-in-flight-reads only and run on
 * connections of their own: writes keep their slots and connections and
 * are stored at once; reads beyond their own limit get 503.
 */
import { inProcessConnector } from "../helpers/connector.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { nodeExporterSeries, writeRequestBody } from "../helpers/payload.ts";
import { ReadRequest } from "../../proto/messages.ts";
import { snappy } from "../../deps.ts";

const READS = 6;
const MAX_READS = 2;

function readBody(): Uint8Array<ArrayBuffer> {
  const msg = ReadRequest.fromObject({
    queries: [{
      start_timestamp_ms: 0,
      end_timestamp_ms: 2_000_000_000_000,
      matchers: [{ type: 0, name: "__name__", value: "node_cpu_seconds_total" }],
    }],
  });
  return snappy.compress(ReadRequest.encode(msg).finish()) as Uint8Array<ArrayBuffer>;
}

Deno.test({
  name: "reads stuck in the database take no write slot nor write connection",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("fault_read_isolation");
    const c = await inProcessConnector(db.uri, [
      "--web.max-in-flight-requests",
      "4",
      "--web.max-in-flight-reads",
      String(MAX_READS),
    ], { pool: 3 });
    const write = async (i: number) => {
      const started = performance.now();
      const res = await fetch(`${c.url}/write`, {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: writeRequestBody(nodeExporterSeries(5, 1_700_000_000_000 + i * 1000)) as Uint8Array<
          ArrayBuffer
        >,
        signal: AbortSignal.timeout(30_000),
      });
      return { status: res.status, text: await res.text(), ms: performance.now() - started };
    };
    const release = Promise.withResolvers<void>();
    let lock: Promise<unknown> | undefined;
    try {
      assertEquals((await write(0)).status, 204); // the series are now cached
      const locked = Promise.withResolvers<void>();
      lock = db.sql.begin(async (tx) => {
        await tx`LOCK TABLE _prom_catalog.series IN ACCESS EXCLUSIVE MODE`;
        locked.resolve();
        await release.promise;
      });
      await locked.promise;
      const reads = Array.from({ length: READS }, () =>
        fetch(`${c.url}/read`, {
          method: "POST",
          headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
          body: readBody(),
          signal: AbortSignal.timeout(30_000),
        }).then(async (r) => ({ status: r.status, text: await r.text() })));
      // Let the reads get in flight (and stuck).
      await new Promise((r) => setTimeout(r, 500));
      const writes = [];
      for (let i = 1; i <= 8; i++) writes.push(await write(i));
      release.resolve();
      await lock;
      const readResults = await Promise.all(reads);
      const ms = writes.map((w) => w.ms).sort((a, b) => a - b);
      console.log(
        `read isolation: ${READS} reads stuck on a lock: ${
          readResults.map((r) => r.status).join(",")
        }; writes meanwhile: ${writes.map((w) => w.status).join(",")}, latency p50 ${
          ms[4].toFixed(1)
        } ms max ${ms[7].toFixed(1)} ms`,
      );
      for (const w of writes) assertEquals(w.status, 204, w.text);
      assert(ms[7] < 2_000, `a write took ${ms[7]} ms`);
      const refused = readResults.filter((r) => r.status === 503);
      assertEquals(refused.length, READS - MAX_READS, JSON.stringify(readResults));
      for (const r of refused) {
        assertMatch(r.text, /^Too many read requests in flight \(limit 2\)\n$/);
      }
      assertEquals(readResults.filter((r) => r.status === 200).length, MAX_READS);
    } finally {
      release.resolve();
      await lock?.catch(() => {});
      await c.stop();
      await db.drop();
    }
  },
});
