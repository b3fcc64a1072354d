/**
 * Slow and idle clients cannot exhaust the connector: a body trickled a
 * byte a second is cut off with 503 after --web.read-timeout and its slot
 * is freed; requests beyond --web.max-in-flight-requests get 503 (with
 * Retry-After) instead of piling up; 500 idle connections do not stop a
 * normal write.
 */
import { inProcessConnector } from "../helpers/connector.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { nodeExporterSeries, writeRequestBody } from "../helpers/payload.ts";

const READ_TIMEOUT_S = 3;
const MAX_IN_FLIGHT = 2;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Opens a connection and sends the head of a remote write request declaring `length` body bytes. */
async function startWrite(port: number, length: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(
    "POST /write HTTP/1.1\r\nHost: test\r\nContent-Encoding: snappy\r\n" +
      `Content-Type: application/x-protobuf\r\nContent-Length: ${length}\r\n\r\n`,
  ));
  return conn;
}

/** Reads a whole response (until the connection closes or a body of Content-Length arrived). */
async function readResponse(conn: Deno.TcpConn, timeoutMs: number): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), deadline - Date.now())),
    ]);
    if (n === "timeout") break;
    if (n === null) return text;
    text += dec.decode(buf.subarray(0, n));
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const len = Number(/content-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length >= end + 4 + len) return text;
    }
  }
  throw new Error(`No complete response within ${timeoutMs} ms (got: ${JSON.stringify(text)})`);
}

async function write(url: string): Promise<Response> {
  return await fetch(`${url}/write`, {
    method: "POST",
    headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
    body: writeRequestBody(nodeExporterSeries(5)) as Uint8Array<ArrayBuffer>,
    signal: AbortSignal.timeout(30_000),
  });
}

async function inFlight(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^promscale_http_requests_in_flight (\S+)$/m.exec(text)?.[1] ?? NaN);
}

Deno.test({
  name: "slow and idle clients: 503 after the read timeout, 503 beyond the in-flight cap",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const db = await freshDatabase("fault_slow_clients");
    const c = await inProcessConnector(db.uri, [
      "--web.read-timeout",
      `${READ_TIMEOUT_S}s`,
      "--web.max-in-flight-requests",
      String(MAX_IN_FLIGHT),
    ]);
    const port = c.server!.port;
    const conns: Deno.TcpConn[] = [];
    const closeAll = () => {
      for (const conn of conns.splice(0)) {
        try {
          conn.close();
        } catch {
          // Closed by the server already.
        }
      }
    };
    try {
      await t.step(
        "a body trickled a byte a second gets 503 (Prometheus resends, nothing lost) and frees its slot",
        async () => {
          const conn = await startWrite(port, 100);
          conns.push(conn);
          let trickling = true;
          let sent = 0;
          const trickle = (async () => {
            while (trickling && sent < 60) {
              try {
                await conn.write(new Uint8Array([0x80 | (sent & 0x7f)]));
              } catch {
                return; // the server closed the connection
              }
              sent++;
              await new Promise((r) => setTimeout(r, 1000));
            }
          })();
          const res = await readResponse(conn, 60_000);
          trickling = false;
          await trickle;
          assertMatch(res, /^HTTP\/1\.1 503 /);
          assertMatch(
            res.slice(res.indexOf("\r\n\r\n") + 4),
            /^Request body not received [^\n]*\n$/,
          );
          console.log(`trickled body: 503 after ${sent} bytes sent a second apart`);
          closeAll();
          // Both slots are free again: two writes at once succeed.
          const both = await Promise.all([write(c.url), write(c.url)]);
          for (const r of both) await r.body?.cancel();
          assertEquals(both.map((r) => r.status), [204, 204]);
        },
      );

      await t.step(
        "requests beyond the in-flight cap get 503 until the slots free up",
        async () => {
          for (let i = 0; i < MAX_IN_FLIGHT; i++) {
            const conn = await startWrite(port, 1000);
            await conn.write(new Uint8Array([0xff])); // then nothing more
            conns.push(conn);
          }
          // The stalled requests hold every slot (the /metrics request itself counts too).
          const deadline = Date.now() + 10_000;
          while (await inFlight(c.url) < MAX_IN_FLIGHT + 1) {
            assert(Date.now() < deadline, "the stalled requests never got in flight");
            await new Promise((r) => setTimeout(r, 20));
          }
          const refused = await write(c.url);
          const body = await refused.text();
          assertEquals(refused.status, 503, body);
          assertEquals(refused.headers.get("retry-after"), "1");
          assertMatch(body, /^Too many requests in flight \(limit 2\)\n$/);
          // The read timeout ends the stalled ones; then writes go through again.
          for (const conn of conns) {
            assertMatch(await readResponse(conn, 30_000), /^HTTP\/1\.1 503 /);
          }
          closeAll();
          const both = await Promise.all([write(c.url), write(c.url)]);
          for (const r of both) {
            await r.body?.cancel();
          }
          assertEquals(both.map((r) => r.status), [204, 204]);
        },
      );

      await t.step("500 idle connections do not stop a normal write", async () => {
        for (let i = 0; i < 500; i++) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          // Half say nothing; half start a request line and stop.
          if (i % 2) await conn.write(enc.encode("POST /write HTTP/1.1\r\nHost: te"));
          conns.push(conn);
        }
        const health = await fetch(`${c.url}/healthz`);
        await health.body?.cancel();
        assertEquals(health.status, 200);
        const both = await Promise.all([write(c.url), write(c.url)]);
        for (const r of both) await r.body?.cancel();
        assertEquals(both.map((r) => r.status), [204, 204]);
        closeAll();
      });
      // Every accepted write stored its 5 series (same samples each time).
      const [{ n }] = await db.sql<{ n: string }[]>`
        SELECT count(*) AS n FROM prom_metric.node_cpu_seconds_total`;
      assertEquals(Number(n), 5);
    } finally {
      closeAll();
      await c.stop();
      await db.drop();
    }
  },
});
