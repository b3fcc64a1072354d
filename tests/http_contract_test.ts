/**
 * The HTTP contract of the write path, end to end: the table of
 * tests/helpers/write_contract.ts (every status the handler can answer, in
 * the order the checks run) sent over a raw HTTP/1.1 socket to an
 * in-process connector on a fresh database, so headers (a lying
 * Content-Length, a chunked body) reach the server exactly as written and
 * the rows stored can be counted; and the 503 once the database is gone.
 * The same table without a database, against writeHandler alone:
 * tests/remote_write/handler_test.ts.
 */
import { inProcessConnector } from "./helpers/connector.ts";
import type { Connector } from "../src/app.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "./helpers/db.ts";
import { writeRequestBody } from "./helpers/payload.ts";
import { concatBytes } from "./helpers/write_contract.ts";
import {
  MAX_DECODED,
  MAX_REQUEST,
  ROWS,
  series,
  SNAPPY,
  validBody,
} from "./helpers/write_contract.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Starts an in-process connector on `db`, listening on a free port. */
async function connectorOn(db: FreshDatabase, ...args: string[]): Promise<Connector> {
  return await inProcessConnector(db.uri, [
    "--web.max-request-size",
    String(MAX_REQUEST),
    "--web.max-decoded-size",
    String(MAX_DECODED),
    ...args,
  ], { pool: 3 });
}

interface RawResponse {
  status: number;
  headers: Headers;
  body: string;
}

interface RawRequest {
  method: string;
  path: string;
  /** Sent exactly as given (no Content-Length is added when one is here). */
  headers: Record<string, string>;
  /** A fixed body (Content-Length added unless given), or chunks sent with chunked encoding. */
  body?: Uint8Array | Uint8Array[];
}

function concat(parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

/**
 * Sends one request over a new TCP connection and reads one response
 * (Content-Length or chunked). The server may answer before it has read
 * the body (413 on a declared length), so writing and reading overlap.
 */
async function rawHttp(port: number, r: RawRequest): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head: string[] = [`${r.method} ${r.path} HTTP/1.1`, "host: 127.0.0.1"];
    const names = Object.keys(r.headers).map((k) => k.toLowerCase());
    for (const [k, v] of Object.entries(r.headers)) head.push(`${k}: ${v}`);
    let payload: Uint8Array;
    if (Array.isArray(r.body)) {
      head.push("transfer-encoding: chunked");
      payload = concat([
        ...r.body.flatMap((
          c,
        ) => [enc.encode(c.length.toString(16) + "\r\n"), c, enc.encode("\r\n")]),
        enc.encode("0\r\n\r\n"),
      ]);
    } else {
      payload = r.body ?? new Uint8Array(0);
      if (!names.includes("content-length")) head.push(`content-length: ${payload.length}`);
    }
    head.push("connection: close", "", "");
    const writing = (async () => {
      try {
        await conn.write(enc.encode(head.join("\r\n")));
        for (let o = 0; o < payload.length; o += 4096) {
          await conn.write(payload.subarray(o, o + 4096));
        }
      } catch {
        // The server may close before taking the whole body: fine.
      }
    })();
    const res = await readResponse(conn);
    conn.close();
    await writing;
    return res;
  } catch (err) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    throw err;
  }
}

async function readResponse(conn: Deno.Conn): Promise<RawResponse> {
  let buf: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(16 * 1024);
  const more = async () => {
    const n = await conn.read(chunk);
    if (n === null) throw new Error(`Connection closed mid-response: ${dec.decode(buf)}`);
    buf = concat([buf, chunk.subarray(0, n)]);
  };
  let end: number;
  while ((end = dec.decode(buf).indexOf("\r\n\r\n")) < 0) await more();
  const headText = dec.decode(buf).slice(0, end);
  const [statusLine, ...lines] = headText.split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const headers = new Headers();
  for (const l of lines) {
    const i = l.indexOf(":");
    headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
  }
  const bodyStart = enc.encode(headText).length + 4;
  if (headers.get("transfer-encoding")?.includes("chunked")) {
    while (!dec.decode(buf.subarray(bodyStart)).includes("0\r\n\r\n")) await more();
    let rest = dec.decode(buf.subarray(bodyStart));
    let body = "";
    while (true) {
      const nl = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, nl), 16);
      if (size === 0) break;
      body += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    return { status, headers, body };
  }
  const length = Number(headers.get("content-length") ?? 0);
  while (buf.length < bodyStart + length) await more();
  return { status, headers, body: dec.decode(buf.subarray(bodyStart, bodyStart + length)) };
}

