/**
 * The HTTP contract of the write path, as table tests: every status the
 * handler can answer, in the order the checks run (405 method, 415 encoding
 * and type, 413 size, 400 snappy/protobuf/labels, 204 after commit, 503
 * database). Rows are sent over a raw HTTP/1.1 socket to an in-process
 * connector on a fresh database, so headers (a lying Content-Length, a
 * chunked body) reach the server exactly as written.
 */
import { inProcessConnector } from "./helpers/connector.ts";
import { protobuf } from "../deps.ts";
import type { Connector } from "../src/app.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "./helpers/db.ts";
import {
  encodeWriteRequest,
  type PayloadSeries,
  snappyCompress,
  writeRequestBody,
} from "./helpers/payload.ts";

const MAX_REQUEST = 16 * 1024;
const MAX_DECODED = 64 * 1024;
const SNAPPY = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };

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
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
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

/** A protobuf Label with raw bytes (for invalid UTF-8, which protobufjs cannot produce). */
function rawSeries(labels: [Uint8Array, Uint8Array][], timestamp: number): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32(1 << 3 | 2).fork(); // WriteRequest.timeseries
  for (const [name, value] of labels) {
    w.uint32(1 << 3 | 2).fork(); // TimeSeries.labels
    w.uint32(1 << 3 | 2).bytes(name);
    w.uint32(2 << 3 | 2).bytes(value);
    w.ldelim();
  }
  w.uint32(2 << 3 | 2).fork(); // TimeSeries.samples
  w.uint32(1 << 3 | 1).double(1);
  w.uint32(2 << 3 | 0).int64(timestamp);
  w.ldelim();
  w.ldelim();
  return w.finish();
}

/** A snappy varint length header. */
function snappyHeader(length: number): number[] {
  const out: number[] = [];
  let v = length;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** Replaces the snappy length header of `compressed` with `length`. */
function withSnappyLength(compressed: Uint8Array, length: number): Uint8Array {
  let i = 0;
  while (compressed[i] & 0x80) i++;
  return concat([Uint8Array.from(snappyHeader(length)), compressed.subarray(i + 1)]);
}

const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);

/** A valid series of metric `name` with `n` samples one second apart. */
function series(name: string, n: number, extra: Record<string, string> = {}): PayloadSeries {
  return {
    labels: { __name__: name, job: "contract", ...extra },
    samples: Array.from({ length: n }, (_, i) => ({ value: i, timestamp: T0 + i * 1000 })),
  };
}

// A valid series of a metric that no rejected request may ever store: it
// rides in front of each bad series, so a partial write would show.
const REJECTED = series("contract_rejected", 1);
const validBody = writeRequestBody([series("contract_ok", 3)]);
const aliasBody = writeRequestBody([series("contract_alias", 2)]);
const truncated = (() => {
  const raw = encodeWriteRequest([REJECTED, series("contract_rejected", 5, { x: "y" })]);
  return snappyCompress(raw.subarray(0, raw.length - 3));
})();
// 200 KB of zeros: snappy compresses it far below the request limit.
const zeros = snappyCompress(new Uint8Array(200_000));
const invalidUtf8 = snappyCompress(concat([
  encodeWriteRequest([REJECTED]),
  rawSeries([
    [enc.encode("__name__"), enc.encode("contract_rejected")],
    [enc.encode("job"), Uint8Array.from([0x63, 0xff, 0xfe])],
  ], T0),
]));

interface Row {
  name: string;
  method: string;
  path?: string;
  headers: Record<string, string>;
  body?: Uint8Array | Uint8Array[];
  expectedStatus: number;
  bodyIncludes?: string;
}

