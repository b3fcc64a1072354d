/**
 * The remote read path on the real PostgreSQL: samples are written through
 * an in-process connector's `/write` (the real write path), then read back
 * through its `/read` and through `readHandler()` built with other limits.
 * Responses are decoded with a small protobuf walker written here (not the
 * encoder's code), which reads sample values as raw bits.
 */
import { inProcessConnector } from "../helpers/connector.ts";
import type { Connector } from "../../src/app.ts";
import { readHandler, type ReadHandlerOptions } from "../../src/remote_read/handler.ts";
import { ReadRequest } from "../../proto/messages.ts";
import { snappy } from "../../deps.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { type PayloadSeries, STALE_NAN_BITS, writeRequestBody } from "../helpers/payload.ts";

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);
const WRITE_HEADERS = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };
const READ_HEADERS = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf",
  "x-prometheus-remote-read-version": "0.1.0",
};

/** Bits of the doubles written, as Prometheus would send them. */
const QUIET_NAN_BITS = 0x7ff8000000000001n;
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
function bitsOf(v: number): bigint {
  f64[0] = v;
  return u64[0];
}

const COUNTER: PayloadSeries = {
  labels: { __name__: "http_requests_total", code: "200", job: "api" },
  samples: [1, 2, 3, 5, 8].map((v, i) => ({ value: v, timestamp: T0 + i * 15_000 })),
};
const GAUGE_BITS = [
  bitsOf(-0),
  bitsOf(Infinity),
  bitsOf(-Infinity),
  QUIET_NAN_BITS,
  STALE_NAN_BITS,
  bitsOf(1.5),
  bitsOf(Number.MIN_VALUE),
];
const GAUGE: PayloadSeries = {
  labels: { __name__: "room_temperature", cluster: "c1", room: "a", zone: "eu" },
  samples: GAUGE_BITS.map((b, i) => ({ value: 0, valueBits: b, timestamp: T0 + i * 1000 })),
};
/** Before 1970: negative timestamps are int64 varints of ten bytes. */
const OLD: PayloadSeries = {
  labels: { __name__: "old_metric", job: "x" },
  samples: [{ value: 42, timestamp: -5000 }, { value: 43, timestamp: 7 }],
};

/** A decoded sample: timestamp and value bits. */
type Sample = [number, bigint];
interface Series {
  labels: [string, string][];
  samples: Sample[];
}

