/**
 * Clients trickling their request headers do not stop writes. Deno's HTTP
 * server has no timeout for receiving headers, so such a client holds its
 * socket as long as it keeps sending (the README says how to bound that:
 * a proxy's header timeout, or the file descriptor limit); what the
 * connector guarantees is that it holds nothing else: no request slot, no
 * memory budget, no database connection. 500 clients trickling headers a
 * byte at a time while normal writes go on: every write is stored, and
 * /healthz stays 200.
 *
 * Prints the write latency before and during the trickle.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { percentile as pct, timedWrite } from "../helpers/latency.ts";
import { killAll, startConnector } from "../helpers/procs.ts";

const CLIENTS = 500;
const TRICKLE_MS = 3_000;
const enc = new TextEncoder();

Deno.test({
  name: "500 clients trickling their headers do not stop normal writes",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("fault_slow_headers");
    const conns: Deno.TcpConn[] = [];
    try {
      const c = await startConnector({ dbUri: db.uri, args: ["--db.connections-max", "3"] });
      const port = Number(new URL(c.url).port);
      let n = 0;
      const before: number[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await timedWrite(c.url, n++);
        assertEquals(r.status, 204);
        before.push(r.ms);
      }
      for (let i = 0; i < CLIENTS; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(
          enc.encode(
            "POST /write HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nX-Slow: ",
          ),
        );
        conns.push(conn);
      }
      let trickling = true;
      let bytes = 0;
      const trickle = (async () => {
        // Every client sends one more header byte every ~250 ms.
        while (trickling) {
          for (const conn of conns) {
            try {
              await conn.write(enc.encode("a"));
              bytes++;
            } catch {
              // The server closed it: fine too.
            }
          }
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const during: { status: number; ms: number }[] = [];
      const until = performance.now() + TRICKLE_MS;
      while (performance.now() < until) during.push(await timedWrite(c.url, n++));
      const health = await fetch(`${c.url}/healthz`);
      await health.body?.cancel();
      trickling = false;
      await trickle;
      const ms = during.map((d) => d.ms);
      console.log(
        `slow headers: ${CLIENTS} clients trickled ${bytes} header bytes; write latency before p50 ${
          pct(before, 0.5).toFixed(1)
        } ms p99 ${pct(before, 0.99).toFixed(1)} ms, during (${during.length} writes) p50 ${
          pct(ms, 0.5).toFixed(1)
        } ms p99 ${pct(ms, 0.99).toFixed(1)} ms max ${Math.max(...ms).toFixed(1)} ms`,
      );
      assertEquals(during.filter((d) => d.status !== 204).map((d) => d.status), []);
      assert(during.length >= 10, `only ${during.length} writes in ${TRICKLE_MS} ms`);
      assertEquals(health.status, 200);
    } finally {
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await killAll();
      await db.drop();
    }
  },
});