const ROWS: Row[] = [
  {
    name: "GET /write is 405",
    method: "GET",
    headers: {},
    expectedStatus: 405,
    bodyIncludes: "Method GET not allowed",
  },
  {
    name: "PUT with a valid body is 405 (method is checked first)",
    method: "PUT",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 405,
  },
  {
    name: "missing Content-Encoding is 415",
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: "Content-Encoding",
  },
  {
    name: "Content-Encoding gzip is 415",
    method: "POST",
    headers: { "content-encoding": "gzip", "content-type": "application/x-protobuf" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: '"gzip"',
  },
  {
    name: "Content-Type application/json is 415",
    method: "POST",
    headers: { "content-encoding": "snappy", "content-type": "application/json" },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: '"application/json"',
  },
  {
    name: "missing Content-Type is 415",
    method: "POST",
    headers: { "content-encoding": "snappy" },
    body: validBody,
    expectedStatus: 415,
  },
  {
    // 2.0 is taken (tests/data_model/); a message type we do not take is 415.
    name: "an unknown protobuf message (proto=io.prometheus.write.v3.Request) is 415",
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    },
    body: validBody,
    expectedStatus: 415,
    bodyIncludes: "io.prometheus.write.v3.Request",
  },
  {
    name: "an oversized body with a wrong encoding is 415 (headers before size)",
    method: "POST",
    headers: { "content-type": "application/x-protobuf", "content-length": "100000000" },
    body: new Uint8Array(10),
    expectedStatus: 415,
  },
  {
    name: "Content-Length over --web.max-request-size is 413 before the body is read",
    method: "POST",
    headers: { ...SNAPPY, "content-length": "100000000" },
    body: new Uint8Array(10),
    expectedStatus: 413,
    bodyIncludes: "100000000",
  },
  {
    name: "a chunked body growing over --web.max-request-size is 413",
    method: "POST",
    headers: SNAPPY,
    body: [new Uint8Array(MAX_REQUEST / 2), new Uint8Array(MAX_REQUEST / 2), new Uint8Array(8)],
    expectedStatus: 413,
    bodyIncludes: String(MAX_REQUEST),
  },
  {
    name: "a body of exactly --web.max-request-size is read (400 for its content, not 413)",
    method: "POST",
    headers: SNAPPY,
    body: new Uint8Array(MAX_REQUEST).fill(0xff),
    expectedStatus: 400,
  },
  {
    name: "a snappy header declaring 4 GiB is 400 before decompressing",
    method: "POST",
    headers: SNAPPY,
    body: Uint8Array.from([...snappyHeader(4 * 1024 ** 3), 0x00, 0x00, 0x00]),
    expectedStatus: 400,
    bodyIncludes: "4294967296",
  },
  {
    name: "a snappy header over --web.max-decoded-size is 400",
    method: "POST",
    headers: SNAPPY,
    body: zeros,
    expectedStatus: 400,
    bodyIncludes: `limit ${MAX_DECODED}`,
  },
  {
    name: "a snappy body expanding past its (small) declared length is 400",
    method: "POST",
    headers: SNAPPY,
    body: withSnappyLength(zeros, 100),
    expectedStatus: 400,
    bodyIncludes: "snappy",
  },
  {
    name: "a body that is not snappy is 400",
    method: "POST",
    headers: SNAPPY,
    body: enc.encode("this is not snappy at all, not even close"),
    expectedStatus: 400,
  },
  {
    name: "a truncated protobuf is 400",
    method: "POST",
    headers: SNAPPY,
    body: truncated,
    expectedStatus: 400,
    bodyIncludes: "Cannot decode write request",
  },
  {
    name: "an empty label name is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: [{ name: "__name__", value: "contract_rejected" }, { name: "", value: "v" }],
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: "series 1 has an empty label name",
  },
  {
    name: "a duplicate label name is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: [
        { name: "__name__", value: "contract_rejected" },
        { name: "job", value: "a" },
        { name: "job", value: "b" },
      ],
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: 'duplicate label name "job"',
  },
  {
    name: "a series without __name__ is 400",
    method: "POST",
    headers: SNAPPY,
    body: writeRequestBody([REJECTED, {
      labels: { job: "contract" },
      samples: [{ value: 1, timestamp: T0 }],
    }]),
    expectedStatus: 400,
    bodyIncludes: "series 1 has no __name__ label",
  },
  {
    name: "a label value that is not UTF-8 is 400",
    method: "POST",
    headers: SNAPPY,
    body: invalidUtf8,
    expectedStatus: 400,
    bodyIncludes: "not valid UTF-8",
  },
  {
    name: "a valid request is 204",
    method: "POST",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 204,
  },
  {
    name: "a valid request with Content-Type parameters (proto=prometheus.WriteRequest) is 204",
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf; proto=prometheus.WriteRequest",
    },
    body: validBody,
    expectedStatus: 204,
  },
  {
    name: "an empty WriteRequest is 204",
    method: "POST",
    headers: SNAPPY,
    body: snappyCompress(new Uint8Array(0)),
    expectedStatus: 204,
  },
  {
    name: "a valid request sent chunked is 204",
    method: "POST",
    headers: SNAPPY,
    body: [validBody.subarray(0, 10), validBody.subarray(10)],
    expectedStatus: 204,
  },
  {
    name: "POST /api/v1/write is an alias of /write",
    method: "POST",
    path: "/api/v1/write",
    headers: SNAPPY,
    body: aliasBody,
    expectedStatus: 204,
  },
  {
    name: "an unknown path is 404",
    method: "POST",
    path: "/api/v1/push",
    headers: SNAPPY,
    body: validBody,
    expectedStatus: 404,
    bodyIncludes: "/api/v1/push",
  },
];

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