/** Walks a ReadResponse (uncompressed) by hand: results → series → labels, samples. */
function decodeResponse(buf: Uint8Array): Series[][] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n;; shift += 7n) {
      const b = buf[pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  const fields = (end: number, onField: (field: number, wire: number) => void) => {
    while (pos < end) {
      const key = Number(varint());
      onField(key >>> 3, key & 7);
    }
    assertEquals(pos, end, "message overran its length");
  };
  const len = () => Number(varint());
  const results: Series[][] = [];
  fields(buf.length, (f, w) => {
    assertEquals([f, w], [1, 2], "ReadResponse.results");
    const series: Series[] = [];
    results.push(series);
    const resultEnd = len() + pos;
    fields(resultEnd, (f, w) => {
      assertEquals([f, w], [1, 2], "QueryResult.timeseries");
      const s: Series = { labels: [], samples: [] };
      series.push(s);
      const tsEnd = len() + pos;
      fields(tsEnd, (f, w) => {
        assertEquals(w, 2);
        const end = len() + pos;
        if (f === 1) {
          let name = "", value = "";
          fields(end, (f, w) => {
            assertEquals(w, 2);
            const n = len();
            const str = text.decode(buf.subarray(pos, pos + n));
            pos += n;
            if (f === 1) name = str;
            else value = str;
          });
          s.labels.push([name, value]);
        } else {
          assertEquals(f, 2, "TimeSeries.samples");
          let t = 0, bits = 0n;
          fields(end, (f, w) => {
            if (f === 1) {
              assertEquals(w, 1);
              bits = dv.getBigUint64(pos, true);
              pos += 8;
            } else {
              assertEquals([f, w], [2, 0]);
              t = Number(BigInt.asIntN(64, varint()));
            }
          });
          s.samples.push([t, bits]);
        }
      });
    });
  });
  return results;
}

/** Expected samples of a payload series between from and to (inclusive). */
function expected(p: PayloadSeries, from = -Infinity, to = Infinity): Sample[] {
  return p.samples
    .filter((s) => s.timestamp >= from && s.timestamp <= to)
    .map((s) => [s.timestamp, s.valueBits ?? bitsOf(s.value)]);
}

function sortedLabels(p: PayloadSeries): [string, string][] {
  return Object.entries(p.labels as Record<string, string>).sort((a, b) => a[0] < b[0] ? -1 : 1);
}

type Q = {
  start: number;
  end: number;
  matchers: [string, string, string][];
};
const TYPES: Record<string, number> = { "=": 0, "!=": 1, "=~": 2, "!~": 3 };

/** A snappy ReadRequest body. */
function readBody(queries: Q[], acceptedResponseTypes: number[] = []): Uint8Array<ArrayBuffer> {
  const msg = ReadRequest.fromObject({
    queries: queries.map((q) => ({
      start_timestamp_ms: q.start,
      end_timestamp_ms: q.end,
      matchers: q.matchers.map(([name, type, value]) => ({ type: TYPES[type], name, value })),
    })),
    accepted_response_types: acceptedResponseTypes,
  });
  return snappy.compress(ReadRequest.encode(msg).finish()) as Uint8Array<ArrayBuffer>;
}

async function connectorOn(db: FreshDatabase, args: string[] = []): Promise<Connector> {
  return await inProcessConnector(db.uri, args, { pool: 4 });
}

async function write(c: Connector, series: PayloadSeries[]): Promise<void> {
  const res = await fetch(`${c.url}/write`, {
    method: "POST",
    headers: WRITE_HEADERS,
    body: writeRequestBody(series) as Uint8Array<ArrayBuffer>,
  });
  assertEquals(res.status, 204, await res.text());
}

async function read(
  target: string | ((req: Request) => Promise<Response>),
  body: BodyInit,
  headers: Record<string, string> = READ_HEADERS,
  method = "POST",
): Promise<Response> {
  const init = { method, headers, body: method === "POST" ? body : undefined };
  return typeof target === "string"
    ? await fetch(`${target}/read`, init)
    : await target(new Request("http://connector/read", init));
}

async function decoded(res: Response): Promise<Series[][]> {
  const body = new Uint8Array(await res.arrayBuffer());
  assertEquals(res.status, 200, new TextDecoder().decode(body));
  assertEquals(res.headers.get("content-type"), "application/x-protobuf");
  assertEquals(res.headers.get("content-encoding"), "snappy");
  return decodeResponse(snappy.uncompress(body));
}

Deno.test("remote read returns exactly the stored samples", async (t) => {
  const db = await freshDatabase("read_handler");
  const connector = await connectorOn(db, [
    "--web.max-request-size=1MiB",
    "--web.max-decoded-size=4MiB",
  ]);
  try {
    await write(connector, [COUNTER, GAUGE, OLD]);
    const handlerWith = (o: Partial<ReadHandlerOptions>) =>
      readHandler({
        sql: connector.sql,
        maxRequestBytes: 1 << 20,
        maxDecodedBytes: 1 << 20,
        readTimeoutMs: 5000,
        maxSamples: 1000,
        ...o,
      });

    await t.step("several queries, in order, values bit for bit, labels sorted", async () => {
      const res = await read(
        connector.url,
        readBody([
          { start: T0, end: T0 + 60_000, matchers: [["__name__", "=", "http_requests_total"]] },
          { start: T0, end: T0 + 60_000, matchers: [["__name__", "=~", "room_.*"]] },
          { start: -10_000, end: 10, matchers: [["__name__", "=", "old_metric"]] },
          { start: T0, end: T0 + 60_000, matchers: [["__name__", "=", "nothing_here"]] },
        ]),
      );
      const results = await decoded(res);
      assertEquals(results, [
        [{ labels: sortedLabels(COUNTER), samples: expected(COUNTER) }],
        [{ labels: sortedLabels(GAUGE), samples: expected(GAUGE) }],
        [{ labels: sortedLabels(OLD), samples: expected(OLD) }],
        [],
      ]);
      // The staleness marker kept its payload: not the canonical NaN.
      assertEquals(results[1][0].samples[4][1], STALE_NAN_BITS);
    });

    await t.step("the time range is inclusive at both ends", async () => {
      const from = T0 + 15_000, to = T0 + 45_000;
      const results = await decoded(
        await read(
          connector.url,
          readBody([{ start: from, end: to, matchers: [["job", "=", "api"]] }]),
        ),
      );
      assertEquals(results[0][0].samples, expected(COUNTER, from, to));
      assertEquals(results[0][0].samples.length, 3);
    });

    await t.step("in HA mode the replica matcher is dropped and cluster is a matcher", async () => {
      const q = (cluster: string) =>
        readBody([{
          start: T0,
          end: T0 + 60_000,
          matchers: [["__name__", "=", "room_temperature"], ["cluster", "=", cluster], [
            "__replica__",
            "=",
            "prometheus-1",
          ]],
        }]);
      const ha = handlerWith({ replicaLabel: "__replica__" });
      assertEquals((await decoded(await read(ha, q("c1"))))[0].length, 1);
      assertEquals((await decoded(await read(ha, q("c2"))))[0].length, 0);
      // Without HA the replica label is a label like any other: never stored, so no match.
      assertEquals((await decoded(await read(handlerWith({}), q("c1"))))[0].length, 0);
    });

    await t.step("more samples than the limit is a 413 with the reason", async () => {
      const body = () =>
        readBody([
          { start: T0, end: T0 + 60_000, matchers: [["job", "=", "api"]] },
          { start: T0, end: T0 + 60_000, matchers: [["room", "=", "a"]] },
        ]);
      const total = COUNTER.samples.length + GAUGE.samples.length;
      const exact = await decoded(await read(handlerWith({ maxSamples: total }), body()));
      assertEquals(exact.map((r) => r[0].samples.length), [5, 7]);
      const res = await read(handlerWith({ maxSamples: total - 1 }), body());
      assertEquals(res.status, 413);
      const text = await res.text();
      assertStringIncludes(text, `more than ${total - 1} samples`);
      assertEquals(text.trimEnd().split("\n").length, 1);
    });

    await t.step("onRead reports queries, series and samples", async () => {
      let seen: number[] = [];
      const h = handlerWith({ onRead: (q, s, n) => seen = [q, s, n] });
      await decoded(
        await read(h, readBody([{ start: T0, end: T0 + 60_000, matchers: [["job", "=~", ".+"]] }])),
      );
      assertEquals(seen, [1, 1, 5]);
    });

    await t.step("the HTTP contract: refusals and their status codes", async () => {
      const q = [{ start: T0, end: T0 + 1000, matchers: [["job", "=", "api"]] }] as Q[];
      const wrongType = ReadRequest.encode(ReadRequest.fromObject({
        queries: [{ matchers: [{ type: 9, name: "job", value: "api" }] }],
      })).finish();
      const rows: {
        name: string;
        body: BodyInit;
        headers?: Record<string, string>;
        method?: string;
        status: number;
        says: string;
      }[] = [
        { name: "GET", body: "", method: "GET", status: 405, says: "remote read takes POST" },
        {
          name: "gzip body",
          body: readBody(q),
          headers: { ...READ_HEADERS, "content-encoding": "gzip" },
          status: 415,
          says: 'Unsupported Content-Encoding "gzip"',
        },
        {
          name: "JSON body",
          body: readBody(q),
          headers: { ...READ_HEADERS, "content-type": "application/json" },
          status: 415,
          says: 'Unsupported Content-Type "application/json"',
        },
        {
          name: "body above the size limit",
          body: new Uint8Array(2 << 20),
          status: 413,
          says: "exceeds limit",
        },
        {
          name: "not snappy",
          body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
          status: 400,
          says: "Cannot decode read request: snappy header",
        },
        {
          name: "snappy length above the decoded limit",
          body: new Uint8Array([0x80, 0x80, 0x80, 0x04, 0x00]),
          status: 400,
          says: "Cannot decode read request: snappy length",
        },
        {
          name: "not protobuf",
          body: snappy.compress(new Uint8Array([0x0a, 0x05, 0x01])) as Uint8Array<ArrayBuffer>,
          status: 400,
          says: "Cannot decode read request: invalid protobuf",
        },
        {
          name: "unknown matcher type",
          body: snappy.compress(wrongType) as Uint8Array<ArrayBuffer>,
          status: 400,
          says: "query 0 matcher 0 has unknown type 9",
        },
        {
          name: "only streamed chunks accepted",
          body: readBody(q, [1]),
          status: 400,
          says: "only SAMPLES (0) is",
        },
        {
          name: "a regex PostgreSQL cannot express",
          body: readBody([{ start: T0, end: T0 + 1000, matchers: [["job", "=~", "\\p{Greek}"]] }]),
          status: 400,
          says: 'unsupported regex "\\p{Greek}"',
        },
        {
          name: "an invalid regex",
          body: readBody([{ start: T0, end: T0 + 1000, matchers: [["job", "=~", "a("]] }]),
          status: 400,
          says: 'invalid regex "a("',
        },
      ];
      for (const row of rows) {
        const res = await read(connector.url, row.body, row.headers ?? READ_HEADERS, row.method);
        const text = await res.text();
        assertEquals(res.status, row.status, `${row.name}: ${text}`);
        assertStringIncludes(text, row.says, `${row.name}: ${text}`);
        assertEquals(text.trimEnd().split("\n").length, 1, row.name);
      }
      // Streamed chunks preferred but samples accepted: samples.
      const both = await decoded(await read(connector.url, readBody(q, [1, 0])));
      assertEquals(both[0][0].samples, expected(COUNTER, T0, T0 + 1000));
      // No headers at all: the body is snappy protobuf regardless.
      const bare = await decoded(await read(connector.url, readBody(q), {}));
      assertEquals(bare, both);
    });

    await t.step("reads are counted on /metrics", async () => {
      const text = await (await fetch(`${connector.url}/metrics`)).text();
      assert(/promscale_http_requests_total\{code="200",handler="read"\} [1-9]/.test(text), text);
    });
  } finally {
    await connector.stop();
    await db.drop();
  }
});