Deno.test("POST /write answers the remote-write HTTP contract, row by row", async (t) => {
  const db = await freshDatabase("http_contract");
  let connector: Connector | undefined;
  try {
    connector = await connectorOn(db);
    const port = connector.server!.port;
    for (const row of ROWS) {
      await t.step(row.name, async () => {
        const res = await rawHttp(port, {
          method: row.method,
          path: row.path ?? "/write",
          headers: row.headers,
          body: row.body,
        });
        assertEquals(res.status, row.expectedStatus, `body: ${res.body}`);
        if (row.expectedStatus >= 400) {
          assert(
            /^[^\r\n]+\n$/.test(res.body),
            `not exactly one line: ${JSON.stringify(res.body)}`,
          );
          assertStringIncludes(res.headers.get("content-type") ?? "", "text/plain");
        } else {
          assertEquals(res.body, "");
        }
        if (row.bodyIncludes) assertStringIncludes(res.body, row.bodyIncludes);
        if (row.expectedStatus === 405) assertEquals(res.headers.get("allow"), "POST");
      });
    }

    await t.step("only the 2xx rows stored anything", async () => {
      const metrics = await db.sql<{ metric_name: string }[]>`
        SELECT metric_name FROM _prom_catalog.metric ORDER BY metric_name`;
      assertEquals(metrics.map((m) => m.metric_name), ["contract_alias", "contract_ok"]);
      // Four accepted requests carried contract_ok's 3 samples; stored once.
      const [ok] = await db.sql<{ n: number; values: number[] }[]>`
        SELECT count(*)::int AS n, array_agg(value ORDER BY time) AS values
        FROM prom_metric.contract_ok`;
      assertEquals(ok, { n: 3, values: [0, 1, 2] });
      const [alias] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM prom_metric.contract_alias`;
      assertEquals(alias.n, 2);
      const [{ rows }] = await db.sql<{ rows: number }[]>`
        SELECT count(*)::int AS rows FROM _prom_data.samples`;
      assertEquals(rows, 5);
    });

    await t.step("requests are counted by handler and code on /metrics", async () => {
      const text = await (await fetch(`${connector!.url}/metrics`)).text();
      const count = (handler: string, code: number) =>
        Number(
          new RegExp(
            `^promscale_http_requests_total\\{code="${code}",handler="${handler}"\\} (\\d+)$`,
            "m",
          )
            .exec(text)?.[1] ?? 0,
        );
      for (const status of [204, 400, 405, 413, 415]) {
        const expected = ROWS.filter((r) =>
          r.expectedStatus === status && (r.path ?? "/write") !== "/api/v1/push"
        ).length;
        assertEquals(count("write", status), expected, `write ${status}\n${text}`);
      }
      assertEquals(count("other", 404), 1, text);
    });
  } finally {
    await connector?.stop();
    await db.drop();
  }
});

Deno.test("POST /write is 503 and /healthz 503 once the database is gone", async () => {
  const db = await freshDatabase("http_contract_down");
  let connector: Connector | undefined;
  try {
    connector = await connectorOn(db);
    const port = connector.server!.port;
    const send = (body: Uint8Array) =>
      rawHttp(port, { method: "POST", path: "/write", headers: SNAPPY, body });
    assertEquals((await send(validBody)).status, 204);
    assertEquals(await fetch(`${connector.url}/healthz`).then((r) => r.text()), "ok\n");

    // Drop it under the connector's feet: its connections are terminated
    // and every reconnect fails.
    await db.drop();

    // A known series (cached id, COPY only) and a new one (series lookup).
    for (const body of [validBody, writeRequestBody([series("contract_new", 1)])]) {
      const res = await send(body);
      assertEquals(res.status, 503, res.body);
      assert(/^[^\r\n]+\n$/.test(res.body), `not exactly one line: ${JSON.stringify(res.body)}`);
      assertStringIncludes(res.body, "Database unavailable");
      assertEquals(res.headers.get("retry-after"), "1");
    }
    // /healthz answers from a probe run about once a second: 503 within a few.
    const deadline = Date.now() + 5_000;
    let health = await fetch(`${connector.url}/healthz`);
    while (health.status === 200 && Date.now() < deadline) {
      await health.body?.cancel();
      await new Promise((r) => setTimeout(r, 100));
      health = await fetch(`${connector.url}/healthz`);
    }
    assertEquals(health.status, 503);
    assertMatch(await health.text(), /^database (unavailable|not answering)[^\n]*\n$/);
  } finally {
    await connector?.stop();
    await db.drop();
  }
});
